"""Migrations: empty to head on both databases, idempotent, data kept, models in step with scripts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from cloudgate.governance.types import SpendEntry
from cloudgate.store import Store, current_revision, downgrade, head_revision, upgrade
from cloudgate.store.models import Base
from tests.store.conftest import Database

TABLES = {
    "teams",
    "users",
    "api_keys",
    "budgets",
    "limits",
    "spend",
    "activity",
    "spend_hourly",
    "spend_daily",
    "console_sessions",
    "alembic_version",
}


async def test_empty_to_head(database: Database) -> None:
    engine = database.engine()
    try:
        assert await current_revision(engine) is None
        await upgrade(engine)
        assert await current_revision(engine) == head_revision() == "0005"
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


def _columns(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(table)}


async def test_0002_adds_residency_and_attempts_and_downgrades(database: Database) -> None:
    engine = database.engine()
    try:
        await upgrade(engine, "0001")
        # Rows written at 0001, before the columns existed, must read fine afterwards.
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO teams (id, name, created_at, tags) VALUES ('team_old', 'old', :t, '[]')"),
                {"t": datetime(2025, 1, 1, tzinfo=UTC).replace(tzinfo=None)},
            )
            await conn.execute(
                text(
                    "INSERT INTO spend (request_id, started_at, frontdoor, provider, model, upstream_model,"
                    " region, status, input_tokens, output_tokens, cache_write_5m_tokens,"
                    " cache_write_1h_tokens, cache_read_tokens, cost_micro, reserved_micro, interrupted,"
                    " tags) VALUES ('old', :t, 'anthropic', 'vertex', 'm', 'm', 'us-east5', 200,"
                    " 1, 1, 0, 0, 0, 5, 5, false, '[]')"
                ),
                {"t": datetime(2025, 1, 1, tzinfo=UTC).replace(tzinfo=None)},
            )
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            assert {"allowed_regions"} <= await conn.run_sync(_columns, "api_keys")
            assert {"allowed_regions", "preferred_providers"} <= await conn.run_sync(_columns, "teams")
            assert {"deployment", "attempts"} <= await conn.run_sync(_columns, "spend")
        store = Store(engine)
        old_team = await store.teams.get("team_old")
        assert old_team is not None
        assert (old_team.allowed_regions, old_team.preferred_providers) == (None, None)
        report = await store.spend.spend_report("deployment", datetime(2024, 1, 1, tzinfo=UTC))
        assert [(r.group, r.requests, r.attempts) for r in report] == [(None, 1, 1)]
        await store.spend.write_spend(
            [SpendEntry("new", datetime(2025, 1, 2, tzinfo=UTC), None, deployment="eu", attempts=2)]
        )
        team = await store.teams.create("eu", allowed_regions=["eu"], preferred_providers=["vertex"])
        await store.users.create("ada", team_id=team.id)
        await store.keys.create("k", team_id=team.id, allowed_regions=["europe-west1"])

        await downgrade(engine, "0001")
        assert await current_revision(engine) == "0001"
        async with engine.connect() as conn:
            assert "allowed_regions" not in await conn.run_sync(_columns, "api_keys")
            assert not {"allowed_regions", "preferred_providers"} & await conn.run_sync(_columns, "teams")
            assert not {"deployment", "attempts"} & await conn.run_sync(_columns, "spend")
            # The rows stay, only the new columns go: dropping them must not cascade through the
            # foreign keys to members and keys (as copying the teams table would on SQLite).
            assert await conn.scalar(text("SELECT count(*) FROM spend")) == 2
            assert await conn.scalar(text("SELECT count(*) FROM api_keys")) == 1
            assert await conn.scalar(text("SELECT team_id FROM users")) == team.id
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        await downgrade(engine, "base")
        assert await current_revision(engine) is None
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


async def test_0003_adds_the_activity_log_and_downgrades(database: Database) -> None:
    engine = database.engine()
    try:
        await upgrade(engine, "0002")
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO teams (id, name, created_at, tags) VALUES ('team_old', 'old', :t, '[]')"),
                {"t": datetime(2025, 1, 1, tzinfo=UTC).replace(tzinfo=None)},
            )
        await upgrade(engine, "0003")
        store = Store(engine)
        old_team = await store.teams.get("team_old")
        assert old_team is not None and old_team.log_bodies is False  # rows from before say no
        async with engine.connect() as conn:
            assert "log_bodies" in await conn.run_sync(_columns, "api_keys")
            indexes = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("activity")})
        assert indexes == {
            f"ix_activity_{name}"
            for name in (
                "started_at",
                "key_id_started_at",
                "user_id_started_at",
                "team_id_started_at",
                "session_id_started_at",
                "model_started_at",
                "status_started_at",
            )
        }
        await downgrade(engine, "0002")
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert "activity" not in names
            assert "log_bodies" not in await conn.run_sync(_columns, "teams")
            assert await conn.scalar(text("SELECT count(*) FROM teams")) == 1
    finally:
        await engine.dispose()
