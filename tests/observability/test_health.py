"""/livez and /readyz: alive while the process runs, ready while started and the store answers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from cloudgate.config import load_settings
from cloudgate.gateway import GatewayApp, create_gateway_app
from cloudgate.util.server import free_port
from tests.conftest import Stack
from tests.store.conftest import postgres_url


def gateway(tmp_path: Path, **store: Any) -> GatewayApp:
    """A gateway (not started) whose store is SQLite in `tmp_path`, or as `store` says."""
    settings = load_settings(
        env={},
        overrides={
            "gateway": {"keys": ["cg-k"], "log_requests": False},
            "data_dir": str(tmp_path),
            "provider": "anthropic",
            "anthropic": {"api_key": "sk-unused", "base_url": "http://127.0.0.1:9"},
            "store": store,
        },
    )
    return create_gateway_app(settings)


async def get(app: GatewayApp, path: str) -> tuple[int, dict[str, Any]]:
    """GET `path` straight through the ASGI interface."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung database)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_live_and_ready_when_serving(gw: Stack) -> None:
    for path in ("/health", "/healthz", "/livez"):
        resp = requests.get(gw.url + path, timeout=10)
        assert resp.status_code == 200 and resp.json()["status"] == "ok"
    ready = requests.get(gw.url + "/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "version": "0.1.0"}
    assert requests.post(gw.url + "/readyz", timeout=10).status_code == 405


async def test_ready_only_between_startup_and_shutdown(tmp_path: Path) -> None:
    app = gateway(tmp_path)
    status, body = await get(app, "/readyz")
    assert status == 503 and "not started" in body["reason"]
    assert (await get(app, "/livez"))[0] == 200  # alive all the same: nothing to restart
    await app.startup()
    try:
        assert await get(app, "/readyz") == (200, {"status": "ready", "version": "0.1.0"})
    finally:
        await app.shutdown()
    status, body = await get(app, "/readyz")
    assert status == 503 and "shutting down" in body["reason"]


async def test_not_ready_when_postgresql_is_down(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    down = f"postgresql+asyncpg://cloudgate@127.0.0.1:{free_port()}/cloudgate"
    app = gateway(tmp_path, url=down, migrate_on_start=False)
    await app.startup()
    try:
        status, body = await get(app, "/readyz")
        assert status == 503 and body["status"] == "unavailable"
        assert body["reason"].startswith("the store is unreachable")
        assert (await get(app, "/readyz"))[0] == 503
        # Only the change from ready to not ready is logged, not every probe.
        assert [r.getMessage() for r in caplog.records if "not ready" in r.getMessage()] == [
            f"not ready: {body['reason']}"
        ]
    finally:
        await app.shutdown()


async def test_not_ready_when_the_store_hangs(tmp_path: Path, silent_port: int) -> None:
    app = gateway(
        tmp_path, url=f"postgresql+asyncpg://cloudgate@127.0.0.1:{silent_port}/db", migrate_on_start=False
    )
    await app.startup()
    try:
        started = time.monotonic()
        status, body = await get(app, "/readyz")
        assert status == 503 and body["reason"] == "the store did not answer within 1 s"
        assert time.monotonic() - started < 3
    finally:
        await app.shutdown()


async def test_ready_on_postgresql(tmp_path: Path) -> None:
    app = gateway(tmp_path, url=postgres_url(), migrate_on_start=False)
    await app.startup()
    try:
        assert (await get(app, "/readyz"))[0] == 200
    finally:
        await app.shutdown()
