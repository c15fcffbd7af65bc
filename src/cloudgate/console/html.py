"""HTML for the console: a small escaping template kit, the page frame and a few building blocks.

Everything shown is escaped by `e` at the point it is placed; `Html` marks text that already is
HTML, so a fragment is never escaped twice and a value is never placed raw by accident.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from cloudgate import __version__


class Html(str):
    """Text that is already HTML."""

    __slots__ = ()


def e(value: Any) -> Html:
    """`value` as HTML: Html passes through, None is empty, a list or tuple is its items in turn,
    anything else is escaped text."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    if isinstance(value, list | tuple):
        return join(value)
    return Html(escape(str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Html:
    """Fragments joined, each escaped unless it is Html."""
    return Html(sep.join(e(p) for p in parts))


def tag(name: str, content: Any = None, /, **attrs: Any) -> Html:
    """`<name attrs>content</name>`; attribute names take `_` for `-` (and `class_` for class);
    True makes a bare attribute, False or None leaves it out."""
    out = [f"<{name}"]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        out.append(f" {attr}" if value is True else f' {attr}="{e(value)}"')
    out.append(">")
    if name in ("input", "meta", "link", "br", "hr"):
        return Html("".join(out))
    out.append(e(content))
    out.append(f"</{name}>")
    return Html("".join(out))


def url(path: str, **query: Any) -> str:
    """A path with a query string of the non-empty values."""
    picked = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{path}?{urlencode(picked)}" if picked else path


# -- formatting ---------------------------------------------------------------------------------


def usd(micro: int | None) -> str:
    """Micro-dollars as dollars: $0.0123, $12.34, $1,234."""
    if micro is None:
        return "—"
    dollars = micro / 1_000_000
    if dollars == 0:
        return "$0"
    if abs(dollars) < 1:
        return f"${dollars:.4f}"
    if abs(dollars) < 1000:
        return f"${dollars:,.2f}"
    return f"${dollars:,.0f}"


def count(value: float | None) -> str:
    """A count, shortened past thousands: 950, 12.3k, 4.1M."""
    if value is None:
        return "—"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}{suffix}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def when(value: datetime | str | None) -> Html:
    """A time as UTC text, the full value in a title."""
    if value is None:
        return Html("—")
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return tag("time", text, datetime=moment.isoformat())


def ms(value: float | None) -> str:
    """Milliseconds."""
    return "—" if value is None else f"{value:,.0f} ms"


# -- building blocks ----------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "Nothing yet.") -> Html:
    """A table in a box that scrolls sideways on narrow screens."""
    body = [tag("tr", [tag("td", cell) for cell in row]) for row in rows]
    if not body:
        body = [tag("tr", tag("td", empty, colspan=str(len(headers)), class_="empty"))]
    head = tag("thead", tag("tr", [tag("th", h, scope="col") for h in headers]))
    return tag("div", tag("table", [head, tag("tbody", body)]), class_="scroll")


def csrf_field(csrf: str) -> Html:
    """The hidden field every form that changes something carries."""
    return tag("input", type="hidden", name="csrf_token", value=csrf)


def post_button(
    action: str, label: str, csrf: str, *, confirm: str | None = None, danger: bool = False
) -> Html:
    """A one-button form that POSTs to `action`."""
    button = tag("button", label, type="submit", class_="danger" if danger else None)
    return tag(
        "form",
        [csrf_field(csrf), button],
        method="post",
        action=action,
        class_="inline",
        data_confirm=confirm,
    )


def field(label: str, control: Html, hint: str | None = None) -> Html:
    """A labelled form control."""
    parts: list[Any] = [tag("span", label), control]
    if hint:
        parts.append(tag("small", hint))
    return tag("label", parts)


def text_input(name: str, value: Any = "", **attrs: Any) -> Html:
    """An `<input>` (text unless `type` says otherwise)."""
    attrs.setdefault("type", "text")
    return tag("input", name=name, value="" if value is None else value, **attrs)


def checkbox(name: str, checked: bool) -> Html:
    """A checkbox that sends "on" when ticked."""
    return tag("input", type="checkbox", name=name, checked=checked)


def select(name: str, options: Sequence[tuple[str, str]], chosen: str | None = None, **attrs: Any) -> Html:
    """A `<select>` of (value, label) pairs."""
    opts = [tag("option", label, value=value, selected=value == (chosen or "")) for value, label in options]
    return tag("select", opts, name=name, **attrs)


def notice(message: str | None, kind: str = "error") -> Html:
    """A message box above a page's content (role=alert for errors)."""
    if not message:
        return Html("")
    return tag("p", message, class_=f"notice {kind}", role="alert" if kind == "error" else "status")


NAV = (
    ("overview", "Overview", "/ui/overview"),
    ("keys", "Keys", "/ui/keys"),
    ("users", "Users", "/ui/users"),
    ("teams", "Teams", "/ui/teams"),
    ("budgets", "Budgets", "/ui/budgets"),
    ("logs", "Logs", "/ui/logs"),
    ("deployments", "Deployments", "/ui/deployments"),
)


def page(
    title: str,
    content: Any,
    *,
    active: str = "",
    csrf: str | None = None,
    signed_in_as: str | None = None,
) -> Html:
    """A whole console page: head, navigation (when signed in), main content."""
    head = Html(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · cloudgate</title>"
        f'<link rel="stylesheet" href="/ui/static/console.css?v={e(__version__)}">'
        f'<script src="/ui/static/console.js?v={e(__version__)}" defer></script>'
        "</head>"
    )
    header: list[Any] = [tag("a", "cloudgate", href="/ui/overview", class_="brand")]
    if csrf is not None:
        links = [
            tag("a", label, href=href, aria_current="page" if key == active else None)
            for key, label, href in NAV
        ]
        header.append(tag("nav", links, aria_label="Console"))
        logout = tag(
            "form",
            [csrf_field(csrf), tag("button", "Sign out", type="submit", class_="link")],
            method="post",
            action="/ui/logout",
            class_="logout",
        )
        header.append(tag("div", [tag("span", signed_in_as or "", class_="who"), logout], class_="account"))
    body = tag(
        "body",
        [
            tag("header", header, class_="top"),
            tag("main", [tag("h1", title), content]),
        ],
        data_csrf=csrf,
    )
    return Html(head + body + "</html>")
