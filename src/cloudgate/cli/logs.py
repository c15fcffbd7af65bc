"""`cloudgate logs`: read the activity log straight from the store.

`list` finds requests, `show` tells everything about one, `session` reads a Claude Code session
as a conversation, and `export` streams entries out as JSON lines or CSV, page by page, so an
export of any size never sits in memory.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from cloudgate.activity.entry import ActivityEntry, ActivityFilter
from cloudgate.activity.export import EXPORT_FORMATS, ExportFormat, export_lines
from cloudgate.cli.governance import group, leaf
from cloudgate.cli.output import FORMATS, Column, emit, table, usd
from cloudgate.gateway.frontdoors.admin_views import (
    log_filter,
    log_summary_view,
    log_view,
    session_view,
)
from cloudgate.store import Store

WHEN_HELP = "an ISO 8601 date or time (UTC unless it says), or that long ago: 30m, 2h, 7d"
# The store answers a listing in pages; larger --limit values are read page by page.
PAGE = 500
# Flag names, for messages about the filter values they carry.
FLAG = {
    "key_id": "--key",
    "user_id": "--user",
    "team_id": "--team",
    "session_id": "--session",
    "since": "--since",
    "until": "--until",
    "status": "--status",
}
LIST_COLUMNS: list[Column] = [
    ("TIME", "time", ""),
    ("REQUEST ID", "request_id", ""),
    ("KEY", "key_id", ""),
    ("MODEL", "model", ""),
    ("DEPLOYMENT", "deployment", ""),
    ("STATUS", "status", "int"),
    ("TOKENS IN", "input_tokens", "int"),
    ("TOKENS OUT", "output_tokens", "int"),
    ("COST USD", "cost_usd", "usd"),
    ("LATENCY MS", "latency_ms", "int"),
]
ATTEMPT_COLUMNS: list[Column] = [
    ("#", "n", "int"),
    ("DEPLOYMENT", "deployment", ""),
    ("STATUS", "status", "int"),
    ("ERROR", "error", ""),
]
NOT_KEPT = "not kept (activity.log_bodies keeps them for everyone, --log-bodies for a key or team)"
# What `show` lists before the attempts, headers and bodies, in this order.
SHOWN = (
    "request_id",
    "started_at",
    "finished_at",
    "status",
    "error_type",
    "error_message",
    "stop_reason",
    "key_id",
    "user_id",
    "team_id",
    "session_id",
    "frontdoor",
    "operation",
    "model",
    "upstream_model",
    "provider",
    "deployment",
    "region",
    "project",
    "stream",
    "betas",
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "cost_usd",
    "latency_ms",
    "first_token_ms",
    "client_ip",
    "user_agent",
)


def add_parser(sub: Any) -> None:
    """Register `logs` and its actions."""
    actions = group(sub, "logs", "read the activity log")
    p = leaf(actions, "list", "list requests, newest first", _list, formats=False)
    _filters(p)
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N requests (default: 50)")
    _format(p, FORMATS)
    p = leaf(actions, "show", "everything about one request, bodies included when kept", _show, formats=False)
    p.add_argument("request_id", metavar="REQUEST_ID", help="the request id (x-cloudgate-request-id)")
    _format(p, ("table", "json"))
    p = leaf(
        actions, "session", "a Claude Code session as one conversation, turn by turn", _session, formats=False
    )
    p.add_argument("session_id", metavar="SESSION_ID", help="the x-claude-code-session-id of the session")
    p.add_argument("--full", action="store_true", help="show whole messages, not their first lines")
    _format(p, ("table", "json"))
    p = leaf(
        actions, "export", "stream requests out as JSON lines or CSV, oldest first", _export, formats=False
    )
    _filters(p, since_required=True)
    _format(p, EXPORT_FORMATS)
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (default: standard output)")


def _format(p: argparse.ArgumentParser, choices: tuple[str, ...]) -> None:
    p.add_argument(
        "--format", "-f", choices=choices, default=choices[0], help=f"output format (default: {choices[0]})"
    )


def _filters(p: argparse.ArgumentParser, *, since_required: bool = False) -> None:
    p.add_argument("--since", metavar="WHEN", required=since_required, help=f"from this time: {WHEN_HELP}")
    p.add_argument("--until", metavar="WHEN", help="before this time (default: now)")
    p.add_argument("--key", dest="key_id", metavar="ID", help="only this key's requests")
    p.add_argument("--user", dest="user_id", metavar="ID", help="only this user's requests")
    p.add_argument("--team", dest="team_id", metavar="ID", help="only this team's requests")
    p.add_argument("--model", metavar="M", help="only requests for this model (as the caller named it)")
    p.add_argument("--status", metavar="N", help="only requests answered with this HTTP status")
    p.add_argument("--session", dest="session_id", metavar="ID", help="only this Claude Code session")
    p.add_argument("--provider", metavar="P", help="only requests served by vertex, bedrock or anthropic")
    p.add_argument("--deployment", metavar="D", help="only requests served by this deployment")
    p.add_argument("--errors", action="store_true", help="only requests that failed")


def _filter(args: argparse.Namespace) -> ActivityFilter:
    try:
        return log_filter(vars(args), errors_only=args.errors, label=lambda name: FLAG.get(name, name))
    except ValueError as exc:
        raise SystemExit(f"cloudgate: {exc}") from None


def _seconds(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- list and show -----------------------------------------------------------------------------------


async def _list(store: Store, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise SystemExit("cloudgate: --limit must be at least 1")
    chosen = _filter(args)
    entries: list[ActivityEntry] = []
    before: tuple[datetime, str] | None = None
    while len(entries) < args.limit:
        want = min(PAGE, args.limit - len(entries))
        page = await store.activity.list(chosen, limit=want, before=before)
        entries.extend(page)
        if len(page) < want:
            break
        before = (page[-1].started_at, page[-1].request_id)
    views = [log_summary_view(e) for e in entries]
    if args.format == "table":
        # Seconds matter in a log (the shared table shows times to the minute); fractions of a
        # millisecond do not.
        views = [
            {**v, "time": _seconds(e.started_at), "latency_ms": round(e.latency_ms)}
            for v, e in zip(views, entries, strict=True)
        ]
        emit(views, LIST_COLUMNS, "table")
    else:
        columns = [(h, "started_at" if f == "time" else f, k) for h, f, k in LIST_COLUMNS]
        emit(views, columns, args.format)
    return 0


async def _entry(store: Store, request_id: str) -> ActivityEntry:
    entry = await store.activity.get(request_id)
    if entry is None:
        raise SystemExit(f"cloudgate: no request {request_id!r} in the activity log")
    return entry


def _body(text: str) -> str:
    """A body for reading: JSON indented, anything else (SSE, a cut-short body) as it was kept."""
    try:
        return orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return text.rstrip("\n")


async def _show(store: Store, args: argparse.Namespace) -> int:
    entry = await _entry(store, args.request_id)
    view = log_view(entry)
    if args.format == "json":
        emit([], [], "json", document=view)
        return 0
    width = max(len(name) for name in SHOWN)
    lines = []
    for name in SHOWN:
        value = view.get(name)
        if name in ("started_at", "finished_at"):
            value = _seconds(getattr(entry, name))
        elif name == "cost_usd" and value is not None:
            value = usd(value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        shown = "-" if value in (None, "") else str(value).replace("\n", "\n" + " " * (width + 2))
        lines.append(f"{name.replace('_', ' '):<{width}}  {shown}")
    print("\n".join(lines))
    if entry.attempts:
        print("\nattempts:")
        attempts = [{"n": n, **a} for n, a in enumerate(entry.attempts, 1)]
        print(table(attempts, ATTEMPT_COLUMNS))
    if entry.request_headers:
        print("\nrequest headers:")
        print("\n".join(f"  {k}: {v}" for k, v in entry.request_headers.items()))
    if entry.request_body is None and entry.response_body is None:
        print(f"\nbodies: {NOT_KEPT}")
    for title, body in (("request body", entry.request_body), ("response body", entry.response_body)):
        if body is not None:
            print(f"\n{title}:")
            print(_body(body))
    if entry.bodies_truncated:
        print("\n(bodies were cut at activity.max_body_bytes)")
    return 0


# -- sessions ----------------------------------------------------------------------------------------


def _excerpt(text: str, full: bool) -> list[str]:
    lines = text.strip().splitlines() or [""]
    if full or (len(lines) <= 6 and len(text) <= 600):
        return lines
    kept = [line[:200] for line in lines[:6]]
    return [*kept, f"... ({len(text):,} characters; --full shows all)"]


async def _session(store: Store, args: argparse.Namespace) -> int:
    entries = await store.activity.session(args.session_id)
    if not entries:
        raise SystemExit(f"cloudgate: no session {args.session_id!r} in the activity log")
    view = session_view(args.session_id, entries)
    if args.format == "json":
        emit([], [], "json", document=view)
        return 0
    first, last = entries[0].started_at, max(e.finished_at or e.started_at for e in entries)
    print(f"Session {args.session_id}: {len(entries)} requests, {_seconds(first)} to {_seconds(last)} UTC")
    for n, (turn, entry) in enumerate(zip(view["turns"], entries, strict=True), 1):
        cost = "-" if turn["cost_usd"] is None else "$" + usd(turn["cost_usd"])
        failed = entry.status >= 400 or entry.error_type is not None
        outcome = f"  {entry.status} {entry.error_type or ''}".rstrip() if failed else ""
        print(
            f"\n#{n}  {_seconds(entry.started_at)}  {entry.model or '-'}  {entry.deployment or '-'}  "
            f"in {entry.input_tokens:,} / out {entry.output_tokens:,} tokens  {cost}{outcome}"
        )
        for who, key in (("user", "user_text"), ("assistant", "assistant_text")):
            if turn[key]:
                text = _excerpt(turn[key], args.full)
                print(f"  {who + ':':<11}{text[0]}")
                for line in text[1:]:
                    print(f"  {'':<11}{line}")
    total = view["total"]
    print(
        f"\nTotal: {total['requests']} requests ({total['errors']} failed), "
        f"in {total['input_tokens']:,} / out {total['output_tokens']:,} tokens, "
        f"cache read {total['cache_read_tokens']:,}, "
        f"cache write {total['cache_write_5m_tokens'] + total['cache_write_1h_tokens']:,}, "
        f"cost ${usd(total['cost_usd'])}"
    )
    return 0


# -- export ------------------------------------------------------------------------------------------


async def _export(store: Store, args: argparse.Namespace) -> int:
    chosen = _filter(args)
    fmt: ExportFormat = args.format
    # newline="": a body's own line ends are part of a CSV cell and must not be translated.
    target: ContextManager[TextIO] = (
        open(args.output, "w", encoding="utf-8", newline="")  # noqa: ASYNC230, SIM115 - a CLI, nothing else runs
        if args.output
        else nullcontext(sys.stdout)
    )
    written = 0
    try:
        with target as out:
            async for line in export_lines(store.activity.export(chosen), fmt):
                out.write(line)
                written += 1
    except BrokenPipeError:
        # The reader (`| head`) has seen enough; keep Python from complaining at exit too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.output:
        entries = written - 1 if fmt == "csv" else written  # the CSV header is not an entry
        print(f"Exported {entries} requests to {args.output}.", file=sys.stderr)
    return 0
