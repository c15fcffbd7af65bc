"""Vertex AI's Claude endpoints: URL grammar, auth, catalog checks, body validation, errors.

Transport-level failures (auth, quota, unknown model) come in Google's envelope; model-level
failures (a bad body, an unknown beta, overload) in Anthropic's shape, as on the real service.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from cloudgate.catalog import default_catalog
from cloudgate.catalog.betas import default_betas
from cloudgate.emulator.engine import message_json, new_id, stream_events
from cloudgate.emulator.faults import Fault, drops_connection, wait_before_first_byte
from cloudgate.emulator.wire import DROP, AnyResponse, Request, Response, StreamResponse, json_response
from cloudgate.protocol.errors import anthropic_error_body, google_error_body

if TYPE_CHECKING:
    from cloudgate.emulator.app import EmulatorState

log = logging.getLogger("cloudgate.emulator")

_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/anthropic/models/(?P<model>[^/:]+):(?P<method>rawPredict|streamRawPredict)$"
)
COUNT_TOKENS_MODEL = "count-tokens"
MAX_PAYLOAD_BYTES = 30 * 1024 * 1024  # Vertex's documented request limit for Claude

UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)


@dataclass(slots=True, frozen=True)
class VertexRoute:
    """The parts of a Vertex rawPredict URL."""

    project: str
    location: str
    model: str
    method: str

    @property
    def resource(self) -> str:
        """`projects/P/locations/L/publishers/anthropic/models/M`."""
        return f"projects/{self.project}/locations/{self.location}/publishers/anthropic/models/{self.model}"

    @property
    def is_count_tokens(self) -> bool:
        """Whether this is the count-tokens endpoint."""
        return self.model == COUNT_TOKENS_MODEL


def match_route(path: str) -> VertexRoute | None:
    """Parse a (percent-decoded) path; None when it is not a Vertex Claude endpoint."""
    m = _PATH.match(path)
    if m is None:
        return None
    return VertexRoute(m["project"], m["location"], m["model"], m["method"])


# ---------------------------------------------------------------------------------------------
# Error bodies


def google_error(status: int, message: str, google_status: str | None = None) -> Response:
    """A Google-envelope error response."""
    return json_response(status, google_error_body(status, message, google_status))


def anthropic_error(status: int, error_type: str, message: str) -> Response:
    """An Anthropic-shape error response, with a Vertex request id."""
    return json_response(
        status, anthropic_error_body(error_type, message), {"request-id": new_id("req_vrtx_")}
    )


def not_found(resource: str) -> Response:
    """404: the publisher model does not exist here or the project may not use it."""
    return google_error(
        404,
        f"Publisher Model `{resource}` was not found or your project does not have access to it. "
        "Please ensure you are using a valid model version. For more information, see: "
        "https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/versioning",
    )


def permission_denied(resource: str) -> Response:
    """403: the caller lacks aiplatform.endpoints.predict."""
    return google_error(
        403,
        f"Permission 'aiplatform.endpoints.predict' denied on resource "
        f"'//aiplatform.googleapis.com/{resource}' (or it may not exist).",
    )


def service_disabled(project: str) -> Response:
    """403: the Vertex AI API is not enabled in the project (SERVICE_DISABLED)."""
    console = "https://console.developers.google.com/apis/api/aiplatform.googleapis.com/overview"
    message = (
        f"Vertex AI API has not been used in project {project} before or it is disabled. Enable it by "
        f"visiting {console}?project={project} then retry. If you enabled this API recently, wait a "
        "few minutes for the action to propagate to our systems and retry."
    )
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "SERVICE_DISABLED",
        "domain": "googleapis.com",
        "metadata": {"service": "aiplatform.googleapis.com", "consumer": f"projects/{project}"},
    }
    error = {"code": 403, "message": message, "status": "PERMISSION_DENIED", "details": [info]}
    return json_response(403, {"error": error})


def quota_message(model: str) -> str:
    """The RESOURCE_EXHAUSTED message for a model."""
    base = model.split("@", 1)[0]
    return (
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
        f"with base model: anthropic-{base}. Please submit a quota increase request. "
        "https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai."
    )


def fault_response(fault: Fault, route: VertexRoute) -> Response | None:
    """How an error fault looks on Vertex; None for kinds that shape the response instead."""
    kind = fault.kind
    if kind in ("rate_limit", "rate_limit_array"):
        status = fault.status or 429
        body = google_error_body(status, quota_message(route.model), "RESOURCE_EXHAUSTED")
        if kind == "rate_limit_array":
            body = b"[" + body + b"]"
        return json_response(status, body)
    if kind == "not_found":
        return not_found(route.resource)
    if kind == "permission_denied":
        return permission_denied(route.resource)
    if kind == "unauthenticated":
        return google_error(401, UNAUTHENTICATED_MESSAGE)
    if kind == "server_error":
        status = fault.status or 500
        message = "Internal error encountered." if status == 500 else "The service is currently unavailable."
        return google_error(status, message)
    if kind == "overloaded":
        return anthropic_error(fault.status or 529, "overloaded_error", "Overloaded")
    return None


# ---------------------------------------------------------------------------------------------
# Validation (messages worded like the real API's pydantic errors)


class BodyError(Exception):
    """A request body the model endpoint rejects with 400 invalid_request_error."""


_BLOCK_TYPES = (
    "text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
    "server_tool_use", "web_search_tool_result", "search_result", "container_upload",
    "mcp_tool_use", "mcp_tool_result", "tool_reference", "code_execution_tool_result",
)  # fmt: skip
_REQUIRED_BLOCK_FIELDS: dict[str, tuple[tuple[str, type | tuple[type, ...], str], ...]] = {
    "text": (("text", str, "a valid string"),),
    "image": (("source", dict, "a valid dictionary"),),
    "document": (("source", dict, "a valid dictionary"),),
    "tool_use": (
        ("id", str, "a valid string"),
        ("name", str, "a valid string"),
        ("input", dict, "a valid dictionary"),
    ),
    "tool_result": (("tool_use_id", str, "a valid string"),),
    "thinking": (("thinking", str, "a valid string"), ("signature", str, "a valid string")),
    "redacted_thinking": (("data", str, "a valid string"),),
}


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, dict):
        raise BodyError(f"{where}: Input should be a valid dictionary or object to extract fields from")
    kind = block.get("type")
    if not isinstance(kind, str):
        raise BodyError(f"{where}: Unable to extract tag using discriminator 'type'")
    if kind not in _BLOCK_TYPES:
        expected = ", ".join(f"'{t}'" for t in _BLOCK_TYPES)
        raise BodyError(
            f"{where}: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
            + expected
        )
    for name, typ, wording in _REQUIRED_BLOCK_FIELDS.get(kind, ()):
        if name not in block:
            raise BodyError(f"{where}.{kind}.{name}: Field required")
        if not isinstance(block[name], typ):
            raise BodyError(f"{where}.{kind}.{name}: Input should be {wording}")
    if kind == "tool_result" and "content" in block and not isinstance(block["content"], str | list):
        raise BodyError(f"{where}.tool_result.content: Input should be a valid list")


def _check_content(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise BodyError(f"{where}: Input should be a valid list")
    for i, block in enumerate(content):
        _check_block(block, f"{where}.{i}")


def validate_body(body: Any, *, count_tokens: bool) -> None:
    """Raise BodyError with the real API's wording when the Messages body is malformed."""
    version = body.get("anthropic_version")
    if version is None:
        raise BodyError("anthropic_version: Field required")
    if not isinstance(version, str) or not version:
        raise BodyError("anthropic_version: Input should be a valid non-empty string")
    if count_tokens:
        if "model" not in body:
            raise BodyError("model: Field required")
        if not isinstance(body["model"], str) or not body["model"]:
            raise BodyError("model: Input should be a valid string")
    else:
        if "model" in body:
            raise BodyError("model: Extra inputs are not permitted")
        if "max_tokens" not in body:
            raise BodyError("max_tokens: Field required")
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise BodyError("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise BodyError("max_tokens: Input should be greater than or equal to 1")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise BodyError("stream: Input should be a valid boolean")
    if "messages" not in body:
        raise BodyError("messages: Field required")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise BodyError("messages: Input should be a valid list")
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise BodyError(f"{where}: Input should be a valid dictionary or object to extract fields from")
        if "role" not in message:
            raise BodyError(f"{where}.role: Field required")
        # Claude Code puts `system` messages in the array; Vertex accepts them.
        if message["role"] not in ("user", "assistant", "system"):
            raise BodyError(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
        if "content" not in message:
            raise BodyError(f"{where}.content: Field required")
        _check_content(message["content"], f"{where}.content")
    if "system" in body and body["system"] is not None:
        _check_content(body["system"], "system")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise BodyError("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise BodyError(
                    f"tools.{i}: Input should be a valid dictionary or object to extract fields from"
                )
            if not isinstance(tool.get("name"), str):
                raise BodyError(f"tools.{i}.name: Field required")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise BodyError("stop_sequences: Input should be a valid list of strings")


def unknown_betas(header: str | None) -> list[str]:
    """Betas in an `anthropic-beta` header that Vertex does not accept."""
    if not header:
        return []
    accepted = default_betas().for_platform("vertex").accepted
    return [b for b in (part.strip() for part in header.split(",")) if b and b not in accepted]


def model_offered(model: str, location: str, *, strict: bool) -> bool:
    """Whether Vertex serves `model` at `location`, by the catalog; unknown claude ids per `strict`."""
    entry = default_catalog().lookup(model)
    if entry is not None:
        return entry.offered_on_vertex_in(location)
    return model.startswith("claude-") and not strict


# ---------------------------------------------------------------------------------------------
# The handler


async def handle(req: Request, route: VertexRoute, state: EmulatorState) -> AnyResponse:
    """Serve one rawPredict / streamRawPredict / count-tokens call."""
    if req.method != "POST":
        return google_error(405, f"Method {req.method} is not allowed on this resource.")
    config = state.config
    if config.require_auth:
        token = req.bearer_token()
        if token is None or not (token in config.static_tokens or state.tokens.is_valid(token)):
            return google_error(401, UNAUTHENTICATED_MESSAGE)
    if config.projects and route.project not in config.projects:
        return permission_denied(route.resource)
    if route.project in config.api_disabled_projects:
        return service_disabled(route.project)

    if len(req.body) > MAX_PAYLOAD_BYTES:
        return google_error(413, f"Request payload size exceeds the limit: {MAX_PAYLOAD_BYTES} bytes.")
    try:
        body: Any = req.json()
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return google_error(400, "Invalid JSON payload received. Expected an object at the top level.")
    stream = body.get("stream") is True and not route.is_count_tokens
    model = str(body.get("model", "")) if route.is_count_tokens else route.model

    faults = state.faults.take(
        path=req.path, model=model, location=route.location, stream=stream, platform="vertex"
    )
    await wait_before_first_byte(faults)
    if drops_connection(faults):
        return DROP
    for fault in faults:
        error = fault_response(fault, route)
        if error is not None:
            return error
    cut = next((f for f in faults if f.kind == "cut_stream"), None)

    if route.is_count_tokens and route.location == "global" and not config.count_tokens_global:
        return not_found(route.resource)
    if not route.is_count_tokens and not model_offered(model, route.location, strict=config.strict_models):
        return not_found(route.resource)
    if config.model_disabled(route.project, model):
        # Not enabled in Model Garden: the same 404 as an absent model, naming the model.
        return not_found(route.resource.replace(COUNT_TOKENS_MODEL, model))
    bad = unknown_betas(req.headers.get("anthropic-beta"))
    if bad:
        listed = ", ".join(f"`{b}`" for b in bad)
        return anthropic_error(
            400,
            "invalid_request_error",
            f"Unexpected value(s) {listed} for the `anthropic-beta` header. Please consult our "
            "documentation at docs.anthropic.com or try again without the header.",
        )
    try:
        validate_body(body, count_tokens=route.is_count_tokens)
    except BodyError as exc:
        return anthropic_error(400, "invalid_request_error", str(exc))
    if route.is_count_tokens:
        if not model_offered(model, route.location, strict=config.strict_models):
            return not_found(route.resource.replace(COUNT_TOKENS_MODEL, model))
        return json_response(200, {"input_tokens": state.engine.count_tokens(body)})

    # The real prompt cache is per project and region: a prefix written at one location is not
    # read at another (global included), so failing over to another region pays for a new write.
    reply = state.engine.reply(body, model=model, cache_scope=f"{route.project}/{route.location}/{model}")
    msg_id = new_id("msg_vrtx_")
    headers = {"request-id": new_id("req_vrtx_")}
    if stream:
        events = stream_events(reply, msg_id=msg_id, model=model)
        cut_after = None if cut is None else max(0, cut.after_events if cut.after_events is not None else 3)
        return StreamResponse(events, headers, delay=config.stream_delay, cut_after=cut_after)
    response = json_response(200, message_json(reply, msg_id=msg_id, model=model), headers)
    if cut is not None:
        response.cut_at = len(response.body) // 2
    return response
