"""The console's pages and JSON API over HTTP (no browser): forms write through the admin API's
checks, pages show the store's state, and several gateway processes share the sessions."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import anthropic
import requests

from cloudgate.console.auth import Sessions
from cloudgate.store import Store
from tests.conftest import Stack
from tests.console.conftest import Signed, sign_in

MSG = [{"role": "user", "content": "hi"}]


def _new_key(admin: Signed, **form: str) -> tuple[str, str]:
    resp = admin.post("/ui/keys", form)
    assert resp.status_code == 200, resp.text
    secret = re.search(r'id="new-key">([^<]+)<', resp.text)
    assert secret is not None
    key_id = re.findall(r'href="/ui/keys/(key_[^"]+)"', resp.text)
    return secret[1], key_id[0]


def _until(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_teams_users_keys_limits_and_budgets_through_forms(console: Stack, admin: Signed) -> None:
    team = admin.post("/ui/teams", {"name": "research", "tags": "a, b", "allowed_regions": ""})
    team_path = team.headers["location"].split("?")[0]
    team_id = team_path.rsplit("/", 1)[1]
    page = admin.get(team_path).text
    assert "research" in page and 'value="a, b"' in page
    # Changing it: empty preferred providers prefer none, the checkbox sets log_bodies.
    changed = admin.post(team_path, {"name": "research", "preferred_providers": "vertex", "log_bodies": "on"})
    assert changed.headers["location"] == f"{team_path}?done=saved"
    assert 'value="vertex"' in admin.get(team_path).text
    # Errors are the admin API's, shown on a page.
    taken = admin.post("/ui/teams", {"name": "research"})
    assert taken.status_code == 409 and "already exists" in taken.text
    blank = admin.post("/ui/users", {"name": " "})
    assert blank.status_code == 400 and "name: required" in blank.text

    user = admin.post("/ui/users", {"name": "grace", "email": "grace@example.com", "team_id": team_id})
    user_path = user.headers["location"].split("?")[0]
    assert "grace@example.com" in admin.get(user_path).text
    assert admin.post(user_path, {"name": "grace", "email": "", "team_id": ""}).status_code == 303
    assert "grace@example.com" not in admin.get(user_path).text

    secret, key_id = _new_key(
        admin, name="ci", team_id=team_id, allowed_models="claude-haiku-4-5, claude-sonnet-4-6"
    )
    assert secret.startswith("cg-")
    key_page = admin.get(f"/ui/keys/{key_id}").text
    assert "claude-haiku-4-5, claude-sonnet-4-6" in key_page and secret not in key_page
    saved = admin.post(f"/ui/keys/{key_id}", {"name": "ci-2", "allowed_models": ""})
    assert saved.status_code == 303
    assert 'value="ci-2"' in admin.get(f"/ui/keys/{key_id}").text

    # Limits and budgets on the key's page, the budget's use as a bar.
    back = f"/ui/keys/{key_id}"
    limits = admin.post(
        "/ui/limits", {"scope": "key", "scope_id": key_id, "requests_per_minute": "60", "back": back}
    )
    assert limits.headers["location"] == f"{back}?done=limits"
    assert 'name="requests_per_minute" value="60"' in admin.get(back).text
    bad = admin.post("/ui/limits", {"scope": "key", "scope_id": key_id, "max_concurrent": "lots"})
    assert bad.status_code == 400 and "whole number" in bad.text
    budget = admin.post(
        "/ui/budgets",
        {"scope": "key", "scope_id": key_id, "period": "daily", "amount_usd": "2.50", "back": back},
    )
    assert budget.headers["location"] == f"{back}?done=budget"
    assert "of $2.50" in admin.get(back).text
    negative = admin.post("/ui/budgets", {"owner": f"team:{team_id}", "period": "daily", "amount_usd": "-1"})
    assert negative.status_code == 400 and "negative" in negative.text
    team_budget = admin.post(
        "/ui/budgets", {"owner": f"team:{team_id}", "period": "monthly", "amount_usd": "100"}
    )
    assert team_budget.headers["location"] == "/ui/budgets?done=budget"
    listing = admin.get("/ui/budgets").text
    assert listing.count('class="meter"') == 2 and "team research" in listing
    budget_id = re.findall(r'action="/ui/budgets/([^/]+)/delete"', listing)[0]
    assert admin.post(f"/ui/budgets/{budget_id}/delete").status_code == 303
    assert admin.get("/ui/budgets").text.count('class="meter"') == 1

    # Rotating shows the replacement once; the old key is revoked.
    rotated = admin.post(f"/ui/keys/{key_id}/rotate")
    assert rotated.status_code == 200 and 'id="new-key"' in rotated.text
    assert "revoked" in admin.get("/ui/keys?include_revoked=true").text
    assert admin.post(f"/ui/keys/{key_id}/revoke").status_code == 409  # already revoked

    assert admin.post(f"{user_path}/delete").headers["location"] == "/ui/users?done=deleted"
    assert admin.post(f"{team_path}/delete").headers["location"] == "/ui/teams?done=deleted"
    assert admin.get(team_path).status_code == 404


def test_traffic_shows_in_the_overview_logs_and_deployments(console: Stack, admin: Signed) -> None:
    secret, key_id = _new_key(admin, name="traffic", log_bodies="on")
    client = anthropic.Anthropic(
        base_url=console.url,
        api_key=secret,
        max_retries=0,
        default_headers={"x-claude-code-session-id": "s-1"},
    )
    client.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=MSG)
    client.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=MSG)

    def counted() -> bool:
        data = admin.get("/ui/api/overview?range=24h").json()
        return bool(data["requests"] == 2 and data["cost_micro"] > 0)

    _until(counted)
    data = admin.get("/ui/api/overview?range=24h").json()
    assert data["range"] == "24h" and data["errors"] == 0 and data["output_tokens"] > 0
    overview = admin.get("/ui/overview?range=30d&by=model").text
    assert "claude-haiku-4-5" in overview and "claude-sonnet-4-6" in overview
    assert admin.get("/ui/overview?range=bogus&by=bogus").status_code == 200  # falls back to 7 d by team

    _until(lambda: admin.get(f"/ui/logs?key_id={key_id}").text.count('class="request"') == 2)
    only_haiku = admin.get("/ui/logs", params={"model": "claude-haiku-4-5", "since": "24h"}).text
    assert only_haiku.count('class="request"') == 1
    assert admin.get("/ui/logs?errors=true").text.count('class="request"') == 0
    bad = admin.get("/ui/logs?status=abc")
    assert bad.status_code == 200 and "not an HTTP status" in bad.text
    one = admin.get("/ui/logs?limit=1").text  # limit is the console's own: a page is 50
    request_id = re.findall(r'href="/ui/logs/(req_[^"]+)"', one)[0]
    detail = admin.get(f"/ui/logs/{request_id}").text
    assert "Request body" in detail and "&quot;max_tokens&quot;: 20" in detail
    assert secret not in detail
    assert admin.get("/ui/logs/req_missing").status_code == 404
    timeline = admin.get("/ui/sessions/s-1").text
    assert timeline.count('class="turn"') == 2 and "bubble user" in timeline
    assert admin.get("/ui/sessions/nope").status_code == 404

    live = admin.get("/ui/api/deployments").json()
    assert {"status", "deployments", "last_hour"} <= set(live)
    assert sum(s["requests"] for s in live["last_hour"]) == 2
    fragment = admin.get("/ui/deployments/live")
    assert fragment.status_code == 200 and "<table>" in fragment.text and "<html" not in fragment.text


def test_sessions_are_shared_by_every_gateway_process(console: Stack) -> None:
    """`--workers N`: a session made by one process opens pages in another, and ends in all."""
    signed = sign_in(console.url)
    token = signed.http.cookies.get("cloudgate_console")

    async def other_process() -> tuple[bool, bool]:
        store = Store.open(console.db_url)  # a second engine, as another worker would have
        try:
            sessions = Sessions(store)
            seen = await sessions.get(token) is not None
            found = await sessions.get(token)
            assert found is not None
            await sessions.end(found.token_hash)
            return seen, await sessions.get(token) is None
        finally:
            await store.close()

    assert asyncio.run(other_process()) == (True, True)
    assert signed.get("/ui/overview").status_code == 303


def test_signed_in_user_is_redirected_from_the_login_form(console: Stack, admin: Signed) -> None:
    resp = admin.get("/ui/login?next=/ui/keys")
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/keys"
    assert requests.get(console.url + "/ui/login", timeout=10).status_code == 200
    assert admin.get("/ui").headers["location"] == "/ui/overview"
