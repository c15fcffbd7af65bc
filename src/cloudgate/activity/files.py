"""The activity log as rotating JSON-lines files: one entry per line, one file per size step.

Files are named `activity-<UTC time the file was started>-<process id>.jsonl`, so names sort by
time and several gateway processes can share a directory. A file is closed and a new one started
once it passes `rotate_bytes`. Every method here does blocking I/O: the writer calls them through
`asyncio.to_thread`, never on the event loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from cloudgate.activity.entry import ActivityEntry

PREFIX = "activity-"
SUFFIX = ".jsonl"


class ActivityFiles:
    """Appends entries to the current file of `directory`, rotating past `rotate_bytes`."""

    def __init__(self, directory: Path, rotate_bytes: int) -> None:
        self.directory = directory
        self.rotate_bytes = rotate_bytes
        self._file: BinaryIO | None = None
        self.path: Path | None = None  # the file being written, once there is one
        self._size = 0

    def write(self, entries: Iterable[ActivityEntry]) -> None:
        """Append one line per entry (flushed to the OS before returning); raises OSError."""
        data = b"".join(entry.to_json() + b"\n" for entry in entries)
        if not data:
            return
        if (
            self._file is None
            or (self._size and self._size + len(data) > self.rotate_bytes)
            # Another process's retention may have removed a file idle past the cutoff.
            or (self.path is not None and not self.path.exists())
        ):
            self._open_next()
        assert self._file is not None
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def close(self) -> None:
        """Close the current file; the next write starts a new one."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open_next(self) -> None:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.directory / f"{PREFIX}{stamp}-{os.getpid()}{SUFFIX}"
        self._file = open(path, "ab")  # noqa: SIM115 - held open across writes, closed in close()
        self.path = path
        self._size = self._file.tell()


def activity_files(directory: Path) -> list[Path]:
    """The activity files in `directory`, oldest first by name (empty if it does not exist)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX))


def remove_files_before(directory: Path, cutoff: datetime, keep: Path | None = None) -> int:
    """Delete the files whose newest entry is older than `cutoff`; returns how many.

    A file's last write comes after its newest entry started, so a file last modified before the
    cutoff holds nothing newer: its modification time decides, without reading it. `keep` (the
    file this process is writing) is never removed.
    """
    limit = cutoff.timestamp()
    removed = 0
    for path in activity_files(directory):
        if path == keep:
            continue
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another process's retention got there first
            continue
    return removed
