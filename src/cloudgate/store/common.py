"""What the repositories share: the store's errors, the UNSET marker, a translating transaction, upserts."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudgate.governance.types import Scope
from cloudgate.store.models import ApiKey, Base, Team, User


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

SCOPE_MODELS: dict[Scope, type[Base]] = {Scope.KEY: ApiKey, Scope.USER: User, Scope.TEAM: Team}


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session in a transaction committed on success; integrity errors become `Conflict`."""
    try:
        async with sessions.begin() as session:
            yield session
    except IntegrityError as exc:
        raise Conflict(_first_line(exc.orig)) from exc


def upsert(session: AsyncSession, table: Table, key: str, where: ColumnElement[bool] | None = None) -> Any:
    """An INSERT into `table` replacing every other column of a row whose `key` exists (if `where`).

    Executed with a list of rows it is one multi-row statement, on SQLite and on PostgreSQL.
    """
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c[key]],
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name != key},
        where=where,
    )


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
