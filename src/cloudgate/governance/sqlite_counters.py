"""Counters in a SQLite file, shared by the worker processes of one `cloudgate serve` on one host.

The third backend of `cloudgate.governance.counters.Counters`, with the same semantics as the
memory and Redis ones (the same tests run against all three): budgets with holds, sliding rate
windows in buckets, concurrency slots with an expiry. It is what `--workers N` uses when no
Redis is configured: memory counters would give each worker a whole budget of its own.

Every operation runs in a transaction opened with `BEGIN IMMEDIATE`, so it takes the database's
write lock before reading and is atomic across processes, like a Redis script. The file is in WAL
mode (readers never wait for the writer) with `synchronous=NORMAL`: counters are not the record
of spending (the spend log is), so a power loss may drop the last commits, never corrupt the file.

The sqlite3 calls run in one thread of this process's own, so the event loop never waits for a
lock another worker holds. Calls made while that thread is busy go together in the next
transaction (a group commit): under load a worker takes the lock once for many requests rather
than four times for each, and each sqlite3 call costs a hand-over of the GIL with the busy event
loop. The workers take turns through a lock file (`flock`), which wakes the next one as soon as
the lock is let go; SQLite's busy handler would sleep between polls. `busy_timeout` still bounds
the wait for any other writer.

Tables: `budgets(key, spent, reserved, expires_at)`, `holds(key, hold_id, amount, expires_at)`,
`buckets(key, bucket, amount)` (bucket = epoch // bucket_s), `slots(key, token, expires_at)`;
`expires_at` is epoch seconds, NULL for a budget that never expires. Reads skip buckets out of
the window and expired slots; every SWEEP_EVERY calls one more deletes them and moves expired
holds from `reserved` to `spent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from cloudgate.governance.counters import (
    DEFAULT_BUCKET_S,
    DEFAULT_SLOT_TTL_S,
    DEFAULT_WINDOW_S,
    AdmitResult,
    BudgetHold,
    ReserveResult,
    SlotCheck,
    WindowAdd,
    WindowCheck,
    judge_admission,
)
from cloudgate.util.batching import Batcher, Outcome
from cloudgate.util.sqlite import enable_wal

BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_EVERY = 1000  # transactions on the loop between two WAL checkpoints in the thread
SWEEP_EVERY = 1000  # calls between two deletions of expired buckets, slots and holds
log = logging.getLogger("cloudgate.governance")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS budgets (
  key TEXT PRIMARY KEY, spent INTEGER NOT NULL, reserved INTEGER NOT NULL, expires_at REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (
  key TEXT NOT NULL, hold_id TEXT NOT NULL, amount INTEGER NOT NULL, expires_at REAL NOT NULL,
  PRIMARY KEY (key, hold_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS buckets (
  key TEXT NOT NULL, bucket INTEGER NOT NULL, amount INTEGER NOT NULL, PRIMARY KEY (key, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slots (
  key TEXT NOT NULL, token TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (key, token)
) WITHOUT ROWID;
"""

T = TypeVar("T")
# A call waiting for its batch: the work, the clock when it was made, and where its result goes.
_Work = Callable[[sqlite3.Connection, float], Any]
_Call = tuple[_Work, float]  # the work and the clock when it was asked for


def lock_path(path: Path) -> Path:
    """The lock file beside the counters file that its writers take turns on."""
    return path.with_name(path.name + ".lock")


def open_counter_db(path: Path) -> sqlite3.Connection:
    """A connection to the counters file at `path` (created, in WAL mode, with the tables)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode (isolation_level=None): the transactions are the explicit BEGIN IMMEDIATE.
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    enable_wal(conn, BUSY_TIMEOUT_MS / 1000)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(_SCHEMA)
    return conn


def _quietly(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("deleting expired counters failed: %s", done.exception())


def open_loop_connection(path: Path) -> sqlite3.Connection:
    """A second connection to a counters file already set up, for the event loop: it gives up
    at once on a locked file (busy timeout 0) and leaves WAL checkpoints to the thread."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    conn.execute("PRAGMA busy_timeout = 0")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


def reset_counter_db(path: Path) -> None:
    """Empty the counters file (a fresh `serve` run: budgets are seeded again from the store)."""
    conn = open_counter_db(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for table in ("budgets", "holds", "buckets", "slots"):
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        conn.execute("COMMIT")
    finally:
        conn.close()


class SQLiteCounters:
    """Counters in a SQLite file, shared by the processes that open it; one transaction per batch of calls."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        window_s: int = DEFAULT_WINDOW_S,
        bucket_s: int = DEFAULT_BUCKET_S,
        slot_ttl_s: int = DEFAULT_SLOT_TTL_S,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.slot_ttl_s = slot_ttl_s
        self._conn: sqlite3.Connection | None = None  # the thread's
        self._loop_conn: sqlite3.Connection | None = None  # the event loop's (see _run_here)
        self._here = 0  # transactions run on the loop, for checkpointing
        self._calls = 0  # calls made, for sweeping
        self._lock_fd = -1
        # One thread: the connection is used by one batch at a time, in order.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-counters")
        self._batches = Batcher(self._send, name="sqlite counters")  # calls waiting for the thread
        self.transactions = 0  # committed so far (each holds one or many calls)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = open_counter_db(self.path)
            # (before the connection is set: the loop takes that as the sign both are ready)
            self._lock_fd = os.open(lock_path(self.path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._conn = conn
        return self._conn

    async def _run(self, work: Callable[[sqlite3.Connection, float], T]) -> T:
        """Run `work` in a transaction: at once on the event loop when the file is free, else in
        the next batch of the thread (calls made while a batch is there go together)."""
        now = self.clock()  # read on the loop: a test clock need not be thread-safe
        self._count_call()
        if not self._batches.busy:
            outcome = self._run_here(work, now)
            if outcome is not None:
                if outcome[0]:
                    return cast(T, outcome[1])
                raise outcome[1]
        return cast(T, await self._batches.submit((work, now)))

    def _run_here(self, work: _Work, now: float) -> Outcome | None:
        """`work` in a transaction on the event loop, if that needs no waiting: the file's lock
        is free and no batch is in the thread. None when it must wait (in the thread).

        A transaction takes tens of microseconds; a hand-off to the thread and back costs more
        than that in CPU alone. The loop's connection never waits for a lock (busy timeout 0)
        and never checkpoints the WAL (an fsync); the thread does that now and then.
        """
        conn = self._loop_conn
        if conn is None:
            if self._conn is None:
                return None  # the thread opens the file first (schema, WAL mode), then the loop may
            conn = self._loop_conn = open_loop_connection(self.path)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # another worker's turn
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return None  # a writer that does not take turns through the lock file holds it
            try:
                value = work(conn, now)
                conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:  # closing it rolls back; the next call opens another
                    self._loop_conn = None
                    conn.close()
                if not isinstance(exc, Exception):
                    raise
                return False, exc
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self.transactions += 1
        self._here += 1
        if self._here % CHECKPOINT_EVERY == 0:
            self._thread.submit(self._checkpoint)
        return True, value

    def _checkpoint(self) -> None:
        try:
            self._db().execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # a later one will do
            log.warning("checkpointing %s failed: %s", self.path, exc)

    def _count_call(self) -> None:
        # Every SWEEP_EVERY calls, one more in the background deletes what has expired.
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._batches.submit((self._sweep, self.clock())).add_done_callback(_quietly)

    def _send(self, batch: list[_Call]) -> Awaitable[list[Outcome]]:
        return asyncio.get_running_loop().run_in_executor(self._thread, self._run_batch, batch)

    def _run_batch(self, batch: list[_Call]) -> list[Outcome]:
        """The calls of a batch in one transaction (each still atomic: the whole batch is); if
        one fails, the batch is rolled back and each call runs alone, so only it fails."""
        conn = self._db()
        with self._locked():
            if len(batch) > 1:
                try:
                    return [(True, value) for value in self._transaction(conn, batch)]
                except Exception:  # noqa: S110 - each call is tried alone below and reports its error
                    pass
            outcomes: list[Outcome] = []
            for call in batch:
                try:
                    outcomes.append((True, self._transaction(conn, [call])[0]))
                except Exception as exc:
                    outcomes.append((False, exc))
            return outcomes

    def _transaction(self, conn: sqlite3.Connection, calls: list[_Call]) -> list[Any]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            values = [work(conn, now) for work, now in calls]
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self.transactions += 1
        return values

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the counters file's lock file: a worker waiting for another is woken the moment
        it lets go (SQLite's own busy handler polls, sleeping up to 100 ms between tries)."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # -- budgets ------------------------------------------------------------------------------

    @staticmethod
    def _live_budget(conn: sqlite3.Connection, key: str, now: float) -> tuple[int, int] | None:
        row = conn.execute("SELECT spent, reserved, expires_at FROM budgets WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        if row[2] is not None and row[2] <= now:
            conn.execute("DELETE FROM budgets WHERE key = ?", (key,))
            conn.execute("DELETE FROM holds WHERE key = ?", (key,))
            return None
        return int(row[0]), int(row[1])

    async def reserve(
        self, holds: Sequence[BudgetHold], hold_id: str, amount: int, hold_ttl_s: float
    ) -> ReserveResult:
        """Hold `amount` on every counter, or on none if one would pass its limit."""

        def work(conn: sqlite3.Connection, now: float) -> ReserveResult:
            budgets = [self._live_budget(conn, h.key, now) for h in holds]
            unseeded = tuple(i for i, b in enumerate(budgets) if b is None)
            if unseeded:
                return ReserveResult(ok=False, unseeded=unseeded)
            # Expired holds (requests that never finished) count as spending; whether they are
            # moved from `reserved` to `spent` yet (see `_sweep`) leaves the sum unchanged.
            for i, (hold, budget) in enumerate(zip(holds, budgets, strict=True)):
                current = sum(budget or (0, 0))
                if current + max(amount, 1) > hold.limit:
                    return ReserveResult(ok=False, refused=i, current=current)
            for hold in holds:
                conn.execute(
                    "INSERT OR REPLACE INTO holds (key, hold_id, amount, expires_at) VALUES (?, ?, ?, ?)",
                    (hold.key, hold_id, amount, now + hold_ttl_s),
                )
                if hold.ttl_s:
                    conn.execute(
                        "UPDATE budgets SET reserved = reserved + ?, expires_at = ? WHERE key = ?",
                        (amount, now + hold.ttl_s, hold.key),
                    )
                else:
                    conn.execute(
                        "UPDATE budgets SET reserved = reserved + ? WHERE key = ?", (amount, hold.key)
                    )
            return ReserveResult(ok=True)

        return await self._run(work)

    async def _finish_hold(self, keys: Sequence[str], hold_id: str, actual: int | None) -> None:
        def work(conn: sqlite3.Connection, now: float) -> None:
            for key in keys:
                if self._live_budget(conn, key, now) is None:
                    continue
                row = conn.execute(
                    "DELETE FROM holds WHERE key = ? AND hold_id = ? RETURNING amount", (key, hold_id)
                ).fetchone()
                if row is None:
                    continue
                conn.execute(
                    "UPDATE budgets SET reserved = reserved - ?, spent = spent + ? WHERE key = ?",
                    (int(row[0]), actual or 0, key),
                )

        await self._run(work)

    async def settle(self, keys: Sequence[str], hold_id: str, actual: int) -> None:
        """Replace the hold `hold_id` by `actual` spending (no-op if the hold is gone)."""
        await self._finish_hold(keys, hold_id, actual)

    async def release(self, keys: Sequence[str], hold_id: str) -> None:
        """Drop the hold `hold_id` without spending (no-op if the hold is gone)."""
        await self._finish_hold(keys, hold_id, None)

    async def seed(self, key: str, spent: int, ttl_s: int) -> bool:
        """Create a budget counter with `spent` unless it exists; True if created."""

        def work(conn: sqlite3.Connection, now: float) -> bool:
            if self._live_budget(conn, key, now) is not None:
                return False
            conn.execute(
                "INSERT INTO budgets (key, spent, reserved, expires_at) VALUES (?, ?, 0, ?)",
                (key, spent, now + ttl_s if ttl_s else None),
            )
            return True

        return await self._run(work)

    async def budget(self, key: str) -> tuple[int, int] | None:
        """(spent, reserved) of a budget counter, None if unseeded."""

        def work(conn: sqlite3.Connection, now: float) -> tuple[int, int] | None:
            self._sweep(conn, now)  # so that expired holds show as spent
            return self._live_budget(conn, key, now)

        return await self._run(work)

    # -- rate windows and concurrency slots ---------------------------------------------------

    def _first_bucket(self, now: float) -> int:
        return math.floor(now / self.bucket_s) - self.window_s // self.bucket_s + 1

    def _window(self, conn: sqlite3.Connection, key: str, now: float) -> dict[int, int]:
        # Buckets that have left the window are skipped here and deleted by `_sweep`.
        rows = conn.execute(
            "SELECT bucket, amount FROM buckets WHERE key = ? AND bucket >= ?", (key, self._first_bucket(now))
        )
        return {int(b): int(a) for b, a in rows}

    @staticmethod
    def _slot_count(conn: sqlite3.Connection, key: str, now: float) -> int:
        # Expired slots are skipped here and deleted by `_sweep`.
        row = conn.execute(
            "SELECT COUNT(*) FROM slots WHERE key = ? AND expires_at > ?", (key, now)
        ).fetchone()
        return int(row[0])

    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete what has expired, in every key: buckets out of the window, slots past their
        time, and holds past theirs (their amount moves from reserved to spent)."""
        conn.execute("DELETE FROM buckets WHERE bucket < ?", (self._first_bucket(now),))
        conn.execute("DELETE FROM slots WHERE expires_at <= ?", (now,))
        expired = conn.execute(
            "SELECT key, SUM(amount) FROM holds WHERE expires_at <= ? GROUP BY key", (now,)
        ).fetchall()
        for key, total in expired:
            conn.execute(
                "UPDATE budgets SET reserved = reserved - ?1, spent = spent + ?1 WHERE key = ?2", (total, key)
            )
        conn.execute("DELETE FROM holds WHERE expires_at <= ?", (now,))

    async def admit(
        self, windows: Sequence[WindowCheck], slots: Sequence[SlotCheck], token: str
    ) -> AdmitResult:
        """Check every window and slot; if all pass, add to the windows and take the slots."""

        def work(conn: sqlite3.Connection, now: float) -> AdmitResult:
            buckets = [self._window(conn, w.key, now) for w in windows]
            counts = [self._slot_count(conn, s.key, now) for s in slots]
            verdict = judge_admission(windows, buckets, slots, counts, self.window_s, self.bucket_s, now)
            if not verdict.ok:
                return verdict
            bucket = math.floor(now / self.bucket_s)
            for check in windows:
                if check.add:
                    conn.execute(
                        "INSERT INTO buckets (key, bucket, amount) VALUES (?1, ?2, ?3) "
                        "ON CONFLICT (key, bucket) DO UPDATE SET amount = amount + ?3",
                        (check.key, bucket, check.add),
                    )
            for check_slot in slots:
                conn.execute(
                    "INSERT OR REPLACE INTO slots (key, token, expires_at) VALUES (?, ?, ?)",
                    (check_slot.key, token, now + self.slot_ttl_s),
                )
            return verdict

        return await self._run(work)

    async def record(self, adds: Sequence[WindowAdd], release_slots: Sequence[str], token: str) -> None:
        """Add to windows (late counts, corrections) and give back `token`'s slots."""
        if not adds and not release_slots:
            return

        def work(conn: sqlite3.Connection, now: float) -> None:
            first = self._first_bucket(now)
            for add in adds:
                bucket = math.floor(add.at / self.bucket_s)
                if bucket < first or not add.amount:
                    continue  # the bucket has left the window: nothing left to correct
                row = conn.execute(
                    "SELECT amount FROM buckets WHERE key = ? AND bucket = ?", (add.key, bucket)
                ).fetchone()
                value = (int(row[0]) if row else 0) + add.amount
                if value > 0:
                    conn.execute(
                        "INSERT OR REPLACE INTO buckets (key, bucket, amount) VALUES (?, ?, ?)",
                        (add.key, bucket, value),
                    )
                else:
                    conn.execute("DELETE FROM buckets WHERE key = ? AND bucket = ?", (add.key, bucket))
            for key in release_slots:
                conn.execute("DELETE FROM slots WHERE key = ? AND token = ?", (key, token))

        await self._run(work)

    async def window_total(self, key: str) -> int:
        """The sum of a window over the last `window_s` seconds."""
        return await self._run(lambda conn, now: sum(self._window(conn, key, now).values()))

    async def slots_in_use(self, key: str) -> int:
        """Unexpired concurrency slots held in `key`."""
        return await self._run(lambda conn, now: self._slot_count(conn, key, now))

    async def clear(self) -> None:
        """Delete every counter in the file (tests and administration)."""

        def work(conn: sqlite3.Connection, now: float) -> None:
            for table in ("budgets", "holds", "buckets", "slots"):
                conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names

        await self._run(work)

    async def aclose(self) -> None:
        """Finish the calls under way, close the connection and stop the thread."""
        await self._batches.wait()
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.close)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        self._thread.shutdown(wait=False)
