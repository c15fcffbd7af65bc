"""The activity log: search, one request, a Claude Code session as a conversation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from cloudgate.console.html import (
    Html,
    checkbox,
    count,
    field,
    ms,
    notice,
    select,
    table,
    tag,
    text_input,
    url,
    usd,
    when,
)
from cloudgate.console.pages.common import (
    LOG_PAGE,
    facts,
    panel,
    render,
)
from cloudgate.console.web import Request, Response
from cloudgate.gateway.frontdoors.admin import AdminAPI, AdminError
from cloudgate.governance.types import usd_to_micro

if TYPE_CHECKING:
    from cloudgate.console.app import Console


# -- logs ---------------------------------------------------------------------------------------

_LOG_FILTERS = ("key_id", "user_id", "team_id", "model", "status", "session_id", "provider", "deployment")


async def logs(console: Console, req: Request) -> Response:
    """GET /ui/logs: the activity log, newest first, filtered, a page at a time."""
    chosen = {
        name: req.query[name].strip()
        for name in (*_LOG_FILTERS, "since", "until", "cursor")
        if req.query.get(name, "").strip()
    }
    since_choice = req.query.get("since", "")
    if req.query.get("errors") == "true":
        chosen["errors"] = "true"
    error: str | None = None
    try:
        _, found = await console.admin.run(AdminAPI.list_logs, query={**chosen, "limit": str(LOG_PAGE)})
    except AdminError as exc:
        error, found = exc.message, {"data": [], "next_cursor": None}
    rows = []
    for entry in found["data"]:
        rid = entry["request_id"]
        tokens = f"{count(entry['input_tokens'])} / {count(entry['output_tokens'])}"
        rows.append(
            [
                tag("a", when(entry["started_at"]), href=f"/ui/logs/{quote(rid, safe='')}", class_="request"),
                tag(
                    "span",
                    str(entry["status"]),
                    class_="badge " + ("bad" if entry["status"] >= 400 or entry["error_type"] else "ok"),
                ),
                entry["model"],
                tag("a", entry["key_id"], href=f"/ui/keys/{quote(entry['key_id'], safe='')}")
                if entry["key_id"] and entry["key_id"] != "admin"
                else (entry["key_id"] or "—"),
                entry["deployment"] or "—",
                tokens,
                "—" if entry["cost_usd"] is None else usd(usd_to_micro(entry["cost_usd"])),
                ms(entry["latency_ms"]),
                ms(entry["first_token_ms"]),
                tag("a", "timeline", href=f"/ui/sessions/{quote(entry['session_id'], safe='')}")
                if entry["session_id"]
                else "",
            ]
        )
    since_options = [("", "any time"), ("24h", "last 24 h"), ("7d", "last 7 d"), ("30d", "last 30 d")]
    if since_choice and since_choice not in dict(since_options):
        since_options.append((since_choice, since_choice))
    search = tag(
        "form",
        [
            tag(
                "div",
                [
                    field("Since", select("since", since_options, since_choice)),
                    *[
                        field(name.replace("_", " ").capitalize(), text_input(name, chosen.get(name, "")))
                        for name in _LOG_FILTERS
                    ],
                    tag(
                        "label",
                        [checkbox("errors", req.query.get("errors") == "true"), " Errors only"],
                        class_="check",
                    ),
                ],
                class_="fields",
            ),
            tag("button", "Search", type="submit"),
            tag("a", "Clear", href="/ui/logs", class_="button secondary"),
        ],
        method="get",
        action="/ui/logs",
        class_="stack search",
        id="log-search",
    )
    more = Html("")
    if found["next_cursor"]:
        more = tag(
            "a",
            "Older requests →",
            href=url("/ui/logs", **{**chosen, "cursor": found["next_cursor"]}),
            class_="button secondary",
        )
    content = [
        notice(error),
        panel("Search", search, "search"),
        panel(
            "Requests",
            [
                table(
                    [
                        "Time",
                        "Status",
                        "Model",
                        "Key",
                        "Deployment",
                        "Tokens in / out",
                        "Cost",
                        "Latency",
                        "TTFT",
                        "Session",
                    ],
                    rows,
                    empty="No requests match.",
                ),
                more,
            ],
            "log-list",
        ),
    ]
    return render(req, "Logs", content, "logs")


def _pretty(text: str | None) -> str:
    if not text:
        return ""
    try:
        return orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return text  # a stream or a cut body: as kept


async def log_detail(console: Console, req: Request) -> Response:
    """GET /ui/logs/{request_id}: metadata, attempts, headers and (redacted) bodies when kept."""
    _, entry = await console.admin.run(AdminAPI.get_log, {"request_id": req.params["request_id"]})
    about = facts(
        [
            ("Request id", tag("code", entry["request_id"])),
            ("Started", when(entry["started_at"])),
            ("Finished", when(entry["finished_at"])),
            ("Status", str(entry["status"])),
            ("Error", f"{entry['error_type']}: {entry['error_message']}" if entry["error_type"] else "—"),
            ("Model", entry["model"]),
            ("Upstream model", entry["upstream_model"] or "—"),
            (
                "Served by",
                f"{entry['deployment']} ({entry['provider']}, {entry['region']})"
                if entry["deployment"]
                else "—",
            ),
            (
                "Front door",
                f"{entry['frontdoor']} {entry['operation']}" + (" (stream)" if entry["stream"] else ""),
            ),
            ("Key", entry["key_id"] or "—"),
            ("User", entry["user_id"] or "—"),
            ("Team", entry["team_id"] or "—"),
            (
                "Session",
                tag("a", entry["session_id"], href=f"/ui/sessions/{quote(entry['session_id'], safe='')}")
                if entry["session_id"]
                else "—",
            ),
            (
                "Tokens",
                f"{entry['input_tokens']} in, {entry['output_tokens']} out, "
                f"{entry['cache_read_tokens']} cache read, "
                f"{entry['cache_write_5m_tokens'] + entry['cache_write_1h_tokens']} cache write",
            ),
            ("Cost", "—" if entry["cost_usd"] is None else usd(usd_to_micro(entry["cost_usd"]))),
            ("Latency", ms(entry["latency_ms"])),
            ("Time to first token", ms(entry["first_token_ms"])),
            ("Stop reason", entry["stop_reason"] or "—"),
            ("Betas", ", ".join(entry["betas"]) or "—"),
            ("Client", f"{entry['client_ip'] or '?'} · {entry['user_agent'] or '?'}"),
        ]
    )
    attempts = table(
        ["Deployment", "Status", "Error"],
        [
            [a.get("deployment", ""), str(a.get("status", "")), a.get("error") or ""]
            for a in entry["attempts"]
        ],
        empty="No upstream attempt.",
    )
    headers = table(["Header", "Value"], sorted(entry["request_headers"].items()), empty="No headers kept.")
    bodies: list[Any] = []
    for title, name in (("Request body", "request_body"), ("Response body", "response_body")):
        text = entry[name]
        bodies.append(tag("h3", title))
        bodies.append(
            tag("pre", _pretty(text))
            if text
            else tag("p", "Not kept (bodies are logged only for keys or teams that ask).", class_="muted")
        )
    if entry["bodies_truncated"]:
        bodies.append(tag("p", "Bodies were cut at the configured size.", class_="muted"))
    content = [
        tag("div", about, class_="card"),
        panel("Upstream attempts", attempts, "attempts"),
        panel("Request headers (redacted)", headers, "headers"),
        panel("Bodies (redacted)", bodies, "bodies"),
    ]
    return render(req, "Request", content, "logs")


async def session_timeline(console: Console, req: Request) -> Response:
    """GET /ui/sessions/{session_id}: a Claude Code session as a conversation."""
    _, session = await console.admin.run(AdminAPI.get_session, {"session_id": req.params["session_id"]})
    turns = []
    for turn in session["turns"]:
        bad = turn["status"] >= 400 or turn["error_type"]
        cost = "—" if turn["cost_usd"] is None else usd(usd_to_micro(turn["cost_usd"]))
        meta = tag(
            "div",
            [
                tag("a", when(turn["started_at"]), href=f"/ui/logs/{quote(turn['request_id'], safe='')}"),
                f" · {turn['model']} · {turn['status']} · {turn['input_tokens']} in / "
                f"{turn['output_tokens']} out · {cost} · {ms(turn['latency_ms'])}",
            ],
            class_="meta",
        )
        said: list[Any] = [meta]
        if turn["user_text"]:
            said.append(tag("div", turn["user_text"], class_="bubble user"))
        if turn["assistant_text"]:
            said.append(tag("div", turn["assistant_text"], class_="bubble assistant"))
        if not turn["user_text"] and not turn["assistant_text"]:
            said.append(tag("p", "Bodies not kept for this request.", class_="muted"))
        if bad:
            said.append(
                tag(
                    "p",
                    f"{turn['error_type'] or 'error'}: {turn['error_message'] or ''}",
                    class_="notice error",
                )
            )
        turns.append(tag("li", said, class_="turn bad" if bad else "turn"))
    total = session["total"]
    about = facts(
        [
            ("Session", tag("code", session["session_id"])),
            ("From", when(session["started_at"])),
            ("To", when(session["finished_at"])),
            ("Requests", f"{total['requests']} ({total['errors']} failed)"),
            (
                "Tokens",
                f"{total['input_tokens']} in, {total['output_tokens']} out, "
                f"{total['cache_read_tokens']} cache read",
            ),
            ("Cost", usd(usd_to_micro(total["cost_usd"]))),
        ]
    )
    content = [tag("div", about, class_="card"), tag("ol", turns, class_="timeline")]
    return render(req, "Session", content, "logs")
