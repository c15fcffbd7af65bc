"""Server-sent events as the Messages API uses them: an incremental parser and an encoder.

The parser works on raw bytes and never decodes JSON itself: callers pick which events they
need to look into (usage, errors) and leave the rest as bytes to pass through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(slots=True, frozen=True)
class SSEEvent:
    """One event: its `event:` name (empty when absent) and its `data:` lines joined by newlines."""

    event: str
    data: bytes

    def json(self) -> Any:
        """The data decoded as JSON."""
        return orjson.loads(self.data)


def encode_event(event: str, data: Any) -> bytes:
    """Encode one event the way the Messages API does: `event: X\\ndata: {json}\\n\\n`."""
    payload = data if isinstance(data, bytes | bytearray) else orjson.dumps(data)
    return b"event: " + event.encode() + b"\ndata: " + bytes(payload) + b"\n\n"


class SSEParser:
    """Incremental parser: feed it chunks as they arrive, get back the events they complete.

    Follows the WHATWG event-stream rules that matter on this wire: LF, CRLF or CR line ends,
    comment lines (`:`), multi-line `data:`, one optional space after the colon, and events
    that end at a blank line. Fields other than `event` and `data` (`id`, `retry`) are ignored.
    """

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse `chunk` and return the events it completed, in order."""
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            # A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
            keep_cr = buf.endswith(b"\r")
            if keep_cr:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buf += b"\r"
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = buf[start:end]
            start = end + 1
            if not line:
                if self._data or self._event:
                    events.append(SSEEvent(self._event, b"\n".join(self._data)))
                self._event = ""
                self._data = []
                continue
            if line[0] == 0x3A:  # ':' comment
                continue
            name, sep, value = line.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
        self._buf = buf[start:]
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: an event left without its closing blank line is still delivered."""
        events = self.feed(b"\n\n") if self._buf or self._data or self._event else []
        self._buf = b""
        return events
