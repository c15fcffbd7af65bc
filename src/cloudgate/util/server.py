"""Running ASGI apps with uvicorn: in the foreground, or in a background thread on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def uvicorn_config(
    app: Any, host: str, port: int, *, log_level: str = "warning", **kw: Any
) -> uvicorn.Config:
    """The uvicorn settings cloudgate runs with: uvloop (accepting in batches, see
    util/eventloop.py) and httptools when available."""
    try:
        import uvloop  # noqa: F401

        loop = "cloudgate.util.eventloop:new_event_loop"
    except ImportError:
        loop = "asyncio"
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=loop,
        http="httptools",
        lifespan="on",
        log_level=log_level,
        access_log=False,
        server_header=False,
        date_header=True,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=10,
        **kw,
    )


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host program.

    Several can run in one event loop (the demo runs the gateway and the emulator together);
    the host decides when they stop by setting `should_exit`.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: the embedding program owns the signals."""
        yield


class BackgroundServer:
    """An ASGI app served by uvicorn in a thread of its own (tests, the demo, benchmarks)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.server = EmbeddedServer(uvicorn_config(app, host, self.port))
        self._thread = threading.Thread(target=self._run, name=f"asgi-{self.port}", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:8123."""
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        """Start serving and wait until the port accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server on port {self.port} failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on port {self.port} did not start in {timeout}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread to end."""
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serving(app: Any, host: str = "127.0.0.1", port: int | None = None) -> Iterator[BackgroundServer]:
    """`with serving(app) as srv:` runs `app` on loopback for the duration of the block."""
    srv = BackgroundServer(app, host, port).start()
    try:
        yield srv
    finally:
        srv.stop()
