"""How the admin API and the governance commands show records: JSON-ready dicts, in dollars.

The API answers with these views and the CLI's `--format json` prints the same ones, so a
script sees one shape whichever way it asks.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudgate.governance.budgets import period_start
from cloudgate.governance.types import BudgetRule, Period, Scope, ScopedLimits, micro_to_usd, usd_to_micro
from cloudgate.store import Conflict, Store
from cloudgate.store.apikeys import CreatedKey, KeyInfo
from cloudgate.store.directory import TeamInfo, UserInfo
from cloudgate.store.spend import ReportBy, SpendReportRow

REPORT_BY: tuple[ReportBy, ...] = ("key", "user", "team", "model", "deployment", "day")
LIMIT_FIELDS = (
    "requests_per_minute",
    "input_tokens_per_minute",
    "output_tokens_per_minute",
    "max_concurrent",
)
_RELATIVE = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def iso(value: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 in UTC, or None."""
    if value is None:
        return None
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()


def team_view(team: TeamInfo) -> dict[str, Any]:
    """A team as JSON."""
    return {
        "id": team.id,
        "name": team.name,
        "tags": list(team.tags),
        "allowed_regions": _optional_list(team.allowed_regions),
        "preferred_providers": _optional_list(team.preferred_providers),
        "created_at": iso(team.created_at),
    }


def _optional_list(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


def user_view(user: UserInfo) -> dict[str, Any]:
    """A user as JSON."""
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "team_id": user.team_id,
        "tags": list(user.tags),
        "created_at": iso(user.created_at),
    }


def key_view(key: KeyInfo) -> dict[str, Any]:
    """A key as JSON: its prefix identifies it; the key itself and its hash are never shown."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "user_id": key.user_id,
        "team_id": key.team_id,
        "is_admin": key.is_admin,
        "allowed_models": _optional_list(key.allowed_models),
        "allowed_regions": _optional_list(key.allowed_regions),
        "tags": list(key.tags),
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
        "revoked_at": iso(key.revoked_at),
        "last_used_at": iso(key.last_used_at),
    }


def created_key_view(created: CreatedKey) -> dict[str, Any]:
    """A key just issued: its info plus the plaintext, which no later answer repeats."""
    return {"key": created.plaintext, **key_view(created.key)}


def budget_view(
    rule: BudgetRule, spent_micro: int | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """A budget as JSON, with what was spent in the current period when `spent_micro` is given."""
    view: dict[str, Any] = {
        "id": rule.budget_id,
        "scope": rule.scope.value,
        "scope_id": rule.scope_id,
        "period": rule.period.value,
        "amount_usd": micro_to_usd(rule.amount_micro),
    }
    if spent_micro is not None:
        start = period_start(rule.period, now or datetime.now(UTC))
        view["period_start"] = None if rule.period is Period.TOTAL else iso(start)
        view["spent_usd"] = micro_to_usd(spent_micro)
        view["remaining_usd"] = micro_to_usd(max(rule.amount_micro - spent_micro, 0))
    return view


def limits_view(scoped: ScopedLimits) -> dict[str, Any]:
    """A key's, user's or team's rate limits as JSON (null: unlimited)."""
    return {
        "scope": scoped.scope.value,
        "scope_id": scoped.scope_id,
        **{name: getattr(scoped.limits, name) for name in LIMIT_FIELDS},
    }


def spend_view(row: SpendReportRow) -> dict[str, Any]:
    """One row of a spend report as JSON."""
    return {
        "group": row.group,
        "requests": row.requests,
        "attempts": row.attempts,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cache_write_5m_tokens": row.cache_write_5m_tokens,
        "cache_write_1h_tokens": row.cache_write_1h_tokens,
        "cache_read_tokens": row.cache_read_tokens,
        "cost_usd": micro_to_usd(row.cost_micro),
    }


async def budgets_with_spend(
    store: Store, scope: Scope | None = None, scope_id: str | None = None
) -> list[dict[str, Any]]:
    """Budgets as JSON with the spend of their current period (shared with the CLI)."""
    now = datetime.now(UTC)
    out = []
    for rule in await store.budgets.list(scope, scope_id):
        since = None if rule.period is Period.TOTAL else period_start(rule.period, now)
        spent = await store.spend.spent_micro(rule.scope, rule.scope_id, since)
        out.append(budget_view(rule, spent, now))
    return out


_TAKEN = re.compile(r"\b(teams|users)[._](name|email)\b")


def conflict_message(exc: Conflict) -> str:
    """What a uniqueness conflict means, in words (the database's own words follow)."""
    found = _TAKEN.search(str(exc))
    if found is None:
        return f"conflicts with an existing record: {exc}"
    return f"a {found[1][:-1]} with this {found[2]} already exists ({exc})"


def parse_when(value: str, field: str, now: datetime | None = None) -> datetime:
    """`7d`, `24h`, `30m` (that long ago) or an ISO 8601 date or time (UTC unless it says)."""
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{field}: {value!r} is neither a duration (7d, 24h, 30m) nor an ISO 8601 date"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def spend_total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sum of spend rows (cost summed in micro-dollars, so it stays exact)."""
    total: dict[str, Any] = {name: sum(r[name] for r in rows) for name in _SPEND_COUNTS}
    total["cost_usd"] = micro_to_usd(sum(usd_to_micro(r["cost_usd"]) for r in rows))
    return total


_SPEND_COUNTS = (
    "requests",
    "attempts",
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
)
