"""The request log (JsonLinesSink): one JSON line per record, written in batches, none lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from cloudgate.gateway.records import JsonLinesSink, RequestRecord
from cloudgate.protocol.messages import Usage


def _record(n: int, **fields: object) -> RequestRecord:
    record = RequestRecord(request_id=f"req_{n}", started_at=1_700_000_000.0 + n, model="claude-sonnet-4-5")
    record.usage = Usage(input_tokens=n, output_tokens=2 * n)
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def _lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_records_are_written_after_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    sink = JsonLinesSink(str(path), interval=0.05)
    for n in range(3):
        sink.emit(_record(n))
    assert path.read_bytes() == b""  # queued, not written per request
    await asyncio.sleep(0.2)
    lines = _lines(path)
    assert [line["request_id"] for line in lines] == ["req_0", "req_1", "req_2"]
    usage = lines[2]["usage"]
    assert isinstance(usage, dict)
    assert (usage["input_tokens"], usage["output_tokens"]) == (2, 4)
    sink.close()


async def test_a_full_queue_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    sink = JsonLinesSink(str(path), interval=60, max_pending=4)
    for n in range(4):
        sink.emit(_record(n))
    assert len(_lines(path)) == 4
    sink.close()


async def test_the_line_shows_the_record_as_it_was_finished(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    sink = JsonLinesSink(str(path), interval=60)
    sink.emit(_record(1, status=200, cost_micro=1_500, duration_ms=12.34567))
    sink.close()
    (line,) = _lines(path)
    assert line["status"] == 200
    assert line["cost_usd"] == 0.0015
    assert line["duration_ms"] == 12.346


def test_without_an_event_loop_each_record_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    sink = JsonLinesSink(str(path), interval=60)
    sink.emit(_record(7))
    sink.emit(_record(8))
    assert len(_lines(path)) == 2
    sink.close()
    assert [line["request_id"] for line in _lines(path)] == ["req_7", "req_8"]


async def test_a_record_that_cannot_be_serialised_costs_only_its_own_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "requests.jsonl"
    sink = JsonLinesSink(str(path), interval=60)
    sink.emit(_record(1))
    sink.emit(_record(2, attempts=[{"deployment": object()}]))  # not JSON
    sink.emit(_record(3))
    sink.close()
    assert [line["request_id"] for line in _lines(path)] == ["req_1", "req_3"]
    assert "req_2" in caplog.text
