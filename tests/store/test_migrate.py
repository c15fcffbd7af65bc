"""Migrations: empty to head on both databases, idempotent, data kept, models in step with scripts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from cloudgate.store import Store, current_revision, head_revision, upgrade
from cloudgate.store.models import Base
from tests.store.conftest import Database

TABLES = {"teams", "users", "api_keys", "budgets", "limits", "spend", "alembic_version"}


async def test_empty_to_head(database: Database) -> None:
    engine = database.engine()
    try:
        assert await current_revision(engine) is None
        await upgrade(engine)
        assert await current_revision(engine) == head_revision() == "0001"
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert names >= TABLES
            if database.schema:
                # Everything, Alembic's version table included, lives in the test's own schema.
                rows = await conn.execute(
                    text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                    {"s": database.schema},
                )
                assert {r[0] for r in rows} == TABLES
    finally:
        await engine.dispose()


async def test_upgrade_by_url(database: Database) -> None:
    if database.schema is not None:
        pytest.skip("a URL cannot carry the test's schema; the engine form is covered above")
    await upgrade(database.url)
    assert await current_revision(database.url) == head_revision()


async def test_upgrade_twice_is_a_no_op_and_keeps_data(database: Database) -> None:
    engine = database.engine()
    try:
        await upgrade(engine)
        store = Store(engine)
        team = await store.teams.create("platform")
        created = await store.keys.create("ci", team_id=team.id)
        await upgrade(engine)
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        assert await store.teams.get(team.id) == team
        assert (await store.keys.get(created.key.id)) == created.key
    finally:
        await engine.dispose()


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_models_match_the_migrated_schema(database: Database) -> None:
    engine = database.engine()
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_concurrent_upgrades_on_postgresql_wait_for_each_other(database: Database) -> None:
    if database.kind != "postgresql":
        pytest.skip("only PostgreSQL has a migration lock (an advisory lock)")
    engines = [database.engine() for _ in range(3)]
    try:
        await asyncio.gather(*(upgrade(e) for e in engines))
        assert await current_revision(engines[0]) == head_revision()
    finally:
        for engine in engines:
            await engine.dispose()
