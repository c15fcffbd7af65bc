"""Activity tests that touch the store run on SQLite and PostgreSQL, like the store's own."""

from tests.store.conftest import database, store  # noqa: F401 - the fixtures, shared
