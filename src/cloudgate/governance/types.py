"""The shared vocabulary of governance: principals, limits, budgets, spend entries.

Money is always an integer number of micro-dollars (1 USD = 1_000_000): sums stay exact under
any number of small requests, in memory, in Redis and in SQL.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

MICRO = 1_000_000

# The upstreams a team may prefer, in the names the settings use.
PROVIDERS = ("vertex", "bedrock", "anthropic")
MAX_REGION_LENGTH = 64
# Region names (europe-west1, eu-west-1) and geographies (eu, us, global) alike, in the clouds'
# own lower-case spelling: the router matches them as written against its deployments' places.
_REGION_NAME = re.compile(r"[a-z0-9-]+")


def usd_to_micro(usd: float | str) -> int:
    """Dollars (as typed by an administrator) to micro-dollars, rounded to the nearest."""
    from decimal import ROUND_HALF_UP, Decimal

    return int((Decimal(str(usd)) * MICRO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def micro_to_usd(micro: int) -> float:
    """Micro-dollars to dollars, for display."""
    return micro / MICRO


def region_list(values: Iterable[str]) -> list[str]:
    """A region allow-list checked and without repeats; ValueError naming the first bad value."""
    regions: list[str] = []
    for value in values:
        if not value:
            raise ValueError("a region cannot be empty")
        if len(value) > MAX_REGION_LENGTH or not _REGION_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a region: use lower-case letters, digits and '-', "
                f"at most {MAX_REGION_LENGTH} characters (such as eu, europe-west1, eu-west-1)"
            )
        if value not in regions:
            regions.append(value)
    if not regions:
        # An empty allow-list would lock the key or team out entirely; null is "anywhere".
        raise ValueError("name at least one region (null, or no list, allows any)")
    return regions


def provider_list(values: Iterable[str]) -> list[str]:
    """A provider preference checked and without repeats, first preferred; ValueError if bad."""
    providers: list[str] = []
    for value in values:
        if value not in PROVIDERS:
            raise ValueError(f"{value!r} is not a provider (expected one of: {', '.join(PROVIDERS)})")
        if value not in providers:
            providers.append(value)
    if not providers:
        raise ValueError("name at least one provider (null, or no list, means no preference)")
    return providers


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
    `limits` and `budgets` listed apply at once. Likewise every set in `allowed_regions` (the
    key's, the team's) must admit the region a request is served from; an empty tuple means any.
    `preferred_providers` is the team's order of preference, first preferred; empty: no preference.
    `log_bodies` is set when the key or its team asks for bodies in the activity log.
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
    allowed_regions: tuple[frozenset[str], ...] = ()
    preferred_providers: tuple[str, ...] = ()
    # Keep full request and response bodies in the activity log (the key's or its team's wish).
    log_bodies: bool = False


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
    deployment: str = ""  # the deployment that served the request
    # Upstream requests made for this one, failovers included; 0 when refused before any.
    attempts: int = 1
