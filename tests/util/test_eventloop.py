"""BatchAcceptLoop: uvloop with every waiting connection accepted in one turn of the loop."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop

from cloudgate.util.eventloop import BatchAcceptLoop, BatchAcceptServer, new_event_loop, set_accepts_per_turn


class Counting(asyncio.Protocol):
    made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Counting.made += 1


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = new_event_loop()
    Counting.made = 0
    yield loop
    loop.close()


def _connect(port: int, count: int) -> list[socket.socket]:
    # The kernel completes these handshakes on its own (the backlog is larger): they wait
    # in the accept queue until the loop takes them.
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def _accepted_after_a_few_turns(loop: asyncio.AbstractEventLoop, count: int) -> int:
    async def run() -> int:
        server = await loop.create_server(Counting, "127.0.0.1", 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        clients = _connect(port, count)
        try:
            await _turns(6)
            return Counting.made
        finally:
            server.close()
            await server.wait_closed()
            for client in clients:
                client.close()

    return loop.run_until_complete(run())


def test_every_waiting_connection_is_accepted_in_one_turn(loop: asyncio.AbstractEventLoop) -> None:
    assert isinstance(loop, BatchAcceptLoop)
    assert _accepted_after_a_few_turns(loop, 200) == 200


def test_plain_uvloop_takes_one_a_turn() -> None:
    # Why the class exists: the same run on uvloop's own server gets a handful.
    plain = uvloop.new_event_loop()
    Counting.made = 0
    try:
        assert _accepted_after_a_few_turns(plain, 200) < 20
    finally:
        plain.close()


def test_a_closed_server_refuses_connections(loop: asyncio.AbstractEventLoop) -> None:
    async def run() -> None:
        server = await loop.create_server(Counting, "127.0.0.1", 0)
        assert isinstance(server, BatchAcceptServer) and server.is_serving()
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        assert not server.is_serving() and server.sockets == ()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)

    loop.run_until_complete(run())


def test_a_given_socket_is_served_as_is(loop: asyncio.AbstractEventLoop) -> None:
    async def run() -> bytes:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))

        class Echo(asyncio.Protocol):
            transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.transport.write(data.upper())

        server = await loop.create_server(Echo, sock=listener)
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        writer.write(b"ping")
        answer = await reader.readexactly(4)
        writer.close()
        server.close()
        await server.wait_closed()
        return answer

    assert loop.run_until_complete(run()) == b"PING"


def test_tls_servers_stay_uvloops(loop: asyncio.AbstractEventLoop) -> None:
    async def run() -> asyncio.AbstractServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        return await loop.create_server(Counting, "127.0.0.1", 0, ssl=context)

    server = loop.run_until_complete(run())
    try:
        assert not isinstance(server, BatchAcceptServer)
    finally:
        server.close()


def test_a_busy_address_is_a_clear_error(loop: asyncio.AbstractEventLoop) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="error while attempting to bind"):
            loop.run_until_complete(loop.create_server(Counting, "127.0.0.1", port))


def test_workers_sharing_a_socket_take_one_a_turn(loop: asyncio.AbstractEventLoop) -> None:
    # `serve --workers N`: one connection per turn, so a busy worker leaves the rest to others.
    set_accepts_per_turn(1)
    try:
        accepted = _accepted_after_a_few_turns(loop, 50)
    finally:
        set_accepts_per_turn(None)
    assert 1 <= accepted < 20
