"""Every console route, enumerated from the route table: nothing answers without a session."""

from __future__ import annotations

import re

import pytest
import requests

from cloudgate.console import ROUTES
from tests.conftest import Stack
from tests.console.conftest import Signed, sign_in

PUBLIC = {("GET", "/ui/login"), ("POST", "/ui/login"), ("GET", "/ui/static/{name}")}


def concrete(path: str) -> str:
    """A route's path with its placeholders filled in."""
    return re.sub(r"\{[^}]+\}", "x", path)


def test_the_public_routes_are_only_sign_in_and_static_files() -> None:
    assert {(r.method, r.path) for r in ROUTES if r.kind == "public"} == PUBLIC
    assert all(r.path == "/ui" or r.path.startswith("/ui/") for r in ROUTES)
    assert all(r.kind == "api" for r in ROUTES if r.path.startswith("/ui/api/"))
    assert all(r.method == "GET" for r in ROUTES if r.kind == "page")
    assert all(r.method == "POST" for r in ROUTES if r.kind == "action")


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.kind != "public"], ids=lambda r: f"{r.method} {r.path}"
)
def test_every_route_refuses_without_a_session(console: Stack, route: object) -> None:
    method, path, kind = route.method, concrete(route.path), route.kind  # type: ignore[attr-defined]
    for cookie in ({}, {"cloudgate_console": "forged-token"}):
        resp = requests.request(method, console.url + path, cookies=cookie, allow_redirects=False, timeout=10)
        if kind == "api":
            assert resp.status_code == 401, resp.text
            assert resp.json()["error"]["type"] == "authentication_error"
        else:
            assert resp.status_code == 303, resp.text
            assert resp.headers["location"].startswith("/ui/login?next=")
        assert b"csrf" not in resp.content.lower()


@pytest.mark.parametrize("path", ["/ui/nowhere", "/ui/keys/a/b/c", "/ui/api/nowhere", "/ui/"])
def test_unknown_console_paths_also_refuse_without_a_session(console: Stack, path: str) -> None:
    resp = requests.get(console.url + path, allow_redirects=False, timeout=10)
    assert resp.status_code in (303, 401)


def test_every_page_renders_when_signed_in(console: Stack, admin: Signed) -> None:
    for route in ROUTES:
        if route.kind == "page" and "{" not in route.path:
            resp = admin.get(route.path)
            assert resp.status_code in (200, 302), (route.path, resp.text[:500])
        if route.kind == "api" and route.method == "GET":
            resp = admin.get(route.path)
            assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert admin.get("/ui/keys/key_missing").status_code == 404
    assert admin.get("/ui/nowhere").status_code == 404
    assert admin.http.delete(console.url + "/ui/keys", timeout=10).status_code == 405


def test_static_files_and_security_headers(console: Stack, admin: Signed) -> None:
    css = requests.get(console.url + "/ui/static/console.css", timeout=10)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    js = requests.get(console.url + "/ui/static/console.js", timeout=10)
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    for name in ("..%2Fapp.py", "..%2F..%2Fstore%2Fmodels.py", "nope.css", "app.py", ".css"):
        resp = requests.get(console.url + "/ui/static/" + name, allow_redirects=False, timeout=10)
        # Never a file from outside static/: 404, or (a decoded path that is no route) the sign-in.
        assert resp.status_code in (303, 404) and b"import" not in resp.content, name
    page = admin.get("/ui/overview")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    # No third-party address anywhere in a page: the console works offline.
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)


def test_console_is_absent_without_governance(make_stack: object) -> None:
    stack = make_stack(settings={"governance": False})  # type: ignore[operator]
    resp = requests.get(stack.url + "/ui/overview", allow_redirects=False, timeout=10)
    assert resp.status_code == 404


def test_a_second_signed_in_client_is_independent(console: Stack, admin: Signed) -> None:
    other = sign_in(console.url)
    assert other.csrf != admin.csrf
    # One session's CSRF token is no good with another session.
    resp = other.post("/ui/teams", {"name": "x", "csrf_token": admin.csrf})
    assert resp.status_code == 403
