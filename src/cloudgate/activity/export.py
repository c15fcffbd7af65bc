"""Activity entries as JSON lines or CSV, and back again, so an export re-reads as equal entries.

Both formats carry every field of `ActivityEntry`, in its order. JSON lines are the entry's own
JSON (as the activity log's files hold it), exact. In CSV, times are ISO 8601 in UTC, lists and
dicts are JSON in their cells, booleans `true`/`false`, and None an empty cell; an empty cell
reads back as None where the field may be None (so an empty string in such a field comes back
as None) and as an empty string otherwise.

The writers work one entry at a time, so an export of any size streams.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
import types
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import orjson

from cloudgate.activity.entry import ActivityEntry

ExportFormat = Literal["jsonl", "csv"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("jsonl", "csv")
MEDIA_TYPES: dict[str, str] = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}

# A kept body can be a megabyte; the csv module refuses fields over 128 KiB unless told otherwise.
_CSV_FIELD_LIMIT = 2**31 - 1


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One field of an entry as the CSV (and the OpenAPI document) sees it."""

    name: str
    kind: str  # str, int, float, bool, time, or json for lists, dicts and anything looser
    optional: bool  # may be None


def _describe(name: str, hint: Any) -> Field:
    optional = False
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        optional = len(args) < len(get_args(hint))
        hint = args[0] if len(args) == 1 else Any
    kinds: dict[Any, str] = {datetime: "time", bool: "bool", int: "int", float: "float", str: "str"}
    return Field(name, kinds.get(get_origin(hint) or hint, "json"), optional)


FIELDS: tuple[Field, ...] = tuple(
    _describe(f.name, get_type_hints(ActivityEntry)[f.name]) for f in dataclasses.fields(ActivityEntry)
)
COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS)


def _iso(value: datetime) -> str:
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()


def _time(value: str) -> datetime:
    when = datetime.fromisoformat(value)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def jsonl_line(entry: ActivityEntry) -> str:
    """One entry as one line of JSON, newline included."""
    line = entry.to_json().decode()
    if "\u2028" in line or "\u2029" in line:
        # Valid JSON, but readers that split on every Unicode line break (str.splitlines, older
        # JavaScript) would cut the line there; escaped, they mean the same in JSON.
        line = line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return line + "\n"


def to_jsonl(entries: Iterable[ActivityEntry]) -> Iterator[str]:
    """Entries as JSON lines, one string per entry."""
    for entry in entries:
        yield jsonl_line(entry)


def from_jsonl(lines: Iterable[str]) -> Iterator[ActivityEntry]:
    """Entries from JSON lines (blank lines skipped); a bad line is a ValueError naming it."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            yield ActivityEntry.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"line {number}: {exc}") from None


class _CsvLine:
    """Formats one CSV record at a time into a reused buffer."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")

    def __call__(self, cells: Iterable[str]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(cells)
        return self._buffer.getvalue()


def _csv_cell(f: Field, value: Any) -> str:
    if value is None:
        return ""
    if f.kind == "time":
        return _iso(value)
    if f.kind == "bool":
        return "true" if value else "false"
    if f.kind == "json":
        return orjson.dumps(value).decode()
    return str(value)


def _csv_value(f: Field, text: str) -> Any:
    if text == "" and f.optional:
        return None
    if f.kind == "time":
        return _time(text)
    if f.kind == "bool":
        if text not in ("true", "false"):
            raise ValueError(f"{f.name}: {text!r} is neither true nor false")
        return text == "true"
    if f.kind == "int":
        return int(text)
    if f.kind == "float":
        return float(text)
    if f.kind == "json":
        return json.loads(text)
    return text


def _csv_record(line: _CsvLine, entry: ActivityEntry) -> str:
    return line(_csv_cell(f, getattr(entry, f.name)) for f in FIELDS)


def to_csv(entries: Iterable[ActivityEntry], *, header: bool = True) -> Iterator[str]:
    """Entries as CSV records (the header first), one string per record."""
    line = _CsvLine()
    if header:
        yield line(COLUMNS)
    for entry in entries:
        yield _csv_record(line, entry)


def from_csv(lines: Iterable[str]) -> Iterator[ActivityEntry]:
    """Entries from CSV with a header row (as `to_csv` writes; columns in any order, missing ones
    take their defaults); read files opened with `newline=""` so line ends in bodies survive."""
    csv.field_size_limit(max(csv.field_size_limit(), min(_CSV_FIELD_LIMIT, sys.maxsize)))
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    known = {f.name: f for f in FIELDS}
    unknown = [name for name in header if name not in known]
    if unknown:
        raise ValueError(f"line 1: unknown column {unknown[0]!r}")
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(f"line {reader.line_num}: {len(row)} cells for {len(header)} columns")
        try:
            yield ActivityEntry(
                **{name: _csv_value(known[name], text) for name, text in zip(header, row, strict=True)}
            )
        except (ValueError, TypeError) as exc:
            raise ValueError(f"line {reader.line_num}: {exc}") from None


async def export_lines(entries: AsyncIterable[ActivityEntry], fmt: ExportFormat) -> AsyncIterator[str]:
    """An async stream of entries as JSON lines or CSV (header first), one string per entry."""
    if fmt == "csv":
        line = _CsvLine()
        yield line(COLUMNS)
        async for entry in entries:
            yield _csv_record(line, entry)
    else:
        async for entry in entries:
            yield jsonl_line(entry)
