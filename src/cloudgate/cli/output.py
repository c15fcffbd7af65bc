"""Showing records on stdout: aligned tables for people, CSV and JSON for scripts."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

FORMATS = ("table", "csv", "json")

# (header, field of the record's JSON view, kind): kind tells the table how to show the value.
Column = tuple[str, str, str]


def usd(value: float) -> str:
    """Dollars for a table: cents, or up to micro-dollars when a cost is smaller than that."""
    if round(value, 2) == value:
        return f"{value:,.2f}"
    return f"{value:,.6f}".rstrip("0")


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "usd":
        return usd(float(value))
    if kind == "time":  # ISO 8601 in UTC: minutes are enough to read a table
        return str(value)[:16].replace("T", " ")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[Column], footer: dict[str, Any] | None = None
) -> str:
    """An aligned plain-text table, numbers right-aligned; "(none)" when there are no rows."""
    if not rows:
        return "(none)"
    cells = [[_cell(r.get(field), kind) for _, field, kind in columns] for r in rows]
    if footer is not None:
        cells.append(
            [_cell(footer.get(field), kind) if field in footer else "" for _, field, kind in columns]
        )
    headers = [h for h, _, _ in columns]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    right = [kind in ("usd", "int") for _, _, kind in columns]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells[: len(rows)])
    if footer is not None:
        out.append(line(["-" * w for w in widths]))
        out.append(line(cells[-1]))
    return "\n".join(out)


def emit(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    fmt: str,
    *,
    footer: dict[str, Any] | None = None,
    document: Any = None,
    stream: TextIO | None = None,
) -> None:
    """Write `rows` as a table, CSV (the columns, full values) or JSON (`document`, else the rows)."""
    out = stream or sys.stdout
    if fmt == "json":
        out.write(json.dumps(list(rows) if document is None else document, indent=2) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([field for _, field, _ in columns])
        for r in rows:
            writer.writerow([_csv_cell(r.get(field)) for _, field, _ in columns])
    else:
        out.write(table(rows, columns, footer) + "\n")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    return str(value)
