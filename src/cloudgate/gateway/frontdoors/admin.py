"""The admin API under `/admin/v1/`: teams, users, keys, budgets, limits, spend and the activity
log, as JSON (and the log's export as JSON lines or CSV, streamed).

One route table drives both the dispatcher and the OpenAPI document, so neither can list a
route the other does not know. The caller has already authenticated the request as an admin.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

import orjson

from cloudgate.activity.entry import ActivityEntry, ActivityFilter
from cloudgate.activity.export import EXPORT_FORMATS, MEDIA_TYPES, ExportFormat, export_lines
from cloudgate.gateway.frontdoors.admin_openapi import openapi_document
from cloudgate.gateway.frontdoors.admin_views import (
    LIMIT_FIELDS,
    REPORT_BY,
    budget_view,
    budgets_with_spend,
    conflict_message,
    created_key_view,
    iso,
    key_view,
    limits_view,
    log_filter,
    log_summary_view,
    log_view,
    parse_when,
    session_view,
    spend_total,
    spend_view,
    team_view,
    user_view,
)
from cloudgate.gateway.http import BodyTooLarge, ClientGone, read_body, send_response
from cloudgate.gateway.proxy import DisconnectWatch
from cloudgate.gateway.routes import match_path
from cloudgate.gateway.types import Receive, Send
from cloudgate.gateway.types import Scope as AsgiScope
from cloudgate.governance.types import Limits, Period, Scope, usd_to_micro
from cloudgate.store import UNSET, Conflict, Invalid, NotFound, Store
from cloudgate.store.apikeys import KeyInfo
from cloudgate.store.common import Unset
from cloudgate.store.spend import ReportBy

PREFIX = "/admin/v1"
MAX_BODY_BYTES = 1 << 20
LOG_PAGE_DEFAULT, LOG_PAGE_MAX = 100, 1000
# An export goes out in chunks of about this size rather than one send per entry.
STREAM_CHUNK_BYTES = 64 * 1024


class AdminError(Exception):
    """An answer other than success: status, error type and a message for the administrator."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def invalid(message: str) -> AdminError:
    """A 400 for a request the administrator can fix."""
    return AdminError(400, "invalid_request_error", message)


def not_found(message: str) -> AdminError:
    """A 404 for an unknown id or path."""
    return AdminError(404, "not_found_error", message)


# -- reading requests -----------------------------------------------------------------------------


@dataclass(slots=True)
class Streamed:
    """An answer sent as it is produced, with chunked transfer encoding, instead of one JSON value."""

    media_type: str
    chunks: AsyncGenerator[bytes, None]
    filename: str


@dataclass(slots=True)
class Request:
    """One admin request: path parameters, query and (for writes) the JSON object body."""

    params: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]


class Body:
    """Typed access to a JSON body that names the offending field in every error."""

    def __init__(self, data: dict[str, Any], allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise invalid(f"{unknown[0]}: unknown field (expected one of: {', '.join(allowed)})")
        self.data = data

    def has(self, name: str) -> bool:
        """Whether the body sets `name` at all (null included)."""
        return name in self.data

    def string(self, name: str, *, required: bool = False, nullable: bool = False) -> str | None:
        """A non-empty string."""
        value = self.data.get(name)
        if value is None:
            if required:
                raise invalid(f"{name}: required")
            if name in self.data and not nullable:
                raise invalid(f"{name}: must be a string, not null")
            return None
        if not isinstance(value, str) or not value.strip():
            raise invalid(f"{name}: must be a non-empty string")
        return value.strip()

    def strings(self, name: str, *, nullable: bool = False) -> list[str] | None:
        """A list of non-empty strings."""
        value = self.data.get(name)
        if value is None:
            if name in self.data and not nullable:
                raise invalid(f"{name}: must be a list of strings, not null")
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise invalid(f"{name}: must be a list of non-empty strings")
        return [v.strip() for v in value]

    def nullable_strings(self, name: str) -> list[str] | Unset | None:
        """For PATCH: a list of non-empty strings, None for null (clear), UNSET when left out."""
        values = self.strings(name, nullable=True)
        return values if self.has(name) else UNSET

    def boolean(self, name: str) -> bool | None:
        """true or false."""
        value = self.data.get(name)
        if value is None:
            if name in self.data:
                raise invalid(f"{name}: must be true or false, not null")
            return None
        if not isinstance(value, bool):
            raise invalid(f"{name}: must be true or false")
        return value

    def boolean_change(self, name: str) -> bool | Unset:
        """For PATCH: true or false, UNSET when left out."""
        value = self.boolean(name)
        return UNSET if value is None else value

    def count(self, name: str, *, minimum: int = 1) -> int | None:
        """A whole number of at least `minimum`, or null."""
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise invalid(f"{name}: must be a whole number of at least {minimum}")
        return value

    def usd(self, name: str) -> int:
        """A non-negative amount of dollars, as micro-dollars."""
        value = self.data.get(name)
        if value is None:
            raise invalid(f"{name}: required")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise invalid(f"{name}: must be a number of US dollars")
        try:
            micro = usd_to_micro(value)
        except ArithmeticError:
            raise invalid(f"{name}: must be a number of US dollars") from None
        if micro < 0:
            raise invalid(f"{name}: cannot be negative")
        return micro

    def expiry(self, now: datetime) -> datetime | None:
        """`expires_at` (ISO 8601, in the future) or `expires_in_days` from now; None: never."""
        if self.data.get("expires_at") is not None and self.data.get("expires_in_days") is not None:
            raise invalid("expires_at: give either expires_at or expires_in_days, not both")
        days = self.data.get("expires_in_days")
        if days is not None:
            if isinstance(days, bool) or not isinstance(days, int | float) or days <= 0:
                raise invalid("expires_in_days: must be a positive number of days")
            return now + timedelta(days=days)
        at = self.data.get("expires_at")
        if at is None:
            return None
        if not isinstance(at, str):
            raise invalid("expires_at: must be an ISO 8601 date-time")
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise invalid(f"expires_at: {at!r} is not an ISO 8601 date-time") from None
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
        if when <= now:
            raise invalid("expires_at: must be in the future")
        return when


def query_enum(query: dict[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    """An optional query parameter restricted to `choices`."""
    value = query.get(name)
    if value in (None, ""):
        return None
    if value not in choices:
        raise invalid(f"{name}: must be one of {', '.join(choices)}")
    return value


def query_bool(query: dict[str, str], name: str) -> bool:
    """An optional boolean query parameter (true/false/1/0)."""
    value = query.get(name, "").lower()
    if value in ("", "false", "0", "no"):
        return False
    if value in ("true", "1", "yes"):
        return True
    raise invalid(f"{name}: must be true or false")


def body_enum(body: Body, name: str, choices: tuple[str, ...]) -> str:
    """A required body field restricted to `choices`."""
    value = body.string(name, required=True)
    if value not in choices:
        raise invalid(f"{name}: must be one of {', '.join(choices)}")
    assert value is not None
    return value


SCOPES = tuple(s.value for s in Scope)
PERIODS = tuple(p.value for p in Period)
_TEAM_SETTINGS = ("tags", "allowed_regions", "preferred_providers", "log_bodies")
# What both creating and changing a key may set (its owner is fixed at creation).
_KEY_SETTINGS = (
    "is_admin",
    "allowed_models",
    "allowed_regions",
    "log_bodies",
    "expires_at",
    "expires_in_days",
    "tags",
)

# -- the route table --------------------------------------------------------------------------------

Handler = Callable[["AdminAPI", Request], Awaitable[tuple[int, Any]]]


@dataclass(frozen=True, slots=True)
class QueryParam:
    """A query parameter, for the OpenAPI document."""

    name: str
    description: str
    enum: tuple[str, ...] | None = None
    type: str = "string"  # its JSON Schema type
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """One method on one path: its handler and what the OpenAPI document says about it."""

    method: str
    path: str  # below PREFIX, with {name} placeholders
    handler: Handler
    summary: str
    status: int = 200
    request: str | None = None  # a schema name in SCHEMAS
    response: str | None = None  # likewise; None for the OpenAPI document itself
    query: tuple[QueryParam, ...] = ()
    tag: str = ""
    media: tuple[str, ...] = ()  # a streamed answer's media types; empty: JSON

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters if `segments` fit this route's path, else None."""
        return match_path(self.path, segments)


class AdminAPI:
    """ASGI handler for every path under `/admin/v1/`; the caller has checked the admin key."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        """Answer one admin request with JSON."""
        try:
            status, payload = await self._handle(scope, receive)
        except AdminError as exc:
            status, payload = exc.status, {"error": {"type": exc.error_type, "message": exc.message}}
        except ClientGone:
            return
        if isinstance(payload, Streamed):
            await _stream(payload, status, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        await send_response(send, status, orjson.dumps(payload), headers)

    async def _handle(self, scope: AsgiScope, receive: Receive) -> tuple[int, Any]:
        path: str = scope["path"]
        method: str = scope["method"].upper()
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            raise not_found(f"no admin route for {path}")
        segments = [unquote(s) for s in path[len(PREFIX) :].strip("/").split("/")]
        matched = [(route, params) for route in ROUTES if (params := route.match(segments)) is not None]
        if not matched:
            raise not_found(f"no admin route for {path}")
        chosen = next(((r, p) for r, p in matched if r.method == method), None)
        if chosen is None:
            allowed = sorted({r.method for r, _ in matched})
            raise AdminError(
                405,
                "method_not_allowed_error",
                f"{method} is not allowed on {path}; use {', '.join(allowed)}",
            )
        route, params = chosen
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        body: dict[str, Any] = {}
        if route.request is not None:
            body = await _json_object(scope, receive)
        return await self.run(route.handler, params, query, body)

    async def run(
        self,
        handler: Handler,
        params: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """One handler on an already decoded request, the store's errors turned into AdminError
        (the web console calls the handlers this way, so both check input alike)."""
        try:
            return await handler(self, Request(params or {}, query or {}, body or {}))
        except NotFound as exc:
            raise not_found(str(exc)) from None
        except Conflict as exc:
            raise AdminError(409, "conflict_error", conflict_message(exc)) from None
        except Invalid as exc:
            raise invalid(str(exc)) from None

    # -- teams --------------------------------------------------------------------------------

    async def create_team(self, req: Request) -> tuple[int, Any]:
        """POST /teams."""
        body = Body(req.body, ("name", *_TEAM_SETTINGS))
        name = body.string("name", required=True)
        assert name is not None
        team = await self.store.teams.create(
            name,
            body.strings("tags") or (),
            allowed_regions=body.strings("allowed_regions", nullable=True),
            preferred_providers=body.strings("preferred_providers", nullable=True),
            log_bodies=bool(body.boolean("log_bodies")),
        )
        return 201, team_view(team)

    async def list_teams(self, req: Request) -> tuple[int, Any]:
        """GET /teams."""
        return 200, {"data": [team_view(t) for t in await self.store.teams.list()]}

    async def get_team(self, req: Request) -> tuple[int, Any]:
        """GET /teams/{id}."""
        team = await self.store.teams.get(req.params["id"])
        if team is None:
            raise not_found(f"no team {req.params['id']!r}")
        return 200, team_view(team)

    async def update_team(self, req: Request) -> tuple[int, Any]:
        """PATCH /teams/{id}: null allowed_regions allows anywhere, null preferred_providers prefers none."""
        body = Body(req.body, ("name", *_TEAM_SETTINGS))
        name, tags = body.string("name"), body.strings("tags")
        team = await self.store.teams.update(
            req.params["id"],
            name=UNSET if name is None else name,
            tags=UNSET if tags is None else tags,
            allowed_regions=body.nullable_strings("allowed_regions"),
            preferred_providers=body.nullable_strings("preferred_providers"),
            log_bodies=body.boolean_change("log_bodies"),
        )
        return 200, team_view(team)

    async def delete_team(self, req: Request) -> tuple[int, Any]:
        """DELETE /teams/{id}."""
        if not await self.store.teams.delete(req.params["id"]):
            raise not_found(f"no team {req.params['id']!r}")
        return 200, {"id": req.params["id"], "deleted": True}

    # -- users --------------------------------------------------------------------------------

    async def create_user(self, req: Request) -> tuple[int, Any]:
        """POST /users."""
        body = Body(req.body, ("name", "email", "team_id", "tags"))
        name = body.string("name", required=True)
        assert name is not None
        user = await self.store.users.create(
            name,
            email=body.string("email", nullable=True),
            team_id=body.string("team_id", nullable=True),
            tags=body.strings("tags") or (),
        )
        return 201, user_view(user)

    async def list_users(self, req: Request) -> tuple[int, Any]:
        """GET /users."""
        users = await self.store.users.list(team_id=req.query.get("team_id") or None)
        return 200, {"data": [user_view(u) for u in users]}

    async def get_user(self, req: Request) -> tuple[int, Any]:
        """GET /users/{id}."""
        user = await self.store.users.get(req.params["id"])
        if user is None:
            raise not_found(f"no user {req.params['id']!r}")
        return 200, user_view(user)

    async def update_user(self, req: Request) -> tuple[int, Any]:
        """PATCH /users/{id}: null clears email or team."""
        body = Body(req.body, ("name", "email", "team_id", "tags"))
        name, tags = body.string("name"), body.strings("tags")
        email = body.string("email", nullable=True)
        team_id = body.string("team_id", nullable=True)
        user = await self.store.users.update(
            req.params["id"],
            name=UNSET if name is None else name,
            email=email if body.has("email") else UNSET,
            team_id=team_id if body.has("team_id") else UNSET,
            tags=UNSET if tags is None else tags,
        )
        return 200, user_view(user)

    async def delete_user(self, req: Request) -> tuple[int, Any]:
        """DELETE /users/{id}."""
        if not await self.store.users.delete(req.params["id"]):
            raise not_found(f"no user {req.params['id']!r}")
        return 200, {"id": req.params["id"], "deleted": True}

    # -- keys ---------------------------------------------------------------------------------

    async def create_key(self, req: Request) -> tuple[int, Any]:
        """POST /keys: the answer carries the plaintext key, the only time it is shown."""
        body = Body(req.body, ("name", "user_id", "team_id", *_KEY_SETTINGS))
        name = body.string("name", required=True)
        assert name is not None
        created = await self.store.keys.create(
            name,
            user_id=body.string("user_id", nullable=True),
            team_id=body.string("team_id", nullable=True),
            is_admin=bool(body.boolean("is_admin")),
            allowed_models=body.strings("allowed_models", nullable=True),
            allowed_regions=body.strings("allowed_regions", nullable=True),
            log_bodies=bool(body.boolean("log_bodies")),
            tags=body.strings("tags") or (),
            expires_at=body.expiry(datetime.now(UTC)),
        )
        return 201, created_key_view(created)

    async def list_keys(self, req: Request) -> tuple[int, Any]:
        """GET /keys."""
        keys = await self.store.keys.list(
            user_id=req.query.get("user_id") or None,
            team_id=req.query.get("team_id") or None,
            include_revoked=query_bool(req.query, "include_revoked"),
        )
        return 200, {"data": [key_view(k) for k in keys]}

    async def _key(self, key_id: str) -> KeyInfo:
        key = await self.store.keys.get(key_id)
        if key is None:
            raise not_found(f"no key {key_id!r}")
        return key

    async def get_key(self, req: Request) -> tuple[int, Any]:
        """GET /keys/{id}."""
        return 200, key_view(await self._key(req.params["id"]))

    async def update_key(self, req: Request) -> tuple[int, Any]:
        """PATCH /keys/{id}: null allowed_models, allowed_regions or expires_at lifts that restriction."""
        body = Body(req.body, ("name", *_KEY_SETTINGS))
        name, tags = body.string("name"), body.strings("tags")
        expiry_given = body.has("expires_at") or body.has("expires_in_days")
        expires_at = body.expiry(datetime.now(UTC))
        key = await self.store.keys.update(
            req.params["id"],
            name=UNSET if name is None else name,
            allowed_models=body.nullable_strings("allowed_models"),
            allowed_regions=body.nullable_strings("allowed_regions"),
            expires_at=expires_at if expiry_given else UNSET,
            tags=UNSET if tags is None else tags,
            is_admin=body.boolean_change("is_admin"),
            log_bodies=body.boolean_change("log_bodies"),
        )
        return 200, key_view(key)

    async def revoke_key(self, req: Request) -> tuple[int, Any]:
        """POST /keys/{id}/revoke."""
        key = await self._key(req.params["id"])
        if key.revoked_at is not None or not await self.store.keys.revoke(key.id):
            raise AdminError(409, "conflict_error", f"key {key.id!r} is already revoked")
        return 200, key_view(await self._key(key.id))

    async def rotate_key(self, req: Request) -> tuple[int, Any]:
        """POST /keys/{id}/rotate: revoke the key, issue a replacement; the answer has its plaintext."""
        key = await self._key(req.params["id"])
        if key.revoked_at is not None:
            raise AdminError(409, "conflict_error", f"key {key.id!r} is revoked and cannot be rotated")
        created = await self.store.keys.rotate(key.id)
        return 201, {**created_key_view(created), "replaces": key.id}

    # -- budgets ------------------------------------------------------------------------------

    async def set_budget(self, req: Request) -> tuple[int, Any]:
        """PUT /budgets: create or change the budget of one owner for one period."""
        body = Body(req.body, ("scope", "scope_id", "period", "amount_usd"))
        scope = Scope(body_enum(body, "scope", SCOPES))
        scope_id = body.string("scope_id", required=True)
        period = Period(body_enum(body, "period", PERIODS))
        amount = body.usd("amount_usd")
        assert scope_id is not None
        rule = await self.store.budgets.set(scope, scope_id, period, amount)
        return 200, budget_view(rule)

    async def list_budgets(self, req: Request) -> tuple[int, Any]:
        """GET /budgets, each with the spend of its current period."""
        scope = query_enum(req.query, "scope", SCOPES)
        data = await budgets_with_spend(
            self.store, None if scope is None else Scope(scope), req.query.get("scope_id") or None
        )
        return 200, {"data": data}

    async def delete_budget(self, req: Request) -> tuple[int, Any]:
        """DELETE /budgets/{id}."""
        if not await self.store.budgets.delete(req.params["id"]):
            raise not_found(f"no budget {req.params['id']!r}")
        return 200, {"id": req.params["id"], "deleted": True}

    # -- limits -------------------------------------------------------------------------------

    async def set_limits(self, req: Request) -> tuple[int, Any]:
        """PUT /limits: replace the rate limits of one owner (absent or null: unlimited)."""
        body = Body(req.body, ("scope", "scope_id", *LIMIT_FIELDS))
        scope = Scope(body_enum(body, "scope", SCOPES))
        scope_id = body.string("scope_id", required=True)
        assert scope_id is not None
        limits = Limits(*(body.count(name) for name in LIMIT_FIELDS))
        return 200, limits_view(await self.store.limits.set(scope, scope_id, limits))

    async def list_limits(self, req: Request) -> tuple[int, Any]:
        """GET /limits."""
        scope = query_enum(req.query, "scope", SCOPES)
        rows = await self.store.limits.list(None if scope is None else Scope(scope))
        return 200, {"data": [limits_view(s) for s in rows]}

    async def delete_limits(self, req: Request) -> tuple[int, Any]:
        """DELETE /limits/{scope}/{scope_id}."""
        scope, scope_id = req.params["scope"], req.params["scope_id"]
        if scope not in SCOPES:
            raise not_found(f"no limit scope {scope!r} (expected one of: {', '.join(SCOPES)})")
        if not await self.store.limits.delete(Scope(scope), scope_id):
            raise not_found(f"no limits for {scope} {scope_id!r}")
        return 200, {"scope": scope, "scope_id": scope_id, "deleted": True}

    # -- the activity log ---------------------------------------------------------------------

    async def list_logs(self, req: Request) -> tuple[int, Any]:
        """GET /logs: requests newest first, `limit` at a time; `next_cursor` fetches the next page."""
        _known(req.query, ("limit", "cursor", *_LOG_QUERY_NAMES))
        chosen = _log_filter(req.query)
        limit = _limit(req.query)
        # One more than asked shows whether another page exists without a count.
        found = await self.store.activity.list(chosen, limit=limit + 1, before=_cursor(req.query))
        page = found[:limit]
        more = len(found) > limit
        return 200, {
            "data": [log_summary_view(e) for e in page],
            "next_cursor": _next_cursor(page[-1]) if more else None,
        }

    async def get_log(self, req: Request) -> tuple[int, Any]:
        """GET /logs/{request_id}: everything about one request, bodies included when kept."""
        entry = await self.store.activity.get(req.params["request_id"])
        if entry is None:
            raise not_found(f"no request {req.params['request_id']!r} in the activity log")
        return 200, log_view(entry)

    async def get_session(self, req: Request) -> tuple[int, Any]:
        """GET /sessions/{session_id}: a Claude Code session's requests as one conversation."""
        session_id = req.params["session_id"]
        entries = await self.store.activity.session(session_id)
        if not entries:
            raise not_found(f"no session {session_id!r} in the activity log")
        return 200, session_view(session_id, entries)

    async def export_logs(self, req: Request) -> tuple[int, Any]:
        """GET /logs/export: every matching request, oldest first, streamed as JSON lines or CSV."""
        _known(req.query, ("format", *_LOG_QUERY_NAMES))
        fmt = cast(ExportFormat, query_enum(req.query, "format", EXPORT_FORMATS) or "jsonl")
        if not req.query.get("since"):
            raise invalid("since: required (7d, 24h, 30m or an ISO 8601 date)")
        lines = export_lines(self.store.activity.export(_log_filter(req.query)), fmt)
        return 200, Streamed(MEDIA_TYPES[fmt], _chunks(lines), f"cloudgate-activity.{fmt}")

    # -- spend and the document ---------------------------------------------------------------

    async def spend(self, req: Request) -> tuple[int, Any]:
        """GET /spend: requests, tokens and cost per key, user, team, model or day."""
        by = cast(ReportBy, query_enum(req.query, "by", REPORT_BY) or "key")
        now = datetime.now(UTC)
        since = _when(req.query, "since", now) or now - timedelta(days=7)
        until = _when(req.query, "until", now)
        if until is not None and until <= since:
            raise invalid("until: must be later than since")
        rows = await self.store.spend.spend_report(by, since, until)
        data = [spend_view(r) for r in rows]
        return 200, {
            "by": by,
            "since": iso(since),
            "until": iso(until),
            "data": data,
            "total": spend_total(data),
        }

    async def openapi(self, req: Request) -> tuple[int, Any]:
        """GET /openapi.json."""
        return 200, openapi_document(ROUTES, PREFIX)


def _when(query: dict[str, str], name: str, now: datetime) -> datetime | None:
    if not query.get(name):
        return None
    try:
        return parse_when(query[name], name, now)
    except ValueError as exc:
        raise invalid(str(exc)) from None


def _known(query: dict[str, str], names: tuple[str, ...]) -> None:
    # A misspelt filter would otherwise widen the answer to everything, silently.
    unknown = sorted(set(query) - set(names))
    if unknown:
        raise invalid(f"{unknown[0]}: unknown query parameter (expected one of: {', '.join(names)})")


def _log_filter(query: dict[str, str]) -> ActivityFilter:
    try:
        return log_filter(query, errors_only=query_bool(query, "errors"))
    except ValueError as exc:
        raise invalid(str(exc)) from None


def _limit(query: dict[str, str]) -> int:
    text = query.get("limit") or str(LOG_PAGE_DEFAULT)
    if not text.isdigit() or not 1 <= int(text) <= LOG_PAGE_MAX:
        raise invalid(f"limit: must be a whole number from 1 to {LOG_PAGE_MAX}")
    return int(text)


def _next_cursor(last: ActivityEntry) -> str:
    """Where the next page starts: after the last entry shown, by time and then request id."""
    raw = orjson.dumps([iso(last.started_at), last.request_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(query: dict[str, str]) -> tuple[datetime, str] | None:
    text = query.get("cursor")
    if not text:
        return None
    try:
        started_at, request_id = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        when = datetime.fromisoformat(started_at)
        if not isinstance(request_id, str) or when.tzinfo is None:
            raise ValueError(request_id)
    except (ValueError, TypeError, binascii.Error):
        raise invalid("cursor: not a next_cursor this API gave") from None
    return when, request_id


async def _chunks(lines: AsyncIterator[str]) -> AsyncGenerator[bytes, None]:
    buffer = bytearray()
    async for line in lines:
        # "replace": a lone surrogate from the database must not end an export halfway.
        buffer += line.encode("utf-8", "replace")
        if len(buffer) >= STREAM_CHUNK_BYTES:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


async def _stream(answer: Streamed, status: int, receive: Receive, send: Send) -> None:
    """Send `answer` chunk by chunk; a client that goes away stops it."""
    watch = DisconnectWatch(receive)
    try:
        # The first chunk is read before the status is sent, so a store that fails at once
        # fails the request rather than sending an empty export that looks complete.
        first = await anext(answer.chunks, b"")
        headers = [
            (b"content-type", answer.media_type.encode()),
            (b"cache-control", b"no-store"),
            (b"content-disposition", f'attachment; filename="{answer.filename}"'.encode()),
        ]
        # No content-length: the server sends the body with chunked transfer encoding.
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if first:
            await send({"type": "http.response.body", "body": first, "more_body": True})
        async for chunk in answer.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            # A page of entries makes many chunks without waiting on anything: let the loop see
            # a closed connection (and the watch cancel this export) between them.
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        watch.done()
    except asyncio.CancelledError:
        if not watch.absorb():
            raise
    except BaseException:
        # A failure mid-stream ends the response unfinished, so the client cannot take a cut
        # export for a whole one.
        watch.done()
        raise
    finally:
        await answer.chunks.aclose()


async def _json_object(scope: AsgiScope, receive: Receive) -> dict[str, Any]:
    try:
        raw = await read_body(scope, receive, MAX_BODY_BYTES)
    except BodyTooLarge:
        raise AdminError(
            413, "request_too_large", f"request body is larger than {MAX_BODY_BYTES} bytes"
        ) from None
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise invalid(f"body: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise invalid("body: must be a JSON object")
    return data


_OWNER_FILTERS = (
    QueryParam("user_id", "only this user's keys"),
    QueryParam("team_id", "only this team's keys"),
)
_SCOPE_PARAM = QueryParam("scope", "only budgets or limits of this scope", SCOPES)
_WHEN = "7d, 24h, 30m (that long ago) or an ISO 8601 date or time"
_LOG_QUERY: tuple[QueryParam, ...] = (
    QueryParam("since", f"from this time: {_WHEN}"),
    QueryParam("until", f"before this time: {_WHEN} (default now)"),
    QueryParam("key_id", "only this key's requests"),
    QueryParam("user_id", "only this user's requests"),
    QueryParam("team_id", "only this team's requests"),
    QueryParam("model", "only requests for this model, as the caller named it"),
    QueryParam("status", "only requests answered with this HTTP status", type="integer"),
    QueryParam("session_id", "only this Claude Code session's requests"),
    QueryParam("provider", "only requests served by this provider (vertex, bedrock, anthropic)"),
    QueryParam("deployment", "only requests served by this deployment"),
    QueryParam("errors", "only requests that failed", ("true", "false")),
)
_LOG_QUERY_NAMES = tuple(q.name for q in _LOG_QUERY)

ROUTES: tuple[Route, ...] = (
    Route("POST", "/teams", AdminAPI.create_team, "Create a team", 201, "TeamCreate", "Team", tag="teams"),
    Route("GET", "/teams", AdminAPI.list_teams, "List teams", response="TeamList", tag="teams"),
    Route("GET", "/teams/{id}", AdminAPI.get_team, "Get a team", response="Team", tag="teams"),
    Route(
        "PATCH",
        "/teams/{id}",
        AdminAPI.update_team,
        "Rename or retag a team",
        200,
        "TeamUpdate",
        "Team",
        tag="teams",
    ),
    Route(
        "DELETE",
        "/teams/{id}",
        AdminAPI.delete_team,
        "Delete a team and its keys",
        response="Deleted",
        tag="teams",
    ),
    Route("POST", "/users", AdminAPI.create_user, "Create a user", 201, "UserCreate", "User", tag="users"),
    Route(
        "GET",
        "/users",
        AdminAPI.list_users,
        "List users",
        response="UserList",
        query=(QueryParam("team_id", "only this team's members"),),
        tag="users",
    ),
    Route("GET", "/users/{id}", AdminAPI.get_user, "Get a user", response="User", tag="users"),
    Route(
        "PATCH", "/users/{id}", AdminAPI.update_user, "Change a user", 200, "UserUpdate", "User", tag="users"
    ),
    Route(
        "DELETE",
        "/users/{id}",
        AdminAPI.delete_user,
        "Delete a user and their keys",
        response="Deleted",
        tag="users",
    ),
    Route("POST", "/keys", AdminAPI.create_key, "Issue a key", 201, "KeyCreate", "CreatedKey", tag="keys"),
    Route(
        "GET",
        "/keys",
        AdminAPI.list_keys,
        "List keys",
        response="KeyList",
        query=(*_OWNER_FILTERS, QueryParam("include_revoked", "also list revoked keys", ("true", "false"))),
        tag="keys",
    ),
    Route("GET", "/keys/{id}", AdminAPI.get_key, "Get a key", response="Key", tag="keys"),
    Route("PATCH", "/keys/{id}", AdminAPI.update_key, "Change a key", 200, "KeyUpdate", "Key", tag="keys"),
    Route("POST", "/keys/{id}/revoke", AdminAPI.revoke_key, "Revoke a key", response="Key", tag="keys"),
    Route(
        "POST",
        "/keys/{id}/rotate",
        AdminAPI.rotate_key,
        "Replace a key with a new one",
        201,
        response="RotatedKey",
        tag="keys",
    ),
    Route("PUT", "/budgets", AdminAPI.set_budget, "Set a budget", 200, "BudgetSet", "Budget", tag="budgets"),
    Route(
        "GET",
        "/budgets",
        AdminAPI.list_budgets,
        "List budgets with this period's spend",
        response="BudgetList",
        query=(_SCOPE_PARAM, QueryParam("scope_id", "only the budgets of this key, user or team")),
        tag="budgets",
    ),
    Route(
        "DELETE",
        "/budgets/{id}",
        AdminAPI.delete_budget,
        "Delete a budget",
        response="Deleted",
        tag="budgets",
    ),
    Route("PUT", "/limits", AdminAPI.set_limits, "Set rate limits", 200, "LimitsSet", "Limits", tag="limits"),
    Route(
        "GET",
        "/limits",
        AdminAPI.list_limits,
        "List rate limits",
        response="LimitsList",
        query=(_SCOPE_PARAM,),
        tag="limits",
    ),
    Route(
        "DELETE",
        "/limits/{scope}/{scope_id}",
        AdminAPI.delete_limits,
        "Remove rate limits",
        response="LimitsDeleted",
        tag="limits",
    ),
    Route(
        "GET",
        "/spend",
        AdminAPI.spend,
        "Spend report",
        response="SpendReport",
        query=(
            QueryParam("by", "how to group (default key)", REPORT_BY),
            QueryParam("since", "7d, 24h, 30m or an ISO 8601 date (default 7d)"),
            QueryParam("until", "7d, 24h, 30m or an ISO 8601 date (default now)"),
        ),
        tag="spend",
    ),
    Route(
        "GET",
        "/logs",
        AdminAPI.list_logs,
        "List requests in the activity log, newest first",
        response="LogList",
        query=(
            *_LOG_QUERY,
            QueryParam(
                "limit",
                f"at most this many (default {LOG_PAGE_DEFAULT}, up to {LOG_PAGE_MAX})",
                type="integer",
            ),
            QueryParam("cursor", "the next_cursor of the previous page"),
        ),
        tag="logs",
    ),
    # Before /logs/{request_id}: the first route that fits a path answers it.
    Route(
        "GET",
        "/logs/export",
        AdminAPI.export_logs,
        "Export the activity log as JSON lines or CSV, oldest first",
        query=(
            QueryParam("format", "jsonl (default) or csv", EXPORT_FORMATS),
            QueryParam("since", f"from this time: {_WHEN}", required=True),
            *_LOG_QUERY[1:],
        ),
        tag="logs",
        media=tuple(MEDIA_TYPES[f] for f in EXPORT_FORMATS),
    ),
    Route("GET", "/logs/{request_id}", AdminAPI.get_log, "Get one request", response="LogEntry", tag="logs"),
    Route(
        "GET",
        "/sessions/{session_id}",
        AdminAPI.get_session,
        "A Claude Code session as one conversation",
        response="Session",
        tag="logs",
    ),
    Route("GET", "/openapi.json", AdminAPI.openapi, "This OpenAPI document", tag="meta"),
)
