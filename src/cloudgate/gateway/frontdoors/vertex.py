"""The Vertex AI front door: `:rawPredict`, `:streamRawPredict` and `count-tokens:rawPredict`.

Served under `/vertex_ai/v1/...` (the prefix in Claude Code's proxy instructions, so
`ANTHROPIC_VERTEX_BASE_URL=<gateway>/vertex_ai/v1` works unchanged) and under plain `/v1/...`.
The project and location in the caller's URL are the caller's view; the router maps them to the
configured upstream ones.

Errors follow Vertex: transport-level problems (bad JSON, auth, unknown path) come in Google's
envelope, while problems with the Messages body come in the Anthropic shape, as Vertex passes
those through from the model server.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from cloudgate.gateway.frontdoors.validation import check_fields, parse_object, split_betas
from cloudgate.gateway.http import JSON_HEADERS
from cloudgate.gateway.types import Headers
from cloudgate.protocol.errors import GatewayError, anthropic_error_body
from cloudgate.protocol.messages import MessagesCall, Operation, WireFormat

WIRE = WireFormat.VERTEX
PREFIXES = ("/vertex_ai/v1/", "/v1/projects/")

_PATH = re.compile(
    r"^(?:/vertex_ai)?/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/anthropic/models/(?P<model>[^/:]+):(?P<method>rawPredict|streamRawPredict)$"
)


class VertexPath:
    """The parts of a matched Vertex URL."""

    __slots__ = ("location", "method", "model", "project")

    def __init__(self, project: str, location: str, model: str, method: str) -> None:
        self.project = project
        self.location = location
        self.model = model
        self.method = method

    @property
    def operation(self) -> Operation:
        """Messages, or token counting for the `count-tokens` pseudo-model."""
        return Operation.COUNT_TOKENS if self.model == "count-tokens" else Operation.MESSAGES


def match_path(path: str) -> VertexPath | None:
    """The Vertex URL parts of `path`, or None if it is not a Vertex model URL."""
    match = _PATH.match(path)
    if match is None:
        return None
    return VertexPath(
        unquote(match["project"]), unquote(match["location"]), unquote(match["model"]), match["method"]
    )


def _body_error(message: str) -> GatewayError:
    return GatewayError(
        400,
        message,
        error_type="invalid_request_error",
        raw_body=anthropic_error_body("invalid_request_error", message),
        raw_shape="anthropic",
    )


def parse_call(raw: bytes, headers: dict[str, str], where: VertexPath) -> MessagesCall:
    """Decode and check a Vertex-format request."""
    doc = parse_object(raw)  # InvalidJSON renders as a Google INVALID_ARGUMENT envelope
    counting = where.operation is Operation.COUNT_TOKENS
    problems = check_fields(doc, need_model=counting, need_max_tokens=not counting)
    version = doc.get("anthropic_version")
    if version is None:
        problems.insert(0, "anthropic_version: Field required")
    elif not isinstance(version, str) or not version.strip():
        problems.insert(0, "anthropic_version: Input should be a non-empty string")
    if problems:
        raise _body_error("; ".join(problems))
    model = doc["model"].strip() if counting else where.model
    stream = bool(doc.get("stream", False)) and not counting
    body = {k: v for k, v in doc.items() if k not in ("model", "stream", "anthropic_version")}
    if not counting and "model" in doc:
        # Vertex refuses `model` in a rawPredict body; the URL names the model.
        raise _body_error("model: Extra inputs are not permitted")
    return MessagesCall(
        operation=where.operation,
        model=model,
        body=body,
        stream=stream,
        betas=split_betas(headers.get("anthropic-beta")),
        anthropic_version=headers.get("anthropic-version"),
        body_version=version,
        frontdoor=WIRE,
        raw_body=raw,
        client_region=where.location,
    )


def error_response(err: GatewayError) -> tuple[int, bytes, Headers]:
    """The error as Vertex would send it (upstream Vertex bodies verbatim)."""
    if err.raw_body is not None and err.raw_shape in ("google", "anthropic"):
        body = err.raw_body
    else:
        body = err.google_body()
    headers = list(JSON_HEADERS)
    retry_after = err.headers.get("retry-after")
    if retry_after:
        headers.append((b"retry-after", retry_after.encode("latin-1")))
    return err.status, body, headers
