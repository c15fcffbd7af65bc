"""http1: the lean upstream HTTP/1.1 client, against real loopback servers speaking raw bytes.

Each test starts an `asyncio.start_server` whose handler reads requests and writes exactly the
bytes the test wants (split into separate TCP writes where the split matters), so chunking,
close-delimited bodies, malformed responses, stale keep-alive connections and slow bodies are
all under the test's control. The server counts the connections it accepts and how many are
open at once, which is how connection reuse and the pool limit are observed from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import re
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from cloudgate.providers import http1
from cloudgate.providers.http1 import Client, ConnectFailed, ConnectionLost, ConnectTimeout, Target
from cloudgate.providers.transport import (
    Timeouts,
    Transport,
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamTimeout,
)
from cloudgate.util.server import serving

CT = 2.0  # connect timeout for requests to loopback


# -- a raw HTTP/1.1 server ---------------------------------------------------------------------


@dataclass
class Request:
    method: str
    target: str
    headers: CIMultiDict[str]
    body: bytes
    raw_head: bytes


@dataclass
class Conn:
    """One accepted connection, as a handler sees it."""

    index: int  # 1 for the first connection the server accepted
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: Server
    requests: list[Request] = field(default_factory=list)

    async def next_request(self) -> Request | None:
        """The next request on this connection, or None once the client closed it."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        assert version == "HTTP/1.1"
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.add(name, value.strip())
        try:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        request = Request(method, target, headers, body, head)
        self.requests.append(request)
        self.server.requests.append(request)
        return request

    async def send(self, *pieces: bytes, gap: float = 0.0) -> None:
        """Write each piece separately (a pause between them makes them separate reads)."""
        for i, piece in enumerate(pieces):
            if i and gap:
                await asyncio.sleep(gap)
            self.writer.write(piece)
            await self.writer.drain()

    async def wait_closed_by_client(self) -> None:
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass


Handler = Callable[[Conn], Awaitable[None]]


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self.conns: list[Conn] = []
        self.requests: list[Request] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.host = "127.0.0.1"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        conn = Conn(self.accepted, reader, writer, self)
        self.conns.append(conn)
        try:
            await self.handler(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()
            self._tasks.discard(task)

    async def stop(self) -> None:
        for conn in self.conns:
            conn.writer.transport.abort()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=1)
            for task in pending:
                task.cancel()


@contextlib.asynccontextmanager
async def serve(
    handler: Handler, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    srv = Server(handler)
    srv.host = host
    server = await asyncio.start_server(srv._serve, host, 0, ssl=ssl_context)
    srv.port = server.sockets[0].getsockname()[1]
    try:
        yield srv
    finally:
        server.close()
        await srv.stop()
        await server.wait_closed()


def response(body: bytes = b"ok", status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def answer_all(conn: Conn) -> None:
    """Answer every request on the connection with 200 and the request target as the body."""
    while (req := await conn.next_request()) is not None:
        await conn.send(response(req.target.encode()))


async def echo_head(conn: Conn) -> None:
    """Answer every request with its own head, as received."""
    while (req := await conn.next_request()) is not None:
        await conn.send(response(req.raw_head))


async def until(condition: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    c = Client(limit=10)
    try:
        yield c
    finally:
        c.close()


async def get(client: Client, url: str, method: str = "GET", body: bytes | None = None) -> http1.Response:
    return await client.request(method, url, {}, body, connect_timeout=CT)


# -- status, headers, bodies -------------------------------------------------------------------


async def test_status_headers_and_a_content_length_body(client: Client) -> None:
    async def handler(conn: Conn) -> None:
        await conn.next_request()
        await conn.send(
            b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Multi: a\r\n"
            b"x-multi: b\r\nContent-Length: 11\r\n\r\nhello world"
        )
        await conn.wait_closed_by_client()

    async with serve(handler) as srv:
        resp = await get(client, srv.url + "/")
        assert resp.status == 201
        assert resp.headers["CONTENT-TYPE"] == "text/plain"
        assert resp.headers.getall("X-MULTI") == ["a", "b"]
        assert await resp.read() == b"hello world"
        assert resp.eof


async def test_headers_split_across_writes_are_reassembled(client: Client) -> None:
    async def handler(conn: Conn) -> None:
        await conn.next_request()
        await conn.send(
            b"HTTP/1.1 2",
            b"00 OK\r\nX-Lo",
            b"ng-Name: first pa",
            b"rt second part\r",
            b"\nContent-Length: 3\r\n\r",
            b"\nabc",
            gap=0.01,
        )
        await conn.wait_closed_by_client()

    async with serve(handler) as srv:
        resp = await get(client, srv.url)
        assert resp.status == 200
        assert resp.headers["x-long-name"] == "first part second part"
        assert await resp.read() == b"abc"


CHUNKED_PIECES = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chu",
    b"nked\r\n\r\n",
    b"5\r\nhel",  # split inside a chunk's data
    b"lo\r\n1",  # ... and inside the next chunk-size line ("10")
    b"0\r\n0123456789abcdef\r",  # ... and between a chunk's CR and LF
    b"\n3\r\nxyz\r\n0\r",
    b"\n\r\n",
)
CHUNKED_BODY = b"hello0123456789abcdefxyz"


async def chunked_handler(conn: Conn) -> None:
    while await conn.next_request() is not None:
        await conn.send(*CHUNKED_PIECES, gap=0.01)


async def test_a_chunked_body_split_awkwardly_via_readchunk(client: Client) -> None:
    async with serve(chunked_handler) as srv:
        resp = await get(client, srv.url)
        chunks = []
        while chunk := await resp.readchunk():
            chunks.append(chunk)
        assert b"".join(chunks) == CHUNKED_BODY
        assert len(chunks) >= 3  # the body arrived in pieces and was handed over as it came
        assert await resp.readchunk() == b""  # stays at the end
        # The chunked response ended properly: the connection is reused.
        resp2 = await get(client, srv.url)
        assert await resp2.read() == CHUNKED_BODY
        assert srv.accepted == 1


async def test_a_chunked_body_split_awkwardly_via_read(client: Client) -> None:
    async with serve(chunked_handler) as srv:
        resp = await get(client, srv.url)
        assert await resp.read() == CHUNKED_BODY
        assert "content-length" not in resp.headers


@pytest.mark.parametrize("use_readchunk", [False, True])
async def test_a_close_delimited_body_is_complete_not_an_error(client: Client, use_readchunk: bool) -> None:
    async def handler(conn: Conn) -> None:
        await conn.next_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"part one, ", gap=0.01)
        await asyncio.sleep(0.02)
        await conn.send(b"part two")
        # returning closes the connection: that is the end of the body

    async with serve(handler) as srv:
        resp = await get(client, srv.url)
        if use_readchunk:
            body = b""
            while chunk := await resp.readchunk():
                body += chunk
        else:
            body = await resp.read()
        assert body == b"part one, part two"
        assert resp.eof
        assert client.pool.idle_count() == 0 and len(client.pool) == 0


async def test_a_close_delimited_body_cut_by_a_reset_is_an_error(client: Client) -> None:
    """A close-delimited body ends with an orderly close (FIN); a reset (RST) cuts it short."""

    async def handler(conn: Conn) -> None:
        await conn.next_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await asyncio.sleep(0.05)
        sock = conn.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.writer.transport.abort()  # close with linger 0: a reset

    async with serve(handler) as srv:
        resp = await get(client, srv.url)
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(resp.read(), 1)


async def test_interim_1xx_responses_are_skipped(client: Client) -> None:
    async def handler(conn: Conn) -> None:
        while (req := await conn.next_request()) is not None:
            await conn.send(
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\n",
                response(req.target.encode(), extra="X-Final: yes\r\n"),
                gap=0.02,
            )

    async with serve(handler) as srv:
        for path in ("/1", "/2"):  # the final response is this request's, and not the next one's
            resp = await asyncio.wait_for(get(client, srv.url + path), 1)
            assert resp.status == 200
            assert resp.headers["x-final"] == "yes" and "link" not in resp.headers
            assert await asyncio.wait_for(resp.read(), 1) == path.encode()
        assert srv.accepted == 1


async def test_a_204_has_no_body_and_keeps_the_connection(client: Client) -> None:
    async def handler(conn: Conn) -> None:
        while (req := await conn.next_request()) is not None:
            if req.target == "/empty":
                await conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")
            else:
                await conn.send(response(b"after"))

    async with serve(handler) as srv:
        resp = await get(client, srv.url + "/empty")
        assert resp.status == 204
        assert await asyncio.wait_for(resp.read(), 1) == b""
        resp = await get(client, srv.url + "/")
        assert await resp.read() == b"after"
        assert srv.accepted == 1


async def test_a_head_response_ends_at_its_headers(client: Client) -> None:
    async with serve(answer_all) as srv:
        resp = await asyncio.wait_for(get(client, srv.url + "/x", method="HEAD"), 1)
        assert resp.status == 200
        assert resp.headers["content-length"] == "2"  # what a GET would have had ...
        assert await asyncio.wait_for(resp.read(), 1) == b""  # ... but no body follows
        resp = await get(client, srv.url + "/y")
        assert await resp.read() == b"/y"
        assert [r.method for r in srv.requests] == ["HEAD", "GET"]


# -- keep-alive --------------------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(client: Client) -> None:
    async with serve(answer_all) as srv:
        for path in ("/a", "/b", "/c"):
            resp = await get(client, srv.url + path)
            assert await resp.read() == path.encode()
        assert srv.accepted == 1
        assert [r.target for r in srv.conns[0].requests] == ["/a", "/b", "/c"]
        assert client.pool.idle_count() == 1 and len(client.pool) == 1


async def test_connection_close_from_the_server_means_a_new_connection(client: Client) -> None:
    async def handler(conn: Conn) -> None:
        await conn.next_request()
        await conn.send(response(b"bye", extra="Connection: close\r\n"))
        await conn.wait_closed_by_client()  # the client must be the one that lets go

    async with serve(handler) as srv:
        assert await (await get(client, srv.url)).read() == b"bye"
        assert await (await get(client, srv.url)).read() == b"bye"
        assert srv.accepted == 2
        await until(lambda: srv.open == 0)  # the client closed both connections itself
        assert client.pool.idle_count() == 0


async def test_a_response_closed_before_its_end_does_not_return_its_connection(client: Client) -> None:
    async def handler(conn: Conn) -> None:
        while (req := await conn.next_request()) is not None:
            if req.target == "/partial":
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf.")
            else:
                await conn.send(response(b"full"))

    async with serve(handler) as srv:
        resp = await get(client, srv.url + "/partial")
        assert await resp.readchunk() == b"half."
        resp.close()
        assert client.pool.idle_count() == 0 and len(client.pool) == 0
        await until(lambda: srv.open == 0)  # the server saw the connection go
        assert await (await get(client, srv.url + "/")).read() == b"full"
        assert srv.accepted == 2


async def test_closing_a_fully_read_response_keeps_the_connection(client: Client) -> None:
    async with serve(answer_all) as srv:
        resp = await get(client, srv.url + "/1")
        assert await resp.read() == b"/1"
        resp.close()
        assert await (await get(client, srv.url + "/2")).read() == b"/2"
        assert srv.accepted == 1


# -- the pool limit ----------------------------------------------------------------------------


async def test_the_pool_limit_caps_open_connections_and_everyone_gets_served() -> None:
    async def slow(conn: Conn) -> None:
        while (req := await conn.next_request()) is not None:
            await asyncio.sleep(0.1)
            await conn.send(response(req.target.encode()))

    client = Client(limit=2)
    try:
        async with serve(slow) as srv:
            seen_open: list[int] = []

            async def one(i: int) -> bytes:
                resp = await get(client, f"{srv.url}/{i}")
                seen_open.append(len(client.pool))
                return await resp.read()

            bodies = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(5))), 3)
            assert bodies == [f"/{i}".encode() for i in range(5)]
            assert srv.max_open <= 2
            assert max(seen_open) <= 2
            assert srv.accepted == 2  # the waiters were given the two connections, not new ones
    finally:
        client.close()


async def test_limit_zero_means_no_limit() -> None:
    async def slow(conn: Conn) -> None:
        while (req := await conn.next_request()) is not None:
            await asyncio.sleep(0.1)
            await conn.send(response(req.target.encode()))

    client = Client(limit=0)
    try:
        async with serve(slow) as srv:
            resps = await asyncio.wait_for(
                asyncio.gather(*(get(client, f"{srv.url}/{i}") for i in range(4))), 2
            )
            assert [await r.read() for r in resps] == [f"/{i}".encode() for i in range(4)]
            assert srv.max_open == 4
    finally:
        client.close()


async def test_idle_connections_to_one_host_make_room_for_another() -> None:
    client = Client(limit=1)
    try:
        async with serve(answer_all) as a, serve(answer_all) as b:
            assert await (await get(client, a.url + "/a")).read() == b"/a"
            assert client.pool.idle_count() == 1
            resp = await asyncio.wait_for(get(client, b.url + "/b"), 1)
            assert await resp.read() == b"/b"
            await until(lambda: a.open == 0)  # host A's idle connection was closed for B's
            assert len(client.pool) == 1 and client.pool.idle_count() == 1
            # And back to A: B's idle connection goes the same way.
            assert await (await asyncio.wait_for(get(client, a.url + "/a2"), 1)).read() == b"/a2"
            await until(lambda: b.open == 0)
            assert a.accepted == 2 and b.accepted == 1
    finally:
        client.close()


async def test_a_cancelled_waiter_does_not_swallow_the_wakeup_of_another() -> None:
    """limit=1: one connection busy, two requests waiting for it. The connection frees up and the
    first waiter is woken, but it is cancelled before it runs: the second must still get served."""

    async def handler(conn: Conn) -> None:
        while (req := await conn.next_request()) is not None:
            if req.target == "/hold":
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf.")
            else:
                await conn.send(response(b"served"))

    client = Client(limit=1)
    try:
        async with serve(handler) as srv:
            held = await get(client, srv.url + "/hold")
            first = asyncio.ensure_future(get(client, srv.url + "/1"))
            second = asyncio.ensure_future(get(client, srv.url + "/2"))
            await asyncio.sleep(0.05)
            assert not first.done() and not second.done()  # both wait for the only slot
            held.close()  # frees the slot and wakes the first waiter ...
            first.cancel()  # ... which goes away before it gets to run
            with pytest.raises(asyncio.CancelledError):
                await first
            resp = await asyncio.wait_for(second, 1)
            assert await resp.read() == b"served"
    finally:
        client.close()


# -- idle sweeping -----------------------------------------------------------------------------


async def test_an_idle_connection_is_closed_after_the_idle_timeout(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http1, "IDLE_TIMEOUT_S", 0.15)
    monkeypatch.setattr(http1, "_SWEEP_EVERY_S", 0.05)
    async with serve(answer_all) as srv:
        assert await (await get(client, srv.url + "/1")).read() == b"/1"
        assert client.pool.idle_count() == 1
        started = time.monotonic()
        await until(lambda: srv.open == 0, within=2)
        assert time.monotonic() - started >= 0.1  # not before the timeout
        assert client.pool.idle_count() == 0 and len(client.pool) == 0
        # The pool still works afterwards, on a new connection.
        assert await (await get(client, srv.url + "/2")).read() == b"/2"
        assert srv.accepted == 2


async def test_a_connection_in_use_is_not_swept(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "IDLE_TIMEOUT_S", 0.05)
    monkeypatch.setattr(http1, "_SWEEP_EVERY_S", 0.02)

    async def handler(conn: Conn) -> None:
        while (req := await conn.next_request()) is not None:
            if req.target == "/slow":
                await asyncio.sleep(0.3)
            await conn.send(response(req.target.encode()))

    async with serve(handler) as srv:
        assert await (await get(client, srv.url + "/fast")).read() == b"/fast"  # arms the sweeper
        assert await (await get(client, srv.url + "/slow")).read() == b"/slow"  # busy past the timeout
        assert srv.accepted == 1


# -- stale keep-alive connections --------------------------------------------------------------


async def stale_after_first(conn: Conn) -> None:
    """The first connection answers once, then drops the next request without a byte (as a server
    whose keep-alive timer fired at that moment would); later connections answer everything."""
    if conn.index == 1:
        await conn.next_request()
        await conn.send(response(b"first"))
        await conn.next_request()
        return
    await answer_all(conn)


async def test_a_get_on_a_stale_connection_is_retried_once_on_a_new_one(client: Client) -> None:
    async with serve(stale_after_first) as srv:
        assert await (await get(client, srv.url + "/1")).read() == b"first"
        resp = await get(client, srv.url + "/2")
        assert await resp.read() == b"/2"
        assert srv.accepted == 2
        assert [r.target for r in srv.conns[0].requests] == ["/1", "/2"]
        assert [r.target for r in srv.conns[1].requests] == ["/2"]


async def test_a_post_on_a_stale_connection_is_not_retried(client: Client) -> None:
    async with serve(stale_after_first) as srv:
        assert await (await get(client, srv.url + "/1", method="POST", body=b"x")).read() == b"first"
        with pytest.raises(ConnectionLost):
            await get(client, srv.url + "/2", method="POST", body=b"y")
        assert srv.accepted == 1
        assert [(r.target, r.body) for r in srv.conns[0].requests] == [("/1", b"x"), ("/2", b"y")]


async def test_the_retry_goes_to_a_new_connection_not_another_stale_one(client: Client) -> None:
    """Two idle connections that went stale together (a server restart, a keep-alive timer): the
    retry must not land on the other stale one."""

    async def once_then_drop(conn: Conn) -> None:
        if conn.index <= 2:
            req = await conn.next_request()
            assert req is not None
            await asyncio.sleep(0.05)  # so that two requests hold two connections at once
            await conn.send(response(req.target.encode()))
            await conn.next_request()
            return
        await answer_all(conn)

    async with serve(once_then_drop) as srv:
        first = await asyncio.gather(get(client, srv.url + "/a"), get(client, srv.url + "/b"))
        assert sorted([await r.read() for r in first]) == [b"/a", b"/b"]
        assert client.pool.idle_count() == 2
        resp = await get(client, srv.url + "/c")
        assert await resp.read() == b"/c"
        assert srv.accepted == 3


async def test_a_connection_lost_after_part_of_the_response_is_not_retried(client: Client) -> None:
    async def handler(conn: Conn) -> None:
        await conn.next_request()
        await conn.send(response(b"first"))
        await conn.next_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Le")  # a byte came back: not stale

    async with serve(handler) as srv:
        assert await (await get(client, srv.url)).read() == b"first"
        with pytest.raises(ConnectionLost):
            await get(client, srv.url)
        assert srv.accepted == 1


# -- errors ------------------------------------------------------------------------------------


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_connect_failed_naming_host_and_port(client: Client) -> None:
    port = unused_port()
    with pytest.raises(ConnectFailed) as caught:
        await get(client, f"http://127.0.0.1:{port}/")
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert (caught.value.host, caught.value.port) == ("127.0.0.1", port)
    assert len(client.pool) == 0  # the slot held while connecting was given back


@contextlib.contextmanager
def unresponsive_listener() -> Iterator[int]:
    """A port whose accept queue is full, so a new connect hangs (its SYNs are dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.05)
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def test_a_connect_that_hangs_times_out(client: Client) -> None:
    with unresponsive_listener() as port:
        started = time.monotonic()
        with pytest.raises(ConnectTimeout, match=re.escape(f"127.0.0.1:{port}")):
            await client.request("GET", f"http://127.0.0.1:{port}/", {}, None, connect_timeout=0.2)
        assert time.monotonic() - started < 1.5
        assert len(client.pool) == 0


@pytest.mark.parametrize(
    "garbage",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    ],
)
async def test_a_malformed_response_is_connection_lost(client: Client, garbage: bytes) -> None:
    async def handler(conn: Conn) -> None:
        await conn.next_request()
        await conn.send(garbage)
        await conn.wait_closed_by_client()

    async with serve(handler) as srv:
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(get(client, srv.url), 1)
        await until(lambda: srv.open == 0)  # and the connection was dropped
        assert len(client.pool) == 0


async def test_malformed_chunked_framing_mid_body_is_connection_lost(client: Client) -> None:
    async def handler(conn: Conn) -> None:
        await conn.next_request()
        await conn.send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", b"zz\r\n", gap=0.02
        )
        await conn.wait_closed_by_client()

    async with serve(handler) as srv:
        resp = await get(client, srv.url)
        assert await resp.readchunk() == b"abc"
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(resp.readchunk(), 1)


async def mid_body_close(conn: Conn) -> None:
    await conn.next_request()
    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    await asyncio.sleep(0.05)


async def chunked_mid_body_close(conn: Conn) -> None:
    await conn.next_request()
    await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
    await asyncio.sleep(0.05)


@pytest.mark.parametrize("handler", [mid_body_close, chunked_mid_body_close])
async def test_a_server_closing_mid_body_fails_read(client: Client, handler: Handler) -> None:
    async with serve(handler) as srv:
        resp = await get(client, srv.url)
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(resp.read(), 1)


@pytest.mark.parametrize("handler", [mid_body_close, chunked_mid_body_close])
async def test_a_server_closing_mid_body_fails_readchunk_after_the_data(
    client: Client, handler: Handler
) -> None:
    async with serve(handler) as srv:
        resp = await get(client, srv.url)
        assert await resp.readchunk() == b"0123456789"
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(resp.readchunk(), 1)
        with pytest.raises(ConnectionLost):  # and it stays failed
            await resp.readchunk()


@pytest.mark.parametrize(
    "headers",
    [{"X-Evil": "a\r\nX-Injected: 1"}, {"X-Evil": "a\nb"}, {"X-Evil": "a\rb"}, {"X-Evil\r\nX-Injected": "1"}],
)
async def test_a_line_break_in_a_header_is_refused_and_nothing_is_sent(
    client: Client, headers: dict[str, str]
) -> None:
    async with serve(echo_head) as srv:
        await (await get(client, srv.url + "/before")).read()  # a pooled connection exists
        with pytest.raises(ValueError):
            await client.request("GET", srv.url + "/evil", headers, None, connect_timeout=CT)
        resp = await get(client, srv.url + "/after")
        assert b"Injected" not in await resp.read()
        assert [r.target for r in srv.requests] == ["/before", "/after"]
        assert srv.accepted == 1


async def test_closing_the_client_fails_requests_in_flight() -> None:
    async def hold(conn: Conn) -> None:
        await conn.next_request()
        await conn.wait_closed_by_client()

    client = Client(limit=4)
    async with serve(hold) as srv:
        task = asyncio.ensure_future(get(client, srv.url))
        await until(lambda: len(srv.requests) == 1)
        client.close()
        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(task, 1)
        await until(lambda: srv.open == 0)


def test_a_url_that_is_not_http_is_refused() -> None:
    for url in ("ftp://example.com/", "http:///path", "example.com/path"):
        with pytest.raises(ValueError):
            Target(url)


# -- what goes on the wire ---------------------------------------------------------------------


def test_the_host_header_and_the_request_target() -> None:
    assert Target("http://example.com/v1?x=1").host_header == "example.com"
    assert Target("http://example.com:80/").host_header == "example.com"
    assert Target("https://example.com:443/").host_header == "example.com"
    assert Target("https://example.com:80/").host_header == "example.com:80"
    assert Target("http://Example.COM:8080").host_header == "example.com:8080"
    assert Target("http://[::1]:8080/").host_header == "[::1]:8080"
    assert Target("https://[2001:db8::1]/").host_header == "[2001:db8::1]"
    assert Target("https://[2001:db8::1]/").key == ("https", "2001:db8::1", 443)
    assert Target("http://example.com").path == "/"
    assert Target("http://example.com/a/b?q=1&r=%20#frag").path == "/a/b?q=1&r=%20"
    assert Target("http://example.com?q=1").path == "/?q=1"


def parse_echo(body: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = body.decode("latin-1").split("\r\n")
    pairs = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            pairs.append((name.lower(), value.strip()))
    return lines[0], pairs


async def test_the_request_line_and_the_headers_sent(client: Client) -> None:
    async with serve(echo_head) as srv:
        resp = await client.request(
            "GET", srv.url + "/v1/models?page=2&q=a%20b", {"X-Api-Key": "k"}, None, connect_timeout=CT
        )
        line, pairs = parse_echo(await resp.read())
        assert line == "GET /v1/models?page=2&q=a%20b HTTP/1.1"
        assert ("host", f"127.0.0.1:{srv.port}") in pairs
        assert ("x-api-key", "k") in pairs
        assert not any(name == "content-length" for name, _ in pairs)  # no body, no length

        resp = await client.request("POST", srv.url + "/p", {}, b'{"a":1}', connect_timeout=CT)
        _, pairs = parse_echo(await resp.read())
        assert [v for n, v in pairs if n == "content-length"] == ["7"]
        assert srv.requests[-1].body == b'{"a":1}'

        resp = await client.request("POST", srv.url + "/e", {}, b"", connect_timeout=CT)
        _, pairs = parse_echo(await resp.read())
        assert [v for n, v in pairs if n == "content-length"] == ["0"]


async def test_the_callers_host_and_content_length_are_not_duplicated(client: Client) -> None:
    async with serve(echo_head) as srv:
        headers = {"host": "api.example.com", "CONTENT-LENGTH": "3"}
        resp = await client.request("PUT", srv.url + "/", headers, b"abc", connect_timeout=CT)
        _, pairs = parse_echo(await resp.read())
        assert [v for n, v in pairs if n == "host"] == ["api.example.com"]
        assert [v for n, v in pairs if n == "content-length"] == ["3"]
        assert srv.requests[-1].body == b"abc"


async def test_a_large_request_body_arrives_whole(client: Client) -> None:
    body = bytes(range(256)) * 2048  # 512 KiB: written after the head, not with it

    async def digest(conn: Conn) -> None:
        while (req := await conn.next_request()) is not None:
            await conn.send(response(hashlib.sha256(req.body).hexdigest().encode()))

    async with serve(digest) as srv:
        resp = await get(client, srv.url, method="POST", body=body)
        assert await resp.read() == hashlib.sha256(body).hexdigest().encode()


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
async def test_an_ipv6_literal_is_bracketed_in_the_host_header(client: Client) -> None:
    async with serve(echo_head, host="::1") as srv:
        resp = await get(client, f"http://[::1]:{srv.port}/six")
        line, pairs = parse_echo(await resp.read())
        assert line == "GET /six HTTP/1.1"
        assert ("host", f"[::1]:{srv.port}") in pairs


# -- flow control ------------------------------------------------------------------------------

BIG = bytes(range(256)) * (8 * 4096)  # 8 MiB
READ_MAX = 256 * 1024  # the most one read from the socket hands over


async def big_then_small(conn: Conn) -> None:
    while (req := await conn.next_request()) is not None:
        if req.target == "/big":
            conn.writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(BIG)}\r\n\r\n".encode())
            conn.writer.write(BIG)
            await conn.writer.drain()
        else:
            await conn.send(response(b"small"))


async def test_a_fast_big_body_to_a_slow_reader_is_bounded_and_intact(client: Client) -> None:
    async with serve(big_then_small) as srv:
        resp = await get(client, srv.url + "/big")
        transport = resp._conn.transport if resp._conn is not None else None
        assert transport is not None
        peak = 0
        for _ in range(20):  # the reader sleeps while the server writes as fast as it can
            await asyncio.sleep(0.01)
            peak = max(peak, resp._buffered)
        assert http1.HIGH_WATER < peak <= http1.HIGH_WATER + READ_MAX
        assert not transport.is_reading()  # paused
        digest, size = hashlib.sha256(), 0
        while chunk := await resp.readchunk():
            digest.update(chunk)
            size += len(chunk)
            peak = max(peak, resp._buffered)
        assert size == len(BIG)
        assert digest.digest() == hashlib.sha256(BIG).digest()
        assert peak <= http1.HIGH_WATER + READ_MAX
        # The connection went back to the pool readable, and carries the next request.
        resp = await asyncio.wait_for(get(client, srv.url + "/small"), 2)
        assert await resp.read() == b"small"
        assert srv.accepted == 1


async def test_a_big_body_read_whole_leaves_the_connection_usable(client: Client) -> None:
    """read() of a body past HIGH_WATER: the last piece arrives while the connection is paused;
    the connection must not go back to the pool paused (its next response would never be read)."""
    async with serve(big_then_small) as srv:
        resp = await get(client, srv.url + "/big")
        await asyncio.sleep(0.1)  # the client pauses the socket
        body = await asyncio.wait_for(resp.read(), 3)
        assert hashlib.sha256(body).digest() == hashlib.sha256(BIG).digest()
        resp = await asyncio.wait_for(get(client, srv.url + "/small"), 2)
        assert await resp.read() == b"small"
        assert srv.accepted == 1


async def test_a_body_ending_just_past_high_water_leaves_the_connection_usable(client: Client) -> None:
    """The piece that crosses HIGH_WATER is the last one: the response ends in the same read
    that pauses the socket."""
    size = http1.HIGH_WATER + 100

    async def handler(conn: Conn) -> None:
        while (req := await conn.next_request()) is not None:
            if req.target == "/edge":
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode()
                await conn.send(head + b"a" * (size - 200), b"b" * 200, gap=0.1)
            else:
                await conn.send(response(b"next"))

    async with serve(handler) as srv:
        resp = await get(client, srv.url + "/edge")
        await until(lambda: resp.eof)  # nobody read yet: all of it sits in the response
        assert len(b"".join([c async for c in _chunks(resp)])) == size
        resp = await asyncio.wait_for(get(client, srv.url + "/next"), 2)
        assert await resp.read() == b"next"
        assert srv.accepted == 1


async def _chunks(resp: http1.Response) -> AsyncIterator[bytes]:
    while chunk := await resp.readchunk():
        yield chunk


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudgate test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def server_context(tls_cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_cert)
    return ctx


async def test_tls_with_an_untrusted_certificate_is_refused(
    client: Client, tls_cert: tuple[Path, Path]
) -> None:
    async with serve(answer_all, ssl_context=server_context(tls_cert)) as srv:
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await get(client, f"https://127.0.0.1:{srv.port}/")
        assert len(client.pool) == 0
        assert srv.requests == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_tls_with_a_trusted_certificate_works_and_is_reused(
    tls_cert: tuple[Path, Path], host: str
) -> None:
    trusting = ssl.create_default_context(cafile=str(tls_cert[0]))
    client = Client(limit=4, ssl_context=trusting)
    try:
        async with serve(echo_head, ssl_context=server_context(tls_cert)) as srv:
            for path in ("/one", "/two"):
                resp = await get(client, f"https://{host}:{srv.port}{path}")
                line, pairs = parse_echo(await resp.read())
                assert line == f"GET {path} HTTP/1.1"
                assert ("host", f"{host}:{srv.port}") in pairs
            assert srv.accepted == 1
    finally:
        client.close()


async def test_tls_checks_the_name_even_with_a_trusted_certificate(tls_cert: tuple[Path, Path]) -> None:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    trusting = ssl.create_default_context(cafile=str(tls_cert[0]))
    client = Client(limit=4, ssl_context=trusting)
    try:
        async with serve(answer_all, host="::1", ssl_context=server_context(tls_cert)) as srv:
            with pytest.raises(ConnectFailed):  # the certificate names 127.0.0.1 and localhost only
                await get(client, f"https://[::1]:{srv.port}/")
    finally:
        client.close()


# -- cancellation ------------------------------------------------------------------------------


async def test_cancelling_while_waiting_for_headers_drops_that_connection(client: Client) -> None:
    async def handler(conn: Conn) -> None:
        if conn.index == 1:
            while (req := await conn.next_request()) is not None:
                if req.target == "/hang":
                    await conn.wait_closed_by_client()
                    return
                await conn.send(response(req.target.encode()))
        await answer_all(conn)

    async with serve(handler) as srv:
        assert await (await get(client, srv.url + "/warm")).read() == b"/warm"
        task = asyncio.ensure_future(get(client, srv.url + "/hang"))
        await until(lambda: len(srv.requests) == 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: srv.open == 0)  # the connection was closed, not kept
        assert len(client.pool) == 0 and client.pool.idle_count() == 0
        assert await (await get(client, srv.url + "/after")).read() == b"/after"
        assert srv.accepted == 2
        assert [r.target for r in srv.conns[1].requests] == ["/after"]


async def test_cancelling_while_connecting_gives_the_slot_back() -> None:
    client = Client(limit=1)
    try:
        with unresponsive_listener() as port:
            task = asyncio.ensure_future(get(client, f"http://127.0.0.1:{port}/"))
            await asyncio.sleep(0.05)
            assert len(client.pool) == 1  # the slot is held while connecting
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert len(client.pool) == 0
        async with serve(answer_all) as srv:
            assert await (await asyncio.wait_for(get(client, srv.url + "/ok"), 1)).read() == b"/ok"
    finally:
        client.close()


# -- through Transport -------------------------------------------------------------------------


async def test_transport_maps_refused_to_upstream_connect_error() -> None:
    transport = Transport(timeouts=Timeouts(connect=1, first_byte=1))
    try:
        with pytest.raises(UpstreamConnectError, match=r"127\.0\.0\.1"):
            await transport.request("GET", f"http://127.0.0.1:{unused_port()}/", headers={})
    finally:
        await transport.close()


async def test_transport_maps_a_hanging_connect_to_a_connect_timeout() -> None:
    transport = Transport(timeouts=Timeouts(connect=0.2, first_byte=5))
    try:
        with unresponsive_listener() as port, pytest.raises(UpstreamTimeout) as caught:
            await transport.request("GET", f"http://127.0.0.1:{port}/", headers={})
        assert caught.value.phase == "connect"
    finally:
        await transport.close()


async def test_transport_maps_silence_to_a_first_byte_timeout() -> None:
    async def silent(conn: Conn) -> None:
        await conn.next_request()
        await conn.wait_closed_by_client()

    transport = Transport(timeouts=Timeouts(connect=1, first_byte=0.2, total=None))
    try:
        async with serve(silent) as srv:
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout) as caught:
                await transport.request("GET", srv.url, headers={})
            assert caught.value.phase == "first_byte" and caught.value.seconds == 0.2
            assert time.monotonic() - started < 1.0
            await until(lambda: srv.open == 0)  # the connection was given up
    finally:
        await transport.close()


async def test_transport_maps_a_mid_body_close_to_upstream_disconnected() -> None:
    transport = Transport(timeouts=Timeouts(connect=1, first_byte=1, idle=1, total=5))
    try:
        async with serve(mid_body_close) as srv:
            resp = await transport.request("GET", srv.url, headers={})
            with pytest.raises(UpstreamDisconnected):
                await resp.read()
            resp = await transport.request("GET", srv.url, headers={})
            with pytest.raises(UpstreamDisconnected):
                async for _ in resp.iter_chunks():
                    pass
    finally:
        await transport.close()


async def test_transport_maps_a_malformed_response_to_upstream_disconnected() -> None:
    async def garbage(conn: Conn) -> None:
        await conn.next_request()
        await conn.send(b"SPDY/9 whatever\r\n\r\n")
        await conn.wait_closed_by_client()

    transport = Transport(timeouts=Timeouts(connect=1, first_byte=1))
    try:
        async with serve(garbage) as srv:
            with pytest.raises(UpstreamDisconnected):
                await transport.request("GET", srv.url, headers={})
    finally:
        await transport.close()


async def tiny_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def test_a_transport_works_from_two_event_loops_in_turn() -> None:
    transport = Transport(timeouts=Timeouts(connect=2, first_byte=2, idle=2, total=5))

    async def one(url: str) -> tuple[int, bytes]:
        resp = await transport.request("GET", url, headers={})
        return resp.status, await resp.read()

    with serving(tiny_app) as srv:
        # The first loop ends with an idle connection in the pool, never closed by anyone.
        assert asyncio.run(one(srv.url + "/first")) == (200, b"/first")
        assert asyncio.run(one(srv.url + "/second")) == (200, b"/second")

        async def last() -> tuple[int, bytes]:
            try:
                return await one(srv.url + "/third")
            finally:
                await transport.close()

        assert asyncio.run(last()) == (200, b"/third")
