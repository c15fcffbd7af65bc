"""`Store`: one engine and the repositories over it, for the gateway and the admin API."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from cloudgate.store.activity import ActivityRepository
from cloudgate.store.apikeys import KeyRepository
from cloudgate.store.directory import TeamRepository, UserRepository
from cloudgate.store.engine import create_engine, create_sessionmaker, is_sqlite
from cloudgate.store.policies import BudgetRepository, LimitRepository
from cloudgate.store.reports import Reports
from cloudgate.store.spend import SpendRepository, SqlSpendSink


class Store:
    """Teams, users, keys, budgets, limits, spend and the activity log in one database.

    Every repository method runs in its own short transaction, so a `Store` is shared freely
    by concurrent requests.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = create_sessionmaker(engine)
        self.teams = TeamRepository(self.sessions)
        self.users = UserRepository(self.sessions)
        self.keys = KeyRepository(self.sessions)
        self.budgets = BudgetRepository(self.sessions)
        self.limits = LimitRepository(self.sessions)
        # SQLite takes one writer at a time: the spend and activity writers take turns here
        # rather than in SQLite's busy handler, which sleeps (measured: batches waiting ~1 s).
        self.writes = asyncio.Lock() if is_sqlite(str(engine.url)) else None
        self.spend = SpendRepository(self.sessions, self.writes)
        self.activity = ActivityRepository(self.sessions, self.writes)
        self.reports = Reports(self)

    @classmethod
    def open(cls, url: str, *, schema: str | None = None) -> Store:
        """A store on a new engine for `url` (see `create_engine` for `schema`)."""
        return cls(create_engine(url, schema=schema))

    def spend_sink(self) -> SqlSpendSink:
        """A sink for the spend writer that writes into this store."""
        return SqlSpendSink(self.sessions, self.writes)

    async def close(self) -> None:
        """Close the engine's connections."""
        await self.engine.dispose()
