"""Forwarding one call upstream and relaying the answer, streamed as it arrives.

The answer's bytes go to the caller untouched when its framing matches the upstream's (the
Anthropic and Vertex formats both stream SSE; Bedrock streams AWS event-stream frames), and are
re-framed event by event when they differ (`protocol.transcode`); a tap reads usage on the way.
A client that disconnects cancels the upstream request. Once a stream has started, an upstream
failure can no longer change the status: it is reported in-band (an SSE `error` event, or a
Bedrock exception frame), as the upstream services themselves do, and the stream is closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import orjson

from cloudgate.gateway.records import RequestRecord
from cloudgate.gateway.types import Headers, Message, Receive, Send
from cloudgate.protocol.errors import ANTHROPIC_STATUS, GatewayError
from cloudgate.protocol.eventstream import EventStreamError
from cloudgate.protocol.messages import MessagesCall, Operation, Usage, WireFormat
from cloudgate.protocol.transcode import (
    EventStreamToSSE,
    Relay,
    SSEToEventStream,
    event_stream_pass_through,
    sse_pass_through,
)
from cloudgate.protocol.usage import usage_from_message
from cloudgate.providers.base import Provider, Target, transport_error_to_gateway
from cloudgate.providers.transport import TransportError, UpstreamResponse
from cloudgate.routing.health import Outcome
from cloudgate.routing.plan import Attempt, Plan
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

    def absorb(self) -> bool:
        """In an `except CancelledError`: whether this watch cancelled the task (the client went
        away); if so the cancellation is taken back, so the handler can end normally."""
        if not self.fired:
            return False
        if self._task is not None:
            self._task.uncancel()
        return True


def _response_headers(
    resp: UpstreamResponse, request_id: str, caller: WireFormat, content_type: str | None = None
) -> Headers:
    chosen = content_type or resp.headers.get("content-type") or "application/json"
    headers: Headers = [(b"content-type", chosen.encode("latin-1"))]
    for name, value in resp.headers.items():
        lname = name.lower().encode("latin-1")
        if lname in _RELAYED:
            headers.append((lname, value.encode("latin-1")))
    headers.append((b"x-cloudgate-request-id", request_id.encode()))
    if caller is WireFormat.BEDROCK:
        headers.append((b"x-amzn-requestid", request_id.encode()))
    return headers


def _relay_for(caller: WireFormat, upstream_sse: bool) -> Relay:
    """The relay between the upstream's stream framing and the caller's."""
    to_bedrock = caller is WireFormat.BEDROCK
    if upstream_sse:
        return SSEToEventStream() if to_bedrock else sse_pass_through()
    return event_stream_pass_through() if to_bedrock else EventStreamToSSE()


async def forward(
    providers: Mapping[str, Provider],
    plan: Plan,
    call: MessagesCall,
    record: RequestRecord,
    receive: Receive,
    send: Send,
    cost: Callable[[Usage, Target], int] | None = None,
) -> None:
    """Send `call` along `plan`, failing over until an answer starts, and relay it in the
    caller's wire format; fills `record`.

    `cost` prices a whole answer's usage at its target for the `x-cloudgate-cost-usd` header.

    Raises `GatewayError` (before any byte was sent) or `ClientDisconnected`.
    """
    watch = DisconnectWatch(receive)
    attempt: Attempt | None = None
    resp: UpstreamResponse | None = None
    caller = call.frontdoor
    try:
        while True:
            attempt = await plan.next()
            aim(record, attempt.target)
            try:
                started = time.perf_counter()
                resp, opening = await _open(providers, call, attempt.target)
                record.first_byte_ms = round((time.perf_counter() - started) * 1000, 3)
                break
            except GatewayError as err:
                resp = None
                if not plan.failed(attempt, err):
                    raise
                log.info(
                    "request %s: %s failed with %d (%s); trying the next deployment",
                    record.request_id, attempt.deployment.name, err.status, err.error_type,
                )  # fmt: skip
        record.status = resp.status
        if isinstance(opening, _Stream):
            headers = _response_headers(resp, record.request_id, caller, opening.relay.content_type)
            await _relay_stream(resp, opening, headers, record, send)
        else:
            headers = _response_headers(resp, record.request_id, caller)
            await _send_whole(resp, opening, call, attempt.target, headers, record, send, cost)
        watch.done()
        plan.finished(attempt, _stream_outcome(record), record.status, record.error_type)
    except asyncio.CancelledError:
        if not watch.absorb():
            raise
        if resp is not None:
            resp.close()
        raise ClientDisconnected from None
    except BaseException:
        watch.done()
        raise
    finally:
        if attempt is not None:
            plan.abandon(attempt)  # no-op once the outcome is recorded
        record.attempts = [a.as_dict() for a in plan.attempts]


@dataclass(slots=True)
class _Stream:
    """A stream whose head was read before answering: the relay and what it made of the head."""

    relay: Relay
    head: bytes
    chunks: AsyncIterator[bytes]  # the rest of the body


def aim(record: RequestRecord, target: Target) -> None:
    """Point the record at the target being tried."""
    record.provider = target.provider
    record.upstream_model = target.model
    record.region = target.region or ""
    record.project = target.project or ""
    record.deployment = target.deployment


async def _open(
    providers: Mapping[str, Provider], call: MessagesCall, target: Target
) -> tuple[UpstreamResponse, _Stream | bytes]:
    """Send the request and read up to the answer's first event (or all of a whole answer).

    Everything here happens before the caller sees a byte, so any failure, an error event at
    the head of a stream included, is a `GatewayError` the plan may fail over from.
    """
    provider = providers.get(target.account) or providers.get(target.provider)
    if provider is None:
        raise GatewayError(500, f"provider {target.provider!r} is not configured", error_type="api_error")
    resp = await provider.send(call, target)
    try:
        content_type = resp.headers.get("content-type", "")
        if not content_type.startswith(("text/event-stream", "application/vnd.amazon.eventstream")):
            return resp, await resp.read()
        relay = _relay_for(call.frontdoor, content_type.startswith("text/event-stream"))
        chunks = resp.iter_chunks()
        return resp, _Stream(relay, await _head(chunks, relay), chunks)
    except TransportError as exc:
        resp.close()
        raise transport_error_to_gateway(exc, provider=provider.name) from exc
    except EventStreamError as exc:
        resp.close()
        raise GatewayError(
            502, f"{provider.name} sent a corrupt event stream: {exc}", error_type="api_error"
        ) from exc
    except GatewayError:
        resp.close()
        raise


async def _head(chunks: AsyncIterator[bytes], relay: Relay) -> bytes:
    """Relay the stream's first chunk; an error instead of a message start becomes a GatewayError."""
    out = b""
    async for chunk in chunks:
        out += relay.feed(chunk)
        tap = relay.tap
        if tap.error is not None and tap.message_id is None:
            kind = str(tap.error.get("type") or "api_error")
            message = str(tap.error.get("message") or "the upstream stream began with an error")
            raise GatewayError(ANTHROPIC_STATUS.get(kind, 500), message, error_type=kind)
        if out:
            return out
    return out


def _stream_outcome(record: RequestRecord) -> Outcome:
    """What a finished answer says about its deployment's health."""
    if record.error_type is None:
        return Outcome.SUCCESS
    if record.error_type in ("overloaded_error", "rate_limit_error"):
        return Outcome.THROTTLED
    return Outcome.FAILED


async def _send_whole(
    resp: UpstreamResponse,
    body: bytes,
    call: MessagesCall,
    target: Target,
    headers: Headers,
    record: RequestRecord,
    send: Send,
    cost: Callable[[Usage, Target], int] | None,
) -> None:
    usage, stop, _model = usage_from_message(body)
    record.usage = usage
    record.stop_reason = stop
    if cost is not None and call.operation is Operation.MESSAGES:
        # Kept on the record: the governor charges this same figure instead of pricing again.
        record.cost_micro = priced = cost(usage, target)
        headers.append((b"x-cloudgate-cost-usd", f"{priced / 1_000_000:.6f}".encode()))
    if call.operation is Operation.COUNT_TOKENS:
        # The one answer whose shape differs: {"input_tokens": N} vs Bedrock's {"inputTokens": N}.
        key = "inputTokens" if call.frontdoor is WireFormat.BEDROCK else "input_tokens"
        body = orjson.dumps({key: usage.input_tokens})
    elif call.frontdoor is WireFormat.BEDROCK:
        headers.append((b"x-amzn-bedrock-input-token-count", str(usage.input_tokens).encode()))
        headers.append((b"x-amzn-bedrock-output-token-count", str(usage.output_tokens).encode()))
    headers.append((b"content-length", str(len(body)).encode()))
    if record.capture_bodies:
        record.keep_response(body)
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _relay_stream(
    resp: UpstreamResponse, stream: _Stream, headers: Headers, record: RequestRecord, send: Send
) -> None:
    relay = stream.relay
    # Read once: with capture off, the relay loop pays one local test per chunk.
    keep = record.keep_response if record.capture_bodies else None
    headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    try:
        if stream.head:
            if keep is not None:
                keep(stream.head)
            await send({"type": "http.response.body", "body": stream.head, "more_body": True})
        async for chunk in stream.chunks:
            out = relay.feed(chunk)
            if out:
                if keep is not None:
                    keep(out)
                await send({"type": "http.response.body", "body": out, "more_body": True})
        tail = relay.close()
        if tail:
            if keep is not None:
                keep(tail)
            await send({"type": "http.response.body", "body": tail, "more_body": True})
    except (TransportError, EventStreamError) as exc:
        # Too late for a status code: tell the client in-band, the way the upstream services
        # report mid-stream failures, so SDKs raise instead of waiting for more.
        err = (
            transport_error_to_gateway(exc, provider=record.provider)
            if isinstance(exc, TransportError)
            else GatewayError(
                502, f"{record.provider} sent a corrupt event stream: {exc}", error_type="api_error"
            )
        )
        record.error_type = err.error_type
        record.error_message = err.message
        record.status = err.status
        log.warning("request %s: stream from %s broke: %s", record.request_id, record.provider, exc)
        in_band = relay.error(err.error_type, err.message)
        if keep is not None:
            keep(in_band)
        await send({"type": "http.response.body", "body": in_band, "more_body": True})
    finally:
        tap = relay.tap
        tap.usage.output_tokens = tap.output_tokens_at_least()
        record.usage = tap.usage
        record.stop_reason = tap.stop_reason
        if tap.error is not None and record.error_type is None:
            record.error_type = str(tap.error.get("type", "error"))
            record.error_message = str(tap.error.get("message", ""))
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def error_for_unexpected(exc: BaseException) -> GatewayError:
    """A bug must not become a traceback on the wire: a generic 500 instead (logged in full)."""
    return GatewayError(500, "internal error in cloudgate; see the gateway log", error_type="api_error")
