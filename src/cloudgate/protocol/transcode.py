"""Relaying an answer stream in the caller's framing: pass-through, or SSE <-> AWS event stream.

Every relay has the same shape: `feed(chunk)` returns the bytes to send on (the chunk itself when
the framings match), `close()` what is left at the end, and `error(type, message)` an in-band
error in the caller's framing for failures after the stream has started. Each keeps a `tap` with
the usage it saw. Events are re-framed, never re-encoded: an Anthropic event's JSON travels as is
between an SSE `data:` line and a Bedrock `chunk` frame, except that Bedrock's invocation
metrics are added to (or taken out of) `message_stop`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import orjson

from cloudgate.protocol.errors import AWS_ERROR_FOR_TYPE, anthropic_error_body, aws_stream_exception_type
from cloudgate.protocol.eventstream import EventStreamDecoder, encode_chunk, encode_exception
from cloudgate.protocol.sse import SSEEvent, SSEParser, encode_event
from cloudgate.protocol.usage import METRICS_KEY, EventStreamUsageTap, StreamUsageTap, UsageTap

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"


class Relay(Protocol):
    """One answer stream on its way to the caller."""

    tap: UsageTap
    content_type: str | None  # None: keep the upstream's content-type

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send for this upstream chunk."""
        ...

    def close(self) -> bytes:
        """The bytes to send once the upstream stream has ended."""
        ...

    def error(self, error_type: str, message: str) -> bytes:
        """An in-band error in the caller's framing."""
        ...


def sse_error(error_type: str, message: str) -> bytes:
    """An SSE `error` event, as the Messages API reports mid-stream failures."""
    return encode_event("error", anthropic_error_body(error_type, message))


def aws_exception(error_type: str, message: str) -> bytes:
    """A Bedrock exception frame for an Anthropic error type."""
    _, name = AWS_ERROR_FOR_TYPE.get(error_type, (500, "InternalServerException"))
    if name == "InternalServerException" and error_type == "api_error":
        name = "ModelStreamErrorException"
    return encode_exception(aws_stream_exception_type(name), message)


class PassThrough:
    """Framings match: bytes go on untouched while the tap reads usage."""

    content_type: str | None = None

    def __init__(self, tap: StreamUsageTap | EventStreamUsageTap, error: Callable[[str, str], bytes]) -> None:
        self._tap = tap
        self.tap: UsageTap = tap
        self._error = error

    def feed(self, chunk: bytes) -> bytes:
        """The chunk itself."""
        self._tap.feed(chunk)
        return chunk

    def close(self) -> bytes:
        """Nothing is held back."""
        return b""

    def error(self, error_type: str, message: str) -> bytes:
        """An in-band error in the shared framing."""
        return self._error(error_type, message)


def sse_pass_through() -> PassThrough:
    """SSE in, SSE out."""
    return PassThrough(StreamUsageTap(), sse_error)


def event_stream_pass_through() -> PassThrough:
    """AWS event stream in, AWS event stream out."""
    return PassThrough(EventStreamUsageTap(), aws_exception)


class SSEToEventStream:
    """SSE in (Vertex, the Anthropic API), Bedrock event stream out."""

    content_type: str | None = EVENTSTREAM_CONTENT_TYPE

    def __init__(self, started: float | None = None) -> None:
        self.tap: UsageTap = UsageTap()
        self._parser = SSEParser()
        self._started = started if started is not None else time.perf_counter()
        self._first_byte: float | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Frames for the events this chunk completed."""
        if self._first_byte is None:
            self._first_byte = time.perf_counter()
        return self._frames(self._parser.feed(chunk))

    def close(self) -> bytes:
        """Frames for an event left unterminated at the end."""
        return self._frames(self._parser.close())

    def error(self, error_type: str, message: str) -> bytes:
        """A Bedrock exception frame."""
        return aws_exception(error_type, message)

    def _frames(self, events: list[SSEEvent]) -> bytes:
        out = bytearray()
        for event in events:
            name = event.event
            if name == "error":
                try:
                    err = orjson.loads(event.data).get("error", {})
                except (orjson.JSONDecodeError, AttributeError):
                    err = {}
                self.tap.take("error", {"error": err})
                out += aws_exception(str(err.get("type", "api_error")), str(err.get("message", "")))
                continue
            data = event.data
            if name == "content_block_delta":
                self.tap.deltas += 1
            elif name in ("message_start", "message_delta", "message_stop"):
                doc = orjson.loads(data)
                self.tap.take(name, doc)
                if name == "message_stop":
                    doc[METRICS_KEY] = self._metrics()
                    data = orjson.dumps(doc)
            out += encode_chunk(data)
        return bytes(out)

    def _metrics(self) -> dict[str, int]:
        usage = self.tap.usage
        now = time.perf_counter()
        first = self._first_byte or now
        metrics = {
            "inputTokenCount": usage.input_tokens,
            "outputTokenCount": usage.output_tokens,
            "invocationLatency": round((now - self._started) * 1000),
            "firstByteLatency": round((first - self._started) * 1000),
        }
        if usage.cache_read_input_tokens:
            metrics["cacheReadInputTokenCount"] = usage.cache_read_input_tokens
        if usage.cache_creation_input_tokens:
            metrics["cacheWriteInputTokenCount"] = usage.cache_creation_input_tokens
        return metrics


class EventStreamToSSE:
    """Bedrock event stream in, SSE out (Anthropic and Vertex callers)."""

    content_type: str | None = SSE_CONTENT_TYPE

    def __init__(self) -> None:
        self._tap = EventStreamUsageTap()
        self.tap: UsageTap = self._tap
        self._decoder = EventStreamDecoder()

    def feed(self, chunk: bytes) -> bytes:
        """SSE events for the frames this chunk completed."""
        out = bytearray()
        for frame in self._decoder.feed(chunk):
            doc = self._tap.take_frame(frame)
            if frame.message_type != "event":
                err = self.tap.error or {"type": "api_error", "message": "upstream stream failed"}
                out += sse_error(str(err.get("type")), str(err.get("message")))
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
                continue
            doc.pop(METRICS_KEY, None)  # Bedrock's own field: not part of the Messages API
            out += encode_event(doc["type"], orjson.dumps(doc))
        return bytes(out)

    def close(self) -> bytes:
        """Nothing is held back once frames are complete."""
        return b""

    def error(self, error_type: str, message: str) -> bytes:
        """An SSE error event."""
        return sse_error(error_type, message)
