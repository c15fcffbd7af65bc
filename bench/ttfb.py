"""Time to first byte: sequential requests over one keep-alive connection, timed per byte.

wrk only knows when an answer is complete. This client sends the same request as
`wrk/post.lua` (POST, `Content-Type: application/json`, `Content-Length`, the extra headers,
the same body file) one at a time (concurrency 1) on a raw asyncio connection, and records for
each answer the time from writing the request to:

- the first **body** byte (for chunked answers, the first byte of chunk data; headers and chunk
  framing do not count): what a client waiting for the first SSE event feels;
- the last byte (the end of the body, as wrk's latency).

The HTTP/1.1 parsing is a few lines (status, `Content-Length`, chunked encoding), so the client
adds almost nothing of its own; on uvloop when it is installed.

    python bench/ttfb.py URL BODY_FILE [NAME:VALUE ...] [-n 1000] [--warmup 100]

prints the figures as one JSON line; bench/run.py runs `measure` on `event_loop_runner()`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TIMEOUT = 10.0  # seconds per request, as wrk's --timeout


class Answer:
    """An HTTP/1.1 response parsed as its bytes arrive."""

    def __init__(self) -> None:
        self.buf = b""
        self.status = 0
        self.head_done = False
        self.length: int | None = None
        self.chunked = False
        self.close = False
        self.chunk_left: int | None = None  # None: a size line is due; -1: trailers after the last chunk
        self.body = bytearray()
        self.done = False

    def feed(self, data: bytes) -> int:
        """Take bytes from the socket; how many body bytes they completed."""
        self.buf += data
        before = len(self.body)
        if not self.head_done:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return 0
            self._head(self.buf[:end].decode("latin-1"))
            self.buf = self.buf[end + 4 :]
        if self.chunked:
            self._chunks()
        else:
            self.body += self.buf
            self.buf = b""
            self.done = self.length is not None and len(self.body) >= self.length
        return len(self.body) - before

    def _head(self, head: str) -> None:
        lines = head.split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                self.length = int(value)
            elif name == "transfer-encoding":
                self.chunked = "chunked" in value
            elif name == "connection":
                self.close = value == "close"
        self.head_done = True

    def _chunks(self) -> None:
        while not self.done:
            if self.chunk_left is None:  # "<hex size>[;ext]\r\n"
                nl = self.buf.find(b"\r\n")
                if nl < 0:
                    return
                size = int(self.buf[:nl].split(b";")[0], 16)
                self.buf = self.buf[nl + 2 :]
                self.chunk_left = size if size else -1
            elif self.chunk_left == -1:  # trailers, ended by an empty line
                self.done = self.buf.startswith(b"\r\n") or b"\r\n\r\n" in self.buf
                return
            elif self.chunk_left > 0:
                take = self.buf[: self.chunk_left]
                self.body += take
                self.buf = self.buf[len(take) :]
                self.chunk_left -= len(take)
                if self.chunk_left:
                    return
            else:  # the CRLF after a chunk's data
                if len(self.buf) < 2:
                    return
                self.buf = self.buf[2:]
                self.chunk_left = None


def request_bytes(url: str, body: bytes, headers: list[str]) -> tuple[str, int, bytes]:
    """Host, port and the raw request wrk would send (`headers` as post.lua's NAME:VALUE)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [
        f"POST {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    for header in headers:
        name, _, value = header.partition(":")
        lines.append(f"{name}: {value.strip()}")
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[Answer, float, float]:
    """One request on an open connection: the answer, seconds to its first body byte and to its end."""
    answer = Answer()
    first = 0.0
    t0 = time.perf_counter()
    writer.write(request)
    while not answer.done:
        data = await reader.read(262144)
        now = time.perf_counter()
        if not data:
            if answer.head_done and not answer.chunked and answer.length is None:
                break  # the body ends with the connection
            raise ConnectionError("connection closed before the answer was complete")
        if answer.feed(data) and not first:
            first = now - t0
    return answer, first, time.perf_counter() - t0


def stats(seconds: list[float]) -> dict[str, float]:
    """Percentiles (nearest rank), mean and max, in milliseconds."""
    if not seconds:
        return {}
    ms = sorted(s * 1000 for s in seconds)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, max(0, math.ceil(p / 100 * len(ms)) - 1))]

    return {
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "p999": pct(99.9),
        "mean": sum(ms) / len(ms),
        "max": ms[-1],
    }


async def measure(
    url: str,
    body: bytes,
    headers: list[str],
    requests: int,
    warmup: int,
    valid: Callable[[int, bytes], bool] | None = None,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """`warmup` untimed requests, then up to `requests` timed ones (fewer when `max_seconds` runs out)."""
    host, port, raw = request_bytes(url, body, headers)
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    first: list[float] = []
    last: list[float] = []
    errors = 0
    deadline = None
    try:
        for i in range(warmup + requests):
            if i == warmup:
                deadline = time.monotonic() + max_seconds if max_seconds else None
            elif deadline is not None and time.monotonic() > deadline:
                break
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                    sock = conn[1].get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                answer, t_first, t_last = await asyncio.wait_for(one(*conn, raw), TIMEOUT)
            except (TimeoutError, OSError, ValueError, IndexError):
                errors += i >= warmup
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            if answer.close or not answer.done:
                conn[1].close()
                conn = None
            if i < warmup:
                continue
            if answer.status != 200 or (valid is not None and not valid(answer.status, bytes(answer.body))):
                errors += 1
                continue
            first.append(t_first)
            last.append(t_last)
    finally:
        if conn is not None:
            conn[1].close()
    return {
        "requests": len(first),
        "errors": errors,
        "ttfb_ms": stats(first),
        "last_byte_ms": stats(last),
    }


def event_loop_runner() -> Callable[..., Any]:
    """uvloop.run when uvloop is installed (the client is then as lean as the servers), else asyncio.run."""
    try:
        import uvloop

        return uvloop.run  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.run


def main() -> int:
    """Command line: the figures for one URL as one JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    p.add_argument("body", type=Path, help="the request body file")
    p.add_argument("headers", nargs="*", help="extra headers, NAME:VALUE")
    p.add_argument("-n", "--requests", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    args = p.parse_args()
    result = event_loop_runner()(
        measure(args.url, args.body.read_bytes(), args.headers, args.requests, args.warmup)
    )
    print(json.dumps(result))
    return 0 if result["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
