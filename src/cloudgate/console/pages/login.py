"""Signing in and out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloudgate.console import auth
from cloudgate.console.html import (
    field,
    notice,
    page,
    tag,
    text_input,
)
from cloudgate.console.pages.common import (
    NOTICES,
)
from cloudgate.console.web import Request, Response, html, redirect, safe_next

if TYPE_CHECKING:
    from cloudgate.console.app import Console


# -- signing in and out -------------------------------------------------------------------------


def _login_page(message: str | None = None, next_: str = "") -> str:
    form = tag(
        "form",
        [
            field(
                "Admin key",
                text_input(
                    "key", type="password", autocomplete="current-password", required=True, autofocus=True
                ),
                "The gateway's admin key, or a store key issued with is_admin.",
            ),
            tag("input", type="hidden", name="next", value=next_),
            tag("button", "Sign in", type="submit"),
        ],
        method="post",
        action="/ui/login",
        class_="card login",
    )
    return page("Sign in", [notice(message), form])


async def login_form(console: Console, req: Request) -> Response:
    """GET /ui/login."""
    token = _cookie_token(req)
    if token and await console.sessions.get(token) is not None:
        return redirect(safe_next(req.query.get("next")), 303)
    message = NOTICES["signed-out"] if req.query.get("done") == "signed-out" else None
    return html(_login_page(message, req.query.get("next", "")))


def _cookie_token(req: Request) -> str | None:
    for part in req.headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == auth.COOKIE and value:
            return value
    return None


async def login(console: Console, req: Request) -> Response:
    """POST /ui/login: the admin key in exchange for a session cookie."""
    next_ = req.form.get("next", "")
    wait = console.throttle.retry_after(req.client)
    if wait > 0:
        response = html(_login_page(f"Too many failed attempts; try again in {wait:.0f} s.", next_), 429)
        response.headers.append((b"retry-after", str(int(wait) + 1).encode()))
        return response
    key = req.form.get("key", "").strip()
    principal = await console.sign_in(key) if key else None
    if principal is None or not principal.is_admin:
        console.throttle.failed(req.client)
        message = "That key is not an admin key." if principal is not None else "Wrong key."
        return html(_login_page(message, next_), 403 if principal is not None else 401)
    console.throttle.succeeded(req.client)
    token, _ = await console.sessions.create(principal.key_id)
    response = redirect(safe_next(next_))
    response.headers.append((b"set-cookie", auth.session_cookie(token, secure=req.secure)))
    return response


async def logout(console: Console, req: Request) -> Response:
    """POST /ui/logout: the session ends in the store, the cookie is cleared."""
    assert req.session is not None
    await console.sessions.end(req.session.token_hash)
    response = redirect("/ui/login?done=signed-out")
    response.headers.append((b"set-cookie", auth.session_cookie("", secure=req.secure, max_age=0)))
    return response


async def home(console: Console, req: Request) -> Response:
    """GET /ui."""
    return redirect("/ui/overview", 302)
