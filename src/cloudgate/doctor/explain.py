"""Reading the clouds' answers: an HTTP status and error body become a cause and a fix.

Each platform words its errors its own way (Google's envelope on Vertex, `x-amzn-ErrorType`
on Bedrock, Anthropic's error object); the texts matched here are the ones the services send,
as quoted in Claude Code's troubleshooting guides and kept by the emulator.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cloudgate.catalog import Catalog, ModelEntry
from cloudgate.catalog.catalog import bedrock_profile_prefix
from cloudgate.config.claude_env import vertex_region_env_var
from cloudgate.doctor.model import Finding, Verdict
from cloudgate.doctor.regions import VERTEX_LOCATIONS, aws_regions, closest, is_vertex_location

MODEL_GARDEN = "https://console.cloud.google.com/vertex-ai/model-garden"
_QUOTA_NAME = re.compile(
    r"Quota exceeded for (?:quota metric )?'?(?:aiplatform\.googleapis\.com/)?([\w./-]+)"
)


@dataclass(slots=True, frozen=True)
class Target:
    """The model call a probe made: who asked for what, where."""

    platform: str
    role: str
    name: str  # as configured (ANTHROPIC_MODEL, a default, --model)
    platform_id: str  # the id sent to the platform
    region: str | None
    project: str | None = None
    via_proxy: bool = False  # a base URL override: a gateway or proxy answers first
    identity: str | None = None  # an IAM member (`serviceAccount:...`, `user:...`) when known


@dataclass(slots=True, frozen=True)
class Answer:
    """An HTTP answer reduced to what explanations need."""

    status: int
    error_type: str  # Google status, AWS exception name or Anthropic error type; "" if none
    message: str
    reasons: tuple[str, ...] = ()  # Google ErrorInfo reasons (SERVICE_DISABLED, ...)


def parse_answer(status: int, body: bytes | str, headers: dict[str, str] | None = None) -> Answer:
    """Pull the error type and message out of any of the three platforms' error bodies."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        doc: Any = json.loads(text) if text else None
    except ValueError:
        doc = None
    if isinstance(doc, list) and doc:  # Vertex wraps some errors in a one-element array
        doc = doc[0]
    amzn = {k.lower(): v for k, v in (headers or {}).items()}.get("x-amzn-errortype", "")
    error_type, message = amzn.split(":", 1)[0], ""
    reasons: tuple[str, ...] = ()
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):  # Google envelope or Anthropic error object
            message = str(err.get("message", ""))
            error_type = error_type or str(err.get("status") or err.get("type") or "")
            reasons = tuple(
                str(d.get("reason"))
                for d in err.get("details") or []
                if isinstance(d, dict) and d.get("reason")
            )
        else:  # AWS: {"message": ...} (botocore also reads `__type`)
            message = str(doc.get("message") or doc.get("Message") or "")
            error_type = error_type or str(doc.get("__type", "")).rsplit("#", 1)[-1]
    if not message:
        message = text.strip()[:300]
    return Answer(status, error_type, message, reasons)


def _label(target: Target) -> str:
    return (
        f"`{target.name}`" if target.name == target.platform_id else f"`{target.name}` ({target.platform_id})"
    )


def _where(target: Target) -> str:
    return "through the gateway/proxy at the base URL" if target.via_proxy else "directly"


def _transient(answer: Answer, target: Target) -> Finding:
    return Finding(
        Verdict.WARN,
        f"{_label(target)} answered {answer.status} {answer.error_type}: {answer.message} "
        "(a temporary problem on the service's side, not your configuration)",
        "Try again in a few minutes; Claude Code retries these by itself.",
        "service-unavailable",
    )


def _unexpected(answer: Answer, target: Target) -> Finding:
    return Finding(
        Verdict.FAIL,
        f"{_label(target)} answered {answer.status} {answer.error_type}: {answer.message}",
        "Read the message above; `cloudgate doctor --json` shows the full answer.",
        "unexpected",
    )


# ---------------------------------------------------------------------------------------------
# Vertex AI


def global_models(catalog: Catalog, family: str | None = None) -> list[str]:
    """Vertex ids of catalog models served on the global endpoint (one family's first, if given)."""
    found = [e for e in catalog.entries if e.vertex and e.supports_vertex_global]
    found.sort(key=lambda e: e.family != family)
    return [str(e.vertex) for e in found]


def _regional(entry: ModelEntry) -> list[str]:
    return [r for r in entry.vertex_regions if r not in ("global", "us", "eu")]


def _region_fix(target: Target, entry: ModelEntry) -> str:
    regions = _regional(entry) or list(entry.vertex_regions)
    var = vertex_region_env_var(target.platform_id)
    pick = regions[0] if regions else "us-east5"
    where = f"it is offered at {', '.join(entry.vertex_regions)}" if entry.vertex_regions else ""
    if var:
        return (
            f"Send this model to a region that serves it: `export {var}={pick}` ({where}); "
            f"or `export CLOUD_ML_REGION={pick}`."
        )
    return f"Set `CLOUD_ML_REGION={pick}` ({where})."


def explain_vertex_not_found(answer: Answer, target: Target, catalog: Catalog) -> Finding:
    """A Vertex 404: unknown region, model not at this region or not on global, or not enabled."""
    region = target.region or "global"
    entry = catalog.lookup(target.platform_id) or catalog.lookup(target.name)
    details = {"answer": answer.message}
    if "requested URL" in answer.message and "Publisher Model" not in answer.message:
        return Finding(
            Verdict.FAIL,
            f"The base URL does not serve Vertex AI paths ({answer.message})",
            "Check ANTHROPIC_VERTEX_BASE_URL: for cloudgate it ends in `/vertex_ai/v1`; "
            "for Google, leave it unset.",
            "wrong-base-url",
            details,
        )
    if not is_vertex_location(region, catalog):
        near = closest(region, VERTEX_LOCATIONS)
        hint = f" Did you mean `{near}`?" if near else ""
        return Finding(
            Verdict.FAIL,
            f"`{region}` is not a Vertex AI location, so no model is found there.{hint}",
            f"Set CLOUD_ML_REGION (or the VERTEX_REGION_* variable in use) to a real location such as "
            f"`{near or 'us-east5'}` or `global`.",
            "wrong-region",
            details,
        )
    if entry is not None and not entry.offered_on_vertex_in(region):
        if region == "global":
            alternatives = ", ".join(f"`{m}`" for m in global_models(catalog, entry.family)[:3])
            return Finding(
                Verdict.FAIL,
                f"{_label(target)} is not available on the Vertex AI global endpoint "
                "(CLOUD_ML_REGION=global), so Vertex answers 404 model not found.",
                _region_fix(target, entry)
                + (f" Or choose a model that supports global: {alternatives}." if alternatives else ""),
                "global-unsupported",
                details,
            )
        return Finding(
            Verdict.FAIL,
            f"{_label(target)} is not offered at `{region}`; Vertex AI serves it at "
            f"{', '.join(entry.vertex_regions) or 'no location'}.",
            _region_fix(target, entry),
            "not-in-region",
            details,
        )
    unknown = (
        ""
        if entry is not None
        else f" cloudgate's catalog does not know `{target.platform_id}`: check the spelling "
        "(`cloudgate models` lists the ids)."
    )
    project = target.project or "your project"
    return Finding(
        Verdict.FAIL,
        f"{_label(target)} is offered at `{region}` but project `{project}` has no access to it: "
        "the model is not enabled for this project in Model Garden." + unknown,
        f"Open Model Garden ({MODEL_GARDEN}?project={project}), find the Claude model and enable it "
        "(accept the terms; approval can take a while), then run doctor again.",
        "not-enabled",
        details,
    )


def explain_vertex(answer: Answer, target: Target, catalog: Catalog) -> Finding:
    """Explain a Vertex AI (or a gateway's Vertex door) error answer."""
    message, status = answer.message, answer.status
    project = target.project or "PROJECT"
    if status == 404:
        return explain_vertex_not_found(answer, target, catalog)
    if status == 403:
        if (
            "SERVICE_DISABLED" in answer.reasons
            or "has not been used in project" in message
            or "API is not enabled" in message
        ):
            return Finding(
                Verdict.FAIL,
                f"The Vertex AI API (aiplatform.googleapis.com) is not enabled in project `{project}`.",
                f"`gcloud services enable aiplatform.googleapis.com --project {project}` "
                "(wait a few minutes for it to take effect).",
                "api-disabled",
                {"answer": message},
            )
        if "BILLING_DISABLED" in answer.reasons or "billing" in message.lower():
            return Finding(
                Verdict.FAIL,
                f"Billing is not enabled for project `{project}`: {message}",
                "Link a billing account to the project in the Cloud Console (Billing).",
                "billing-disabled",
                {"answer": message},
            )
        if "aiplatform.endpoints.predict" in message or answer.error_type == "PERMISSION_DENIED":
            member = target.identity or "user:YOU@example.com"
            who = f"`{target.identity}`" if target.identity else "The credentials in use"
            return Finding(
                Verdict.FAIL,
                f"{who} may not call "
                f"models in project `{project}`: the `aiplatform.endpoints.predict` permission is missing.",
                f"Grant the Vertex AI User role: `gcloud projects add-iam-policy-binding {project} "
                f"--member={member} --role=roles/aiplatform.user` (or a custom role with "
                "aiplatform.endpoints.predict).",
                "permission-denied",
                {"answer": message},
            )
        if answer.error_type == "permission_error":  # a gateway's own refusal (keys, residency)
            return Finding(
                Verdict.FAIL,
                f"The gateway refused {_label(target)}: {message}",
                "Ask the gateway's admin to allow this model/region for your key.",
                "gateway-refused",
                {"answer": message},
            )
        return _unexpected(answer, target)
    if status == 401:
        return Finding(
            Verdict.FAIL,
            f"The credentials were rejected {_where(target)} (401): {message}",
            "Through a gateway: check its key (ANTHROPIC_AUTH_TOKEN or ANTHROPIC_CUSTOM_HEADERS)."
            if target.via_proxy
            else "Log in again: `gcloud auth application-default login`, or check the key file in "
            "GOOGLE_APPLICATION_CREDENTIALS.",
            "credentials-rejected",
            {"answer": message},
        )
    if status == 429:
        return explain_quota(answer, target)
    if status in (500, 502, 503, 504, 529) or answer.error_type == "overloaded_error":
        return _transient(answer, target)
    return _unexpected(answer, target)


def quota_name(message: str) -> str | None:
    """The quota a RESOURCE_EXHAUSTED message names (`online_prediction_requests_per_base_model`)."""
    m = _QUOTA_NAME.search(message)
    return m.group(1).rstrip(".") if m else None


def explain_quota(answer: Answer, target: Target) -> Finding:
    """A Vertex 429: which quota ran out, and where to get more."""
    quota = quota_name(answer.message)
    region = target.region or "global"
    named = f" (quota `{quota}`)" if quota else ""
    if answer.error_type == "rate_limit_error":  # the gateway's own limits, not Google's quota
        return Finding(
            Verdict.FAIL,
            f"The gateway's rate limit for your key was reached: {answer.message}",
            "Wait for the limit to reset, or ask the gateway's admin for a higher one.",
            "gateway-rate-limit",
            {"answer": answer.message},
        )
    fix = (
        f"Request a quota increase in the Cloud Console (IAM & Admin > Quotas, filter "
        f"`{quota or 'aiplatform.googleapis.com'}`, region `{region}`)."
    )
    if region != "global":
        fix += (
            " Or switch to the global endpoint, which usually has more headroom: "
            "`export CLOUD_ML_REGION=global`."
        )
    fix += " On a regional endpoint, check that both the main and the small/fast model are offered there."
    return Finding(
        Verdict.FAIL,
        f"Vertex AI quota exhausted for {_label(target)} at `{region}`{named}: {answer.message}",
        fix,
        "quota",
        {"answer": answer.message, "quota": quota},
    )


# ---------------------------------------------------------------------------------------------
# Amazon Bedrock


def explain_bedrock(answer: Answer, target: Target, catalog: Catalog) -> Finding:
    """Explain a Bedrock (or a gateway's Bedrock door) error answer."""
    kind, message, region = answer.error_type, answer.message, target.region or "us-east-1"
    details = {"answer": message, "error": kind}
    if kind == "AccessDeniedException" or (answer.status == 403 and "access to the model" in message):
        if "not authorized to perform" in message:
            return Finding(
                Verdict.FAIL,
                f"The AWS identity may not invoke models: {message}",
                "Allow `bedrock:InvokeModel` and `bedrock:InvokeModelWithResponseStream` (and "
                "`bedrock:ListInferenceProfiles`) in its IAM policy.",
                "permission-denied",
                details,
            )
        return Finding(
            Verdict.FAIL,
            f"Your AWS account has no access to {_label(target)} in `{region}` "
            "(Bedrock: AccessDeniedException).",
            f"Request access in the Bedrock console (Model access, region {region}); with an inference "
            "profile (`us.`, `eu.`, `global.`) access is needed in every region the profile routes to.",
            "model-access",
            details,
        )
    if "on-demand throughput isn" in message:
        base = catalog.bedrock_base_id(target.platform_id)
        prefix = bedrock_profile_prefix(region)
        return Finding(
            Verdict.FAIL,
            f"{_label(target)} cannot be invoked by its base id: Bedrock serves this model only "
            "through an inference profile.",
            f"Use the inference profile id: `{prefix}.{base}` (or `global.{base}`), or unset "
            "ANTHROPIC_MODEL / ANTHROPIC_SMALL_FAST_MODEL and let Claude Code pick its default.",
            "inference-profile-required",
            details,
        )
    if kind == "ValidationException" and "model identifier is invalid" in message:
        prefix = bedrock_profile_prefix(region)
        return Finding(
            Verdict.FAIL,
            f"Bedrock does not know the model id `{target.platform_id}` in `{region}` (a typo, or an "
            "inference profile of another geography).",
            f"Use an id Bedrock knows here, e.g. `{prefix}.{catalog.bedrock_base_id(target.name)}` "
            "(`cloudgate models --platform bedrock` lists them).",
            "model-id-invalid",
            details,
        )
    if kind == "ResourceNotFoundException" or answer.status == 404:
        return Finding(
            Verdict.FAIL,
            f"{_label(target)} is not available in `{region}`: {message}",
            "Use a region where Bedrock offers this model (AWS_REGION), or a cross-region inference "
            f"profile (`{bedrock_profile_prefix(region)}.` / `global.` prefix).",
            "not-in-region",
            details,
        )
    if kind in ("ThrottlingException", "ServiceQuotaExceededException") or answer.status == 429:
        if kind == "ModelNotReadyException":
            return _transient(answer, target)
        return Finding(
            Verdict.FAIL,
            f"Bedrock is throttling {_label(target)} in `{region}` (ThrottlingException: {message}).",
            'Ask for a higher quota in Service Quotas > Amazon Bedrock ("On-demand model inference '
            'requests per minute" / "tokens per minute" for this model), or use a cross-region '
            "inference profile (`global.`) for more throughput.",
            "quota",
            details,
        )
    if (
        kind
        in (
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredTokenException",
            "MissingAuthenticationTokenException",
            "IncompleteSignatureException",
        )
        or answer.status == 401
    ):
        return Finding(
            Verdict.FAIL,
            f"The AWS credentials were rejected {_where(target)} ({kind or answer.status}): {message}",
            "Through a gateway: check the key in AWS_BEARER_TOKEN_BEDROCK."
            if target.via_proxy
            else "Refresh them (`aws sso login`, or new keys in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), "
            "or check AWS_BEARER_TOKEN_BEDROCK.",
            "credentials-rejected",
            details,
        )
    if answer.status >= 500 or kind in ("ServiceUnavailableException", "ModelNotReadyException"):
        return _transient(answer, target)
    if answer.status == 403 and answer.error_type == "permission_error":
        return Finding(
            Verdict.FAIL,
            f"The gateway refused {_label(target)}: {message}",
            "Ask the gateway's admin to allow this model/region for your key.",
            "gateway-refused",
            details,
        )
    return _unexpected(answer, target)


def bedrock_region_problem(region: str) -> Finding | None:
    """A warning when `region` is not an AWS region name botocore knows."""
    if region in aws_regions():
        return None
    near = closest(region, aws_regions())
    return Finding(
        Verdict.FAIL,
        f"`{region}` is not an AWS region." + (f" Did you mean `{near}`?" if near else ""),
        f"Set AWS_REGION to a region where Bedrock runs, e.g. `{near or 'us-east-1'}`.",
        "wrong-region",
    )


# ---------------------------------------------------------------------------------------------
# The Anthropic API


# (statuses, error type, cause, message, fix): the first rule an answer matches explains it.
_ANTHROPIC_RULES: tuple[tuple[tuple[int, ...], str, str, str, str], ...] = (
    ((401,), "authentication_error", "credentials-rejected",
     "The API key was rejected {where}: {message}",
     "Check ANTHROPIC_API_KEY / ANTHROPIC_AUTH_TOKEN (or what apiKeyHelper prints)."),
    ((404,), "not_found_error", "model-unknown",
     "The API does not know the model {label}: {message}",
     "Check the model name in ANTHROPIC_MODEL / ANTHROPIC_SMALL_FAST_MODEL (`cloudgate models` lists ids)."),
    ((403,), "permission_error", "permission-denied",
     "The key may not use {label}: {message}",
     "Use a key of a workspace (or, through a gateway, a key) allowed to use this model."),
    ((402,), "billing_error", "billing",
     "Billing: {message}",
     "Top up credits, or (through a gateway) ask for a larger budget."),
    ((429,), "rate_limit_error", "quota",
     "Rate limit reached for {label}: {message}",
     "Wait for the limit to reset (the answer's retry-after), or raise the organization's limits."),
)  # fmt: skip


def explain_anthropic(answer: Answer, target: Target) -> Finding:
    """Explain an Anthropic API (or a gateway's Anthropic door) error answer."""
    for statuses, kind, cause, message, fix in _ANTHROPIC_RULES:
        if answer.status in statuses or answer.error_type == kind:
            text = message.format(where=_where(target), label=_label(target), message=answer.message)
            return Finding(
                Verdict.FAIL, text, fix, cause, {"answer": answer.message, "error": answer.error_type}
            )
    if answer.status >= 500 or answer.error_type in ("overloaded_error", "api_error"):
        return _transient(answer, target)
    return _unexpected(answer, target)


# ---------------------------------------------------------------------------------------------
# Connections


_DNS_MARKERS = ("NameResolutionError", "Name or service not known", "nodename nor servname", "getaddrinfo")


def connection_cause(exc: BaseException) -> str:
    """`dns`, `tls`, `timeout`, `refused`, `dropped` or `connect`: what kind of failure `exc` is."""
    import requests

    text = repr(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout"
    if any(m in text for m in _DNS_MARKERS):
        return "dns"
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "refused"
    if "RemoteDisconnected" in text or "Connection aborted" in text or "ConnectionResetError" in text:
        return "dropped"
    return "connect"


def explain_connection(exc: BaseException, url: str, *, platform: str, region: str | None) -> Finding:
    """Why `url` could not be reached, in words, with the usual fixes."""
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or url
    cause = connection_cause(exc)
    details = {"url": url, "error": f"{type(exc).__name__}: {exc}"[:500]}
    if cause == "dns":
        wrong = (
            region is not None
            and region in host
            and (
                (platform == "vertex" and region not in VERTEX_LOCATIONS)
                or (platform == "bedrock" and region not in aws_regions())
            )
        )
        if wrong and region is not None:
            known = VERTEX_LOCATIONS if platform == "vertex" else aws_regions()
            near = closest(region, known)
            var = "CLOUD_ML_REGION" if platform == "vertex" else "AWS_REGION"
            return Finding(
                Verdict.FAIL,
                f"No such host `{host}`: `{region}` is not a region of "
                f"{'Vertex AI' if platform == 'vertex' else 'AWS'}."
                + (f" Did you mean `{near}`?" if near else ""),
                f"Set {var} to a real region" + (f", e.g. `{near}`." if near else "."),
                "wrong-region",
                details,
            )
        return Finding(
            Verdict.FAIL,
            f"Cannot resolve the host `{host}` (DNS): the name is wrong, or this machine has no DNS/"
            "internet access.",
            "Check the base URL variable (ANTHROPIC_*_BASE_URL) for typos; behind a corporate network, "
            "set HTTPS_PROXY.",
            "dns",
            details,
        )
    if cause == "tls":
        return Finding(
            Verdict.FAIL,
            f"The TLS handshake with `{host}` failed (certificate not trusted or a TLS-inspecting proxy).",
            "Give the proxy's CA certificate to Claude Code with NODE_EXTRA_CA_CERTS (and to cloudgate "
            "with REQUESTS_CA_BUNDLE); for a plain-HTTP gateway use an http:// base URL.",
            "tls",
            details,
        )
    if cause == "timeout":
        return Finding(
            Verdict.FAIL,
            f"`{host}` did not answer in time: a firewall drops the traffic, or a proxy is needed.",
            "Set HTTPS_PROXY if your network requires a proxy; check firewall rules for outbound HTTPS.",
            "timeout",
            details,
        )
    if cause == "refused":
        return Finding(
            Verdict.FAIL,
            f"Nothing is listening at `{url}` (connection refused).",
            "Start the gateway/proxy (`cloudgate serve`), or fix the port in the base URL.",
            "refused",
            details,
        )
    return Finding(
        Verdict.FAIL,
        f"The connection to `{host}` failed: {details['error']}",
        "Check the base URL and the network path (proxy, firewall).",
        cause,
        details,
    )
