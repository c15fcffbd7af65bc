"""A gateway stand-in for the spend crash test: journals requests under load until it is killed.

    python spend_crash_child.py load JOURNAL_DIR DB_PATH SINK    begin/end in a tight loop; prints
                                                                "B <id>" after each begin and
                                                                "E <id>" after each finish
    python spend_crash_child.py replay JOURNAL_DIR DB_PATH SINK  a restart: replay, close, summary

SINK is `store` (the project's `SqlSpendSink` on a migrated SQLite file) or `sqlite3` (a plain
stdlib sink with the same upsert rule -- a row is replaced only while it is an interrupted one --
and a side table counting every write, to see how often replays re-wrote a row).
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys
from collections import deque
from datetime import UTC, datetime

import orjson

from cloudgate.governance.journal import SpendJournal
from cloudgate.governance.spend import SpendSink, SpendWriter
from cloudgate.governance.types import SpendEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    request_id TEXT PRIMARY KEY, interrupted INTEGER NOT NULL, status INTEGER NOT NULL,
    cost_micro INTEGER NOT NULL, reserved_micro INTEGER NOT NULL, output_tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS writes (request_id TEXT NOT NULL);
"""


def reserved_cost(n: int) -> int:
    """The reservation for request number n."""
    return 10_000 + n


def final_cost(n: int) -> int:
    """The real cost of request number n, once finished."""
    return 3_000 + 7 * n


class SqliteSpendSink:
    """Writes spend entries to SQLite, one transaction per batch."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    async def write_spend(self, entries: list[SpendEntry], *, fresh: bool = False) -> None:
        """Upsert the batch; a final entry replaces an interrupted one, never the reverse."""
        rows = [
            (e.request_id, int(e.interrupted), e.status, e.cost_micro, e.reserved_micro, e.output_tokens)
            for e in entries
        ]
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT INTO spend VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(request_id) DO UPDATE SET "
            "interrupted = excluded.interrupted, status = excluded.status, cost_micro = excluded.cost_micro, "
            "reserved_micro = excluded.reserved_micro, output_tokens = excluded.output_tokens "
            "WHERE spend.interrupted = 1",
            rows,
        )
        self.db.executemany("INSERT INTO writes VALUES (?)", [(r[0],) for r in rows])
        self.db.execute("COMMIT")


def say(line: str) -> None:
    """One unbuffered write: once it returns, the parent will see the line even after kill -9."""
    os.write(1, line.encode() + b"\n")


async def open_sink(db_path: str, kind: str) -> SpendSink:
    """The sink the test asked for, on the database file at `db_path`."""
    if kind == "sqlite3":
        return SqliteSpendSink(db_path)
    from cloudgate.store import Store, upgrade  # SQLAlchemy and Alembic: slow to import, so only here

    store = Store.open(f"sqlite+aiosqlite:///{db_path}")
    await upgrade(store.engine)
    return store.spend_sink()


async def load(journal_dir: str, db_path: str, kind: str) -> None:
    """Begin and finish requests as fast as possible, with a shifting number left in flight."""
    journal = SpendJournal(journal_dir, max_segment_bytes=64 * 1024)  # small: rotate under load
    writer = SpendWriter(journal, await open_sink(db_path, kind), interval=0.02, max_batch=200)
    await writer.start()
    rng = random.Random(os.getpid())
    in_flight: deque[tuple[int, SpendEntry]] = deque()
    now = datetime.now(UTC)
    n = 0
    while True:
        n += 1
        entry = SpendEntry(f"req-{n:08d}", now, "key-1", model="claude", reserved_micro=reserved_cost(n))
        journal.begin(entry)
        say(f"B {entry.request_id}")
        in_flight.append((n, entry))
        while len(in_flight) > rng.randint(0, 60):
            done_n, done = in_flight.popleft() if rng.random() < 0.7 else in_flight.pop()
            done.status = 200
            done.output_tokens = done_n
            done.cost_micro = final_cost(done_n)
            writer.finish(done)
            say(f"E {done.request_id}")
        if n % 25 == 0:
            await asyncio.sleep(0)  # let the writer's task run, as a busy gateway would


async def replay(journal_dir: str, db_path: str, kind: str) -> None:
    """Restart: replay the journal into the sink, close, and report."""
    writer = SpendWriter(SpendJournal(journal_dir), await open_sink(db_path, kind))
    entries = await writer.start()
    await writer.close()
    interrupted = sum(e.interrupted for e in entries)
    say(orjson.dumps({"replayed": len(entries), "interrupted": interrupted}).decode())


if __name__ == "__main__":
    mode, directory, database, sink = sys.argv[1:5]
    asyncio.run((load if mode == "load" else replay)(directory, database, sink))
