"""Running the packaged Alembic migrations from code: at gateway start and from `cloudgate db`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from cloudgate.store.engine import create_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# An arbitrary constant: PostgreSQL advisory lock id that serialises migrations when several
# gateway processes start at once against one database.
_PG_MIGRATION_LOCK = 0x0C10D6A7E


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the packaged scripts, bound to `connection` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision the packaged scripts know."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(target: str | AsyncEngine, revision: str = "head") -> None:
    """Apply pending migrations to the database at `target` (a URL or an engine); idempotent."""
    await _migrate(target, command.upgrade, revision)


async def downgrade(target: str | AsyncEngine, revision: str) -> None:
    """Revert the database at `target` to `revision` ("base": empty); dropped columns lose their data."""
    await _migrate(target, command.downgrade, revision)


async def _migrate(target: str | AsyncEngine, step: Callable[[Config, str], None], revision: str) -> None:
    engine = create_engine(target) if isinstance(target, str) else target
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate_sync, step, revision)
    finally:
        if isinstance(target, str):
            await engine.dispose()


async def current_revision(target: str | AsyncEngine) -> str | None:
    """The revision the database at `target` is at; None before the first migration."""
    engine = create_engine(target) if isinstance(target, str) else target
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current_sync)
    finally:
        if isinstance(target, str):
            await engine.dispose()


def _migrate_sync(connection: Connection, step: Callable[[Config, str], None], revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Held until the transaction ends: a second process waits, then finds nothing to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
    step(alembic_config(connection), revision)


def _current_sync(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
