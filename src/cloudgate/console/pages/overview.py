"""The overview: spend, traffic, tokens, cache hits and time to first token over a range."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from cloudgate.console import charts
from cloudgate.console.html import (
    Html,
    count,
    ms,
    tag,
    url,
    usd,
)
from cloudgate.console.pages.common import (
    RANGES,
    SPEND_BY,
    TOP_SERIES,
    card,
    panel,
    render,
)
from cloudgate.console.web import Request, Response, json
from cloudgate.store.reports import Reports

if TYPE_CHECKING:
    from cloudgate.console.app import Console


# -- overview -----------------------------------------------------------------------------------


def _range(req: Request) -> tuple[str, datetime, datetime]:
    chosen = req.query.get("range", "7d")
    if chosen not in RANGES:
        chosen = "7d"
    until = datetime.now(UTC)
    return chosen, until - RANGES[chosen], until


def _switch(name: str, choices: list[tuple[str, str]], chosen: str, link: Any) -> Html:
    items = [
        tag("a", label, href=link(value), aria_current="true" if value == chosen else None)
        for value, label in choices
    ]
    return tag("div", items, class_="switch", role="group", aria_label=name)


def _days(since: datetime, until: datetime) -> list[date]:
    days, day = [], since.date()
    while day <= until.date():
        days.append(day)
        day += timedelta(days=1)
    return days


async def overview(console: Console, req: Request) -> Response:
    """GET /ui/overview?range=24h|7d|30d&by=team|user|model."""
    chosen, since, until = _range(req)
    by = req.query.get("by", "team")
    if by not in SPEND_BY:
        by = "team"
    reports = Reports(console.store)
    summary = await reports.overview(since, until)
    spend = await reports.spend_by_day(since, until, by)  # type: ignore[arg-type]
    bucket: Literal["hour", "day"] = "hour" if chosen == "24h" else "day"
    traffic = await reports.traffic(since, until, bucket)

    def link(**changes: str) -> str:
        return url("/ui/overview", **{"range": chosen, "by": by, **changes})

    controls = tag(
        "div",
        [
            _switch(
                "Range", [("24h", "24 h"), ("7d", "7 d"), ("30d", "30 d")], chosen, lambda v: link(range=v)
            ),
            _switch("Group spend by", [(b, b.title()) for b in SPEND_BY], by, lambda v: link(by=v)),
        ],
        class_="controls",
    )
    error_rate = summary.errors / summary.requests if summary.requests else 0.0
    cards = tag(
        "div",
        [
            card("Spend", usd(summary.cost_micro), "spend"),
            card("Requests", count(summary.requests), "requests"),
            card("Errors", f"{count(summary.errors)} ({error_rate:.1%})", "errors"),
            card(
                "Cache hit ratio",
                "—" if summary.cache_hit_ratio is None else f"{summary.cache_hit_ratio:.1%}",
                "cache",
            ),
            card("Time to first token p50", ms(summary.ttft_ms.get("p50")), "ttft"),
        ],
        class_="cards",
    )
    # Spend per day, stacked by the biggest groups; the rest as "other".
    days = _days(since, until)
    totals: dict[str, int] = {}
    for point in spend:
        totals[point.label] = totals.get(point.label, 0) + point.cost_micro
    top = [name for name, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:TOP_SERIES]]
    names = top + (["other"] if len(totals) > len(top) else [])
    values = {name: [0.0] * len(days) for name in names}
    index = {d: i for i, d in enumerate(days)}
    for point in spend:
        if point.day in index:
            name = point.label if point.label in top else "other"
            values[name][index[point.day]] += point.cost_micro
    spend_chart = charts.stacked_bars(
        [d.strftime("%b %d") for d in days],
        [charts.Series(n, values[n], c) for n, c in zip(names, charts.colours(names), strict=True)],
        fmt=lambda v: usd(int(v)),
        label=f"Spend per day by {by}",
    )
    labels = [p.start.strftime("%H:%M" if bucket == "hour" else "%b %d") for p in traffic]
    requests_chart = charts.stacked_bars(
        labels,
        [
            charts.Series("answered", [float(p.requests - p.errors) for p in traffic], charts.PALETTE[0]),
            charts.Series("errors", [float(p.errors) for p in traffic], charts.ERROR_COLOUR),
        ],
        fmt=count,
        label="Requests and errors",
    )
    kinds = (
        ("input", "input_tokens"),
        ("output", "output_tokens"),
        ("cache read", "cache_read_tokens"),
        ("cache write", "cache_write_tokens"),
    )
    tokens_chart = charts.stacked_bars(
        labels,
        [
            charts.Series(name, [float(getattr(p, attr)) for p in traffic], colour)
            for (name, attr), colour in zip(kinds, charts.PALETTE, strict=False)
        ],
        fmt=count,
        label="Tokens by kind",
    )
    ratio = summary.cache_hit_ratio
    cache = tag(
        "div",
        [
            charts.meter(ratio or 0.0, 1.0, label=f"cache hit ratio {(ratio or 0):.1%}", warn_at=2.0),
            tag(
                "p",
                f"{count(summary.cache_read_tokens)} tokens read from the cache, "
                f"{count(summary.cache_write_tokens)} written, {count(summary.input_tokens)} uncached input.",
            ),
        ],
    )
    ttft = charts.hbars(
        [(k, summary.ttft_ms.get(k)) for k in ("p50", "p90", "p99")], fmt=ms, label="Time to first token"
    )
    content = [
        controls,
        cards,
        panel(f"Spend per day by {by}", spend_chart, "spend-chart"),
        tag(
            "div",
            [
                panel("Requests and errors", requests_chart, "requests-chart"),
                panel("Tokens by kind", tokens_chart, "tokens-chart"),
                panel("Cache hit ratio", cache, "cache-panel"),
                panel("Time to first token", ttft, "ttft-panel"),
            ],
            class_="grid",
        ),
    ]
    return render(req, "Overview", content, "overview")


async def api_overview(console: Console, req: Request) -> Response:
    """GET /ui/api/overview?range=: the overview's numbers as JSON."""
    chosen, since, until = _range(req)
    summary = await Reports(console.store).overview(since, until)
    data = asdict(summary)
    data["since"], data["until"] = summary.since.isoformat(), summary.until.isoformat()
    return json({"range": chosen, **data})
