"""How fast are the console's reports and activity pages over a big database?

    .venv/bin/python bench/console.py [--rows 1000000] [--db sqlite|postgresql] [--days 30] [--keep]
                                      [--no-pages]

Seeds a fresh database (SQLite in a temporary directory; PostgreSQL in a schema of its own on
$CLOUDGATE_TEST_POSTGRES_URL or --postgres-url, dropped afterwards unless --keep) with --rows
spend rows and --rows activity rows spread over the last --days days, for 20 teams, 200 users,
500 keys, 6 models and 8 deployments, written in bulk (not through the request path) with the
report rollups summed alongside, as the spend writer would have kept them. Then it times, as the
median of 5 calls after one warm-up:

- every `Reports` call over the whole range (`store.reports`);
- the activity log's first page (`store.activity.list`, 100 rows) for a key, a model, a status,
  a session and errors only, and `store.activity.get(id)`;
- the spend write path with the rollups (`write_spend`, 500 new entries) and without them;
- the console's pages end to end over HTTP (unless --no-pages): the real gateway app on the
  seeded database, served on loopback, signed in through POST /ui/login with its admin key,
  then GET of the overview (24 h, 7 d, 30 d; by team, user, model), the logs (first page, by
  key, model, errors only), one request, one session, keys, budgets and deployments, as the
  median and max of 5 fetches after one warm-up, each of which must answer 200;
- for comparison, the same aggregates in plain SQL over the raw spend rows, first with the
  existing indexes, then with a covering index on (started_at, ...) added for the occasion.

It prints a table of ms per call, a table of ms per page and the query plans of the report
queries, and writes everything to bench/results/console-<db>-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import requests
import run as harness  # bench/run.py: save_results
from sqlalchemy import event, text

from cloudgate.activity import ActivityFilter
from cloudgate.activity.entry import ENTRY_FIELDS
from cloudgate.config import load_settings
from cloudgate.gateway import create_gateway_app
from cloudgate.governance.types import Period, Scope, SpendEntry
from cloudgate.store import Store, create_engine, upgrade
from cloudgate.store.engine import validate_schema_name
from cloudgate.store.reports import _DAILY_UPSERT, _HOURLY_UPSERT, _Rollup
from cloudgate.store.spend import _UPSERT as SPEND_UPSERT
from cloudgate.store.spend import _VALUES as SPEND_VALUES
from cloudgate.util.server import serving

MODELS = [
    ("claude-sonnet-4-5", 0.55),
    ("claude-haiku-4-5", 0.25),
    ("claude-opus-4-1", 0.08),
    ("claude-sonnet-4", 0.06),
    ("claude-3-5-haiku", 0.04),
    ("claude-opus-4", 0.02),
]
DEPLOYMENTS = [
    ("vertex", "us-east5"),
    ("vertex", "europe-west1"),
    ("vertex", "global"),
    ("vertex", "asia-southeast1"),
    ("bedrock", "us-east-1"),
    ("bedrock", "us-west-2"),
    ("bedrock", "eu-central-1"),
    ("anthropic", ""),
]
CHUNK = 20_000
REPEATS = 5


class Seeder:
    """Generates plausible spend entries and their activity rows, time-ordered, with the rollups."""

    def __init__(
        self, rows: int, days: int, owners: list[tuple[str, str, str | None]], now: datetime
    ) -> None:
        self.rows = rows
        self.rng = random.Random(1)
        self.start = now - timedelta(days=days)
        self.span = days * 86400.0
        self.owners = owners
        self.rollup = _Rollup()
        self.sample: dict[str, Any] = {}

    def chunks(self) -> Any:
        rng = self.rng
        models = [m for m, _ in MODELS]
        weights = [w for _, w in MODELS]
        done = 0
        # Time-ordered, as traffic arrives: ids that start with the time land at the index ends.
        offsets = sorted(rng.random() * self.span for _ in range(self.rows))
        while done < self.rows:
            spend: list[SpendEntry] = []
            for offset in offsets[done : done + CHUNK]:
                at = self.start + timedelta(seconds=offset)
                key_id, user_id, team_id = self.owners[int(rng.paretovariate(1.2)) % len(self.owners)]
                provider, region = rng.choice(DEPLOYMENTS)
                roll = rng.random()
                status, error = (200, None)
                if roll < 0.02:
                    status, error = 429, "rate_limit_error"
                elif roll < 0.03:
                    status, error = 529, "overloaded_error"
                elif roll < 0.035:
                    status, error = 500, "api_error"
                elif roll < 0.04:
                    status, error = 200, "overloaded_error"  # a stream broken after its 200
                ttft = rng.lognormvariate(math.log(600), 0.5)
                spend.append(
                    SpendEntry(
                        request_id=f"req_{int(at.timestamp() * 1e6):x}{secrets.token_hex(4)}",
                        started_at=at,
                        finished_at=at + timedelta(seconds=3),
                        key_id=key_id,
                        user_id=user_id,
                        team_id=team_id,
                        frontdoor="anthropic",
                        provider=provider,
                        model=rng.choices(models, weights)[0],
                        upstream_model="",
                        region=region,
                        deployment=f"{provider}/{region}" if region else provider,
                        status=status,
                        input_tokens=rng.randrange(10, 5000),
                        output_tokens=rng.randrange(1, 2000),
                        cache_write_5m_tokens=rng.randrange(0, 2000),
                        cache_write_1h_tokens=0,
                        cache_read_tokens=rng.randrange(0, 30000),
                        cost_micro=rng.randrange(10, 80_000),
                        latency_ms=ttft + rng.lognormvariate(math.log(4000), 0.8),
                        first_token_ms=None if error and status != 200 else ttft,
                        error_type=error,
                        session_id=f"sess-{rng.randrange(50_000)}",
                        attempts=1,
                    )
                )
            for entry in spend:
                self.rollup.add(entry, 1)
            done += len(spend)
            self.sample.setdefault("entry", spend[len(spend) // 2])
            yield spend


def activity_row(entry: SpendEntry) -> dict[str, Any]:
    return {
        "request_id": entry.request_id,
        "started_at": entry.started_at,
        "finished_at": entry.finished_at,
        "key_id": entry.key_id,
        "user_id": entry.user_id,
        "team_id": entry.team_id,
        "session_id": entry.session_id,
        "frontdoor": entry.frontdoor,
        "operation": "messages",
        "model": entry.model,
        "provider": entry.provider,
        "deployment": entry.deployment,
        "region": entry.region,
        "project": "p",
        "upstream_model": entry.upstream_model,
        "stream": True,
        "status": entry.status,
        "error_type": entry.error_type,
        "error_message": None,
        "stop_reason": None if entry.error_type else "end_turn",
        "input_tokens": entry.input_tokens,
        "output_tokens": entry.output_tokens,
        "cache_write_5m_tokens": entry.cache_write_5m_tokens,
        "cache_write_1h_tokens": entry.cache_write_1h_tokens,
        "cache_read_tokens": entry.cache_read_tokens,
        "cost_micro": entry.cost_micro,
        "latency_ms": entry.latency_ms,
        "first_token_ms": entry.first_token_ms,
        "attempts": "[]",
        "betas": "[]",
        "client_ip": "10.0.0.1",
        "user_agent": "claude-cli/2.0.1 (external, cli)",
        "request_headers": "{}",
        "request_body": None,
        "response_body": None,
        "bodies_truncated": False,
    }


SPEND_COLUMNS = SPEND_UPSERT.columns


def sqlite_seed(path: Path, seeder: Seeder) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")

    def text_time(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, list):
            return "[]"
        return value

    spend_sql = f"INSERT INTO spend ({','.join(SPEND_COLUMNS)}) VALUES ({','.join('?' * len(SPEND_COLUMNS))})"
    activity_sql = (
        f"INSERT INTO activity ({','.join(ENTRY_FIELDS)}) VALUES ({','.join('?' * len(ENTRY_FIELDS))})"
    )
    with db:
        for chunk in seeder.chunks():
            db.executemany(spend_sql, [tuple(map(text_time, SPEND_VALUES(e))) for e in chunk])
            db.executemany(
                activity_sql,
                [tuple(map(text_time, (activity_row(e)[c] for c in ENTRY_FIELDS))) for e in chunk],
            )
    db.execute("ANALYZE")
    db.close()


async def postgres_seed(store: Store, schema: str, seeder: Seeder) -> None:
    async with store.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg: Any = raw.driver_connection
        for chunk in seeder.chunks():
            await pg.copy_records_to_table(
                "spend",
                schema_name=schema,
                columns=list(SPEND_COLUMNS),
                records=[tuple("[]" if isinstance(v, list) else v for v in SPEND_VALUES(e)) for e in chunk],
            )
            await pg.copy_records_to_table(
                "activity",
                schema_name=schema,
                columns=list(ENTRY_FIELDS),
                records=[tuple(activity_row(e)[c] for c in ENTRY_FIELDS) for e in chunk],
            )
        await conn.commit()


async def write_rollups(store: Store, seeder: Seeder) -> int:
    dialect = store.engine.dialect
    hourly = [(*k, *v) for k, v in sorted(seeder.rollup.hourly.items())]
    daily = [(*k, *v) for k, v in sorted(seeder.rollup.daily.items())]
    async with store.sessions.begin() as session:
        connection = await session.connection()
        for start in range(0, len(hourly), 5000):
            await _HOURLY_UPSERT.execute(
                connection, await _HOURLY_UPSERT.rows(dialect, hourly[start : start + 5000], lambda r: r)
            )
        for start in range(0, len(daily), 5000):
            await _DAILY_UPSERT.execute(
                connection, await _DAILY_UPSERT.rows(dialect, daily[start : start + 5000], lambda r: r)
            )
    return len(hourly) + len(daily)


async def timed(call: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    await call()  # warm-up
    runs = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        result = await call()
        runs.append((time.perf_counter() - began) * 1000)
    size = len(result) if isinstance(result, list) else 1
    return {"median_ms": statistics.median(runs), "runs_ms": runs, "rows": size}


def fresh_entries(count: int, now: datetime, owner: tuple[str, str, str | None]) -> list[SpendEntry]:
    rng = random.Random()
    return [
        SpendEntry(
            request_id=f"req_w{secrets.token_hex(10)}",
            started_at=now,
            key_id=owner[0],
            user_id=owner[1],
            team_id=owner[2],
            model=rng.choice(MODELS)[0],
            provider="vertex",
            region="us-east5",
            deployment="vertex/us-east5",
            status=200,
            input_tokens=100,
            output_tokens=10,
            cost_micro=1000,
            latency_ms=rng.uniform(500, 9000),
            first_token_ms=rng.uniform(100, 900),
        )
        for _ in range(count)
    ]


async def main_async(args: argparse.Namespace) -> int:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    since = now - timedelta(days=args.days)
    tmp = Path(tempfile.mkdtemp(prefix="cloudgate-console-bench-"))
    schema: str | None = None
    url: str
    if args.db == "sqlite":
        path = tmp / "store.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = args.postgres_url or os.environ.get("CLOUDGATE_TEST_POSTGRES_URL", "")
        if not url:
            print("no PostgreSQL: pass --postgres-url or set CLOUDGATE_TEST_POSTGRES_URL", file=sys.stderr)
            return 2
        schema = validate_schema_name(f"bench_console_{secrets.token_hex(4)}")
        admin = create_engine(url)
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await admin.dispose()
    engine = create_engine(url, schema=schema)
    store = Store(engine)
    try:
        await upgrade(engine)
        teams = [await store.teams.create(f"team-{i:02d}") for i in range(20)]
        users = [await store.users.create(f"user-{i:03d}", team_id=teams[i % 20].id) for i in range(200)]
        owners: list[tuple[str, str, str | None]] = []
        for i in range(500):
            user = users[i % 200]
            key = (await store.keys.create(f"key-{i:03d}", user_id=user.id)).key
            owners.append((key.id, user.id, user.team_id))
        for team in teams[:10]:
            await store.budgets.set(Scope.TEAM, team.id, Period.MONTHLY, 100_000_000)
        for key_id, _, _ in owners[:50]:
            await store.budgets.set(Scope.KEY, key_id, Period.DAILY, 1_000_000)
        seeder = Seeder(args.rows, args.days, owners, now - timedelta(minutes=1))
        began = time.perf_counter()
        print(
            f"seeding {args.rows:,} spend and {args.rows:,} activity rows on {args.db} ...", file=sys.stderr
        )
        if args.db == "sqlite":
            await engine.dispose()
            sqlite_seed(tmp / "store.db", seeder)
        else:
            assert schema is not None
            await postgres_seed(store, schema, seeder)
        cells = await write_rollups(store, seeder)
        if args.db == "postgresql":
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("VACUUM ANALYZE")
        seeded = time.perf_counter() - began
        print(f"seeded in {seeded:.0f} s ({cells:,} rollup rows)", file=sys.stderr)

        sample: SpendEntry = seeder.sample["entry"]
        reports = store.reports
        results: dict[str, dict[str, Any]] = {}
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "reports.spend_by_day(team)": lambda: reports.spend_by_day(since, now, "team"),
            "reports.spend_by_day(user)": lambda: reports.spend_by_day(since, now, "user"),
            "reports.spend_by_day(key)": lambda: reports.spend_by_day(since, now, "key"),
            "reports.spend_by_day(model)": lambda: reports.spend_by_day(since, now, "model"),
            "reports.traffic(hour)": lambda: reports.traffic(since, now, "hour"),
            "reports.traffic(day)": lambda: reports.traffic(since, now, "day"),
            "reports.overview": lambda: reports.overview(since, now),
            "reports.overview(24h)": lambda: reports.overview(now - timedelta(days=1), now),
            "reports.budget_usage": reports.budget_usage,
            "reports.deployment_errors": lambda: reports.deployment_errors(since, now),
            "activity.list(key)": lambda: store.activity.list(ActivityFilter(key_id=sample.key_id)),
            "activity.list(model)": lambda: store.activity.list(ActivityFilter(model="claude-opus-4")),
            "activity.list(status=429)": lambda: store.activity.list(ActivityFilter(status=429)),
            "activity.list(session)": lambda: store.activity.list(
                ActivityFilter(session_id=sample.session_id)
            ),
            "activity.list(errors_only)": lambda: store.activity.list(ActivityFilter(errors_only=True)),
            "activity.list(key, errors_only)": lambda: store.activity.list(
                ActivityFilter(key_id=sample.key_id, errors_only=True)
            ),
            "activity.get(id)": lambda: store.activity.get(sample.request_id),
        }
        plans: dict[str, list[str]] = {}
        for name, call in calls.items():
            statements: list[tuple[str, Any]] = []

            def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
                statements.append((statement, parameters))  # noqa: B023 - read right after the call

            event.listen(engine.sync_engine, "before_cursor_execute", seen)
            try:
                await call()
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", seen)
            for number, statement in enumerate(
                s for s in statements if " spend_" in s[0] or "activity" in s[0]
            ):
                plans[f"{name} #{number + 1}"] = await explain(store, args.db, statement)
            results[name] = await timed(call)
            print(f"  {name:<34} {results[name]['median_ms']:8.2f} ms", file=sys.stderr)

        # The write path: a batch of the spend writer, with the rollups and without them.
        owner = owners[0]

        async def with_rollups() -> None:
            await store.spend.write_spend(fresh_entries(500, datetime.now(UTC), owner))

        async def spend_only() -> None:
            entries = fresh_entries(500, datetime.now(UTC), owner)
            await SPEND_UPSERT.write(store.sessions, entries, SPEND_VALUES, store.writes)

        results["write_spend(500) with rollups"] = await timed(with_rollups)
        results["spend upsert(500) without rollups"] = await timed(spend_only)

        pages: dict[str, dict[str, Any]] = {}
        if args.pages:
            # Before the raw-SQL comparison, which adds (and drops) an index of its own.
            pages = await time_pages(store, url, schema, tmp, sample)
        if not args.no_raw:
            results.update(await raw_queries(store, args.db, since, now, args.rows))
        print_table(args, results, plans)
        if pages:
            print_pages(args, pages)
        doc = {
            "db": args.db,
            "rows": args.rows,
            "days": args.days,
            "seed_seconds": seeded,
            "rollup_rows": cells,
            "results": results,
            "pages": pages,
            "plans": plans,
        }
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        print(harness.save_results(f"console-{args.db}-{stamp}.json", stamp, doc))
        return 0
    finally:
        await store.close()
        if schema is not None and not args.keep:
            admin = create_engine(url)
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await admin.dispose()
        if args.keep:
            print(f"kept: {schema or tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


ADMIN_KEY = "cg-admin-bench-" + secrets.token_hex(16)


@contextlib.contextmanager
def gateway(url: str, schema: str | None, tmp: Path) -> Iterator[str]:
    """The real gateway app on the seeded database, served on loopback: its base URL."""
    settings = load_settings(
        env={},
        overrides={
            "admin_key": ADMIN_KEY,
            "data_dir": str(tmp / "gateway"),
            "store": {"url": url, "migrate_on_start": schema is None},
            # No activity writer or retention job: the seeded rows stay as they are.
            "activity": {"enabled": False},
            "gateway": {"log_requests": False},
            "provider": "anthropic",  # never called: only the console is fetched
            "anthropic": {"base_url": "http://127.0.0.1:9", "api_key": "sk-ant-bench"},
        },
    )
    with contextlib.ExitStack() as stack:
        if schema is not None:
            # The gateway has no setting for a PostgreSQL schema: its store opens on the bench's.
            opened = Store.open
            stack.enter_context(
                mock.patch.object(
                    Store, "open", staticmethod(lambda url, schema_=None: opened(url, schema=schema))
                )
            )
        app = create_gateway_app(settings)
        server = stack.enter_context(serving(app))
        yield server.url


def fetch_pages(base: str, paths: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Sign in with the admin key, then time GET of each page: one warm-up, then REPEATS."""
    http = requests.Session()
    resp = http.post(base + "/ui/login", data={"key": ADMIN_KEY}, allow_redirects=False, timeout=30)
    if resp.status_code != 303:
        raise RuntimeError(f"sign-in failed: {resp.status_code} {resp.text[:200]}")
    out: dict[str, dict[str, Any]] = {}
    for name, path in paths.items():
        runs: list[float] = []
        size = 0
        for attempt in range(1 + REPEATS):
            began = time.perf_counter()
            resp = http.get(base + path, allow_redirects=False, timeout=300)
            elapsed = (time.perf_counter() - began) * 1000
            if resp.status_code != 200:
                raise RuntimeError(f"GET {path}: {resp.status_code} {resp.text[:200]}")
            size = len(resp.content)
            if attempt:
                runs.append(elapsed)
        out[name] = {
            "path": path,
            "median_ms": statistics.median(runs),
            "max_ms": max(runs),
            "runs_ms": runs,
            "bytes": size,
        }
        print(f"  {name:<34} {out[name]['median_ms']:8.1f} ms", file=sys.stderr)
    return out


async def time_pages(
    store: Store, url: str, schema: str | None, tmp: Path, sample: SpendEntry
) -> dict[str, dict[str, Any]]:
    """The console's pages over HTTP, end to end, on the seeded database."""
    async with store.engine.connect() as conn:
        busiest = (
            await conn.execute(
                text(
                    "SELECT session_id FROM activity WHERE session_id IS NOT NULL "
                    "GROUP BY session_id ORDER BY count(*) DESC LIMIT 1"
                )
            )
        ).scalar_one()
    key = quote(sample.key_id, safe="")
    paths = {
        "overview 24h": "/ui/overview?range=24h",
        "overview 7d": "/ui/overview?range=7d",
        "overview 30d": "/ui/overview?range=30d",
        "overview 30d by user": "/ui/overview?range=30d&by=user",
        "overview 30d by model": "/ui/overview?range=30d&by=model",
        "logs": "/ui/logs",
        "logs model": "/ui/logs?model=claude-opus-4",
        "logs errors": "/ui/logs?errors=true",
        "logs key": f"/ui/logs?key_id={key}",
        "logs key + errors": f"/ui/logs?key_id={key}&errors=true",
        "logs/{request id}": f"/ui/logs/{quote(sample.request_id, safe='')}",
        "sessions/{session id}": f"/ui/sessions/{quote(busiest, safe='')}",
        "keys": "/ui/keys",
        "budgets": "/ui/budgets",
        "deployments": "/ui/deployments",
    }
    print("pages over HTTP:", file=sys.stderr)
    with gateway(url, schema, tmp) as base:
        return await asyncio.to_thread(fetch_pages, base, paths)


def print_pages(args: argparse.Namespace, pages: dict[str, dict[str, Any]]) -> None:
    print(f"\nconsole pages over HTTP on {args.db} (median and max of {REPEATS} after a warm-up)")
    print(f"{'page':<24} {'path':<44} {'ms median':>10} {'ms max':>8} {'bytes':>8}")
    for name, figures in pages.items():
        print(
            f"{name:<24} {figures['path'][:44]:<44} {figures['median_ms']:10.1f} "
            f"{figures['max_ms']:8.1f} {figures['bytes']:>8}"
        )


async def explain(store: Store, db: str, statement: tuple[str, Any]) -> list[str]:
    sql, parameters = statement
    async with store.engine.connect() as conn:
        if db == "sqlite":
            rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters)).all()
            return [str(row[-1]) for row in rows]
        rows = (await conn.exec_driver_sql("EXPLAIN " + sql, parameters)).all()
        return [str(row[0]) for row in rows]


async def raw_queries(
    store: Store, db: str, since: datetime, until: datetime, rows: int
) -> dict[str, dict[str, Any]]:
    """The reports' aggregates in plain SQL over the raw spend rows, for comparison."""
    if db == "sqlite":
        hour = "strftime('%Y-%m-%d %H', started_at)"
        day = "strftime('%Y-%m-%d', started_at)"
        bounds: tuple[Any, ...] = tuple(
            t.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds") for t in (since, until)
        )
        where = "started_at >= ? AND started_at < ?"
    else:
        hour = "date_trunc('hour', started_at AT TIME ZONE 'UTC')"
        day = "date_trunc('day', started_at AT TIME ZONE 'UTC')"
        bounds = (since, until)
        where = "started_at >= $1 AND started_at < $2"
    sums = (
        "count(*), sum(CASE WHEN status >= 400 OR error_type IS NOT NULL THEN 1 ELSE 0 END), "
        "sum(input_tokens), "
        "sum(output_tokens), sum(cache_read_tokens), sum(cache_write_5m_tokens + cache_write_1h_tokens), "
        "sum(cost_micro)"
    )
    queries = {
        "overview": f"SELECT {sums} FROM spend WHERE {where}",
        "traffic(hour)": f"SELECT {hour}, {sums} FROM spend WHERE {where} GROUP BY 1",
        "spend_by_day(team)": (
            f"SELECT {day}, team_id, sum(cost_micro), count(*) FROM spend WHERE {where} GROUP BY 1, 2"
        ),
        "ttft p50 (sort)": (
            f"SELECT first_token_ms FROM spend WHERE {where} AND first_token_ms IS NOT NULL "
            f"ORDER BY first_token_ms LIMIT 1 OFFSET {rows * 48 // 100}"
        ),
    }
    out: dict[str, dict[str, Any]] = {}

    async def run_all(label: str) -> None:
        for name, sql in queries.items():

            async def call(sql: str = sql) -> list[Any]:
                async with store.engine.connect() as conn:
                    return list((await conn.exec_driver_sql(sql, bounds)).all())

            out[f"raw SQL {label}: {name}"] = await timed(call)
            print(
                f"  raw SQL {label}: {name:<22} {out[f'raw SQL {label}: {name}']['median_ms']:8.1f} ms",
                file=sys.stderr,
            )

    await run_all("(started_at index)")
    covering = (
        "CREATE INDEX ix_bench_spend_covering ON spend (started_at, status, error_type, input_tokens, "
        "output_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cost_micro, "
        "team_id, "
        "first_token_ms)"
    )
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(covering)
    async with store.engine.connect() as conn:
        if db == "postgresql":
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE spend")
        else:
            await conn.exec_driver_sql("ANALYZE")
            await conn.commit()
    await run_all("(covering index)")
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql("DROP INDEX ix_bench_spend_covering")
    return out


def print_table(
    args: argparse.Namespace, results: dict[str, dict[str, Any]], plans: dict[str, list[str]]
) -> None:
    print(
        f"\nconsole reports on {args.db}, {args.rows:,} spend + {args.rows:,} activity rows "
        f"over {args.days} days"
    )
    print(f"{'call':<52} {'median ms':>10} {'rows':>6}")
    for name, figures in results.items():
        print(f"{name:<52} {figures['median_ms']:10.2f} {figures['rows']:>6}")
    print("\nquery plans (the last statement of each call):")
    for name, plan in plans.items():
        print(f"  {name}: " + " | ".join(line.strip() for line in plan[:4]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the database (path or schema) afterwards")
    parser.add_argument("--no-raw", action="store_true", help="skip the plain-SQL comparison queries")
    parser.add_argument(
        "--pages",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the console's pages over HTTP on the real gateway (default: on)",
    )
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
