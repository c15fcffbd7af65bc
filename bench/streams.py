"""Many slow streams at once: does the gateway hold them all, without stalls, in little memory?

    .venv/bin/python bench/streams.py [--streams 2000] [--interval-ms 50] [--seconds 30] [--keep]

performance.md's target: "2,000 concurrent slow streams (one event every 50 ms for 30 s) held
with no stall and no error, resident memory under 250 MB". The upstream is bench/slow_upstream.py
(nginx cannot pace events); the gateway is `cloudgate serve` with bench/run.py's configuration
(every default feature on) pointed at it; the load is an asyncio aiohttp client in this process
that opens --streams streams, spread over --ramp seconds, and times every chunk it receives.

Two runs, one after the other:
- `direct`: the client straight to the slow upstream (Vertex request). The floor: the gaps the
  client and the upstream produce on their own, with no gateway in between;
- `cloudgate`: the client through the gateway (Anthropic `POST /v1/messages`, stream: true).

Per run: streams ok / failed (ok = HTTP 200, every event arrived, the last is message_stop),
time to the first event, inter-event gaps (p50, p99, p99.9, max, how many over 200 ms and over
the stall limit), and every second the gateway's VmRSS / VmHWM and the CPU of the gateway, the
upstream and the client. A stall is a gap between two chunks of one stream, or a wait for the
first event, longer than --stall-ms (default 1000 ms). Verdict (MET/MISS): every stream ok, no
stall, peak resident memory (VmHWM) under 250 MB. Raw figures: bench/results/<ts>-streams.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import resource
import signal
import sys
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import run  # bench/run.py: processes, the gateway's configuration, request bodies

from cloudgate.util.tasks import spawn

MAX_RSS_MB = 250.0
OVER_MS = 200.0  # gaps above this are counted (short of a stall, but worth seeing)
HEAD_EVENTS = 2  # message_start, content_block_start
TAIL_EVENTS = 3  # content_block_stop, message_delta, message_stop


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE to its hard limit; servers started afterwards inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Stream:
    """What the client saw of one stream."""

    status: int = 0
    first_event_ms: float = -1.0  # from sending the request to the first body chunk
    headers_ms: float = -1.0
    events: int = 0
    stopped: bool = False  # the last event was message_stop
    error: str = ""
    gaps: array[float] = field(default_factory=lambda: array("f"))  # ms between chunks

    def ok(self, expected: int) -> bool:
        return self.status == 200 and not self.error and self.stopped and self.events == expected


async def one_stream(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    delay: float,
    limit: float,
    late: list[float],
    t0: float,
) -> Stream:
    """Open one stream after `delay` seconds and time every chunk until it ends; the time (since
    `t0`) of every gap over OVER_MS goes to `late`, to see when in the run they happen."""
    await asyncio.sleep(delay)
    s = Stream()
    clock = time.perf_counter
    sent = clock()
    try:
        async with asyncio.timeout(limit):
            async with session.post(url, data=body, headers=headers) as resp:
                s.status = resp.status
                s.headers_ms = (clock() - sent) * 1000
                if resp.status != 200:
                    text = await resp.read()
                    s.error = f"HTTP {resp.status}: {text[:120]!r}"
                    return s
                last = 0.0
                tail = b""
                append = s.gaps.append
                async for data in resp.content.iter_any():
                    now = clock()
                    if last:
                        gap = (now - last) * 1000
                        append(gap)
                        if gap > OVER_MS:
                            late.append(now - t0)
                    else:
                        s.first_event_ms = (now - sent) * 1000
                    last = now
                    # An event ends at a blank line; one split across two chunks is counted once.
                    s.events += data.count(b"\n\n") + (tail[-1:] == b"\n" and data[:1] == b"\n")
                    tail = (tail + data)[-64:]
                s.stopped = tail.rstrip().endswith(b'{"type":"message_stop"}')
    except TimeoutError:
        s.error = f"no end within {limit:g}s"
    except (aiohttp.ClientError, OSError) as exc:
        s.error = f"{type(exc).__name__}: {exc}"[:200]
    return s


async def sample(pids: dict[str, int], out: list[dict[str, Any]], stop: asyncio.Event) -> None:
    """Every second: each server's VmRSS/VmHWM and the CPU time of every process so far."""
    t0 = time.monotonic()
    me = os.getpid()
    while True:
        row: dict[str, Any] = {"t": round(time.monotonic() - t0, 2), "cpu_s": {"client": run.cpu_seconds(me)}}
        for name, pid in pids.items():
            row[name] = run.rss_kb(pid)
            row["cpu_s"][name] = run.cpu_seconds(pid)
        out.append(row)
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def load(
    url: str, body: bytes, headers: dict[str, str], n: int, ramp: float, limit: float, pids: dict[str, int]
) -> tuple[list[Stream], list[dict[str, Any]], float, list[float]]:
    """`n` streams started evenly over `ramp` seconds; the streams, the samples, the wall time."""
    samples: list[dict[str, Any]] = []
    stop = asyncio.Event()
    sampler = spawn(sample(pids, samples, stop), name="sampler")
    connector = aiohttp.TCPConnector(limit=n + 100, limit_per_host=0)
    hdrs = {"content-type": "application/json", **headers}
    late: list[float] = []
    started = time.monotonic()
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        streams = await asyncio.gather(
            *(one_stream(session, url, body, hdrs, ramp * i / n, limit, late, t0) for i in range(n))
        )
    wall = time.monotonic() - started
    stop.set()
    await sampler
    return list(streams), samples, wall, late


async def probe(url: str, body: bytes, headers: dict[str, str]) -> None:
    """One stream must start: 200, text/event-stream, message_start first. Then it is dropped."""
    async with aiohttp.ClientSession() as session:
        try:
            async with asyncio.timeout(10):
                async with session.post(
                    url, data=body, headers={"content-type": "application/json", **headers}
                ) as r:
                    first = await r.content.readuntil(b"\n\n") if r.status == 200 else await r.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise run.BenchError(f"probe stream to {url} failed: {exc!r}") from None
    ctype = r.headers.get("content-type", "")
    if (
        r.status != 200
        or not ctype.startswith("text/event-stream")
        or not first.startswith(b"event: message_start")
    ):
        raise run.BenchError(f"probe stream to {url}: HTTP {r.status}, {ctype!r}, starts {first[:200]!r}")


def percentile(sorted_values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of an ascending list; 0 when empty."""
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def summarize(
    name: str,
    streams: list[Stream],
    samples: list[dict[str, Any]],
    wall: float,
    late: list[float],
    expected: int,
    stall_ms: float,
) -> dict[str, Any]:
    """The figures of one run."""
    gaps = sorted(g for s in streams for g in s.gaps)
    firsts = sorted(s.first_event_ms for s in streams if s.first_event_ms >= 0)
    errors: dict[str, int] = {}
    for s in streams:
        if not s.ok(expected):
            why = s.error or (
                f"HTTP {s.status}"
                if s.status != 200
                else f"{s.events} of {expected} events" + ("" if s.stopped else ", no message_stop")
            )
            errors[why] = errors.get(why, 0) + 1
    stalled_first = sum(1 for f in firsts if f > stall_ms)
    out: dict[str, Any] = {
        "name": name,
        "streams": len(streams),
        "ok": sum(1 for s in streams if s.ok(expected)),
        "failed": sum(1 for s in streams if not s.ok(expected)),
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:20]),
        "wall_s": round(wall, 2),
        "events": sum(s.events for s in streams),
        "gaps": len(gaps),
        "gap_ms": {
            "p50": percentile(gaps, 50),
            "p99": percentile(gaps, 99),
            "p999": percentile(gaps, 99.9),
            "max": gaps[-1] if gaps else 0.0,
        },
        "gaps_over_200ms": sum(1 for g in gaps if g > OVER_MS),
        "gaps_over_stall": sum(1 for g in gaps if g > stall_ms),
        "streams_with_stall": sum(
            1 for s in streams if any(g > stall_ms for g in s.gaps) or s.first_event_ms > stall_ms
        ),
        "first_event_ms": {
            "p50": percentile(firsts, 50),
            "p99": percentile(firsts, 99),
            "max": firsts[-1] if firsts else 0.0,
        },
        "first_event_over_stall": stalled_first,
        "samples": samples,
    }
    buckets = (60, 100, 200, 500, 1000, 5000)
    hist: dict[str, int] = {}
    lo = 0.0
    for hi in buckets:
        hist[f"{lo:g}-{hi:g}"] = sum(1 for g in gaps if lo < g <= hi) if gaps else 0
        lo = hi
    hist[f">{lo:g}"] = sum(1 for g in gaps if g > lo)
    out["gap_histogram_ms"] = hist
    when: dict[str, int] = {}
    for t in sorted(late):
        lo5 = int(t // 5) * 5
        when[f"{lo5}-{lo5 + 5}s"] = when.get(f"{lo5}-{lo5 + 5}s", 0) + 1
    out["gaps_over_200ms_by_time"] = when
    out["stalls"] = out["gaps_over_stall"] + stalled_first
    if len(samples) >= 2:
        span = samples[-1]["t"] - samples[0]["t"] or 1.0
        cpu: dict[str, Any] = {}
        for proc in samples[0]["cpu_s"]:
            used = samples[-1]["cpu_s"][proc] - samples[0]["cpu_s"][proc]
            steps = [
                (b["cpu_s"][proc] - a["cpu_s"][proc]) / ((b["t"] - a["t"]) or 1.0)
                for a, b in itertools.pairwise(samples)
            ]
            cpu[proc] = {
                "seconds": round(used, 2),
                "mean_pct": round(100 * used / span, 1),
                "peak_pct": round(100 * max(steps), 1),
            }
        out["cpu"] = cpu
    for proc in ("gateway", "upstream"):
        rss = [s[proc].get("VmRSS", 0) for s in samples if s.get(proc)]
        if rss:
            hwm = max(s[proc].get("VmHWM", 0) for s in samples if s.get(proc))
            out[f"{proc}_rss_mb"] = {
                "before": round(rss[0] / 1024, 1),
                "peak_sampled": round(max(rss) / 1024, 1),
                "vmhwm": round(hwm / 1024, 1),
                "after": round(rss[-1] / 1024, 1),
            }
    out["per_stream"] = [
        {
            "status": s.status,
            "headers_ms": round(s.headers_ms, 2),
            "first_event_ms": round(s.first_event_ms, 2),
            "events": s.events,
            "stopped": s.stopped,
            "max_gap_ms": round(max(s.gaps), 2) if s.gaps else None,
            "error": s.error,
        }
        for s in streams
    ]
    return out


def report(runs: dict[str, dict[str, Any]], args: argparse.Namespace, stamp: str) -> list[str]:
    """The table and the verdict."""
    lines = [
        "",
        f"cloudgate slow streams {stamp}: commit {run.git_head()}, {os.cpu_count()} CPUs (shared: noisy), "
        f"{args.streams:,} streams, one delta every {args.interval_ms:g} ms for {args.seconds:g} s, "
        f"ramp {args.ramp:g} s; stall = a gap (or a wait for the first event) over {args.stall_ms:g} ms",
        "",
        "| path | ok | failed | first event p50 / max | gap p50 | gap p99 | gap p99.9 | gap max "
        f"| gaps > {OVER_MS:g} ms | stalls | wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        g, f = r["gap_ms"], r["first_event_ms"]
        lines.append(
            f"| {name} | {r['ok']:,} | {r['failed']:,} | {f['p50']:.1f} / {f['max']:.1f} ms "
            f"| {g['p50']:.1f} ms | {g['p99']:.1f} ms | {g['p999']:.1f} ms | {g['max']:.1f} ms "
            f"| {r['gaps_over_200ms']:,} | {r['stalls']:,} | {r['wall_s']:.1f} s |"
        )
    lines.append("")
    for name, r in runs.items():
        cpu = r.get("cpu", {})
        parts = [f"{p} {c['mean_pct']:.0f}% (peak {c['peak_pct']:.0f}%)" for p, c in cpu.items()]
        lines.append(f"{name}: CPU of one core, mean over the run: " + ", ".join(parts))
        if r["gaps_over_200ms_by_time"]:
            spread = ", ".join(f"{k} {v:,}" for k, v in r["gaps_over_200ms_by_time"].items())
            lines.append(f"{name}: gaps over {OVER_MS:g} ms by time since the first stream opened: {spread}")
        for why, count in r["errors"].items():
            lines.append(f"{name}: {count:,} streams failed: {why}")
    gw = runs.get("cloudgate")
    if gw is None:
        return lines
    mem = gw.get("gateway_rss_mb", {})
    lines.append(
        f"cloudgate resident memory: {mem.get('before', 0):.1f} MB before, peak sampled "
        f"{mem.get('peak_sampled', 0):.1f} MB, VmHWM {mem.get('vmhwm', 0):.1f} MB, "
        f"{mem.get('after', 0):.1f} MB after the streams ended"
    )
    if "request_log_200" in gw:
        lines.append(
            f"cloudgate request log: {gw['request_log_200']:,} records with status 200, "
            f"{gw['request_log_usage_ok']:,} of them with every delta counted in usage; "
            f"{gw['log_warnings_errors']:,} warning/error lines in its output"
        )
    met = {
        "no error": gw["failed"] == 0,
        "no stall": gw["stalls"] == 0,
        f"VmHWM < {MAX_RSS_MB:g} MB": 0 < mem.get("vmhwm", 0) < MAX_RSS_MB,
    }
    marks = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in met.items())
    verdict = "MET" if all(met.values()) else "MISS"
    lines.append(
        f"\ntarget (performance.md): {args.streams:,} slow streams, no stall, no error, "
        f"RSS < {MAX_RSS_MB:g} MB: {verdict} ({marks})"
    )
    gw["verdict"] = verdict
    return lines


def gateway_log(log: Path, deltas: int) -> dict[str, int]:
    """From the gateway's output: request records with status 200, those whose usage counted
    every delta (the usage tap saw the whole stream), and warning or error lines."""
    counted = b'"output_tokens":%d,' % deltas
    out = {"request_log_200": 0, "request_log_usage_ok": 0, "log_warnings_errors": 0}
    with log.open("rb") as f:
        for line in f:
            if line.startswith(b'{"request_id"'):
                if b'"status":200' in line:
                    out["request_log_200"] += 1
                    out["request_log_usage_ok"] += counted in line
            elif b" WARNING " in line or b" ERROR " in line or b" CRITICAL " in line:
                out["log_warnings_errors"] += 1
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=2000, help="concurrent streams (default 2000)")
    p.add_argument("--interval-ms", type=float, default=50.0, help="gap between deltas upstream (default 50)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each stream (default 30)")
    p.add_argument(
        "--ramp", type=float, default=2.0, help="seconds over which streams are opened (default 2)"
    )
    p.add_argument("--stall-ms", type=float, default=1000.0, help="a longer gap is a stall (default 1000)")
    p.add_argument("--only", default="direct,cloudgate", help="runs, in order (default direct,cloudgate)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (config, server logs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it completed (whatever the figures), 1 when it could not."""
    args = parse_args(argv)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    if not wanted or set(wanted) - {"direct", "cloudgate"}:
        print("--only takes direct and/or cloudgate", file=sys.stderr)
        return 2
    fds = raise_fd_limit()
    if fds < 2 * args.streams + 200:
        print(f"!! open-file limit {fds} is below the {2 * args.streams + 200} needed", file=sys.stderr)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs = run.in_workdir("cloudgate-streams-bench-", args.keep, lambda bench: measure(bench, args, wanted))
    if isinstance(runs, int):
        return runs
    lines = report(runs, args, stamp)
    lines.append(
        run.save_results(
            f"{stamp}-streams.json", stamp, {"options": vars(args), "open_file_limit": fds, "runs": runs}
        )
    )
    print("\n".join(lines))
    return 0


def measure(bench: run.Bench, args: argparse.Namespace, wanted: list[str]) -> dict[str, dict[str, Any]]:
    """Start the slow upstream (and the gateway), run the loads; the summaries by run name."""
    bench.write_bodies()
    port = run.free_port()
    argv = [sys.executable, str(run.BENCH / "slow_upstream.py"), "--port", str(port)]
    argv += ["--interval-ms", f"{args.interval_ms:g}", "--seconds", f"{args.seconds:g}"]
    upstream = bench.procs.start("slow-upstream", argv)
    bench.procs.wait_listening(upstream, port)
    bench.upstream_url = f"http://127.0.0.1:{port}"
    bench.upstream_kind = "bench/slow_upstream.py"
    deltas = max(1, round(args.seconds * 1000 / args.interval_ms))
    expected = HEAD_EVENTS + deltas + TAIL_EVENTS
    limit = 2 * args.seconds + 60  # long enough to see a stream that waited for a free connection
    runner = _uvloop_run()
    runs: dict[str, dict[str, Any]] = {}
    for name in wanted:
        if name == "direct":
            ep = run.start_direct(bench)
            pids = {"upstream": upstream.popen.pid}
        else:
            ep = run.start_cloudgate(bench)
            assert ep.pid is not None
            pids = {"gateway": ep.pid, "upstream": upstream.popen.pid}
        url, body = ep.urls["stream"], ep.bodies["stream"].read_bytes()
        headers = dict(h.split(":", 1) for h in ep.headers)
        runner(interruptible(probe(url, body, headers)))
        time.sleep(1.0)  # the probe's stream is dropped; let both sides settle
        print(f"{name}: {args.streams:,} streams of {args.seconds:g} s ...", file=sys.stderr)
        streams, samples, wall, late = runner(
            interruptible(load(url, body, headers, args.streams, args.ramp, limit, pids))
        )
        runs[name] = summarize(name, streams, samples, wall, late, expected, args.stall_ms)
        if name == "cloudgate":
            time.sleep(1.5)  # request records are written in batches
            runs[name].update(gateway_log(bench.workdir / "cloudgate.log", deltas))
        r = runs[name]
        print(
            f"  {name}: {r['ok']:,} ok, {r['failed']:,} failed, gap p99 {r['gap_ms']['p99']:.1f} ms, "
            f"max {r['gap_ms']['max']:.1f} ms, stalls {r['stalls']:,}",
            file=sys.stderr,
        )
    return runs


async def interruptible(coro: Any) -> Any:
    """Await `coro`; SIGINT or SIGTERM cancel it and raise KeyboardInterrupt, so the servers are
    stopped. (A Python-level handler raising inside the loop would be swallowed by a transport
    callback instead.)"""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await coro
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)


def _uvloop_run() -> Any:
    """uvloop.run when uvloop is installed (the client is then as lean as the servers), else asyncio.run."""
    try:
        import uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


if __name__ == "__main__":
    sys.exit(main())
