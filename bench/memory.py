"""Does the gateway's resident memory grow with the number of requests it has served?

    .venv/bin/python bench/memory.py [--requests 1000000] [--warmup 50000] [--segment 20000]

performance.md's target: "No growth in resident memory over 1,000,000 requests." The setup is
bench/run.py's: the nginx upstream and `cloudgate serve` with every default feature on (key,
request log, governance with the spend journal and the activity log on SQLite in the work
directory, routing, metrics). wrk has no request-count option, so the load runs in segments of
about --segment requests (a duration computed from a short rate probe), alternating Message JSON
and SSE answers at --conc connections, and counts the requests each segment reports until
--requests are done. The gateway's VmRSS is read after every segment and every --sample-s seconds.

Reported: RSS after start-up, after the warm-up (the first segment end at or past --warmup
requests), at the quarters and at the end; the growth from warm-up to end in MB and in MB per
100,000 requests; the slope of a least-squares fit of RSS against requests over the second half
of the run. Verdict: MET when the growth after warm-up is under 10 MB **and** the second-half
slope is under 1 MB per 100,000 requests (10 bytes a request: a leak that would reach 10 MB over
a million requests). Also shown: the SQLite files and their row counts (activity, spend) and the
request log on disk, to show that what grows is on disk, not in memory.
Raw figures: bench/results/<ts>-memory.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import run  # bench/run.py: processes, the nginx upstream, the gateway's configuration, wrk

MAX_GROWTH_MB = 10.0
MAX_SLOPE_MB_PER_100K = 1.0
MODES = ("json", "stream")
# From /proc/<pid>/status: RssAnon is the heap (what a leak grows), RssFile mapped files.
MEMORY_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")


def memory_kb(pid: int) -> dict[str, int]:
    """The process's resident memory in kB, by MEMORY_KEYS (empty when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key: int(value.split()[0]) for key, value in fields if key in MEMORY_KEYS}


def rows_written(db: Path) -> dict[str, int]:
    """Rows in the activity and spend tables so far (max rowid: no scan; nothing is deleted)."""
    rows: dict[str, int] = {}
    if db.exists():
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
            for table in ("activity", "spend"):
                with contextlib.suppress(sqlite3.Error):
                    rows[table] = int(conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0)
    return rows


class Sampler(threading.Thread):
    """Reads a process's VmRSS/VmHWM every `every` seconds until stopped."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.pid = pid
        self.every = every
        self.t0 = time.monotonic()
        self.samples: list[dict[str, Any]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.samples.append({"t": round(time.monotonic() - self.t0, 2), **memory_kb(self.pid)})
            self._done.wait(self.every)

    def stop(self) -> None:
        self._done.set()
        self.join(5)


def fit_slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 with fewer than two distinct x)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def requests_at(t: float, segments: list[dict[str, Any]]) -> float:
    """Requests done by time `t`, interpolated within the segment running then."""
    done = 0.0
    for seg in segments:
        if t >= seg["t_end"]:
            done = seg["total"]
            continue
        if t > seg["t_start"]:
            part = (t - seg["t_start"]) / ((seg["t_end"] - seg["t_start"]) or 1.0)
            done += part * seg["requests"]
        break
    return done


def store_on_disk(data_dir: Path, request_log: Path) -> dict[str, Any]:
    """The files the gateway keeps (sizes), the rows of the activity and spend tables, the request log."""
    files = {
        str(p.relative_to(data_dir)): p.stat().st_size for p in sorted(data_dir.rglob("*")) if p.is_file()
    }
    rows = rows_written(data_dir / "cloudgate.db")
    with request_log.open("rb") as f:
        logged = sum(1 for line in f if line.startswith(b'{"request_id"'))
    return {
        "files_bytes": files,
        "rows": rows,
        "request_log_lines": logged,
        "request_log_bytes": request_log.stat().st_size,
    }


def drive(ep: run.Endpoint, args: argparse.Namespace, sampler: Sampler, db: Path) -> list[dict[str, Any]]:
    """Rate probe, then wrk segments alternating the answer kinds until --requests are done. At
    each segment end: the gateway's memory, and how many activity rows are still unwritten."""
    segments: list[dict[str, Any]] = []
    total = 0
    rate: dict[str, float] = {}

    def segment(mode: str, seconds: int) -> dict[str, Any]:
        nonlocal total
        t_start = time.monotonic() - sampler.t0
        r = run.wrk(ep, mode, args.conc, seconds)
        total += r["requests"]
        seg = {
            "mode": mode,
            "seconds": seconds,
            "t_start": round(t_start, 2),
            "t_end": round(time.monotonic() - sampler.t0, 2),
            "requests": r["requests"],
            "total": total,
            "rps": round(r["rps"], 1),
            "p99_ms": r["p99_ms"],
            "errors": r["error_count"],
            **memory_kb(ep.pid or 0),
        }
        seg["activity_behind"] = total - rows_written(db).get("activity", 0)
        segments.append(seg)
        return seg

    for mode in MODES:  # the probe's requests count like any others
        rate[mode] = segment(mode, 3)["rps"] or 1.0
    print(
        "rate probe: "
        + ", ".join(f"{m} {r:,.0f} req/s" for m, r in rate.items())
        + f"; about {args.requests / (sum(rate.values()) / len(rate)) / 60:.1f} min "
        + f"for {args.requests:,} requests",
        file=sys.stderr,
    )
    i = 0
    next_report = time.monotonic() + 30
    while total < args.requests:
        mode = MODES[i % len(MODES)]
        i += 1
        wanted = min(args.segment, args.requests - total)
        seconds = max(1, min(120, round(wanted / rate[mode])))
        seg = segment(mode, seconds)
        if seg["rps"]:
            rate[mode] = seg["rps"]
        if time.monotonic() > next_report or total >= args.requests:
            next_report = time.monotonic() + 30
            print(
                f"  {total:>10,} requests  VmRSS {seg.get('VmRSS', 0) / 1024:6.1f} MB  "
                f"last segment {mode} {seg['rps']:,.0f} req/s"
                + (f"  ERRORS {seg['errors']}" if seg["errors"] else ""),
                file=sys.stderr,
            )
    return segments


def analyse(
    segments: list[dict[str, Any]], samples: list[dict[str, Any]], start_kb: int, warmup: int
) -> dict[str, Any]:
    """RSS at warm-up, the quarters and the end; growth; the second-half slope; the verdict."""
    total = segments[-1]["total"]
    warm = next((s for s in segments if s["total"] >= warmup), segments[0])
    end = segments[-1]

    def point(seg: dict[str, Any]) -> dict[str, Any]:
        return {
            "requests": seg["total"],
            "rss_mb": seg["VmRSS"] / 1024,
            "anon_mb": seg.get("RssAnon", 0) / 1024,
            "activity_behind": seg.get("activity_behind"),
        }

    points: dict[str, dict[str, Any]] = {"start": {"requests": 0, "rss_mb": start_kb / 1024}}
    points["warm"] = point(warm)
    for q in (0.25, 0.5, 0.75):
        points[f"{int(q * 100)}%"] = point(next(s for s in segments if s["total"] >= q * total))
    worst = max(segments, key=lambda s: s.get("activity_behind", 0))
    points["most activity behind"] = point(worst)
    points["highest RSS"] = point(max(segments, key=lambda s: s["VmRSS"]))
    points["end"] = point(end) | {"vmhwm_mb": end["VmHWM"] / 1024}
    span = end["total"] - warm["total"]
    growth = (end["VmRSS"] - warm["VmRSS"]) / 1024
    # The fit: every timed sample of the second half (requests interpolated within segments),
    # plus the exact segment ends.
    half = total / 2
    pts = [(s["total"], s["VmRSS"] / 1024) for s in segments if s["total"] >= half and "VmRSS" in s]
    for s in samples:
        n = requests_at(s["t"], segments)
        if half <= n <= total and "VmRSS" in s:
            pts.append((n, s["VmRSS"] / 1024))
    slope = fit_slope(pts) * 100_000
    per_100k = growth / span * 100_000 if span > 0 else 0.0
    met = growth < MAX_GROWTH_MB and slope < MAX_SLOPE_MB_PER_100K
    return {
        "requests": total,
        "errors": sum(s["errors"] for s in segments),
        "by_mode": {m: sum(s["requests"] for s in segments if s["mode"] == m) for m in MODES},
        "points": points,
        "growth_after_warmup_mb": round(growth, 2),
        "growth_per_100k_mb": round(per_100k, 3),
        "second_half_slope_mb_per_100k": round(slope, 3),
        "second_half_fit_points": len(pts),
        "verdict": "MET" if met else "MISS",
    }


def report(
    a: dict[str, Any], disk: dict[str, Any], args: argparse.Namespace, stamp: str, wall: float
) -> list[str]:
    """The table and the verdict."""
    lines = [
        "",
        f"cloudgate memory over requests {stamp}: commit {run.git_head()}, {os.cpu_count()} CPUs "
        f"(shared: noisy), wrk -t1 -c{args.conc}, segments of ~{args.segment:,} requests alternating "
        f"Message JSON and SSE (43 events), {wall / 60:.1f} min",
        "",
        "| point | requests | VmRSS | of it RssAnon | activity rows not yet written |",
        "|---|---|---|---|---|",
    ]
    for name, p in a["points"].items():
        label = {"start": "after start-up", "warm": f"after warm-up (>= {args.warmup:,})"}.get(name, name)
        anon = f"{p['anon_mb']:.1f} MB" if p.get("anon_mb") else "-"
        behind = f"{p['activity_behind']:,}" if p.get("activity_behind") is not None else "-"
        lines.append(f"| {label} | {p['requests']:,} | {p['rss_mb']:.1f} MB | {anon} | {behind} |")
    lines += [
        "",
        f"requests: {a['requests']:,} ({', '.join(f'{m} {n:,}' for m, n in a['by_mode'].items())}), "
        f"errors {a['errors']:,}; peak VmHWM {a['points']['end']['vmhwm_mb']:.1f} MB",
        f"growth after warm-up: {a['growth_after_warmup_mb']:+.2f} MB "
        f"({a['growth_per_100k_mb']:+.3f} MB per 100k requests)",
        "least-squares slope over the second half: "
        f"{a['second_half_slope_mb_per_100k']:+.3f} MB per 100k requests "
        f"({a['second_half_fit_points']} points)",
    ]
    rows = ", ".join(f"{t} {n:,} rows" for t, n in disk["rows"].items())
    files = ", ".join(f"{f} {b / 1e6:.1f} MB" for f, b in disk["files_bytes"].items() if b >= 100_000)
    lines.append(f"on disk: {rows}; {files or 'no file over 0.1 MB'}")
    lines.append(
        f"request log: {disk['request_log_lines']:,} lines, {disk['request_log_bytes'] / 1e6:.1f} MB"
    )
    if a["errors"]:
        lines.append("!! some requests failed: the run did not serve what it counted")
    lines.append(
        f"\ntarget (performance.md): no growth in resident memory over {a['requests']:,} requests "
        f"(growth after warm-up < {MAX_GROWTH_MB:g} MB and second-half slope < {MAX_SLOPE_MB_PER_100K:g} MB "
        f"per 100k requests): {a['verdict']}"
    )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1_000_000, help="requests to serve (default 1,000,000)")
    p.add_argument(
        "--warmup", type=int, default=50_000, help="requests before the reference RSS (default 50,000)"
    )
    p.add_argument("--segment", type=int, default=20_000, help="requests per wrk run, about (default 20,000)")
    p.add_argument("--conc", type=int, default=16, help="wrk connections (default 16)")
    p.add_argument("--sample-s", type=float, default=2.0, help="seconds between RSS samples (default 2)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (config, logs, database)")
    args = p.parse_args(argv)
    if args.warmup >= args.requests:
        p.error("--warmup must be below --requests")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it completed (whatever the figures), 1 when it could not."""
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (bench/run.sh does it as root)", file=sys.stderr)
        return 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    done = run.in_workdir("cloudgate-memory-bench-", args.keep, lambda bench: measure(bench, args, stamp))
    if isinstance(done, int):
        return done
    doc, lines = done
    lines.append(run.save_results(f"{stamp}-memory.json", stamp, doc))
    print("\n".join(lines))
    return 0


def measure(bench: run.Bench, args: argparse.Namespace, stamp: str) -> tuple[dict[str, Any], list[str]]:
    """Start the upstream and the gateway, check them, drive the load; the JSON and the report."""
    bench.write_bodies()
    run.start_upstream(bench)
    ep = run.start_cloudgate(bench)
    assert ep.pid is not None
    run.check("cloudgate", ep)
    run.check_request_log(bench.workdir / "cloudgate.log")
    start_kb = memory_kb(ep.pid).get("VmRSS", 0)
    sampler = Sampler(ep.pid, args.sample_s)
    sampler.start()
    started = time.monotonic()
    try:
        segments = drive(ep, args, sampler, bench.workdir / "data" / "cloudgate.db")
    finally:
        sampler.stop()
    wall = time.monotonic() - started
    time.sleep(1.5)  # request and activity records are written in batches
    disk = store_on_disk(bench.workdir / "data", bench.workdir / "cloudgate.log")
    analysis = analyse(segments, sampler.samples, start_kb, args.warmup)
    doc = {
        "upstream": bench.upstream_kind,
        "options": vars(args),
        "wall_s": round(wall, 1),
        "analysis": analysis,
        "disk": disk,
        "segments": segments,
        "samples": sampler.samples,
    }
    return doc, report(analysis, disk, args, stamp, wall)


if __name__ == "__main__":
    sys.exit(main())
