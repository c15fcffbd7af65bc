"""The event loop cloudgate's servers run on: uvloop, accepting connections in batches.

uvloop accepts one connection per turn of its loop. While the loop is busy (a gateway relaying
thousands of streams spends tens of milliseconds a turn), new connections then wait in the
kernel's accept queue: 2,000 streams opened over two seconds were accepted at about 30 a second,
and the last callers waited 20 s for their first byte (bench/streams.py). asyncio's own loop
accepts up to the backlog per turn. `BatchAcceptLoop.create_server` does the same on uvloop:
one reader callback per listening socket takes every waiting connection (up to the backlog)
and hands each to uvloop with `connect_accepted_socket`; everything else about the transports
stays uvloop's. TLS and Unix-socket servers keep uvloop's own server.

`uvicorn_config` (util/server.py) names `new_event_loop` as uvicorn's loop factory.

Worker processes sharing one listening socket (`serve --workers N`) accept one connection per
turn instead (`set_accepts_per_turn(1)`): the first worker to wake would otherwise take every
waiting connection, and a benchmark's 16 keep-alive connections all landed on one worker. One
at a time, an idle worker's quick turns take what a busy worker's slow turns leave.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

import uvloop

from cloudgate.util.tasks import spawn

log = logging.getLogger("cloudgate.server")

ProtocolFactory = Callable[[], asyncio.BaseProtocol]

_accepts_per_turn: int | None = None  # None: up to the backlog


def set_accepts_per_turn(count: int | None) -> None:
    """How many connections a server accepts per turn of the loop (None: up to its backlog)."""
    global _accepts_per_turn
    _accepts_per_turn = count


class BatchAcceptServer(asyncio.AbstractServer):
    """Listening TCP sockets whose connections are accepted in batches (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: ProtocolFactory,
        sockets: list[socket.socket],
        backlog: int,
    ) -> None:
        self._loop = loop
        self._factory = factory
        self._sockets = sockets
        self._per_turn = max(1, min(backlog, _accepts_per_turn or backlog))
        self._serving = False
        self._pending: set[asyncio.Task[Any]] = set()

    # -- asyncio.AbstractServer -----------------------------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        self._start()

    async def serve_forever(self) -> None:
        self._start()
        await self._loop.create_future()  # until cancelled

    def close(self) -> None:
        """Stop accepting and close the listening sockets; open connections are left alone."""
        if self._sockets and self._serving:
            for sock in self._sockets:
                self._loop.remove_reader(sock.fileno())
        self._serving = False
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    async def wait_closed(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def close_clients(self) -> None:  # asyncio 3.13's API; the gateway closes its own connections
        pass

    def abort_clients(self) -> None:
        pass

    # -- accepting ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._serving:
            return
        self._serving = True
        for sock in self._sockets:
            sock.setblocking(False)
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(self._per_turn):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: try again on the next turn
                log.warning("could not accept a connection: %s", exc)
                return
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = spawn(self._connect(conn), name="accept")
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except Exception:
            log.exception("could not set up an accepted connection")
            conn.close()


class BatchAcceptLoop(uvloop.Loop):  # type: ignore[misc]  # uvloop's Loop is untyped
    """uvloop with `create_server` accepting in batches for plain TCP listeners."""

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: ProtocolFactory,
        host: str | Iterable[str] | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: Any = None,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        start_serving: bool = True,
        **kwargs: Any,
    ) -> asyncio.AbstractServer:
        plain = ssl is None and not reuse_port and not kwargs
        if sock is not None:
            plain = plain and sock.family in (socket.AF_INET, socket.AF_INET6)
        if not plain:
            uvloop_server: Any = super()  # uvloop's overloads do not admit these optional arguments
            server: asyncio.AbstractServer = await uvloop_server.create_server(
                protocol_factory,
                host,
                port,
                sock=sock,
                backlog=backlog,
                ssl=ssl,
                reuse_address=reuse_address,
                reuse_port=reuse_port,
                start_serving=start_serving,
                **kwargs,
            )
            return server
        if sock is not None:
            sockets = [sock]
            sock.listen(backlog)
        else:
            sockets = await self._listen(host, port, backlog)
        batched = BatchAcceptServer(self, protocol_factory, sockets, backlog)
        if start_serving:
            batched._start()
        return batched

    async def _listen(
        self, host: str | Iterable[str] | None, port: int | None, backlog: int
    ) -> list[socket.socket]:
        """Listening sockets for every address of `host` (all interfaces when None), as asyncio binds."""
        hosts: list[str | None] = [host] if host is None or isinstance(host, str) else list(host)
        infos = []
        for one in hosts:
            infos += await self.getaddrinfo(
                one, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        sockets: list[socket.socket] = []
        seen = set()
        try:
            for family, kind, proto, _, address in infos:
                if (family, address) in seen:
                    continue
                seen.add((family, address))
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio does
                try:
                    sock.bind(address)
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"error while attempting to bind on address {address!r}: {exc.strerror}"
                    ) from None
                sock.listen(backlog)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        if not sockets:
            raise OSError(f"no address to listen on for {host!r}")
        return sockets


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new `BatchAcceptLoop` (uvicorn's loop factory: `loop="cloudgate.util.eventloop:new_event_loop"`)."""
    return BatchAcceptLoop()
