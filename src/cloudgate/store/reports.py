"""Aggregate reports for the administrators' console: spend per day, traffic, an overview,
budget use and per-deployment errors and latency.

Every report reads two small rollup tables that the spend log's write path keeps, in the same
transaction as the spend rows (see `add_to_rollups`):

- `spend_hourly`: per UTC hour and (deployment, provider, region): requests, errors, 429s,
  tokens, cost, and log-scale histograms of time to first token and latency;
- `spend_daily`: per UTC day and (key, user, team, model): requests, tokens and cost.

A month of traffic is then a few thousand rows whatever the request count, so each report
answers in milliseconds over a million requests (docs/decisions/0029-console-reports.md has
the measurements). The price is granularity: time ranges are widened to whole hours (traffic,
overview, deployments) or whole UTC days (spend per day), and percentiles are read from the
histograms, within 12.2% of the exact value (see `HISTOGRAM_BUCKETS`).

The rollups come from the spend log, which the gateway keeps as long as the database (budgets
need it); the activity log's retention does not touch them. Requests refused before they were
admitted (a bad key, a rate limit, an exhausted budget) have no spend entry, so they are not in
these reports; the activity log lists them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import String, Table, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudgate.governance.budgets import period_start
from cloudgate.governance.types import Period, Scope, SpendEntry
from cloudgate.store.common import BulkUpsert
from cloudgate.store.models import (
    DAILY_SUMS,
    HISTOGRAM_BUCKETS,
    HOURLY_SUMS,
    LATENCY_COLUMNS,
    TTFT_COLUMNS,
    ApiKey,
    Spend,
    Team,
    User,
    spend_daily,
    spend_hourly,
    utcnow,
)

if TYPE_CHECKING:
    from cloudgate.store.repositories import Store

SpendBy = Literal["team", "user", "key", "model"]
Bucket = Literal["hour", "day"]

NONE_LABEL = "(none)"
MAX_BUCKETS = 10_000  # a traffic chart of more points than this is a mistake (a year of hours: 8,760)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# -- the histograms -------------------------------------------------------------------------------


def histogram_bucket(ms: float) -> int:
    """The histogram bucket of a duration in ms (see `cloudgate.store.models.HISTOGRAM_BUCKETS`)."""
    if not ms >= 1.0:  # (NaN too)
        return 0
    return min(HISTOGRAM_BUCKETS - 1, 1 + math.floor(3 * math.log2(ms)))


def bucket_value(bucket: int) -> float:
    """The value a bucket reports: its geometric middle, so within 2^(1/6) - 1 = 12.2% of any
    value in it (bucket 0, under 1 ms, reports 0.5; the open last one its lower bound)."""
    if bucket <= 0:
        return 0.5
    if bucket >= HISTOGRAM_BUCKETS - 1:
        return float(2 ** ((HISTOGRAM_BUCKETS - 2) / 3))
    return float(2 ** ((bucket - 0.5) / 3))


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The `q` quantile (0 < q <= 1) of a histogram, as its bucket's value; None when empty."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return bucket_value(bucket)
    return bucket_value(len(counts) - 1)  # pragma: no cover - counts sum to total


# -- the results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpendPoint:
    """One (day, group) cell of "spend per day stacked by X"."""

    day: date  # UTC day
    group: str  # the team/user/key id or the model name; "" when the request had none
    label: str  # display name: team/user/key name (id if it no longer exists), model name, or "(none)"
    cost_micro: int  # USD micro-units (1e-6 $)
    requests: int


@dataclass(frozen=True, slots=True)
class TrafficPoint:
    """One time bucket of traffic."""

    start: datetime  # bucket start, UTC aware
    requests: int
    errors: int  # status >= 400 or error_type set
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int  # 5m + 1h writes


@dataclass(frozen=True, slots=True)
class Overview:
    """Totals over a time range (widened to whole hours: `since` and `until` say which)."""

    since: datetime
    until: datetime
    requests: int
    errors: int
    cost_micro: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_hit_ratio: float | None  # cache_read / (input + cache_read + cache_write); None when no tokens
    ttft_ms: dict[str, float | None]  # {"p50":..,"p90":..,"p99":..} time to first token; None when no data


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """A budget and what its current window has spent so far (recorded spend, not reservations)."""

    budget_id: str
    scope: str
    scope_id: str
    label: str
    period: str
    amount_micro: int
    spent_micro: int
    window_start: datetime | None  # None for period "total"


@dataclass(frozen=True, slots=True)
class DeploymentStats:
    """One deployment's requests, errors and latency over a time range."""

    deployment: str  # "" for requests recorded before deployments were
    provider: str
    region: str
    requests: int
    errors: int  # status >= 400 or error_type set
    rate_limited: int  # status 429
    p50_latency_ms: float | None
    p90_latency_ms: float | None


# -- writing the rollups ------------------------------------------------------------------------

_HOURLY_COLUMNS = len(HOURLY_SUMS) + 2 * HISTOGRAM_BUCKETS
_TTFT_AT = len(HOURLY_SUMS)  # where the histograms start in an hourly row's counters
_LATENCY_AT = _TTFT_AT + HISTOGRAM_BUCKETS
_HOURLY_UPSERT = BulkUpsert(
    spend_hourly,
    ("hour", "deployment", "provider", "region"),
    add=HOURLY_SUMS + TTFT_COLUMNS + LATENCY_COLUMNS,
)
_DAILY_UPSERT = BulkUpsert(spend_daily, ("day", "key_id", "user_id", "team_id", "model"), add=DAILY_SUMS)
_SPEND: Table = Spend.__table__  # type: ignore[assignment]
# What a stored spend row contributes, read back when a batch replaces it.
_CONTRIBUTION = (
    "request_id",
    "interrupted",
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
)
_IDS_PER_QUERY = 512  # a power of two: see _padded
_ROWS_PER_SLICE = 50  # entries summed between yields to the event loop


class _Rollup:
    """A batch's changes to the rollups, summed in Python: one upsert row per hour/day cell."""

    def __init__(self) -> None:
        self.hourly: dict[tuple[datetime, str, str, str], list[int]] = {}
        self.daily: dict[tuple[date, str, str, str, str], list[int]] = {}

    def add(self, row: Any, sign: int) -> None:
        started = row.started_at
        if started.tzinfo is not UTC:
            started = started.astimezone(UTC)
        hour = started.replace(minute=0, second=0, microsecond=0)
        key = (hour, row.deployment or "", row.provider or "", row.region or "")
        cells = self.hourly.get(key)
        if cells is None:
            cells = self.hourly[key] = [0] * _HOURLY_COLUMNS
        status = row.status or 0
        cache_write = (row.cache_write_5m_tokens or 0) + (row.cache_write_1h_tokens or 0)
        cost = row.cost_micro or 0
        cells[0] += sign
        if status >= 400 or row.error_type is not None:
            cells[1] += sign
        if status == 429:
            cells[2] += sign
        cells[3] += sign * (row.input_tokens or 0)
        cells[4] += sign * (row.output_tokens or 0)
        cells[5] += sign * (row.cache_read_tokens or 0)
        cells[6] += sign * cache_write
        cells[7] += sign * cost
        if row.first_token_ms is not None:
            cells[_TTFT_AT + histogram_bucket(row.first_token_ms)] += sign
        if row.latency_ms is not None:
            cells[_LATENCY_AT + histogram_bucket(row.latency_ms)] += sign
        owner = (started.date(), row.key_id or "", row.user_id or "", row.team_id or "", row.model or "")
        day = self.daily.get(owner)
        if day is None:
            day = self.daily[owner] = [0] * len(DAILY_SUMS)
        day[0] += sign
        day[1] += sign * cost
        day[2] += sign * (row.input_tokens or 0)
        day[3] += sign * (row.output_tokens or 0)
        day[4] += sign * (row.cache_read_tokens or 0)
        day[5] += sign * cache_write


async def rollup_of(entries: Sequence[SpendEntry]) -> _Rollup:
    """What `entries` add to the rollups if all are new, summed a slice at a time between yields
    to the event loop (about 10 us an entry), before any connection or lock is taken."""
    rollup = _Rollup()
    for count, entry in enumerate(entries, 1):
        rollup.add(entry, 1)
        if count % _ROWS_PER_SLICE == 0:
            await asyncio.sleep(0)
    return rollup


async def add_to_rollups(
    connection: AsyncConnection,
    entries: Sequence[SpendEntry],
    rollup: _Rollup | None = None,
    *,
    fresh: bool = False,
) -> None:
    """Add a batch of spend entries (without repeated request ids) to the rollups, in the caller's
    transaction, before the entries themselves are upserted; `rollup` is `rollup_of(entries)`.

    The rollups count each request once, as the spend table does: an entry replacing an
    interrupted one takes the interrupted one's contribution back out, and an entry the spend
    upsert will ignore (its request already has a final entry: a replayed batch) adds nothing.
    Cells are written in key order, so concurrent writers (several gateway processes on one
    PostgreSQL) lock them in the same order and cannot deadlock. `fresh`: the caller knows no
    entry's request id is stored yet, so the stored rows are not looked up (measured: about a
    fifth of a spend write's time on the event loop, ~2.5 us an entry).
    """
    if not entries:
        return
    if rollup is None:
        rollup = await rollup_of(entries)
    held: dict[str, Any] = {}
    columns = [_SPEND.c[name] for name in _CONTRIBUTION]
    ids = [] if fresh else [entry.request_id for entry in entries]
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk = _padded(ids[start : start + _IDS_PER_QUERY])
        result = await connection.execute(select(*columns).where(_SPEND.c.request_id.in_(chunk)))
        held.update((row.request_id, row) for row in result)
    if held:
        for entry in entries:
            old = held.get(entry.request_id)
            if old is not None:
                # A final entry stays (the spend upsert ignores this one); an interrupted one is replaced.
                rollup.add(old if old.interrupted else entry, -1)
    dialect = connection.dialect
    hourly = [(*key, *cells) for key, cells in sorted(rollup.hourly.items()) if any(cells)]
    daily = [(*key, *cells) for key, cells in sorted(rollup.daily.items()) if any(cells)]
    await _HOURLY_UPSERT.execute(connection, await _HOURLY_UPSERT.rows(dialect, hourly, _same))
    await _DAILY_UPSERT.execute(connection, await _DAILY_UPSERT.rows(dialect, daily, _same))


def _same(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return row


def _padded(ids: list[str]) -> list[str]:
    """`ids` padded to a power-of-two length with repeats of its last id (same IN result).

    An IN list's length is part of the statement's text, and the SQLite driver keeps a
    prepared statement per text: batches of every length from 1 to 500 filled its cache with
    large statements and grew the gateway by ~130 MB (bench/memory.py). Padded, a handful of
    lengths exist.
    """
    return ids + [ids[-1]] * ((1 << (len(ids) - 1).bit_length()) - len(ids))


# -- reading them ---------------------------------------------------------------------------------

_H = spend_hourly.c
_D = spend_daily.c
_OWNER_COLUMNS = {"team": _D.team_id, "user": _D.user_id, "key": _D.key_id, "model": _D.model}
_SCOPE_COLUMNS = {Scope.KEY: _D.key_id, Scope.USER: _D.user_id, Scope.TEAM: _D.team_id}
_NAMED: dict[str, Any] = {"team": Team, "user": User, "key": ApiKey}


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to the reports; use timezone-aware UTC")
    return moment.astimezone(UTC)


def _floor(moment: datetime, step: timedelta) -> datetime:
    moment = _utc(moment)
    if step == DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil(moment: datetime, step: timedelta) -> datetime:
    floor = _floor(moment, step)
    return floor if floor == _utc(moment) else floor + step


def _range(since: datetime, until: datetime, step: timedelta) -> tuple[datetime, datetime]:
    """[since, until) widened to whole steps; ValueError when empty or absurdly long."""
    start, end = _floor(since, step), _ceil(until, step)
    if _utc(until) <= _utc(since):
        raise ValueError("until must be after since")
    if (end - start) / step > MAX_BUCKETS:
        raise ValueError(f"more than {MAX_BUCKETS} {'days' if step == DAY else 'hours'} asked for")
    return start, end


def _sums(columns: Iterable[str]) -> list[Any]:
    return [func.coalesce(func.sum(_H[name]), 0).label(name) for name in columns]


def _window(period: Period, now: datetime) -> datetime | None:
    """The start of a budget's current window, as governance computes it; None for all time."""
    return None if period is Period.TOTAL else period_start(period, now)


class Reports:
    """The console's aggregate reports over the spend rollups; every method is one short read."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._store = store
        self._sessions = store.sessions
        self._clock = clock  # budget windows are "now"'s

    async def spend_by_day(self, since: datetime, until: datetime, by: SpendBy) -> list[SpendPoint]:
        """Cost and requests per UTC day and team, user, key or model, for the days [since, until)
        touches (whole days); only cells with requests, by day then cost (dearest first)."""
        if by not in _OWNER_COLUMNS:
            raise ValueError(f"cannot report spend by {by!r}")
        start, end = _range(since, until, DAY)
        group = _OWNER_COLUMNS[by]
        # The day as the driver gives it (SQLite: text), parsed once per day below rather than
        # by the column type once per row: a month by key is thousands of rows.
        day = type_coerce(_D.day, String)
        stmt = (
            select(day, group, func.sum(_D.cost_micro), func.sum(_D.requests))
            .where(_D.day >= start.date(), _D.day < end.date())
            .group_by(_D.day, group)
        )
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
            labels = await self._labels(session, by, {row[1] for row in rows})
        days: dict[Any, date] = {}
        points = []
        for raw_day, grp, cost, requests in rows:
            if not requests:
                continue
            when = days.get(raw_day)
            if when is None:
                when = days[raw_day] = raw_day if isinstance(raw_day, date) else date.fromisoformat(raw_day)
            label = labels.get(grp, grp) if grp else NONE_LABEL
            points.append(SpendPoint(when, grp, label, int(cost), int(requests)))
        points.sort(key=lambda p: (p.day, -p.cost_micro, p.group))
        return points

    async def traffic(self, since: datetime, until: datetime, bucket: Bucket) -> list[TrafficPoint]:
        """Requests, errors and tokens per hour or UTC day over [since, until) widened to whole
        buckets; every bucket is present, empty ones as zeros."""
        if bucket not in ("hour", "day"):
            raise ValueError(f"no traffic bucket {bucket!r}")
        step = HOUR if bucket == "hour" else DAY
        start, end = _range(since, until, step)
        names = (
            "requests",
            "errors",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
        )
        stmt = select(_H.hour, *_sums(names)).where(_H.hour >= start, _H.hour < end).group_by(_H.hour)
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        totals: dict[datetime, list[int]] = {}
        for row in rows:
            cells = totals.setdefault(_floor(row.hour, step), [0] * len(names))
            for index, name in enumerate(names):
                cells[index] += int(getattr(row, name))
        points = []
        at = start
        while at < end:
            cells = totals.get(at) or [0] * len(names)
            points.append(TrafficPoint(at, *cells))
            at += step
        return points

    async def overview(self, since: datetime, until: datetime) -> Overview:
        """Totals, the cache hit ratio and time-to-first-token percentiles over [since, until)
        widened to whole hours."""
        start, end = _range(since, until, HOUR)
        stmt = select(*_sums(HOURLY_SUMS + TTFT_COLUMNS)).where(_H.hour >= start, _H.hour < end)
        async with self._sessions() as session:
            row = (await session.execute(stmt)).one()
        totals = {name: int(getattr(row, name)) for name in HOURLY_SUMS}
        ttft = [int(getattr(row, name)) for name in TTFT_COLUMNS]
        prompt = totals["input_tokens"] + totals["cache_read_tokens"] + totals["cache_write_tokens"]
        return Overview(
            since=start,
            until=end,
            requests=totals["requests"],
            errors=totals["errors"],
            cost_micro=totals["cost_micro"],
            input_tokens=totals["input_tokens"],
            output_tokens=totals["output_tokens"],
            cache_read_tokens=totals["cache_read_tokens"],
            cache_write_tokens=totals["cache_write_tokens"],
            cache_hit_ratio=totals["cache_read_tokens"] / prompt if prompt else None,
            ttft_ms={f"p{q}": percentile(ttft, q / 100) for q in (50, 90, 99)},
        )

    async def budget_usage(self) -> list[BudgetUse]:
        """Every budget with the recorded spend of its current window (as governance computes
        windows: UTC day, ISO week from Monday, calendar month, or all time)."""
        now = self._clock()
        rules = await self._store.budgets.list()
        windows = {rule.budget_id: _window(rule.period, now) for rule in rules}
        # One query per scope and window (at most 3 x 4), whatever the number of budgets.
        wanted: dict[tuple[Scope, datetime | None], set[str]] = {}
        for rule in rules:
            wanted.setdefault((rule.scope, windows[rule.budget_id]), set()).add(rule.scope_id)
        spent: dict[tuple[Scope, datetime | None, str], int] = {}
        labels: dict[Scope, dict[str, str]] = {}
        async with self._sessions() as session:
            for scope in Scope:
                ids = {rule.scope_id for rule in rules if rule.scope is scope}
                labels[scope] = await self._labels(session, scope.value, ids) if ids else {}
            for (scope, window), owners in wanted.items():
                owner = _SCOPE_COLUMNS[scope]
                listed = sorted(owners)
                for start in range(0, len(listed), _IDS_PER_QUERY):
                    stmt = (
                        select(owner, func.sum(_D.cost_micro))
                        .where(owner.in_(_padded(listed[start : start + _IDS_PER_QUERY])))
                        .group_by(owner)
                    )
                    if window is not None:
                        stmt = stmt.where(_D.day >= window.date())
                    for scope_id, cost in await session.execute(stmt):
                        spent[(scope, window, scope_id)] = int(cost or 0)
        return [
            BudgetUse(
                budget_id=rule.budget_id,
                scope=rule.scope.value,
                scope_id=rule.scope_id,
                label=labels[rule.scope].get(rule.scope_id, rule.scope_id),
                period=rule.period.value,
                amount_micro=rule.amount_micro,
                spent_micro=spent.get((rule.scope, windows[rule.budget_id], rule.scope_id), 0),
                window_start=windows[rule.budget_id],
            )
            for rule in rules
        ]

    async def deployment_errors(self, since: datetime, until: datetime) -> list[DeploymentStats]:
        """Requests, errors, 429s and latency percentiles per deployment over [since, until)
        widened to whole hours; busiest first."""
        start, end = _range(since, until, HOUR)
        keys = (_H.deployment, _H.provider, _H.region)
        stmt = (
            select(*keys, *_sums(("requests", "errors", "rate_limited", *LATENCY_COLUMNS)))
            .where(_H.hour >= start, _H.hour < end)
            .group_by(*keys)
        )
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        stats = []
        for row in rows:
            latency = [int(getattr(row, name)) for name in LATENCY_COLUMNS]
            stats.append(
                DeploymentStats(
                    deployment=row.deployment,
                    provider=row.provider,
                    region=row.region,
                    requests=int(row.requests),
                    errors=int(row.errors),
                    rate_limited=int(row.rate_limited),
                    p50_latency_ms=percentile(latency, 0.5),
                    p90_latency_ms=percentile(latency, 0.9),
                )
            )
        stats.sort(key=lambda s: (-s.requests, s.deployment, s.provider, s.region))
        return [s for s in stats if s.requests]

    async def _labels(self, session: Any, kind: str, ids: set[str]) -> dict[str, str]:
        """Names of the teams, users or keys `ids` that still exist (models are their own name)."""
        model = _NAMED.get(kind)
        ids = {i for i in ids if i}
        if model is None:
            return {i: i for i in ids}
        names: dict[str, str] = {}
        listed = sorted(ids)
        for start in range(0, len(listed), _IDS_PER_QUERY):
            chunk = listed[start : start + _IDS_PER_QUERY]
            result = await session.execute(select(model.id, model.name).where(model.id.in_(chunk)))
            names.update((row.id, row.name) for row in result)
        return names
