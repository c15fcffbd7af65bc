"""The Bedrock front door: InvokeModel, InvokeModelWithResponseStream, CountTokens, and the
inference-profile calls Claude Code makes at start-up.

Served under `/bedrock/...` (the prefix in Claude Code's proxy instructions, so
`ANTHROPIC_BEDROCK_BASE_URL=<gateway>/bedrock` works unchanged) and at the root. Model ids are
read from the raw path: they arrive percent-encoded (`:` as `%3A`, an ARN's `/` as `%2F`), and a
decoded `/` would split the path. Errors take AWS's shape: an `x-amzn-ErrorType` header and a
`{"message": ...}` body.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import unquote

import orjson

from cloudgate.catalog import Catalog, bedrock_profile_prefix
from cloudgate.gateway.frontdoors.validation import check_fields, parse_object, split_betas
from cloudgate.gateway.types import Headers
from cloudgate.protocol.errors import GatewayError, aws_error_body
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat

WIRE = WireFormat.BEDROCK
PREFIXES = ("/bedrock/", "/model/", "/inference-profiles")

_MODEL_PATH = re.compile(
    rb"^(?:/bedrock)?/model/(?P<model>[^/]+)/(?P<action>invoke|invoke-with-response-stream|count-tokens)$"
)
_PROFILES_PATH = re.compile(rb"^(?:/bedrock)?/inference-profiles(?:/(?P<id>[^/]+))?/?$")
_ACCOUNT = "000000000000"  # profiles the gateway describes belong to no real AWS account
_EPOCH = "2025-01-01T00:00:00Z"


class BedrockPath:
    """The parts of a matched Bedrock runtime URL."""

    __slots__ = ("action", "model")

    def __init__(self, model: str, action: str) -> None:
        self.model = model
        self.action = action

    @property
    def operation(self) -> Operation:
        """Messages, or token counting."""
        return Operation.COUNT_TOKENS if self.action == "count-tokens" else Operation.MESSAGES


def match_path(raw_path: bytes) -> BedrockPath | None:
    """The model id and action of a Bedrock runtime path, or None."""
    match = _MODEL_PATH.match(raw_path)
    if match is None:
        return None
    return BedrockPath(unquote(match["model"].decode("latin-1")), match["action"].decode())


def match_profiles(raw_path: bytes) -> tuple[bool, str | None]:
    """(is an inference-profile path, the profile id or ARN asked for if any)."""
    match = _PROFILES_PATH.match(raw_path)
    if match is None:
        return False, None
    ident = match["id"]
    return True, unquote(ident.decode("latin-1")) if ident else None


def _malformed(problem: str) -> GatewayError:
    return GatewayError(
        400,
        f"Malformed input request: {problem}, please reformat your input and try again.",
        error_type="invalid_request_error",
    )


def _invoke_body(raw: bytes, where: BedrockPath) -> tuple[dict[str, Any], bytes]:
    """The invoke body (for count-tokens, the one wrapped inside the request) and its bytes."""
    if where.operation is Operation.MESSAGES:
        return parse_object(raw), raw
    doc = parse_object(raw)
    try:
        inner = base64.b64decode(doc["input"]["invokeModel"]["body"], validate=True)
    except (KeyError, TypeError, binascii.Error):
        raise _malformed("#/input/invokeModel/body: a base64-encoded invoke body is required") from None
    return parse_object(inner), inner


def parse_call(raw: bytes, headers: dict[str, str], where: BedrockPath) -> MessagesCall:
    """Decode and check a Bedrock-format request."""
    try:
        doc, invoke_raw = _invoke_body(raw, where)
    except GatewayError as err:
        if err.status == 400 and not err.message.startswith("Malformed"):
            raise _malformed(err.message) from None
        raise
    for extraneous in ("model", "stream"):
        if extraneous in doc:
            raise _malformed(f"#: extraneous key [{extraneous}] is not permitted")
    counting = where.operation is Operation.COUNT_TOKENS
    problems = check_fields(doc, need_model=False, need_max_tokens=not counting)
    version = doc.get("anthropic_version")
    if not counting and version is None:
        problems.insert(0, "#: required key [anthropic_version] not found")
    elif version is not None and (not isinstance(version, str) or not version.strip()):
        problems.insert(0, "#/anthropic_version: expected a non-empty string")
    body_betas = doc.get("anthropic_beta", [])
    if not isinstance(body_betas, list) or not all(isinstance(b, str) for b in body_betas):
        problems.append("#/anthropic_beta: expected type: JSONArray of strings")
        body_betas = []
    if problems:
        raise _malformed("; ".join(problems))
    # Bedrock reads betas from the body; Claude Code also sends some in the header. Keep both.
    betas = split_betas(headers.get("anthropic-beta"))
    betas += [b for b in body_betas if b not in betas]
    body = {k: v for k, v in doc.items() if k not in ("anthropic_version", "anthropic_beta")}
    return MessagesCall(
        operation=where.operation,
        model=where.model,
        body=body,
        stream=where.action == "invoke-with-response-stream",
        betas=betas,
        anthropic_version=headers.get("anthropic-version"),
        body_version=version,
        frontdoor=WIRE,
        raw_body=invoke_raw if not counting else b"",
    )


def error_response(err: GatewayError) -> tuple[int, bytes, Headers]:
    """The error as Bedrock would send it (upstream AWS errors verbatim)."""
    if err.raw_body is not None and err.raw_shape == "aws":
        name = err.headers.get("x-amzn-errortype") or err.aws_error()[1]
        status, body = err.status, err.raw_body
    else:
        status, name = err.aws_error()
        body = aws_error_body(err.message)
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"x-amzn-errortype", name.encode("latin-1")),
    ]
    retry_after = err.headers.get("retry-after")
    if retry_after:
        headers.append((b"retry-after", retry_after.encode("latin-1")))
    return status, body, headers


def inference_profiles(catalog: Catalog, region: str) -> list[dict[str, Any]]:
    """The system-defined inference profiles for the catalog's models, as Bedrock lists them."""
    prefixes = [bedrock_profile_prefix(region)]
    if "global" not in prefixes:
        prefixes.append("global")
    profiles = []
    for entry in catalog.entries:
        if not entry.bedrock:
            continue
        for prefix in prefixes:
            ident = f"{prefix}.{entry.bedrock}"
            profiles.append(
                {
                    "inferenceProfileName": f"{prefix.upper()} {entry.name}",
                    "description": f"Routes requests to {entry.name} across {prefix} regions.",
                    "createdAt": _EPOCH,
                    "updatedAt": _EPOCH,
                    "inferenceProfileArn": f"arn:aws:bedrock:{region}:{_ACCOUNT}:inference-profile/{ident}",
                    "models": [{"modelArn": f"arn:aws:bedrock:{region}::foundation-model/{entry.bedrock}"}],
                    "inferenceProfileId": ident,
                    "status": "ACTIVE",
                    "type": "SYSTEM_DEFINED",
                }
            )
    return profiles


def profiles_response(
    catalog: Catalog, region: str, ident: str | None, query: dict[str, str]
) -> tuple[int, bytes, Headers]:
    """`GET /inference-profiles` (paginated) or `GET /inference-profiles/{id}`."""
    profiles = inference_profiles(catalog, region)
    if ident is not None:
        for profile in profiles:
            if ident in (profile["inferenceProfileId"], profile["inferenceProfileArn"]):
                return 200, orjson.dumps(profile), [(b"content-type", b"application/json")]
        return error_response(GatewayError(404, f"Inference profile {ident} not found."))
    if query.get("type", "SYSTEM_DEFINED") != "SYSTEM_DEFINED":
        profiles = []  # the gateway defines no application profiles of its own
    start = int(query["nextToken"]) if query.get("nextToken", "").isdigit() else 0
    size = int(query["maxResults"]) if query.get("maxResults", "").isdigit() else 1000
    page = profiles[start : start + max(size, 1)]
    doc: dict[str, Any] = {"inferenceProfileSummaries": page}
    if start + len(page) < len(profiles):
        doc["nextToken"] = str(start + len(page))
    return 200, orjson.dumps(doc), [(b"content-type", b"application/json")]
