"""The Anthropic API: /v1/messages (JSON or SSE), /v1/messages/count_tokens, /v1/models.

Every failure comes in Anthropic's shape with the real statuses (429 rate_limit_error with
`retry-after`, 529 overloaded_error, ...); a fault that hits a stream after it started is an
SSE `error` event, as the real API sends when overload strikes mid-answer.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from cloudgate.catalog import default_catalog
from cloudgate.catalog.betas import default_betas
from cloudgate.emulator.engine import message_json, new_id, stream_events
from cloudgate.emulator.faults import Fault, drops_connection, wait_before_first_byte
from cloudgate.emulator.vertex import BodyError, validate_body
from cloudgate.emulator.wire import DROP, AnyResponse, Request, Response, StreamResponse, json_response
from cloudgate.protocol.errors import anthropic_error_body
from cloudgate.protocol.sse import encode_event

if TYPE_CHECKING:
    from cloudgate.emulator.app import EmulatorState

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
MODELS = "/v1/models"
MAX_PAYLOAD_BYTES = 32 * 1024 * 1024
REQUESTS_PER_MINUTE = 4000
TOKENS_PER_MINUTE = 2_000_000
RETRY_AFTER_SECONDS = 1
_EPOCH_CREATED = "2025-01-01T00:00:00Z"


def is_api_path(path: str) -> bool:
    """Whether a path is an Anthropic API endpoint this module serves."""
    return path in (MESSAGES, COUNT_TOKENS, MODELS) or path.startswith(MODELS + "/")


def api_error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """An Anthropic-shape error with a request id."""
    return json_response(
        status, anthropic_error_body(error_type, message), {"request-id": _request_id(), **(headers or {})}
    )


def _request_id() -> str:
    return new_id("req_01", 22)


def _reset_at(seconds: int) -> str:
    return datetime.fromtimestamp(time.time() + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rate_limit_headers(tokens: int = 0) -> dict[str, str]:
    """The `anthropic-ratelimit-*` headers of a successful call (a generous, never-empty budget)."""
    reset = _reset_at(60)
    return {
        "anthropic-ratelimit-requests-limit": str(REQUESTS_PER_MINUTE),
        "anthropic-ratelimit-requests-remaining": str(REQUESTS_PER_MINUTE - 1),
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-limit": str(TOKENS_PER_MINUTE),
        "anthropic-ratelimit-tokens-remaining": str(max(0, TOKENS_PER_MINUTE - tokens)),
        "anthropic-ratelimit-tokens-reset": reset,
        "anthropic-ratelimit-input-tokens-limit": str(TOKENS_PER_MINUTE),
        "anthropic-ratelimit-input-tokens-remaining": str(max(0, TOKENS_PER_MINUTE - tokens)),
        "anthropic-ratelimit-input-tokens-reset": reset,
    }


def _fault_error(fault: Fault, model: str) -> tuple[int, str, str] | None:
    kind = fault.kind
    if kind in ("rate_limit", "rate_limit_array"):
        return (
            fault.status or 429,
            "rate_limit_error",
            f"This request would exceed the rate limit for your organization of {REQUESTS_PER_MINUTE} "
            "requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
        )
    if kind == "not_found":
        return 404, "not_found_error", f"model: {model}"
    if kind == "permission_denied":
        return 403, "permission_error", "Your API key does not have permission to use the specified resource."
    if kind == "unauthenticated":
        return 401, "authentication_error", "invalid x-api-key"
    if kind == "server_error":
        return fault.status or 500, "api_error", "Internal server error"
    if kind == "overloaded":
        return fault.status or 529, "overloaded_error", "Overloaded"
    return None


def fault_response(fault: Fault, model: str) -> Response | None:
    """How an error fault looks on the Anthropic API; None for kinds that shape the response."""
    error = _fault_error(fault, model)
    if error is None:
        return None
    status, error_type, message = error
    headers = {"retry-after": str(RETRY_AFTER_SECONDS)} if status == 429 else {}
    if status == 429:
        headers.update(rate_limit_headers(TOKENS_PER_MINUTE))
        headers["anthropic-ratelimit-requests-remaining"] = "0"
    return api_error(status, error_type, message, headers)


def authenticate(req: Request, state: EmulatorState) -> Response | None:
    """None when the key is good (or auth is off), else the 401."""
    config = state.config
    if not config.require_auth:
        return None
    key = req.headers.get("x-api-key") or req.bearer_token()
    if key is None:
        return api_error(401, "authentication_error", "x-api-key header is required")
    if key not in config.anthropic_api_keys:
        return api_error(401, "authentication_error", "invalid x-api-key")
    return None


def model_known(model: str, *, strict: bool) -> bool:
    """Whether the API serves `model`: catalog ids and aliases, or unknown `claude-*` unless strict."""
    if (
        default_catalog().lookup(model) is not None
        and "@" not in model
        and not model.startswith("anthropic.")
    ):
        return True
    return model.startswith("claude-") and "@" not in model and not strict


def _bad_betas(header: str | None) -> list[str]:
    if not header:
        return []
    accepted = default_betas().for_platform("anthropic").accepted
    return [b for b in (p.strip() for p in header.split(",")) if b and b not in accepted]


async def handle(req: Request, state: EmulatorState) -> AnyResponse:
    """Serve one Anthropic API call."""
    denied = authenticate(req, state)
    if denied is not None:
        return denied
    if req.path == MODELS or req.path.startswith(MODELS + "/"):
        if req.method != "GET":
            return api_error(405, "invalid_request_error", f"Method {req.method} not allowed")
        return list_models(req) if req.path == MODELS else get_model(req.path[len(MODELS) + 1 :])
    if req.method != "POST":
        return api_error(405, "invalid_request_error", f"Method {req.method} not allowed")
    if not req.headers.get("anthropic-version"):
        return api_error(400, "invalid_request_error", "anthropic-version: header is required")
    if len(req.body) > MAX_PAYLOAD_BYTES:
        return api_error(413, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
    try:
        body: Any = req.json()
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return api_error(
            400, "invalid_request_error", "There was an issue with your request body: invalid JSON"
        )
    counting = req.path == COUNT_TOKENS
    stream = body.get("stream") is True and not counting
    model = body.get("model")
    # The Anthropic API has no region: a fault bound to a `location` never hits it.
    faults = state.faults.take(
        path=req.path, model=str(model or ""), location=None, stream=stream, platform="anthropic"
    )
    await wait_before_first_byte(faults)
    if drops_connection(faults):
        return DROP
    mid_stream = next(
        (f for f in faults if stream and f.after_events is not None and _fault_error(f, "")), None
    )
    for fault in faults:
        error = fault_response(fault, str(model))
        if error is not None and fault is not mid_stream:
            return error
    problem = _check(body, req, counting, state)
    if problem is not None:
        return problem
    model = str(body["model"])
    if counting:
        return json_response(
            200, {"input_tokens": state.engine.count_tokens(body)}, {"request-id": _request_id()}
        )
    reply = state.engine.reply(body, model=model, cache_scope=f"anthropic/{model}", tool_id_prefix="toolu_01")
    msg_id = new_id("msg_01", 22)
    headers = {"request-id": _request_id(), **rate_limit_headers(reply.usage.input_tokens)}
    cut = next((f for f in faults if f.kind == "cut_stream"), None)
    if stream:
        events = stream_events(reply, msg_id=msg_id, model=model)
        if mid_stream is not None:
            status_type = _fault_error(mid_stream, model)
            assert status_type is not None  # chosen above for having one
            error_event = encode_event(
                "error", {"type": "error", "error": {"type": status_type[1], "message": status_type[2]}}
            )
            events = [*events[: max(0, mid_stream.after_events or 0)], error_event]
        cut_after = None if cut is None else max(0, cut.after_events if cut.after_events is not None else 3)
        return StreamResponse(events, headers, delay=state.config.stream_delay, cut_after=cut_after)
    response = json_response(200, message_json(reply, msg_id=msg_id, model=model), headers)
    if cut is not None:
        response.cut_at = len(response.body) // 2
    return response


def _check(body: dict[str, Any], req: Request, counting: bool, state: EmulatorState) -> Response | None:
    model = body.get("model")
    if model is None:
        return api_error(400, "invalid_request_error", "model: Field required")
    if not isinstance(model, str) or not model:
        return api_error(400, "invalid_request_error", "model: Input should be a valid string")
    bad = _bad_betas(req.headers.get("anthropic-beta"))
    if bad:
        listed = ", ".join(f"`{b}`" for b in bad)
        return api_error(
            400,
            "invalid_request_error",
            f"Unexpected value(s) {listed} for the `anthropic-beta` header. Please consult our "
            "documentation at docs.claude.com or try again without the header.",
        )
    # The shared checks expect the Vertex body form (anthropic_version in the body, no model).
    shaped = {k: v for k, v in body.items() if counting or k != "model"}
    shaped.setdefault("anthropic_version", req.headers.get("anthropic-version"))
    try:
        validate_body(shaped, count_tokens=counting)
    except BodyError as exc:
        return api_error(400, "invalid_request_error", str(exc))
    if not model_known(model, strict=state.config.strict_models):
        return api_error(404, "not_found_error", f"model: {model}")
    return None


# ---------------------------------------------------------------------------------------------
# Models


def _model_json(entry_id: str, name: str, created: str) -> dict[str, Any]:
    return {"type": "model", "id": entry_id, "display_name": name, "created_at": created}


def _all_models() -> list[dict[str, Any]]:
    out = []
    for entry in default_catalog().entries:
        released = entry.extra.get("released")
        created = f"{released}T00:00:00Z" if released else _EPOCH_CREATED
        out.append(_model_json(entry.id, entry.name, created))
    return out


def list_models(req: Request) -> Response:
    """GET /v1/models with `limit`, `after_id`, `before_id` paging, newest first as the API lists."""
    params = req.query_params()
    models = _all_models()
    try:
        limit = int(params.get("limit") or 20)
    except ValueError:
        return api_error(400, "invalid_request_error", "limit: Input should be a valid integer")
    if not 1 <= limit <= 1000:
        return api_error(400, "invalid_request_error", "limit: Input should be between 1 and 1000")
    ids = [m["id"] for m in models]
    start, end = 0, len(models)
    if params.get("after_id") in ids:
        start = ids.index(params["after_id"]) + 1
    if params.get("before_id") in ids:
        end = ids.index(params["before_id"])
        start = max(start, end - limit)
    page = models[start:end][:limit]
    return json_response(
        200,
        {
            "data": page,
            "has_more": start + len(page) < end,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        },
        {"request-id": _request_id()},
    )


def get_model(model_id: str) -> Response:
    """GET /v1/models/{id}: catalog ids and aliases resolve to the model."""
    entry = default_catalog().lookup(model_id)
    if entry is None or "@" in model_id or model_id.startswith("anthropic."):
        return api_error(404, "not_found_error", f"model: {model_id}")
    return json_response(
        200,
        next(m for m in _all_models() if m["id"] == entry.id),
        {"request-id": _request_id()},
    )
