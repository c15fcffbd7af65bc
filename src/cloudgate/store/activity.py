"""The activity log's table: batched upserts, filtered reads in keyset pages, exports, batched deletes.

Reads page on (started_at, request_id), which the indexes serve for every filter, so a page
costs the same on the first day as after a month of traffic, and an export never holds more
than a page in memory.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import operator
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, Table, and_, delete, func, literal_column, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudgate.activity.entry import ENTRY_FIELDS, ActivityEntry, ActivityFilter
from cloudgate.store.common import BulkUpsert
from cloudgate.store.models import Activity

_ACTIVITY: Table = Activity.__table__  # type: ignore[assignment]
_C = _ACTIVITY.c
assert tuple(c.name for c in _ACTIVITY.columns) == ENTRY_FIELDS, "the table and ActivityEntry must agree"
# Bounded columns: a longer value (a client's odd user agent) is cut rather than failing the batch.
_LIMITS = {c.name: c.type.length for c in _ACTIVITY.columns if isinstance(c.type, String) and c.type.length}
_EQUAL = ("key_id", "user_id", "team_id", "model", "status", "session_id", "provider", "deployment")


_UPSERT = BulkUpsert(_ACTIVITY, "request_id")
_VALUES = operator.attrgetter(*ENTRY_FIELDS)  # an entry's values in column order
_TEXT = tuple(i for i, c in enumerate(_ACTIVITY.columns) if isinstance(c.type, String))
_CUT = {i: _LIMITS[c.name] for i, c in enumerate(_ACTIVITY.columns) if c.name in _LIMITS}


def _row(entry: ActivityEntry) -> tuple[Any, ...]:
    row = list(_VALUES(entry))
    for index in _TEXT:
        value = row[index]
        if value is None:
            continue
        if "\x00" in value:  # PostgreSQL refuses NUL in text; one stray byte must not block a batch
            row[index] = value = value.replace("\x00", "\ufffd")
        limit = _CUT.get(index)
        if limit is not None and len(value) > limit:
            row[index] = value[:limit]
    return tuple(row)  # (JSON values lose their NULs as they are encoded)


def _entry(row: Row[Any]) -> ActivityEntry:
    return ActivityEntry(**row._mapping)


def _conditions(filter: ActivityFilter | None) -> builtins.list[ColumnElement[bool]]:
    if filter is None:
        return []
    conditions: builtins.list[ColumnElement[bool]] = []
    if filter.since is not None:
        conditions.append(_C.started_at >= filter.since)
    if filter.until is not None:
        conditions.append(_C.started_at < filter.until)
    for name in _EQUAL:
        value = getattr(filter, name)
        if value is not None:
            conditions.append(_C[name] == value)
    if filter.errors_only:
        # A stream that failed after its 200 had started keeps the 200 but has an error type.
        conditions.append(or_(_C.status >= 400, _C.error_type.is_not(None)))
    return conditions


def _after(at: tuple[datetime, str]) -> ColumnElement[bool]:
    return or_(_C.started_at > at[0], and_(_C.started_at == at[0], _C.request_id > at[1]))


def _before(at: tuple[datetime, str]) -> ColumnElement[bool]:
    return or_(_C.started_at < at[0], and_(_C.started_at == at[0], _C.request_id < at[1]))


class ActivityRepository:
    """Writes and reads the activity table; every method is one short transaction."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], writes: asyncio.Lock | None = None
    ) -> None:
        self._sessions = sessions
        self._writes = writes  # held while writing, when the database allows one writer at a time

    async def write(self, entries: Sequence[ActivityEntry]) -> None:
        """Insert entries in one statement and transaction; an entry already there is replaced."""
        # One multi-row statement may not touch a row twice (PostgreSQL): the last entry wins.
        latest = builtins.list({e.request_id: e for e in entries}.values())
        await _UPSERT.write(self._sessions, latest, _row, self._writes)

    async def get(self, request_id: str) -> ActivityEntry | None:
        """The entry of one request, or None."""
        async with self._sessions() as session:
            row = (await session.execute(select(_ACTIVITY).where(_C.request_id == request_id))).first()
        return None if row is None else _entry(row)

    async def session(self, session_id: str) -> builtins.list[ActivityEntry]:
        """Every entry of one Claude Code session, oldest first."""
        stmt = (
            select(_ACTIVITY)
            .where(_C.session_id == session_id)
            .order_by(_C.started_at.asc(), _C.request_id.asc())
        )
        return await self._fetch(stmt)

    async def export(self, filter: ActivityFilter, *, page: int = 1000) -> AsyncIterator[ActivityEntry]:
        """Every matching entry, oldest first, read `page` at a time (each page its own query)."""
        after: tuple[datetime, str] | None = None
        while True:
            stmt = select(_ACTIVITY).where(*_conditions(filter))
            if after is not None:
                stmt = stmt.where(_after(after))
            entries = await self._fetch(stmt.order_by(_C.started_at.asc(), _C.request_id.asc()).limit(page))
            for entry in entries:
                yield entry
            if len(entries) < page:
                return
            after = (entries[-1].started_at, entries[-1].request_id)

    async def delete_before(self, cutoff: datetime, *, batch: int) -> int:
        """Delete at most `batch` entries that started before `cutoff`, oldest first; returns how many."""
        writes = self._writes if self._writes is not None else contextlib.nullcontext()
        async with writes, self._sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                key: Any = _C.request_id
                # Two gateways' retention jobs take different rows instead of queueing on locks.
                chosen = select(key).with_for_update(skip_locked=True)
            else:
                key = literal_column("rowid")  # SQLite's own row key: the cheapest to delete by
                chosen = select(key).select_from(_ACTIVITY)
            chosen = chosen.where(_C.started_at < cutoff).order_by(_C.started_at).limit(batch)
            result = await session.execute(delete(_ACTIVITY).where(key.in_(chosen.scalar_subquery())))
            return int(result.rowcount)  # type: ignore[attr-defined]

    async def count(self, filter: ActivityFilter | None = None) -> int:
        """How many entries match."""
        stmt = select(func.count()).select_from(_ACTIVITY).where(*_conditions(filter))
        async with self._sessions() as session:
            return int(await session.scalar(stmt) or 0)

    async def list(
        self, filter: ActivityFilter, *, limit: int = 100, before: tuple[datetime, str] | None = None
    ) -> builtins.list[ActivityEntry]:
        """Matching entries, newest first; pass the last one's (started_at, request_id) as
        `before` for the next page."""
        stmt = select(_ACTIVITY).where(*_conditions(filter))
        if before is not None:
            stmt = stmt.where(_before(before))
        return await self._fetch(stmt.order_by(_C.started_at.desc(), _C.request_id.desc()).limit(limit))

    async def _fetch(self, stmt: Select[Any]) -> builtins.list[ActivityEntry]:
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [_entry(row) for row in rows]
