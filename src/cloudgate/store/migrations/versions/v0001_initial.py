"""Initial schema: teams, users, API keys, budgets, limits, spend.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Written out rather than imported from cloudgate.store.models: a migration must keep creating
# the schema of its own revision while the models move on.
_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "teams",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        _ts("created_at", nullable=False),
        sa.Column("tags", _json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
        sa.UniqueConstraint("name", name="uq_teams_name"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("team_id", sa.String(64), nullable=True),
        _ts("created_at", nullable=False),
        sa.Column("tags", _json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name="fk_users_team_id_teams", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_users_team_id", "users", ["team_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("team_id", sa.String(64), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("allowed_models", _json, nullable=True),
        sa.Column("tags", _json, nullable=False),
        _ts("created_at", nullable=False),
        _ts("expires_at"),
        _ts("revoked_at"),
        _ts("last_used_at"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_api_keys_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name="fk_api_keys_team_id_teams", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_index("ix_api_keys_team_id", "api_keys", ["team_id"])
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("scope_id", sa.String(64), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_budgets"),
        sa.UniqueConstraint("scope", "scope_id", "period", name="uq_budgets_scope_scope_id_period"),
        sa.CheckConstraint("scope IN ('key', 'user', 'team')", name="ck_budgets_scope"),
        sa.CheckConstraint("period IN ('daily', 'weekly', 'monthly', 'total')", name="ck_budgets_period"),
        sa.CheckConstraint("amount_micro >= 0", name="ck_budgets_amount"),
    )
    op.create_table(
        "limits",
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("scope_id", sa.String(64), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("input_tokens_per_minute", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens_per_minute", sa.BigInteger(), nullable=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("scope", "scope_id", name="pk_limits"),
        sa.CheckConstraint("scope IN ('key', 'user', 'team')", name="ck_limits_scope"),
    )
    op.create_table(
        "spend",
        sa.Column("request_id", sa.String(128), nullable=False),
        _ts("started_at", nullable=False),
        _ts("finished_at"),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("team_id", sa.String(64), nullable=True),
        sa.Column("frontdoor", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("upstream_model", sa.String(200), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_5m_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_1h_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_micro", sa.BigInteger(), nullable=False),
        sa.Column("reserved_micro", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("first_token_ms", sa.Float(), nullable=True),
        sa.Column("error_type", sa.String(100), nullable=True),
        sa.Column("session_id", sa.String(200), nullable=True),
        sa.Column("interrupted", sa.Boolean(), nullable=False),
        sa.Column("tags", _json, nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_spend"),
    )
    op.create_index("ix_spend_started_at", "spend", ["started_at"])
    op.create_index("ix_spend_key_id_started_at", "spend", ["key_id", "started_at"])
    op.create_index("ix_spend_user_id_started_at", "spend", ["user_id", "started_at"])
    op.create_index("ix_spend_team_id_started_at", "spend", ["team_id", "started_at"])


def downgrade() -> None:
    """Drop every table."""
    for table in ("spend", "limits", "budgets", "api_keys", "users", "teams"):
        op.drop_table(table)
