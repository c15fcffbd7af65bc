"""The spend writer: batching, retries without loss, replay at start, close; and `kill -9` under load."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from cloudgate.governance.journal import SpendJournal, list_segments
from cloudgate.governance.spend import SpendWriter
from cloudgate.governance.types import SpendEntry
from cloudgate.store import Store, upgrade

CHILD = Path(__file__).with_name("spend_crash_child.py")
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


class MemorySpendSink:
    """Upserts by request id like the SQL store; can be told to fail its next writes."""

    def __init__(self, fail: int = 0, delay: float = 0.0) -> None:
        self.rows: dict[str, SpendEntry] = {}
        self.batches: list[list[str]] = []
        self.fail = fail
        self.delay = delay  # seconds each write takes
        self.calls = 0
        self.fresh: list[bool] = []  # each call's `fresh`

    async def write_spend(self, entries: list[SpendEntry], *, fresh: bool = False) -> None:
        """Take the batch, or fail while told to."""
        self.calls += 1
        self.fresh.append(fresh)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            raise ConnectionError("database is down")
        self.batches.append([e.request_id for e in entries])
        for entry in entries:
            existing = self.rows.get(entry.request_id)
            if existing is None or existing.interrupted:
                self.rows[entry.request_id] = entry


def entry(request_id: str, reserved: int = 1_000, cost: int = 400) -> SpendEntry:
    """A finished request's entry."""
    return SpendEntry(request_id, T0, "key-1", status=200, reserved_micro=reserved, cost_micro=cost)


async def until(condition: Callable[[], object], within: float = 2.0) -> None:
    """Wait until `condition()` is true."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_batches_by_size(tmp_path: Path) -> None:
    sink = MemorySpendSink()
    writer = SpendWriter(SpendJournal(tmp_path), sink, interval=60, max_batch=3)
    await writer.start()
    for i in range(2):
        writer.finish(entry(f"r{i}"))
    await asyncio.sleep(0.05)
    assert sink.batches == [] and writer.pending == 2
    writer.finish(entry("r2"))
    await until(lambda: sink.batches)
    assert sink.batches == [["r0", "r1", "r2"]]
    assert (writer.pending, writer.written) == (0, 3)
    await writer.close()


async def test_batches_by_interval(tmp_path: Path) -> None:
    sink = MemorySpendSink()
    writer = SpendWriter(SpendJournal(tmp_path), sink, interval=0.1, max_batch=500)
    await writer.start()
    began = time.monotonic()
    for i in range(5):
        writer.finish(entry(f"r{i}"))
    await asyncio.sleep(0.03)
    assert sink.batches == []
    await until(lambda: sink.batches)
    assert 0.08 < time.monotonic() - began < 0.5
    assert sink.batches == [[f"r{i}" for i in range(5)]]
    writer.finish(entry("r5"))
    await until(lambda: len(sink.batches) == 2)
    await writer.close()


async def test_written_batches_are_checkpointed_and_their_segments_deleted(tmp_path: Path) -> None:
    sink = MemorySpendSink()
    journal = SpendJournal(tmp_path, max_segment_bytes=2_000)
    writer = SpendWriter(journal, sink, interval=0.01, max_batch=4)
    await writer.start()
    for i in range(50):
        e = entry(f"r{i}")
        journal.begin(e)
        writer.finish(e)
        await asyncio.sleep(0)
    await until(lambda: writer.written == 50)
    assert journal.unwritten == 0 and journal.in_flight == 0
    assert list_segments(tmp_path) == journal.segments == [journal.segments[-1]]
    await writer.close()
    assert list_segments(tmp_path) == []


async def test_sink_failures_are_retried_without_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = MemorySpendSink(fail=4)
    writer = SpendWriter(
        SpendJournal(tmp_path), sink, interval=0.01, max_batch=2, max_write=2, retry_initial=0.01
    )
    await writer.start()
    for i in range(7):
        writer.finish(entry(f"r{i}"))
    await until(lambda: writer.written == 7)
    assert sorted(sink.rows) == [f"r{i}" for i in range(7)]
    assert writer.failures == 4 and sink.calls == 4 + 4
    # Only a first try may skip the sink's look for earlier versions: a failed write may have
    # committed before it failed.
    assert sink.fresh == [True, False, False, False, False, True, True, True]
    # Logged once for the streak, once for the recovery: not once per retry.
    messages = [r.getMessage() for r in caplog.records if r.name == "cloudgate.spend"]
    assert len([m for m in messages if "failed" in m]) == 2
    assert messages[0].startswith("spend sink failed")
    await writer.close()


async def test_a_backlog_is_written_in_writes_of_up_to_max_write(tmp_path: Path) -> None:
    # Entries queued while a write was in progress go together in the next one, not in
    # max_batch-sized pieces: under load each write costs a fixed toll of thread hand-offs.
    sink = MemorySpendSink(delay=0.05)
    writer = SpendWriter(SpendJournal(tmp_path), sink, interval=60, max_batch=2, max_write=5)
    await writer.start()
    writer.finish(entry("r0"))
    writer.finish(entry("r1"))
    await until(lambda: sink.calls == 1)  # the first write is under way
    for i in range(2, 10):
        writer.finish(entry(f"r{i}"))
    await until(lambda: writer.written == 10)
    assert [len(b) for b in sink.batches] == [2, 5, 3]
    await writer.close()


async def test_close_flushes_everything(tmp_path: Path) -> None:
    sink = MemorySpendSink()
    writer = SpendWriter(SpendJournal(tmp_path), sink, interval=60, max_batch=3, max_write=3)
    await writer.start()
    for i in range(8):
        writer.finish(entry(f"r{i}"))
    await writer.close()
    assert sorted(sink.rows) == [f"r{i}" for i in range(8)]
    assert [len(b) for b in sink.batches] == [3, 3, 2]
    assert list_segments(tmp_path) == []


async def test_close_with_the_sink_down_leaves_the_rest_for_replay(tmp_path: Path) -> None:
    down = MemorySpendSink(fail=10**9)
    journal = SpendJournal(tmp_path)
    writer = SpendWriter(journal, down, interval=0.01, retry_initial=0.01)
    await writer.start()
    for i in range(3):
        e = entry(f"r{i}", cost=100 + i)
        journal.begin(e)
        writer.finish(e)
    journal.begin(entry("in-flight", reserved=9_000))
    await writer.close(grace=0.1)
    assert down.rows == {}

    sink = MemorySpendSink()
    writer = SpendWriter(SpendJournal(tmp_path), sink)
    replayed = await writer.start()
    assert sorted(e.request_id for e in replayed) == ["in-flight", "r0", "r1", "r2"]
    assert {rid: (e.cost_micro, e.interrupted) for rid, e in sink.rows.items()} == {
        "r0": (100, False),
        "r1": (101, False),
        "r2": (102, False),
        "in-flight": (9_000, True),
    }
    assert writer.replayed == 4 and writer.written == 4
    await writer.close()
    assert list_segments(tmp_path) == []


async def test_start_retries_the_replay_until_the_sink_takes_it(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    journal.begin(entry("r1", reserved=5_000))
    journal.close()
    sink = MemorySpendSink(fail=3)
    writer = SpendWriter(SpendJournal(tmp_path), sink, retry_initial=0.01)
    replayed = await writer.start()
    assert [(e.request_id, e.cost_micro, e.interrupted) for e in replayed] == [("r1", 5_000, True)]
    assert sink.rows["r1"].interrupted and writer.failures == 3
    await writer.close()


async def test_a_replay_cut_short_replays_again(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    journal.begin(entry("r1"))
    journal.close()
    writer = SpendWriter(SpendJournal(tmp_path), MemorySpendSink(fail=10**9), retry_initial=0.01)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(writer.start(), 0.05)  # the process dies during the replay
    writer.journal.close()
    sink = MemorySpendSink()
    writer = SpendWriter(SpendJournal(tmp_path), sink)
    assert [e.request_id for e in await writer.start()] == ["r1"]
    assert sink.rows["r1"].interrupted
    await writer.close()


async def test_replay_after_a_write_without_its_checkpoint_is_harmless(tmp_path: Path) -> None:
    # The crash came between the sink's commit and the checkpoint line: the batch is written twice.
    sink = MemorySpendSink()
    journal = SpendJournal(tmp_path)
    e = entry("r1", cost=777)
    journal.begin(e)
    journal.end(e)
    await sink.write_spend([e])
    journal.close()
    writer = SpendWriter(SpendJournal(tmp_path), sink)
    assert [x.request_id for x in await writer.start()] == ["r1"]
    assert list(sink.rows) == ["r1"] and sink.rows["r1"].cost_micro == 777
    assert sink.fresh == [False, False]  # a replay always looks
    await writer.close()


async def test_replay_into_the_store_keeps_deployment_and_attempts(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path / "journal")
    interrupted = SpendEntry("r1", T0, "key-1", reserved_micro=900, deployment="vertex/europe-west1")
    journal.begin(interrupted)
    done = entry("r2", cost=300)
    done.deployment, done.attempts = "bedrock/eu-west-1", 2
    journal.begin(done)
    journal.end(done)
    journal.close()  # as a crash leaves it: nothing checkpointed
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        await upgrade(store.engine)
        writer = SpendWriter(SpendJournal(tmp_path / "journal"), store.spend_sink())
        assert {e.request_id for e in await writer.start()} == {"r1", "r2"}
        await writer.close()
        report = await store.spend.spend_report("deployment", T0)
        assert [(r.group, r.requests, r.attempts, r.cost_micro) for r in report] == [
            ("vertex/europe-west1", 1, 1, 900),
            ("bedrock/eu-west-1", 1, 2, 300),
        ]
    finally:
        await store.close()


async def test_fsync_interval_runs_alongside(tmp_path: Path) -> None:
    sink = MemorySpendSink()
    writer = SpendWriter(SpendJournal(tmp_path), sink, interval=0.01, fsync_interval=0.01)
    await writer.start()
    for i in range(20):
        writer.finish(entry(f"r{i}"))
        await asyncio.sleep(0.002)
    await writer.close()
    assert len(sink.rows) == 20


async def test_close_before_start_still_flushes(tmp_path: Path) -> None:
    sink = MemorySpendSink()
    writer = SpendWriter(SpendJournal(tmp_path), sink)
    writer.finish(entry("r1"))
    await writer.close()
    assert list(sink.rows) == ["r1"]


# -- kill -9 under load -------------------------------------------------------------------------


def run_and_kill(journal_dir: Path, db: Path, sink: str, out: Path, after: float) -> None:
    """Start the load child, let it run `after` seconds past its first request, then SIGKILL it."""
    with out.open("wb") as stdout:
        command = [sys.executable, str(CHILD), "load", str(journal_dir), str(db), sink]
        child = subprocess.Popen(command, stdout=stdout)
    try:
        deadline = time.monotonic() + 10
        while out.stat().st_size == 0:
            assert child.poll() is None, "load child died"
            assert time.monotonic() < deadline, "load child never started"
            time.sleep(0.01)
        time.sleep(after)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    ("sink", "after"),
    [("sqlite3", 0.05), ("sqlite3", 0.3), ("sqlite3", 0.6), ("sqlite3", 1.0), ("store", 0.5)],
)
def test_kill_9_under_load_loses_nothing(tmp_path: Path, sink: str, after: float) -> None:
    journal_dir, db, out = tmp_path / "journal", tmp_path / "spend.db", tmp_path / "child.out"
    after += random.uniform(0, 0.05)  # vary the instant, to land inside writes and flushes
    run_and_kill(journal_dir, db, sink, out, after)

    lines = out.read_bytes().decode().splitlines()
    began = [line[2:] for line in lines if line.startswith("B ")]
    ended = {line[2:] for line in lines if line.startswith("E ")}
    assert len(began) > 20 and len(set(began)) == len(began)

    restart = subprocess.run(
        [sys.executable, str(CHILD), "replay", str(journal_dir), str(db), sink],
        capture_output=True,
        check=True,
        timeout=30,
    )
    summary = orjson.loads(restart.stdout)

    rows = {
        rid: (bool(interrupted), status, cost, reserved, tokens)
        for rid, interrupted, status, cost, reserved, tokens in sqlite3.connect(db).execute(
            "SELECT request_id, interrupted, status, cost_micro, reserved_micro, output_tokens FROM spend"
        )
    }
    # Every request the child began is in the spend log; at most one more: begun, killed before it said so.
    missing = set(began) - set(rows)
    assert not missing, f"{len(missing)} requests lost, e.g. {sorted(missing)[:5]}"
    extra = set(rows) - set(began)
    last = int(began[-1].split("-")[1])
    assert extra <= {f"req-{last + 1:08d}"}
    for rid, (interrupted, status, cost, reserved, tokens) in rows.items():
        n = int(rid.split("-")[1])
        assert reserved == 10_000 + n
        if interrupted:
            assert rid not in ended, f"{rid} finished but was logged as interrupted"
            assert (status, cost, tokens) == (0, 10_000 + n, 0)  # charged its reservation
        else:
            assert (status, cost, tokens) == (200, 3_000 + 7 * n, n)
    # Nothing to replay a second time, and nothing left behind.
    assert summary["replayed"] >= summary["interrupted"] >= 0
    assert list_segments(journal_dir) == []
    rewrites = ""
    if sink == "sqlite3":  # the stdlib sink counts its writes: how often a crash made replay redo a batch
        count = "SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM writes"
        rewrites = f", {sqlite3.connect(db).execute(count).fetchone()[0]} rewrites"
    print(f"{sink}, kill after {after:.2f}s: {len(began)} begun, {len(ended)} ended, {summary}{rewrites}")
