"""Charts drawn on the server as inline SVG: no script, no library, readable without JavaScript.

Each chart scales with its container (a viewBox and width 100%); every bar carries a `<title>`,
which browsers show on hover, with its exact value. Colours are presentation attributes, not
style attributes, so the console's Content-Security-Policy needs no 'unsafe-inline'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cloudgate.console.html import Html, e, tag

# Distinguishable on light backgrounds and for the common colour-vision deficiencies.
PALETTE = ("#2f6fdd", "#e8833a", "#2aa876", "#c64f9b", "#8a63d2", "#d9b233", "#3fb8c9", "#9a6b4f")
OTHER_COLOUR = "#9aa3ad"
ERROR_COLOUR = "#d64545"

Format = Callable[[float], str]


@dataclass(slots=True)
class Series:
    """One stacked layer: its name, a value per category and its colour."""

    name: str
    values: list[float]
    colour: str


def colours(names: Sequence[str]) -> list[str]:
    """A palette colour per name; "other" is grey."""
    out, i = [], 0
    for name in names:
        if name == "other":
            out.append(OTHER_COLOUR)
        else:
            out.append(PALETTE[i % len(PALETTE)])
            i += 1
    return out


def axis_top(value: float) -> float:
    """A round number at or above `value` for the top of an axis: 1, 2, 2.5 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0):
        if value <= step * magnitude * (1 + 1e-9):
            return step * magnitude
    return 10.0 * magnitude


def stacked_bars(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    fmt: Format = str,
    label: str,
    height: int = 220,
) -> Html:
    """Bars per category, each stacked from `series`; a legend below. `label` names it for
    screen readers."""
    width = 640
    left, right, top, bottom = 56, 8, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    top_value = axis_top(max(totals, default=0.0))
    parts: list[str] = []
    # Grid lines and axis labels at 0, 1/2 and the top.
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d8dde3"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#5b6570">'
            f"{e(fmt(top_value * frac))}</text>"
        )
    n = max(len(categories), 1)
    slot = plot_w / n
    bar = max(min(slot * 0.7, 48.0), 1.0)
    every = max(1, round(n / 8))  # at most about eight category labels
    for i, category in enumerate(categories):
        x = left + slot * i + (slot - bar) / 2
        y = top + plot_h
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            h = plot_h * value / top_value
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{s.colour}">'
                f"<title>{e(category)} · {e(s.name)}: {e(fmt(value))}</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 10}" text-anchor="middle" font-size="11" '
                f'fill="#5b6570">{e(category)}</text>'
            )
    if not categories:
        parts.append(
            f'<text x="{width / 2}" y="{top + plot_h / 2}" text-anchor="middle" font-size="13" '
            'fill="#5b6570">No data in this range</text>'
        )
    svg = Html(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{e(label)}" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )
    return tag("figure", [svg, legend([(s.name, s.colour) for s in series])], class_="chart")


def legend(items: Sequence[tuple[str, str]]) -> Html:
    """Coloured keys for a chart's series."""
    if not items:
        return Html("")
    entries = [
        tag(
            "li",
            [
                Html(
                    '<svg width="12" height="12" aria-hidden="true">'
                    f'<rect width="12" height="12" rx="2" fill="{colour}"/></svg>'
                ),
                tag("span", name),
            ],
        )
        for name, colour in items
    ]
    return tag("ul", entries, class_="legend")


def meter(value: float, maximum: float, *, label: str, warn_at: float = 0.8) -> Html:
    """A horizontal bar of `value` out of `maximum`: green, amber past `warn_at`, red when over."""
    ratio = 0.0 if maximum <= 0 else value / maximum
    shown = min(max(ratio, 0.0), 1.0)
    colour = "#2aa876" if ratio < warn_at else "#d9a21b" if ratio < 1 else ERROR_COLOUR
    return Html(
        f'<svg class="meter" viewBox="0 0 200 12" preserveAspectRatio="none" role="img" '
        f'aria-label="{e(label)}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect width="200" height="12" rx="3" fill="#e6eaef"/>'
        f'<rect width="{200 * shown:.1f}" height="12" rx="3" fill="{colour}"><title>{e(label)}</title></rect>'
        "</svg>"
    )


def hbars(items: Sequence[tuple[str, float | None]], *, fmt: Format, label: str) -> Html:
    """Labelled horizontal bars on one scale (percentiles and the like)."""
    known = [v for _, v in items if v is not None]
    top_value = axis_top(max(known, default=0.0))
    rows = []
    for i, (name, value) in enumerate(items):
        y = 6 + i * 26
        rows.append(f'<text x="0" y="{y + 13}" font-size="12" fill="#2b333b">{e(name)}</text>')
        rows.append(f'<rect x="44" y="{y}" width="236" height="18" rx="3" fill="#eef1f4"/>')
        if value is not None:
            w = 236 * min(value / top_value, 1.0)
            rows.append(
                f'<rect x="44" y="{y}" width="{w:.1f}" height="18" rx="3" fill="{PALETTE[i % len(PALETTE)]}">'
                f"<title>{e(name)}: {e(fmt(value))}</title></rect>"
            )
        rows.append(
            f'<text x="392" y="{y + 13}" font-size="12" text-anchor="end" fill="#2b333b">'
            f"{e(fmt(value) if value is not None else '—')}</text>"
        )
    height = 12 + 26 * len(items)
    return Html(
        f'<svg class="chart hbars" viewBox="0 0 392 {height}" role="img" aria-label="{e(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg>'
    )
