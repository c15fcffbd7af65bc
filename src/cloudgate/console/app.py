"""The web console's ASGI app, mounted by the gateway at `/ui`.

One route table, `ROUTES`, both dispatches and lists every console URL (the tests walk it to
check that none answers without a session). Each route is of one kind:

- public: the sign-in form, the sign-in itself and the static CSS/JS (no data in them);
- page: a GET that renders HTML; without a session it redirects to the sign-in form;
- action: a form POST that changes something; needs the session's CSRF token and a same-origin
  request, and redirects (or renders) a page;
- api: JSON under `/ui/api/`; without a session 401 JSON; writes need `X-CSRF-Token`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote

import orjson

from cloudgate.console import auth, pages
from cloudgate.console.auth import ConsoleSession, LoginThrottle, Sessions
from cloudgate.console.web import Request, Response, html, json, redirect, safe_next
from cloudgate.gateway.frontdoors.admin import AdminAPI, AdminError
from cloudgate.gateway.http import BodyTooLarge, ClientGone, headers_dict, read_body, send_response
from cloudgate.gateway.routes import match_path
from cloudgate.gateway.types import Receive, Scope, Send
from cloudgate.governance.types import Principal
from cloudgate.store import Store

log = logging.getLogger("cloudgate.console")

PREFIX = "/ui"
MAX_FORM_BYTES = 256 * 1024

Kind = Literal["public", "page", "action", "api"]
SignIn = Callable[[str], Awaitable[Principal | None]]
DeploymentsView = Callable[[], dict[str, Any]]

# Every console answer: no caching of admin data, no framing, scripts and styles from here only.
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
_STATIC_TYPES = {".css": b"text/css; charset=utf-8", ".js": b"text/javascript; charset=utf-8"}


Handler = Callable[["Console", Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    """One method on one console path."""

    method: str
    path: str  # with {name} placeholders
    handler: Handler
    kind: Kind

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters if `segments` fit this route's path, else None."""
        return match_path(self.path, segments)


class Console:
    """The console: sessions, the admin API's handlers, reports and the router's health view."""

    def __init__(self, store: Store, sign_in: SignIn, deployments: DeploymentsView) -> None:
        self.store = store
        self.admin = AdminAPI(store)
        self.sessions = Sessions(store)
        self.sign_in = sign_in
        self.deployments = deployments
        self.throttle = LoginThrottle()
        self._static: dict[str, bytes] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request under /ui."""
        try:
            response = await self._handle(scope, receive)
        except ClientGone:
            return
        headers = [(b"content-type", response.content_type), (b"cache-control", b"no-store")]
        headers += SECURITY_HEADERS + response.headers
        await send_response(send, response.status, response.body, headers)

    async def _handle(self, scope: Scope, receive: Receive) -> Response:
        path: str = scope["path"]
        method: str = scope["method"].upper()
        segments = [unquote(s) for s in path.split("/") if s]
        matched = [(r, p) for r in ROUTES if (p := r.match(segments)) is not None]
        kind: Kind = matched[0][0].kind if matched else ("api" if path.startswith("/ui/api/") else "page")
        req = Request(
            scope=scope,
            method=method,
            path=path,
            params={},
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            headers=headers_dict(scope),
        )
        if kind != "public":
            req.session = await self._session(req)
            if req.session is None:
                return self._refuse(req, kind)
        if not matched:
            return self._error(req, 404, "not found", f"no console page at {path}")
        chosen = next(((r, p) for r, p in matched if r.method == method), None)
        if chosen is None:
            allowed = ", ".join(sorted({r.method for r, _ in matched}))
            response = self._error(
                req, 405, "method not allowed", f"{method} is not allowed here; use {allowed}"
            )
            response.headers.append((b"allow", allowed.encode()))
            return response
        route, req.params = chosen
        if method != "GET":
            if not auth.same_origin(req.headers, scope.get("scheme", "http")):
                return self._error(req, 403, "forbidden", "cross-origin request refused")
            try:
                raw = await read_body(scope, receive, MAX_FORM_BYTES)
            except BodyTooLarge:
                return self._error(req, 413, "too large", "the form is too large")
            self._decode(req, raw)
            if route.kind != "public" and not self._csrf_ok(req):
                return self._error(req, 403, "forbidden", "missing or wrong CSRF token; reload the page")
        try:
            return await route.handler(self, req)
        except AdminError as exc:
            return self._error(req, exc.status, exc.error_type, exc.message)

    async def _session(self, req: Request) -> ConsoleSession | None:
        token = _cookie(req.headers.get("cookie", ""), auth.COOKIE)
        session = await self.sessions.get(token)
        if session is None or session.key_id == "admin":
            return session
        # A store key signed in: it must still be a live admin key, or the session ends with it.
        key = await self.store.keys.get(session.key_id)
        if key is None or key.revoked_at is not None or not key.is_admin:
            await self.sessions.end(session.token_hash)
            return None
        return session

    def _refuse(self, req: Request, kind: Kind) -> Response:
        if kind == "api":
            return json({"error": {"type": "authentication_error", "message": "sign in to the console"}}, 401)
        target = req.path + (
            f"?{req.scope['query_string'].decode('latin-1')}" if req.scope.get("query_string") else ""
        )
        if req.method != "GET":
            target = "/ui/overview"
        return redirect(f"/ui/login?next={quote(safe_next(target), safe='')}")

    def _decode(self, req: Request, raw: bytes) -> None:
        content_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/json":
            try:
                data = orjson.loads(raw or b"{}")
            except orjson.JSONDecodeError:
                data = None
            req.json = data if isinstance(data, dict) else {}
        else:
            req.form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))

    def _csrf_ok(self, req: Request) -> bool:
        assert req.session is not None
        presented = req.headers.get("x-csrf-token") or req.form.get("csrf_token")
        return auth.csrf_ok(req.session, presented)

    def _error(self, req: Request, status: int, title: str, message: str) -> Response:
        if req.path.startswith("/ui/api/"):
            return json({"error": {"type": title.replace(" ", "_"), "message": message}}, status)
        return html(pages.error_page(req, status, message), status)

    def static(self, name: str) -> bytes | None:
        """A file of console/static (read once)."""
        if name not in self._static:
            if "/" in name or name.startswith(".") or not name.endswith(tuple(_STATIC_TYPES)):
                return None
            try:
                self._static[name] = (
                    resources.files("cloudgate.console").joinpath("static", name).read_bytes()
                )
            except (FileNotFoundError, IsADirectoryError):
                return None
        return self._static[name]


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


async def static_file(console: Console, req: Request) -> Response:
    """GET /ui/static/{name}: the console's CSS and JavaScript."""
    name = req.params["name"]
    body = console.static(name)
    if body is None:
        return Response(404, b"not found", b"text/plain")
    suffix = name[name.rfind(".") :]
    return Response(200, body, _STATIC_TYPES[suffix])


ROUTES: tuple[Route, ...] = (
    Route("GET", "/ui/login", pages.login_form, "public"),
    Route("POST", "/ui/login", pages.login, "public"),
    Route("GET", "/ui/static/{name}", static_file, "public"),
    Route("POST", "/ui/logout", pages.logout, "action"),
    Route("GET", "/ui", pages.home, "page"),
    Route("GET", "/ui/overview", pages.overview, "page"),
    Route("GET", "/ui/keys", pages.keys, "page"),
    Route("POST", "/ui/keys", pages.create_key, "action"),
    Route("GET", "/ui/keys/{id}", pages.key_detail, "page"),
    Route("POST", "/ui/keys/{id}", pages.update_key, "action"),
    Route("POST", "/ui/keys/{id}/revoke", pages.revoke_key, "action"),
    Route("POST", "/ui/keys/{id}/rotate", pages.rotate_key, "action"),
    Route("GET", "/ui/users", pages.users, "page"),
    Route("POST", "/ui/users", pages.create_user, "action"),
    Route("GET", "/ui/users/{id}", pages.user_detail, "page"),
    Route("POST", "/ui/users/{id}", pages.update_user, "action"),
    Route("POST", "/ui/users/{id}/delete", pages.delete_user, "action"),
    Route("GET", "/ui/teams", pages.teams, "page"),
    Route("POST", "/ui/teams", pages.create_team, "action"),
    Route("GET", "/ui/teams/{id}", pages.team_detail, "page"),
    Route("POST", "/ui/teams/{id}", pages.update_team, "action"),
    Route("POST", "/ui/teams/{id}/delete", pages.delete_team, "action"),
    Route("GET", "/ui/budgets", pages.budgets, "page"),
    Route("POST", "/ui/budgets", pages.set_budget, "action"),
    Route("POST", "/ui/budgets/{id}/delete", pages.delete_budget, "action"),
    Route("POST", "/ui/limits", pages.set_limits, "action"),
    Route("POST", "/ui/limits/{scope}/{scope_id}/delete", pages.delete_limits, "action"),
    Route("GET", "/ui/logs", pages.logs, "page"),
    Route("GET", "/ui/logs/{request_id}", pages.log_detail, "page"),
    Route("GET", "/ui/sessions/{session_id}", pages.session_timeline, "page"),
    Route("GET", "/ui/deployments", pages.deployments, "page"),
    Route("GET", "/ui/deployments/live", pages.deployments_live, "page"),
    Route("GET", "/ui/api/overview", pages.api_overview, "api"),
    Route("GET", "/ui/api/deployments", pages.api_deployments, "api"),
    Route("POST", "/ui/api/keys/{id}/revoke", pages.api_revoke_key, "api"),
)
