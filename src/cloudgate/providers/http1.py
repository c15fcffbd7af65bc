"""A lean HTTP/1.1 client for upstream calls: `asyncio.Protocol` connections parsed by httptools.

`providers/transport.Transport` is the interface the rest of cloudgate sees; this module is what
it sends with. It does what an upstream call needs and no more, because every microsecond here is
paid on every request (docs/decisions/0031-lean-upstream-client.md has the measurements):

- one pool of keep-alive connections per (scheme, host, port), used last-in first-out, with a
  limit on open connections across all hosts (callers over it wait for one to come free);
- requests written in one `transport.write` (head and body), header values checked for CR/LF;
- responses parsed by httptools (the parser uvicorn uses): status, headers, then the body as
  it arrives, chunked encoding removed, bytes otherwise untouched (no decompression);
- flow control: a response whose unread body passes `HIGH_WATER` pauses reading from its
  socket until the consumer catches up;
- a request of an idempotent method (GET, HEAD, PUT, DELETE, OPTIONS) that a reused
  connection lost before one byte of a response came back is sent once more on a new
  connection. A POST is not: a server may have acted on it before closing, so the error goes
  to the caller, whose retry policy knows whether sending again is safe (the gateway's routing
  does: `routing/retry.py`);
- idle connections are closed after `IDLE_TIMEOUT_S`, before most servers drop them.

TLS uses the system's default trust store (`ssl.create_default_context`), or the `ssl_context`
given to `Client`. HTTP proxies are not supported (the upstreams are cloud API endpoints reached
directly).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import sys
import time
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

HIGH_WATER = 1 << 20  # unread response bytes before the socket is paused
LOW_WATER = HIGH_WATER // 4  # ... and resumed
IDLE_TIMEOUT_S = 30.0  # a pooled connection unused this long is closed
_SWEEP_EVERY_S = 5.0
_URL_CACHE_MAX = 1024
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_BODY_EXPECTED = frozenset({"POST", "PUT", "PATCH"})

Key = tuple[str, str, int]  # scheme, host, port


class HTTPClientError(Exception):
    """Base of this module's errors."""


class ConnectFailed(HTTPClientError):
    """No connection could be made (refused, DNS, TLS handshake)."""

    def __init__(self, host: str, port: int, cause: BaseException) -> None:
        super().__init__(f"cannot connect to upstream {host}:{port}: {cause}")
        self.host = host
        self.port = port


class ConnectTimeout(HTTPClientError):
    """The connection was not made within the connect limit."""


class ConnectionLost(HTTPClientError):
    """The connection closed, or the response could not be parsed, before the response ended."""


class _StaleConnection(ConnectionLost):
    """A reused connection closed before a byte of the response: safe to send again."""


class Response:
    """One response: status and headers once they are in, then the body as it arrives.

    The body sits in a small queue of chunks that the connection fills and the reader drains;
    `read()` takes it all, `readchunk()` one chunk at a time (b"" at the end).
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_error",
        "_headers_waiter",
        "_paused",
        "_waiter",
        "eof",
        "headers",
        "status",
    )

    def __init__(self, conn: Connection, headers_waiter: asyncio.Future[None]) -> None:
        self._conn: Connection | None = conn
        self._headers_waiter = headers_waiter
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self.eof = False
        self.status = 0
        self.headers: CIMultiDict[str] = CIMultiDict()

    # -- fed by the connection -------------------------------------------------------------------

    def _headers_in(self, status: int, headers: CIMultiDict[str]) -> None:
        self.status = status
        self.headers = headers
        if not self._headers_waiter.done():
            self._headers_waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        self.eof = True
        self._conn = None
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self.eof:
            return
        self._error = error
        self._conn = None
        if not self._headers_waiter.done():
            self._headers_waiter.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- read by the caller ----------------------------------------------------------------------

    async def _wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _take(self) -> bytes:
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < LOW_WATER:
            self._paused = False
            if self._conn is not None:
                self._conn.resume()
        return chunk

    async def readchunk(self) -> bytes:
        """The next piece of the body as it arrived; b"" once the body has ended."""
        while True:
            if self._chunks:
                return self._take()
            if self._error is not None:
                raise self._error
            if self.eof:
                return b""
            await self._wait()

    async def read(self) -> bytes:
        """The whole body."""
        while not self.eof:
            if self._error is not None:
                raise self._error
            if self._paused:  # over the high-water mark: let the connection go on
                self._paused = False
                if self._conn is not None:
                    self._conn.resume()
            await self._wait()
        if self._error is not None:
            raise self._error
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return body

    def close(self) -> None:
        """Done with it: a body not read to its end closes the connection (it cannot be reused)."""
        conn = self._conn
        if conn is not None and not self.eof:
            self._conn = None
            conn.abort(ConnectionLost("response closed before its end"))
        self._chunks.clear()
        self._buffered = 0


class Connection(asyncio.Protocol):
    """One keep-alive connection to one upstream, carrying one request at a time."""

    __slots__ = (
        "_header_items",
        "_interim",
        "_keep_alive",
        "_no_body",
        "_parser",
        "_pool",
        "_received",
        "closed",
        "idle_since",
        "key",
        "response",
        "reused",
        "transport",
    )

    def __init__(self, pool: Pool, key: Key) -> None:
        self._pool = pool
        self.key = key
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self._header_items: list[tuple[str, str]] = []
        self._interim = False  # the message being parsed is a 1xx (informational) response
        self._keep_alive = True
        self._no_body = False
        self._received = False  # a byte of the current response has arrived
        self.closed = False
        self.reused = False
        self.idle_since = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # nothing was asked: a server talking out of turn
            self.abort(ConnectionLost("upstream sent data with no request outstanding"))
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.abort(ConnectionLost(f"malformed response from upstream: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the response

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._lost(self)
        response = self.response
        if response is None:
            return
        self.response = None
        if exc is None and self._awaiting_close_delimited_end(response):
            response._finish()  # no length and no chunking: the body ends with the connection
            return
        if not self._received and self.reused:
            response._fail(_StaleConnection("pooled connection closed by upstream"))
        elif exc is not None:
            response._fail(ConnectionLost(f"upstream connection lost: {exc}"))
        else:
            response._fail(ConnectionLost("upstream closed the connection before the response ended"))

    def pause_writing(self) -> None:  # request bodies are written whole; the kernel drains them
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_items.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # informational (103 Early Hints...): the real response follows
            self._header_items = []
            self._interim = True
            return
        self._keep_alive = self._parser.should_keep_alive()
        headers: CIMultiDict[str] = CIMultiDict(self._header_items)
        self._header_items = []
        response._headers_in(status, headers)
        if self._no_body:  # HEAD: the parser would wait for a body that never comes
            self._keep_alive = False
            self._complete()

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete()

    # -- used by the pool and the response -------------------------------------------------------

    def _awaiting_close_delimited_end(self, response: Response) -> bool:
        if response.status == 0 or response.eof:
            return False
        headers = response.headers
        return "content-length" not in headers and "transfer-encoding" not in headers

    def _complete(self) -> None:
        response = self.response
        if response is None:
            return
        self.response = None
        paused = response._paused
        response._finish()
        if self._keep_alive and not self.closed:
            if paused:  # the piece that ended the body also crossed HIGH_WATER
                self.resume()  # (the next response on this connection must be read)
            self._pool._release(self)
        else:
            self.abort(None)

    def send(self, head: bytes, body: bytes | None, response: Response, no_body: bool) -> None:
        assert self.transport is not None
        if self.closed:  # lost between connecting (or pooling) and now
            response._fail(ConnectionLost("upstream closed the connection before the request was sent"))
            return
        self.response = response
        self._received = False
        self._no_body = no_body
        self._keep_alive = True
        if body is not None and len(body) >= 65536:  # large: not copied onto the head
            self.transport.write(head)
            self.transport.write(body)
        else:
            self.transport.write(head + body if body else head)

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def abort(self, error: BaseException | None) -> None:
        """Close the connection now; an outstanding response fails with `error`."""
        response = self.response
        self.response = None
        if response is not None and error is not None:
            response._fail(error)
        if not self.closed:
            self.closed = True
            self._pool._lost(self)
            if self.transport is not None:
                # RuntimeError: its event loop is closed (a Transport moved on to another loop);
                # nothing runs there any more, the socket is closed when the transport is collected.
                with contextlib.suppress(RuntimeError):
                    self.transport.abort()


class Pool:
    """Keep-alive connections per (scheme, host, port), at most `limit` open in all (0: any)."""

    def __init__(self, limit: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.limit = limit if limit > 0 else sys.maxsize  # 0: no limit (but the open-files one)
        self._idle: dict[Key, list[Connection]] = {}
        self._open: set[Connection] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._ssl: ssl.SSLContext | None = ssl_context  # None: the default, made when first needed
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._open)

    def idle_count(self) -> int:
        return sum(len(conns) for conns in self._idle.values())

    async def acquire(self, key: Key, connect_timeout: float, fresh: bool = False) -> Connection:
        """A connection to `key`: the most recently used idle one, or a new one (always a new
        one if `fresh`)."""
        while True:
            idle = None if fresh else self._idle.get(key)
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    conn.reused = True
                    return conn
            if len(self._open) < self.limit:
                return await self._connect(key, connect_timeout)
            if self._evict_idle():
                continue  # an idle connection to another host made room
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken but going away (cancelled): pass the turn on
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _connect(self, key: Key, connect_timeout: float) -> Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        context = self._ssl_context() if scheme == "https" else None
        placeholder = Connection(self, key)  # holds the slot while connecting
        self._open.add(placeholder)
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(self, key),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                )
        except BaseException as exc:
            self._open.discard(placeholder)
            self._wake_one()  # the slot is free again
            if isinstance(exc, TimeoutError):
                raise ConnectTimeout(
                    f"connect to upstream {host}:{port} took over {connect_timeout:g}s"
                ) from None
            if isinstance(exc, OSError):  # refused, unreachable, DNS (gaierror), TLS (SSLError)
                raise ConnectFailed(host, port, exc) from exc
            raise
        self._open.discard(placeholder)  # the connection takes over its slot: nobody to wake
        if self._closed:
            conn.abort(None)
            raise ConnectionLost("the client was closed")
        self._open.add(conn)
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _release(self, conn: Connection) -> None:
        """A connection finished its response and may carry the next request."""
        if self._closed:
            conn.abort(None)
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(_SWEEP_EVERY_S, self._sweep)
        self._wake_one()

    def _lost(self, conn: Connection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection, if any (to make room for another host)."""
        oldest: Connection | None = None
        for conns in self._idle.values():
            for conn in conns:
                if not conn.closed and (oldest is None or conn.idle_since < oldest.idle_since):
                    oldest = conn
        if oldest is None:
            return False
        self._idle[oldest.key].remove(oldest)
        oldest.abort(None)
        return True

    def _sweep(self) -> None:
        self._sweeper = None
        cutoff = time.monotonic() - IDLE_TIMEOUT_S
        remaining = 0
        for key in list(self._idle):
            keep = []
            for conn in self._idle[key]:
                if conn.closed:
                    continue
                if conn.idle_since < cutoff:
                    conn.abort(None)
                else:
                    keep.append(conn)
            if keep:
                self._idle[key] = keep
                remaining += len(keep)
            else:
                del self._idle[key]
        if remaining and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(_SWEEP_EVERY_S, self._sweep)

    def close(self) -> None:
        """Close every connection; requests in flight fail."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._open):
            conn.abort(ConnectionLost("the client was closed"))
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionLost("the client was closed"))


class Target:
    """What a URL comes to for sending: the pool key, the request line's target, the Host header."""

    __slots__ = ("host_header", "key", "path")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        default_port = 443 if scheme == "https" else 80
        port = parts.port or default_port
        self.key: Key = (scheme, parts.hostname, port)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        self.path = path
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        self.host_header = host if port == default_port else f"{host}:{port}"


class Client:
    """Sends requests over the pool; `request` returns once the response headers are in."""

    def __init__(self, limit: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.pool = Pool(limit, ssl_context)
        self._targets: dict[str, Target] = {}

    def _target(self, url: str) -> Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= _URL_CACHE_MAX:
                self._targets.clear()
            target = self._targets[url] = Target(url)
        return target

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        connect_timeout: float,
    ) -> Response:
        target = self._target(url)
        head = _head(method, target, headers, body)
        loop = asyncio.get_running_loop()
        attempts = 2 if method in _IDEMPOTENT else 1
        for attempt in range(attempts):
            conn = await self.pool.acquire(target.key, connect_timeout, fresh=attempt > 0)
            waiter = loop.create_future()
            response = Response(conn, waiter)
            conn.send(head, body, response, no_body=method == "HEAD")
            try:
                await waiter
            except _StaleConnection:
                if attempt + 1 < attempts:
                    continue
                raise ConnectionLost("upstream closed a reused connection before answering") from None
            except asyncio.CancelledError:
                response.close()  # the caller gave up: this connection cannot carry another request
                raise
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.pool.close()


def _head(method: str, target: Target, headers: Mapping[str, str], body: bytes | None) -> bytes:
    """The request line and headers, ready to write."""
    lines = [f"{method} {target.path} HTTP/1.1\r\n"]
    has_host = has_length = False
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "host":
            has_host = True
        elif lowered == "content-length":
            has_length = True
        lines.append(f"{name}: {value}\r\n")
    if not has_host:
        lines.append(f"Host: {target.host_header}\r\n")
    if not has_length and (body is not None or method in _BODY_EXPECTED):
        lines.append(f"Content-Length: {len(body or b'')}\r\n")  # some servers answer 411 without
    lines.append("\r\n")
    text = "".join(lines)
    # One CR and one LF per line: anything else in a name or value would split the header.
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise ValueError("a header name or value contains a line break")
    return text.encode("latin-1")
