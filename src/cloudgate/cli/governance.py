"""`cloudgate teams|users|keys|budgets|limits|spend`: governance straight on the store.

Each command opens the store named by the settings (`--config`, the environment, or `--url`),
brings its schema up to date so a fresh install works, does one thing and prints the result.
Errors an administrator can fix (an unknown id, a taken name) end with a message and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import InvalidOperation
from functools import partial
from typing import Any, cast

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cloudgate.cli.common import settings_from_args, setup_logging
from cloudgate.cli.output import FORMATS, Column, emit
from cloudgate.gateway.frontdoors.admin_views import (
    REPORT_BY,
    budget_view,
    budgets_with_spend,
    conflict_message,
    created_key_view,
    key_view,
    limits_view,
    parse_when,
    spend_total,
    spend_view,
    team_view,
    user_view,
)
from cloudgate.governance.types import Limits, Period, Scope, provider_list, region_list, usd_to_micro
from cloudgate.store import UNSET, Conflict, Store, StoreError, upgrade
from cloudgate.store.common import Unset
from cloudgate.store.engine import database_url
from cloudgate.store.spend import ReportBy

Action = Callable[[Store, argparse.Namespace], Awaitable[int]]

SCOPES = [s.value for s in Scope]
PERIODS = [p.value for p in Period]
KEY_WARNING = "Copy this key now: it is stored only as a hash and cannot be shown again."
REGIONS_HELP = "serve only from these regions or geographies, such as eu,europe-west1 (comma-separated)"
PROVIDERS_HELP = "prefer these providers, first preferred: vertex, bedrock, anthropic (comma-separated)"
LOG_BODIES_HELP = "keep whole request and response bodies in the activity log (--no-log-bodies: do not)"

TEAM_COLUMNS: list[Column] = [
    ("ID", "id", ""),
    ("NAME", "name", ""),
    ("TAGS", "tags", ""),
    ("REGIONS", "allowed_regions", ""),
    ("PROVIDERS", "preferred_providers", ""),
    ("BODIES", "log_bodies", ""),
    ("CREATED", "created_at", "time"),
]
USER_COLUMNS: list[Column] = [
    ("ID", "id", ""),
    ("NAME", "name", ""),
    ("EMAIL", "email", ""),
    ("TEAM", "team_id", ""),
    ("TAGS", "tags", ""),
    ("CREATED", "created_at", "time"),
]
KEY_COLUMNS: list[Column] = [
    ("ID", "id", ""),
    ("NAME", "name", ""),
    ("PREFIX", "prefix", ""),
    ("USER", "user_id", ""),
    ("TEAM", "team_id", ""),
    ("ADMIN", "is_admin", ""),
    ("MODELS", "allowed_models", ""),
    ("REGIONS", "allowed_regions", ""),
    ("BODIES", "log_bodies", ""),
    ("EXPIRES", "expires_at", "time"),
    ("REVOKED", "revoked_at", "time"),
    ("LAST USED", "last_used_at", "time"),
]
BUDGET_COLUMNS: list[Column] = [
    ("ID", "id", ""),
    ("SCOPE", "scope", ""),
    ("OWNER", "scope_id", ""),
    ("PERIOD", "period", ""),
    ("BUDGET USD", "amount_usd", "usd"),
    ("SPENT USD", "spent_usd", "usd"),
    ("LEFT USD", "remaining_usd", "usd"),
]
LIMIT_COLUMNS: list[Column] = [
    ("SCOPE", "scope", ""),
    ("OWNER", "scope_id", ""),
    ("REQ/MIN", "requests_per_minute", "int"),
    ("IN TOK/MIN", "input_tokens_per_minute", "int"),
    ("OUT TOK/MIN", "output_tokens_per_minute", "int"),
    ("CONCURRENT", "max_concurrent", "int"),
]
SPEND_COLUMNS: list[Column] = [
    ("REQUESTS", "requests", "int"),
    ("ATTEMPTS", "attempts", "int"),
    ("INPUT", "input_tokens", "int"),
    ("OUTPUT", "output_tokens", "int"),
    ("CACHE WRITE 5M", "cache_write_5m_tokens", "int"),
    ("CACHE WRITE 1H", "cache_write_1h_tokens", "int"),
    ("CACHE READ", "cache_read_tokens", "int"),
    ("COST USD", "cost_usd", "usd"),
]


def add_parsers(sub: Any) -> None:
    """Register `teams`, `users`, `keys`, `budgets`, `limits` and `spend`."""
    _teams(sub)
    _users(sub)
    _keys(sub)
    _budgets(sub)
    _limits(sub)
    _spend(sub)


# -- running one action ----------------------------------------------------------------------------


def run_action(action: Action, args: argparse.Namespace) -> int:
    """Open the store, bring it up to date, run `action`; store errors exit 1 with their message."""
    overrides: dict[str, Any] = {"store": {"url": args.url}} if getattr(args, "url", None) else {}
    settings = settings_from_args(args, overrides)
    # Only warnings: the command's own output is what the administrator asked for.
    setup_logging("DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING")
    url = database_url(settings)
    try:
        return asyncio.run(_with_store(url, action, args))
    except Conflict as exc:
        raise SystemExit(f"cloudgate: {conflict_message(exc)}") from None
    except StoreError as exc:
        raise SystemExit(f"cloudgate: {exc}") from None
    except (SQLAlchemyError, OSError) as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise SystemExit(f"cloudgate: cannot use the store at {shown}: {exc}") from None


async def _with_store(url: str, action: Action, args: argparse.Namespace) -> int:
    await upgrade(url)
    store = Store.open(url)
    try:
        return await action(store, args)
    finally:
        await store.close()


def leaf(
    actions: Any, name: str, help_text: str, action: Action, *, formats: bool = True
) -> argparse.ArgumentParser:
    """A subcommand that runs `action` on the store, with --config, --url and (unless told) --format."""
    p: argparse.ArgumentParser = actions.add_parser(
        name, help=help_text, description=help_text[0].upper() + help_text[1:] + "."
    )
    p.add_argument("--config", "-c", help="settings file (default: $CLOUDGATE_CONFIG or ./cloudgate.yaml)")
    p.add_argument("--url", help="database URL (store.url; default: SQLite in the data directory)")
    if formats:
        p.add_argument(
            "--format", "-f", choices=FORMATS, default="table", help="output format (default: table)"
        )
    p.set_defaults(run=partial(run_action, action))
    return p


def group(sub: Any, name: str, help_text: str) -> Any:
    """A command made of actions (`teams create`, ...); returns where to add them."""
    p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
    return p.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def _tags(p: argparse.ArgumentParser, *, replace: bool = False) -> None:
    help_text = "replace the tags (repeatable)" if replace else "a tag (repeatable)"
    p.add_argument("--tag", action="append", dest="tags", metavar="TAG", help=help_text)


def _list_flag(p: argparse.ArgumentParser, name: str, help_text: str, *, clear: str | None = None) -> None:
    # Comma-separated and repeatable; on updates --no-NAME clears the list, as --no-email does.
    flags = p.add_mutually_exclusive_group() if clear else p
    flags.add_argument(f"--{name}", action="append", metavar="A,B", help=help_text)
    if clear:
        flags.add_argument(f"--no-{name}", action="store_true", help=clear)


def _checked(
    values: list[str] | None, flag: str, check: Callable[[Iterable[str]], list[str]]
) -> list[str] | None:
    """The comma-separated values a repeatable flag was given, checked; None if it was not given."""
    if values is None:
        return None
    try:
        return check(part.strip() for value in values for part in value.split(","))
    except ValueError as exc:
        raise SystemExit(f"cloudgate: {flag}: {exc}") from None


def _change(cleared: bool, values: list[str] | None) -> list[str] | Unset | None:
    """An update's value for a list that --no-... clears: None cleared, UNSET when left alone."""
    if cleared:
        return None
    return UNSET if values is None else values


def _log_bodies(p: argparse.ArgumentParser) -> None:
    # Unset (None) on an update leaves the setting alone.
    p.add_argument("--log-bodies", action=argparse.BooleanOptionalAction, help=LOG_BODIES_HELP)


def _done(message: str) -> int:
    print(message)
    return 0


# -- teams -------------------------------------------------------------------------------------------


def _teams(sub: Any) -> None:
    actions = group(sub, "teams", "manage teams")
    p = leaf(actions, "create", "create a team", _team_create)
    p.add_argument("name", help="the team's name (unique)")
    _tags(p)
    _list_flag(p, "regions", REGIONS_HELP)
    _list_flag(p, "providers", PROVIDERS_HELP)
    _log_bodies(p)
    leaf(actions, "list", "list teams", _team_list)
    p = leaf(actions, "update", "change a team", _team_update)
    p.add_argument("id", help="team id")
    p.add_argument("--name", help="new name")
    _tags(p, replace=True)
    _list_flag(p, "regions", REGIONS_HELP, clear="allow every region again")
    _list_flag(p, "providers", PROVIDERS_HELP, clear="drop the provider preference")
    _log_bodies(p)
    p = leaf(
        actions,
        "delete",
        "delete a team and its keys (members stay, without a team)",
        _team_delete,
        formats=False,
    )
    p.add_argument("id", help="team id")


async def _team_create(store: Store, args: argparse.Namespace) -> int:
    team = await store.teams.create(
        args.name,
        args.tags or (),
        allowed_regions=_checked(args.regions, "--regions", region_list),
        preferred_providers=_checked(args.providers, "--providers", provider_list),
        log_bodies=bool(args.log_bodies),
    )
    emit([team_view(team)], TEAM_COLUMNS, args.format)
    return 0


async def _team_update(store: Store, args: argparse.Namespace) -> int:
    team = await store.teams.update(
        args.id,
        name=args.name if args.name else UNSET,
        tags=args.tags if args.tags is not None else UNSET,
        allowed_regions=_change(args.no_regions, _checked(args.regions, "--regions", region_list)),
        preferred_providers=_change(
            args.no_providers, _checked(args.providers, "--providers", provider_list)
        ),
        log_bodies=UNSET if args.log_bodies is None else args.log_bodies,
    )
    emit([team_view(team)], TEAM_COLUMNS, args.format)
    return 0


async def _team_list(store: Store, args: argparse.Namespace) -> int:
    emit([team_view(t) for t in await store.teams.list()], TEAM_COLUMNS, args.format)
    return 0


async def _team_delete(store: Store, args: argparse.Namespace) -> int:
    if not await store.teams.delete(args.id):
        raise SystemExit(f"cloudgate: no team {args.id!r}")
    return _done(f"Deleted team {args.id}.")


# -- users -------------------------------------------------------------------------------------------


def _users(sub: Any) -> None:
    actions = group(sub, "users", "manage users")
    p = leaf(actions, "create", "create a user", _user_create)
    p.add_argument("name", help="the user's name (unique)")
    p.add_argument("--email", help="the user's email (unique)")
    p.add_argument("--team", help="team id")
    _tags(p)
    p = leaf(actions, "list", "list users", _user_list)
    p.add_argument("--team", help="only this team's members")
    p = leaf(actions, "update", "change a user", _user_update)
    p.add_argument("id", help="user id")
    p.add_argument("--name", help="new name")
    email = p.add_mutually_exclusive_group()
    email.add_argument("--email", help="new email")
    email.add_argument("--no-email", action="store_true", help="remove the email")
    team = p.add_mutually_exclusive_group()
    team.add_argument("--team", help="move to this team")
    team.add_argument("--no-team", action="store_true", help="take out of their team")
    _tags(p, replace=True)
    p = leaf(actions, "delete", "delete a user and their keys", _user_delete, formats=False)
    p.add_argument("id", help="user id")


async def _user_create(store: Store, args: argparse.Namespace) -> int:
    user = await store.users.create(args.name, email=args.email, team_id=args.team, tags=args.tags or ())
    emit([user_view(user)], USER_COLUMNS, args.format)
    return 0


async def _user_list(store: Store, args: argparse.Namespace) -> int:
    emit([user_view(u) for u in await store.users.list(team_id=args.team)], USER_COLUMNS, args.format)
    return 0


async def _user_update(store: Store, args: argparse.Namespace) -> int:
    user = await store.users.update(
        args.id,
        name=args.name if args.name else UNSET,
        email=None if args.no_email else (args.email if args.email else UNSET),
        team_id=None if args.no_team else (args.team if args.team else UNSET),
        tags=args.tags if args.tags is not None else UNSET,
    )
    emit([user_view(user)], USER_COLUMNS, args.format)
    return 0


async def _user_delete(store: Store, args: argparse.Namespace) -> int:
    if not await store.users.delete(args.id):
        raise SystemExit(f"cloudgate: no user {args.id!r}")
    return _done(f"Deleted user {args.id}.")


# -- keys --------------------------------------------------------------------------------------------


def _keys(sub: Any) -> None:
    actions = group(sub, "keys", "manage API keys")
    p = leaf(actions, "create", "issue a key (shown once)", _key_create)
    p.add_argument("--name", default="cli", help="a name to recognise the key by (default: cli)")
    p.add_argument("--user", help="owning user id")
    p.add_argument("--team", help="owning team id")
    p.add_argument("--admin", action="store_true", help="the key may use the admin API")
    p.add_argument(
        "--model", action="append", dest="models", metavar="M", help="allow only this model (repeatable)"
    )
    p.add_argument("--expires-in-days", type=float, metavar="N", help="the key stops working after N days")
    _list_flag(p, "regions", REGIONS_HELP)
    _log_bodies(p)
    _tags(p)
    p = leaf(actions, "list", "list keys (never the keys themselves)", _key_list)
    p.add_argument("--user", help="only this user's keys")
    p.add_argument("--team", help="only this team's keys")
    p.add_argument("--all", action="store_true", help="include revoked keys")
    p = leaf(actions, "update", "change a key", _key_update)
    p.add_argument("id", help="key id")
    p.add_argument("--name", help="new name")
    models = p.add_mutually_exclusive_group()
    models.add_argument(
        "--model", action="append", dest="models", metavar="M", help="allow only these models (repeatable)"
    )
    models.add_argument("--no-models", action="store_true", help="allow every model again")
    _list_flag(p, "regions", REGIONS_HELP, clear="allow every region again")
    _log_bodies(p)
    _tags(p, replace=True)
    p = leaf(actions, "revoke", "revoke a key", _key_revoke)
    p.add_argument("id", help="key id")
    p = leaf(actions, "rotate", "revoke a key and issue its replacement (shown once)", _key_rotate)
    p.add_argument("id", help="key id")


def _show_new_key(view: dict[str, Any], fmt: str, headline: str) -> int:
    if fmt == "json":
        emit([], KEY_COLUMNS, fmt, document=view)
    elif fmt == "csv":
        emit([view], [("KEY", "key", ""), *KEY_COLUMNS], fmt)
    else:
        # The key alone on its own line, so it is easy to copy, and warned about on stderr.
        print(headline)
        print(view["key"])
    print(KEY_WARNING, file=sys.stderr)
    return 0


async def _key_create(store: Store, args: argparse.Namespace) -> int:
    expires_at = None
    if args.expires_in_days is not None:
        if args.expires_in_days <= 0:
            raise SystemExit("cloudgate: --expires-in-days must be positive")
        expires_at = datetime.now(UTC) + timedelta(days=args.expires_in_days)
    created = await store.keys.create(
        args.name,
        user_id=args.user,
        team_id=args.team,
        is_admin=args.admin,
        allowed_models=args.models,
        allowed_regions=_checked(args.regions, "--regions", region_list),
        log_bodies=bool(args.log_bodies),
        tags=args.tags or (),
        expires_at=expires_at,
    )
    view = created_key_view(created)
    owner = f" for user {args.user}" if args.user else (f" for team {args.team}" if args.team else "")
    return _show_new_key(view, args.format, f"Created key {view['id']} ({view['name']}){owner}:")


async def _key_list(store: Store, args: argparse.Namespace) -> int:
    keys = await store.keys.list(user_id=args.user, team_id=args.team, include_revoked=args.all)
    emit([key_view(k) for k in keys], KEY_COLUMNS, args.format)
    return 0


async def _key_update(store: Store, args: argparse.Namespace) -> int:
    key = await store.keys.update(
        args.id,
        name=args.name if args.name else UNSET,
        allowed_models=_change(args.no_models, args.models),
        allowed_regions=_change(args.no_regions, _checked(args.regions, "--regions", region_list)),
        log_bodies=UNSET if args.log_bodies is None else args.log_bodies,
        tags=args.tags if args.tags is not None else UNSET,
    )
    emit([key_view(key)], KEY_COLUMNS, args.format)
    return 0


async def _key_revoke(store: Store, args: argparse.Namespace) -> int:
    key = await store.keys.get(args.id)
    if key is None:
        raise SystemExit(f"cloudgate: no key {args.id!r}")
    if key.revoked_at is not None or not await store.keys.revoke(key.id):
        raise SystemExit(f"cloudgate: key {args.id!r} is already revoked")
    if args.format == "table":
        return _done(f"Revoked key {args.id} ({key.name}).")
    revoked = await store.keys.get(key.id)
    assert revoked is not None
    emit([key_view(revoked)], KEY_COLUMNS, args.format)
    return 0


async def _key_rotate(store: Store, args: argparse.Namespace) -> int:
    key = await store.keys.get(args.id)
    if key is None:
        raise SystemExit(f"cloudgate: no key {args.id!r}")
    if key.revoked_at is not None:
        raise SystemExit(f"cloudgate: key {args.id!r} is revoked and cannot be rotated")
    created = await store.keys.rotate(key.id)
    view = {**created_key_view(created), "replaces": key.id}
    return _show_new_key(
        view, args.format, f"Revoked key {key.id}; its replacement is {view['id']} ({view['name']}):"
    )


# -- budgets and limits ------------------------------------------------------------------------------


def _owner_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--scope", choices=SCOPES, required=required, help="what the rule applies to")
    p.add_argument("--id", dest="scope_id", required=required, help="the key, user or team id")


def _budgets(sub: Any) -> None:
    actions = group(sub, "budgets", "manage spending budgets")
    p = leaf(actions, "set", "create or change the budget of a key, user or team for a period", _budget_set)
    _owner_args(p, required=True)
    p.add_argument(
        "--period", choices=PERIODS, default="monthly", help="how often it starts over (default: monthly)"
    )
    p.add_argument("--usd", required=True, help="the amount in US dollars")
    p = leaf(actions, "list", "list budgets with this period's spend", _budget_list)
    _owner_args(p, required=False)
    p = leaf(actions, "delete", "delete a budget", _budget_delete, formats=False)
    p.add_argument("id", help="budget id")


async def _budget_set(store: Store, args: argparse.Namespace) -> int:
    try:
        amount = usd_to_micro(args.usd)
    except (InvalidOperation, ValueError):
        raise SystemExit(f"cloudgate: --usd {args.usd!r} is not an amount of dollars") from None
    if amount < 0:
        raise SystemExit("cloudgate: --usd cannot be negative")
    rule = await store.budgets.set(Scope(args.scope), args.scope_id, Period(args.period), amount)
    emit([budget_view(rule)], BUDGET_COLUMNS[:5], args.format)
    return 0


async def _budget_list(store: Store, args: argparse.Namespace) -> int:
    scope = Scope(args.scope) if args.scope else None
    emit(await budgets_with_spend(store, scope, args.scope_id), BUDGET_COLUMNS, args.format)
    return 0


async def _budget_delete(store: Store, args: argparse.Namespace) -> int:
    if not await store.budgets.delete(args.id):
        raise SystemExit(f"cloudgate: no budget {args.id!r}")
    return _done(f"Deleted budget {args.id}.")


def _limits(sub: Any) -> None:
    actions = group(sub, "limits", "manage rate limits")
    p = leaf(actions, "set", "replace the rate limits of a key, user or team (unset: unlimited)", _limit_set)
    _owner_args(p, required=True)
    p.add_argument("--rpm", type=int, metavar="N", help="requests per minute")
    p.add_argument("--input-tpm", type=int, metavar="N", help="input tokens per minute")
    p.add_argument("--output-tpm", type=int, metavar="N", help="output tokens per minute")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="requests in flight at once")
    p = leaf(actions, "list", "list rate limits", _limit_list)
    p.add_argument("--scope", choices=SCOPES, help="only limits of this scope")
    p = leaf(actions, "delete", "remove the rate limits of a key, user or team", _limit_delete, formats=False)
    _owner_args(p, required=True)


async def _limit_set(store: Store, args: argparse.Namespace) -> int:
    values = (args.rpm, args.input_tpm, args.output_tpm, args.max_concurrent)
    if all(v is None for v in values):
        raise SystemExit("cloudgate: give at least one of --rpm, --input-tpm, --output-tpm, --max-concurrent")
    if any(v is not None and v < 1 for v in values):
        raise SystemExit("cloudgate: limits must be at least 1")
    scoped = await store.limits.set(Scope(args.scope), args.scope_id, Limits(*values))
    emit([limits_view(scoped)], LIMIT_COLUMNS, args.format)
    return 0


async def _limit_list(store: Store, args: argparse.Namespace) -> int:
    rows = await store.limits.list(Scope(args.scope) if args.scope else None)
    emit([limits_view(s) for s in rows], LIMIT_COLUMNS, args.format)
    return 0


async def _limit_delete(store: Store, args: argparse.Namespace) -> int:
    if not await store.limits.delete(Scope(args.scope), args.scope_id):
        raise SystemExit(f"cloudgate: no limits for {args.scope} {args.scope_id!r}")
    return _done(f"Removed the limits of {args.scope} {args.scope_id}.")


# -- spend -------------------------------------------------------------------------------------------


def _spend(sub: Any) -> None:
    p = leaf(sub, "spend", "report requests, tokens and cost", _spend_report)
    p.add_argument("--by", choices=REPORT_BY, default="key", help="how to group (default: key)")
    p.add_argument("--since", default="7d", help="7d, 24h, 30m or an ISO 8601 date (default: 7d)")
    p.add_argument("--until", help="7d, 24h, 30m or an ISO 8601 date (default: now)")


async def _spend_report(store: Store, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        since = parse_when(args.since, "--since", now)
        until = parse_when(args.until, "--until", now) if args.until else None
    except ValueError as exc:
        raise SystemExit(f"cloudgate: {exc}") from None
    if until is not None and until <= since:
        raise SystemExit("cloudgate: --until must be later than --since")
    rows = [spend_view(r) for r in await store.spend.spend_report(cast(ReportBy, args.by), since, until)]
    total = spend_total(rows)
    columns: list[Column] = [(args.by.upper(), "group", ""), *SPEND_COLUMNS]
    document = {"by": args.by, "since": since.isoformat(), "until": until.isoformat() if until else None}
    emit(
        rows,
        columns,
        args.format,
        footer={"group": "total", **total},
        document={**document, "data": rows, "total": total},
    )
    return 0
