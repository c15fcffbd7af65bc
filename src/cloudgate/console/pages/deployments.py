"""Deployments' live health and their last hour."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cloudgate.console.html import (
    Html,
    count,
    ms,
    table,
    tag,
)
from cloudgate.console.pages.common import (
    panel,
    render,
)
from cloudgate.console.web import Request, Response, html, json
from cloudgate.store.reports import Reports

if TYPE_CHECKING:
    from cloudgate.console.app import Console


# -- deployments --------------------------------------------------------------------------------

_STATE_ORDER = ("cooling", "not-offered", "half-open", "saturated", "healthy")


async def _deployment_rows(console: Console) -> tuple[str, list[list[Any]]]:
    view = console.deployments()
    now = datetime.now(UTC)
    recent = {
        s.deployment: s for s in await Reports(console.store).deployment_errors(now - timedelta(hours=1), now)
    }
    rows = []
    for deployment in view["deployments"]:
        health = deployment.get("health") or []
        states = [h["state"] for h in health] or ["healthy"]
        state = min(states, key=lambda s: _STATE_ORDER.index(s) if s in _STATE_ORDER else len(_STATE_ORDER))
        cooldown = max((h["cooldown_remaining_s"] for h in health), default=0.0)
        in_flight = sum(h["in_flight"] for h in health)
        failures = sum(h["failures"] for h in health)
        served = sum(h["requests"] for h in health)
        last_error = next(
            (
                h["last_error"]
                for h in sorted(health, key=lambda h: -(h["last_error_at"] or 0))
                if h["last_error"]
            ),
            None,
        )
        stats = recent.get(str(deployment["name"]))
        rate = f"{stats.errors / stats.requests:.1%}" if stats and stats.requests else "—"
        rows.append(
            [
                tag("strong", deployment["name"]),
                f"{deployment['provider']} · {deployment['region']}",
                tag("span", state, class_=f"badge state-{state}"),
                f"{cooldown:.0f} s" if cooldown else "—",
                f"{in_flight}",
                f"{failures} / {served}",
                last_error or "—",
                count(stats.requests) if stats else "0",
                rate,
                count(stats.rate_limited) if stats else "0",
                f"{ms(stats.p50_latency_ms)} / {ms(stats.p90_latency_ms)}" if stats else "—",
            ]
        )
    return str(view["status"]), rows


def _deployment_table(status: str, rows: list[list[Any]]) -> Html:
    headers = [
        "Deployment",
        "Where",
        "State",
        "Cooldown",
        "In flight",
        "Failed / served",
        "Last error",
        "Req. 1 h",
        "Errors 1 h",
        "429s 1 h",
        "p50 / p90 1 h",
    ]
    summary = tag(
        "p",
        [
            "Overall: ",
            tag("span", status, class_=f"badge state-{'healthy' if status == 'ok' else 'cooling'}"),
        ],
    )
    return Html(summary + table(headers, rows, empty="No deployments."))


async def deployments(console: Console, req: Request) -> Response:
    """GET /ui/deployments: live health, refreshed every few seconds by console.js."""
    status, rows = await _deployment_rows(console)
    live = tag(
        "div",
        _deployment_table(status, rows),
        id="live",
        data_refresh="/ui/deployments/live",
        aria_live="polite",
    )
    note = tag(
        "p",
        "State, cooldown, in flight, failed / served and the last error are this gateway "
        "process's health board, live; the 1 h columns are the last hour of every process's "
        "requests (error rate, rate-limited, latency percentiles).",
        class_="muted",
    )
    return render(req, "Deployments", [panel("Health", [note, live], "health")], "deployments")


async def deployments_live(console: Console, req: Request) -> Response:
    """GET /ui/deployments/live: the health table alone, for the page's refresh."""
    status, rows = await _deployment_rows(console)
    return html(_deployment_table(status, rows))


async def api_deployments(console: Console, req: Request) -> Response:
    """GET /ui/api/deployments: /health/deployments plus the last hour's error rates and latency."""
    now = datetime.now(UTC)
    stats = await Reports(console.store).deployment_errors(now - timedelta(hours=1), now)
    return json({**console.deployments(), "last_hour": [asdict(s) for s in stats]})
