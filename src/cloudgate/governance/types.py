"""The shared vocabulary of governance: principals, limits, budgets, spend entries.

Money is always an integer number of micro-dollars (1 USD = 1_000_000): sums stay exact under
any number of small requests, in memory, in Redis and in SQL.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

MICRO = 1_000_000


def usd_to_micro(usd: float | str) -> int:
    """Dollars (as typed by an administrator) to micro-dollars, rounded to the nearest."""
    from decimal import ROUND_HALF_UP, Decimal

    return int((Decimal(str(usd)) * MICRO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def micro_to_usd(micro: int) -> float:
    """Micro-dollars to dollars, for display."""
    return micro / MICRO


class Scope(enum.StrEnum):
    """What a budget or a limit applies to."""

    KEY = "key"
    USER = "user"
    TEAM = "team"


class Period(enum.StrEnum):
    """How often a budget starts over."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    TOTAL = "total"


@dataclass(slots=True, frozen=True)
class Limits:
    """Rate limits; None means unlimited."""

    requests_per_minute: int | None = None
    input_tokens_per_minute: int | None = None
    output_tokens_per_minute: int | None = None
    max_concurrent: int | None = None


@dataclass(slots=True, frozen=True)
class ScopedLimits:
    """Limits that belong to one key, user or team."""

    scope: Scope
    scope_id: str
    limits: Limits


@dataclass(slots=True, frozen=True)
class BudgetRule:
    """A spending cap for one key, user or team over a period."""

    budget_id: str
    scope: Scope
    scope_id: str
    amount_micro: int
    period: Period


@dataclass(slots=True, frozen=True)
class Principal:
    """An authenticated caller and everything that constrains it.

    A key's effective limits are the tightest of its own, its user's and its team's: all the
    `limits` and `budgets` listed apply at once.
    """

    key_id: str
    key_prefix: str
    user_id: str | None = None
    team_id: str | None = None
    is_admin: bool = False
    allowed_models: frozenset[str] | None = None  # None: any model
    limits: tuple[ScopedLimits, ...] = ()
    budgets: tuple[BudgetRule, ...] = ()
    expires_at: datetime | None = None
    tags: tuple[str, ...] = ()


@dataclass(slots=True)
class SpendEntry:
    """One request's spend, as written to the spend log."""

    request_id: str
    started_at: datetime
    key_id: str | None
    user_id: str | None = None
    team_id: str | None = None
    frontdoor: str = ""
    provider: str = ""
    model: str = ""  # as the caller named it
    upstream_model: str = ""
    region: str = ""
    status: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    cost_micro: int = 0
    reserved_micro: int = 0
    latency_ms: float | None = None
    first_token_ms: float | None = None
    error_type: str | None = None
    session_id: str | None = None
    # True when the gateway died before the answer finished: cost is the reserved cost.
    interrupted: bool = False
    finished_at: datetime | None = None
    tags: list[str] = field(default_factory=list)
