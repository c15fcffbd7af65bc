"""The activity log's writer: requests are queued as they finish and written in batches, off the hot path.

Per request the gateway calls `observe(...)` once the body is read (who called, which headers,
the body when bodies are logged for this caller) and `emit(record)` when the request is done;
both only set attributes or append to a queue. A background task wakes every `flush_interval`,
or at once past `batch_size` queued records, turns the records into redacted entries on the
event loop a slice at a time (a thread would only contend for the GIL), and hands them to each sink: the
database (`store.activity.write`) and/or rotating JSON-lines files (written in a thread). Each
write takes everything queued, up to MAX_WRITE_ENTRIES entries or MAX_WRITE_BYTES.

A failing sink is retried with capped, jittered backoff while the other keeps writing; its
entries wait in memory. Waiting is bounded: past `max_pending` entries (default 100,000) or
`max_pending_bytes` of them (256 MiB, bodies counted) the oldest are dropped, counted in
`dropped`, and the count is logged. Unlike spend there is no
journal: an activity entry is a record of what happened, not money, and a crash loses at most
what was queued (about `flush_interval` worth, more while a sink is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudgate.activity.convert import EntryBuilder
from cloudgate.activity.entry import ActivityEntry
from cloudgate.activity.files import ActivityFiles
from cloudgate.activity.redact import Redactor
from cloudgate.activity.retention import ActivityRetention
from cloudgate.config.settings import Settings
from cloudgate.store.engine import data_dir
from cloudgate.util.tasks import spawn

if TYPE_CHECKING:
    from cloudgate.gateway.records import RequestRecord
    from cloudgate.governance.types import Principal
    from cloudgate.store.repositories import Store

log = logging.getLogger("cloudgate.activity")

MAX_PENDING = 100_000
# With bodies kept, entries can be a megabyte each: the queue is bounded by size as well.
MAX_PENDING_BYTES = 256 * 1024 * 1024
_ENTRY_OVERHEAD = 1024  # roughly what an entry without bodies weighs
_BUILD_SLICE = 32  # records turned into entries between two yields to the event loop
# The most one write takes: a writer behind catches up in a few large transactions, since under
# load each write costs tens of milliseconds of hand-offs between the event loop and the
# database's thread whatever its size (see docs/decisions/0033-large-writes-when-behind.md).
MAX_WRITE_ENTRIES = 8192
MAX_WRITE_BYTES = 16 * 1024 * 1024


def activity_directory(settings: Settings) -> Path:
    """Where the JSON-lines files go: `activity.directory`, else `<data_dir>/activity`."""
    if settings.activity.directory:
        return Path(settings.activity.directory).expanduser()
    return data_dir(settings) / "activity"


def configured_secrets(settings: Settings) -> list[str | None]:
    """The gateway's own keys and upstream credentials, redacted wherever a body repeats them."""
    secrets: list[str | None] = [
        *settings.gateway.keys,
        settings.admin_key,
        settings.anthropic.api_key,
        settings.anthropic.auth_token,
        settings.bedrock.api_key,
    ]
    secrets.extend(spec.api_key for spec in settings.routing.deployments)
    return secrets


def _weight(entry: ActivityEntry) -> int:
    return _ENTRY_OVERHEAD + len(entry.request_body or "") + len(entry.response_body or "")


class _Outlet:
    """One sink with its own queue and retry state, so a failing sink never holds the other back."""

    def __init__(
        self, name: str, write: Callable[[list[ActivityEntry]], Awaitable[None]], cap: int, cap_bytes: int
    ) -> None:
        self.name = name
        self.write = write
        self.pending: deque[ActivityEntry] = deque()
        self.cap = cap
        self.cap_bytes = cap_bytes
        self.size = 0  # the queued entries' weight
        self.dropped = 0
        self.failures = 0
        self.written = 0
        self.retry_at = 0.0  # loop time before which no write is tried
        self.delay = 0.0  # the current backoff; 0 while healthy

    def add(self, entries: Iterable[ActivityEntry]) -> None:
        """Queue entries, dropping the oldest past the caps."""
        for entry in entries:
            self.pending.append(entry)
            self.size += _weight(entry)
        while self.pending and (len(self.pending) > self.cap or self.size > self.cap_bytes):
            self.size -= _weight(self.pending.popleft())
            self.dropped += 1

    def front(self, max_entries: int, max_bytes: int) -> list[ActivityEntry]:
        """The oldest queued entries, as many as fit in one write (at least one)."""
        batch: list[ActivityEntry] = []
        weight = 0
        for entry in self.pending:
            weight += _weight(entry)
            if batch and (len(batch) >= max_entries or weight > max_bytes):
                break
            batch.append(entry)
        return batch

    async def drain(self, max_entries: int, retry_initial: float, retry_max: float, force: bool) -> bool:
        """Write queued entries, up to `max_entries` (and MAX_WRITE_BYTES) a write; False (and
        a backoff) if the sink failed."""
        loop = asyncio.get_running_loop()
        if not force and loop.time() < self.retry_at:
            return False
        while self.pending:
            batch = self.front(max_entries, MAX_WRITE_BYTES)
            try:
                await self.write(batch)
            except Exception:
                self.failures += 1
                if not self.delay:
                    log.exception(
                        "activity %s sink failed; retrying, %d entries waiting", self.name, len(self.pending)
                    )
                self.delay = min(self.delay * 2, retry_max) if self.delay else retry_initial
                # Jitter keeps many gateways from hammering a recovering database in step.
                self.retry_at = loop.time() + self.delay * random.uniform(0.5, 1.0)  # noqa: S311
                return False
            for _ in batch:  # only this task adds, and only at the back: the batch is the front
                self.size -= _weight(self.pending.popleft())
            self.written += len(batch)
            if self.delay:
                log.warning("activity %s sink recovered after %d failed writes", self.name, self.failures)
                self.delay = 0.0
        return True


class ActivityLog:
    """Queues finished requests and writes them, redacted, to the database and/or files.

    Also a `RecordSink` (`emit`, `close`), so the gateway can list it among its sinks; it starts
    itself on the first `emit` if `start()` was not awaited. `aclose()` writes out what is
    queued; the synchronous `close()` only schedules that.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store | None,
        *,
        database: Callable[[list[ActivityEntry]], Awaitable[None]] | None = None,
        max_pending: int = MAX_PENDING,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        retry_initial: float = 0.2,
        retry_max: float = 30.0,
    ) -> None:
        cfg = settings.activity
        self.enabled = cfg.enabled
        self._interval = cfg.flush_interval
        self._batch = cfg.batch_size
        self._max_write = max(cfg.batch_size, MAX_WRITE_ENTRIES)
        self._max_pending = max(max_pending, cfg.batch_size)
        self._retry = (retry_initial, retry_max)
        self._log_bodies = cfg.log_bodies
        self._body_limit = cfg.max_body_bytes
        self._builder = EntryBuilder(
            Redactor(cfg.redact_patterns, configured_secrets(settings)),
            cfg.max_body_bytes,
            settings.gateway.auth_header,
        )
        sink = cfg.sink
        if sink != "files" and store is None:
            log.warning("the activity log has no database (governance is off): writing it to files instead")
            sink = "files"
        self.files: ActivityFiles | None = None
        if sink in ("files", "both"):
            self.files = ActivityFiles(activity_directory(settings), cfg.rotate_bytes)
        self._outlets: list[_Outlet] = []
        if sink in ("database", "both") and store is not None:
            self._outlets.append(
                _Outlet("database", database or store.activity.write, self._max_pending, max_pending_bytes)
            )
        if self.files is not None:
            self._outlets.append(_Outlet("files", self._write_files, self._max_pending, max_pending_bytes))
        self.retention = ActivityRetention(settings, store if sink != "files" else None, self.files)
        self._records: deque[RequestRecord] = deque()
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[Any] | None = None
        self._closing: asyncio.Task[Any] | None = None
        self._dropped_records = 0
        self._dropped_reported = 0

    # -- the hot path ---------------------------------------------------------------------------

    def observe(
        self,
        record: RequestRecord,
        principal: Principal | None,
        headers: dict[str, str],
        body: bytes,
        client: tuple[str, int] | list[Any] | None = None,
    ) -> None:
        """Note who called, from where, with which headers, and the body if bodies are logged."""
        if not self.enabled:
            return
        record.request_headers = headers
        if client:
            record.client_ip = str(client[0])
        capture = self._log_bodies
        if principal is not None:
            record.user_id = principal.user_id
            record.team_id = principal.team_id
            capture = capture or principal.log_bodies
        if capture:
            record.capture_bodies = True
            record.body_limit = self._body_limit
            record.request_body = body

    def emit(self, record: RequestRecord) -> None:
        """Queue a finished request (drops the oldest queued past `max_pending`)."""
        if not self.enabled or self._closing is not None:
            return
        records = self._records
        records.append(record)
        if len(records) >= self._batch:
            if len(records) > self._max_pending:
                records.popleft()
                self._dropped_records += 1
            self._full.set()
        if self._task is None:
            self._begin()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background writer and the retention job."""
        self._begin()

    def _begin(self) -> None:
        # Without a running event loop (a record emitted from plain code) the next emit starts it.
        if self._task is not None or not self.enabled or not _in_event_loop():
            return
        self._task = spawn(self._run(), name="activity-writer")
        self.retention.start()

    async def flush(self) -> bool:
        """Write everything queued now, ignoring backoff once; False if a sink still failed."""
        async with self._lock:
            return await self._round(force=True)

    async def aclose(self, grace: float = 10.0) -> None:
        """Write out what is queued, retrying for up to `grace` seconds, and stop."""
        if self._closing is None:
            self._closing = spawn(self._shutdown(grace), name="activity-writer-close")
        await asyncio.shield(self._closing)

    def close(self) -> None:
        """The `RecordSink` close: schedule `aclose()` (await that instead to know it finished)."""
        if self._closing is not None:
            return
        if not _in_event_loop():
            if self.pending:
                log.warning("activity log closed outside an event loop, %d entries unwritten", self.pending)
            return
        self._closing = spawn(self._shutdown(10.0), name="activity-writer-close")

    @property
    def pending(self) -> int:
        """Records and entries not yet written everywhere."""
        return len(self._records) + max((len(o.pending) for o in self._outlets), default=0)

    @property
    def written(self) -> dict[str, int]:
        """Entries written so far, per sink."""
        return {o.name: o.written for o in self._outlets}

    @property
    def dropped(self) -> int:
        """Entries dropped because the queue was full (a sink down for long)."""
        return self._dropped_records + sum(o.dropped for o in self._outlets)

    @property
    def failures(self) -> int:
        """Failed sink writes (each retried)."""
        return sum(o.failures for o in self._outlets)

    # -- the background task --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._interval)
            self._full.clear()
            try:
                async with self._lock:
                    await self._round(force=False)
            except Exception:  # a bug must not stop the log; what is queued stays queued
                log.exception("activity writer round failed")

    async def _round(self, *, force: bool) -> bool:
        if self._records:
            records, self._records = self._records, deque()
            entries: list[ActivityEntry] = []
            # On the event loop, a slice at a time: a worker thread would only contend with the
            # loop for the GIL (no parallelism), delaying requests by whole switch intervals.
            while records:
                entries += self._build(records.popleft() for _ in range(min(_BUILD_SLICE, len(records))))
                if records:
                    await asyncio.sleep(0)
            for outlet in self._outlets:
                outlet.add(entries)
        ok = True
        for outlet in self._outlets:
            ok = await outlet.drain(self._max_write, *self._retry, force=force) and ok
        if self.dropped > self._dropped_reported:
            log.warning(
                "activity log dropped %d entries: its queue was full (a sink failing, or falling behind)",
                self.dropped - self._dropped_reported,
            )
            self._dropped_reported = self.dropped
        return ok

    def _build(self, records: Iterable[RequestRecord]) -> list[ActivityEntry]:
        entries: list[ActivityEntry] = []
        for record in records:
            try:
                entries.append(self._builder.build(record))
            except Exception:  # one odd record must not cost the batch
                log.exception("could not build the activity entry of request %s", record.request_id)
        return entries

    async def _write_files(self, entries: list[ActivityEntry]) -> None:
        assert self.files is not None
        await asyncio.to_thread(self.files.write, entries)

    async def _shutdown(self, grace: float) -> None:
        await self.retention.aclose()
        if self._task is not None:
            async with self._lock:  # let a round in progress finish, then stop the loop
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while not await self.flush():
            wait = min(o.retry_at for o in self._outlets if o.pending) - loop.time()
            if loop.time() + max(wait, 0) >= deadline:
                log.warning("activity log closed with %d entries unwritten", self.pending)
                break
            await asyncio.sleep(max(wait, 0.01))
        if self.files is not None:
            await asyncio.to_thread(self.files.close)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
