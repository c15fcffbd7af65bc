"""`cloudgate serve`: run the gateway."""

from __future__ import annotations

import argparse
import logging
import resource
from typing import Any

import uvicorn

from cloudgate.cli.common import settings_from_args, setup_logging
from cloudgate.gateway import create_gateway_app
from cloudgate.gateway.workers import StartupError, serve_workers
from cloudgate.util.server import uvicorn_config

log = logging.getLogger("cloudgate.serve")


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("serve", help="run the gateway", description="Run the cloudgate gateway.")
    p.add_argument("--config", "-c", help="settings file (default: $CLOUDGATE_CONFIG or ./cloudgate.yaml)")
    p.add_argument("--host", help="address to listen on (gateway.host)")
    p.add_argument("--port", type=int, help="port to listen on (gateway.port)")
    p.add_argument(
        "--workers",
        type=int,
        help="worker processes sharing the port, one per core (gateway.workers; default 1)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    overrides: dict[str, Any] = {}
    if args.host:
        overrides.setdefault("gateway", {})["host"] = args.host
    if args.port is not None:
        overrides.setdefault("gateway", {})["port"] = args.port
    if args.workers is not None:
        if args.workers < 1:
            raise SystemExit(f"cloudgate: --workers must be 1 or more, not {args.workers}")
        overrides.setdefault("gateway", {})["workers"] = args.workers
    settings = settings_from_args(args, overrides)
    setup_logging(settings.log_level, settings.telemetry.log_format)
    raise_open_files_limit()
    if settings.gateway.workers > 1:
        try:
            return serve_workers(settings)
        except StartupError as exc:
            raise SystemExit(f"cloudgate: {exc}") from None
    try:
        app = create_gateway_app(settings)
        app.freeze_gc = True
    except ValueError as exc:
        raise SystemExit(f"cloudgate: {exc}") from None
    server = uvicorn.Server(
        uvicorn_config(
            app,
            settings.gateway.host,
            settings.gateway.port,
            log_level=settings.log_level.lower(),
            log_config=None,  # uvicorn's own lines go through our handler, in our format
        )
    )
    server.run()
    return 0 if server.started else 1


def raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one (workers inherit it).

    Each streaming answer holds two sockets, the caller's and the upstream's, for its whole
    length; the usual soft limit of 1,024 would refuse connections at ~500 concurrent streams.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):  # some platforms cap below the hard limit: keep the soft one
            log.warning("could not raise the open-files limit above %d", soft)
