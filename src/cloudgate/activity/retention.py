"""Retention: entries older than `activity.retention_days` are deleted, a little at a time.

Every `retention_interval` (and once at start) the job deletes database rows older than the
cutoff in batches of `retention_batch`, one short transaction each, pausing between batches so
request-path writes and reads never queue behind a long delete; then it removes the JSON-lines
files whose newest entry is older than the cutoff. Several gateway processes may each run it:
deletes are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudgate.activity.files import ActivityFiles, remove_files_before
from cloudgate.config.settings import Settings
from cloudgate.util.tasks import spawn

if TYPE_CHECKING:
    from cloudgate.store.repositories import Store

log = logging.getLogger("cloudgate.activity")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ActivityRetention:
    """Deletes old activity from the database and the files directory.

    `files` is the log's `ActivityFiles` (whose open file is spared), or a directory (the CLI).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store | None,
        files: ActivityFiles | Path | None = None,
        *,
        pause: float = 0.005,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        cfg = settings.activity
        self.keep_for = timedelta(days=cfg.retention_days)
        self.interval = cfg.retention_interval
        self.batch = cfg.retention_batch
        self.pause = pause
        self._store = store
        self._files = files
        self._clock = clock
        self._task: asyncio.Task[Any] | None = None
        self.files_removed = 0  # by the last run

    def cutoff(self) -> datetime:
        """The oldest moment still kept."""
        return self._clock() - self.keep_for

    async def run_once(self) -> int:
        """Delete what is older than the cutoff; returns the database rows deleted."""
        cutoff = self.cutoff()
        deleted = 0
        if self._store is not None:
            while True:
                count = await self._store.activity.delete_before(cutoff, batch=self.batch)
                deleted += count
                if count < self.batch:
                    break
                # Let requests and the writer in between batches.
                await asyncio.sleep(self.pause)
        self.files_removed = 0
        if self._files is not None:
            files = self._files
            if isinstance(files, ActivityFiles):
                self.files_removed = await asyncio.to_thread(
                    remove_files_before, files.directory, cutoff, files.path
                )
            else:
                self.files_removed = await asyncio.to_thread(remove_files_before, files, cutoff)
        if deleted or self.files_removed:
            log.info(
                "activity retention: deleted %d entries and %d files older than %s",
                deleted, self.files_removed, cutoff.isoformat(),
            )  # fmt: skip
        return deleted

    def start(self) -> None:
        """Run now, then every `retention_interval`, in the background."""
        if self._task is None and (self._store is not None or self._files is not None):
            self._task = spawn(self._run(), name="activity-retention")

    async def aclose(self) -> None:
        """Stop the background job (a batch in progress is abandoned; its transaction rolls back)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # the database may be down; try again next time
                log.exception("activity retention failed")
            await asyncio.sleep(self.interval)
