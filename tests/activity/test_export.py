"""Exports re-read as the entries the store holds: JSON lines and CSV, in memory and from a store."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cloudgate.activity.entry import ActivityEntry, ActivityFilter
from cloudgate.activity.export import (
    COLUMNS,
    FIELDS,
    export_lines,
    from_csv,
    from_jsonl,
    to_csv,
    to_jsonl,
)
from cloudgate.store import Store

# Everything a body can hold that CSV and JSON must carry through: separators, quotes, every kind
# of line end, a line separator JSON leaves unescaped, non-ASCII text, emoji, a NUL-free control.
AWKWARD = (
    "a, b; \"quoted, with comma\" and 'single'\nline two\r\nline three\rend \u2028 \t ünï 日本語 🚀 \x1b"
)
T0 = datetime(2025, 6, 1, 9, 30, 0, 123456, tzinfo=UTC)


def full_entry(request_id: str = "req_full", started_at: datetime = T0, **changes: Any) -> ActivityEntry:
    """An entry with every field set to something other than its default."""
    entry = ActivityEntry(
        request_id=request_id,
        started_at=started_at,
        finished_at=started_at + timedelta(seconds=2, microseconds=345678),
        key_id="key_abc",
        user_id="user_ada",
        team_id="team_platform",
        session_id="sess-3f2a",
        frontdoor="anthropic",
        operation="messages",
        model="claude-sonnet-4-5",
        provider="vertex",
        deployment="vertex/europe-west1",
        region="europe-west1",
        project="proj-1",
        upstream_model="claude-sonnet-4-5@20250929",
        stream=True,
        status=529,
        error_type="overloaded_error",
        error_message='upstream said: "overloaded", try again,\nlater',
        stop_reason="end_turn",
        input_tokens=1234,
        output_tokens=567,
        cache_write_5m_tokens=11,
        cache_write_1h_tokens=22,
        cache_read_tokens=33,
        cost_micro=4_567_891,
        latency_ms=2345.678,
        first_token_ms=123.25,
        attempts=[
            {"deployment": "vertex/global", "status": 529, "error": "overloaded_error"},
            {"deployment": "vertex/europe-west1", "status": 200, "error": None},
        ],
        betas=["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"],
        client_ip="203.0.113.7",
        user_agent='claude-cli/2.0.1 (external, cli) "x", y',
        request_headers={"user-agent": "claude-cli/2.0.1", "x-api-key": "[REDACTED]", "x-note": AWKWARD},
        request_body='{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":'
        + repr(AWKWARD)
        + "}]}",
        response_body="event: message_start\ndata: {}\n\n" + AWKWARD,
        bodies_truncated=True,
    )
    return dataclasses.replace(entry, **changes)


def sparse_entry(request_id: str = "req_sparse", started_at: datetime = T0) -> ActivityEntry:
    """An entry with only what is required: every optional field None, every list empty."""
    return ActivityEntry(request_id=request_id, started_at=started_at)


def test_the_full_entry_sets_every_field() -> None:
    # A field added to ActivityEntry later must be added here, or the round trips below miss it.
    entry = full_entry()
    for f in dataclasses.fields(ActivityEntry):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        assert getattr(entry, f.name) != default, f.name
    assert tuple(f.name for f in dataclasses.fields(ActivityEntry)) == COLUMNS
    kinds = {f.name: (f.kind, f.optional) for f in FIELDS}
    assert kinds["started_at"] == ("time", False) and kinds["finished_at"] == ("time", True)
    assert kinds["attempts"] == ("json", False) and kinds["cost_micro"] == ("int", True)
    assert kinds["stream"] == ("bool", False) and kinds["latency_ms"] == ("float", False)


ENTRIES = [
    full_entry(),
    sparse_entry(),
    # A body over the csv module's default 128 KiB field limit.
    full_entry("req_big", T0 + timedelta(seconds=1), response_body=AWKWARD * 20_000),
    full_entry("req_empty", T0 + timedelta(seconds=2), frontdoor="", error_message=None, attempts=[]),
]


def test_jsonl_round_trip_is_exact() -> None:
    lines = list(to_jsonl(ENTRIES))
    # One line each, whichever line breaks a reader splits on.
    assert len(lines) == len(ENTRIES) and all(len(line.splitlines()) == 1 for line in lines)
    assert list(from_jsonl(io.StringIO("".join(lines)))) == ENTRIES


def test_csv_round_trip_is_exact() -> None:
    text = "".join(to_csv(ENTRIES))
    assert text.splitlines()[0] == ",".join(COLUMNS)
    # Read as a file opened with newline="" reads it, so line ends inside cells stay as they were.
    assert list(from_csv(io.StringIO(text, newline=""))) == ENTRIES


def test_csv_cells_are_plain_for_spreadsheets() -> None:
    rows = list(csv.DictReader(io.StringIO("".join(to_csv([full_entry(), sparse_entry()])), newline="")))
    full, sparse = rows
    assert full["started_at"] == "2025-06-01T09:30:00.123456+00:00"
    assert full["stream"] == "true" and sparse["stream"] == "false"
    assert full["betas"] == '["context-1m-2025-08-07","interleaved-thinking-2025-05-14"]'
    assert full["cost_micro"] == "4567891" and sparse["cost_micro"] == ""
    assert sparse["finished_at"] == "" and sparse["attempts"] == "[]" and sparse["request_headers"] == "{}"


def test_times_are_written_in_utc() -> None:
    eastern = datetime(2025, 6, 1, 5, 30, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    (line,) = to_csv([sparse_entry(started_at=eastern)], header=False)
    assert line.startswith("req_sparse,2025-06-01T05:30:00+00:00,")
    (back,) = from_csv(io.StringIO(",".join(COLUMNS) + "\n" + line))
    assert back.started_at == eastern and back.started_at.utcoffset() == timedelta(0)


def test_bad_input_names_the_line() -> None:
    with pytest.raises(ValueError, match="line 2"):
        list(from_jsonl(["", "not json"]))
    with pytest.raises(ValueError, match="line 1"):
        list(from_jsonl(['{"started_at": "2025-06-01T00:00:00+00:00"}']))  # no request_id
    header = ",".join(COLUMNS)
    with pytest.raises(ValueError, match="unknown column 'nope'"):
        list(from_csv(io.StringIO("request_id,nope\nr,x\n")))
    with pytest.raises(ValueError, match="line 2: stream"):
        row = next(iter(to_csv([sparse_entry()], header=False))).replace(",false,", ",maybe,")
        list(from_csv(io.StringIO(header + "\n" + row)))
    with pytest.raises(ValueError, match="line 2: 2 cells"):
        list(from_csv(io.StringIO(header + "\nr,x\n")))
    assert list(from_csv(io.StringIO(""))) == []


# -- through a real store ------------------------------------------------------------------------


async def _drain(lines: AsyncIterator[str]) -> str:
    return "".join([line async for line in lines])


async def test_store_exports_re_read_as_the_stored_entries(store: Store) -> None:
    written = [
        full_entry("req_b", T0 + timedelta(minutes=1)),
        sparse_entry("req_a", T0),
        full_entry("req_c", T0 + timedelta(minutes=2), response_body=AWKWARD * 20_000),
    ]
    await store.activity.write(written)
    stored = [await store.activity.get(e.request_id) for e in sorted(written, key=lambda e: e.started_at)]
    assert stored == sorted(written, key=lambda e: e.started_at)  # oldest first, as exports go

    chosen = ActivityFilter(since=T0 - timedelta(days=1))
    jsonl = await _drain(export_lines(store.activity.export(chosen, page=2), "jsonl"))
    assert list(from_jsonl(io.StringIO(jsonl))) == stored
    text = await _drain(export_lines(store.activity.export(chosen, page=2), "csv"))
    assert list(from_csv(io.StringIO(text, newline=""))) == stored

    later = ActivityFilter(since=T0 + timedelta(seconds=30), key_id="key_abc")
    only = await _drain(export_lines(store.activity.export(later), "jsonl"))
    assert [e.request_id for e in from_jsonl(only.splitlines())] == ["req_b", "req_c"]
    assert await _drain(export_lines(store.activity.export(ActivityFilter(user_id="nobody")), "csv")) == (
        ",".join(COLUMNS) + "\n"
    )
