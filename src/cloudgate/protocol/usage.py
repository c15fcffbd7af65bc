"""Reading token usage out of Messages API answers without disturbing them.

Streams are passed through byte for byte; the tap parses event boundaries and decodes only the
few events that carry usage (`message_start`, `message_delta`) or report failure (`error`).
"""

from __future__ import annotations

from typing import Any

import orjson

from cloudgate.protocol.messages import Usage
from cloudgate.protocol.sse import SSEParser

_WANTED = frozenset({"message_start", "message_delta", "message_stop", "error"})


class StreamUsageTap:
    """Feed it the SSE bytes of one answer; it keeps usage, stop reason and any error event."""

    __slots__ = ("_parser", "completed", "error", "message_id", "model", "stop_reason", "usage")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self.usage = Usage()
        self.stop_reason: str | None = None
        self.model: str | None = None
        self.message_id: str | None = None
        self.error: dict[str, Any] | None = None
        self.completed = False  # message_stop seen

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the stream."""
        for event in self._parser.feed(chunk):
            name = event.event
            if name not in _WANTED:
                continue
            if name == "message_stop":
                self.completed = True
                continue
            try:
                doc = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict):
                continue
            if name == "message_start":
                message = doc.get("message")
                if isinstance(message, dict):
                    self.usage.update(message.get("usage"))
                    self.model = message.get("model") if isinstance(message.get("model"), str) else None
                    self.message_id = message.get("id") if isinstance(message.get("id"), str) else None
            elif name == "message_delta":
                self.usage.update(doc.get("usage"))
                delta = doc.get("delta")
                if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                    self.stop_reason = delta["stop_reason"]
            else:
                err = doc.get("error")
                self.error = err if isinstance(err, dict) else {"message": str(doc)}


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
    if "input_tokens" in doc and "usage" not in doc:  # count_tokens answers {"input_tokens": N}
        usage.update(doc)
    stop = doc.get("stop_reason")
    model = doc.get("model")
    return usage, stop if isinstance(stop, str) else None, model if isinstance(model, str) else None
