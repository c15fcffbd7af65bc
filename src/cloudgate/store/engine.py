"""Connecting to the store: the database URL, the async engine and its sessions."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from cloudgate.config.settings import Settings
from cloudgate.util.sqlite import enable_wal

DATABASE_FILE = "cloudgate.db"
# Milliseconds a SQLite writer waits for another process's write lock before failing: several
# gateway workers share one file, and a spend batch takes a few milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 5000
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def data_dir(settings: Settings) -> Path:
    """The data directory (`data_dir`, else $XDG_DATA_HOME/cloudgate or ~/.local/share/cloudgate), created."""
    if settings.data_dir:
        path = Path(settings.data_dir).expanduser()
    elif os.environ.get("XDG_DATA_HOME"):
        path = Path(os.environ["XDG_DATA_HOME"]) / "cloudgate"
    else:
        path = Path.home() / ".local" / "share" / "cloudgate"
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the store: `store.url`, else a SQLite file in the data directory."""
    if settings.store.url:
        return settings.store.url
    return f"sqlite+aiosqlite:///{data_dir(settings) / DATABASE_FILE}"


def is_sqlite(url: str) -> bool:
    """Whether `url` names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, schema: str | None = None, echo: bool = False) -> AsyncEngine:
    """An async engine for `url`: SQLite (WAL, busy timeout) or PostgreSQL via asyncpg (pooled).

    `schema` (PostgreSQL only) puts every table, the migration version table included, in that
    schema by setting the connections' `search_path`: tests isolate themselves this way, and a
    deployment can share one database with other applications.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if schema is not None:
            raise ValueError("a schema only applies to PostgreSQL")
        engine = create_async_engine(parsed, echo=echo)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername != "postgresql+asyncpg":
            parsed = parsed.set(drivername="postgresql+asyncpg")
        connect_args: dict[str, Any] = {}
        if schema is not None:
            connect_args["server_settings"] = {"search_path": validate_schema_name(schema)}
        return create_async_engine(
            parsed,
            echo=echo,
            connect_args=connect_args,
            # A gateway process holds few connections at once (auth lookups are cached and
            # spend is written in batches); overflow absorbs bursts of admin traffic.
            pool_size=5,
            max_overflow=10,
            pool_timeout=10,
            # Survive a database restart or an idle-connection reaper between requests.
            pool_pre_ping=True,
            pool_recycle=1800,
        )
    raise ValueError(f"unsupported store URL {parsed.render_as_string(hide_password=True)}")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on `engine`; objects stay readable after commit (no lazy reloads in async code)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def validate_schema_name(schema: str) -> str:
    """`schema` if it is a plain identifier (it is spliced into SQL), else ValueError."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    return schema


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (key lookups) run while a writer (spend batches) commits; NORMAL sync is
    # durable across application crashes and only risks the last commits on power loss, which
    # the spend journal covers. SQLite leaves foreign keys off unless asked, per connection.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
        enable_wal(cursor, SQLITE_BUSY_TIMEOUT_MS / 1000)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
