"""Budgets (each one's use as a bar) and rate limits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cloudgate.console.html import (
    field,
    post_button,
    select,
    table,
    tag,
    usd,
    when,
)
from cloudgate.console.pages.common import (
    back_to,
    budget_bar,
    budget_form,
    directory,
    form_int,
    form_text,
    panel,
    present,
    render,
    with_done,
)
from cloudgate.console.web import Request, Response, redirect
from cloudgate.gateway.frontdoors.admin import AdminAPI
from cloudgate.gateway.frontdoors.admin_views import LIMIT_FIELDS
from cloudgate.store.reports import Reports

if TYPE_CHECKING:
    from cloudgate.console.app import Console


# -- budgets and limits -------------------------------------------------------------------------


async def budgets(console: Console, req: Request) -> Response:
    """GET /ui/budgets: every budget with this period's use as a bar."""
    uses = await Reports(console.store).budget_usage()
    rows = [
        [
            tag("a", f"{u.scope} {u.label}", href=f"/ui/{u.scope}s/{quote(u.scope_id, safe='')}"),
            u.period,
            budget_bar(u.spent_micro, u.amount_micro),
            f"{usd(u.spent_micro)} of {usd(u.amount_micro)}",
            when(u.window_start) if u.window_start else "all time",
            post_button(
                f"/ui/budgets/{quote(u.budget_id, safe='')}/delete",
                "Delete",
                req.csrf,
                confirm="Delete this budget?",
                danger=True,
            ),
        ]
        for u in uses
    ]
    teams, users = await directory(console)
    _, listed = await console.admin.run(AdminAPI.list_keys)
    owners: list[tuple[str, str]] = [("", "(choose)")]
    owners += [(f"team:{i}", f"team {n}") for i, n in teams.items()]
    owners += [(f"user:{i}", f"user {n}") for i, n in users.items()]
    owners += [(f"key:{k['id']}", f"key {k['name']}") for k in listed["data"]]
    form = budget_form(req, "", "", "/ui/budgets", field("For", select("owner", owners, required=True)))
    content = [
        panel(
            "Budgets",
            table(["For", "Period", "Use", "Spent", "Since", ""], rows, empty="No budgets yet."),
            "budget-list",
        ),
        panel("Set a budget", form, "create"),
    ]
    return render(req, "Budgets", content, "budgets")


async def set_budget(console: Console, req: Request) -> Response:
    """POST /ui/budgets: scope and scope_id, or owner as "scope:id"."""
    scope, scope_id = form_text(req.form, "scope"), form_text(req.form, "scope_id")
    if owner := form_text(req.form, "owner"):
        scope, _, scope_id = owner.partition(":")
    body = {
        "scope": scope,
        "scope_id": scope_id,
        "period": form_text(req.form, "period"),
        "amount_usd": form_text(req.form, "amount_usd"),
    }
    await console.admin.run(AdminAPI.set_budget, body=present(body))
    return redirect(with_done(back_to(req, "/ui/budgets"), "budget"))


async def delete_budget(console: Console, req: Request) -> Response:
    """POST /ui/budgets/{id}/delete."""
    await console.admin.run(AdminAPI.delete_budget, {"id": req.params["id"]})
    return redirect(with_done(back_to(req, "/ui/budgets"), "deleted"))


async def set_limits(console: Console, req: Request) -> Response:
    """POST /ui/limits: one owner's rate limits (empty: unlimited)."""
    body: dict[str, Any] = {
        "scope": form_text(req.form, "scope"),
        "scope_id": form_text(req.form, "scope_id"),
    }
    body.update({name: form_int(req.form, name) for name in LIMIT_FIELDS})
    await console.admin.run(AdminAPI.set_limits, body=body)
    return redirect(with_done(back_to(req, "/ui/overview"), "limits"))


async def delete_limits(console: Console, req: Request) -> Response:
    """POST /ui/limits/{scope}/{scope_id}/delete."""
    await console.admin.run(AdminAPI.delete_limits, dict(req.params))
    return redirect(with_done(back_to(req, "/ui/overview"), "deleted"))
