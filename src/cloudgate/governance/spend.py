"""The spend writer: batches finished spend entries to the sink off the hot path, losing none.

Per request the gateway calls `journal.begin(entry)` just before sending upstream, then
`writer.finish(entry)` (= `journal.end(entry)` + `writer.record(entry)`) once the answer is done.
Both are a few microseconds: one `os.write` and a list append. A background task writes the
queued entries to the sink every `interval`, or at once when `max_batch` are waiting, taking
everything queued up to `max_write` entries a write (a writer that fell behind catches up in a
few large transactions: under load each costs tens of milliseconds of hand-offs to the
database's thread, whatever its size), and after each successful write adds a journal
checkpoint so a replay skips it. A failing sink is retried
with capped, jittered backoff and the entries stay queued: nothing is dropped, and the error is
logged once per failure streak.

`start()` first replays what a crashed run left in the journal (see `cloudgate.governance.journal`):
interrupted requests at their reserved cost, finished requests the sink never got. Those are
written before the writer accepts new work, and returned so the gateway can re-seed its budget
counters. The sink must upsert by `request_id` (a crash between a sink write and its checkpoint
replays that batch), letting a final entry replace an interrupted one.

The returned replay can hold entries the sink already had (a crash between a commit and its
checkpoint), so budget counters should be re-seeded from the sink after `start()`, or by request id,
not by adding the list blindly.

Limits: while the sink is down, entries wait in memory (and segments on disk); watch `pending`.
`start()` waits for the sink; a caller that gives up (`asyncio.wait_for`) loses nothing, the
segments stay for the next start. A power loss can lose what was not yet fsynced (see
`fsync_interval`); a process crash cannot. One journal directory per gateway process: with several
workers, give each a stable directory of its own, so a restarted worker replays its predecessor's.
Entries passed to `record()` without a journal `end` (requests that never went upstream) are only
as safe as memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any, Protocol

from cloudgate.governance.journal import Recovery, SpendJournal
from cloudgate.governance.types import SpendEntry
from cloudgate.util.tasks import spawn

log = logging.getLogger("cloudgate.spend")

MAX_WRITE = 8192  # the most entries one sink write takes


class SpendSink(Protocol):
    """Where spend entries end up (the SQL store); must upsert by `request_id`."""

    async def write_spend(self, entries: list[SpendEntry], *, fresh: bool = False) -> None:
        """Write these entries, all or nothing; raise if they were not written.

        `fresh`: none of these request ids can be in the sink yet (this process's own finished
        requests, on the first try), so the sink may skip looking for earlier versions.
        """


class SpendWriter:
    """Queues finished spend entries and writes them to the sink in batches, in the background."""

    def __init__(
        self,
        journal: SpendJournal,
        sink: SpendSink,
        *,
        interval: float = 0.5,
        max_batch: int = 500,
        max_write: int = MAX_WRITE,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        fsync_interval: float | None = None,
    ) -> None:
        self.journal = journal
        self._sink = sink
        self._interval = interval
        self._max_batch = max_batch  # write at once when this many are waiting
        self._max_write = max(max_write, max_batch)
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._fsync_interval = fsync_interval
        self._pending: list[SpendEntry] = []
        self._has_work = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._failing = False
        self._task: asyncio.Task[Any] | None = None
        self._sync_task: asyncio.Task[Any] | None = None
        self.written = 0  # entries written to the sink since start (replayed ones included)
        self.replayed = 0  # entries recovered from a previous run's journal
        self.failures = 0  # failed sink writes (each retried)
        self.recovery: Recovery | None = None

    # -- the hot path ---------------------------------------------------------------------------

    def record(self, entry: SpendEntry) -> None:
        """Queue a finished entry for the sink (call after `journal.end(entry)`)."""
        pending = self._pending
        pending.append(entry)
        count = len(pending)
        if count == 1:
            self._has_work.set()
        if count >= self._max_batch:
            self._full.set()

    def finish(self, entry: SpendEntry) -> None:
        """Journal `entry`'s end, then queue it: the one call for a finished request."""
        self.journal.end(entry)
        self.record(entry)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> list[SpendEntry]:
        """Write what a previous run left in the journal, then start batching; returns those entries."""
        recovery = self.journal.recover()
        self.recovery = recovery
        if recovery.entries or recovery.bad_lines:
            log.warning(
                "spend journal replay: %d interrupted, %d finished but unwritten, %d skipped lines",
                recovery.interrupted,
                recovery.finished,
                recovery.bad_lines,
            )
        for start in range(0, len(recovery.entries), self._max_write):
            await self._write(recovery.entries[start : start + self._max_write])
        # Only now: a crash before this point replays the same segments again, harmlessly.
        self.journal.discard_recovered()
        self.replayed = len(recovery.entries)
        self._task = spawn(self._run(), name="spend-writer")
        if self._fsync_interval:
            self._sync_task = spawn(self._sync_loop(self._fsync_interval), name="spend-journal-fsync")
        return recovery.entries

    async def flush(self) -> None:
        """Write everything queued now (retrying until the sink takes it)."""
        while self._pending:
            await self._write_front(len(self._pending))

    async def _write_front(self, count: int) -> None:
        """Write the first `count` queued entries, in batches, checkpointing each."""
        while count > 0 and self._pending:
            batch = self._pending[: min(count, self._max_write)]
            await self._write(batch, fresh=True)
            # record() only appends, so the batch is still at the front of the queue.
            del self._pending[: len(batch)]
            count -= len(batch)
            self.journal.checkpoint([entry.request_id for entry in batch])

    async def close(self, grace: float = 10.0) -> None:
        """Flush what is queued and stop; after `grace` seconds the rest stays in the journal for replay."""
        self._closing = True
        self._has_work.set()
        self._full.set()
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        task = self._task if self._task is not None else spawn(self.flush(), name="spend-writer-close")
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            log.warning("spend writer closed with %d entries unwritten; the journal keeps them", self.pending)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.journal.close()

    @property
    def pending(self) -> int:
        """Entries queued and not yet written to the sink."""
        return len(self._pending)

    # -- the background task --------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            await self._has_work.wait()
            if not self._full.is_set():
                # Wait for a batch to fill, but no longer than `interval` after the first entry.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._interval)
            self._full.clear()
            try:
                # Only what is queued now: later entries wait for their own interval or batch.
                await self._write_front(len(self._pending))
            except Exception:
                # A bug must not stop spend writing; the entries stay queued for the next round.
                log.exception("spend writer round failed")
                await asyncio.sleep(self._retry_max)
            if not self._pending:
                self._has_work.clear()
            elif len(self._pending) >= self._max_batch:
                self._full.set()
        await self.flush()

    async def _write(self, batch: list[SpendEntry], *, fresh: bool = False) -> None:
        delay = self._retry_initial
        streak = 0
        while True:
            try:
                await self._sink.write_spend(batch, fresh=fresh)
            except Exception:
                # A failure may come after the commit: a retry must look for what it wrote.
                fresh = False
                self.failures += 1
                streak += 1
                if not self._failing:
                    self._failing = True
                    log.exception("spend sink failed; retrying, %d entries waiting", self.pending)
                # Jitter keeps many gateways from hammering a recovering database in step.
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - not crypto
                delay = min(delay * 2, self._retry_max)
                continue
            if self._failing:
                self._failing = False
                log.warning("spend sink recovered after %d failed writes", streak)
            self.written += len(batch)
            return

    async def _sync_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.journal.sync()
            except OSError:
                log.exception("could not fsync the spend journal")
