"""Engine set-up: where the default database lives, SQLite PRAGMAs, URL and schema checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from cloudgate.config.settings import Settings, StoreSettings
from cloudgate.store.engine import SQLITE_BUSY_TIMEOUT_MS, create_engine, database_url, validate_schema_name


def test_url_from_settings_wins() -> None:
    url = "postgresql+asyncpg://u@db.example/cloudgate"
    assert database_url(Settings(store=StoreSettings(url=url))) == url


def test_default_sqlite_in_data_dir(tmp_path: Path) -> None:
    url = database_url(Settings(data_dir=str(tmp_path / "data")))
    assert url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'cloudgate.db'}"
    assert (tmp_path / "data").is_dir()


def test_default_data_dir_follows_xdg_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert (
        database_url(Settings()) == f"sqlite+aiosqlite:///{tmp_path / 'xdg' / 'cloudgate' / 'cloudgate.db'}"
    )
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".local" / "share" / "cloudgate"
    assert database_url(Settings()) == f"sqlite+aiosqlite:///{expected / 'cloudgate.db'}"
    assert expected.is_dir()


async def test_sqlite_pragmas_on_every_connection(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await conn.scalar(text("PRAGMA foreign_keys")) == 1
            assert await conn.scalar(text("PRAGMA busy_timeout")) == SQLITE_BUSY_TIMEOUT_MS
            assert await conn.scalar(text("PRAGMA synchronous")) == 1  # NORMAL
    finally:
        await engine.dispose()


def test_bad_urls_and_schemas_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        create_engine("mysql+aiomysql://u@h/db")
    with pytest.raises(ValueError, match="only applies to PostgreSQL"):
        create_engine("sqlite+aiosqlite://", schema="s")
    for bad in ('x"; DROP TABLE teams; --', "a b", "", "1abc", "a" * 64):
        with pytest.raises(ValueError):
            validate_schema_name(bad)
    assert validate_schema_name("t_0123abcd") == "t_0123abcd"


def test_postgresql_driver_is_asyncpg() -> None:
    engine = create_engine("postgresql://u@127.0.0.1/db")
    assert engine.dialect.driver == "asyncpg"
    assert engine.pool.size() == 5  # type: ignore[attr-defined]
