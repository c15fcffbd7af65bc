"""`cloudgate emulator`: run the emulator of Vertex AI (and Google's token endpoints)."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from cloudgate.cli.common import setup_logging
from cloudgate.emulator import EmulatorConfig, Fault, create_emulator_app, write_service_account_key
from cloudgate.util.server import uvicorn_config


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "emulator",
        help="run the emulator of Vertex AI",
        description="Serve a faithful emulator of Vertex AI's Claude endpoints, Google's OAuth token "
        "endpoint and the GCE metadata server, with fault injection.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8901)
    p.add_argument("--config", "-c", help="emulator settings file (YAML, EmulatorConfig field names)")
    p.add_argument("--stream-delay", type=float, help="seconds between streamed events")
    p.add_argument("--script", help="a YAML/JSON file of scripted turns")
    p.add_argument("--token-ttl", type=int, help="lifetime of issued access tokens, seconds")
    p.add_argument("--static-token", action="append", default=[], help="a bearer token to accept as is")
    p.add_argument("--no-auth", action="store_true", help="accept calls without a bearer token")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[:TIMES]",
        help="inject a fault (rate_limit, rate_limit_array, not_found, permission_denied, server_error, "
        "overloaded, slow_first_byte, cut_stream, unauthenticated); TIMES limits how often",
    )
    p.add_argument(
        "--write-service-account",
        metavar="PATH",
        help="write a service-account key file this emulator trusts (token_uri pointing at it)",
    )
    p.add_argument("--log-level", default="info")
    p.set_defaults(run=run)


def build_config(args: argparse.Namespace) -> EmulatorConfig:
    """The emulator configuration the flags describe."""
    config = EmulatorConfig.from_file(args.config) if args.config else EmulatorConfig()
    if args.stream_delay is not None:
        config.stream_delay = args.stream_delay
    if args.script:
        config.script = args.script
    if args.token_ttl is not None:
        config.token_ttl = args.token_ttl
    config.static_tokens.extend(args.static_token)
    if args.no_auth:
        config.require_auth = False
    for spec in args.fault:
        kind, _, times = spec.partition(":")
        config.faults.append(Fault(kind=kind, times=int(times) if times else None))
    if args.write_service_account:
        info = write_service_account_key(
            args.write_service_account, token_uri=f"http://{args.host}:{args.port}/token"
        )
        config.trust_key(info)
    return config


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    setup_logging(args.log_level)
    try:
        config = build_config(args)
    except (OSError, ValueError, TypeError) as exc:
        raise SystemExit(f"cloudgate emulator: {exc}") from None
    app = create_emulator_app(config)
    server = uvicorn.Server(uvicorn_config(app, args.host, args.port, log_level=args.log_level))
    server.run()
    return 0 if server.started else 1
