"""Signing in and out of the console: sessions in the store, CSRF, origin checks, throttling."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import requests

from cloudgate.console import auth
from cloudgate.console.auth import LoginThrottle, Sessions, csrf_ok, same_origin
from cloudgate.console.web import safe_next
from cloudgate.store import Store
from tests.conftest import GATEWAY_KEY, Stack
from tests.console.conftest import ADMIN_KEY, Signed, sign_in


def test_sign_in_sets_a_strict_http_only_cookie_scoped_to_the_console(console: Stack) -> None:
    resp = requests.post(
        console.url + "/ui/login", data={"key": ADMIN_KEY}, allow_redirects=False, timeout=10
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/overview"
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith("cloudgate_console=")
    for part in ("Path=/ui", "HttpOnly", "SameSite=Strict"):
        assert part in cookie
    assert "Secure" not in cookie  # plain http on loopback; https requests get Secure


def test_wrong_and_non_admin_keys_are_refused(console: Stack) -> None:
    wrong = requests.post(console.url + "/ui/login", data={"key": "nope"}, allow_redirects=False, timeout=10)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    # A configured gateway key is a caller's key, not an admin's.
    caller = requests.post(
        console.url + "/ui/login", data={"key": GATEWAY_KEY}, allow_redirects=False, timeout=10
    )
    assert caller.status_code == 403 and "not an admin key" in caller.text
    empty = requests.post(console.url + "/ui/login", data={}, allow_redirects=False, timeout=10)
    assert empty.status_code == 401


def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(console: Stack) -> None:
    def after(next_: str) -> str:
        resp = requests.post(
            console.url + "/ui/login",
            data={"key": ADMIN_KEY, "next": next_},
            allow_redirects=False,
            timeout=10,
        )
        return str(resp.headers["location"])

    assert after("/ui/logs?since=24h") == "/ui/logs?since=24h"
    for bad in ("https://evil.example/", "//evil.example/ui", "/\\evil.example", "/admin/v1/keys"):
        assert after(bad) == "/ui/overview"
    assert safe_next("/ui\\..\\x") == "/ui/overview"


def test_a_store_admin_key_signs_in_and_its_revocation_ends_the_session(
    console: Stack, admin: Signed
) -> None:
    created = admin.post("/ui/keys", {"name": "ops-admin", "is_admin": "on"})
    assert created.status_code == 200
    secret = created.text.split('id="new-key">')[1].split("<")[0]
    ops = sign_in(console.url, secret)
    assert "Signed in with the key key_" in ops.get("/ui/overview").text
    key_id = next(k.id for k in asyncio.run(_keys(console)) if k.name == "ops-admin")
    assert admin.post(f"/ui/keys/{key_id}/revoke").status_code == 303
    assert ops.get("/ui/overview").status_code == 303  # back to the sign-in form


async def _keys(stack: Stack) -> list[object]:
    store = Store.open(stack.db_url)
    try:
        return list(await store.keys.list(include_revoked=True))
    finally:
        await store.close()


def test_state_changes_need_the_csrf_token(console: Stack, admin: Signed) -> None:
    no_token = admin.http.post(
        console.url + "/ui/teams", data={"name": "t1"}, allow_redirects=False, timeout=10
    )
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    wrong = admin.post("/ui/teams", {"name": "t1", "csrf_token": "x" * 43})
    assert wrong.status_code == 403
    ok = admin.post("/ui/teams", {"name": "t1"})
    assert ok.status_code == 303 and ok.headers["location"].startswith("/ui/teams/team_")
    # The JSON API takes the token as a header.
    key = admin.post("/ui/keys", {"name": "k"}).text.split('data-copy="#new-key"')[0]
    key_id = next(k.id for k in asyncio.run(_keys(console)) if k.name == "k")  # type: ignore[attr-defined]
    assert key
    refused = admin.http.post(console.url + f"/ui/api/keys/{key_id}/revoke", timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "forbidden"
    revoked = admin.http.post(
        console.url + f"/ui/api/keys/{key_id}/revoke", headers={"x-csrf-token": admin.csrf}, timeout=10
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]


def test_cross_origin_posts_are_refused(console: Stack, admin: Signed) -> None:
    evil = admin.post("/ui/teams", {"name": "t2"}, headers={"origin": "https://evil.example"})
    assert evil.status_code == 403 and "cross-origin" in evil.text
    null = admin.post("/ui/teams", {"name": "t2"}, headers={"origin": "null"})
    assert null.status_code == 403
    host = console.url.split("://")[1]
    same = admin.post("/ui/teams", {"name": "t2"}, headers={"origin": f"http://{host}"})
    assert same.status_code == 303
    login = requests.post(
        console.url + "/ui/login",
        data={"key": ADMIN_KEY},
        headers={"origin": "https://evil.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert login.status_code == 403 and "set-cookie" not in login.headers


def test_logout_ends_the_session_in_the_store(console: Stack, admin: Signed) -> None:
    cookie = admin.http.cookies.get(auth.COOKIE)
    assert admin.get("/ui/keys").status_code == 200
    out = admin.post("/ui/logout")
    assert out.status_code == 303 and out.headers["location"] == "/ui/login?done=signed-out"
    assert "Max-Age=0" in out.headers["set-cookie"]
    # The old cookie, replayed, no longer opens anything.
    replay = requests.get(
        console.url + "/ui/keys", cookies={auth.COOKIE: cookie}, allow_redirects=False, timeout=10
    )
    assert replay.status_code == 303


def test_sessions_keep_only_a_hash_and_expire(console: Stack) -> None:
    async def scenario() -> None:
        store = Store.open(console.db_url)
        sessions = Sessions(store)
        try:
            now = datetime.now(UTC)
            token, session = await sessions.create("admin", now)
            assert session.token_hash == auth.token_hash(token) != token
            async with store.engine.connect() as conn:
                from sqlalchemy import text

                rows = (await conn.execute(text("SELECT token_hash FROM console_sessions"))).all()
            assert token not in {r[0] for r in rows}
            assert await sessions.get(token, now + timedelta(hours=1)) is not None
            # Idle for longer than IDLE: gone (and deleted).
            assert await sessions.get(token, now + auth.IDLE + timedelta(hours=2)) is None
            assert await sessions.get(token, now) is None
            # Used often, it still ends at LIFETIME.
            token, _ = await sessions.create("admin", now)
            moment = now
            while moment < now + auth.LIFETIME - timedelta(hours=6):
                moment += timedelta(hours=6)
                assert await sessions.get(token, moment) is not None
            assert await sessions.get(token, now + auth.LIFETIME + timedelta(minutes=1)) is None
            assert await sessions.get(None) is None and await sessions.get("") is None
        finally:
            await store.close()

    asyncio.run(scenario())


def test_csrf_and_origin_helpers() -> None:
    session = auth.ConsoleSession("h", "token-123", "admin", datetime.now(UTC), datetime.now(UTC))
    assert csrf_ok(session, "token-123")
    assert not csrf_ok(session, "token-124") and not csrf_ok(session, None) and not csrf_ok(session, "")
    assert same_origin({"host": "gw:8080", "origin": "http://gw:8080"}, "http")
    assert not same_origin({"host": "gw:8080", "origin": "https://gw:8080"}, "http")
    assert same_origin({"host": "gw", "referer": "https://gw/ui/keys"}, "https")
    assert not same_origin({"host": "gw", "referer": "https://gw.evil/ui"}, "https")
    assert same_origin({"host": "gw"}, "http")  # a script: the CSRF token still decides
    assert "Secure" in auth.session_cookie("t", secure=True).decode()


def test_failed_sign_ins_are_throttled(console: Stack) -> None:
    clock = [0.0]
    throttle = LoginThrottle(attempts=3, window=60, clock=lambda: clock[0])
    for _ in range(3):
        assert throttle.retry_after("1.2.3.4") == 0
        throttle.failed("1.2.3.4")
    assert throttle.retry_after("1.2.3.4") == 60
    assert throttle.retry_after("5.6.7.8") == 0
    clock[0] = 61
    assert throttle.retry_after("1.2.3.4") == 0
    # Over HTTP: ten wrong keys, then even the right one waits.
    for _ in range(10):
        requests.post(console.url + "/ui/login", data={"key": "guess"}, allow_redirects=False, timeout=10)
    locked = requests.post(
        console.url + "/ui/login", data={"key": ADMIN_KEY}, allow_redirects=False, timeout=10
    )
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
