"""JSON-lines files: one entry per line, names by UTC time, rotation by size, removal by age."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from cloudgate.activity import ActivityEntry
from cloudgate.activity.files import ActivityFiles, activity_files, remove_files_before

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def entries(count: int, start: int = 0) -> list[ActivityEntry]:
    return [
        ActivityEntry(f"req_{i:04d}", T0 + timedelta(seconds=i), model="m", status=200)
        for i in range(start, start + count)
    ]


def read_all(directory: Path) -> list[ActivityEntry]:
    return [
        ActivityEntry.from_dict(orjson.loads(line))
        for path in activity_files(directory)
        for line in path.read_bytes().splitlines()
    ]


def test_lines_read_back_as_the_entries(tmp_path: Path) -> None:
    files = ActivityFiles(tmp_path / "activity", rotate_bytes=10**9)
    written = entries(5)
    written[0].request_body = 'line one\nline "two" \u2028 日本'
    files.write(written[:2])
    files.write(written[2:])
    files.write([])
    files.close()
    (path,) = activity_files(tmp_path / "activity")
    assert re.fullmatch(r"activity-\d{8}T\d{6}\.\d{6}Z-\d+\.jsonl", path.name)
    assert len(path.read_bytes().splitlines()) == 5
    assert read_all(tmp_path / "activity") == written


def test_rotation_past_the_size(tmp_path: Path) -> None:
    line = len(entries(1)[0].to_json()) + 1
    files = ActivityFiles(tmp_path, rotate_bytes=line * 3)
    for batch in range(5):
        files.write(entries(2, start=batch * 2))
    files.close()
    paths = activity_files(tmp_path)
    assert len(paths) == 5  # two lines fit, a third would pass the size: a new file each batch
    assert all(p.stat().st_size <= line * 3 for p in paths)
    assert [e.request_id for e in read_all(tmp_path)] == [e.request_id for e in entries(10)]
    # A single batch larger than the size still goes in one piece, into a file of its own.
    big = ActivityFiles(tmp_path / "big", rotate_bytes=10)
    big.write(entries(3))
    big.write(entries(1))
    big.close()
    assert len(activity_files(tmp_path / "big")) == 2


def test_remove_files_before_goes_by_the_last_write(tmp_path: Path) -> None:
    files = ActivityFiles(tmp_path, rotate_bytes=1)
    files.write(entries(1))
    old = files.path
    files.write(entries(1, start=1))
    current = files.path
    assert old is not None and current is not None and old != current
    long_ago = (datetime.now(UTC) - timedelta(days=40)).timestamp()
    os.utime(old, (long_ago, long_ago))
    os.utime(current, (long_ago, long_ago))
    (tmp_path / "unrelated.txt").write_text("not ours")
    cutoff = datetime.now(UTC) - timedelta(days=30)
    # The file being written is spared even when it is old.
    assert remove_files_before(tmp_path, cutoff, keep=current) == 1
    assert activity_files(tmp_path) == [current]
    assert (tmp_path / "unrelated.txt").exists()
    assert remove_files_before(tmp_path / "missing", cutoff) == 0


def test_a_file_removed_under_the_writer_is_replaced(tmp_path: Path) -> None:
    files = ActivityFiles(tmp_path, rotate_bytes=10**9)
    files.write(entries(1))
    assert files.path is not None
    files.path.unlink()  # another process's retention
    files.write(entries(1, start=1))
    files.close()
    assert [e.request_id for e in read_all(tmp_path)] == ["req_0001"]
