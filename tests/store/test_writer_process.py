"""The store writer process: batches written by a real child, errors and deaths reported, restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from cloudgate.activity.entry import ActivityEntry
from cloudgate.governance.types import SpendEntry
from cloudgate.store import Store, upgrade
from cloudgate.store.writer_process import (
    WriterProcess,
    WriterProcessError,
    _activity_values,
    _spend_values,
    activity_entries,
    spend_entries,
)
from tests.store.conftest import Database
from tests.store.test_spend import T0, entry
from tests.store.test_spend import rows as spend_rows


def spend(request_id: str, **fields: object) -> SpendEntry:
    return entry(request_id, **{"finished_at": T0 + timedelta(seconds=2), **fields})


def activity(request_id: str, **fields: object) -> ActivityEntry:
    values: dict[str, object] = {
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=1),
        "key_id": "key_a",
        "model": "claude-sonnet-4-5",
        "status": 200,
        "attempts": [{"deployment": "vertex/us-east5", "status": 200, "error": None}],
        "betas": ["context-1m-2025-08-07"],
        "request_headers": {"user-agent": "claude-cli/2.1.328", "anthropic-version": "2023-06-01"},
        "request_body": '{"model": "claude-sonnet-4-5"}',
        "cost_micro": 42,
        "first_token_ms": 12.5,
    }
    values.update(fields)
    return ActivityEntry(request_id=request_id, **values)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0] != "Z"


def test_rows_survive_the_trip_unchanged() -> None:
    # Every field set to something other than its default, timestamps with microseconds.
    full = spend("req_1", interrupted=True, latency_ms=1234.5, first_token_ms=321.0, attempts=3)
    full.tags = ["ci", "nightly"]
    full.finished_at = datetime(2026, 11, 3, 9, 30, 15, 123456, tzinfo=UTC)
    for name in (
        "frontdoor",
        "provider",
        "upstream_model",
        "region",
        "error_type",
        "session_id",
        "deployment",
    ):
        setattr(full, name, f"{name}-value")
    for number, name in enumerate(("cache_write_5m_tokens", "cache_write_1h_tokens", "cache_read_tokens")):
        setattr(full, name, number + 1)
    full.reserved_micro = 5_000
    (back,) = spend_entries(orjson.loads(orjson.dumps([_spend_values(full)])))
    assert back == full
    entry = activity("req_1", finished_at=None, bodies_truncated=True, client_ip="127.0.0.1")
    (again,) = activity_entries(orjson.loads(orjson.dumps([_activity_values(entry)])))
    assert again == entry


async def test_spend_and_activity_are_written_by_the_child(database: Database) -> None:
    engine = database.engine()
    await upgrade(engine)
    store = Store(engine)
    writer = WriterProcess(database.url, schema=database.schema)
    try:
        # More entries than one encoding slice: the slices must join into one valid array.
        many = [spend(f"req_{i:04d}", cost_micro=i) for i in range(700)]
        await writer.write_spend(many, fresh=True)
        assert writer.pid is not None and writer.starts == 1
        rows = await spend_rows(store)
        assert len(rows) == 700 and sum(r.cost_micro for r in rows.values()) == sum(range(700))
        # The rollups were written in the same transaction: reports see every request.
        (report,) = await store.spend.spend_report("key", T0 - timedelta(days=1))
        assert (report.group, report.requests, report.cost_micro) == ("key_a", 700, sum(range(700)))
        # A final entry replaces an interrupted one, as in-process writes do (not fresh: a replay).
        await writer.write_spend([spend("req_0001", interrupted=True, cost_micro=9)])
        await writer.write_spend([spend("req_0700", interrupted=True, cost_micro=7)])
        await writer.write_spend([spend("req_0700", cost_micro=8)])
        rows = await spend_rows(store)
        assert rows["req_0001"].cost_micro == 1 and not rows["req_0001"].interrupted
        assert rows["req_0700"].cost_micro == 8

        entries = [activity(f"req_{i}") for i in range(3)]
        await writer.write_activity(entries)
        assert await store.activity.get("req_1") == entries[1]
        assert writer.starts == 1, "one child for every write"
    finally:
        pid = writer.pid
        await writer.close()
        await store.close()
    assert pid is not None and not alive(pid), "closing stops the child"
    with pytest.raises(WriterProcessError, match="closed"):
        await writer.write_spend([spend("late")])


async def test_a_failed_write_reaches_the_caller_and_the_child_stays(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    writer = WriterProcess(url)
    try:
        # No tables yet: the child's error comes back as the caller's exception.
        with pytest.raises(WriterProcessError, match="no such table"):
            await writer.write_activity([activity("req_1")])
        await upgrade(url)
        await writer.write_activity([activity("req_1")])
        assert writer.starts == 1, "the child survived the failed write"
    finally:
        await writer.close()


async def test_a_dead_child_fails_its_callers_and_is_replaced(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    await upgrade(url)
    writer = WriterProcess(url)
    store = Store.open(url)
    try:
        await writer.start()
        first = writer.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        # The write in flight when it dies (or the next one) fails instead of hanging ...
        with pytest.raises(WriterProcessError, match="went away"):
            for _ in range(50):
                await writer.write_spend([spend("req_lost")])
                await asyncio.sleep(0.05)
        # ... and the following one starts another child and succeeds.
        await writer.write_spend([spend("req_kept")])
        assert writer.starts == 2 and writer.pid not in (None, first)
        assert "req_kept" in await spend_rows(store)
    finally:
        await writer.close()
        await store.close()


async def test_the_child_ignores_signals_meant_for_the_gateway(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    await upgrade(url)
    writer = WriterProcess(url)
    try:
        await writer.write_activity([activity("req_1")])
        pid = writer.pid
        assert pid is not None
        # Ctrl-C reaches the whole process group: the gateway must still write out its queue.
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        await asyncio.sleep(0.3)
        await writer.write_activity([activity("req_2")])
        assert writer.starts == 1 and writer.pid == pid
    finally:
        await writer.close()


_DYING_GATEWAY = """
import asyncio, os, sys
from cloudgate.store.writer_process import WriterProcess

async def main():
    writer = WriterProcess(sys.argv[1])
    await writer.start()
    print(writer.pid, flush=True)
    os._exit(0)  # no close(): the way a killed gateway leaves

asyncio.run(main())
"""


def test_the_child_ends_when_its_gateway_dies(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run(
        [sys.executable, "-c", _DYING_GATEWAY, url], capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "an orphaned writer process must not outlive its gateway"


async def test_closing_waits_for_the_batches_already_sent(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    await upgrade(url)
    writer = WriterProcess(url)
    await writer.start()
    sent = asyncio.ensure_future(writer.write_spend([spend(f"req_{i}") for i in range(200)]))
    await asyncio.sleep(0.01)  # the batch is on its way
    await writer.close()
    await sent  # answered before the child stopped, not failed by the close
    store = Store.open(url)
    try:
        assert len(await spend_rows(store)) == 200
    finally:
        await store.close()
