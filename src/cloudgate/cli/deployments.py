"""`cloudgate deployments`: where models run, in what order, and how each place is doing.

`list` reads the settings alone (no gateway needed): every explicit deployment, or for
`--model` the ordered plan a request for it gets. `health` asks a running gateway
(`GET /health/deployments`) for the live state: cooldowns, concurrency limits, failures.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import requests

from cloudgate.catalog import Catalog, default_catalog
from cloudgate.cli.common import settings_from_args
from cloudgate.cli.output import FORMATS, Column, emit
from cloudgate.config.settings import Settings
from cloudgate.governance.types import Principal
from cloudgate.protocol.errors import GatewayError
from cloudgate.protocol.messages import MessagesCall, Operation
from cloudgate.routing import Router

_DEPLOYMENT_COLUMNS: list[Column] = [
    ("NAME", "name", ""),
    ("PROVIDER", "provider", ""),
    ("REGION", "region", ""),
    ("PROJECT", "project", ""),
    ("PLACE", "place", ""),
    ("PRIORITY", "priority", ""),
    ("WEIGHT", "weight", ""),
    ("UPSTREAM MODEL", "upstream_model", ""),
]

_HEALTH_COLUMNS: list[Column] = [
    ("DEPLOYMENT", "deployment", ""),
    ("MODEL", "model", ""),
    ("STATE", "state", ""),
    ("IN FLIGHT", "in_flight", ""),
    ("LIMIT", "concurrency_limit", ""),
    ("FAILS", "consecutive_failures", ""),
    ("COOLDOWN S", "cooldown_remaining_s", ""),
    ("REQUESTS", "requests", ""),
    ("ERRORS", "failures", ""),
    ("429/529", "throttled", ""),
    ("LAST ERROR", "last_error", ""),
]


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "deployments",
        help="show deployments, routing order and live health",
        description="Show where models run (from the settings) and how each deployment is doing "
        "(from a running gateway).",
    )
    actions = p.add_subparsers(dest="deployments_command", metavar="ACTION", required=True)
    a = actions.add_parser(
        "list",
        help="deployments from the settings; with --model, the order a request tries them in",
        description="Deployments from the settings; with --model, the ordered plan for that model.",
    )
    a.add_argument("--config", "-c", help="settings file (default: $CLOUDGATE_CONFIG or ./cloudgate.yaml)")
    a.add_argument("--model", "-m", help="a model name or alias: the deployments it may go to, in order")
    a.add_argument("--regions", help="comma-separated region allow-list to apply, as a key's would be")
    a.add_argument("--format", choices=FORMATS, default="table")
    a.set_defaults(run=run_list)
    h = actions.add_parser(
        "health",
        help="live state of each deployment from a running gateway",
        description="Live state of each deployment (GET /health/deployments on a running gateway).",
    )
    h.add_argument("--config", "-c", help="settings file (default: $CLOUDGATE_CONFIG or ./cloudgate.yaml)")
    h.add_argument("--gateway", help="gateway base URL (default: from the settings' gateway.host/port)")
    h.add_argument("--key", help="a gateway key (default: $CLOUDGATE_KEY, then the settings' keys)")
    h.add_argument("--format", choices=FORMATS, default="table")
    h.set_defaults(run=run_health)


def plan_rows(
    settings: Settings, catalog: Catalog, model: str, regions: list[str] | None
) -> list[dict[str, Any]]:
    """The deployments a request for `model` may go to, in the order they are tried when healthy."""
    router = Router(settings, catalog)
    principal = None
    if regions:
        principal = Principal(key_id="cli", key_prefix="cli", allowed_regions=(frozenset(regions),))
    call = MessagesCall(Operation.MESSAGES, model, {"messages": []})
    plan = router.plan(call, principal)
    return [{**d.describe(), "upstream_model": t.model} for d, t in plan.candidates]


def run_list(args: argparse.Namespace) -> int:
    """Print the deployments, or a model's plan."""
    settings = settings_from_args(args)
    catalog = Catalog.from_file(settings.catalog_file) if settings.catalog_file else default_catalog()
    regions = [r.strip() for r in args.regions.split(",") if r.strip()] if args.regions else None
    if args.model:
        try:
            rows = plan_rows(settings, catalog, args.model, regions)
        except GatewayError as exc:
            raise SystemExit(f"cloudgate: {exc.message}") from None
    else:
        router = Router(settings, catalog)
        rows = [{**d.describe(), "upstream_model": None} for d in router.table.all()]
        if not rows:
            print(
                "No deployments are configured: each model gets the configured provider's region"
                f" ({settings.provider}) and fallbacks per routing.fallback={settings.routing.fallback}."
                " Use --model to see a model's plan."
            )
            return 0
    emit(rows, _DEPLOYMENT_COLUMNS, args.format)
    return 0


def run_health(args: argparse.Namespace) -> int:
    """Print the live health a running gateway reports."""
    settings = settings_from_args(args)
    host = settings.gateway.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    base = (args.gateway or f"http://{host}:{settings.gateway.port}").rstrip("/")
    key = args.key or os.environ.get("CLOUDGATE_KEY") or next(iter(settings.gateway.keys), None)
    key = key or settings.admin_key
    headers = {"x-api-key": key} if key else {}
    try:
        resp = requests.get(f"{base}/health/deployments", headers=headers, timeout=10)
    except requests.RequestException as exc:
        raise SystemExit(f"cloudgate: cannot reach the gateway at {base}: {exc}") from None
    if resp.status_code != 200:
        raise SystemExit(
            f"cloudgate: {base}/health/deployments answered {resp.status_code}: {resp.text[:300]}"
        )
    view = resp.json()
    if args.format == "json":
        emit([], [], "json", document=view)
        return 0
    rows = [entry for d in view.get("deployments", []) for entry in d.get("health", [])]
    idle = [d["name"] for d in view.get("deployments", []) if not d.get("health")]
    print(f"gateway {base}: {view.get('status', '?')}")
    if rows:
        emit(rows, _HEALTH_COLUMNS, args.format)
    if idle and args.format == "table":
        print(f"no traffic yet: {', '.join(idle)}")
    return 0
