"""The report rollups: spend per hour and deployment, spend per day and owner (filled from spend).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Written out, as in 0001: this revision keeps meaning what it meant when the models move on.
_BUCKETS = 64  # log-scale histogram of ms: 0 is [0, 1), i is [2^((i-1)/3), 2^(i/3)), 63 is open
_TTFT = tuple(f"ttft_h{i:02d}" for i in range(_BUCKETS))
_LATENCY = tuple(f"latency_h{i:02d}" for i in range(_BUCKETS))
_HOURLY_SUMS = (
    "requests",
    "errors",
    "rate_limited",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_micro",
)
_DAILY_SUMS = (
    "requests",
    "cost_micro",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)
_HOURLY_KEY = ("hour", "deployment", "provider", "region")
_DAILY_KEY = ("day", "key_id", "user_id", "team_id", "model")
_INSERT_ROWS = 1000
_READ_ROWS = 10_000


def _counters(names: tuple[str, ...]) -> list[sa.Column[Any]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in names]


def _bucket(ms: float) -> int:
    if not ms >= 1.0:
        return 0
    return min(_BUCKETS - 1, 1 + math.floor(3 * math.log2(ms)))


def upgrade() -> None:
    """Create the rollups and fill them from the spend rows already there."""
    hourly = op.create_table(
        "spend_hourly",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        *_counters(_HOURLY_SUMS + _TTFT + _LATENCY),
        sa.PrimaryKeyConstraint(*_HOURLY_KEY, name="pk_spend_hourly"),
    )
    daily = op.create_table(
        "spend_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("team_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        *_counters(_DAILY_SUMS),
        sa.PrimaryKeyConstraint(*_DAILY_KEY, name="pk_spend_daily"),
    )
    for column in ("key_id", "user_id", "team_id"):
        op.create_index(f"ix_spend_daily_{column}_day", "spend_daily", [column, "day"])
    assert hourly is not None and daily is not None
    _backfill(hourly, daily)


def _backfill(hourly: sa.Table, daily: sa.Table) -> None:
    """Sum the existing spend rows into the rollups, reading them a slice at a time."""
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    names = [
        "started_at",
        "key_id",
        "user_id",
        "team_id",
        "model",
        "deployment",
        "provider",
        "region",
        "status",
        "error_type",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "cost_micro",
        "first_token_ms",
        "latency_ms",
    ]
    types: dict[str, Any] = {"started_at": sa.DateTime(timezone=True)}
    spend = sa.table("spend", sa.column("request_id"), *(sa.column(name, types.get(name)) for name in names))
    hours: dict[tuple[Any, ...], list[int]] = {}
    days: dict[tuple[Any, ...], list[int]] = {}
    for row in _spend_rows(bind, spend):
        started = row.started_at
        started = started.replace(tzinfo=UTC) if started.tzinfo is None else started.astimezone(UTC)
        hour = started.replace(minute=0, second=0, microsecond=0)
        status = row.status or 0
        cache_write = (row.cache_write_5m_tokens or 0) + (row.cache_write_1h_tokens or 0)
        cells = hours.setdefault(
            (hour, row.deployment or "", row.provider or "", row.region or ""), [0] * (8 + 2 * _BUCKETS)
        )
        cells[0] += 1
        cells[1] += status >= 400 or row.error_type is not None
        cells[2] += status == 429
        cells[3] += row.input_tokens or 0
        cells[4] += row.output_tokens or 0
        cells[5] += row.cache_read_tokens or 0
        cells[6] += cache_write
        cells[7] += row.cost_micro or 0
        if row.first_token_ms is not None:
            cells[8 + _bucket(row.first_token_ms)] += 1
        if row.latency_ms is not None:
            cells[8 + _BUCKETS + _bucket(row.latency_ms)] += 1
        owner = (started.date(), row.key_id or "", row.user_id or "", row.team_id or "", row.model or "")
        sums = days.setdefault(owner, [0] * len(_DAILY_SUMS))
        sums[0] += 1
        sums[1] += row.cost_micro or 0
        sums[2] += row.input_tokens or 0
        sums[3] += row.output_tokens or 0
        sums[4] += row.cache_read_tokens or 0
        sums[5] += cache_write

    def naive(hour: datetime) -> datetime:
        return hour.replace(tzinfo=None) if sqlite else hour  # SQLite keeps naive UTC, as the store does

    hourly_names = _HOURLY_KEY + _HOURLY_SUMS + _TTFT + _LATENCY
    hourly_rows = [dict(zip(hourly_names, (naive(k[0]), *k[1:], *v), strict=True)) for k, v in hours.items()]
    daily_rows = [dict(zip(_DAILY_KEY + _DAILY_SUMS, (*k, *v), strict=True)) for k, v in days.items()]
    for table, rows in ((hourly, hourly_rows), (daily, daily_rows)):
        for start in range(0, len(rows), _INSERT_ROWS):
            op.bulk_insert(table, rows[start : start + _INSERT_ROWS])


def _spend_rows(bind: sa.Connection, spend: sa.TableClause) -> Iterator[Any]:
    """Every spend row, read in keyset pages (a server-side cursor upsets Alembic's bookkeeping)."""
    after: str | None = None
    while True:
        stmt = sa.select(*spend.c).order_by(spend.c.request_id).limit(_READ_ROWS)
        if after is not None:
            stmt = stmt.where(spend.c.request_id > after)
        rows = bind.execute(stmt).all()
        yield from rows
        if len(rows) < _READ_ROWS:
            return
        after = rows[-1].request_id


def downgrade() -> None:
    """Drop the rollups."""
    op.drop_table("spend_daily")
    op.drop_table("spend_hourly")
