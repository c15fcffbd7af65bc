"""Forwarding one call upstream and relaying the answer, streamed as it arrives.

The answer's bytes go to the caller untouched when its wire format matches the upstream's (the
Anthropic and Vertex formats frame answers identically); a tap reads usage on the way. A client
that disconnects cancels the upstream request. Once a stream has started, an upstream failure
can no longer change the status: it is reported as an SSE `error` event, as the Messages API
itself does, and the stream is closed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from cloudgate.gateway.records import RequestRecord
from cloudgate.gateway.types import Headers, Message, Receive, Send
from cloudgate.protocol.errors import GatewayError, anthropic_error_body
from cloudgate.protocol.messages import MessagesCall
from cloudgate.protocol.sse import encode_event
from cloudgate.protocol.usage import StreamUsageTap, usage_from_message
from cloudgate.providers.base import Provider, Target, transport_error_to_gateway
from cloudgate.providers.transport import TransportError, UpstreamResponse
from cloudgate.util.tasks import spawn

log = logging.getLogger("cloudgate.gateway")

# Upstream response headers worth handing to the caller.
_RELAYED = frozenset(
    {
        b"request-id",
        b"retry-after",
        b"anthropic-ratelimit-requests-limit",
        b"anthropic-ratelimit-requests-remaining",
        b"anthropic-ratelimit-requests-reset",
        b"anthropic-ratelimit-tokens-limit",
        b"anthropic-ratelimit-tokens-remaining",
        b"anthropic-ratelimit-tokens-reset",
        b"anthropic-ratelimit-input-tokens-limit",
        b"anthropic-ratelimit-input-tokens-remaining",
        b"anthropic-ratelimit-input-tokens-reset",
        b"anthropic-ratelimit-output-tokens-limit",
        b"anthropic-ratelimit-output-tokens-remaining",
        b"anthropic-ratelimit-output-tokens-reset",
    }
)


class ClientDisconnected(Exception):
    """The caller went away before the answer was complete."""


class DisconnectWatch:
    """Cancels the handling task when the client disconnects, until `done()` is called."""

    __slots__ = ("_done", "_task", "_watcher", "fired")

    def __init__(self, receive: Receive) -> None:
        self._task = asyncio.current_task()
        self._done = False
        self.fired = False
        self._watcher = spawn(self._watch(receive), name="disconnect-watch")

    async def _watch(self, receive: Receive) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                if not self._done and self._task is not None:
                    self.fired = True
                    self._task.cancel("client disconnected")
                return

    def done(self) -> None:
        """The answer is complete: a disconnect from now on is normal."""
        self._done = True
        self._watcher.cancel()


def _response_headers(resp: UpstreamResponse, request_id: str) -> Headers:
    content_type = resp.headers.get("content-type", "application/json")
    headers: Headers = [(b"content-type", content_type.encode("latin-1"))]
    for name, value in resp.headers.items():
        lname = name.lower().encode("latin-1")
        if lname in _RELAYED:
            headers.append((lname, value.encode("latin-1")))
    headers.append((b"x-cloudgate-request-id", request_id.encode()))
    return headers


async def forward(
    provider: Provider,
    call: MessagesCall,
    target: Target,
    record: RequestRecord,
    receive: Receive,
    send: Send,
) -> None:
    """Send `call` to `target` and relay the answer; fills `record`. Raises `GatewayError`
    (before any byte was sent) or `ClientDisconnected`."""
    watch = DisconnectWatch(receive)
    started = time.perf_counter()
    resp: UpstreamResponse | None = None
    try:
        resp = await provider.send(call, target)
        record.first_byte_ms = round((time.perf_counter() - started) * 1000, 3)
        headers = _response_headers(resp, record.request_id)
        record.status = resp.status
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            await _relay_stream(resp, headers, record, send)
        else:
            await _relay_whole(resp, headers, record, send)
        watch.done()
    except asyncio.CancelledError:
        if not watch.fired:
            raise
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        if resp is not None:
            resp.close()
        raise ClientDisconnected from None
    except TransportError as exc:
        watch.done()
        raise transport_error_to_gateway(exc, provider=provider.name) from exc
    except BaseException:
        watch.done()
        raise


async def _relay_whole(resp: UpstreamResponse, headers: Headers, record: RequestRecord, send: Send) -> None:
    body = await resp.read()
    usage, stop, _model = usage_from_message(body)
    record.usage = usage
    record.stop_reason = stop
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _relay_stream(resp: UpstreamResponse, headers: Headers, record: RequestRecord, send: Send) -> None:
    tap = StreamUsageTap()
    headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    try:
        async for chunk in resp.iter_chunks():
            tap.feed(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except TransportError as exc:
        # Too late for a status code: tell the client in-band, the way the API reports
        # mid-stream failures, so SDKs raise instead of waiting for more.
        err = transport_error_to_gateway(exc, provider=record.provider)
        record.error_type = err.error_type
        record.error_message = err.message
        record.status = err.status
        log.warning("request %s: stream from %s broke: %s", record.request_id, record.provider, exc)
        event = encode_event("error", anthropic_error_body(err.error_type, err.message))
        await send({"type": "http.response.body", "body": event, "more_body": True})
    finally:
        record.usage = tap.usage
        record.stop_reason = tap.stop_reason
        if tap.error is not None and record.error_type is None:
            record.error_type = str(tap.error.get("type", "error"))
            record.error_message = str(tap.error.get("message", ""))
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def error_for_unexpected(exc: BaseException) -> GatewayError:
    """A bug must not become a traceback on the wire: a generic 500 instead (logged in full)."""
    return GatewayError(500, "internal error in cloudgate; see the gateway log", error_type="api_error")
