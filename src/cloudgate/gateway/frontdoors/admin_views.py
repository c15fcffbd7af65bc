"""How the admin API and the governance commands show records: JSON-ready dicts, in dollars.

The API answers with these views and the CLI's `--format json` prints the same ones, so a
script sees one shape whichever way it asks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cloudgate.activity.entry import ActivityEntry, ActivityFilter
from cloudgate.governance.budgets import period_start
from cloudgate.governance.types import BudgetRule, Period, Scope, ScopedLimits, micro_to_usd, usd_to_micro
from cloudgate.protocol.sse import SSEParser
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
        "log_bodies": team.log_bodies,
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
        "log_bodies": key.log_bodies,
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


_TOKEN_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
)
_SPEND_COUNTS = ("requests", "attempts", *_TOKEN_COUNTS)


# -- the activity log --------------------------------------------------------------------------------

# The filters that name one thing, by their names in the admin API's query (the CLI maps its flags).
LOG_FILTERS = ("key_id", "user_id", "team_id", "model", "session_id", "provider", "deployment")
_BODY_FIELDS = ("request_headers", "request_body", "response_body")


def log_filter(
    values: Mapping[str, str | None],
    *,
    errors_only: bool = False,
    now: datetime | None = None,
    label: Callable[[str], str] = str,
) -> ActivityFilter:
    """The activity filter that `since`, `until`, `status` and the `LOG_FILTERS` ask for.

    A bad time or status is a ValueError that names the parameter as `label` calls it.
    """
    now = now or datetime.now(UTC)
    since = parse_when(text, label("since"), now) if (text := values.get("since")) else None
    until = parse_when(text, label("until"), now) if (text := values.get("until")) else None
    if since is not None and until is not None and until <= since:
        raise ValueError(f"{label('until')}: must be later than {label('since')}")
    status = None
    if code := (values.get("status") or "").strip():
        if not (code.isdigit() and 100 <= int(code) <= 599):
            raise ValueError(f"{label('status')}: {code!r} is not an HTTP status (100 to 599)")
        status = int(code)
    picked = {name: values.get(name) or None for name in LOG_FILTERS}
    return ActivityFilter(since=since, until=until, status=status, errors_only=errors_only, **picked)


def log_view(entry: ActivityEntry) -> dict[str, Any]:
    """Everything about one request as JSON, bodies and headers included, with its cost in dollars."""
    view = entry.as_dict()
    view["cost_usd"] = None if entry.cost_micro is None else micro_to_usd(entry.cost_micro)
    return view


def log_summary_view(entry: ActivityEntry) -> dict[str, Any]:
    """One request as JSON for listings: no headers or bodies, only whether bodies were kept."""
    view = log_view(entry)
    for name in _BODY_FIELDS:
        del view[name]
    view["bodies_kept"] = entry.request_body is not None or entry.response_body is not None
    return view


def session_view(session_id: str, entries: Sequence[ActivityEntry]) -> dict[str, Any]:
    """A Claude Code session as one conversation: its requests in order, what was said when bodies
    were kept (the last user message, the assistant's text), and the totals."""
    turns = []
    for entry in entries:
        turn = log_summary_view(entry)
        turn["user_text"] = last_user_text(entry.request_body)
        turn["assistant_text"] = assistant_text(entry.response_body)
        turns.append(turn)
    # Failed as the log's error filter counts it: an error status, or a stream that broke after its 200.
    errors = sum(e.status >= 400 or e.error_type is not None for e in entries)
    total: dict[str, Any] = {"requests": len(entries), "errors": errors}
    total.update({name: sum(getattr(e, name) or 0 for e in entries) for name in _TOKEN_COUNTS})
    total["cost_usd"] = micro_to_usd(sum(e.cost_micro or 0 for e in entries))
    return {
        "session_id": session_id,
        "started_at": iso(entries[0].started_at) if entries else None,
        "finished_at": iso(max((e.finished_at or e.started_at) for e in entries)) if entries else None,
        "turns": turns,
        "total": total,
    }


def _blocks_text(content: Any) -> list[str]:
    """The readable parts of a message's content: text, and a mark for each other kind of block."""
    if isinstance(content, str):
        return [content]
    parts: list[str] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif kind == "tool_result":
            inner = "\n".join(_blocks_text(block.get("content")))
            parts.append(f"[tool result] {inner}".rstrip())
        elif kind == "tool_use":
            parts.append(f"[tool use: {block.get('name', '?')}]")
        elif kind in ("image", "document"):
            parts.append(f"[{kind}]")
    return parts


def last_user_text(request_body: str | None) -> str | None:
    """The last user message of a kept Messages request body; None when there is none to read."""
    if not request_body:
        return None
    try:
        body = orjson.loads(request_body)
    except orjson.JSONDecodeError:
        return None  # cut short or not JSON: nothing trustworthy to show
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return "\n".join(_blocks_text(message.get("content")))
    return None


def assistant_text(response_body: str | None) -> str | None:
    """What the assistant said in a kept response: a whole Message JSON, or a stream (SSE, or a
    Bedrock event stream kept as JSON lines) whose text deltas are put back together; None for
    errors and bodies that are none of these."""
    if not response_body:
        return None
    if response_body.lstrip().startswith("{"):
        try:
            message = orjson.loads(response_body)
        except orjson.JSONDecodeError:
            events = [_json_or_none(line.encode()) for line in response_body.splitlines()]
        else:
            if not isinstance(message, dict) or message.get("type") != "message":
                return None
            return "\n".join(part for part in _blocks_text(message.get("content")) if part)
    else:
        parser = SSEParser()
        events = [_json_or_none(e.data) for e in parser.feed(response_body.encode()) + parser.close()]
    return _streamed_text(events)


def _json_or_none(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None  # a stream cut short ends mid-event


def _streamed_text(events: list[Any]) -> str | None:
    blocks: dict[int, list[str]] = {}
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("index", 0), int):
            continue
        index = event.get("index", 0)
        if event.get("type") == "content_block_start":
            blocks[index] = _blocks_text([event.get("content_block")])
        elif event.get("type") == "content_block_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                blocks.setdefault(index, []).append(str(delta.get("text", "")))
    if not blocks:
        return None
    return "\n".join(part for i in sorted(blocks) if (part := "".join(blocks[i])))
