"""Alembic migration scripts, shipped with the package and run by `cloudgate.store.migrate`."""
