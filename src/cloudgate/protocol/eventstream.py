"""The AWS event stream (`application/vnd.amazon.eventstream`), as Bedrock streams answers.

A frame is: total length and headers length (big-endian u32 each), a CRC32 of those 8 bytes,
the headers, the payload, and a CRC32 of everything before it. A header is a one-byte name
length, the name, a one-byte type and the value (type 7, a string, has a u16 length).

Bedrock's answer stream carries one Anthropic stream event per `chunk` frame, base64-encoded in
a JSON payload `{"bytes": "...", "p": "<padding>"}`; failures mid-stream arrive as `exception`
frames. botocore's `EventStreamBuffer` is the reference parser; the tests hold this one to it.
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

_PRELUDE = struct.Struct(">II")
_U32 = struct.Struct(">I")
_MAX_FRAME = 16 * 1024 * 1024  # the service's own limit

# Header value types and their fixed sizes (None: u16 length-prefixed).
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad length or checksum)."""


@dataclass(slots=True, frozen=True)
class Frame:
    """One decoded frame: string-valued headers and the raw payload."""

    headers: dict[str, Any]
    payload: bytes

    @property
    def message_type(self) -> str:
        """`event`, `exception` or `error`."""
        return str(self.headers.get(":message-type", ""))

    @property
    def event_type(self) -> str:
        """The `:event-type` (`chunk` for Bedrock answers) or the `:exception-type`."""
        return str(self.headers.get(":event-type") or self.headers.get(":exception-type") or "")


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One frame with string headers."""
    raw_headers = bytearray()
    for name, value in headers.items():
        key = name.encode()
        val = value.encode()
        raw_headers += bytes((len(key),)) + key + b"\x07" + len(val).to_bytes(2, "big") + val
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = _PRELUDE.pack(total, len(raw_headers))
    head = prelude + _U32.pack(zlib.crc32(prelude)) + bytes(raw_headers) + payload
    return head + _U32.pack(zlib.crc32(head))


def padding_for(length: int) -> str:
    """Padding like Bedrock's `p` field: letters and digits, its length varying with the event's."""
    return _PADDING[: (length * 7) % len(_PADDING) + 1]


def encode_chunk(event: bytes) -> bytes:
    """A Bedrock `chunk` frame carrying one Anthropic stream event (its JSON bytes)."""
    payload = orjson.dumps({"bytes": base64.b64encode(event).decode(), "p": padding_for(len(event))})
    return encode_frame(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload
    )


def encode_exception(exception_type: str, message: str) -> bytes:
    """A Bedrock exception frame (`throttlingException`, `modelStreamErrorException`, ...)."""
    return encode_frame(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        orjson.dumps({"message": message}),
    )


def chunk_event(frame: Frame) -> bytes:
    """The Anthropic event JSON inside a `chunk` frame."""
    doc = orjson.loads(frame.payload)
    return base64.b64decode(doc["bytes"])


class EventStreamDecoder:
    """Incremental decoder: feed it bytes as they arrive, get back the frames they complete."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[Frame]:
        """Decode what `chunk` completes; raises `EventStreamError` on corrupt input."""
        self._buf += chunk
        frames: list[Frame] = []
        while len(self._buf) >= 12:
            total, headers_len = _PRELUDE.unpack_from(self._buf)
            if total > _MAX_FRAME or total < 16 or headers_len > total - 16:
                raise EventStreamError(f"bad frame lengths: total {total}, headers {headers_len}")
            (prelude_crc,) = _U32.unpack_from(self._buf, 8)
            if zlib.crc32(self._buf[:8]) != prelude_crc:
                raise EventStreamError("prelude checksum mismatch")
            if len(self._buf) < total:
                break
            frame = bytes(self._buf[:total])
            del self._buf[:total]
            (message_crc,) = _U32.unpack_from(frame, total - 4)
            if zlib.crc32(frame[: total - 4]) != message_crc:
                raise EventStreamError("message checksum mismatch")
            headers = _decode_headers(frame[12 : 12 + headers_len])
            frames.append(Frame(headers, frame[12 + headers_len : total - 4]))
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buf)


def _decode_headers(raw: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    i = 0
    try:
        while i < len(raw):
            name_len = raw[i]
            name = raw[i + 1 : i + 1 + name_len].decode()
            i += 1 + name_len
            kind = raw[i]
            i += 1
            value: Any
            if kind in (6, 7):
                length = int.from_bytes(raw[i : i + 2], "big")
                data = raw[i + 2 : i + 2 + length]
                value = data.decode() if kind == 7 else data
                i += 2 + length
            elif kind in _FIXED:
                size = _FIXED[kind]
                data = raw[i : i + size]
                value = kind == 0 if kind in (0, 1) else int.from_bytes(data, "big", signed=True)
                i += size
            else:
                raise EventStreamError(f"unknown header type {kind}")
            headers[name] = value
    except IndexError as exc:
        raise EventStreamError("truncated headers") from exc
    return headers
