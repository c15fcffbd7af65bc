"""Opening SQLite files that several processes share.

Switching a database to WAL needs an exclusive lock for a moment. When two processes open a new
file at once (the workers of one `serve`, or a test's children), the loser's
`PRAGMA journal_mode = WAL` can fail with "database is locked" at once: SQLite does not always
call the busy handler for that lock. So the switch is retried here until `timeout_s` has passed.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

_RETRY_PAUSE_S = 0.01


def enable_wal(cursor: Any, timeout_s: float) -> None:
    """Put the database of `cursor` (a DB-API cursor or sqlite3 connection) in WAL mode.

    Retries while another connection holds the lock, up to `timeout_s`; then the last error.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as exc:  # sqlite3's, or a driver adapter's copy of it
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(_RETRY_PAUSE_S)


def _is_busy(exc: Exception) -> bool:
    if not isinstance(exc, sqlite3.OperationalError) and type(exc).__name__ != "OperationalError":
        return False
    text = str(exc).lower()
    return "locked" in text or "busy" in text
