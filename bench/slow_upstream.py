"""A slow streaming upstream: one SSE event every --interval-ms for --seconds, per request.

    .venv/bin/python bench/slow_upstream.py --port N [--interval-ms 50] [--seconds 30]

nginx answers at once and cannot pace events, so bench/streams.py needs this server to hold
thousands of long, slow streams. It is deliberately lean so that it is never the bottleneck
(2,000 streams at 50 ms are 40,000 events/s): a raw asyncio `Protocol` on uvloop, HTTP/1.1
parsed only as far as needed (request line, headers, a `content-length` body), and an answer of
pre-encoded chunks written from `loop.call_at` timers; nothing is encoded per event.

Every POST to a path ending in `:streamRawPredict` gets `200 text/event-stream` with
`transfer-encoding: chunked` (so the connection stays reusable) and the Anthropic/Vertex stream:
message_start and content_block_start at once, then one `content_block_delta` every interval
until `seconds` have passed, then content_block_stop, message_delta (with usage) and
message_stop. Events are encoded with `cloudgate.protocol.sse.encode_event`, like every other
bench upstream. Ticks are scheduled on absolute times (start + k * interval), so a late tick does
not push the following ones back. Any other request gets a 404.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
from typing import Any

import upstream  # bench/upstream.py: the events of the static stream

from cloudgate.protocol.sse import encode_event

MAX_HEADER_BYTES = 64 * 1024


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk holding `data`."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


def deltas_for(interval_s: float, seconds: float) -> int:
    """How many content_block_delta events one stream carries."""
    return max(1, round(seconds / interval_s))


def _events(kinds: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    """The events of bench/upstream.py's static stream with these names, in its order."""
    return [(name, data) for name, data in upstream.stream_events() if name in kinds]


def head_events() -> bytes:
    """message_start and content_block_start: sent with the response headers."""
    return b"".join(encode_event(n, d) for n, d in _events(("message_start", "content_block_start")))


def delta_events() -> list[bytes]:
    """The content_block_delta events (one word each), cycled through by the ticks."""
    return [encode_event(n, d) for n, d in _events(("content_block_delta",))]


def tail_events(deltas: int) -> bytes:
    """content_block_stop, message_delta with usage (`deltas` output tokens), message_stop:
    sent with the last delta."""
    out = b""
    for name, data in _events(("content_block_stop", "message_delta", "message_stop")):
        if name == "message_delta":
            data = data | {"usage": {"output_tokens": deltas}}
        out += encode_event(name, data)
    return out


class Wire:
    """Every byte string the server sends, encoded once."""

    def __init__(self, interval_s: float, seconds: float) -> None:
        self.interval = interval_s
        self.deltas = deltas_for(interval_s, seconds)
        self.start = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + chunk(head_events())
        )
        deltas = delta_events()
        self.ticks = [chunk(e) for e in deltas]
        # The last delta, the closing events and the terminating zero-length chunk, in one write.
        last_delta = deltas[(self.deltas - 1) % len(deltas)]
        self.last = chunk(last_delta + tail_events(self.deltas)) + b"0\r\n\r\n"
        body = b'{"error":"not found"}'
        self.not_found = (
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
            % len(body)
            + body
        )


class SlowStream(asyncio.Protocol):
    """One connection: parse a request, answer with a paced stream, then wait for the next one."""

    __slots__ = ("_buf", "_handle", "_loop", "_need", "_path", "_sent", "_t0", "_transport", "_wire")

    def __init__(self, wire: Wire, loop: asyncio.AbstractEventLoop) -> None:
        self._wire = wire
        self._loop = loop
        self._buf = b""
        self._need = -1  # body bytes still expected; -1: reading headers
        self._path = b""
        self._transport: asyncio.Transport | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._sent = 0
        self._t0 = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._handle is not None:  # a pipelined request while streaming: not supported
            return
        self._buf += data
        if self._need < 0:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEADER_BYTES and self._transport is not None:
                    self._transport.close()
                return
            head, self._buf = self._buf[:end], self._buf[end + 4 :]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            self._path = parts[1] if len(parts) > 1 else b""
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            self._need = length
        if len(self._buf) < self._need:
            return
        self._buf = self._buf[self._need :]
        self._need = -1
        self._answer()

    def _answer(self) -> None:
        transport = self._transport
        if transport is None:
            return
        if not self._path.split(b"?")[0].endswith(b":streamRawPredict"):
            transport.write(self._wire.not_found)
            return
        transport.write(self._wire.start)
        self._sent = 0
        self._t0 = self._loop.time()
        self._handle = self._loop.call_at(self._t0 + self._wire.interval, self._tick)

    def _tick(self) -> None:
        transport = self._transport
        if transport is None:
            return
        wire = self._wire
        self._sent += 1
        if self._sent >= wire.deltas:
            transport.write(wire.last)
            self._handle = None
            if self._buf:  # a request that arrived during the stream
                self.data_received(b"")
            return
        transport.write(wire.ticks[(self._sent - 1) % len(wire.ticks)])
        self._handle = self._loop.call_at(self._t0 + (self._sent + 1) * wire.interval, self._tick)


async def serve(port: int, interval_s: float, seconds: float, host: str = "127.0.0.1") -> None:
    """Serve until cancelled."""
    loop = asyncio.get_running_loop()
    wire = Wire(interval_s, seconds)
    server = await loop.create_server(lambda: SlowStream(wire, loop), host, port, backlog=8192)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Parse the options and serve on 127.0.0.1 until interrupted."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--interval-ms", type=float, default=50.0)
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.port, args.interval_ms / 1000, args.seconds))


if __name__ == "__main__":
    main()
