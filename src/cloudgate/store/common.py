"""What the repositories share: the store's errors, UNSET, a translating transaction, bulk upserts."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import JSON, Boolean, ColumnElement, Date, Dialect, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from cloudgate.governance.types import Scope
from cloudgate.store.models import ApiKey, Base, Team, User, UtcDateTime


class StoreError(Exception):
    """A store operation a caller can fix: the base of the store's errors."""


class NotFound(StoreError):
    """A referenced team, user, key or budget does not exist."""


class Conflict(StoreError):
    """The change would break a uniqueness rule (a name, an email, a budget per period)."""


class Invalid(StoreError, ValueError):
    """A value the store refuses, such as a malformed region; the message starts with the field."""


class _Unset(enum.Enum):
    UNSET = "UNSET"


# "Leave this field alone" in updates, where None is a meaningful value (no expiry, any model).
UNSET = _Unset.UNSET
Unset = _Unset

_M = TypeVar("_M", bound=Base)
_T = TypeVar("_T")

SCOPE_MODELS: dict[Scope, type[Base]] = {Scope.KEY: ApiKey, Scope.USER: User, Scope.TEAM: Team}


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session in a transaction committed on success; integrity errors become `Conflict`."""
    try:
        async with sessions.begin() as session:
            yield session
    except IntegrityError as exc:
        raise Conflict(_first_line(exc.orig)) from exc


class BulkUpsert:
    """Inserts many rows of one table, replacing a row whose `key` exists (if `where`): the hot path.

    Spend and activity rows are written in batches of hundreds a second. SQLAlchemy's per-row
    parameter processing cost more than the database's own work for such rows (measured ~50 us
    a row on the event loop), so the statement is compiled once per dialect and executed through
    the driver with plain tuples in column order; only the values the driver cannot take as they
    are get converted: times (naive UTC text on SQLite, as `DateTime` stores them), JSON (text)
    and booleans (integers on SQLite). Reads still go through SQLAlchemy's types and agree.
    """

    def __init__(
        self,
        table: Table,
        key: str | tuple[str, ...],
        where: ColumnElement[bool] | None = None,
        *,
        add: tuple[str, ...] = (),
    ) -> None:
        self.table = table
        self.key = (key,) if isinstance(key, str) else key
        self.where = where
        self.add = frozenset(add)  # columns whose new value is added to the stored one (counters)
        self.columns = tuple(c.name for c in table.columns)
        self._prepared: dict[str, tuple[str, tuple[tuple[int, Callable[[Any], Any]], ...]]] = {}
        self._statements: dict[tuple[str, int], str] = {}  # (one-row SQL, rows) -> multi-row SQL

    def _prepare(self, dialect: Dialect) -> tuple[str, tuple[tuple[int, Callable[[Any], Any]], ...]]:
        prepared = self._prepared.get(dialect.name)
        if prepared is None:
            insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
            stmt = insert(self.table)
            stmt = stmt.on_conflict_do_update(
                index_elements=[self.table.c[name] for name in self.key],
                set_={
                    c.name: c + stmt.excluded[c.name] if c.name in self.add else stmt.excluded[c.name]
                    for c in self.table.columns
                    if c.name not in self.key
                },
                where=self.where,
            )
            compiled = stmt.compile(dialect=dialect, column_keys=list(self.columns))
            order = tuple(compiled.positiontup or ())
            if order != self.columns:  # the tuples are in column order: the statement must agree
                raise RuntimeError(f"unexpected parameter order for {self.table.name}: {order}")
            sqlite_ = dialect.name == "sqlite"
            converters: list[tuple[int, Callable[[Any], Any]]] = []
            for index, column in enumerate(self.table.columns):
                kind = column.type
                if isinstance(kind, UtcDateTime):
                    converters.append((index, _sqlite_time if sqlite_ else _aware_utc))
                elif isinstance(kind, JSON):
                    converters.append((index, _json_text))
                elif isinstance(kind, Boolean) and sqlite_:
                    converters.append((index, int))
                elif isinstance(kind, Date) and sqlite_:
                    converters.append((index, date.isoformat))  # as `Date` stores it
            prepared = (str(compiled), tuple(converters))
            self._prepared[dialect.name] = prepared
        return prepared

    def _multi_row(self, sql: str, rows: int) -> str:
        """`sql` (one row of placeholders) with `rows` rows of them: one statement for SQLite."""
        key = (sql, rows)
        text = self._statements.get(key)
        if text is None:
            group = "(" + ", ".join("?" * len(self.columns)) + ")"
            head, found, tail = sql.partition(" VALUES " + group)
            if not found:
                raise RuntimeError(f"unexpected upsert statement for {self.table.name}: {sql[:80]}")
            text = self._statements[key] = f"{head} VALUES {', '.join([group] * rows)}{tail}"
        return text

    async def write(
        self,
        sessions: async_sessionmaker[AsyncSession],
        items: Sequence[_T],
        to_row: Callable[[_T], Sequence[Any]],
        lock: asyncio.Lock | None = None,
    ) -> None:
        """Upsert `to_row(item)` for each item (values in column order), in one transaction.

        Rows are built a slice at a time between yields to the event loop, before the
        connection is taken, so a batch of hundreds never holds up requests for long; `lock`
        serialises the writers of a database that allows one at a time (SQLite), which
        otherwise wait for each other in SQLite's busy handler, asleep.
        """
        bind = sessions.kw["bind"]
        params = await self.rows(bind.dialect, items, to_row)
        if not params:
            return
        async with lock if lock is not None else contextlib.nullcontext(), sessions.begin() as session:
            await self.execute(await session.connection(), params)

    async def rows(
        self, dialect: Dialect, items: Sequence[_T], to_row: Callable[[_T], Sequence[Any]]
    ) -> list[tuple[Any, ...]]:
        """The driver's parameters for `items`, built a slice at a time between yields (see `write`)."""
        _, converters = self._prepare(dialect)
        params: list[tuple[Any, ...]] = []
        for count, item in enumerate(items, 1):
            values = list(to_row(item))
            for index, convert in converters:
                value = values[index]
                if value is not None:
                    values[index] = convert(value)
            params.append(tuple(values))
            if count % _ROWS_PER_SLICE == 0:
                await asyncio.sleep(0)
        return params

    async def execute(self, connection: AsyncConnection, params: list[tuple[Any, ...]]) -> None:
        """Run the upsert for `params` (from `rows`) on `connection`, inside the caller's transaction."""
        if not params:
            return
        dialect = connection.dialect
        sql, _ = self._prepare(dialect)
        if dialect.name != "sqlite":
            await connection.exec_driver_sql(sql, params)  # asyncpg pipelines executemany
            return
        # One multi-row statement per chunk, not executemany: the SQLite driver takes the GIL
        # back for every row's parameters, and while the event loop is busy each of those
        # waits a whole switch interval (5 ms), so a 500-row batch took seconds under load
        # and the queues behind it grew. SQLite applies the upsert row by row, in order.
        # Statement sizes are powers of two, the last chunk padded by repeating its last row
        # (an upsert of the same row again changes nothing): the driver then caches a
        # handful of statements per table, not one per batch length (prepared statements of
        # hundreds of rows are large: that cache grew the process by tens of MB), and a
        # batch still takes one or two statements, each a round trip to the driver's thread.
        # (Tables with counters (`add`) are not padded: a repeated row would count twice.)
        largest = 1 << max(0, (_SQLITE_VARIABLES // len(self.columns)).bit_length() - 1)
        start = 0
        while start < len(params):
            chunk = params[start : start + largest]
            if self.add:
                rows = len(chunk)
            else:
                rows = min(largest, 1 << (len(chunk) - 1).bit_length())
                chunk += [chunk[-1]] * (rows - len(chunk))
            await connection.exec_driver_sql(
                self._multi_row(sql, rows), tuple(itertools.chain.from_iterable(chunk))
            )
            start += largest


_ROWS_PER_SLICE = 50  # a few hundred microseconds of work on the event loop
# Bound parameters per statement: SQLite's default limit since 3.32 (older builds: 999).
_SQLITE_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


def _sqlite_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use timezone-aware UTC")
    # SQLAlchemy's SQLite DateTime storage format: naive UTC, always with microseconds, so
    # text sorts as time does.
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use timezone-aware UTC")
    return value.astimezone(UTC)


def _json_text(value: Any) -> str:
    data = orjson.dumps(value)
    if b"\\u0000" in data:  # (rarely, and maybe only an escaped backslash before "u0000")
        data = orjson.dumps(without_nul(value))
    return data.decode()


def without_nul(value: Any) -> Any:
    """`value` with NUL characters in its strings replaced: PostgreSQL refuses them in text and JSON."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value


async def require(session: AsyncSession, model: type[_M], ident: Any) -> _M:
    """The row of `model` with primary key `ident`, else NotFound."""
    row = await session.get(model, ident)
    if row is None:
        raise NotFound(f"no {model.__tablename__[:-1].replace('_', ' ')} {ident!r}")
    return row


async def require_scope(session: AsyncSession, scope: Scope, scope_id: str) -> None:
    """NotFound unless the key, user or team `scope_id` exists."""
    if await session.get(SCOPE_MODELS[Scope(scope)], scope_id) is None:
        raise NotFound(f"no {Scope(scope).value} {scope_id!r}")


def checked_list(
    name: str, check: Callable[[Iterable[str]], list[str]], values: Iterable[str] | None
) -> list[str] | None:
    """`values` as `check` (such as `region_list`) accepts them, None kept; else Invalid naming `name`."""
    if values is None:
        return None
    try:
        return check(values)
    except ValueError as exc:
        raise Invalid(f"{name}: {exc}") from None


def optional_tuple(values: list[str] | None) -> tuple[str, ...] | None:
    """A stored optional list as the tuple the info classes show (None stays None)."""
    return None if values is None else tuple(values)


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
