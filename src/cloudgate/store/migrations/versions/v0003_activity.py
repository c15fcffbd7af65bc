"""The activity log table, and the log_bodies flags on keys and teams.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# As in 0001: written out, so this revision keeps meaning what it meant when the models move on.
_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# Each filter the activity log is read by, paired with time.
_INDEXED = ("key_id", "user_id", "team_id", "session_id", "model", "status")


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create the activity table and add the log_bodies flags."""
    op.create_table(
        "activity",
        sa.Column("request_id", sa.String(128), nullable=False),
        _ts("started_at", nullable=False),
        _ts("finished_at"),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("team_id", sa.String(64), nullable=True),
        sa.Column("session_id", sa.String(200), nullable=True),
        sa.Column("frontdoor", sa.String(32), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("upstream_model", sa.String(200), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("stop_reason", sa.String(64), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_5m_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_1h_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_micro", sa.BigInteger(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("first_token_ms", sa.Float(), nullable=True),
        sa.Column("attempts", _json, nullable=False),
        sa.Column("betas", _json, nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("request_headers", _json, nullable=False),
        sa.Column("request_body", sa.Text(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("bodies_truncated", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_activity"),
    )
    op.create_index("ix_activity_started_at", "activity", ["started_at"])
    for column in _INDEXED:
        op.create_index(f"ix_activity_{column}_started_at", "activity", [column, "started_at"])
    # Existing keys and teams keep bodies out of the log, as before.
    for table in ("api_keys", "teams"):
        op.add_column(table, sa.Column("log_bodies", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    """Drop what `upgrade` added."""
    # Plain DROP COLUMN, as in 0002: batch mode's table copy would cascade through foreign keys.
    op.drop_column("teams", "log_bodies")
    op.drop_column("api_keys", "log_bodies")
    op.drop_table("activity")
