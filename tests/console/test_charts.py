"""The SVG charts and the HTML kit: escaping everywhere, scales, empty data."""

from __future__ import annotations

from xml.etree import ElementTree

from cloudgate.console import charts
from cloudgate.console.html import Html, e, page, tag, url, usd


def _svg(fragment: str) -> ElementTree.Element:
    start = fragment.index("<svg")
    end = fragment.index("</svg>", start) + len("</svg>")
    return ElementTree.fromstring(fragment[start:end])


def test_values_are_escaped_and_html_is_not_escaped_twice() -> None:
    assert e("<script>") == "&lt;script&gt;"
    assert e(Html("<b>")) == "<b>"
    assert e(None) == "" and e(["a", Html("<i/>"), ["<", 1]]) == "a<i/>&lt;1"
    assert tag("a", "<x>", href='"><script>', class_="c", data_x=True, hidden=False) == (
        '<a href="&quot;&gt;&lt;script&gt;" class="c" data-x>&lt;x&gt;</a>'
    )
    assert tag("input", name="n", value="v") == '<input name="n" value="v">'
    assert url("/ui/logs", since="24h", model=None, status="") == "/ui/logs?since=24h"
    whole = page("T<", "body", csrf="tok", signed_in_as="me")
    assert "<title>T&lt; · cloudgate</title>" in whole and 'data-csrf="tok"' in whole


def test_money() -> None:
    assert [usd(m) for m in (None, 0, 1234, 1_500_000, 12_345_678_000)] == [
        "—",
        "$0",
        "$0.0012",
        "$1.50",
        "$12,346",
    ]


def test_stacked_bars_scale_stack_and_escape() -> None:
    series = [charts.Series("<team>", [1.0, 3.0], "#111111"), charts.Series("b", [1.0, 0.0], "#222222")]
    out = charts.stacked_bars(["d1", "d2"], series, fmt=lambda v: f"{v:g}", label="spend")
    svg = _svg(out)  # well-formed
    rects = svg.findall("{http://www.w3.org/2000/svg}rect")
    assert len(rects) == 3  # a zero value draws nothing
    heights = sorted(float(r.get("height", 0)) for r in rects)
    # The axis tops at 5 (a round number above the largest stack, 3), the plot is 182 high.
    assert heights[-1] == round(182 * 3 / 5, 1)
    assert "&lt;team&gt;" in out and "<team>" not in out
    assert "spend" in (svg.get("aria-label") or "")
    empty = charts.stacked_bars([], [], label="nothing")
    assert "No data in this range" in empty


def test_round_axis_tops() -> None:
    tops = [charts.axis_top(v) for v in (0, 0.0004, 3, 7, 10, 11, 2400)]
    assert tops == [1.0, 0.0005, 5.0, 10.0, 10.0, 20.0, 2500.0]


def test_meter_and_hbars() -> None:
    over = _svg(charts.meter(120, 100, label="120%"))
    assert over.findall("{http://www.w3.org/2000/svg}rect")[1].get("fill") == charts.ERROR_COLOUR
    assert float(over.findall("{http://www.w3.org/2000/svg}rect")[1].get("width", 0)) == 200.0
    half = _svg(charts.meter(50, 100, label="50%"))
    assert float(half.findall("{http://www.w3.org/2000/svg}rect")[1].get("width", 0)) == 100.0
    assert _svg(charts.meter(1, 0, label="no budget")) is not None
    bars = charts.hbars([("p50", 10.0), ("p99", None)], fmt=lambda v: f"{v:g} ms", label="ttft")
    assert "10 ms" in bars and "—" in bars
    assert charts.colours(["a", "other", "b"]) == [charts.PALETTE[0], charts.OTHER_COLOUR, charts.PALETTE[1]]
