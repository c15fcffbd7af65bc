"""Region allow-lists on keys and teams, provider preference on teams, deployment and attempts in spend.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# As in 0001: written out, so this revision keeps meaning what it meant when the models move on.
# Only columns are added, which SQLite does in place: even a large spend table upgrades at once.
_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Add the residency columns and the spend log's deployment and attempts."""
    op.add_column("api_keys", sa.Column("allowed_regions", _json, nullable=True))
    op.add_column("teams", sa.Column("allowed_regions", _json, nullable=True))
    op.add_column("teams", sa.Column("preferred_providers", _json, nullable=True))
    # Rows from before failover existed were served by one upstream request, from an unnamed place.
    op.add_column("spend", sa.Column("deployment", sa.String(200), nullable=False, server_default=""))
    op.add_column("spend", sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    """Drop what `upgrade` added."""
    # Plain DROP COLUMN (SQLite 3.35+), never batch mode's table copy: on SQLite, dropping the old
    # teams table would fire ON DELETE CASCADE / SET NULL and take keys and memberships with it.
    op.drop_column("spend", "attempts")
    op.drop_column("spend", "deployment")
    op.drop_column("teams", "preferred_providers")
    op.drop_column("teams", "allowed_regions")
    op.drop_column("api_keys", "allowed_regions")
