"""The activity writer: batches by time and size, retries a failing sink, stays bounded, flushes on close."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from cloudgate.activity import ActivityEntry, ActivityLog
from cloudgate.activity.files import activity_files
from cloudgate.config.settings import Settings
from cloudgate.gateway.records import RequestRecord
from cloudgate.governance.types import Principal


class MemoryActivity:
    """Stands in for `store.activity`: keeps what it is given, fails while told to."""

    def __init__(self, fail: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.rows: dict[str, ActivityEntry] = {}
        self.fail = fail
        self.calls = 0

    async def write(self, entries: list[ActivityEntry]) -> None:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise ConnectionError("database is down")
        self.batches.append([e.request_id for e in entries])
        self.rows.update((e.request_id, e) for e in entries)


def make(tmp_path: Path, fail: int = 0, **activity: Any) -> tuple[ActivityLog, MemoryActivity]:
    repo = MemoryActivity(fail)
    settings = Settings.model_validate(
        {"data_dir": str(tmp_path), "activity": {"flush_interval": 0.05, **activity}}
    )
    log = ActivityLog(settings, SimpleNamespace(activity=repo), retry_initial=0.02, retry_max=0.1)
    return log, repo


def rec(i: int) -> RequestRecord:
    return RequestRecord(f"req_{i:05d}", 1_750_000_000.0 + i, caller="key_a", status=200)


async def until(condition: Callable[[], object], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_entries_are_written_in_one_batch_after_the_interval(tmp_path: Path) -> None:
    log, repo = make(tmp_path, flush_interval=0.2)
    await log.start()
    for i in range(3):
        log.emit(rec(i))
    await asyncio.sleep(0.05)
    assert repo.batches == []  # nothing on the request path, nothing before the interval
    await until(lambda: repo.batches)
    assert repo.batches == [["req_00000", "req_00001", "req_00002"]]
    await log.aclose()
    assert log.written == {"database": 3}


async def test_a_full_batch_is_written_at_once(tmp_path: Path) -> None:
    log, repo = make(tmp_path, flush_interval=30, batch_size=5)
    await log.start()
    for i in range(7):
        log.emit(rec(i))
    # Long before the interval: the fifth record woke the writer, which took all that was queued.
    await until(lambda: len(repo.rows) == 7, within=2.0)
    assert repo.batches == [[f"req_{i:05d}" for i in range(7)]]
    await log.aclose()


async def test_a_backlog_goes_in_writes_of_at_most_max_write_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cloudgate.activity.writer.MAX_WRITE_ENTRIES", 4)
    log, repo = make(tmp_path, flush_interval=30, batch_size=2)
    await log.start()
    for i in range(11):
        log.emit(rec(i))
    await until(lambda: len(repo.rows) == 11, within=2.0)
    assert [len(b) for b in repo.batches] == [4, 4, 3]
    await log.aclose()


async def test_a_write_stops_at_max_write_bytes_but_takes_at_least_one_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Entries with bodies can weigh a megabyte each: a write is bounded by bytes as well.
    monkeypatch.setattr("cloudgate.activity.writer.MAX_WRITE_BYTES", 6_000)
    log, repo = make(tmp_path, flush_interval=30, batch_size=3, log_bodies=True)
    await log.start()
    for i, size in enumerate((1_500, 1_500, 9_000, 100)):
        record = rec(i)
        log.observe(record, None, {}, b"x" * size)
        log.emit(record)
    await until(lambda: len(repo.rows) == 4, within=2.0)
    # (1.5k + 1k of overhead) twice fits in 6k; the 9k entry alone is over, yet goes, alone.
    assert [len(b) for b in repo.batches] == [2, 1, 1]
    await log.aclose()


async def test_it_starts_itself_on_the_first_emit(tmp_path: Path) -> None:
    log, repo = make(tmp_path)
    log.emit(rec(1))
    await until(lambda: repo.rows)
    await log.aclose()


async def test_a_failing_sink_is_retried_and_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, repo = make(tmp_path, fail=3, sink="both")
    await log.start()
    with caplog.at_level(logging.WARNING, "cloudgate.activity"):
        for i in range(4):
            log.emit(rec(i))
        # The files sink is not held back by the database's trouble.
        await until(lambda: log.written.get("files") == 4)
        assert log.written["database"] == 0
        await until(lambda: len(repo.rows) == 4)
    assert repo.calls == 4 and log.failures == 3
    assert "activity database sink failed" in caplog.text
    assert "recovered" in caplog.text
    await log.aclose()
    lines = [
        orjson.loads(line)
        for p in activity_files(tmp_path / "activity")
        for line in p.read_bytes().splitlines()
    ]
    assert [line["request_id"] for line in lines] == [f"req_{i:05d}" for i in range(4)]


async def test_the_queue_is_bounded_and_drops_the_oldest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = MemoryActivity(fail=10**6)
    settings = Settings.model_validate(
        {"data_dir": str(tmp_path), "activity": {"flush_interval": 0.02, "batch_size": 5}}
    )
    log = ActivityLog(
        settings, SimpleNamespace(activity=repo), max_pending=10, retry_initial=0.01, retry_max=0.02
    )
    await log.start()
    with caplog.at_level(logging.WARNING, "cloudgate.activity"):
        for i in range(25):
            log.emit(rec(i))
            await asyncio.sleep(0.002)
        await until(lambda: log.dropped == 15 and log.pending == 10)
    assert "activity log dropped" in caplog.text
    repo.fail = 0
    await log.aclose()
    # The newest ten survived.
    assert sorted(repo.rows) == [f"req_{i:05d}" for i in range(15, 25)]


async def test_close_gives_up_after_the_grace_period(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, repo = make(tmp_path, fail=10**6)
    await log.start()
    log.emit(rec(1))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "cloudgate.activity"):
        await log.aclose(grace=0.3)
    assert time.monotonic() - started < 2
    assert "closed with 1 entries unwritten" in caplog.text
    log.emit(rec(2))  # after close: ignored, no error
    assert repo.rows == {}


async def test_the_record_sink_close_schedules_the_final_flush(tmp_path: Path) -> None:
    log, repo = make(tmp_path, flush_interval=30)
    await log.start()
    log.emit(rec(1))
    log.close()
    log.close()  # twice is harmless
    await log.aclose()  # the same closing, awaited
    assert list(repo.rows) == ["req_00001"]


def test_close_outside_an_event_loop_does_not_raise(tmp_path: Path) -> None:
    log, _ = make(tmp_path)
    log.emit(rec(1))  # no loop: queued, not started
    log.close()


async def test_without_a_store_it_writes_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.model_validate({"data_dir": str(tmp_path), "activity": {"flush_interval": 0.02}})
    with caplog.at_level(logging.WARNING, "cloudgate.activity"):
        log = ActivityLog(settings, None)
    assert "writing it to files instead" in caplog.text
    log.emit(rec(1))
    await log.aclose()
    assert log.written == {"files": 1}
    assert len(activity_files(tmp_path / "activity")) == 1


async def test_disabled_does_nothing(tmp_path: Path) -> None:
    log, repo = make(tmp_path, enabled=False)
    record = rec(1)
    log.observe(record, None, {"x-api-key": "k"}, b"{}", ("10.0.0.1", 5000))
    log.emit(record)
    await log.start()
    await log.aclose()
    assert repo.calls == 0 and record.request_headers is None


def test_observe_captures_bodies_only_when_asked(tmp_path: Path) -> None:
    quiet, _ = make(tmp_path)
    record = rec(1)
    headers = {"user-agent": "ua"}
    principal = Principal(key_id="key_a", key_prefix="cg-x", user_id="user_1", team_id="team_1")
    quiet.observe(record, principal, headers, b"{}", ("10.0.0.1", 5000))
    assert (record.user_id, record.team_id, record.client_ip) == ("user_1", "team_1", "10.0.0.1")
    assert record.request_headers is headers  # a reference: nothing is copied per request
    assert (record.capture_bodies, record.request_body) == (False, None)

    asks = Principal(key_id="key_b", key_prefix="cg-y", log_bodies=True)
    quiet.observe(record, asks, headers, b"{}", None)
    assert (record.capture_bodies, record.request_body, record.body_limit) == (True, b"{}", 1024 * 1024)

    everyone, _ = make(tmp_path, log_bodies=True, max_body_bytes=100)
    other = rec(2)
    everyone.observe(other, None, headers, b"[]", None)
    assert (other.capture_bodies, other.request_body, other.body_limit) == (True, b"[]", 100)


async def test_emit_is_cheap(tmp_path: Path) -> None:
    log, repo = make(tmp_path, flush_interval=30, batch_size=100_000)
    await log.start()
    records = [rec(i) for i in range(50_000)]
    started = time.perf_counter()
    for record in records:
        log.emit(record)
    per_emit = (time.perf_counter() - started) / len(records)
    assert per_emit < 20e-6, f"{per_emit * 1e6:.1f} us per emit"
    await log.aclose()
    assert len(repo.rows) == 50_000


async def test_the_queue_is_bounded_by_size_when_bodies_are_kept(tmp_path: Path) -> None:
    repo = MemoryActivity(fail=10**6)
    settings = Settings.model_validate(
        {"data_dir": str(tmp_path), "activity": {"flush_interval": 0.02, "log_bodies": True}}
    )
    log = ActivityLog(
        settings, SimpleNamespace(activity=repo), max_pending_bytes=50_000, retry_initial=0.01, retry_max=0.02
    )
    await log.start()
    for i in range(10):
        record = rec(i)
        log.observe(record, None, {}, b"x" * 20_000)
        log.emit(record)
    await until(lambda: log.dropped == 8)  # two 21 KB entries fit in 50 KB
    repo.fail = 0
    await log.aclose()
    assert sorted(repo.rows) == ["req_00008", "req_00009"]
