"""`cloudgate models`: the model catalog: ids on each platform, where Vertex serves each model,
prices, and the context window.

`--refresh FILE_OR_URL` reads a newer catalog (the format of models.yaml) and shows it;
with `--save PATH` it is written where the `catalog_file:` setting can point, once it has
been validated as the gateway would load it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import requests
import yaml

from cloudgate.catalog import Catalog, ModelEntry, default_catalog
from cloudgate.catalog.catalog import CatalogError
from cloudgate.cli.output import Column, emit
from cloudgate.cli.term import Terminal

DEFAULT_CONTEXT_WINDOW = 200_000
_FETCH_TIMEOUT = 30.0

_ID: list[Column] = [("MODEL", "id", "")]
_VERTEX: list[Column] = [
    ("VERTEX ID", "vertex", ""),
    ("VERTEX REGIONS", "vertex_regions", ""),
    ("GLOBAL", "global", ""),
]
_BEDROCK: list[Column] = [("BEDROCK ID", "bedrock", ""), ("ON-DEMAND", "bedrock_on_demand", "")]
_PRICES: list[Column] = [
    ("IN $/MTOK", "input", "usd"),
    ("OUT", "output", "usd"),
    ("CACHE W 5M", "cache_write_5m", "usd"),
    ("CACHE W 1H", "cache_write_1h", "usd"),
    ("CACHE R", "cache_read", "usd"),
]
_PREMIUM: list[Column] = [("REGIONAL +", "regional_premium", "")]
_CONTEXT: list[Column] = [("CONTEXT", "context", "")]


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "models",
        help="the model catalog: platform ids, Vertex regions, prices, context windows",
        description="Show the model catalog: Anthropic, Vertex AI and Bedrock ids, the Vertex "
        "locations of each model (and whether the global endpoint serves it), list prices per "
        "million tokens, the regional premium and the context window.",
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument(
        "--platform",
        choices=("vertex", "bedrock", "anthropic"),
        help="only the models and columns of one platform",
    )
    p.add_argument(
        "--refresh",
        metavar="FILE_OR_URL",
        help="read a newer catalog (models.yaml format) from a file or an http(s) URL and show it",
    )
    p.add_argument(
        "--save", metavar="PATH", help="with --refresh: write the catalog to PATH (for `catalog_file:`)"
    )
    p.set_defaults(run=run)


def context_label(entry: ModelEntry) -> str:
    """`200k`, or `200k; 1M beta (context-1m-...) at $6/$22.50 past 200k` for long-context models."""
    window = int(entry.extra.get("context_window", DEFAULT_CONTEXT_WINDOW))
    label = _tokens(window)
    lc = entry.long_context
    if lc is not None:
        rates = f"${_num(lc.input)}/${_num(lc.output)} per MTok past {_tokens(lc.threshold)}"
        label += f"; 1M with beta {lc.beta}, {rates}"
    return label


def _tokens(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def _num(x: float) -> str:
    return f"{x:g}" if x == int(x) else f"{x:.2f}"


def model_row(entry: ModelEntry) -> dict[str, Any]:
    """One catalog entry as a flat row (tables, CSV) with the structured parts kept for JSON."""
    prices = entry.prices
    lc = entry.long_context
    return {
        "id": entry.id,
        "name": entry.name,
        "family": entry.family,
        "aliases": list(entry.aliases),
        "vertex": entry.vertex,
        "bedrock": entry.bedrock,
        "vertex_regions": list(entry.vertex_regions),
        "global": entry.supports_vertex_global,
        "bedrock_on_demand": entry.bedrock_on_demand,
        "input": prices.input,
        "output": prices.output,
        "cache_write_5m": prices.cache_write_5m,
        "cache_write_1h": prices.cache_write_1h,
        "cache_read": prices.cache_read,
        "regional_premium": f"{entry.vertex_regional_premium:.0%}" if entry.vertex_regional_premium else None,
        "vertex_regional_premium": entry.vertex_regional_premium,
        "context_window": int(entry.extra.get("context_window", DEFAULT_CONTEXT_WINDOW)),
        "context": context_label(entry),
        "long_context": None
        if lc is None
        else {"beta": lc.beta, "threshold": lc.threshold, "input": lc.input, "output": lc.output},
    }


def columns_for(platform: str | None) -> list[Column]:
    """The table's columns for one platform (or all)."""
    if platform == "vertex":
        return _ID + _VERTEX + _PRICES + _PREMIUM + _CONTEXT
    if platform == "bedrock":
        return _ID + _BEDROCK + _PRICES + _CONTEXT
    if platform == "anthropic":
        return _ID + _PRICES + _CONTEXT
    return _ID + _VERTEX + _BEDROCK + _PRICES + _PREMIUM + _CONTEXT


def offered_on(entry: ModelEntry, platform: str | None) -> bool:
    """Whether `platform` serves the model (every platform when None)."""
    if platform == "vertex":
        return bool(entry.vertex and entry.vertex_regions)
    if platform == "bedrock":
        return bool(entry.bedrock)
    return True


class RefreshError(Exception):
    """A catalog that cannot be read or is not a valid catalog."""


def fetch_catalog(source: str) -> tuple[Catalog, str]:
    """(the catalog, its text) from a file or an http(s) URL, validated as the gateway loads it."""
    if source.startswith(("http://", "https://")):
        try:
            resp = requests.get(source, timeout=_FETCH_TIMEOUT)
        except requests.RequestException as exc:
            raise RefreshError(f"cannot fetch {source}: {exc}") from exc
        if resp.status_code != 200:
            raise RefreshError(f"{source} answered HTTP {resp.status_code}")
        text = resp.text
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise RefreshError(f"cannot read {source}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RefreshError(f"{source} is not valid YAML: {exc}") from exc
    try:
        catalog = Catalog.from_data(data, source=source)
    except CatalogError as exc:
        raise RefreshError(f"not a valid catalog: {exc}") from exc
    if not catalog.entries:
        raise RefreshError(f"not a valid catalog: {source} lists no models")
    return catalog, text


def run(args: argparse.Namespace) -> int:
    """Print the catalog (refreshed and saved when asked)."""
    if args.save and not args.refresh:
        print("cloudgate: --save needs --refresh FILE_OR_URL", file=sys.stderr)
        return 2
    catalog = default_catalog()
    if args.refresh:
        try:
            catalog, text = fetch_catalog(args.refresh)
        except RefreshError as exc:
            print(f"cloudgate: {exc}", file=sys.stderr)
            return 1
        if args.save:
            target = Path(args.save)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            except OSError as exc:
                print(f"cloudgate: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
                return 1
            print(
                f"Saved {len(catalog.entries)} models to {target}; use it with `catalog_file: {target}`.",
                file=sys.stderr,
            )
    rows = [model_row(e) for e in catalog.entries if offered_on(e, args.platform)]
    columns = columns_for(args.platform)
    if args.format == "table":
        Terminal().table(rows, columns)
    else:
        emit(rows, columns, args.format)
    return 0
