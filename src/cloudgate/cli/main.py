"""`cloudgate` entry point: parses the command line and runs one subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cloudgate import __version__
from cloudgate.cli import (
    ask,
    config_cmd,
    db,
    demo,
    deployments,
    doctor,
    emulator,
    governance,
    logs,
    models,
    serve,
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to document the commands)."""
    parser = argparse.ArgumentParser(
        prog="cloudgate",
        description="Run Claude inside your own cloud: a gateway for the Anthropic, Vertex AI and "
        "Bedrock wire formats, and an emulator of all three.",
    )
    parser.add_argument("--version", action="version", version=f"cloudgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve.add_parser(sub)
    emulator.add_parser(sub)
    demo.add_parser(sub)
    db.add_parser(sub)
    deployments.add_parser(sub)
    governance.add_parsers(sub)
    config_cmd.add_parser(sub)
    ask.add_parser(sub)
    logs.add_parser(sub)
    doctor.add_parser(sub)
    models.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
