"""The spend log: idempotent writes, sums for budget seeding, and reports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudgate.governance.types import Scope, SpendEntry
from cloudgate.store.common import BulkUpsert
from cloudgate.store.models import Spend
from cloudgate.store.reports import add_to_rollups, rollup_of

ReportBy = Literal["key", "user", "team", "model", "deployment", "day"]

_SPEND: Table = Spend.__table__  # type: ignore[assignment]
_OWNER = {Scope.KEY: Spend.key_id, Scope.USER: Spend.user_id, Scope.TEAM: Spend.team_id}
_TOKENS = (
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
)


@dataclass(slots=True, frozen=True)
class SpendReportRow:
    """Totals for one group (a key, user, team, model, deployment or UTC day; None: requests without one).

    `attempts` sums the upstream requests made, failovers included; a request refused before any
    upstream call adds 0.
    """

    group: str | None
    requests: int
    input_tokens: int
    output_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_tokens: int
    cost_micro: int
    attempts: int


_UPSERT = BulkUpsert(_SPEND, "request_id", _SPEND.c.interrupted.is_(True))
_VALUES = operator.attrgetter(*_UPSERT.columns)  # an entry's values in column order
assert {f.name for f in dataclasses.fields(SpendEntry)} >= set(_UPSERT.columns), "spend table and SpendEntry"


def _deduplicate(entries: Sequence[SpendEntry]) -> list[SpendEntry]:
    # A batch may become one multi-row INSERT, which PostgreSQL refuses to let touch a row twice:
    # settle repeats of a request id here by the upsert's own rule (anything replaces an
    # interrupted entry, nothing replaces a final one).
    chosen: dict[str, SpendEntry] = {}
    for entry in entries:
        held = chosen.get(entry.request_id)
        if held is None or held.interrupted:
            chosen[entry.request_id] = entry
    return list(chosen.values())


class SpendRepository:
    """Writes and reads the spend table."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], writes: asyncio.Lock | None = None
    ) -> None:
        self._sessions = sessions
        self._writes = writes  # held while writing, when the database allows one writer at a time

    async def write_spend(self, entries: Sequence[SpendEntry], *, fresh: bool = False) -> None:
        """Insert entries, idempotently by request id: a final entry replaces an interrupted one.

        Writing the same batch twice (a retry after a lost commit, a journal replay) changes
        nothing; an entry written as interrupted when the gateway died is replaced once the
        journal replays its final version, but a final entry is never overwritten. `fresh`
        (the spend writer's first try of its own requests): no entry's request id is stored
        yet, so the rollups skip looking for earlier versions.
        """
        chosen = _deduplicate(entries)
        if not chosen:
            return
        params = await _UPSERT.rows(self._sessions.kw["bind"].dialect, chosen, _VALUES)
        rollup = await rollup_of(chosen)
        writes = self._writes if self._writes is not None else contextlib.nullcontext()
        async with writes, self._sessions.begin() as session:
            connection = await session.connection()
            # The report rollups change in the same transaction, counting each request once.
            await add_to_rollups(connection, chosen, rollup, fresh=fresh)
            await _UPSERT.execute(connection, params)

    async def spent_micro(self, scope: Scope, scope_id: str, since: datetime | None = None) -> int:
        """What a key, user or team has spent since `since` (all time if None), in micro-dollars."""
        owner = _OWNER[Scope(scope)]
        stmt = select(func.coalesce(func.sum(Spend.cost_micro), 0)).where(owner == scope_id)
        if since is not None:
            stmt = stmt.where(Spend.started_at >= since)
        async with self._sessions() as session:
            return int(await session.scalar(stmt) or 0)

    async def spend_report(
        self, by: ReportBy, since: datetime, until: datetime | None = None
    ) -> list[SpendReportRow]:
        """Requests, attempts, tokens and cost per key, user, team, model, deployment or UTC day."""
        async with self._sessions() as session:
            group = _group_expression(by, session.get_bind().dialect.name).label("grp")
            cost = func.coalesce(func.sum(Spend.cost_micro), 0)
            stmt = (
                select(
                    group,
                    func.count().label("requests"),
                    func.coalesce(func.sum(Spend.attempts), 0).label("attempts"),
                    *(func.coalesce(func.sum(_SPEND.c[name]), 0).label(name) for name in _TOKENS),
                    cost.label("cost_micro"),
                )
                .where(Spend.started_at >= since)
                .group_by(group)
                .order_by(group if by == "day" else cost.desc(), group)
            )
            if until is not None:
                stmt = stmt.where(Spend.started_at < until)
            rows = (await session.execute(stmt)).all()
        return [
            SpendReportRow(
                group=row.grp,
                requests=int(row.requests),
                **{name: int(getattr(row, name)) for name in _TOKENS},
                cost_micro=int(row.cost_micro),
                attempts=int(row.attempts),
            )
            for row in rows
        ]


class SqlSpendSink:
    """The spend writer's sink into the database."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], writes: asyncio.Lock | None = None
    ) -> None:
        self._spend = SpendRepository(sessions, writes)

    async def write_spend(self, entries: Sequence[SpendEntry], *, fresh: bool = False) -> None:
        """Write a batch of entries; safe to retry (with `fresh` False)."""
        await self._spend.write_spend(entries, fresh=fresh)


def _group_expression(by: ReportBy, dialect: str) -> ColumnElement[Any]:
    if by == "day":
        if dialect == "postgresql":
            # The session's TimeZone may be anything; days are UTC days.
            return func.to_char(func.timezone("UTC", Spend.started_at), "YYYY-MM-DD")
        # SQLite holds naive UTC text ("YYYY-MM-DD HH:MM:SS.ffffff").
        return func.strftime("%Y-%m-%d", Spend.started_at)
    columns: dict[str, Any] = {
        "key": Spend.key_id,
        "user": Spend.user_id,
        "team": Spend.team_id,
        "model": Spend.model,
        # Rows from before deployments were recorded have none: grouped as null, like a keyless request.
        "deployment": func.nullif(Spend.deployment, ""),
    }
    if by not in columns:
        raise ValueError(f"cannot group spend by {by!r}")
    return columns[by]  # type: ignore[no-any-return]
