"""Reading token usage out of Messages API answers without disturbing them.

Streams are passed through byte for byte; a tap parses event boundaries and decodes only the
few events that carry usage (`message_start`, `message_delta`, `message_stop` with Bedrock's
invocation metrics) or report failure (`error`, AWS exception frames).
"""

from __future__ import annotations

from typing import Any

import orjson

from cloudgate.protocol.errors import ANTHROPIC_TYPE_FOR_AWS
from cloudgate.protocol.eventstream import EventStreamDecoder, Frame, chunk_event
from cloudgate.protocol.messages import Usage
from cloudgate.protocol.sse import SSEParser

_WANTED = frozenset({"message_start", "message_delta", "message_stop", "error"})
METRICS_KEY = "amazon-bedrock-invocationMetrics"


class UsageTap:
    """What one answer stream reported: usage, stop reason, model, errors, completion."""

    __slots__ = ("completed", "deltas", "error", "message_id", "model", "stop_reason", "usage")

    def __init__(self) -> None:
        self.usage = Usage()
        # Content deltas seen: each carries at least one output token, which bounds from below
        # what a stream cut short had produced before its final usage could arrive.
        self.deltas = 0
        self.stop_reason: str | None = None
        self.model: str | None = None
        self.message_id: str | None = None
        self.error: dict[str, Any] | None = None
        self.completed = False  # message_stop seen

    def output_tokens_at_least(self) -> int:
        """Output tokens: the reported count, or for a stream cut short its delta count if larger."""
        if self.completed:
            return self.usage.output_tokens
        return max(self.usage.output_tokens, self.deltas)

    def take(self, name: str, doc: Any) -> None:
        """Account for one decoded Anthropic stream event."""
        if not isinstance(doc, dict):
            return
        if name == "message_start":
            message = doc.get("message")
            if isinstance(message, dict):
                self.usage.update(message.get("usage"))
                model, mid = message.get("model"), message.get("id")
                self.model = model if isinstance(model, str) else None
                self.message_id = mid if isinstance(mid, str) else None
        elif name == "message_delta":
            self.usage.update(doc.get("usage"))
            delta = doc.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.stop_reason = delta["stop_reason"]
        elif name == "message_stop":
            self.completed = True
            metrics = doc.get(METRICS_KEY)
            if isinstance(metrics, dict) and not self.usage.output_tokens:
                # Bedrock's own count, used only when the events carried none.
                self.usage.update(
                    {
                        "input_tokens": metrics.get("inputTokenCount"),
                        "output_tokens": metrics.get("outputTokenCount"),
                    }
                )
        elif name == "error":
            err = doc.get("error")
            self.error = err if isinstance(err, dict) else {"message": str(doc)}

    def take_exception(self, frame: Frame) -> None:
        """Account for an AWS exception frame."""
        name = frame.event_type[:1].upper() + frame.event_type[1:]
        try:
            message = orjson.loads(frame.payload).get("message", "")
        except (orjson.JSONDecodeError, AttributeError):
            message = frame.payload.decode("utf-8", "replace")
        self.error = {"type": ANTHROPIC_TYPE_FOR_AWS.get(name, "api_error"), "message": str(message)}


class StreamUsageTap(UsageTap):
    """A tap on an SSE answer: feed it the bytes as they pass.

    It runs on every streamed chunk, so it does the least it can: the Messages API writes each
    event as `event: NAME\ndata: JSON\n\n`, so it looks only for the events it needs and decodes
    just those. CR line ends switch it to the full SSE parser.
    """

    __slots__ = ("_buf", "_parser")

    def __init__(self) -> None:
        super().__init__()
        self._buf = b""
        self._parser: SSEParser | None = None

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the stream."""
        if self._parser is None and b"\r" in chunk:
            self._parser = SSEParser()  # unusual framing: the general parser from here on
            chunk, self._buf = self._buf + chunk, b""
        if self._parser is not None:
            for event in self._parser.feed(chunk):
                if event.event == "content_block_delta":
                    self.deltas += 1
                self._event(event.event, event.data)
            return
        buf = self._buf + chunk if self._buf else chunk
        last = buf.rfind(b"\n\n")
        if last < 0:
            self._buf = buf
            return
        self._buf = buf[last + 2 :]
        self.deltas += buf.count(b"event: content_block_delta", 0, last)
        # Let C scan for the few events that matter. A raw newline never occurs inside a JSON
        # `data:` line, so a marker at the start of a line is a real event.
        for marker in (b"event: message_", b"event: error"):
            pos = buf.find(marker, 0, last)
            while pos >= 0:
                if pos == 0 or buf[pos - 1] == 10:
                    self._block(buf[pos : buf.find(b"\n\n", pos)])
                pos = buf.find(marker, pos + 1, last)

    def _block(self, block: bytes) -> None:
        newline = block.find(b"\n")
        rest = block[newline + 1 :] if newline > 0 else b""
        if rest.startswith(b"data: ") and b"\n" not in rest:
            self._event(block[7:newline].decode(), rest[6:])
            return
        for parsed in SSEParser().feed(block + b"\n\n"):  # any other layout
            self._event(parsed.event, parsed.data)

    def _event(self, name: str, data: bytes) -> None:
        if name not in _WANTED:
            return
        if name == "message_stop" and b"invocationMetrics" not in data:
            self.completed = True
            return
        try:
            self.take(name, orjson.loads(data))
        except orjson.JSONDecodeError:
            return


class EventStreamUsageTap(UsageTap):
    """A tap on a Bedrock event-stream answer: feed it the bytes as they pass."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        super().__init__()
        self._decoder = EventStreamDecoder()

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the stream (raises `EventStreamError` on corrupt frames)."""
        for frame in self._decoder.feed(chunk):
            self.take_frame(frame)

    def take_frame(self, frame: Frame) -> Any:
        """Account for one decoded frame; returns the event JSON of a chunk frame, else None."""
        if frame.message_type != "event":
            self.take_exception(frame)
            return None
        try:
            doc = orjson.loads(chunk_event(frame))
        except (orjson.JSONDecodeError, KeyError, ValueError):
            return None
        if isinstance(doc, dict):
            name = doc.get("type")
            if name == "content_block_delta":
                self.deltas += 1
            elif isinstance(name, str) and name in _WANTED:
                self.take(name, doc)
        return doc


def usage_from_message(body: bytes) -> tuple[Usage, str | None, str | None]:
    """Usage, stop reason and model of a non-streaming Message JSON (zeros if unreadable)."""
    usage = Usage()
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return usage, None, None
    if not isinstance(doc, dict):
        return usage, None, None
    usage.update(doc.get("usage"))
    if "usage" not in doc:  # count_tokens answers: {"input_tokens": N} or Bedrock's {"inputTokens": N}
        count = doc.get("input_tokens", doc.get("inputTokens"))
        if isinstance(count, int):
            usage.input_tokens = count
    stop = doc.get("stop_reason")
    model = doc.get("model")
    return usage, stop if isinstance(stop, str) else None, model if isinstance(model, str) else None
