"""The store's tables as SQLAlchemy models: teams, users, API keys, budgets, limits, spend, activity.

The migrations under `migrations/versions` are the schema's source of truth for databases;
these models must match them (a test compares the two).
"""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

_ALPHABET = string.ascii_letters + string.digits
ID_RANDOM_CHARS = 16  # ~95 bits: unguessable and collision-free without a database round trip


def new_id(prefix: str) -> str:
    """A fresh id such as `team_3fK9...`: the prefix tells what it names in logs and URLs."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(ID_RANDOM_CHARS))


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so values are stored as naive UTC
    (its text form then sorts and compares correctly) and come back with UTC attached.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (compact, comparable); JSON text elsewhere.
JsonType = JSON().with_variant(JSONB(), "postgresql")

# Named constraints: SQLite's batch migrations recreate tables and can only drop or alter
# constraints they can name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SCOPES = ("key", "user", "team")
PERIODS = ("daily", "weekly", "monthly", "total")


class Base(DeclarativeBase):
    """The declarative base of every store table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UtcDateTime}


class Team(Base):
    """A group of users and keys that can share a budget and limits."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    allowed_regions: Mapped[list[str] | None] = mapped_column(JsonType)  # None: anywhere
    # Providers in order of preference, first preferred; None: no preference.
    preferred_providers: Mapped[list[str] | None] = mapped_column(JsonType)
    # Keep request and response bodies in the activity log for every key of the team.
    log_bodies: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class User(Base):
    """A person (or service) that owns keys, optionally in a team."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    # Deleting a team leaves its members as users without a team.
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)


class ApiKey(Base):
    """A caller's key; only its SHA-256 is stored, never the key itself."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    # A key dies with its owner; the spend log keeps its id (it has no foreign keys).
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    allowed_models: Mapped[list[str] | None] = mapped_column(JsonType)  # None: any model
    allowed_regions: Mapped[list[str] | None] = mapped_column(JsonType)  # None: anywhere
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    # Keep request and response bodies in the activity log for this key's requests.
    log_bodies: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Budget(Base):
    """A spending cap for one key, user or team over a period."""

    __tablename__ = "budgets"
    __table_args__ = (
        UniqueConstraint("scope", "scope_id", "period"),
        CheckConstraint("scope IN ('key', 'user', 'team')", name="scope"),
        CheckConstraint("period IN ('daily', 'weekly', 'monthly', 'total')", name="period"),
        CheckConstraint("amount_micro >= 0", name="amount"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(8))
    scope_id: Mapped[str] = mapped_column(String(64))
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Limit(Base):
    """Rate limits for one key, user or team; a None column means unlimited."""

    __tablename__ = "limits"
    __table_args__ = (CheckConstraint("scope IN ('key', 'user', 'team')", name="scope"),)

    # At most one row of limits per key, user or team.
    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    scope_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    input_tokens_per_minute: Mapped[int | None] = mapped_column(BigInteger)
    output_tokens_per_minute: Mapped[int | None] = mapped_column(BigInteger)
    max_concurrent: Mapped[int | None] = mapped_column(Integer)


class Spend(Base):
    """One request's usage and cost (see `cloudgate.governance.types.SpendEntry`)."""

    __tablename__ = "spend"
    # (owner, started_at) indexes serve both "this key's requests" and the budget-seeding sums
    # over a window; no foreign keys, so spend outlives deleted keys and writes stay cheap.
    __table_args__ = (
        Index("ix_spend_key_id_started_at", "key_id", "started_at"),
        Index("ix_spend_user_id_started_at", "user_id", "started_at"),
        Index("ix_spend_team_id_started_at", "team_id", "started_at"),
    )

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(index=True)
    finished_at: Mapped[datetime | None] = mapped_column()
    key_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64))
    team_id: Mapped[str | None] = mapped_column(String(64))
    frontdoor: Mapped[str] = mapped_column(String(32), default="")
    provider: Mapped[str] = mapped_column(String(32), default="")
    model: Mapped[str] = mapped_column(String(200), default="")
    upstream_model: Mapped[str] = mapped_column(String(200), default="")
    region: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_5m_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_1h_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    first_token_ms: Mapped[float | None] = mapped_column(Float)
    error_type: Mapped[str | None] = mapped_column(String(100))
    session_id: Mapped[str | None] = mapped_column(String(200))
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    # Server defaults so rows written before these columns existed read as one plain attempt.
    deployment: Mapped[str] = mapped_column(String(200), default="", server_default="")
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class Activity(Base):
    """One request in the activity log (see `cloudgate.activity.ActivityEntry`, whose fields these are)."""

    __tablename__ = "activity"
    # Each filter the log is read by, paired with time: the reader pages newest first within it.
    # No foreign keys: entries outlive deleted keys, users and teams, and writes stay cheap.
    __table_args__ = (
        Index("ix_activity_key_id_started_at", "key_id", "started_at"),
        Index("ix_activity_user_id_started_at", "user_id", "started_at"),
        Index("ix_activity_team_id_started_at", "team_id", "started_at"),
        Index("ix_activity_session_id_started_at", "session_id", "started_at"),
        Index("ix_activity_model_started_at", "model", "started_at"),
        Index("ix_activity_status_started_at", "status", "started_at"),
    )

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(index=True)
    finished_at: Mapped[datetime | None] = mapped_column()
    key_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64))
    team_id: Mapped[str | None] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(200))
    frontdoor: Mapped[str] = mapped_column(String(32))
    operation: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(32))
    deployment: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(200))
    upstream_model: Mapped[str] = mapped_column(String(200))
    stream: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[int] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    stop_reason: Mapped[str | None] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_write_5m_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_write_1h_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_micro: Mapped[int | None] = mapped_column(BigInteger)
    latency_ms: Mapped[float] = mapped_column(Float)
    first_token_ms: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JsonType)
    betas: Mapped[list[str]] = mapped_column(JsonType)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_headers: Mapped[dict[str, str]] = mapped_column(JsonType)
    request_body: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[str | None] = mapped_column(Text)
    bodies_truncated: Mapped[bool] = mapped_column(Boolean)


# -- report rollups (see cloudgate.store.reports and docs/decisions/0029-console-reports.md) ---------

# Log-scale histogram buckets of a duration in ms: bucket 0 holds [0, 1), bucket i holds
# [2^((i-1)/3), 2^(i/3)) (three buckets per doubling), the last one everything from 2^(62/3) ms
# (about 28 minutes) up.
HISTOGRAM_BUCKETS = 64
TTFT_COLUMNS = tuple(f"ttft_h{i:02d}" for i in range(HISTOGRAM_BUCKETS))
LATENCY_COLUMNS = tuple(f"latency_h{i:02d}" for i in range(HISTOGRAM_BUCKETS))
HOURLY_SUMS = (
    "requests",
    "errors",
    "rate_limited",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_micro",
)
DAILY_SUMS = (
    "requests",
    "cost_micro",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)


def _counter(name: str) -> Column[int]:
    return Column(name, BigInteger, nullable=False)


# Per UTC hour and deployment: traffic, errors, tokens, cost and the time-to-first-token and
# latency histograms; written with the spend rows, in the same transaction.
spend_hourly = Table(
    "spend_hourly",
    Base.metadata,
    Column("hour", UtcDateTime, primary_key=True),
    Column("deployment", String(200), primary_key=True),
    Column("provider", String(32), primary_key=True),
    Column("region", String(64), primary_key=True),
    *(_counter(name) for name in HOURLY_SUMS + TTFT_COLUMNS + LATENCY_COLUMNS),
)

# Per UTC day, key, user, team and model ("" for none): spend per day by owner or model, and
# budget windows (which start at UTC midnight).
spend_daily = Table(
    "spend_daily",
    Base.metadata,
    Column("day", Date, primary_key=True),
    Column("key_id", String(64), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("team_id", String(64), primary_key=True),
    Column("model", String(200), primary_key=True),
    *(_counter(name) for name in DAILY_SUMS),
    Index("ix_spend_daily_key_id_day", "key_id", "day"),
    Index("ix_spend_daily_user_id_day", "user_id", "day"),
    Index("ix_spend_daily_team_id_day", "team_id", "day"),
)


class ConsoleSessionRow(Base):
    """One signed-in browser of the web console (`cloudgate.console`); `token_hash` is the
    SHA-256 of the cookie's token, which is never stored."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64), index=True)  # "admin" or the store key used
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
