import sqlite3
import threading
import time
from pathlib import Path

import pytest

from cloudgate.util.sqlite import enable_wal


def _locked(path: Path) -> sqlite3.Connection:
    """A connection holding the exclusive lock of a rollback-journal database at `path`."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def _no_wait(path: Path) -> sqlite3.Connection:
    # busy_timeout 0: every "locked" comes back at once, as the WAL switch's sometimes does.
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    conn.execute("PRAGMA busy_timeout = 0")
    return conn


def test_the_switch_waits_for_another_connections_lock(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    holder = _locked(path)
    conn = _no_wait(path)
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("PRAGMA journal_mode = WAL")  # what happens without the retry
    release = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    enable_wal(conn, timeout_s=5)
    release.join()
    assert time.monotonic() - started >= 0.15
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_lock_held_past_the_timeout_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    holder = _locked(path)
    conn = _no_wait(path)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(conn, timeout_s=0.1)
    holder.execute("COMMIT")


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    class Cursor:
        calls = 0

        def execute(self, _sql: str) -> None:
            self.calls += 1
            raise sqlite3.OperationalError("disk I/O error")

    cursor = Cursor()
    with pytest.raises(sqlite3.OperationalError, match="disk"):
        enable_wal(cursor, timeout_s=5)
    assert cursor.calls == 1
