"""kill -9 under load: after a restart, every request the upstream served is in the spend log."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import requests
from sqlalchemy import text

from cloudgate.emulator import EmulatorConfig, create_emulator_app
from cloudgate.store.repositories import Store
from cloudgate.util.server import free_port, serving
from tests.cli.helpers import wait_until_up

KEY = "cg-crash-test-key"


def _serve(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cloudgate.cli.main", "serve", "--config", str(config)],
        env={"PATH": os.environ["PATH"], "HOME": str(config.parent)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _load(url: str, stop: threading.Event) -> None:
    body = orjson.dumps(
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 60,
            "stream": True,
            "messages": [{"role": "user", "content": "go"}],
        }
    )
    while not stop.is_set():
        try:
            with requests.post(url, data=body, headers={"x-api-key": KEY}, stream=True, timeout=5) as resp:
                for _ in resp.iter_content(chunk_size=None):
                    pass
        except requests.RequestException:
            if stop.is_set():
                return
            time.sleep(0.02)


async def _spend(db_url: str) -> dict[str, tuple[bool, int, int]]:
    store = Store.open(db_url)
    try:
        async with store.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT request_id, interrupted, cost_micro, reserved_micro FROM spend")
            )
            return {r[0]: (bool(r[1]), int(r[2]), int(r[3])) for r in rows}
    finally:
        await store.close()


def test_spend_log_survives_kill_9(tmp_path: Path) -> None:
    emulator = create_emulator_app(EmulatorConfig(static_tokens=["tok"], stream_delay=0.03))
    with serving(emulator) as upstream:
        port = free_port()
        data = tmp_path / "data"
        config = tmp_path / "cloudgate.yaml"
        config.write_text(
            f"data_dir: {data}\ngateway:\n  port: {port}\n  keys: [{KEY}]\n  log_requests: false\n"
            f"vertex:\n  project_id: p\n  base_url: {upstream.url}/v1\n  access_token: tok\n"
        )
        gateway = _serve(config)
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/health", gateway)
        stop = threading.Event()
        workers = [threading.Thread(target=_load, args=(f"{base}/v1/messages", stop)) for _ in range(12)]
        for worker in workers:
            worker.start()
        time.sleep(1.5)  # under load, with streams in flight
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(timeout=10)
        stop.set()
        for worker in workers:
            worker.join(timeout=10)

        served = {
            r.headers["x-cloudgate-request-id"]
            for r in emulator.state.requests
            if "/publishers/anthropic/" in r.path and "x-cloudgate-request-id" in r.headers
        }
        assert len(served) > 20, "the load never got going"

        restarted = _serve(config)  # replays the journal before it accepts work
        try:
            wait_until_up(f"{base}/health", restarted)
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.communicate(timeout=30)

    db_url = f"sqlite+aiosqlite:///{data}/cloudgate.db"
    spend = asyncio.run(_spend(db_url))
    # Every request the upstream saw is in the spend log, complete or marked interrupted.
    missing = served - set(spend)
    assert not missing, f"{len(missing)} served requests missing from the spend log"
    interrupted = [rid for rid in served if spend[rid][0]]
    assert interrupted, "the kill should have caught some streams mid-flight"
    for rid in interrupted:
        _, cost, reserved = spend[rid]
        assert cost == reserved > 0  # charged what was reserved for them
    finished = [rid for rid in served if not spend[rid][0]]
    assert finished and all(spend[rid][1] > 0 for rid in finished)
