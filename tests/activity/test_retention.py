"""Retention: exactly the entries and files past the cutoff go, in bounded batches, while writes go on."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from cloudgate.activity import ActivityEntry, ActivityFilter, ActivityRetention
from cloudgate.activity.files import ActivityFiles, activity_files
from cloudgate.config.settings import Settings
from cloudgate.store import Store

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)


def settings(**activity: Any) -> Settings:
    return Settings.model_validate({"activity": {"retention_days": 30, **activity}})


def spread(days: range, per_day: int = 3) -> list[ActivityEntry]:
    """`per_day` entries on each of `days` days before NOW."""
    return [
        ActivityEntry(f"req_d{day:02d}_{i}", NOW - timedelta(days=day, minutes=i), status=200)
        for day in days
        for i in range(per_day)
    ]


class Deletes:
    """Counts the DELETE statements on an engine and the rows each removed."""

    def __init__(self, store: Store) -> None:
        self.rowcounts: list[int] = []
        self._engine = store.engine.sync_engine
        event.listen(self._engine, "after_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            self.rowcounts.append(cursor.rowcount)

    def stop(self) -> None:
        event.remove(self._engine, "after_cursor_execute", self._seen)


async def test_one_run_removes_exactly_the_old_entries_in_bounded_batches(store: Store) -> None:
    kept = spread(range(30))  # days 0..29: inside 30 days
    old = spread(range(31, 40))  # days 31..39: 27 entries past the cutoff
    await store.activity.write(kept + old)
    retention = ActivityRetention(settings(retention_batch=10), store, clock=lambda: NOW)
    deletes = Deletes(store)
    try:
        assert await retention.run_once() == len(old)
    finally:
        deletes.stop()
    # 10 + 10 + 7: never more than a batch per statement (each its own short transaction).
    assert deletes.rowcounts == [10, 10, 7]
    remaining = {e.request_id async for e in store.activity.export(ActivityFilter())}
    assert remaining == {e.request_id for e in kept}
    assert await retention.run_once() == 0


async def test_writes_keep_working_while_retention_deletes(store: Store) -> None:
    await store.activity.write(spread(range(31, 61), per_day=10))  # 300 old entries
    retention = ActivityRetention(settings(retention_batch=7), store, pause=0, clock=lambda: NOW)
    fresh = [ActivityEntry(f"req_new_{i}", NOW - timedelta(seconds=i), status=200) for i in range(60)]

    async def write_fresh() -> None:
        for start in range(0, len(fresh), 5):
            await store.activity.write(fresh[start : start + 5])
            await asyncio.sleep(0)

    deleted, _ = await asyncio.wait_for(asyncio.gather(retention.run_once(), write_fresh()), 60)
    assert deleted == 300
    assert await store.activity.count() == len(fresh)


async def test_old_files_go_and_recent_ones_stay(tmp_path: Path) -> None:
    files = ActivityFiles(tmp_path, rotate_bytes=1)  # every write a new file
    for i in range(3):
        files.write([ActivityEntry(f"req_{i}", NOW)])
    paths = activity_files(tmp_path)
    ages = {paths[0]: 45, paths[1]: 31, paths[2]: 2}
    for path, days in ages.items():
        when = (datetime.now(UTC) - timedelta(days=days)).timestamp()
        os.utime(path, (when, when))
    retention = ActivityRetention(settings(), None, tmp_path)
    assert await retention.run_once() == 0  # no database rows
    assert retention.files_removed == 2
    assert activity_files(tmp_path) == [paths[2]]


async def test_the_background_job_runs_at_start_and_stops(store: Store) -> None:
    await store.activity.write(spread(range(31, 33)))
    retention = ActivityRetention(settings(retention_interval=3600), store, clock=lambda: NOW)
    retention.start()
    for _ in range(500):
        if not await store.activity.count():
            break
        await asyncio.sleep(0.01)
    assert await store.activity.count() == 0
    await retention.aclose()
    await retention.aclose()
