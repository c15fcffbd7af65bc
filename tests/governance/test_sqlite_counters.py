"""SQLite counters across processes: one file, atomic transactions, the event loop never held up.

The semantics are tested with the other backends (the `counters` fixture runs every counter,
budget and rate-limit test on SQLite too, and test_budgets.py races two processes on one file);
these are what only a shared file has.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from cloudgate.governance.counters import BudgetHold, SlotCheck, WindowCheck
from cloudgate.governance.sqlite_counters import (
    CHECKPOINT_EVERY,
    SWEEP_EVERY,
    SQLiteCounters,
    lock_path,
    reset_counter_db,
)


async def test_two_connections_see_one_window(tmp_path: Path) -> None:
    a, b = SQLiteCounters(tmp_path / "c.db"), SQLiteCounters(tmp_path / "c.db")
    try:
        assert (await a.admit([WindowCheck("w", 2, 1)], [], "t")).ok
        assert (await b.admit([WindowCheck("w", 2, 1)], [], "t")).ok
        assert not (await a.admit([WindowCheck("w", 2, 1)], [], "t")).ok
        assert await b.window_total("w") == 2
    finally:
        await a.aclose()
        await b.aclose()


async def _reserve_waits_off_the_loop(counters: SQLiteCounters, let_go: Callable[[], None]) -> None:
    """A reservation made while another worker holds the file waits, the loop running on; it
    is made once `let_go()` has run."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        reserve = asyncio.ensure_future(counters.reserve([BudgetHold("b", 100)], "h", 10, 60))
        await asyncio.sleep(0.3)
        assert not reserve.done() and ticks >= 5  # waiting for the lock, off the loop
        let_go()
        assert (await asyncio.wait_for(reserve, 10)).ok
        assert await counters.budget("b") == (0, 10)
    finally:
        ticker.cancel()


async def test_the_loop_runs_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    counters = SQLiteCounters(path)
    await counters.seed("b", 0, 0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a writer in the middle of a transaction, without the lock file
    try:
        await _reserve_waits_off_the_loop(counters, lambda: other.execute("COMMIT"))
    finally:
        other.close()
        await counters.aclose()


async def test_wal_mode_and_reset(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    counters = SQLiteCounters(path)
    try:
        await counters.seed("b", 5, 0)
        await counters.admit([WindowCheck("w", 9, 1)], [], "t")
    finally:
        await counters.aclose()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    reset_counter_db(path)
    counters = SQLiteCounters(path)
    try:
        assert await counters.budget("b") is None
        assert await counters.window_total("w") == 0
    finally:
        await counters.aclose()


async def test_calls_made_together_share_a_transaction(tmp_path: Path) -> None:
    a, b = SQLiteCounters(tmp_path / "c.db"), SQLiteCounters(tmp_path / "c.db")  # two workers
    try:
        # 2 x 100 requests at once against a limit of 150: exactly 150 admitted, in far fewer
        # transactions than calls.
        results = await asyncio.gather(
            *(c.admit([WindowCheck("w", 150, 1)], [], f"t{i}") for i in range(100) for c in (a, b))
        )
        assert sum(r.ok for r in results) == 150
        assert await a.window_total("w") == 150
        assert a.transactions + b.transactions < 100
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_failing_call_fails_alone(tmp_path: Path) -> None:
    counters = SQLiteCounters(tmp_path / "c.db")

    def broken(conn: sqlite3.Connection, now: float) -> None:
        conn.execute("INSERT INTO buckets (key, bucket, amount) VALUES ('x', 1, 1)")
        conn.execute("SELECT * FROM no_such_table")

    try:
        await counters.seed("b", 0, 0)
        results = await asyncio.gather(
            counters.admit([WindowCheck("w", 10, 1)], [], "t1"),
            counters._run(broken),
            counters.reserve([BudgetHold("b", 100, 0)], "h", 5, 60),
            return_exceptions=True,
        )
        assert results[0].ok and results[2].ok
        assert isinstance(results[1], sqlite3.OperationalError)
        assert await counters.window_total("w") == 1 and await counters.budget("b") == (0, 5)
        assert await counters.window_total("x") == 0, "the failed call's own writes were undone"
    finally:
        await counters.aclose()


async def test_a_free_file_is_written_from_the_loop_without_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    counters = SQLiteCounters(path)
    try:
        await counters.seed("b", 0, 0)  # the first call opens the file, in the thread
        thread_calls = counters._thread.submit(lambda: None)
        thread_calls.result()
        before = counters.transactions
        # Nothing to wait for: the call finishes without yielding to the event loop.
        call = counters.reserve([BudgetHold("b", 100)], "h", 10, 60)
        try:
            call.send(None)
        except StopIteration as done:
            assert done.value.ok
        else:
            raise AssertionError("the call waited")
        assert counters.transactions == before + 1 and await counters.budget("b") == (0, 10)
        # The loop's connection never checkpoints (an fsync): the thread does, every CHECKPOINT_EVERY.
        assert counters._loop_conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        checkpoints = []
        real = counters._checkpoint
        counters._checkpoint = lambda: checkpoints.append(real())
        for i in range(CHECKPOINT_EVERY):
            await counters.admit([WindowCheck("w", 10**6, 1)], [], f"t{i}")
        await asyncio.sleep(0.2)
        assert len(checkpoints) == 1
        assert await counters.window_total("w") == CHECKPOINT_EVERY
    finally:
        await counters.aclose()


async def test_a_worker_holding_the_lock_file_is_waited_for_off_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    counters = SQLiteCounters(path)
    await counters.seed("b", 0, 0)
    fd = os.open(lock_path(path), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another worker's turn
    try:
        await _reserve_waits_off_the_loop(counters, lambda: fcntl.flock(fd, fcntl.LOCK_UN))
    finally:
        os.close(fd)
        await counters.aclose()


async def test_what_has_expired_is_deleted_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    now = [1_000_000.0]
    counters = SQLiteCounters(path, clock=lambda: now[0])
    try:
        await counters.seed("b", 0, 0)
        assert (await counters.admit([WindowCheck("w", 10, 1)], [SlotCheck("s", 10)], "t")).ok
        assert (await counters.reserve([BudgetHold("b", 1000)], "h", 30, 60)).ok
        now[0] += 3600  # the bucket, the slot and the hold have all expired; nothing deleted yet
        assert await counters.window_total("w") == 0 and await counters.slots_in_use("s") == 0
        for i in range(SWEEP_EVERY):
            await counters.admit([WindowCheck("other", 10**6, 1)], [], f"t{i}")
        await asyncio.sleep(0.2)  # the sweep runs in the thread
        raw = sqlite3.connect(path)
        try:
            assert raw.execute("SELECT COUNT(*) FROM buckets WHERE key = 'w'").fetchone()[0] == 0
            assert raw.execute("SELECT COUNT(*) FROM slots").fetchone()[0] == 0
            assert raw.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 0
            # The hold of a request that never finished is spending.
            assert raw.execute("SELECT spent, reserved FROM budgets WHERE key = 'b'").fetchone() == (30, 0)
        finally:
            raw.close()
    finally:
        await counters.aclose()


async def test_a_loop_connection_that_cannot_roll_back_is_replaced(tmp_path: Path) -> None:
    counters = SQLiteCounters(tmp_path / "c.db")

    def ends_its_own_transaction(conn: sqlite3.Connection, now: float) -> None:
        conn.execute("ROLLBACK")  # so the counters' own ROLLBACK fails
        raise ValueError("broken")

    try:
        await counters.seed("b", 0, 0)  # opens the file (in the thread)
        await counters.seed("c", 0, 0)  # on the loop
        first = counters._loop_conn
        assert first is not None
        with pytest.raises(ValueError, match="broken"):
            await counters._run(ends_its_own_transaction)
        assert counters._loop_conn is None
        assert (await counters.reserve([BudgetHold("b", 100)], "h", 10, 60)).ok
        assert counters._loop_conn is not None and counters._loop_conn is not first
        assert await counters.budget("b") == (0, 10)
    finally:
        await counters.aclose()


@pytest.mark.parametrize("started", [False, True], ids=["before-it-starts", "in-the-thread"])
async def test_calls_waiting_for_a_cancelled_batch_are_cancelled_not_left_hanging(
    tmp_path: Path, started: bool
) -> None:
    path = tmp_path / "c.db"
    counters = SQLiteCounters(path)
    await counters.seed("b", 0, 0)
    fd = os.open(lock_path(path), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the calls cannot run on the loop; the batch waits in the thread
    try:
        calls = [
            asyncio.ensure_future(counters.admit([WindowCheck("w", 9, 1)], [], f"t{i}")) for i in range(3)
        ]
        await asyncio.sleep(0.05 if started else 0)
        assert counters._batches._task is not None
        counters._batches._task.cancel()  # as when the loop shuts down
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert not counters._batches.busy
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        await counters.aclose()
