"""`cloudgate doctor`: check that Claude Code can reach Claude with this machine's configuration.

Resolves the configuration as Claude Code would (environment and settings files), gets its
credentials, connects to the endpoint and probes every model in use; each check says ok, warn,
fail or skipped, why, and what to do. `--json` prints the same for scripts; the exit code is 1
when any check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cloudgate.cli.term import Spinner, Terminal
from cloudgate.doctor import Report, Verdict, diagnose, failed_to_resolve
from cloudgate.doctor.runner import PLATFORM_NAMES

_TAGS = {
    Verdict.OK: ("[ok]", "green"),
    Verdict.WARN: ("[warn]", "yellow"),
    Verdict.FAIL: ("[FAIL]", "bold red"),
    Verdict.SKIPPED: ("[skip]", "dim"),
}


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "doctor",
        help="check that Claude Code can reach Claude with this configuration, and say what to fix",
        description="Check Claude Code's configuration end to end (settings, credentials, project, "
        "endpoint, each model in use) and explain every failure with its fix. Exit code 1 when a "
        "check fails.",
    )
    p.add_argument("--settings", metavar="FILE", help="a Claude Code settings file (as `claude --settings`)")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument(
        "--model",
        "-m",
        action="append",
        default=[],
        metavar="M",
        help="also probe this model (repeatable; a name, alias or platform id)",
    )
    p.set_defaults(run=run)


def resolve_report(args: argparse.Namespace, spinner: Spinner) -> Report:
    """Resolve the configuration and run the checks (the report of a broken configuration if not)."""
    from cloudgate.clientconfig import SettingsFileError, resolve

    try:
        config = resolve(settings_file=args.settings)
    except (SettingsFileError, OSError, ValueError) as exc:
        return failed_to_resolve(str(exc))
    with spinner.running("checking Claude Code's configuration"):
        return diagnose(config, extra_models=args.model, progress=spinner.update)


def run(args: argparse.Namespace) -> int:
    """Run the checks and print them."""
    report = resolve_report(args, Spinner())
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        render(report, Terminal())
    return report.exit_code


def render(report: Report, term: Terminal) -> None:
    """The report for people: one block per check, the fix under each problem."""
    platform = PLATFORM_NAMES.get(report.platform, report.platform)
    term.line(f"cloudgate doctor: Claude Code on {platform}", "bold")
    term.line()
    for check in report.checks:
        tag, style = _TAGS[check.verdict]
        term.line(f"{tag:<7}{check.title}", style)
        term.line(check.message, indent=7)
        if check.fix and check.verdict in (Verdict.FAIL, Verdict.WARN):
            term.line(f"Fix: {check.fix}", "cyan", indent=7)
    counts = {v: sum(1 for c in report.checks if c.verdict is v) for v in Verdict}
    summary = ", ".join(f"{counts[v]} {v}" for v in Verdict if counts[v])
    term.line()
    if report.failed:
        term.line(f"Problems found ({summary}).", "bold red")
    else:
        term.line(f"Claude Code should work ({summary}).", "bold green")
