"""Alembic's environment: runs on the connection `cloudgate.store.migrate` hands over.

The async engines cannot be driven by Alembic directly, so `migrate` opens an async connection
and calls Alembic inside `run_sync`, passing the synchronous facade in `config.attributes`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from cloudgate.store.models import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run cloudgate's migrations through cloudgate.store.migrate (or `cloudgate db`)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite can barely ALTER TABLE: batch mode copies the table to change it.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
