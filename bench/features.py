"""What each feature of a governed request costs: the gateway with one feature off at a time.

    .venv/bin/python bench/features.py [--quick] [--rounds 5] [--duration 4] [--mode json,stream]

Every variant is run.py's `cloudgate` target (every default on, a store key with budgets and
rate limits, SQLite) with one thing changed, all started side by side against the same nginx
upstream and measured in turns (each round measures every variant once, in the same order), so
that a busy moment of the shared machine lands on all of them:

| variant | what changes |
|---|---|
| `all` | nothing: every default on, a store key with budgets and rate limits |
| `inline-writer` | `store: {writer: inline}`: spend and activity rows written on the gateway's loop |
| `no-activity` | `activity: {enabled: false}` |
| `no-metrics` | `telemetry: {metrics: false}` |
| `no-request-log` | `gateway: {log_requests: false}` |
| `no-limits` | a store key of the same team and user without budgets or rate limits |
| `configured-key` | the `gateway.keys` key: no store lookup, budgets or limits (spend still logged) |
| `spend-only` | the configured key, no activity log, metrics or request log: spend journal and log alone |
| `bare` | run.py's `cloudgate-bare`: governance, activity log, metrics and request log off |

Measured with `wrk -t1 -c16` (the concurrency performance.md's reference figures use). The
figure that matters is the gateway's CPU time per request (all its threads, from /proc): on a
shared 2-core machine it moves far less than req/s. Each row gives the median round's req/s and
CPU per request, and what the variant saves against `all` (`all`'s CPU per request minus the
variant's, medians of the rounds): the cost of what it turns off, and every round's figure.
The store writer process (`store.writer: process`, the default) is counted apart, in its own
column: it runs beside the gateway, on the other core when one is free.
Differences under about 50 us can be the noise of this machine; use more rounds to see them.
Raw figures: bench/results/features-<ts>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import run as harness  # bench/run.py: processes, the upstream, wrk, the cloudgate target

OFF = {"enabled": False}
VARIANTS: dict[str, tuple[dict[str, Any], str, bool]] = {
    # name: (settings merged in, key kind, bare)
    "all": ({}, "governed", False),
    "inline-writer": ({"store": {"writer": "inline"}}, "governed", False),
    "no-activity": ({"activity": OFF}, "governed", False),
    "no-metrics": ({"telemetry": {"metrics": False}}, "governed", False),
    "no-request-log": ({"gateway": {"log_requests": False}}, "governed", False),
    "no-limits": ({}, "plain", False),
    "configured-key": ({}, "configured", False),
    "spend-only": (
        {"activity": OFF, "telemetry": {"metrics": False}, "gateway": {"log_requests": False}},
        "configured",
        False,
    ),
    "bare": ({}, "governed", True),
}
CONCURRENCY = 16


def start(bench: harness.Bench, name: str) -> harness.Endpoint:
    """One variant, in a work directory of its own."""
    extra, key, bare = VARIANTS[name]
    own = harness.Bench(
        bench.workdir / name, bench.procs, bench.upstream_url, bench.upstream_kind, bench.bodies
    )
    own.workdir.mkdir()
    return harness.start_cloudgate(own, bare=bare, name=f"cloudgate-{name}", extra=extra, key=key)


def measure(bench: harness.Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Start every variant, then measure them in turns; every round's figures per variant and mode."""
    bench.write_bodies()
    harness.start_upstream(bench)
    endpoints = {}
    for name in args.variants:
        print(f"starting {name} ...", file=sys.stderr)
        endpoints[name] = start(bench, name)
        harness.check(name, endpoints[name])
    for ep in endpoints.values():  # warm-up: connections, caches, the first key lookups
        for mode in args.modes:
            harness.wrk(ep, mode, CONCURRENCY, args.warmup)
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {
        mode: {name: [] for name in endpoints} for mode in args.modes
    }
    for rnd in range(args.rounds):
        for mode in args.modes:
            for name, ep in endpoints.items():
                result = harness.wrk(ep, mode, CONCURRENCY, args.duration)
                rounds[mode][name].append(result)
                harness.progress(
                    rnd,
                    f"{name}/{mode}",
                    f"{result['rps']:8.0f} req/s  {result['cpu_us_per_request']:6.0f} us CPU/request",
                    result["errors"] if result["error_count"] else None,
                )
    return {"rounds": rounds, "features": {name: ep.features for name, ep in endpoints.items()}}


def report(found: dict[str, Any], rounds: int) -> tuple[list[str], dict[str, Any]]:
    """The table (one per mode) and the medians behind it."""
    lines: list[str] = []
    summary: dict[str, Any] = {}
    for mode, by_name in found["rounds"].items():
        medians = {
            name: {
                "rps": statistics.median(r["rps"] for r in runs),
                "cpu_us": statistics.median(r["cpu_us_per_request"] for r in runs),
                "errors": sum(r["error_count"] for r in runs),
                "cpu_us_rounds": [round(r["cpu_us_per_request"]) for r in runs],
                "helper_cpu_us": statistics.median(r.get("helper_cpu_us_per_request", 0.0) for r in runs),
            }
            for name, runs in by_name.items()
        }
        base = medians.get("all")
        lines += [
            "",
            f"{harness.ANSWER[mode]}, c={CONCURRENCY}, median of {rounds} round(s)",
            "",
            "| variant | req/s | CPU per request | saves against `all` | each round | writer process "
            "| errors |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, m in medians.items():
            if base is not None and name != "all":
                m["saves_us"] = base["cpu_us"] - m["cpu_us"]
            saved = f"{m['saves_us']:+.0f} us" if "saves_us" in m else "-"
            each = " ".join(str(us) for us in m["cpu_us_rounds"])
            helper = f"{m['helper_cpu_us']:.0f} us" if m["helper_cpu_us"] >= 1 else "-"
            lines.append(
                f"| {name} | {m['rps']:,.0f} | {m['cpu_us']:.0f} us | {saved} | {each} | {helper} | "
                f"{m['errors']} |"
            )
        summary[mode] = medians
    return lines, summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 rounds of 3 s (default: 5 rounds of 5 s)")
    p.add_argument("--rounds", type=int, help="rounds (each measures every variant once)")
    p.add_argument("--duration", type=float, help="seconds per measurement")
    p.add_argument("--mode", default="json", help="answer kinds: json, stream or json,stream (default json)")
    p.add_argument("--only", help=f"variants, in order (default all of {', '.join(VARIANTS)})")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, server logs)")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.duration = args.duration or (3.0 if args.quick else 5.0)
    args.warmup = 1.0 if args.quick else 2.0
    args.modes = [m for m in args.mode.split(",") if m]
    args.variants = args.only.split(",") if args.only else list(VARIANTS)
    unknown = [m for m in args.modes if m not in harness.MODES] + [
        v for v in args.variants if v not in VARIANTS
    ]
    if unknown:
        p.error(f"unknown: {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")

    def work(bench: harness.Bench) -> int:
        found = measure(bench, args)
        lines, summary = report(found, args.rounds)
        print(f"cloudgate feature costs {stamp}: commit {harness.git_head()}, {os.cpu_count()} CPUs")
        print("\n".join(lines))
        settings = {"rounds": args.rounds, "duration_s": args.duration, "concurrency": CONCURRENCY}
        doc = found | {"summary": summary, "settings": settings}
        print(harness.save_results(f"features-{stamp}.json", stamp, doc))
        return 0

    return harness.in_workdir("cloudgate-features-", args.keep, work)


if __name__ == "__main__":
    sys.exit(main())
