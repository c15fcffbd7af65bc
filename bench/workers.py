"""Does `cloudgate serve --workers 2` serve 1.7x what one worker does?

    .venv/bin/python bench/workers.py [--quick] [--rounds 3] [--duration 5] [--workers 2]

Two gateways run side by side against the same static nginx upstream as bench/run.py, each
started exactly as run.py's `cloudgate` target (governance on SQLite, routing, activity log,
metrics, a key, one request-log line per request), one with `--workers 1` and one with
`--workers 2` (each in a data directory of its own). wrk (`-t1`) measures each at 64 and 16
connections, JSON and SSE answers; every round measures one worker count right after the other
so that both see the same machine, and the median round is reported. The table gives req/s,
p50, p99, the ratio 2-vs-1 per cell against the 1.7x target (performance.md), and how the CPU
time of the two workers was split (a shared listening socket lets the kernel wake whichever
worker waits, so the split is worth seeing). Raw figures go to bench/results/workers-<ts>.json.

On a 2-core machine wrk and nginx share the cores with the workers: two workers cannot have two
whole cores, so the ratio measured here is a floor for a machine with cores to spare. The last
column (requests per second of worker CPU time) tells the two apart: a ratio held down by the
cores wrk and nginx take shows as two workers each doing as much per CPU-second as one, with
less than a core each.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import run as harness  # bench/run.py: processes, the upstream, wrk, the cloudgate target

MODES = ("json", "stream")
CONCURRENCY = (64, 16)
TARGET_RATIO = 1.7


def start_gateway(bench: harness.Bench, name: str, workers: int) -> tuple[harness.Endpoint, harness.Proc]:
    """run.py's `cloudgate` target with `--workers N`, in a work directory of its own."""
    own = harness.Bench(
        bench.workdir / name, bench.procs, bench.upstream_url, bench.upstream_kind, bench.bodies
    )
    own.workdir.mkdir()
    start = bench.procs.start

    def start_with_workers(
        proc_name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> harness.Proc:
        return start(name, [*argv, "--workers", str(workers)], env)

    bench.procs.start = start_with_workers  # type: ignore[method-assign]
    try:
        ep = harness.start_cloudgate(own)
    finally:
        bench.procs.start = start  # type: ignore[method-assign]
    proc = bench.procs.running[-1]
    if workers > 1:
        wait_for_workers(ep, workers)
    return ep, proc


def wait_for_workers(ep: harness.Endpoint, workers: int, timeout: float = 30.0) -> None:
    """Until /metrics shows `workers` live worker processes (the port answers before they all run)."""
    url = ep.urls["json"].replace("/v1/messages", "/metrics")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                pids = set(re.findall(rb'cloudgate_build_info\{pid="(\d+)"', resp.read()))
            if len(pids) >= workers:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise harness.BenchError(f"{workers} workers did not come up within {timeout:g}s")
        time.sleep(0.2)


def worker_pids(parent: int) -> list[int]:
    """The worker processes `cloudgate serve` forked (its children, not its store writer)."""
    return [pid for pid in harness.child_pids(parent) if not is_store_writer(pid)] or [parent]


def is_store_writer(pid: int) -> bool:
    """Whether `pid` is a gateway's store writer process (started with its own command line)."""
    try:
        return b"cloudgate.store.writer_process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def measure(ep: harness.Endpoint, proc: harness.Proc, mode: str, conc: int, seconds: float) -> dict[str, Any]:
    """One wrk run, with each worker's share of the CPU time it took."""
    pids = worker_pids(proc.popen.pid)
    before = [harness.cpu_seconds(p) for p in pids]
    writers_before = [harness.helper_cpu_seconds(p) for p in pids]
    result = harness.wrk(ep, mode, conc, seconds)
    used = [harness.cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
    result["worker_cpu_s"] = [round(u, 2) for u in used]
    # Each worker's store writer process (decision 0038), counted apart like run.py does.
    writers = [
        sum(cpu - was.get(child, 0.0) for child, cpu in harness.helper_cpu_seconds(p).items())
        for p, was in zip(pids, writers_before, strict=True)
    ]
    result["writer_cpu_s"] = [round(w, 2) for w in writers]
    # Requests per second of worker CPU: whether a request costs more with several workers
    # (shared counters, metric files, store contention) or they just got less of the machine.
    result["requests_per_cpu_s"] = result["requests"] / sum(used) if sum(used) else 0.0
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; 0 when it completed (whatever the figures), 1 when it could not."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 s per measurement, one round")
    p.add_argument("--duration", type=float, help="seconds per measurement (default 5)")
    p.add_argument("--rounds", type=int, help="rounds of the whole matrix (default 3); the median is shown")
    p.add_argument("--workers", type=int, default=2, help="the worker count compared with 1 (default 2)")
    args = p.parse_args(argv)
    seconds = args.duration or (3.0 if args.quick else 5.0)
    rounds = args.rounds or (1 if args.quick else 3)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (bench/run.sh does it as root)", file=sys.stderr)
        return 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    lines = harness.in_workdir(
        "cloudgate-bench-workers-", False, lambda bench: run(bench, args.workers, seconds, rounds, stamp)
    )
    if isinstance(lines, int):
        return lines
    print("\n".join(lines))
    return 0


def run(bench: harness.Bench, many: int, seconds: float, rounds: int, stamp: str) -> list[str]:
    """Start the upstream and both gateways, check them, measure; the report lines."""
    bench.write_bodies()
    harness.start_upstream(bench)
    counts = (1, many)
    gateways: dict[int, tuple[harness.Endpoint, harness.Proc]] = {}
    for n in counts:
        print(f"starting cloudgate --workers {n} ...", file=sys.stderr)
        gateways[n] = start_gateway(bench, f"cloudgate-w{n}", n)
        harness.check(f"cloudgate-w{n}", gateways[n][0])
        harness.check_request_log(gateways[n][1].log)
    total = rounds * len(MODES) * len(CONCURRENCY) * len(counts)
    print(
        f"{total} measurements of {seconds:g} s, about {total * (seconds + 1) / 60:.1f} min", file=sys.stderr
    )
    runs: dict[str, list[dict[str, Any]]] = {}
    for rnd in range(rounds):
        for mode in MODES:
            for conc in CONCURRENCY:
                for n in counts:
                    ep, proc = gateways[n]
                    harness.wrk(ep, mode, conc, 1.0)  # warm-up: connections, caches, allocator
                    result = measure(ep, proc, mode, conc, seconds)
                    key = f"w{n}/{mode}/c{conc}"
                    runs.setdefault(key, []).append(result)
                    flag = f"  ERRORS {result['errors']}" if result["error_count"] else ""
                    print(
                        f"  round {rnd + 1} {key:<16} {result['rps']:>8,.0f} req/s  p50 "
                        f"{harness.fmt_ms(result['p50_ms']):>9}  p99 {harness.fmt_ms(result['p99_ms']):>9}  "
                        f"worker CPU s {result['worker_cpu_s']}  "
                        f"load {result['loadavg_1m_before']:.1f}{flag}",
                        file=sys.stderr,
                    )
    cells = {key: harness.median_run(rs) for key, rs in runs.items()}
    lines = [
        "",
        f"cloudgate workers benchmark {stamp}: commit {harness.git_head()}, {os.cpu_count()} CPUs, "
        f"upstream {bench.upstream_kind}, wrk -t1, {seconds:g} s per measurement, {rounds} round(s)"
        + (" (median shown)" if rounds > 1 else ""),
        "",
        "| answer | conc. | workers | req/s | p50 | p99 | rounds (req/s) | worker CPU | req per CPU-s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ratios: dict[str, Any] = {}
    for mode in MODES:
        for conc in CONCURRENCY:
            for n in counts:
                r = cells[f"w{n}/{mode}/c{conc}"]
                split = "" if n == 1 else " / ".join(f"{s:.1f}" for s in r["worker_cpu_s"]) + " s"
                per_round = ", ".join(f"{x:,.0f}" for x in r["rounds_rps"])
                answer = "Message JSON" if mode == "json" else "SSE, 43 events"
                lines.append(
                    f"| {answer} | {conc} | {n} | {r['rps']:,.0f} | {harness.fmt_ms(r['p50_ms'])} | "
                    f"{harness.fmt_ms(r['p99_ms'])} | {per_round} | {split} | "
                    f"{r['requests_per_cpu_s']:,.0f} |"
                )
            one, two = cells[f"w1/{mode}/c{conc}"], cells[f"w{many}/{mode}/c{conc}"]
            per_round = [b / a for a, b in zip(one["rounds_rps"], two["rounds_rps"], strict=True)]
            ratios[f"{mode}/c{conc}"] = {"median_cells": two["rps"] / one["rps"], "per_round": per_round}
    lines.append("")
    for key, ratio in ratios.items():
        mark = "MET" if ratio["median_cells"] >= TARGET_RATIO else "MISS"
        rounds_text = ", ".join(f"{x:.2f}" for x in ratio["per_round"])
        lines.append(
            f"{many} workers vs 1, {key}: {ratio['median_cells']:.2f}x (target >= {TARGET_RATIO}x) {mark}"
            f"   per round: {rounds_text}"
        )
    if any(c["error_count"] for c in cells.values()):
        lines.append("\n!! some measurements had errors: their figures are not comparable")
    doc = {
        "upstream": bench.upstream_kind,
        "wrk": {"threads": 1, "seconds": seconds, "warmup_seconds": 1.0, "rounds": rounds},
        "workers_compared": list(counts),
        "target_ratio": TARGET_RATIO,
        "results": runs,
        "median": cells,
        "ratios": ratios,
    }
    lines.append(harness.save_results(f"workers-{stamp}.json", stamp, doc))
    return lines


if __name__ == "__main__":
    sys.exit(main())
