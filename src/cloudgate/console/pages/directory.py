"""Keys, users and teams: list, create, change, revoke or delete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cloudgate.console.html import (
    Html,
    checkbox,
    field,
    post_button,
    select,
    table,
    tag,
    text_input,
    url,
    when,
)
from cloudgate.console.pages.common import (
    budgets_block,
    choices,
    directory,
    entity_path,
    facts,
    fields,
    form_int,
    form_list,
    form_text,
    limits_block,
    logs_link,
    owner_link,
    panel,
    post_form,
    present,
    render,
)
from cloudgate.console.web import Request, Response, json, redirect
from cloudgate.gateway.frontdoors.admin import AdminAPI, Handler

if TYPE_CHECKING:
    from cloudgate.console.app import Console


# -- the list and detail pages' frames ----------------------------------------------------------


def _list_page(req: Request, kind: str, listing: Any, form: Html, *, before: Sequence[Html] = ()) -> Response:
    """The keys, users or teams (`listing`), with the form that creates one below (`before` goes first)."""
    title = f"{kind.capitalize()}s"
    content = [*before, panel(title, listing, f"{kind}-list"), panel(f"Create a {kind}", form, "create")]
    return render(req, title, content, f"{kind}s")


async def _detail_page(
    console: Console,
    req: Request,
    kind: str,
    entity: dict[str, Any],
    about: Html,
    actions: list[Any],
    settings: Html,
    *,
    panels: Sequence[Html] = (),
    grid: Sequence[Html] = (),
) -> Response:
    """One key's, user's or team's page: its facts and actions, its settings form, any `panels`,
    then a grid of any `grid` panels and its rate limits and budgets."""
    here = entity_path(kind, entity["id"])
    content = [
        tag("div", [about, tag("div", actions, class_="actions")], class_="card"),
        panel("Settings", settings, "settings"),
        *panels,
        tag(
            "div",
            [
                *grid,
                await limits_block(console, req, kind, entity["id"], here),
                await budgets_block(console, req, kind, entity["id"], here),
            ],
            class_="grid",
        ),
    ]
    return render(req, f"{kind.capitalize()} {entity['name']}", content, f"{kind}s")


def _owner_summary(req: Request, kind: str, owner: dict[str, Any], confirm: str) -> tuple[Html, list[Any]]:
    """A user's or team's facts, and its delete button (`confirm` asks first)."""
    about = facts(
        [
            ("Id", tag("code", owner["id"])),
            ("Created", when(owner["created_at"])),
            ("Requests", logs_link(f"Show this {kind}'s requests", **{f"{kind}_id": owner["id"]})),
        ]
    )
    delete = post_button(
        f"{entity_path(kind, owner['id'])}/delete", f"Delete {kind}", req.csrf, confirm=confirm, danger=True
    )
    return about, [delete]


async def _update(
    console: Console, req: Request, kind: str, handler: Handler, body: dict[str, Any]
) -> Response:
    """Change one key, user or team (a name left empty stays as it is), then back to its page."""
    if body.get("name") is None:
        body.pop("name", None)
    await console.admin.run(handler, {"id": req.params["id"]}, body=body)
    return redirect(f"{entity_path(kind, req.params['id'])}?done=saved")


def _keys_panel(keys: list[dict[str, Any]]) -> Html:
    """The keys a user or team owns."""
    rows = [
        [tag("a", k["name"], href=entity_path("key", k["id"])), tag("code", k["prefix"] + "…")] for k in keys
    ]
    return panel("Keys", table(["Name", "Prefix"], rows, empty="No keys."), "keys")


# -- keys ---------------------------------------------------------------------------------------


async def keys(console: Console, req: Request, created: dict[str, Any] | None = None) -> Response:
    """GET /ui/keys (also renders the answer to a create or rotate, with the key shown once)."""
    include_revoked = req.query.get("include_revoked") == "true"
    _, listed = await console.admin.run(
        AdminAPI.list_keys, query={"include_revoked": "true" if include_revoked else "false"}
    )
    teams, users = await directory(console)
    rows = []
    for key in listed["data"]:
        status = "revoked" if key["revoked_at"] else "active"
        action = (
            post_button(
                f"{entity_path('key', key['id'])}/revoke",
                "Revoke",
                req.csrf,
                confirm=f"Revoke the key {key['name']}? Requests with it will be refused.",
                danger=True,
            )
            if status == "active"
            else Html("")
        )
        rows.append(
            [
                tag("a", key["name"], href=entity_path("key", key["id"])),
                tag("code", key["prefix"] + "…"),
                owner_link("user", key["user_id"], users),
                owner_link("team", key["team_id"], teams),
                "admin" if key["is_admin"] else "",
                tag("span", status, class_=f"badge {status}"),
                when(key["last_used_at"]),
                when(key["expires_at"]),
                action,
            ]
        )
    shown: list[Any] = []
    if created is not None:
        shown.append(
            tag(
                "section",
                [
                    tag("h2", f"New key “{created['name']}”"),
                    tag("p", "Copy it now: this is the only time it is shown."),
                    tag(
                        "div",
                        [
                            tag("code", created["key"], id="new-key"),
                            tag("button", "Copy", type="button", data_copy="#new-key"),
                        ],
                        class_="secret",
                    ),
                ],
                class_="card created",
                role="status",
            )
        )
    toggle = tag(
        "a",
        "Hide revoked keys" if include_revoked else "Show revoked keys",
        href=url("/ui/keys", include_revoked=None if include_revoked else "true"),
    )
    controls = [
        field("Name", text_input("name", required=True)),
        field("User", select("user_id", choices(users, "(none)"))),
        field("Team", select("team_id", choices(teams, "(none)"))),
        field("Allowed models", text_input("allowed_models", placeholder="any"), "comma-separated"),
        field("Allowed regions", text_input("allowed_regions", placeholder="any"), "comma-separated"),
        field("Expires in days", text_input("expires_in_days", inputmode="numeric", placeholder="never")),
        field("Tags", text_input("tags"), "comma-separated"),
    ]
    form = post_form(
        req, "/ui/keys", [fields(controls), _key_checks(False, False)], "Create key", id="create-key"
    )
    headers = ["Name", "Prefix", "User", "Team", "", "Status", "Last used", "Expires", ""]
    listing = [toggle, table(headers, rows, empty="No keys yet.")]
    return _list_page(req, "key", listing, form, before=shown)


def _key_checks(log_bodies: bool, is_admin: bool) -> Html:
    return fields(
        [
            tag(
                "label",
                [checkbox("log_bodies", log_bodies), " Keep request bodies in the log"],
                class_="check",
            ),
            tag("label", [checkbox("is_admin", is_admin), " Admin key"], class_="check"),
        ]
    )


def _key_body(form: dict[str, str]) -> dict[str, Any]:
    return {
        "name": form_text(form, "name"),
        "allowed_models": form_list(form, "allowed_models"),
        "allowed_regions": form_list(form, "allowed_regions"),
        "tags": form_list(form, "tags") or [],
        "log_bodies": "log_bodies" in form,
        "is_admin": "is_admin" in form,
    }


async def create_key(console: Console, req: Request) -> Response:
    """POST /ui/keys: issue a key and show it once."""
    body = _key_body(req.form)
    body.update(
        user_id=form_text(req.form, "user_id"),
        team_id=form_text(req.form, "team_id"),
        expires_in_days=form_int(req.form, "expires_in_days"),
    )
    _, created = await console.admin.run(AdminAPI.create_key, body=present(body))
    req.query = {}
    return await keys(console, req, created)


async def key_detail(console: Console, req: Request) -> Response:
    """GET /ui/keys/{id}: settings, limits, budgets, recent requests."""
    _, key = await console.admin.run(AdminAPI.get_key, {"id": req.params["id"]})
    teams, users = await directory(console)
    here = entity_path("key", key["id"])
    about = facts(
        [
            ("Id", tag("code", key["id"])),
            ("Prefix", tag("code", key["prefix"] + "…")),
            ("User", owner_link("user", key["user_id"], users)),
            ("Team", owner_link("team", key["team_id"], teams)),
            ("Status", "revoked" if key["revoked_at"] else "active"),
            ("Created", when(key["created_at"])),
            ("Last used", when(key["last_used_at"])),
            ("Expires", when(key["expires_at"])),
            ("Revoked", when(key["revoked_at"])),
            ("Requests", logs_link("Show this key's requests", key_id=key["id"])),
        ]
    )
    actions: list[Any] = []
    if not key["revoked_at"]:
        actions = [
            post_button(f"{here}/rotate", "Rotate", req.csrf, confirm="Replace this key with a new one?"),
            post_button(f"{here}/revoke", "Revoke", req.csrf, confirm="Revoke this key?", danger=True),
        ]
    controls = [
        field("Name", text_input("name", key["name"], required=True)),
        field(
            "Allowed models",
            text_input("allowed_models", ", ".join(key["allowed_models"] or []), placeholder="any"),
        ),
        field(
            "Allowed regions",
            text_input("allowed_regions", ", ".join(key["allowed_regions"] or []), placeholder="any"),
        ),
        field("Tags", text_input("tags", ", ".join(key["tags"]))),
        field("Expires in days", text_input("expires_in_days", inputmode="numeric", placeholder="unchanged")),
    ]
    settings = post_form(
        req, here, [fields(controls), _key_checks(key["log_bodies"], key["is_admin"])], "Save"
    )
    return await _detail_page(console, req, "key", key, about, actions, settings)


async def update_key(console: Console, req: Request) -> Response:
    """POST /ui/keys/{id}: change its settings (empty model or region lists lift the restriction)."""
    body = _key_body(req.form)
    days = form_int(req.form, "expires_in_days")
    if days is not None:
        body["expires_in_days"] = days
    return await _update(console, req, "key", AdminAPI.update_key, body)


async def revoke_key(console: Console, req: Request) -> Response:
    """POST /ui/keys/{id}/revoke."""
    await console.admin.run(AdminAPI.revoke_key, {"id": req.params["id"]})
    await console.sessions.end_for_key(req.params["id"])
    return redirect("/ui/keys?done=revoked")


async def rotate_key(console: Console, req: Request) -> Response:
    """POST /ui/keys/{id}/rotate: the replacement is shown once."""
    _, created = await console.admin.run(AdminAPI.rotate_key, {"id": req.params["id"]})
    await console.sessions.end_for_key(req.params["id"])
    req.query = {}
    return await keys(console, req, created)


async def api_revoke_key(console: Console, req: Request) -> Response:
    """POST /ui/api/keys/{id}/revoke (X-CSRF-Token): the key as JSON."""
    status, key = await console.admin.run(AdminAPI.revoke_key, {"id": req.params["id"]})
    await console.sessions.end_for_key(req.params["id"])
    return json(key, status)


# -- users --------------------------------------------------------------------------------------


async def users(console: Console, req: Request) -> Response:
    """GET /ui/users."""
    teams, _ = await directory(console)
    _, listed = await console.admin.run(AdminAPI.list_users)
    rows = [
        [
            tag("a", u["name"], href=entity_path("user", u["id"])),
            u["email"] or "—",
            owner_link("team", u["team_id"], teams),
            ", ".join(u["tags"]),
            when(u["created_at"]),
        ]
        for u in listed["data"]
    ]
    controls = [
        field("Name", text_input("name", required=True)),
        field("Email", text_input("email", type="email")),
        field("Team", select("team_id", choices(teams, "(none)"))),
        field("Tags", text_input("tags"), "comma-separated"),
    ]
    form = post_form(req, "/ui/users", [fields(controls)], "Create user")
    listing = table(["Name", "Email", "Team", "Tags", "Created"], rows, empty="No users yet.")
    return _list_page(req, "user", listing, form)


async def create_user(console: Console, req: Request) -> Response:
    """POST /ui/users."""
    body = {
        "name": form_text(req.form, "name"),
        "email": form_text(req.form, "email"),
        "team_id": form_text(req.form, "team_id"),
        "tags": form_list(req.form, "tags"),
    }
    _, user = await console.admin.run(AdminAPI.create_user, body=present(body))
    return redirect(f"{entity_path('user', user['id'])}?done=created")


async def user_detail(console: Console, req: Request) -> Response:
    """GET /ui/users/{id}."""
    _, user = await console.admin.run(AdminAPI.get_user, {"id": req.params["id"]})
    teams, _ = await directory(console)
    here = entity_path("user", user["id"])
    _, owned = await console.admin.run(AdminAPI.list_keys, query={"user_id": user["id"]})
    controls = [
        field("Name", text_input("name", user["name"], required=True)),
        field("Email", text_input("email", user["email"] or "", type="email")),
        field("Team", select("team_id", choices(teams, "(none)"), user["team_id"])),
        field("Tags", text_input("tags", ", ".join(user["tags"]))),
    ]
    form = post_form(req, here, [fields(controls)], "Save")
    about, actions = _owner_summary(req, "user", user, "Delete this user and their keys?")
    return await _detail_page(
        console, req, "user", user, about, actions, form, panels=[_keys_panel(owned["data"])]
    )


async def update_user(console: Console, req: Request) -> Response:
    """POST /ui/users/{id} (an empty email or team clears it)."""
    body: dict[str, Any] = {
        "name": form_text(req.form, "name"),
        "email": form_text(req.form, "email"),
        "team_id": form_text(req.form, "team_id"),
        "tags": form_list(req.form, "tags") or [],
    }
    return await _update(console, req, "user", AdminAPI.update_user, body)


async def delete_user(console: Console, req: Request) -> Response:
    """POST /ui/users/{id}/delete."""
    await console.admin.run(AdminAPI.delete_user, {"id": req.params["id"]})
    return redirect("/ui/users?done=deleted")


# -- teams --------------------------------------------------------------------------------------


def _team_fields(team: dict[str, Any] | None) -> Html:
    team = team or {}
    return fields(
        [
            field("Name", text_input("name", team.get("name", ""), required=True)),
            field("Tags", text_input("tags", ", ".join(team.get("tags") or [])), "comma-separated"),
            field(
                "Allowed regions",
                text_input(
                    "allowed_regions", ", ".join(team.get("allowed_regions") or []), placeholder="any"
                ),
            ),
            field(
                "Preferred providers",
                text_input(
                    "preferred_providers",
                    ", ".join(team.get("preferred_providers") or []),
                    placeholder="none",
                ),
                "vertex, bedrock, anthropic",
            ),
            tag(
                "label",
                [checkbox("log_bodies", bool(team.get("log_bodies"))), " Keep request bodies in the log"],
                class_="check",
            ),
        ]
    )


def _team_body(form: dict[str, str]) -> dict[str, Any]:
    return {
        "name": form_text(form, "name"),
        "tags": form_list(form, "tags") or [],
        "allowed_regions": form_list(form, "allowed_regions"),
        "preferred_providers": form_list(form, "preferred_providers"),
        "log_bodies": "log_bodies" in form,
    }


async def teams(console: Console, req: Request) -> Response:
    """GET /ui/teams."""
    _, listed = await console.admin.run(AdminAPI.list_teams)
    rows = [
        [
            tag("a", t["name"], href=entity_path("team", t["id"])),
            ", ".join(t["tags"]),
            ", ".join(t["allowed_regions"] or []) or "any",
            ", ".join(t["preferred_providers"] or []) or "—",
            when(t["created_at"]),
        ]
        for t in listed["data"]
    ]
    form = post_form(req, "/ui/teams", [_team_fields(None)], "Create team")
    listing = table(
        ["Name", "Tags", "Regions", "Preferred providers", "Created"], rows, empty="No teams yet."
    )
    return _list_page(req, "team", listing, form)


async def create_team(console: Console, req: Request) -> Response:
    """POST /ui/teams."""
    _, team = await console.admin.run(AdminAPI.create_team, body=present(_team_body(req.form)))
    return redirect(f"{entity_path('team', team['id'])}?done=created")


async def team_detail(console: Console, req: Request) -> Response:
    """GET /ui/teams/{id}."""
    _, team = await console.admin.run(AdminAPI.get_team, {"id": req.params["id"]})
    _, members = await console.admin.run(AdminAPI.list_users, query={"team_id": team["id"]})
    _, owned = await console.admin.run(AdminAPI.list_keys, query={"team_id": team["id"]})
    form = post_form(req, entity_path("team", team["id"]), [_team_fields(team)], "Save")
    about, actions = _owner_summary(req, "team", team, "Delete this team and its keys?")
    member_rows = [[tag("a", u["name"], href=entity_path("user", u["id"]))] for u in members["data"]]
    members_panel = panel("Members", table(["Name"], member_rows, empty="No members."), "members")
    return await _detail_page(
        console, req, "team", team, about, actions, form, grid=[members_panel, _keys_panel(owned["data"])]
    )


async def update_team(console: Console, req: Request) -> Response:
    """POST /ui/teams/{id} (empty regions allow anywhere, empty providers prefer none)."""
    return await _update(console, req, "team", AdminAPI.update_team, _team_body(req.form))


async def delete_team(console: Console, req: Request) -> Response:
    """POST /ui/teams/{id}/delete."""
    await console.admin.run(AdminAPI.delete_team, {"id": req.params["id"]})
    return redirect("/ui/teams?done=deleted")
