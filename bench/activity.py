"""Does a big activity log slow requests down? And does retention make any request wait?

    .venv/bin/python bench/activity.py [--rows 1000000] [--stores sqlite,postgres] [--quick]

For each store (SQLite in a fresh data directory; PostgreSQL in a fresh database on
$CLOUDGATE_TEST_POSTGRES_URL or --postgres-url) it measures `cloudgate serve` (activity log on,
database sink) with wrk, JSON answers at 16 connections, in three states:

1. `empty`: the activity table has no rows;
2. `full`: it holds --rows rows spread over the last 31 days (written straight into the table);
3. `retention`: the same rows, with the retention job running every second, so the day of rows
   older than 30 days is deleted in batches while wrk is measuring.

It reports req/s, p50 and p99 for each, the ratio full/empty (target: within 10%), and how many
rows retention deleted during its run. Raw figures go to bench/results/activity-<ts>.json.
The upstream is the same static nginx as bench/run.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import run as harness  # bench/run.py: processes, the upstream, wrk

RESULTS = harness.RESULTS
KEYS = [f"key_{i:04d}" for i in range(200)]
MODELS = ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805"]


def fake_row(columns: list[str], now: datetime, span_days: float, rng: random.Random) -> dict[str, Any]:
    """One plausible activity row (no bodies) for the columns the table has."""
    started = now - timedelta(seconds=rng.uniform(0, span_days * 86400))
    known: dict[str, Any] = {
        "request_id": "req_bench" + uuid.uuid4().hex[:20],
        "started_at": started,
        "finished_at": started + timedelta(seconds=2),
        "key_id": rng.choice(KEYS),
        "user_id": None,
        "team_id": None,
        "session_id": f"sess-{rng.randrange(20000)}",
        "frontdoor": "anthropic",
        "operation": "messages",
        "model": rng.choice(MODELS),
        "provider": "vertex",
        "deployment": "vertex/us-east5",
        "region": "us-east5",
        "project": "p",
        "upstream_model": "claude-sonnet-4-5@20250929",
        "stream": True,
        "status": 200 if rng.random() > 0.02 else 429,
        "input_tokens": rng.randrange(10, 5000),
        "output_tokens": rng.randrange(1, 2000),
        "cache_write_5m_tokens": 0,
        "cache_write_1h_tokens": 0,
        "cache_read_tokens": rng.randrange(0, 20000),
        "cost_micro": rng.randrange(10, 50_000),
        "latency_ms": rng.uniform(200, 9000),
        "first_token_ms": rng.uniform(100, 900),
        "attempts": "[]",
        "betas": "[]",
        "request_headers": "{}",
        "bodies_truncated": False,
    }
    return {c: known.get(c) for c in columns}


def sqlite_fill(path: Path, rows: int, span_days: float) -> None:
    """Write `rows` rows into the activity table of a SQLite database in one transaction."""
    db = sqlite3.connect(path)
    columns = [r[1] for r in db.execute("PRAGMA table_info(activity)")]
    if not columns:
        raise harness.BenchError(f"{path} has no activity table")
    rng = random.Random(1)
    now = datetime.now(UTC)
    marks = ",".join("?" for _ in columns)
    sql = f"INSERT INTO activity ({','.join(columns)}) VALUES ({marks})"

    def values(row: dict[str, Any]) -> tuple[Any, ...]:
        out = []
        for c in columns:
            v = row[c]
            if isinstance(v, datetime):
                v = v.replace(tzinfo=None).isoformat(sep=" ")
            out.append(v)
        return tuple(out)

    with db:
        for start in range(0, rows, 20_000):
            batch = [values(fake_row(columns, now, span_days, rng)) for _ in range(min(20_000, rows - start))]
            db.executemany(sql, batch)
    db.close()


async def postgres_fill(url: str, rows: int, span_days: float) -> None:
    """COPY `rows` rows into the activity table of a PostgreSQL database."""
    import asyncpg  # the store's own driver

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        columns = [
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'activity' "
                "ORDER BY ordinal_position"
            )
        ]
        if not columns:
            raise harness.BenchError("the PostgreSQL database has no activity table")
        types = {
            r["column_name"]: r["data_type"]
            for r in await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'activity'"
            )
        }
        rng = random.Random(1)
        now = datetime.now(UTC)

        def values(row: dict[str, Any]) -> tuple[Any, ...]:
            out = []
            for c in columns:
                v = row[c]
                if isinstance(v, datetime) and "time zone" not in types[c].replace("without", ""):
                    v = v.replace(tzinfo=None)
                out.append(v)
            return tuple(out)

        for start in range(0, rows, 50_000):
            batch = [values(fake_row(columns, now, span_days, rng)) for _ in range(min(50_000, rows - start))]
            await conn.copy_records_to_table("activity", records=batch, columns=columns)
        await conn.execute("ANALYZE activity")
    finally:
        await conn.close()


def count_rows(store: str, where: str, older_than_days: float = 0) -> int:
    """Rows in the activity table (started more than `older_than_days` ago)."""
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    if store.startswith("sqlite"):
        db = sqlite3.connect(where)
        try:
            stamp = cutoff.replace(tzinfo=None).isoformat(sep=" ")
            return int(
                db.execute("SELECT count(*) FROM activity WHERE started_at < ?", (stamp,)).fetchone()[0]
            )
        finally:
            db.close()

    async def pg() -> int:
        import asyncpg

        conn = await asyncpg.connect(where.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM activity WHERE started_at < $1", cutoff))
        finally:
            await conn.close()

    return asyncio.run(pg())


async def fresh_postgres(url: str, name: str) -> str:
    """A new empty database next to the one `url` names; its URL."""
    import asyncpg

    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def start_gateway(
    bench: harness.Bench, gateways: harness.Procs, store_url: str, data_dir: Path, retention: bool
) -> harness.Endpoint:
    """`cloudgate serve` on `store_url` with the activity log on (and retention every second)."""
    port = harness.free_port()
    settings: dict[str, Any] = {
        "gateway": {"host": "127.0.0.1", "port": port, "keys": [harness.API_KEY], "log_requests": False},
        "data_dir": str(data_dir),
        "store": {"url": store_url},
        "vertex": {
            "project_id": "p",
            "region": "us-east5",
            "base_url": f"{bench.upstream_url}/v1",
            "access_token": harness.VERTEX_TOKEN,
        },
        "routing": {"fallback": "none"},
        "activity": {
            "sink": "database",
            # Without retention nothing is old enough to delete; with it, the oldest day of the
            # 31 goes, starting as the gateway starts (the job runs at once, then every second).
            "retention_days": 30 if retention else 3650,
            "retention_interval": 1.0,
        },
        "log_level": "WARNING",
    }
    config = bench.workdir / f"cloudgate-{port}.yaml"
    config.write_text(json.dumps(settings))
    exe = harness.VENV_BIN / "cloudgate"
    proc = gateways.start(f"cloudgate-{port}", [str(exe), "serve", "--config", str(config)])
    gateways.wait_listening(proc, port, timeout=60)
    return harness.anthropic_endpoint(
        bench,
        port,
        headers=[f"x-api-key:{harness.API_KEY}", "anthropic-version:2023-06-01"],
        pid=proc.popen.pid,
    )


def measure(ep: harness.Endpoint, seconds: float, warmup: float) -> dict[str, Any]:
    """Warm up, then one wrk run of JSON answers at 16 connections."""
    harness.check("cloudgate", ep)
    harness.wrk(ep, "json", 16, warmup)
    return harness.wrk(ep, "json", 16, seconds)


def bench_store(bench: harness.Bench, store: str, args: argparse.Namespace) -> dict[str, Any]:
    """The three measurements on one store (gateways stopped whatever happens)."""
    gateways = harness.Procs(bench.workdir)
    try:
        return _bench_store(bench, gateways, store, args)
    finally:
        gateways.stop_all()


def _bench_store(
    bench: harness.Bench, gateways: harness.Procs, store: str, args: argparse.Namespace
) -> dict[str, Any]:
    data_dir = bench.workdir / f"data-{store}"
    data_dir.mkdir()
    if store == "sqlite":
        db_path = data_dir / "cloudgate.db"
        url = f"sqlite+aiosqlite:///{db_path}"
        where = str(db_path)
    else:
        pg = args.postgres_url or os.environ.get("CLOUDGATE_TEST_POSTGRES_URL")
        if not pg:
            raise harness.BenchError("no PostgreSQL: pass --postgres-url or set CLOUDGATE_TEST_POSTGRES_URL")
        url = asyncio.run(fresh_postgres(pg, "cloudgate_activity_bench"))
        where = url
    seconds = 3.0 if args.quick else args.duration
    warmup = 1.0 if args.quick else 2.0
    out: dict[str, Any] = {"store": store, "rows": args.rows}

    print(f"[{store}] empty log", file=sys.stderr)
    ep = start_gateway(bench, gateways, url, data_dir, retention=False)  # migrates the database
    out["empty"] = measure(ep, seconds, warmup)
    gateways.stop_all()

    print(f"[{store}] writing {args.rows:,} rows", file=sys.stderr)
    started = time.monotonic()
    if store == "sqlite":
        sqlite_fill(Path(where), args.rows, span_days=31)
    else:
        asyncio.run(postgres_fill(where, args.rows, span_days=31))
    out["fill_seconds"] = round(time.monotonic() - started, 1)
    out["rows_before"] = count_rows(store, where)

    print(f"[{store}] full log", file=sys.stderr)
    ep = start_gateway(bench, gateways, url, data_dir, retention=False)
    out["full"] = measure(ep, seconds, warmup)
    gateways.stop_all()

    print(f"[{store}] full log, retention deleting a day of rows", file=sys.stderr)
    out["old_rows_before"] = count_rows(store, where, older_than_days=30)
    started_at = time.monotonic()
    ep = start_gateway(bench, gateways, url, data_dir, retention=True)
    # No warm-up: the job starts with the gateway, and the deletion is what is being measured.
    watcher = threading.Thread(target=_watch_old_rows, args=(store, where, started_at, out), daemon=True)
    watcher.start()
    out["retention"] = harness.wrk(ep, "json", 16, max(seconds * 2, 12.0))
    watcher.join(timeout=5)
    gateways.stop_all()
    out["old_rows_after"] = count_rows(store, where, older_than_days=30)
    out["rows_after"] = count_rows(store, where)
    return out


def _watch_old_rows(store: str, where: str, started_at: float, out: dict[str, Any]) -> None:
    """Note when no row older than 30 days is left (the retention job's finishing time)."""
    deadline = started_at + 120
    while time.monotonic() < deadline:
        if count_rows(store, where, older_than_days=30) == 0:
            out["retention_done_after_s"] = round(time.monotonic() - started_at, 1)
            return
        time.sleep(0.25)


def report(results: list[dict[str, Any]]) -> list[str]:
    """The table."""
    lines = [
        "| store | log | req/s | p50 | p99 | vs empty |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        base = r["empty"]["rps"]
        for state in ("empty", "full", "retention"):
            cell = r[state]
            label = {"empty": "empty", "full": f"{r['rows']:,} rows", "retention": "rows + retention"}[state]
            ratio = cell["rps"] / base if base else 0
            lines.append(
                f"| {r['store']} | {label} | {cell['rps']:,.0f} | {harness.fmt_ms(cell['p50_ms'])} | "
                f"{harness.fmt_ms(cell['p99_ms'])} | {ratio:.2f} |"
            )
        deleted = r["old_rows_before"] - r["old_rows_after"]
        lines.append(
            f"| {r['store']} | retention deleted {deleted:,} of {r['old_rows_before']:,} rows older "
            f"than 30 days (all gone {r.get('retention_done_after_s', '?')} s after the gateway started)"
            f"; {r['rows_after']:,} rows left | | | | |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run it; 0 when it completed, 1 when it could not."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--postgres-url")
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cloudgate-activity-bench-"))
    procs = harness.Procs(workdir)
    bench = harness.Bench(workdir, procs)
    results = []
    try:
        bench.write_bodies()
        harness.start_upstream(bench)
        for store in args.stores.split(","):
            results.append(bench_store(bench, store.strip(), args))
    except harness.BenchError as exc:
        print(f"benchmark aborted: {exc} (work directory {workdir})", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"activity-{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
    print("\n".join(report(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
