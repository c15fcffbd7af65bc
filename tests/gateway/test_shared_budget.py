"""Two gateway processes, one PostgreSQL store, counters shared in Redis: no budget overshoot."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import pytest
import requests

from cloudgate.emulator import EmulatorConfig, create_emulator_app
from cloudgate.governance.types import Period, Scope, usd_to_micro
from cloudgate.store.migrate import upgrade
from cloudgate.store.repositories import Store
from cloudgate.util.server import free_port, serving
from tests.cli.helpers import wait_until_up

PROMPT = "lorem ipsum dolor sit amet " * 150


def _service_url(name: str) -> str:
    url = os.environ.get(name)
    if not url:
        message = f"{name} is not set: run scripts/services.sh (PostgreSQL and Redis on loopback)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    base = _service_url("CLOUDGATE_TEST_POSTGRES_URL")
    name = f"cg_test_{secrets.token_hex(6)}"
    admin = base.replace("postgresql+asyncpg://", "postgresql://")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _gateway(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cloudgate.cli.main", "serve", "--config", str(config)],
        env={"PATH": os.environ["PATH"], "HOME": str(config.parent)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _prepare(db_url: str) -> tuple[str, str]:
    await upgrade(db_url)
    store = Store.open(db_url)
    try:
        created = await store.keys.create("shared")
        return created.plaintext, created.key.id
    finally:
        await store.close()


async def _set_budget(db_url: str, key_id: str, micro: int) -> None:
    store = Store.open(db_url)
    try:
        await store.budgets.set(Scope.KEY, key_id, Period.DAILY, micro)
    finally:
        await store.close()


async def _spent(db_url: str, key_id: str) -> tuple[int, int]:
    store = Store.open(db_url)
    try:
        rows = await store.spend.spend_report("key", datetime(2000, 1, 1, tzinfo=UTC))
        row = next(r for r in rows if r.group == key_id)
        return row.requests, row.cost_micro
    finally:
        await store.close()


def test_two_gateways_share_a_budget_through_redis(postgres_database: str, tmp_path: Path) -> None:
    redis_url = _service_url("CLOUDGATE_TEST_REDIS_URL")
    key, key_id = asyncio.run(_prepare(postgres_database))
    emulator = create_emulator_app(EmulatorConfig(static_tokens=["tok"]))
    procs: list[subprocess.Popen[str]] = []
    with serving(emulator) as upstream:
        ports = [free_port(), free_port()]
        for i, port in enumerate(ports):
            config = tmp_path / f"gw{i}" / "cloudgate.yaml"
            config.parent.mkdir()
            config.write_text(
                f"data_dir: {config.parent / 'data'}\nredis_url: {redis_url}\n"
                f"store:\n  url: {postgres_database}\n"
                f"gateway:\n  port: {port}\n  log_requests: false\n"
                f"vertex:\n  project_id: p\n  base_url: {upstream.url}/v1\n  access_token: tok\n"
            )
            procs.append(_gateway(config))
        try:
            for port, proc in zip(ports, procs, strict=True):
                wait_until_up(f"http://127.0.0.1:{port}/health", proc)
            body = orjson.dumps(
                {
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 20,
                    "messages": [{"role": "user", "content": PROMPT}],
                }
            )

            def ask(i: int) -> requests.Response:
                url = f"http://127.0.0.1:{ports[i % 2]}/v1/messages"
                return requests.post(url, data=body, headers={"x-api-key": key}, timeout=30)

            probe = ask(0)
            assert probe.status_code == 200, probe.text
            one = usd_to_micro(float(probe.headers["x-cloudgate-cost-usd"]))
            budget = one * 10
            asyncio.run(_set_budget(postgres_database, key_id, budget))
            # Both gateways cache principals for up to 5 s; wait until the budget is seen.
            time.sleep(5.5)
            with ThreadPoolExecutor(max_workers=40) as pool:
                statuses = [r.status_code for r in pool.map(ask, range(100))]
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.communicate(timeout=30)
    assert set(statuses) <= {200, 402} and 0 < statuses.count(402) < 100
    requests_logged, spent = asyncio.run(_spent(postgres_database, key_id))
    assert requests_logged == statuses.count(200) + 1
    # The probe was spent before the budget existed: it counts against it too (same day).
    max_cost = one * 5  # far above one request's worst case for this body and max_tokens
    assert spent <= budget + max_cost
