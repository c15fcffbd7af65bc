"""Amazon Bedrock runtime serving Claude: InvokeModel, its streaming form, CountTokens.

Paths are those of `https://bedrock-runtime.{region}.amazonaws.com`. Every failure comes in
AWS's shape (`x-amzn-ErrorType` header, `{"message": ...}` body). Body problems are worded the
way Bedrock's request schema words them ("Malformed input request: #: required key
[max_tokens] not found, please reformat your input and try again."); deeper problems (a bad
content block) keep the Messages API's own wording, as Bedrock passes the model's answer on.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from cloudgate.catalog import default_catalog
from cloudgate.catalog.betas import default_betas
from cloudgate.emulator.engine import Reply, message_json, new_id, stream_event_data
from cloudgate.emulator.faults import Fault, drops_connection, wait_before_first_byte
from cloudgate.emulator.vertex import BodyError, validate_body
from cloudgate.emulator.wire import DROP, AnyResponse, Request, Response, StreamResponse, json_response
from cloudgate.protocol.errors import aws_error_body, aws_stream_exception_type
from cloudgate.protocol.eventstream import encode_chunk, encode_exception
from cloudgate.protocol.sigv4 import (
    MISSING_TOKEN_MESSAGE,
    UNRECOGNIZED_CLIENT_MESSAGE,
    SigV4Error,
    has_sigv4,
    verify_sigv4,
)

if TYPE_CHECKING:
    from cloudgate.emulator.app import EmulatorState

_PATH = re.compile(r"^/model/(?P<model>.+)/(?P<op>invoke|invoke-with-response-stream|count-tokens)$")
_ARN = re.compile(
    r"^arn:aws(?:-[a-z-]+)?:bedrock:(?P<region>[a-z0-9-]*):(?P<account>\d*):"
    r"(?P<kind>inference-profile|application-inference-profile|foundation-model)/(?P<id>.+)$"
)
_PROFILE_PREFIX = re.compile(r"^(?P<geo>global|us|eu|apac|jp|au|us-gov|ca)\.")
# The region a SigV4 credential scope names: `Credential=AKID/20250101/eu-west-1/bedrock/aws4_request`.
_SCOPE_REGION = re.compile(r"\bCredential=[^/,\s]+/\d{8}/(?P<region>[a-z0-9-]+)/")
# A real endpoint's host names its region (`bedrock-runtime.eu-west-1.amazonaws.com`).
_HOST_REGION = re.compile(r"^bedrock(?:-runtime)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?::\d+)?$")
_DATE_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
BEDROCK_VERSION = "bedrock-2023-05-31"
MAX_PAYLOAD_BYTES = 20 * 1024 * 1024
INVALID_MODEL_MESSAGE = "The provided model identifier is invalid."
THROTTLED_MESSAGE = "Too many requests, please wait before trying again."
ACCESS_DENIED_MESSAGE = "You don't have access to the model with the specified model ID."
UNAVAILABLE_MESSAGE = "Bedrock is unable to process your request."
INTERNAL_MESSAGE = "The system encountered an unexpected error during processing. Try your request again."
NOT_READY_MESSAGE = (
    "Model is not ready to serve inference requests. The AWS SDK will automatically retry the operation."
)


@dataclass(slots=True, frozen=True)
class BedrockRoute:
    """The parts of a Bedrock runtime URL."""

    model_id: str  # percent-decoded: `us.anthropic.claude-...-v1:0` or an ARN
    op: str  # invoke, invoke-with-response-stream, count-tokens


def match_route(path: str) -> BedrockRoute | None:
    """Parse a (percent-decoded) path; None when it is not a Bedrock runtime endpoint."""
    m = _PATH.match(path)
    return None if m is None else BedrockRoute(m["model"], m["op"])


# ---------------------------------------------------------------------------------------------
# Errors


def aws_error(status: int, name: str, message: str) -> Response:
    """An AWS-shape error response."""
    return json_response(
        status,
        aws_error_body(message),
        {"x-amzn-errortype": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
         "x-amzn-requestid": str(uuid.uuid4())},
    )  # fmt: skip


def validation(message: str) -> Response:
    """400 ValidationException."""
    return aws_error(400, "ValidationException", message)


def malformed(detail: str) -> Response:
    """400 ValidationException in the wording of Bedrock's request-schema check."""
    return validation(f"Malformed input request: {detail}, please reformat your input and try again.")


def _fault_error(fault: Fault) -> tuple[int, str, str] | None:
    kind = fault.kind
    if kind in ("rate_limit", "rate_limit_array"):
        return fault.status or 429, "ThrottlingException", THROTTLED_MESSAGE
    if kind == "not_found":
        return 404, "ResourceNotFoundException", "Could not find the requested model."
    if kind == "permission_denied":
        return 403, "AccessDeniedException", ACCESS_DENIED_MESSAGE
    if kind == "unauthenticated":
        return 403, "UnrecognizedClientException", UNRECOGNIZED_CLIENT_MESSAGE
    if kind == "server_error":
        if fault.status == 503:
            return 503, "ServiceUnavailableException", UNAVAILABLE_MESSAGE
        return fault.status or 500, "InternalServerException", INTERNAL_MESSAGE
    if kind == "overloaded":
        # Anthropic's overloaded_error reaches Bedrock callers as 503 ServiceUnavailable;
        # status 429 picks ModelNotReadyException, the other retryable overload answer.
        if fault.status == 429:
            return 429, "ModelNotReadyException", NOT_READY_MESSAGE
        return fault.status or 503, "ServiceUnavailableException", UNAVAILABLE_MESSAGE
    return None


def fault_response(fault: Fault) -> Response | None:
    """How an error fault looks on Bedrock; None for kinds that shape the response instead."""
    error = _fault_error(fault)
    return None if error is None else aws_error(*error)


# Exception types botocore's InvokeModelWithResponseStream shape knows.
_STREAM_EXCEPTIONS = {
    "ThrottlingException": "throttlingException",
    "InternalServerException": "internalServerException",
    "ServiceUnavailableException": "serviceUnavailableException",
    "ValidationException": "validationException",
}


def stream_exception(fault: Fault) -> bytes:
    """The exception frame a mid-stream fault ends the stream with."""
    error = _fault_error(fault)
    name, message = (error[1], error[2]) if error else ("ModelStreamErrorException", INTERNAL_MESSAGE)
    kind = _STREAM_EXCEPTIONS.get(name, aws_stream_exception_type("ModelStreamErrorException"))
    return encode_exception(kind, message)


# ---------------------------------------------------------------------------------------------
# Regions
#
# Every Bedrock call reaches the emulator's one base URL, so the host cannot say the region as
# it does on AWS; the SigV4 credential scope can, and it is what the signature was made for.


def host_region(req: Request) -> str | None:
    """The region a real Bedrock host names (`bedrock-runtime.{region}.amazonaws.com`), if any."""
    m = _HOST_REGION.match(req.headers.get("host", ""))
    return None if m is None else m["region"]


def request_region(req: Request, state: EmulatorState) -> str:
    """The region a request is served in: its SigV4 scope's, else its host's, else `aws_region`."""
    m = _SCOPE_REGION.search(req.headers.get("authorization", "")) if has_sigv4(req.headers) else None
    return (m["region"] if m else None) or host_region(req) or state.config.aws_region


def geography_serves(geo: str, region: str) -> bool:
    """Whether an inference-profile geography (`us`, `eu`, `apac`, `jp`, ...) serves `region`."""
    if geo == "global":
        return True
    if geo == "jp":
        return region in ("ap-northeast-1", "ap-northeast-3")
    if geo == "au":
        return region in ("ap-southeast-2", "ap-southeast-4")
    if geo == "apac":
        return region.startswith("ap-")
    if geo == "us":
        return region.startswith("us-") and not region.startswith("us-gov-")
    return region.startswith(f"{geo}-")  # eu-*, us-gov-*, ca-*


def profile_serves_region(model_id: str, region: str) -> bool:
    """Whether a system inference profile id (`eu.anthropic...`) may be invoked from `region`.

    A geography profile answers only in the regions of its geography; `global.` everywhere.
    Ids without a geography prefix are not profiles and always pass.
    """
    m = _PROFILE_PREFIX.match(model_id)
    return m is None or geography_serves(m["geo"], region)


# ---------------------------------------------------------------------------------------------
# Auth


def authenticate(req: Request, state: EmulatorState) -> Response | None:
    """None when the caller may go on, else the AWS error (SigV4 or a Bedrock API key)."""
    config = state.config
    if not config.require_auth:
        return None
    token = req.bearer_token()
    if token is not None:
        if token in config.bedrock_api_keys:
            return None
        return aws_error(403, "UnrecognizedClientException", UNRECOGNIZED_CLIENT_MESSAGE)
    if "authorization" not in req.headers:
        return aws_error(403, "MissingAuthenticationTokenException", MISSING_TOKEN_MESSAGE)
    try:
        identity = verify_sigv4(
            req.method,
            req.raw_path,
            req.query,
            req.headers,
            req.body,
            secret_for=config.aws_secret,
            service="bedrock",
            # The scope's region is the one signed for; a real host must agree with it.
            region=host_region(req),
        )
    except SigV4Error as exc:
        return aws_error(exc.status, exc.code, exc.message)
    if identity.session_token != config.aws_session_token(identity.access_key_id):
        return aws_error(403, "UnrecognizedClientException", UNRECOGNIZED_CLIENT_MESSAGE)
    return None


# ---------------------------------------------------------------------------------------------
# Models


@dataclass(slots=True, frozen=True)
class ResolvedModel:
    """What a model id names: the base id and the Anthropic id the answer reports."""

    base_id: str
    anthropic_id: str


def resolve_model(model_id: str, state: EmulatorState, region: str) -> ResolvedModel | Response:
    """The model behind a Bedrock model id or ARN in `region`, or the error Bedrock answers for it."""
    config = state.config
    via_profile = False
    target = model_id
    arn = _ARN.match(model_id)
    if model_id.startswith("arn:"):
        if arn is None:
            return validation(INVALID_MODEL_MESSAGE)
        if arn["kind"] == "application-inference-profile":
            mapped = config.application_profiles.get(model_id) or config.application_profiles.get(arn["id"])
            if mapped is None:
                return aws_error(404, "ResourceNotFoundException", "Application inference profile not found.")
            target, via_profile = mapped, True
        else:
            target = arn["id"]
    elif model_id in config.application_profiles:
        target, via_profile = config.application_profiles[model_id], True
    if target.startswith("arn:"):  # an application profile mapped onto another ARN
        inner = _ARN.match(target)
        if inner is None or inner["kind"] == "application-inference-profile":
            return validation(INVALID_MODEL_MESSAGE)
        target = inner["id"]
    if not profile_serves_region(target, region):
        # A profile of another geography does not exist in this region.
        return validation(INVALID_MODEL_MESSAGE)
    base = _PROFILE_PREFIX.sub("", target)
    via_profile = via_profile or base != target
    if not base.startswith("anthropic."):
        catalog_entry = default_catalog().lookup(base)
        if catalog_entry is None or not catalog_entry.bedrock:
            return validation(INVALID_MODEL_MESSAGE)
        base = catalog_entry.bedrock
    entry = default_catalog().lookup(base)
    if entry is None and (config.strict_models or not base.startswith("anthropic.claude-")):
        return validation(INVALID_MODEL_MESSAGE)
    if not via_profile and (entry is None or not entry.bedrock_on_demand):
        return validation(
            f"Invocation of model ID {base} with on-demand throughput isn't supported. Retry your "
            "request with the ID or ARN of an inference profile that contains this model."
        )
    return ResolvedModel(base, default_catalog().anthropic_id(base))


# ---------------------------------------------------------------------------------------------
# Body


def check_body(body: Any) -> Response | None:
    """None when an InvokeModel body is acceptable, else the ValidationException."""
    if not isinstance(body, dict):
        found = "JSONArray" if isinstance(body, list) else "invalid JSON" if body is None else "a value"
        return malformed(f"expected type: JSONObject, found: {found}")
    for key in ("model", "stream"):
        if key in body:
            return malformed(f"#: extraneous key [{key}] is not permitted")
    for key in ("anthropic_version", "max_tokens", "messages"):
        if key not in body:
            return malformed(f"#: required key [{key}] not found")
    version = body["anthropic_version"]
    if not isinstance(version, str) or not (version == BEDROCK_VERSION or _DATE_VERSION.match(version)):
        return malformed(f"#/anthropic_version: {orjson.dumps(version).decode()} is not a valid enum value")
    betas = body.get("anthropic_beta")
    if betas is not None:
        if not isinstance(betas, list) or not all(isinstance(b, str) for b in betas):
            return malformed("#/anthropic_beta: expected type: JSONArray")
        accepted = default_betas().for_platform("bedrock").accepted
        bad = [b for b in betas if b not in accepted]
        if bad:
            return validation(f"invalid beta flag: {', '.join(bad)}")
    try:
        validate_body(body, count_tokens=False)
    except BodyError as exc:
        return validation(str(exc))
    return None


def _parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


# ---------------------------------------------------------------------------------------------
# Handlers


async def handle(req: Request, route: BedrockRoute, state: EmulatorState) -> AnyResponse:
    """Serve one invoke / invoke-with-response-stream / count-tokens call."""
    if req.method != "POST":
        return aws_error(405, "UnknownOperationException", "")
    denied = authenticate(req, state)
    if denied is not None:
        return denied
    if len(req.body) > MAX_PAYLOAD_BYTES:
        return validation(f"Input is too long for requested model. Max size is {MAX_PAYLOAD_BYTES} bytes.")
    region = request_region(req, state)
    stream = route.op == "invoke-with-response-stream"
    faults = state.faults.take(
        path=req.path,
        model=route.model_id,
        location=region,
        stream=stream,
        platform="bedrock",
    )
    delay = await wait_before_first_byte(faults)
    if drops_connection(faults):
        return DROP
    mid_stream = next((f for f in faults if stream and f.after_events is not None and _fault_error(f)), None)
    for fault in faults:
        error = fault_response(fault)
        if error is not None and fault is not mid_stream:
            return error
    resolved = resolve_model(route.model_id, state, region)
    if isinstance(resolved, Response):
        return resolved
    if state.config.bedrock_access_denied(resolved.base_id):
        return aws_error(403, "AccessDeniedException", ACCESS_DENIED_MESSAGE)
    if route.op == "count-tokens":
        return count_tokens(req, state)
    body = _parse_json(req.body)
    problem = check_body(body)
    if problem is not None:
        return problem
    reply = state.engine.reply(
        body,
        model=resolved.anthropic_id,
        # The real prompt cache is per account and region: failing over to another region misses.
        cache_scope=f"bedrock/{state.config.aws_account_id}/{region}/{resolved.base_id}",
        tool_id_prefix="toolu_bdrk_",
    )
    msg_id = new_id("msg_bdrk_")
    cut = next((f for f in faults if f.kind == "cut_stream"), None)
    if stream:
        return _stream(reply, msg_id, resolved.anthropic_id, state, cut, mid_stream, delay)
    response = json_response(
        200, message_json(reply, msg_id=msg_id, model=resolved.anthropic_id), _invoke_headers(reply, delay)
    )
    if cut is not None:
        response.cut_at = len(response.body) // 2
    return response


def _invoke_headers(reply: Reply, delay: float) -> dict[str, str]:
    usage = reply.usage
    headers = {
        "x-amzn-requestid": str(uuid.uuid4()),
        "x-amzn-bedrock-invocation-latency": str(_latency_ms(reply, delay)),
        "x-amzn-bedrock-input-token-count": str(usage.input_tokens),
        "x-amzn-bedrock-output-token-count": str(usage.output_tokens),
    }
    if usage.cache_read:
        headers["x-amzn-bedrock-cache-read-input-token-count"] = str(usage.cache_read)
    created = usage.cache_creation_5m + usage.cache_creation_1h
    if created:
        headers["x-amzn-bedrock-cache-write-input-token-count"] = str(created)
    return headers


def _latency_ms(reply: Reply, delay: float) -> int:
    # A plausible figure: a base cost plus a little per output token, plus injected delay.
    return 40 + reply.usage.output_tokens * 2 + int(delay * 1000)


def _stream(
    reply: Reply,
    msg_id: str,
    model: str,
    state: EmulatorState,
    cut: Fault | None,
    mid_stream: Fault | None,
    delay: float,
) -> StreamResponse:
    events = stream_event_data(reply, msg_id=msg_id, model=model)
    usage = reply.usage
    metrics: dict[str, int] = {
        "inputTokenCount": usage.input_tokens,
        "outputTokenCount": usage.output_tokens,
        "invocationLatency": _latency_ms(reply, delay) + int(state.config.stream_delay * 1000 * len(events)),
        "firstByteLatency": 30 + int(delay * 1000),
    }
    if usage.cache_read or usage.cache_creation_5m or usage.cache_creation_1h:
        metrics["cacheReadInputTokenCount"] = usage.cache_read
        metrics["cacheWriteInputTokenCount"] = usage.cache_creation_5m + usage.cache_creation_1h
    events[-1] = {**events[-1], "amazon-bedrock-invocationMetrics": metrics}
    frames = [encode_chunk(orjson.dumps(e)) for e in events]
    if mid_stream is not None:
        frames = [*frames[: max(0, mid_stream.after_events or 0)], stream_exception(mid_stream)]
    cut_after = None if cut is None else max(0, cut.after_events if cut.after_events is not None else 3)
    headers = {
        "content-type": "application/vnd.amazon.eventstream",
        "x-amzn-requestid": str(uuid.uuid4()),
        "x-amzn-bedrock-content-type": "application/json",
    }
    return StreamResponse(frames, headers, delay=state.config.stream_delay, cut_after=cut_after)


def count_tokens(req: Request, state: EmulatorState) -> Response:
    """CountTokens: the input tokens the same body would use on InvokeModel (or Converse)."""
    doc = _parse_json(req.body)
    source = doc.get("input") if isinstance(doc, dict) else None
    if not isinstance(source, dict) or not source:
        return malformed("#: required key [input] not found")
    invoke = source.get("invokeModel")
    if isinstance(invoke, dict):
        try:
            raw = base64.b64decode(str(invoke.get("body", "")), validate=True)
        except (binascii.Error, ValueError):
            return validation("Invalid base64 in input.invokeModel.body.")
        body = _parse_json(raw)
        problem = check_body(body)
        if problem is not None:
            return problem
        return json_response(200, {"inputTokens": state.engine.count_tokens(body)})
    converse = source.get("converse")
    if isinstance(converse, dict):
        messages = converse.get("messages")
        if not isinstance(messages, list):
            return validation("input.converse.messages: Field required")
        counted = {"messages": messages, "system": converse.get("system")}
        return json_response(200, {"inputTokens": state.engine.count_tokens(counted)})
    return validation("input: exactly one of invokeModel or converse is required.")
