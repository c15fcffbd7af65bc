"""The spend journal: an append-only record of every request sent upstream, that survives `kill -9`.

Why it exists: spend rows go to the database in batches, off the hot path, so a crash loses the
batch held in memory. The journal closes that gap. The gateway calls `begin(entry)` just before
it sends a request upstream (with `reserved_micro` set) and `end(entry)` once the answer is done;
each call appends one JSON line with a single `os.write` on an `O_APPEND` descriptor. Nothing is
buffered in Python, so once `os.write` has returned the line is in the kernel's page cache and a
process crash (`kill -9`, OOM kill, segfault) cannot lose it: no fsync is needed for that. Only a
power loss or kernel crash can lose the last few seconds; `sync()` (the writer's optional
`fsync_interval`) and `durable=True` (fsync each segment as it is rotated out) narrow that.

After a crash, `recover()` turns the previous run's segments into spend entries: a `begin` with no
`end` becomes an interrupted entry charged its reserved cost; an `end` not yet covered by a
`checkpoint` line becomes its final entry. The writer (`cloudgate.governance.spend`) calls
`checkpoint(ids)` once a batch is safely in the sink, so replay skips it.

File format (one directory per gateway process, guarded by an flock on `journal.lock`; segments
`spend-000000000001.jsonl`, numbered upwards, each line one JSON object):

    {"op":"segment","version":1,"segment":1,"pid":4242,"created":"2025-...","fields":["request_id",...]}
    {"op":"begin","v":["req-1","2025-03-01T12:00:00+00:00","key-1",...]}   request sent upstream
    {"op":"end","v":["req-1",...]}                                          answer done, final cost
    {"op":"checkpoint","ids":["req-1","req-2"]}                            these ends are in the sink

An entry is the list of its `SpendEntry` field values in the order the segment header's `fields`
names: half the bytes of a keyed object, and about twice as fast to encode (orjson walks a slotted
dataclass attribute by attribute), while a reader still maps values to names per segment.

Segments rotate past `max_segment_bytes`. At rotation the `begin` lines of requests still in
flight are copied to the head of the new segment, so an old segment is only needed until its
`end` lines are checkpointed; then it is deleted (oldest first, so a checkpoint line is never
deleted while an `end` it covers survives). A crash mid-write can leave a torn last line: replay
skips any line that does not parse. A torn `begin` means the request never went upstream; a torn
`end` means it replays as interrupted; a torn `checkpoint` means a harmless re-write.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import operator
import os
import re
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from cloudgate.governance.types import SpendEntry

log = logging.getLogger("cloudgate.spend")

FORMAT_VERSION = 1
INTERRUPTED_ERROR = "gateway_interrupted"  # error_type of an entry whose answer never finished
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024

_SEGMENT_NAME = re.compile(r"^spend-(\d{12})\.jsonl$")
_LOCK_NAME = "journal.lock"
ENTRY_FIELDS = tuple(f.name for f in fields(SpendEntry))
_ENTRY_FIELD_SET = frozenset(ENTRY_FIELDS)
_entry_values = operator.attrgetter(*ENTRY_FIELDS)
_BEGIN = b'{"op":"begin","v":'
_END = b'{"op":"end","v":'
_CLOSE = b"}\n"
_DATETIME_FIELDS = ("started_at", "finished_at")


class JournalError(Exception):
    """The journal cannot record: a request begun without it could go unrecorded."""


def segment_path(directory: Path, number: int) -> Path:
    """The file of segment `number`."""
    return directory / f"spend-{number:012d}.jsonl"


def list_segments(directory: Path) -> list[int]:
    """The segment numbers present in `directory`, oldest first."""
    numbers = []
    for name in os.listdir(directory):
        match = _SEGMENT_NAME.match(name)
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def entry_from_json(data: dict[str, Any]) -> SpendEntry:
    """A `SpendEntry` from its journal form; a newer writer's extra keys are ignored, missing ones default."""
    kwargs = {k: v for k, v in data.items() if k in _ENTRY_FIELD_SET}
    for name in _DATETIME_FIELDS:
        value = kwargs.get(name)
        if isinstance(value, str):
            kwargs[name] = datetime.fromisoformat(value)
    return SpendEntry(**kwargs)


def entry_line(op: str, entry: SpendEntry) -> bytes:
    """The journal line for `entry` (`op` is "begin" or "end")."""
    return b'{"op":"%s","v":' % op.encode() + orjson.dumps(_entry_values(entry)) + _CLOSE


class Recovery:
    """What a previous run left in the journal, as spend entries still owed to the sink."""

    def __init__(self) -> None:
        self.entries: list[SpendEntry] = []
        self.interrupted = 0
        self.finished = 0
        self.already_written = 0  # ends covered by a checkpoint: skipped
        self.bad_lines = 0  # torn or unreadable lines: skipped
        self.segments: list[int] = []


def read_segments(directory: Path, numbers: list[int]) -> Recovery:
    """Replay the given segments: interrupted entries for open begins, final ones for unwritten ends."""
    begins: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    written: set[str] = set()
    recovery = Recovery()
    recovery.segments = list(numbers)
    for number in numbers:
        content = segment_path(directory, number).read_bytes()
        names: list[str] | tuple[str, ...] = ENTRY_FIELDS
        for line in content.split(b"\n"):
            if not line:
                continue
            try:
                record = orjson.loads(line)
                op = record["op"]
                if op == "begin":
                    values = dict(zip(names, record["v"], strict=True))
                    # carried-forward copies of a begin are identical: keep the first
                    begins.setdefault(values["request_id"], values)
                elif op == "end":
                    values = dict(zip(names, record["v"], strict=True))
                    ends[values["request_id"]] = values
                elif op == "checkpoint":
                    written.update(record["ids"])
                elif op == "segment":
                    names = record.get("fields", names)
                    if record.get("version", FORMAT_VERSION) > FORMAT_VERSION:
                        log.warning(
                            "spend journal segment %d has format version %s", number, record["version"]
                        )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                recovery.bad_lines += 1
    for request_id, data in begins.items():
        if request_id in ends:
            continue
        try:
            entry = entry_from_json(data)
        except (TypeError, ValueError):
            recovery.bad_lines += 1
            continue
        entry.interrupted = True
        entry.cost_micro = entry.reserved_micro
        entry.status = 0
        entry.error_type = INTERRUPTED_ERROR
        recovery.entries.append(entry)
        recovery.interrupted += 1
    for request_id, data in ends.items():
        if request_id in written:
            recovery.already_written += 1
            continue
        try:
            recovery.entries.append(entry_from_json(data))
        except (TypeError, ValueError):
            recovery.bad_lines += 1
            continue
        recovery.finished += 1
    return recovery


class SpendJournal:
    """Append-only, crash-safe log of requests begun and ended (see the module docstring).

    Not thread-safe: one event loop owns it. One process per directory (an flock enforces it).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        durable: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._max_segment_bytes = max_segment_bytes
        self._durable = durable
        self._lock_fd = os.open(self.directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise JournalError(f"spend journal {self.directory} is in use by another process") from exc
        # Segments left by a previous run: read by recover(), deleted by discard_recovered().
        self._previous = list_segments(self.directory)
        self._in_flight: dict[str, bytes] = {}  # request id -> its begin line, carried at rotation
        self._unwritten: dict[str, int] = {}  # request id -> segment holding its unwritten end
        self._unwritten_per_segment: dict[int, int] = {}
        self._segments: list[int] = []  # this run's live segments, oldest first
        self._fd = -1
        self._size = 0
        self._carried = 0
        self._torn = False  # a write failed part-way: start the next on a fresh line
        self._end_failing = False
        self._closed = False
        self._rotate_failing = False
        try:
            self._open_segment((self._previous[-1] if self._previous else 0) + 1)
        except OSError as exc:
            os.close(self._lock_fd)
            raise JournalError(f"could not start a spend journal segment in {self.directory}") from exc

    # -- the hot path ---------------------------------------------------------------------------

    def begin(self, entry: SpendEntry) -> None:
        """Record that `entry`'s request is about to go upstream; raises JournalError if it cannot."""
        line = _BEGIN + orjson.dumps(_entry_values(entry)) + _CLOSE
        try:
            self._append(line)
        except OSError as exc:
            raise JournalError(f"could not journal request {entry.request_id}") from exc
        self._in_flight[entry.request_id] = line
        # Rotate only once the bookkeeping is done, so the new segment carries this begin.
        if self._size - self._carried >= self._max_segment_bytes:
            self._rotate()

    def end(self, entry: SpendEntry) -> None:
        """Record `entry`'s final usage and cost; never raises (the answer has already gone out)."""
        line = _END + orjson.dumps(_entry_values(entry)) + _CLOSE
        try:
            self._append(line)
        except OSError:
            # Its begin line stays in flight (carried at rotation): if the process dies before
            # the sink has the entry, replay charges the reserved cost instead of losing it.
            if not self._end_failing:
                log.exception("could not journal the end of request %s", entry.request_id)
                self._end_failing = True
            return
        self._end_failing = False
        self._in_flight.pop(entry.request_id, None)
        segment = self._segments[-1]
        self._unwritten[entry.request_id] = segment
        self._unwritten_per_segment[segment] = self._unwritten_per_segment.get(segment, 0) + 1
        if self._size - self._carried >= self._max_segment_bytes:
            self._rotate()

    # -- off the hot path -----------------------------------------------------------------------

    def checkpoint(self, request_ids: list[str]) -> None:
        """Note that these requests' entries are in the sink, and delete segments no longer needed."""
        if not request_ids:
            return
        try:
            line = orjson.dumps({"op": "checkpoint", "ids": request_ids}, option=orjson.OPT_APPEND_NEWLINE)
            self._append(line)
        except OSError:
            # Harmless: replay writes these entries again, and the sink's upserts absorb that.
            log.exception("could not journal a checkpoint of %d spend entries", len(request_ids))
            return
        for request_id in request_ids:
            segment = self._unwritten.pop(request_id, None)
            if segment is not None:
                self._unwritten_per_segment[segment] -= 1
        if self._size - self._carried >= self._max_segment_bytes:
            self._rotate()  # also prunes
        else:
            self._prune()

    def recover(self) -> Recovery:
        """Read what the previous run left: the entries it still owes the sink."""
        return read_segments(self.directory, self._previous)

    def discard_recovered(self) -> None:
        """Delete the previous run's segments, once everything `recover()` returned is in the sink."""
        for number in self._previous:
            self._unlink(number)
        self._previous = []

    async def sync(self) -> None:
        """fsync the current segment and the directory (power-loss safety; not needed for crashes)."""
        fd = os.dup(self._fd)  # our own handle: a rotation may close self._fd while we wait
        try:
            await asyncio.to_thread(_fsync_file_and_directory, fd, self.directory)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Stop writing; delete every segment if nothing in them is still owed to the sink."""
        if self._closed:
            return
        self._closed = True
        if self._durable:
            os.fsync(self._fd)
        os.close(self._fd)
        if not self._in_flight and not self._unwritten and not self._previous:
            for number in self._segments:
                self._unlink(number)
            self._segments = []
        os.close(self._lock_fd)

    @property
    def in_flight(self) -> int:
        """Requests begun and not yet ended."""
        return len(self._in_flight)

    @property
    def unwritten(self) -> int:
        """Requests ended whose entries are not yet checkpointed."""
        return len(self._unwritten)

    @property
    def segments(self) -> list[int]:
        """This run's live segment numbers, oldest first."""
        return list(self._segments)

    @property
    def previous_segments(self) -> list[int]:
        """Segments left by a previous run and not yet discarded."""
        return list(self._previous)

    # -- internals ------------------------------------------------------------------------------

    def _append(self, line: bytes) -> None:
        if self._closed:
            raise OSError("spend journal is closed")
        if self._torn:
            # An earlier write stopped mid-line: an empty line (skipped on replay) keeps that
            # fragment from gluing itself to this one.
            line = b"\n" + line
        written = os.write(self._fd, line)
        if written != len(line):  # only on a full disk or a signal: finish it or mark it torn
            self._torn = True
            view = memoryview(line)
            while written < len(line):
                written += os.write(self._fd, view[written:])
        self._torn = False
        self._size += written

    def _open_segment(self, number: int) -> None:
        path = segment_path(self.directory, number)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        header = {
            "op": "segment",
            "version": FORMAT_VERSION,
            "segment": number,
            "pid": os.getpid(),
            "created": datetime.now(UTC),
            "fields": ENTRY_FIELDS,
        }
        # The begins of requests still in flight open the new segment, so older segments are
        # needed only until their ends are checkpointed.
        data = orjson.dumps(header, option=orjson.OPT_APPEND_NEWLINE) + b"".join(self._in_flight.values())
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._fd = fd
        self._segments.append(number)
        self._size = self._carried = len(data)

    def _rotate(self) -> None:
        old_fd = self._fd
        try:
            self._open_segment(self._segments[-1] + 1)
        except OSError:
            # Keep appending to the old segment; the next write tries again.
            if not self._rotate_failing:
                log.exception("could not start a new spend journal segment")
                self._rotate_failing = True
            return
        self._rotate_failing = False
        if self._durable:
            os.fsync(old_fd)
        os.close(old_fd)
        self._prune()

    def _prune(self) -> None:
        # Oldest first and never the current one: a checkpoint line only covers ends in its own
        # or older segments, so deleting a prefix never strands an end without its checkpoint.
        while len(self._segments) > 1 and not self._unwritten_per_segment.get(self._segments[0]):
            number = self._segments.pop(0)
            self._unwritten_per_segment.pop(number, None)
            self._unlink(number)

    def _unlink(self, number: int) -> None:
        try:
            segment_path(self.directory, number).unlink()
        except FileNotFoundError:
            pass
        except OSError:
            # Left behind, it is replayed at the next start: rewritten, never lost.
            log.exception("could not delete spend journal segment %d", number)


def _fsync_file_and_directory(fd: int, directory: Path) -> None:
    os.fsync(fd)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
