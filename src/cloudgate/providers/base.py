"""What every provider offers the gateway: build a request, send it, map its errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from cloudgate.protocol.errors import GatewayError, parse_error_body
from cloudgate.protocol.messages import MessagesCall, WireFormat
from cloudgate.providers.transport import (
    Timeouts,
    TransportError,
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamResponse,
    UpstreamTimeout,
)


@dataclass(slots=True, frozen=True)
class Target:
    """Where one call goes, as the router decided: provider, upstream model id, location."""

    provider: str
    model: str
    region: str | None = None
    project: str | None = None
    deployment: str = ""  # the deployment's name
    account: str = ""  # the provider instance to send through; "" = the provider's own
    timeouts: Timeouts | None = None  # the deployment's own time limits


@dataclass(slots=True)
class UpstreamRequest:
    """A fully built upstream HTTP request (auth headers included)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Provider(Protocol):
    """An upstream cloud."""

    name: str
    # How the upstream frames responses: ANTHROPIC (JSON/SSE) or BEDROCK (JSON/event stream).
    response_format: WireFormat

    async def start(self) -> None:
        """Acquire credentials and start background refreshers."""

    async def close(self) -> None:
        """Stop background work and release resources."""

    async def build_request(self, call: MessagesCall, target: Target) -> UpstreamRequest:
        """The exact upstream request for `call` at `target`, authenticated."""
        ...

    async def send(self, call: MessagesCall, target: Target) -> UpstreamResponse:
        """Send `call`; return the response when its status is 2xx, else raise `GatewayError`."""
        ...


async def raise_for_upstream_status(resp: UpstreamResponse, *, provider: str) -> None:
    """Turn a non-2xx upstream response into a `GatewayError` that keeps the original body."""
    if resp.status < 400:
        return
    try:
        body = await resp.read()
    except TransportError:
        body = b""
    parsed = parse_error_body(resp.status, body, resp.headers.get("x-amzn-errortype"))
    keep = {k.lower(): v for k, v in resp.headers.items() if k.lower() in _KEPT_ERROR_HEADERS}
    raise GatewayError(
        resp.status,
        parsed.message,
        error_type=parsed.error_type,
        google_status=parsed.google_status,
        raw_body=body,
        raw_shape=parsed.shape if parsed.shape != "unknown" else None,
        headers=keep,
    )


_KEPT_ERROR_HEADERS = frozenset(
    {
        "retry-after",
        "x-amzn-errortype",
        "x-amzn-requestid",
        "request-id",
        "anthropic-ratelimit-requests-limit",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-tokens-limit",
        "anthropic-ratelimit-tokens-remaining",
        "anthropic-ratelimit-tokens-reset",
    }
)


def transport_error_to_gateway(exc: TransportError, *, provider: str) -> GatewayError:
    """A connection problem or timeout, as the caller should see it."""
    if isinstance(exc, UpstreamTimeout):
        return GatewayError(504, f"{provider} upstream timed out ({exc.phase.replace('_', ' ')})")
    if isinstance(exc, UpstreamConnectError):
        return GatewayError(502, f"{provider} upstream unreachable: {exc}", error_type="api_error")
    if isinstance(exc, UpstreamDisconnected):
        return GatewayError(502, f"{provider} upstream closed the connection: {exc}", error_type="api_error")
    return GatewayError(502, f"{provider} upstream error: {exc}", error_type="api_error")
