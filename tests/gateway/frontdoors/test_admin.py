"""The admin API over real HTTP against a real SQLite store: every route, its errors, its document."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from cloudgate.activity.entry import ActivityEntry
from cloudgate.activity.export import MEDIA_TYPES, from_csv, from_jsonl
from cloudgate.gateway.frontdoors.admin import PREFIX, ROUTES, AdminAPI, openapi_document
from cloudgate.gateway.types import Receive, Scope, Send
from cloudgate.governance.types import SpendEntry
from cloudgate.store import Store, upgrade
from cloudgate.store.models import Base
from cloudgate.util.server import serving
from tests.activity.test_export import AWKWARD, full_entry
from tests.cli.test_logs import SESSION, now, seed, session_entries, stored, traffic

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class AdminOnly:
    """The admin API alone, with the store opened in the server's own event loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.api: AdminAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.api = AdminAPI(Store.open(self.url))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    assert self.api is not None
                    await self.api.store.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.api is not None
        await self.api(scope, receive, send)


@dataclass
class Admin:
    """A client for the served admin API."""

    base: str
    db_url: str

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
        kwargs: dict[str, Any] = {"params": params, "timeout": 10}
        if isinstance(body, bytes):
            kwargs["data"] = body
        elif body is not None:
            kwargs["json"] = body
        return requests.request(method, self.base + PREFIX + path, **kwargs)

    def ok(self, method: str, path: str, body: Any = None, status: int = 200, **params: Any) -> Any:
        resp = self.call(method, path, body, **params)
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"] == "application/json"
        return resp.json()

    def error(self, method: str, path: str, body: Any, status: int, **params: Any) -> str:
        resp = self.call(method, path, body, **params)
        assert resp.status_code == status, resp.text
        err = resp.json()["error"]
        assert set(err) == {"type", "message"}
        return str(err["message"])


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    run(upgrade(url))
    with serving(AdminOnly(url)) as srv:
        yield Admin(srv.url, url)


def write_spend(url: str, entries: list[SpendEntry]) -> None:
    async def go() -> None:
        store = Store.open(url)
        try:
            await store.spend.write_spend(entries)
        finally:
            await store.close()

    run(go())


# -- teams and users -----------------------------------------------------------------------------


def test_teams_crud(admin: Admin) -> None:
    team = admin.ok("POST", "/teams", {"name": "platform", "tags": ["eng"]}, 201)
    assert team["id"].startswith("team_") and team["tags"] == ["eng"] and team["created_at"]
    admin.ok("POST", "/teams", {"name": "alpha"}, 201)
    assert [t["name"] for t in admin.ok("GET", "/teams")["data"]] == ["alpha", "platform"]
    assert admin.ok("GET", f"/teams/{team['id']}") == team
    renamed = admin.ok("PATCH", f"/teams/{team['id']}", {"name": "infra"})
    assert (renamed["name"], renamed["tags"]) == ("infra", ["eng"])
    admin.error("PATCH", f"/teams/{team['id']}", {"name": "alpha"}, 409)
    assert admin.ok("DELETE", f"/teams/{team['id']}") == {"id": team["id"], "deleted": True}
    admin.error("GET", f"/teams/{team['id']}", None, 404)
    admin.error("DELETE", f"/teams/{team['id']}", None, 404)
    admin.error("PATCH", "/teams/team_missing", {"name": "x"}, 404)


def test_duplicate_names_are_409(admin: Admin) -> None:
    admin.ok("POST", "/teams", {"name": "dup"}, 201)
    assert "a team with this name already exists" in admin.error("POST", "/teams", {"name": "dup"}, 409)
    other = admin.ok("POST", "/teams", {"name": "other"}, 201)
    admin.error("PATCH", f"/teams/{other['id']}", {"name": "dup"}, 409)
    admin.ok("POST", "/users", {"name": "ada", "email": "ada@example.com"}, 201)
    assert "a user with this email" in admin.error(
        "POST", "/users", {"name": "ada2", "email": "ada@example.com"}, 409
    )


def test_users_crud_and_filter(admin: Admin) -> None:
    team = admin.ok("POST", "/teams", {"name": "t"}, 201)
    ada = admin.ok("POST", "/users", {"name": "ada", "email": "ada@example.com", "team_id": team["id"]}, 201)
    bob = admin.ok("POST", "/users", {"name": "bob"}, 201)
    assert ada["team_id"] == team["id"] and bob["team_id"] is None and bob["email"] is None
    assert [u["name"] for u in admin.ok("GET", "/users")["data"]] == ["ada", "bob"]
    assert [u["name"] for u in admin.ok("GET", "/users", team_id=team["id"])["data"]] == ["ada"]
    assert admin.ok("GET", f"/users/{ada['id']}") == ada
    moved = admin.ok("PATCH", f"/users/{bob['id']}", {"team_id": team["id"], "tags": ["new"]})
    assert (moved["team_id"], moved["tags"], moved["name"]) == (team["id"], ["new"], "bob")
    cleared = admin.ok("PATCH", f"/users/{ada['id']}", {"email": None, "team_id": None})
    assert (cleared["email"], cleared["team_id"], cleared["name"]) == (None, None, "ada")
    assert "team" in admin.error("PATCH", f"/users/{ada['id']}", {"team_id": "team_missing"}, 404)
    assert "team" in admin.error("POST", "/users", {"name": "x", "team_id": "team_missing"}, 404)
    admin.ok("DELETE", f"/users/{ada['id']}")
    admin.error("GET", f"/users/{ada['id']}", None, 404)
    admin.error("DELETE", f"/users/{ada['id']}", None, 404)


# -- keys ----------------------------------------------------------------------------------------


def test_key_lifecycle_shows_the_plaintext_only_when_issued(admin: Admin) -> None:
    user = admin.ok("POST", "/users", {"name": "ada"}, 201)
    created = admin.ok(
        "POST",
        "/keys",
        {
            "name": "laptop",
            "user_id": user["id"],
            "allowed_models": ["claude-sonnet-4-5"],
            "expires_in_days": 30,
        },
        201,
    )
    plaintext = created["key"]
    assert plaintext.startswith("cg-") and created["prefix"] == plaintext[:10]
    assert created["allowed_models"] == ["claude-sonnet-4-5"] and created["is_admin"] is False
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    seen = []
    key_id = created["id"]
    seen.append(admin.call("GET", f"/keys/{key_id}").text)
    seen.append(admin.call("GET", "/keys").text)
    seen.append(admin.call("GET", "/keys", user_id=user["id"], include_revoked="true").text)
    patched = admin.ok(
        "PATCH", f"/keys/{key_id}", {"allowed_models": None, "expires_at": None, "is_admin": True}
    )
    assert (patched["allowed_models"], patched["expires_at"], patched["is_admin"]) == (None, None, True)
    seen.append(str(patched))

    rotated = admin.ok("POST", f"/keys/{key_id}/rotate", None, 201)
    assert rotated["key"].startswith("cg-") and rotated["key"] != plaintext
    assert rotated["replaces"] == key_id and rotated["user_id"] == user["id"] and rotated["is_admin"] is True
    new_id = rotated["id"]
    old = admin.ok("GET", f"/keys/{key_id}")
    assert old["revoked_at"] is not None
    assert "already revoked" in admin.error("POST", f"/keys/{key_id}/revoke", None, 409)
    admin.error("POST", f"/keys/{key_id}/rotate", None, 409)
    assert [k["id"] for k in admin.ok("GET", "/keys")["data"]] == [new_id]
    assert {k["id"] for k in admin.ok("GET", "/keys", include_revoked="true")["data"]} == {key_id, new_id}
    revoked = admin.ok("POST", f"/keys/{new_id}/revoke")
    assert revoked["revoked_at"] is not None
    assert admin.ok("GET", "/keys")["data"] == []
    seen.append(admin.call("GET", "/keys", include_revoked="1").text)
    for text in seen:
        assert plaintext not in text and rotated["key"] not in text
        assert "hash" not in text
    admin.error("GET", "/keys/key_missing", None, 404)
    admin.error("POST", "/keys/key_missing/revoke", None, 404)
    admin.error("POST", "/keys/key_missing/rotate", None, 404)
    admin.error("PATCH", "/keys/key_missing", {"name": "x"}, 404)


def test_key_filters_and_expiry_forms(admin: Admin) -> None:
    team = admin.ok("POST", "/teams", {"name": "t"}, 201)
    tk = admin.ok("POST", "/keys", {"name": "svc", "team_id": team["id"], "expires_at": "2999-01-01"}, 201)
    assert tk["expires_at"] == "2999-01-01T00:00:00+00:00"
    admin.ok("POST", "/keys", {"name": "other", "is_admin": True, "tags": ["ops"]}, 201)
    assert [k["id"] for k in admin.ok("GET", "/keys", team_id=team["id"])["data"]] == [tk["id"]]
    assert len(admin.ok("GET", "/keys")["data"]) == 2
    assert "user" in admin.error("POST", "/keys", {"name": "x", "user_id": "user_missing"}, 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 3}, "name"),
        ({"name": "k", "allowed_models": "claude"}, "allowed_models"),
        ({"name": "k", "is_admin": "yes"}, "is_admin"),
        ({"name": "k", "expires_in_days": -1}, "expires_in_days"),
        ({"name": "k", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "k", "expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "k", "expires_at": "2999-01-01", "expires_in_days": 3}, "expires_at"),
        ({"name": "k", "tags": [1]}, "tags"),
        ({"name": "k", "secret": "x"}, "secret"),
    ],
)
def test_key_validation_names_the_field(admin: Admin, body: dict[str, Any], field: str) -> None:
    assert admin.error("POST", "/keys", body, 400).startswith(field + ":")


def test_bad_json_and_bad_bodies(admin: Admin) -> None:
    assert "JSON" in admin.error("POST", "/teams", b"{not json", 400)
    assert "object" in admin.error("POST", "/teams", b"[1, 2]", 400)
    assert admin.error("POST", "/users", {"name": "u", "email": 5}, 400).startswith("email:")
    assert admin.error("PATCH", "/teams/team_x", {"name": None}, 400).startswith("name:")
    resp = admin.call("POST", "/teams", b"x" * (1 << 21))
    assert resp.status_code == 413


def test_unknown_paths_and_wrong_methods(admin: Admin) -> None:
    assert "no admin route" in admin.error("GET", "/nothing", None, 404)
    admin.error("GET", "/teams/a/b/c", None, 404)
    admin.error("GET", "", None, 404)
    assert "use GET, POST" in admin.error("DELETE", "/teams", None, 405)
    assert "use POST" in admin.error("GET", "/keys/key_1/revoke", None, 405)
    admin.error("POST", "/budgets", {}, 405)
    admin.error("GET", "/limits/key/abc", None, 405)


def test_every_route_answers_json_from_the_table(admin: Admin) -> None:
    # A route the table lists but the handler cannot reach would answer 404 or 405 here.
    for route in ROUTES:
        path = re.sub(r"\{[^}]+\}", "key", route.path)
        resp = admin.call(route.method, path, {} if route.request else None)
        assert resp.status_code not in (405, 500), (route.method, route.path, resp.text)
        assert resp.headers["content-type"] == "application/json"


# -- budgets, limits, spend ----------------------------------------------------------------------


def test_budgets_set_list_with_spend_and_delete(admin: Admin) -> None:
    team = admin.ok("POST", "/teams", {"name": "t"}, 201)
    user = admin.ok("POST", "/users", {"name": "ada", "team_id": team["id"]}, 201)
    key = admin.ok("POST", "/keys", {"name": "k", "user_id": user["id"]}, 201)
    monthly = admin.ok(
        "PUT", "/budgets", {"scope": "user", "scope_id": user["id"], "period": "monthly", "amount_usd": 25}
    )
    assert monthly["id"].startswith("bud") and monthly["amount_usd"] == 25.0
    again = admin.ok(
        "PUT",
        "/budgets",
        {"scope": "user", "scope_id": user["id"], "period": "monthly", "amount_usd": "30.5"},
    )
    assert again["id"] == monthly["id"] and again["amount_usd"] == 30.5
    total = admin.ok(
        "PUT", "/budgets", {"scope": "team", "scope_id": team["id"], "period": "total", "amount_usd": 100}
    )
    now = datetime.now(UTC)
    write_spend(
        admin.db_url,
        [
            SpendEntry("r1", now, key["id"], user["id"], team["id"], model="m", cost_micro=1_250_000),
            SpendEntry(
                "r2", now - timedelta(days=400), key["id"], user["id"], team["id"], cost_micro=2_000_000
            ),
        ],
    )
    budgets = {b["id"]: b for b in admin.ok("GET", "/budgets")["data"]}
    assert budgets[monthly["id"]]["spent_usd"] == 1.25
    assert budgets[monthly["id"]]["remaining_usd"] == 29.25
    assert (
        budgets[monthly["id"]]["period_start"]
        == now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).isoformat()
    )
    assert budgets[total["id"]]["spent_usd"] == 3.25 and budgets[total["id"]]["period_start"] is None
    assert [b["id"] for b in admin.ok("GET", "/budgets", scope="team")["data"]] == [total["id"]]
    assert [b["id"] for b in admin.ok("GET", "/budgets", scope_id=user["id"])["data"]] == [monthly["id"]]
    assert admin.ok("DELETE", f"/budgets/{total['id']}")["deleted"] is True
    admin.error("DELETE", f"/budgets/{total['id']}", None, 404)
    admin.error(
        "PUT",
        "/budgets",
        {"scope": "user", "scope_id": "user_missing", "period": "daily", "amount_usd": 1},
        404,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope_id": "x", "period": "daily", "amount_usd": 1}, "scope"),
        ({"scope": "org", "scope_id": "x", "period": "daily", "amount_usd": 1}, "scope"),
        ({"scope": "user", "period": "daily", "amount_usd": 1}, "scope_id"),
        ({"scope": "user", "scope_id": "x", "period": "hourly", "amount_usd": 1}, "period"),
        ({"scope": "user", "scope_id": "x", "period": "daily"}, "amount_usd"),
        ({"scope": "user", "scope_id": "x", "period": "daily", "amount_usd": -1}, "amount_usd"),
        ({"scope": "user", "scope_id": "x", "period": "daily", "amount_usd": "lots"}, "amount_usd"),
        ({"scope": "user", "scope_id": "x", "period": "daily", "amount_usd": True}, "amount_usd"),
    ],
)
def test_budget_validation_names_the_field(admin: Admin, body: dict[str, Any], field: str) -> None:
    assert admin.error("PUT", "/budgets", body, 400).startswith(field + ":")


def test_limits_set_list_delete(admin: Admin) -> None:
    user = admin.ok("POST", "/users", {"name": "ada"}, 201)
    key = admin.ok("POST", "/keys", {"name": "k"}, 201)
    set_user = admin.ok(
        "PUT",
        "/limits",
        {"scope": "user", "scope_id": user["id"], "requests_per_minute": 60, "max_concurrent": 2},
    )
    assert set_user == {
        "scope": "user",
        "scope_id": user["id"],
        "requests_per_minute": 60,
        "input_tokens_per_minute": None,
        "output_tokens_per_minute": None,
        "max_concurrent": 2,
    }
    admin.ok("PUT", "/limits", {"scope": "key", "scope_id": key["id"], "output_tokens_per_minute": 1000})
    # PUT replaces the whole set: what is left out becomes unlimited.
    replaced = admin.ok(
        "PUT", "/limits", {"scope": "user", "scope_id": user["id"], "input_tokens_per_minute": 5}
    )
    assert (replaced["requests_per_minute"], replaced["input_tokens_per_minute"]) == (None, 5)
    assert len(admin.ok("GET", "/limits")["data"]) == 2
    assert [x["scope_id"] for x in admin.ok("GET", "/limits", scope="key")["data"]] == [key["id"]]
    assert admin.error("GET", "/limits", None, 400, scope="org").startswith("scope:")
    assert admin.error(
        "PUT", "/limits", {"scope": "user", "scope_id": user["id"], "max_concurrent": 0}, 400
    ).startswith("max_concurrent:")
    admin.error("PUT", "/limits", {"scope": "key", "scope_id": "key_missing", "max_concurrent": 1}, 404)
    assert admin.ok("DELETE", f"/limits/key/{key['id']}")["deleted"] is True
    admin.error("DELETE", f"/limits/key/{key['id']}", None, 404)
    admin.error("DELETE", f"/limits/org/{key['id']}", None, 404)


def test_spend_report_groups_and_windows(admin: Admin) -> None:
    now = datetime.now(UTC)
    write_spend(
        admin.db_url,
        [
            SpendEntry(
                "a",
                now - timedelta(hours=1),
                "key_a",
                "user_a",
                model="opus",
                input_tokens=10,
                output_tokens=5,
                cost_micro=1_500_000,
            ),
            SpendEntry(
                "b",
                now - timedelta(hours=2),
                "key_a",
                "user_a",
                model="sonnet",
                input_tokens=20,
                cache_read_tokens=7,
                cost_micro=500_000,
            ),
            SpendEntry(
                "c", now - timedelta(days=3), "key_b", None, model="opus", output_tokens=1, cost_micro=250_000
            ),
            SpendEntry("d", now - timedelta(days=40), "key_b", None, model="opus", cost_micro=9_000_000),
        ],
    )
    report = admin.ok("GET", "/spend", by="key", since="7d")
    assert report["by"] == "key" and report["until"] is None
    assert [(r["group"], r["requests"], r["cost_usd"]) for r in report["data"]] == [
        ("key_a", 2, 2.0),
        ("key_b", 1, 0.25),
    ]
    assert report["data"][0]["input_tokens"] == 30 and report["data"][0]["cache_read_tokens"] == 7
    assert report["total"]["requests"] == 3 and report["total"]["cost_usd"] == 2.25
    by_model = admin.ok("GET", "/spend", by="model", since="24h")["data"]
    assert [(r["group"], r["cost_usd"]) for r in by_model] == [("opus", 1.5), ("sonnet", 0.5)]
    assert [r["requests"] for r in admin.ok("GET", "/spend", by="user", since="150m")["data"]] == [2]
    assert admin.ok("GET", "/spend", by="user", since="30m")["data"] == []
    by_day = admin.ok("GET", "/spend", by="day", since=(now - timedelta(days=60)).date().isoformat())["data"]
    assert sum(r["requests"] for r in by_day) == 4 and by_day == sorted(by_day, key=lambda r: r["group"])
    until = admin.ok("GET", "/spend", by="team", since="60d", until="2d")
    assert until["total"]["requests"] == 2 and until["data"][0]["group"] is None
    assert admin.ok("GET", "/spend")["by"] == "key"
    assert admin.error("GET", "/spend", None, 400, by="region").startswith("by:")
    assert admin.error("GET", "/spend", None, 400, since="last week").startswith("since:")
    assert admin.error("GET", "/spend", None, 400, since="1d", until="2d").startswith("until:")


def test_spend_report_by_deployment_with_attempts(admin: Admin) -> None:
    now = datetime.now(UTC)
    write_spend(
        admin.db_url,
        [
            SpendEntry("a", now, "key_a", deployment="vertex/europe-west1", cost_micro=1_000_000),
            SpendEntry("b", now, "key_a", deployment="bedrock/eu-west-1", attempts=2, cost_micro=500_000),
            SpendEntry("c", now, "key_b", deployment="bedrock/eu-west-1", attempts=3, cost_micro=250_000),
            SpendEntry("d", now, "key_b", attempts=0, status=429),
        ],
    )
    report = admin.ok("GET", "/spend", by="deployment", since="1h")
    assert report["by"] == "deployment"
    assert [(r["group"], r["requests"], r["attempts"], r["cost_usd"]) for r in report["data"]] == [
        ("vertex/europe-west1", 1, 1, 1.0),
        ("bedrock/eu-west-1", 2, 5, 0.75),
        (None, 1, 0, 0.0),
    ]
    assert (report["total"]["requests"], report["total"]["attempts"]) == (4, 6)
    by_key = admin.ok("GET", "/spend", by="key", since="1h")["data"]
    assert [(r["group"], r["attempts"]) for r in by_key] == [("key_a", 3), ("key_b", 3)]


# -- residency: region allow-lists and provider preference ----------------------------------------


def test_team_regions_and_providers_create_patch_clear(admin: Admin) -> None:
    plain = admin.ok("POST", "/teams", {"name": "plain"}, 201)
    assert (plain["allowed_regions"], plain["preferred_providers"]) == (None, None)
    team = admin.ok(
        "POST",
        "/teams",
        {
            "name": "eu",
            "allowed_regions": ["eu", "europe-west1"],
            "preferred_providers": ["bedrock", "vertex"],
        },
        201,
    )
    assert (team["allowed_regions"], team["preferred_providers"]) == (
        ["eu", "europe-west1"],
        ["bedrock", "vertex"],
    )
    assert admin.ok("GET", f"/teams/{team['id']}") == team
    assert {t["name"]: t["allowed_regions"] for t in admin.ok("GET", "/teams")["data"]} == {
        "eu": ["eu", "europe-west1"],
        "plain": None,
    }
    # Left out: left alone.
    renamed = admin.ok("PATCH", f"/teams/{team['id']}", {"name": "emea"})
    assert (renamed["allowed_regions"], renamed["preferred_providers"]) == (
        ["eu", "europe-west1"],
        ["bedrock", "vertex"],
    )
    changed = admin.ok("PATCH", f"/teams/{team['id']}", {"allowed_regions": ["eu-west-1"]})
    assert (changed["allowed_regions"], changed["preferred_providers"]) == (
        ["eu-west-1"],
        ["bedrock", "vertex"],
    )
    cleared = admin.ok(
        "PATCH", f"/teams/{team['id']}", {"allowed_regions": None, "preferred_providers": None}
    )
    assert (cleared["allowed_regions"], cleared["preferred_providers"]) == (None, None)
    admin.error("PATCH", "/teams/team_missing", {"allowed_regions": ["eu"]}, 404)


def test_key_regions_create_patch_clear_rotate(admin: Admin) -> None:
    created = admin.ok("POST", "/keys", {"name": "k", "allowed_regions": ["europe-west4", "eu"]}, 201)
    assert created["allowed_regions"] == ["europe-west4", "eu"]
    assert admin.ok("GET", f"/keys/{created['id']}")["allowed_regions"] == ["europe-west4", "eu"]
    assert admin.ok("POST", "/keys", {"name": "any"}, 201)["allowed_regions"] is None
    patched = admin.ok("PATCH", f"/keys/{created['id']}", {"allowed_models": ["m"]})
    assert (patched["allowed_regions"], patched["allowed_models"]) == (["europe-west4", "eu"], ["m"])
    patched = admin.ok("PATCH", f"/keys/{created['id']}", {"allowed_regions": ["us"]})
    assert (patched["allowed_regions"], patched["allowed_models"]) == (["us"], ["m"])
    rotated = admin.ok("POST", f"/keys/{created['id']}/rotate", None, 201)
    assert rotated["allowed_regions"] == ["us"]
    cleared = admin.ok("PATCH", f"/keys/{rotated['id']}", {"allowed_regions": None})
    assert (cleared["allowed_regions"], cleared["allowed_models"]) == (None, ["m"])


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/keys", {"name": "k", "allowed_regions": ["EU"]}, "allowed_regions"),
        ("POST", "/keys", {"name": "k", "allowed_regions": []}, "allowed_regions"),
        ("POST", "/keys", {"name": "k", "allowed_regions": ["eu west"]}, "allowed_regions"),
        ("POST", "/keys", {"name": "k", "allowed_regions": ["e" * 65]}, "allowed_regions"),
        ("POST", "/keys", {"name": "k", "allowed_regions": "eu"}, "allowed_regions"),
        ("POST", "/keys", {"name": "k", "allowed_regions": [""]}, "allowed_regions"),
        ("POST", "/keys", {"name": "k", "preferred_providers": ["vertex"]}, "preferred_providers"),
        ("PATCH", "/keys/{key}", {"allowed_regions": ["eu_west"]}, "allowed_regions"),
        ("POST", "/teams", {"name": "t", "allowed_regions": ["Europe"]}, "allowed_regions"),
        ("POST", "/teams", {"name": "t", "preferred_providers": ["azure"]}, "preferred_providers"),
        ("POST", "/teams", {"name": "t", "preferred_providers": []}, "preferred_providers"),
        ("POST", "/teams", {"name": "t", "preferred_providers": [1]}, "preferred_providers"),
        ("PATCH", "/teams/{team}", {"allowed_regions": ["eu/west"]}, "allowed_regions"),
        ("PATCH", "/teams/{team}", {"preferred_providers": ["VERTEX"]}, "preferred_providers"),
    ],
)
def test_bad_region_and_provider_lists_are_400_naming_the_field(
    admin: Admin, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    team = admin.ok("POST", "/teams", {"name": "existing"}, 201)
    key = admin.ok("POST", "/keys", {"name": "existing"}, 201)
    path = path.format(team=team["id"], key=key["id"])
    resp = admin.call(method, path, body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert resp.json()["error"]["message"].startswith(field + ":")
    # Nothing changed.
    assert admin.ok("GET", f"/teams/{team['id']}") == team
    assert [t["id"] for t in admin.ok("GET", "/teams")["data"]] == [team["id"]]
    assert [k["id"] for k in admin.ok("GET", "/keys")["data"]] == [key["id"]]


# -- bodies on keys and teams ------------------------------------------------------------------------


def test_log_bodies_on_keys_and_teams_create_patch_view(admin: Admin) -> None:
    team = admin.ok("POST", "/teams", {"name": "t"}, 201)
    assert team["log_bodies"] is False
    loud = admin.ok("POST", "/teams", {"name": "loud", "log_bodies": True}, 201)
    assert loud["log_bodies"] is True and admin.ok("GET", f"/teams/{loud['id']}")["log_bodies"] is True
    assert admin.ok("PATCH", f"/teams/{loud['id']}", {"name": "quiet"})["log_bodies"] is True  # left alone
    assert admin.ok("PATCH", f"/teams/{loud['id']}", {"log_bodies": False})["log_bodies"] is False

    key = admin.ok("POST", "/keys", {"name": "k"}, 201)
    assert key["log_bodies"] is False
    kept = admin.ok("POST", "/keys", {"name": "kept", "log_bodies": True}, 201)
    assert kept["log_bodies"] is True
    assert admin.ok("PATCH", f"/keys/{key['id']}", {"log_bodies": True})["log_bodies"] is True
    assert admin.ok("PATCH", f"/keys/{key['id']}", {"tags": ["x"]})["log_bodies"] is True
    assert admin.ok("GET", f"/keys/{key['id']}")["log_bodies"] is True
    assert admin.ok("POST", f"/keys/{kept['id']}/rotate", None, 201)["log_bodies"] is True
    for method, path in (("POST", "/keys"), ("PATCH", f"/keys/{key['id']}"), ("POST", "/teams"),
                         ("PATCH", f"/teams/{team['id']}")):  # fmt: skip
        for bad in ("yes", None, 1):
            assert admin.error(method, path, {"name": "n2", "log_bodies": bad}, 400).startswith("log_bodies:")


# -- the activity log ----------------------------------------------------------------------------------


def test_logs_list_pages_with_a_cursor_and_filters(admin: Admin) -> None:
    t = now()
    seed(admin.db_url, traffic(t))
    newest_first = [f"req_{i:02d}" for i in range(10)]
    first = admin.ok("GET", "/logs")
    assert [e["request_id"] for e in first["data"]] == newest_first and first["next_cursor"] is None
    summary = first["data"][0]
    assert "request_body" not in summary and "request_headers" not in summary
    assert (
        summary["bodies_kept"] is True
        and summary["cost_usd"] == 4.567891
        and summary["cost_micro"] == 4567891
    )
    assert summary["attempts"][0] == {
        "deployment": "vertex/global",
        "status": 529,
        "error": "overloaded_error",
    }

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = admin.ok("GET", "/logs", **params)
        seen += [e["request_id"] for e in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first and pages == 4
    # A page that ends exactly at the last entry says there is no next one.
    assert admin.ok("GET", "/logs", limit=10)["next_cursor"] is None
    assert admin.ok("GET", "/logs", limit=9)["next_cursor"] is not None

    def ids(**params: Any) -> list[str]:
        resp = admin.call("GET", "/logs", **params)
        assert resp.status_code == 200, resp.text
        return [e["request_id"] for e in resp.json()["data"]]

    assert ids(key_id="key_a") == ["req_01", "req_03", "req_05", "req_07", "req_09"]
    assert ids(
        key_id="key_a", limit=2, cursor=admin.ok("GET", "/logs", key_id="key_a", limit=2)["next_cursor"]
    ) == [
        "req_05",
        "req_07",
    ]
    assert ids(errors="true") == ["req_04"] and ids(status="529") == ["req_04"]
    assert ids(model="claude-opus-4-1", since="7m") == ["req_00", "req_03", "req_06"]
    assert ids(until=(t - timedelta(minutes=7, seconds=30)).isoformat()) == ["req_08", "req_09"]
    for name, value in (("user_id", "user_ada"), ("team_id", "team_platform"), ("provider", "vertex"),
                        ("deployment", "vertex/europe-west1")):  # fmt: skip
        assert len(ids(**{name: value})) == 10
    assert ids(session_id="nope") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "ok"}, "status"),
        ({"status": "99"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"since": "1h", "until": "2h"}, "until"),
        ({"errors": "maybe"}, "errors"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WyJ4IiwgMV0"}, "cursor"),  # ["x", 1]
        ({"key": "key_a"}, "key"),  # a misspelt filter is refused, not ignored
    ],
)
def test_logs_list_bad_parameters_are_400_naming_them(
    admin: Admin, params: dict[str, str], field: str
) -> None:
    resp = admin.call("GET", "/logs", **params)  # `status` is a query parameter here
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert resp.json()["error"]["message"].startswith(field + ":"), resp.text


def test_log_entry_with_everything(admin: Admin) -> None:
    seed(admin.db_url, [full_entry("req_one")])
    entry = admin.ok("GET", "/logs/req_one")
    assert entry["request_body"] == full_entry().request_body and entry["response_body"].endswith(AWKWARD)
    assert entry["request_headers"]["x-api-key"] == "[REDACTED]" and entry["bodies_truncated"] is True
    assert entry["started_at"] == "2025-06-01T09:30:00.123456+00:00" and entry["cost_usd"] == 4.567891
    assert (
        ActivityEntry.from_dict({k: v for k, v in entry.items() if k != "cost_usd"})
        == stored(admin.db_url, ["req_one"])[0]
    )
    assert "no request 'req_missing'" in admin.error("GET", "/logs/req_missing", None, 404)


def test_session_as_a_conversation(admin: Admin) -> None:
    seed(admin.db_url, [*session_entries(now()), full_entry("req_elsewhere", session_id="other")])
    doc = admin.ok("GET", f"/sessions/{SESSION}")
    assert doc["session_id"] == SESSION and [t["request_id"] for t in doc["turns"]] == [
        f"req_s{i}" for i in range(1, 6)
    ]
    texts = [(t["user_text"], t["assistant_text"]) for t in doc["turns"]]
    assert texts == [
        ("Fix the failing test, please", "I'll look at the test.\n[tool use: Bash]"),  # SSE
        ("[tool result] 1 failed\nNow make it pass", "All 12 tests pass."),  # a whole Message
        ("And on Bedrock?", "Same there."),  # a Bedrock event stream, kept as JSON lines
        (None, None),  # failed, no bodies
        (None, "Cut sh"),  # bodies cut short
    ]
    assert (
        doc["total"]["requests"] == 5 and doc["total"]["errors"] == 1 and doc["total"]["cost_usd"] == 0.00485
    )
    assert doc["turns"][3]["status"] == 529 and "request_body" not in doc["turns"][0]
    assert "no session 'nope'" in admin.error("GET", "/sessions/nope", None, 404)


def test_export_streams_chunked_and_re_reads_as_stored(admin: Admin) -> None:
    entries = [
        full_entry("req_x1", datetime.now(UTC) - timedelta(hours=2), response_body=AWKWARD * 5_000),
        full_entry("req_x2", datetime.now(UTC) - timedelta(hours=1), key_id="key_other"),
        *(
            full_entry(f"req_y{i:03d}", datetime.now(UTC) - timedelta(minutes=50, seconds=-i))
            for i in range(120)
        ),
        full_entry("req_old", datetime.now(UTC) - timedelta(days=3)),
    ]
    seed(admin.db_url, entries)
    expected = stored(admin.db_url, [e.request_id for e in entries[:-1]])
    for fmt, read in (("jsonl", from_jsonl), ("csv", from_csv)):
        resp = requests.get(
            admin.base + PREFIX + "/logs/export",
            params={"since": "1d", "format": fmt},
            stream=True,
            timeout=10,
        )
        assert resp.status_code == 200
        assert resp.headers["content-type"] == MEDIA_TYPES[fmt]
        assert resp.headers["transfer-encoding"] == "chunked" and "content-length" not in resp.headers
        assert resp.headers["content-disposition"] == f'attachment; filename="cloudgate-activity.{fmt}"'
        chunks = list(resp.iter_content(chunk_size=None))
        assert len(chunks) > 1  # sent as it was read, not as one body
        text = b"".join(chunks).decode()
        assert list(read(io.StringIO(text, newline=""))) == expected, fmt
    only = admin.call("GET", "/logs/export", since="1d", key_id="key_other")
    assert [e.request_id for e in from_jsonl(only.text.split("\n"))] == ["req_x2"]
    assert admin.call("GET", "/logs/export", since="1m", format="csv").text.count("\n") == 1  # the header


def test_export_refuses_bad_parameters_before_streaming(admin: Admin) -> None:
    assert admin.error("GET", "/logs/export", None, 400).startswith("since: required")
    assert admin.error("GET", "/logs/export", None, 400, since="1d", format="xml").startswith("format:")
    assert admin.error("GET", "/logs/export", None, 400, since="soon").startswith("since:")
    assert admin.error("GET", "/logs/export", None, 400, since="1d", limit="5").startswith("limit:")


def test_export_stops_when_the_client_leaves(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    run(upgrade(url))
    start = datetime.now(UTC) - timedelta(hours=1)
    # About 30 MB: far more than socket buffers hold, so the server is still exporting when the
    # client goes.
    body = "x" * 10_000
    seed(
        url,
        [
            full_entry(f"req_{i:04d}", start + timedelta(milliseconds=i), response_body=body)
            for i in range(3000)
        ],
    )
    app = AdminOnly(url)
    outcome: list[str] = []
    with serving(app) as srv:
        assert app.api is not None
        export = app.api.store.activity.export

        async def watched(*args: Any, **kwargs: Any) -> Any:
            try:
                async for entry in export(*args, **kwargs):
                    yield entry
                outcome.append("finished")
            except GeneratorExit:
                outcome.append("stopped")
                raise

        app.api.store.activity.export = watched  # type: ignore[method-assign]
        with requests.get(
            srv.url + PREFIX + "/logs/export", params={"since": "2h"}, stream=True, timeout=10
        ) as resp:
            assert resp.status_code == 200
            next(resp.iter_content(chunk_size=1024))
        deadline = time.monotonic() + 10
        while not outcome and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outcome == ["stopped"]
        # The server goes on answering.
        assert (
            requests.get(srv.url + PREFIX + "/logs", params={"limit": 1}, timeout=10).json()["data"][0][
                "request_id"
            ]
            == "req_2999"
        )


# -- the OpenAPI document ------------------------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_openapi_document_is_well_formed_and_lists_every_route(admin: Admin) -> None:
    doc = admin.ok("GET", "/openapi.json")
    assert doc == openapi_document(ROUTES, PREFIX)
    assert doc["openapi"].startswith("3.1") and doc["info"]["title"] and doc["info"]["version"]
    served = {(r.method.lower(), PREFIX + r.path) for r in ROUTES}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == served
    assert len(served) == 28
    schemas = doc["components"]["schemas"]
    for ref in set(_refs(doc)):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    operation_ids = []
    for path, ops in doc["paths"].items():
        placeholders = set(re.findall(r"\{([^}]+)\}", path))
        for method, op in ops.items():
            assert method in {"get", "post", "put", "patch", "delete"}
            operation_ids.append(op["operationId"])
            assert op["responses"] and all(re.fullmatch(r"[1-5]\d\d|default", s) for s in op["responses"])
            for resp in op["responses"].values():
                assert resp["description"]
            params = op.get("parameters", [])
            assert {p["name"] for p in params if p["in"] == "path"} == placeholders
            for p in params:
                assert p["in"] in {"path", "query"} and "schema" in p
                assert p["required"] is True or p["in"] == "query"
            if method in {"get", "delete"}:
                assert "requestBody" not in op
    assert len(operation_ids) == len(set(operation_ids))
    for scheme in doc["components"]["securitySchemes"].values():
        assert scheme["type"] in {"http", "apiKey"}
    for name, schema in schemas.items():
        assert schema["type"] == "object", name
        assert set(schema.get("required", [])) <= set(schema["properties"]), name
    for name in (
        "Key",
        "KeyCreate",
        "KeyUpdate",
        "CreatedKey",
        "RotatedKey",
        "Team",
        "TeamCreate",
        "TeamUpdate",
    ):
        regions = schemas[name]["properties"]["allowed_regions"]
        assert regions["type"] == ["array", "null"] and regions["items"]["pattern"], name
        assert schemas[name]["properties"]["log_bodies"]["type"] == "boolean", name
    for name in ("Team", "TeamCreate", "TeamUpdate"):
        providers = schemas[name]["properties"]["preferred_providers"]
        assert providers["items"]["enum"] == ["vertex", "bedrock", "anthropic"], name
    assert "preferred_providers" not in schemas["KeyCreate"]["properties"]
    assert "attempts" in schemas["SpendRow"]["properties"]
    assert "attempts" in schemas["SpendReport"]["properties"]["total"]["properties"]
    assert "deployment" in schemas["SpendReport"]["properties"]["by"]["enum"]
    spend_params = {p["name"]: p for p in doc["paths"][PREFIX + "/spend"]["get"]["parameters"]}
    assert "deployment" in spend_params["by"]["schema"]["enum"]


def test_openapi_documents_the_log_routes(admin: Admin) -> None:
    doc = admin.ok("GET", "/openapi.json")
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    listing = paths[PREFIX + "/logs"]["get"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert set(params) == {"since", "until", "key_id", "user_id", "team_id", "model", "status", "session_id",
                           "provider", "deployment", "errors", "limit", "cursor"}  # fmt: skip
    assert params["limit"]["schema"]["type"] == "integer" and params["status"]["schema"]["type"] == "integer"
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/LogList")
    export = paths[PREFIX + "/logs/export"]["get"]
    assert set(export["responses"]["200"]["content"]) == set(MEDIA_TYPES.values())
    export_params = {p["name"]: p for p in export["parameters"]}
    assert export_params["since"]["required"] is True and export_params["format"]["schema"]["enum"] == [
        "jsonl",
        "csv",
    ]
    assert "limit" not in export_params and "cursor" not in export_params
    assert paths[PREFIX + "/logs/{request_id}"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]["$ref"].endswith("/LogEntry")
    assert PREFIX + "/sessions/{session_id}" in paths
    # Every field of an entry is described, with its type.
    entry = schemas["LogEntry"]["properties"]
    assert set(entry) == {f.name for f in __import__("dataclasses").fields(ActivityEntry)} | {"cost_usd"}
    assert entry["started_at"] == {
        "type": "string",
        "format": "date-time",
        "description": "when the request arrived",
    }
    assert entry["cost_micro"]["type"] == ["integer", "null"] and entry["stream"]["type"] == "boolean"
    assert entry["attempts"]["type"] == "array" and entry["request_body"]["type"] == ["string", "null"]
    assert "request_body" not in schemas["LogSummary"]["properties"]
    assert {"user_text", "assistant_text"} <= set(schemas["SessionTurn"]["properties"])


def test_the_store_never_holds_what_the_answers_show(admin: Admin) -> None:
    created = admin.ok("POST", "/keys", {"name": "k"}, 201)

    async def scan() -> list[str]:
        store = Store.open(admin.db_url)
        try:
            async with store.sessions() as session:
                from sqlalchemy import select

                return [
                    str(value)
                    for table in Base.metadata.sorted_tables
                    for row in (await session.execute(select(table))).all()
                    for value in row
                ]
        finally:
            await store.close()

    assert all(created["key"] not in value for value in run(scan()))
