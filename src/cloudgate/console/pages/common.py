"""What the console's pages share: the page frame, panels, form values, owners' limits and budgets."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cloudgate.console import charts
from cloudgate.console.html import (
    Html,
    csrf_field,
    field,
    join,
    notice,
    page,
    post_button,
    select,
    table,
    tag,
    text_input,
    url,
    usd,
)
from cloudgate.console.web import Request, Response, html, safe_next
from cloudgate.gateway.frontdoors.admin import AdminAPI, invalid
from cloudgate.gateway.frontdoors.admin_views import LIMIT_FIELDS, budgets_with_spend
from cloudgate.governance.types import Scope, usd_to_micro

if TYPE_CHECKING:
    from cloudgate.console.app import Console

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
SPEND_BY = ("team", "user", "model")
TOP_SERIES = 7  # spend series drawn by name; the rest are summed as "other"
LOG_PAGE = 50
# One-word notices a redirect may carry: the text shown is ours, never the query's.
NOTICES = {
    "revoked": "The key was revoked; requests with it are refused within a few seconds.",
    "saved": "Saved.",
    "deleted": "Deleted.",
    "created": "Created.",
    "budget": "The budget was set.",
    "limits": "The rate limits were set.",
    "signed-out": "You are signed out.",
}
_SPLIT = re.compile(r"[\s,]+")


def render(req: Request, title: str, content: Any, active: str) -> Response:
    body = [notice(NOTICES.get(req.query.get("done", "")), "ok"), content]
    who = (
        "admin key"
        if req.session and req.session.key_id == "admin"
        else f"key {req.session.key_id if req.session else ''}"
    )
    return html(page(title, body, active=active, csrf=req.csrf, signed_in_as=f"Signed in with the {who}"))


def error_page(req: Request, status: int, message: str) -> str:
    """A page that says what went wrong (with navigation when signed in)."""
    back = tag("p", tag("a", "Back to the overview", href="/ui/overview"))
    content = [notice(message), back]
    if req.session is None:
        return page(f"Error {status}", content)
    return page(f"Error {status}", content, csrf=req.session.csrf_token, signed_in_as="")


def back_to(req: Request, default: str) -> str:
    return safe_next(req.form.get("back"), default)


# -- form values --------------------------------------------------------------------------------


def form_text(form: dict[str, str], name: str) -> str | None:
    value = form.get(name, "").strip()
    return value or None


def form_list(form: dict[str, str], name: str) -> list[str] | None:
    values = [v for v in _SPLIT.split(form.get(name, "")) if v]
    return values or None


def form_int(form: dict[str, str], name: str) -> int | None:
    value = form.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise invalid(f"{name}: must be a whole number")
    return int(value)


def present(body: dict[str, Any]) -> dict[str, Any]:
    """A create body: fields left empty are left out."""
    return {k: v for k, v in body.items() if v is not None}


# -- shared pieces of the keys, users and teams pages ------------------------------------------


async def directory(console: Console) -> tuple[dict[str, str], dict[str, str]]:
    """Team and user names by id."""
    _, teams = await console.admin.run(AdminAPI.list_teams)
    _, users = await console.admin.run(AdminAPI.list_users)
    return {t["id"]: t["name"] for t in teams["data"]}, {u["id"]: u["name"] for u in users["data"]}


def owner_link(kind: str, ident: str | None, names: dict[str, str]) -> Html:
    if not ident:
        return Html("—")
    return tag("a", names.get(ident, ident), href=entity_path(kind, ident))


def choices(names: dict[str, str], none: str) -> list[tuple[str, str]]:
    return [("", none), *sorted(((i, n) for i, n in names.items()), key=lambda p: p[1].lower())]


async def limits_block(console: Console, req: Request, scope: str, scope_id: str, back: str) -> Html:
    limits = await console.store.limits.get(Scope(scope), scope_id)
    inputs = [
        field(
            name.replace("_", " ").capitalize(),
            text_input(
                name, getattr(limits, name) if limits else "", inputmode="numeric", placeholder="unlimited"
            ),
        )
        for name in LIMIT_FIELDS
    ]
    hidden = [
        tag("input", type="hidden", name="scope", value=scope),
        tag("input", type="hidden", name="scope_id", value=scope_id),
        tag("input", type="hidden", name="back", value=back),
    ]
    form = post_form(req, "/ui/limits", [*hidden, fields(inputs)], "Save limits")
    return panel("Rate limits", [tag("p", "Empty means unlimited.", class_="muted"), form], "limits")


async def budgets_block(console: Console, req: Request, scope: str, scope_id: str, back: str) -> Html:
    rows = []
    for budget in await budgets_with_spend(console.store, Scope(scope), scope_id):
        spent, amount = usd_to_micro(budget["spent_usd"]), usd_to_micro(budget["amount_usd"])
        rows.append(
            [
                budget["period"],
                budget_bar(spent, amount),
                f"{usd(spent)} of {usd(amount)}",
                post_button(
                    f"/ui/budgets/{quote(budget['id'], safe='')}/delete",
                    "Delete",
                    req.csrf,
                    confirm="Delete this budget?",
                    danger=True,
                ),
            ]
        )
    form = budget_form(req, scope, scope_id, back)
    return panel(
        "Budgets", [table(["Period", "Use", "Spent", ""], rows, empty="No budget."), form], "budgets"
    )


def budget_bar(spent: int, amount: int) -> Html:
    ratio = spent / amount if amount else 0.0
    return charts.meter(float(spent), float(amount), label=f"{ratio:.0%} of the budget used")


def budget_form(req: Request, scope: str, scope_id: str, back: str, owners: Html | None = None) -> Html:
    periods = [(p, p) for p in ("daily", "weekly", "monthly", "total")]
    who: list[Any] = (
        [owners]
        if owners is not None
        else [
            tag("input", type="hidden", name="scope", value=scope),
            tag("input", type="hidden", name="scope_id", value=scope_id),
        ]
    )
    controls = [
        *who,
        field("Period", select("period", periods, "monthly")),
        field("Amount (USD)", text_input("amount_usd", "", inputmode="decimal", required=True)),
    ]
    back_field = tag("input", type="hidden", name="back", value=back)
    return post_form(req, "/ui/budgets", [back_field, fields(controls)], "Set budget", id="budget-form")


def post_form(req: Request, action: str, content: list[Any], button: str, **attrs: Any) -> Html:
    """A form that POSTs to `action`: the CSRF field, `content`, then a submit button labelled `button`."""
    return tag(
        "form",
        [csrf_field(req.csrf), *content, tag("button", button, type="submit")],
        method="post",
        action=action,
        class_="stack",
        **attrs,
    )


def fields(controls: list[Any]) -> Html:
    """Form controls laid out side by side."""
    return tag("div", controls, class_="fields")


def entity_path(kind: str, ident: str) -> str:
    """The console page of one key, user or team."""
    return f"/ui/{kind}s/{quote(ident, safe='')}"


def logs_link(label: str, **filters: str) -> Html:
    return tag("a", label, href=url("/ui/logs", **filters))


def facts(items: list[tuple[str, Any]]) -> Html:
    return tag("dl", [join([tag("dt", k), tag("dd", v)]) for k, v in items], class_="facts")


def card(title: str, value: str, ident: str) -> Html:
    return tag("div", [tag("span", title), tag("strong", value)], class_="card stat", id=f"stat-{ident}")


def panel(title: str, content: Any, ident: str) -> Html:
    return tag("section", [tag("h2", title), content], class_="card panel", id=ident)


def with_done(path: str, done: str) -> str:
    return f"{path.split('?')[0]}?done={done}"
