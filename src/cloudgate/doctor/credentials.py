"""Getting the credentials Claude Code would use, and saying whose they are.

google-auth and botocore read their inputs (GOOGLE_APPLICATION_CREDENTIALS, AWS_PROFILE, HOME,
...) from the process environment. Claude Code's effective environment also includes its
settings files' `env`, so the lookups run inside `scoped_environ`, which shows them exactly
that environment for the duration of the call.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cloudgate.clientconfig import ResolvedConfig
from cloudgate.clientconfig.resolve import mask
from cloudgate.config.claude_env import parse_custom_headers
from cloudgate.doctor.model import Finding, Verdict

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_HELPER_TIMEOUT = 30.0
_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def scoped_environ(env: Mapping[str, str]) -> Iterator[None]:
    """Make `os.environ` exactly `env` for the block (the credential libraries read only it)."""
    from google.auth.compute_engine import _metadata

    with _ENV_LOCK:
        saved = dict(os.environ)
        saved_host = _metadata._GCE_METADATA_HOST
        os.environ.clear()
        os.environ.update(env)
        # google-auth reads the metadata host once, at import; the environment may name another.
        host = env.get("GCE_METADATA_HOST") or env.get("GCE_METADATA_ROOT")
        if host:
            _metadata._GCE_METADATA_HOST = host
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
            _metadata._GCE_METADATA_HOST = saved_host


def custom_headers(env: Mapping[str, str]) -> dict[str, str]:
    """The headers ANTHROPIC_CUSTOM_HEADERS adds to every request Claude Code sends."""
    return parse_custom_headers(env.get("ANTHROPIC_CUSTOM_HEADERS", ""))


@dataclass(slots=True)
class Credentials:
    """What the probes send: fixed headers, or AWS credentials to sign each request with."""

    headers: dict[str, str] = field(default_factory=dict)
    aws: Any = None  # botocore ReadOnlyCredentials: requests are SigV4-signed for their region
    project: str | None = None  # the project the Google credentials name, if any
    identity: str | None = None  # IAM member for fixes: `serviceAccount:x@...`, `user:x@...`

    def for_request(self, method: str, url: str, body: bytes, region: str | None) -> dict[str, str]:
        """The auth headers of one request (a SigV4 signature covers its URL and body)."""
        headers = dict(self.headers)
        if self.aws is not None:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest

            req = AWSRequest(method=method, url=url, data=body, headers={"content-type": "application/json"})
            SigV4Auth(self.aws, "bedrock", region or "us-east-1").add_auth(req)
            headers.update({k: str(v) for k, v in req.headers.items()})
        return headers


@dataclass(slots=True)
class CredentialCheck:
    """The credentials check's finding, and the credentials when they were obtained."""

    finding: Finding
    credentials: Credentials | None = None


def key_in_env(env: Mapping[str, str], var: str, what: str, header: str, scheme: str = "") -> CredentialCheck:
    """A key taken from variable `var` and sent in `header` (after `scheme`), with the custom headers."""
    secret = env[var]
    return CredentialCheck(
        Finding(Verdict.OK, f"{what} in {var} ({mask(secret)}).", details={"source": var}),
        Credentials({header: f"{scheme}{secret}", **custom_headers(env)}),
    )


def _gateway_key_headers(env: Mapping[str, str]) -> dict[str, str]:
    headers = custom_headers(env)
    if env.get("ANTHROPIC_AUTH_TOKEN"):
        headers.setdefault("Authorization", f"Bearer {env['ANTHROPIC_AUTH_TOKEN']}")
    return headers


def skip_auth_credentials(platform: str, env: Mapping[str, str]) -> CredentialCheck:
    """CLAUDE_CODE_SKIP_*_AUTH: no cloud credentials, only what the gateway may need (its key)."""
    var = "CLAUDE_CODE_SKIP_VERTEX_AUTH" if platform == "vertex" else "CLAUDE_CODE_SKIP_BEDROCK_AUTH"
    headers = _gateway_key_headers(env)
    if platform == "bedrock" and env.get("AWS_BEARER_TOKEN_BEDROCK"):
        headers.setdefault("Authorization", f"Bearer {env['AWS_BEARER_TOKEN_BEDROCK']}")
    sent = ", ".join(sorted(headers)) or "no credentials at all"
    if headers:
        return CredentialCheck(
            Finding(
                Verdict.OK,
                f"{var} is set: Claude Code sends no cloud credentials, the gateway holds them "
                f"(it sends {sent}).",
                details={"source": var, "headers": sorted(headers)},
            ),
            Credentials(headers),
        )
    return CredentialCheck(
        Finding(
            Verdict.WARN,
            f"{var} is set: the gateway holds the cloud credentials, and Claude Code sends no key to it.",
            "If the gateway needs a key, set ANTHROPIC_AUTH_TOKEN (or ANTHROPIC_CUSTOM_HEADERS).",
            "no-gateway-key",
            {"source": var},
        ),
        Credentials({}),
    )


# ---------------------------------------------------------------------------------------------
# Google


def _describe_google(creds: Any, env: Mapping[str, str]) -> tuple[str, str | None]:
    """Whose Google credentials these are, and the IAM member to grant roles to."""
    kind = type(creds).__module__ + "." + type(creds).__name__
    email = getattr(creds, "service_account_email", None)
    file = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if "compute_engine" in kind:
        return f"the metadata server's service account `{email}`", f"serviceAccount:{email}"
    if "service_account" in kind:
        return f"service account `{email}` (key file {file or 'from ADC'})", f"serviceAccount:{email}"
    if "oauth2.credentials" in kind:
        account = getattr(creds, "account", "") or ""
        who = f"`{account}`" if account else "a user"
        origin = file or "gcloud's application-default login"
        return f"{who}, signed in with {origin}", (f"user:{account}" if account else None)
    if "impersonated" in kind:
        target = getattr(creds, "signer_email", "") or getattr(creds, "_target_principal", "")
        return f"impersonating `{target}`", None
    if "external_account" in kind or "identity_pool" in kind or "aws" in kind:
        return "workload identity federation (external account)", None
    return type(creds).__name__, None


def google_credentials(env: Mapping[str, str]) -> CredentialCheck:
    """Application Default Credentials as Claude Code finds them, refreshed once to prove them."""
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests

    with scoped_environ(env):
        try:
            creds, project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        except google.auth.exceptions.DefaultCredentialsError as exc:
            return CredentialCheck(
                Finding(
                    Verdict.FAIL,
                    f"No Google credentials found: {exc}",
                    "Run `gcloud auth application-default login`, or point GOOGLE_APPLICATION_CREDENTIALS "
                    "at a service-account key file; behind a gateway that holds them, set "
                    "CLAUDE_CODE_SKIP_VERTEX_AUTH=1.",
                    "no-credentials",
                )
            )
        try:
            creds.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
        except google.auth.exceptions.GoogleAuthError as exc:
            who, _ = _describe_google(creds, env)
            return CredentialCheck(
                Finding(
                    Verdict.FAIL,
                    f"Google credentials of {who} were found but no access token could be had: {exc}",
                    "Log in again (`gcloud auth application-default login`) or use a valid key file; "
                    "a revoked key or a deleted service account fails like this.",
                    "token-refused",
                    {"error": str(exc)[:500]},
                )
            )
        who, identity = _describe_google(creds, env)
    return CredentialCheck(
        Finding(
            Verdict.OK,
            f"Google credentials of {who}; an access token was obtained.",
            details={"identity": identity, "project": project, "type": type(creds).__name__},
        ),
        Credentials(
            {"Authorization": f"Bearer {creds.token}", **custom_headers(env)},
            project=project or None,
            identity=identity,
        ),
    )


# ---------------------------------------------------------------------------------------------
# AWS


_AWS_SOURCES = {
    "env": "the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables",
    "shared-credentials-file": "~/.aws/credentials",
    "config-file": "~/.aws/config",
    "sso": "AWS SSO (IAM Identity Center)",
    "assume-role": "an assumed role",
    "assume-role-with-web-identity": "a web identity (assume role)",
    "iam-role": "the instance's IAM role (metadata service)",
    "container-role": "the container's task role",
    "custom-process": "a credential_process",
}


def aws_credentials(env: Mapping[str, str]) -> CredentialCheck:
    """botocore's credential chain, or a Bedrock API key, as Claude Code would use them."""
    import botocore.exceptions
    import botocore.session

    if env.get("AWS_BEARER_TOKEN_BEDROCK"):
        return key_in_env(env, "AWS_BEARER_TOKEN_BEDROCK", "A Bedrock API key", "Authorization", "Bearer ")
    profile = env.get("AWS_PROFILE") or None
    fix = (
        "Run `aws configure` (or `aws sso login --profile NAME` and set AWS_PROFILE), set "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a Bedrock API key in AWS_BEARER_TOKEN_BEDROCK."
    )
    with scoped_environ(env):
        try:
            found = botocore.session.Session(profile=profile).get_credentials()
            frozen = found.get_frozen_credentials() if found is not None else None
        except botocore.exceptions.ProfileNotFound:
            return CredentialCheck(
                Finding(Verdict.FAIL, f"AWS profile `{profile}` does not exist.", fix, "no-credentials")
            )
        except botocore.exceptions.BotoCoreError as exc:
            return CredentialCheck(
                Finding(
                    Verdict.FAIL,
                    f"AWS credentials could not be loaded: {exc}",
                    "If you use SSO, run `aws sso login`"
                    + (f" --profile {profile}" if profile else "")
                    + ".",
                    "token-refused",
                )
            )
    if found is None or frozen is None:
        return CredentialCheck(Finding(Verdict.FAIL, "No AWS credentials found.", fix, "no-credentials"))
    source = _AWS_SOURCES.get(found.method, found.method)
    shown = frozen.access_key[:4] + "…" + frozen.access_key[-4:]
    return CredentialCheck(
        Finding(
            Verdict.OK,
            f"AWS access key {shown} from {source}" + (f" (profile `{profile}`)" if profile else "") + ".",
            details={"access_key_id": shown, "source": found.method, "profile": profile},
        ),
        Credentials(custom_headers(env), aws=frozen),
    )


# ---------------------------------------------------------------------------------------------
# Anthropic


def anthropic_credentials(config: ResolvedConfig, env: Mapping[str, str]) -> CredentialCheck:
    """The key (or token, or helper's output) Claude Code sends to the Anthropic API, in its order."""
    extra = custom_headers(env)
    if config.auth == "auth-token":
        return key_in_env(env, "ANTHROPIC_AUTH_TOKEN", "A bearer token", "Authorization", "Bearer ")
    if config.auth == "api-key":
        return key_in_env(env, "ANTHROPIC_API_KEY", "An API key", "x-api-key")
    if config.auth == "api-key-helper" and config.api_key_helper:
        return _run_helper(config.api_key_helper, env, extra)
    if extra:
        return CredentialCheck(
            Finding(
                Verdict.OK,
                f"Credentials in ANTHROPIC_CUSTOM_HEADERS ({', '.join(sorted(extra))}).",
                details={"source": "ANTHROPIC_CUSTOM_HEADERS"},
            ),
            Credentials(extra),
        )
    return CredentialCheck(
        Finding(
            Verdict.WARN,
            "No API key is configured; Claude Code would use a claude.ai login (`/login`), which "
            "doctor cannot test.",
            "To use the API, set ANTHROPIC_API_KEY (or an apiKeyHelper); to use a gateway, "
            "ANTHROPIC_BASE_URL and ANTHROPIC_AUTH_TOKEN.",
            "no-credentials",
        )
    )


def _run_helper(command: str, env: Mapping[str, str], extra: dict[str, str]) -> CredentialCheck:
    fix = "Run the helper by hand and fix it: it must print the key on stdout and exit 0."
    try:
        done = subprocess.run(  # noqa: S602 - the user's own helper, run the way Claude Code runs it
            command, shell=True, capture_output=True, text=True, timeout=_HELPER_TIMEOUT, env=dict(env)
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CredentialCheck(
            Finding(Verdict.FAIL, f"apiKeyHelper `{command}` did not run: {exc}", fix, "helper-failed")
        )
    key = done.stdout.strip()
    if done.returncode != 0 or not key:
        return CredentialCheck(
            Finding(
                Verdict.FAIL,
                f"apiKeyHelper `{command}` exited {done.returncode} and printed "
                f"{'a key' if key else 'no key'}: {done.stderr.strip()[:300]}",
                fix,
                "helper-failed",
            )
        )
    return CredentialCheck(
        Finding(
            Verdict.OK, f"apiKeyHelper `{command}` printed a key ({mask(key)}).", details={"source": "helper"}
        ),
        # Claude Code sends the helper's output both ways.
        Credentials({"x-api-key": key, "Authorization": f"Bearer {key}", **custom_headers(env)}),
    )
