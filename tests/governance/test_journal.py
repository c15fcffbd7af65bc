"""The spend journal on real files: begin/end/checkpoint replay, torn lines, rotation, deletion, the lock."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from cloudgate.governance.journal import (
    ENTRY_FIELDS,
    INTERRUPTED_ERROR,
    JournalError,
    SpendJournal,
    entry_from_json,
    entry_line,
    list_segments,
    segment_path,
)
from cloudgate.governance.types import SpendEntry

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def started(request_id: str, reserved: int = 1_000) -> SpendEntry:
    """An entry as the gateway has it just before sending upstream."""
    return SpendEntry(
        request_id=request_id,
        started_at=T0,
        key_id="key-1",
        user_id="user-1",
        team_id="team-1",
        frontdoor="anthropic",
        provider="vertex",
        model="claude-sonnet-4-5",
        upstream_model="claude-sonnet-4-5@20250929",
        region="us-east5",
        reserved_micro=reserved,
        tags=["ci"],
    )


def finished(entry: SpendEntry, cost: int = 420) -> SpendEntry:
    """The same entry once the answer is done."""
    entry.status = 200
    entry.input_tokens = 10
    entry.output_tokens = 20
    entry.cost_micro = cost
    entry.latency_ms = 12.5
    entry.finished_at = T0 + timedelta(seconds=2)
    return entry


def reopen(journal: SpendJournal) -> SpendJournal:
    """Close (leaving whatever is still owed, as a crash would) and open the directory again."""
    journal.close()
    return SpendJournal(journal.directory)


def test_begin_only_replays_as_interrupted_at_reserved_cost(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    journal.begin(started("r1", reserved=7_500))
    recovery = reopen(journal).recover()
    assert [e.request_id for e in recovery.entries] == ["r1"]
    entry = recovery.entries[0]
    assert entry.interrupted is True
    assert entry.cost_micro == 7_500 == entry.reserved_micro
    assert entry.status == 0
    assert entry.error_type == INTERRUPTED_ERROR
    assert (entry.key_id, entry.user_id, entry.team_id, entry.model) == (
        "key-1",
        "user-1",
        "team-1",
        "claude-sonnet-4-5",
    )
    assert entry.started_at == T0
    assert (recovery.interrupted, recovery.finished, recovery.already_written) == (1, 0, 0)


def test_begin_and_end_replays_the_final_entry(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    entry = started("r1")
    journal.begin(entry)
    journal.end(finished(entry, cost=999))
    recovery = reopen(journal).recover()
    assert len(recovery.entries) == 1
    replayed = recovery.entries[0]
    assert replayed.interrupted is False
    assert replayed == finished(started("r1"), cost=999)
    assert (recovery.interrupted, recovery.finished) == (0, 1)


def test_checkpointed_end_is_not_replayed(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    for rid in ("r1", "r2", "r3"):
        entry = started(rid)
        journal.begin(entry)
        journal.end(finished(entry))
    journal.checkpoint(["r1", "r3"])
    recovery = reopen(journal).recover()
    assert [e.request_id for e in recovery.entries] == ["r2"]
    assert recovery.already_written == 2


def test_end_without_begin_replays_final(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    journal.end(finished(started("r1")))
    assert [e.interrupted for e in reopen(journal).recover().entries] == [False]


@pytest.mark.parametrize("cut", [1, 10, 40, -2])
def test_torn_last_line_is_skipped(tmp_path: Path, cut: int) -> None:
    journal = SpendJournal(tmp_path)
    journal.begin(started("r1"))
    journal.close()
    # A crash in the middle of a write: part of a line, no newline.
    line = entry_line("end", finished(started("r1")))
    with segment_path(tmp_path, 1).open("ab") as f:
        f.write(line[:cut])
    recovery = SpendJournal(tmp_path).recover()
    assert recovery.bad_lines == 1
    assert [(e.request_id, e.interrupted) for e in recovery.entries] == [("r1", True)]


def test_torn_checkpoint_only_means_a_rewrite(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    entry = started("r1")
    journal.begin(entry)
    journal.end(finished(entry))
    journal.close()
    with segment_path(tmp_path, 1).open("ab") as f:
        f.write(b'{"op":"checkpoint","ids":["r')
    recovery = SpendJournal(tmp_path).recover()
    assert [(e.request_id, e.interrupted) for e in recovery.entries] == [("r1", False)]


def test_a_write_cut_short_does_not_corrupt_the_next_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk cannot be arranged on a test machine: make one os.write stop half-way, then fail.
    journal = SpendJournal(tmp_path)
    real_write = os.write
    calls = {"n": 0}

    def flaky_write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[:15])
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", flaky_write)
    with pytest.raises(JournalError):
        journal.begin(started("r1"))
    assert journal.in_flight == 0  # a refused begin: the request must not go upstream
    journal.begin(started("r2"))
    monkeypatch.undo()
    recovery = reopen(journal).recover()
    assert recovery.bad_lines == 1
    assert [e.request_id for e in recovery.entries] == ["r2"]


def test_end_that_cannot_be_written_keeps_the_begin_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = SpendJournal(tmp_path)
    entry = started("r1", reserved=300)
    journal.begin(entry)

    def failing_write(fd: int, data: bytes) -> int:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "write", failing_write)
    journal.end(finished(entry))  # logs, does not raise
    monkeypatch.undo()
    assert (journal.in_flight, journal.unwritten) == (1, 0)
    recovery = reopen(journal).recover()
    assert [(e.request_id, e.interrupted, e.cost_micro) for e in recovery.entries] == [("r1", True, 300)]


def test_rotation_carries_in_flight_begins_and_deletes_written_segments(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path, max_segment_bytes=2_000)
    journal.begin(started("long-stream", reserved=5_000))
    for i in range(60):
        entry = started(f"r{i}")
        journal.begin(entry)
        journal.end(finished(entry))
        journal.checkpoint([f"r{i}"])
    # Many rotations happened, and every segment but the current one was deleted, including
    # the one holding the long stream's original begin line.
    assert journal.segments[0] > 5
    assert list_segments(tmp_path) == journal.segments == [journal.segments[-1]]
    recovery = reopen(journal).recover()
    assert [(e.request_id, e.interrupted, e.cost_micro) for e in recovery.entries] == [
        ("long-stream", True, 5_000)
    ]


def test_a_segment_with_an_unwritten_end_is_kept_until_checkpointed(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path, max_segment_bytes=2_000)
    slow = started("slow-sink")
    journal.begin(slow)
    journal.end(finished(slow))
    for i in range(30):
        entry = started(f"r{i}")
        journal.begin(entry)
        journal.end(finished(entry))
        journal.checkpoint([f"r{i}"])
    first = journal.segments[0]
    assert first == 1 and len(journal.segments) > 3
    assert segment_path(tmp_path, 1).exists()
    journal.checkpoint(["slow-sink"])
    assert journal.segments == [journal.segments[-1]]
    assert list_segments(tmp_path) == journal.segments


def test_close_with_nothing_owed_deletes_every_segment(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path, max_segment_bytes=1_000)
    for i in range(20):
        entry = started(f"r{i}")
        journal.begin(entry)
        journal.end(finished(entry))
    journal.checkpoint([f"r{i}" for i in range(20)])
    journal.close()
    assert list_segments(tmp_path) == []


def test_previous_segments_are_kept_until_discarded(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    journal.begin(started("r1"))
    journal = reopen(journal)
    assert journal.previous_segments == [1]
    assert journal.segments == [2]  # the new run never appends to the old run's files
    assert len(journal.recover().entries) == 1
    journal = reopen(journal)  # not discarded: a crash during replay replays again
    assert len(journal.recover().entries) == 1
    journal.discard_recovered()
    assert list_segments(tmp_path) == journal.segments
    journal.close()
    assert list_segments(tmp_path) == []


def test_one_process_per_directory(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    with pytest.raises(JournalError, match="in use"):
        SpendJournal(tmp_path)
    journal.close()
    SpendJournal(tmp_path).close()


def test_lines_are_plain_json(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    entry = started("r1")
    journal.begin(entry)
    journal.end(finished(entry))
    journal.checkpoint(["r1"])
    lines = [orjson.loads(line) for line in segment_path(tmp_path, 1).read_bytes().splitlines()]
    assert [line["op"] for line in lines] == ["segment", "begin", "end", "checkpoint"]
    assert lines[0]["version"] == 1 and lines[0]["pid"] == os.getpid()
    assert dict(zip(lines[0]["fields"], lines[2]["v"], strict=True))["cost_micro"] == 420
    assert lines[3]["ids"] == ["r1"]
    journal.close()


def test_entry_round_trip_ignores_unknown_fields() -> None:
    entry = finished(started("r1"))
    data = orjson.loads(orjson.dumps(entry))
    assert entry_from_json(data) == entry
    data["a_field_from_a_newer_version"] = 1
    assert entry_from_json(data) == entry


def test_fields_are_read_by_the_names_in_the_segment_header(tmp_path: Path) -> None:
    # A segment written by another version of SpendEntry: different order, a field we lack.
    header = {
        "op": "segment",
        "version": 1,
        "fields": ["cost_micro", "future", "request_id", "started_at", "key_id"],
    }
    values = [5, "x", "r1", T0.isoformat(), "key-9"]
    with segment_path(tmp_path, 1).open("wb") as f:
        f.write(orjson.dumps(header) + b"\n" + orjson.dumps({"op": "end", "v": values}) + b"\n")
        f.write(orjson.dumps({"op": "end", "v": values[:3]}) + b"\n")  # wrong length: skipped
    recovery = SpendJournal(tmp_path).recover()
    assert recovery.bad_lines == 1
    assert recovery.entries == [SpendEntry("r1", T0, "key-9", cost_micro=5)]


def test_deployment_and_attempts_survive_a_crash(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    in_flight = started("r1")
    in_flight.deployment = "vertex/europe-west1"
    journal.begin(in_flight)
    failed_over = started("r2")
    failed_over.deployment = "vertex/europe-west1"
    journal.begin(failed_over)
    # The first deployment failed; the answer came from the second, on the second attempt.
    failed_over.deployment, failed_over.attempts = "bedrock/eu-west-1", 2
    journal.end(finished(failed_over))
    refused = started("r3")
    refused.attempts = 0
    journal.end(refused)
    recovery = reopen(journal).recover()
    replayed = {e.request_id: e for e in recovery.entries}
    assert (replayed["r1"].deployment, replayed["r1"].attempts, replayed["r1"].interrupted) == (
        "vertex/europe-west1",
        1,
        True,
    )
    assert replayed["r2"] == failed_over and replayed["r2"].attempts == 2
    assert replayed["r3"].attempts == 0


OLD_FIELDS = tuple(name for name in ENTRY_FIELDS if name not in ("deployment", "attempts"))


def test_a_segment_from_before_deployments_replays_with_defaults(tmp_path: Path) -> None:
    # Written by a gateway whose SpendEntry had no deployment or attempts.
    assert len(OLD_FIELDS) == len(ENTRY_FIELDS) - 2
    header = {"op": "segment", "version": 1, "segment": 1, "pid": 1, "fields": OLD_FIELDS}
    begin = started("r1")
    end = finished(started("r2"))
    with segment_path(tmp_path, 1).open("wb") as f:
        f.write(orjson.dumps(header) + b"\n")
        for op, entry in (("begin", begin), ("begin", started("r2")), ("end", end)):
            values = [getattr(entry, name) for name in OLD_FIELDS]
            f.write(orjson.dumps({"op": op, "v": values}) + b"\n")
    recovery = SpendJournal(tmp_path).recover()
    assert recovery.bad_lines == 0
    replayed = {e.request_id: e for e in recovery.entries}
    assert (replayed["r1"].deployment, replayed["r1"].attempts, replayed["r1"].interrupted) == ("", 1, True)
    assert replayed["r2"] == end and (end.deployment, end.attempts) == ("", 1)


def test_an_entry_without_the_new_keys_reads_with_defaults() -> None:
    entry = finished(started("r1"))
    data = orjson.loads(orjson.dumps(entry))
    del data["deployment"], data["attempts"]
    assert entry_from_json(data) == entry


def test_unknown_ops_and_junk_are_skipped(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    journal.begin(started("r1"))
    journal.close()
    with segment_path(tmp_path, 1).open("ab") as f:
        f.write(b'{"op":"future-thing","x":1}\n[1,2]\n{"op":"end"}\n')
    recovery = SpendJournal(tmp_path).recover()
    assert [e.request_id for e in recovery.entries] == ["r1"]
    assert recovery.bad_lines == 2


async def test_sync_fsyncs_without_disturbing_writes(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path, durable=True, max_segment_bytes=1_000)
    for i in range(10):
        journal.begin(started(f"r{i}"))
        await journal.sync()
    journal.close()
    assert len(SpendJournal(tmp_path).recover().entries) == 10
