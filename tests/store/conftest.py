"""Store fixtures: every test runs on a SQLite file and on PostgreSQL (in a schema of its own)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cloudgate.store import Store, create_engine, upgrade
from cloudgate.store.engine import validate_schema_name

POSTGRES_ENV = "CLOUDGATE_TEST_POSTGRES_URL"


@dataclass
class Database:
    """A database for one test: a URL, and on PostgreSQL the schema that isolates the test."""

    kind: str
    url: str
    schema: str | None = None

    def engine(self) -> AsyncEngine:
        """A new engine on this database (in the test's schema)."""
        return create_engine(self.url, schema=self.schema)


def postgres_url() -> str:
    """The test PostgreSQL URL; fails in CI, skips elsewhere, when there is none."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        reason = f"{POSTGRES_ENV} is not set (run `bash scripts/services.sh` and export what it prints)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """An empty database: a fresh SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        return
    url = postgres_url()
    schema = validate_schema_name(f"t_{secrets.token_hex(8)}")
    admin = create_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield Database("postgresql", url, schema)
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture
async def store(database: Database) -> AsyncIterator[Store]:
    """A store on a database migrated to head."""
    engine = database.engine()
    await upgrade(engine)
    store = Store(engine)
    try:
        yield store
    finally:
        await store.close()
