"""The console's reports on SQLite and PostgreSQL: rollups written with the spend rows, read back exactly."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, text

from cloudgate.governance.types import Period, Scope, SpendEntry
from cloudgate.store import (
    BudgetUse,
    DeploymentStats,
    Overview,
    Reports,
    SpendPoint,
    Store,
    TrafficPoint,
    upgrade,
)
from cloudgate.store.models import Spend, spend_hourly
from cloudgate.store.reports import bucket_value, histogram_bucket, percentile
from tests.store.conftest import Database

T0 = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday, midnight UTC
H = timedelta(hours=1)
D = timedelta(days=1)
M = timedelta(minutes=1)


def entry(request_id: str, at: datetime = T0, **fields: Any) -> SpendEntry:
    values: dict[str, Any] = {
        "started_at": at,
        "key_id": "key_a",
        "user_id": "user_a",
        "team_id": "team_a",
        "model": "claude-sonnet-4-5",
        "provider": "vertex",
        "region": "us-east5",
        "deployment": "vertex/us-east5",
        "input_tokens": 100,
        "output_tokens": 10,
        "cost_micro": 1_000,
        "status": 200,
        "latency_ms": 800.0,
        "first_token_ms": 200.0,
    }
    values.update(fields)
    return SpendEntry(request_id=request_id, **values)


def test_histogram_buckets_and_their_error_bound() -> None:
    assert histogram_bucket(0.0) == histogram_bucket(0.99) == histogram_bucket(float("nan")) == 0
    assert histogram_bucket(1.0) == 1 and histogram_bucket(2.0) == 4  # three buckets per doubling
    assert histogram_bucket(1e12) == 63
    rng = random.Random(7)
    for _ in range(2000):
        ms = 10 ** rng.uniform(0, 6)
        assert abs(bucket_value(histogram_bucket(ms)) / ms - 1) <= 2 ** (1 / 6) - 1 + 1e-9
    counts = [0] * 64
    assert percentile(counts, 0.5) is None
    counts[10], counts[20] = 9, 1
    assert percentile(counts, 0.9) == bucket_value(10) and percentile(counts, 0.91) == bucket_value(20)


async def test_spend_by_day_sums_and_labels(store: Store) -> None:
    platform = await store.teams.create("platform")
    gone = await store.teams.create("gone")
    ada = await store.users.create("ada", team_id=platform.id)
    key = (await store.keys.create("ci", user_id=ada.id)).key
    await store.spend.write_spend(
        [
            entry("r1", T0 + 1 * H, team_id=platform.id, user_id=ada.id, key_id=key.id, cost_micro=100),
            entry("r2", T0 + 2 * H, team_id=platform.id, user_id=ada.id, key_id=key.id, cost_micro=250),
            entry("r3", T0 + 3 * H, team_id=gone.id, user_id=None, key_id="key_old", cost_micro=40),
            entry(
                "r4",
                T0 + D + H,
                team_id=None,
                user_id=None,
                key_id=None,
                cost_micro=7,
                model="claude-haiku-4-5",
            ),
            entry("r5", T0 + D + 2 * H, team_id=platform.id, cost_micro=1, model="claude-haiku-4-5"),
            entry("r_late", T0 + 3 * D, team_id=platform.id, cost_micro=10_000),  # out of range
            entry("r_early", T0 - H, team_id=platform.id, cost_micro=10_000),  # out of range
        ]
    )
    await store.teams.delete(gone.id)
    reports = store.reports
    assert isinstance(reports, Reports)
    day0, day1 = T0.date(), (T0 + D).date()
    assert await reports.spend_by_day(T0, T0 + 2 * D, "team") == [
        SpendPoint(day0, platform.id, "platform", 350, 2),
        SpendPoint(day0, gone.id, gone.id, 40, 1),  # deleted: its id
        SpendPoint(day1, "", "(none)", 7, 1),
        SpendPoint(day1, platform.id, "platform", 1, 1),
    ]
    assert await reports.spend_by_day(T0, T0 + 2 * D, "model") == [
        SpendPoint(day0, "claude-sonnet-4-5", "claude-sonnet-4-5", 390, 3),
        SpendPoint(day1, "claude-haiku-4-5", "claude-haiku-4-5", 8, 2),
    ]
    by_key = await reports.spend_by_day(T0, T0 + D, "key")
    assert by_key == [SpendPoint(day0, key.id, "ci", 350, 2), SpendPoint(day0, "key_old", "key_old", 40, 1)]
    by_user = await reports.spend_by_day(T0 + 5 * H, T0 + D + 5 * H, "user")  # whole days touched
    assert by_user == [
        SpendPoint(day0, ada.id, "ada", 350, 2),
        SpendPoint(day0, "", "(none)", 40, 1),
        SpendPoint(day1, "", "(none)", 7, 1),
        SpendPoint(day1, "user_a", "user_a", 1, 1),
    ]
    assert await reports.spend_by_day(T0 + 10 * D, T0 + 11 * D, "team") == []
    with pytest.raises(ValueError):
        await reports.spend_by_day(T0, T0 + D, "region")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await reports.spend_by_day(T0, T0, "team")


async def test_traffic_has_every_bucket_and_counts_errors(store: Store) -> None:
    await store.spend.write_spend(
        [
            entry("ok1", T0 + timedelta(minutes=5), cache_read_tokens=30, cache_write_5m_tokens=4),
            entry("ok2", T0 + timedelta(minutes=59), cache_write_1h_tokens=6),
            entry("e500", T0 + 2 * H, status=500, error_type="api_error", output_tokens=0),
            entry("e429", T0 + 2 * H + timedelta(minutes=1), status=429, error_type="rate_limit_error"),
            entry("broken", T0 + 2 * H + timedelta(minutes=2), status=200, error_type="overloaded_error"),
            entry("next_day", T0 + D + 3 * H),
        ]
    )
    hourly = await store.reports.traffic(T0 + timedelta(minutes=30), T0 + 3 * H, "hour")
    assert hourly == [
        TrafficPoint(T0, 2, 0, 200, 20, 30, 10),
        TrafficPoint(T0 + H, 0, 0, 0, 0, 0, 0),  # empty, still there
        TrafficPoint(T0 + 2 * H, 3, 3, 300, 20, 0, 0),
    ]
    assert all(p.start.tzinfo is not None for p in hourly)
    daily = await store.reports.traffic(T0 - D, T0 + 2 * D, "day")
    assert daily == [
        TrafficPoint(T0 - D, 0, 0, 0, 0, 0, 0),
        TrafficPoint(T0, 5, 3, 500, 40, 30, 10),
        TrafficPoint(T0 + D, 1, 0, 100, 10, 0, 0),
    ]
    assert len(await store.reports.traffic(T0, T0 + 30 * D, "hour")) == 720
    with pytest.raises(ValueError):
        await store.reports.traffic(T0, T0 + 3000 * D, "hour")


async def test_overview_totals_cache_ratio_and_ttft_percentiles(store: Store) -> None:
    # Time to first token 10, 20, ..., 1000 ms: exact p50 500, p90 900, p99 990.
    entries = [
        entry(
            f"r{i:03d}",
            T0 + timedelta(minutes=i),
            first_token_ms=10.0 * i,
            input_tokens=10,
            cache_read_tokens=60,
            cache_write_5m_tokens=20,
            cache_write_1h_tokens=10,
            status=500 if i % 10 == 0 else 200,
            cost_micro=i,
        )
        for i in range(1, 101)
    ]
    entries.append(entry("no_ttft", T0 + 2 * H, first_token_ms=None, input_tokens=0, cache_read_tokens=0))
    await store.spend.write_spend(entries)
    overview = await store.reports.overview(T0 + timedelta(minutes=1), T0 + 3 * H - timedelta(seconds=1))
    assert (overview.since, overview.until) == (T0, T0 + 3 * H)  # widened to whole hours
    assert (overview.requests, overview.errors, overview.cost_micro) == (101, 10, 5050 + 1000)
    assert (overview.input_tokens, overview.cache_read_tokens, overview.cache_write_tokens) == (
        1000,
        6000,
        3000,
    )
    assert overview.output_tokens == 1010
    assert overview.cache_hit_ratio == pytest.approx(6000 / 10000)
    for name, exact in (("p50", 500), ("p90", 900), ("p99", 990)):
        got = overview.ttft_ms[name]
        assert got is not None and abs(got / exact - 1) <= 0.1225, (name, got)
        assert got == bucket_value(histogram_bucket(exact))
    empty = await store.reports.overview(T0 + 5 * D, T0 + 6 * D)
    assert empty == Overview(
        T0 + 5 * D, T0 + 6 * D, 0, 0, 0, 0, 0, 0, 0, None, {"p50": None, "p90": None, "p99": None}
    )


async def test_deployment_errors(store: Store) -> None:
    east = [entry(f"e{i}", T0 + timedelta(minutes=i), latency_ms=100.0 * (i + 1)) for i in range(10)]
    west = [
        entry("w1", T0, deployment="bedrock/us-west-2", provider="bedrock", region="us-west-2", status=429),
        entry("w2", T0, deployment="bedrock/us-west-2", provider="bedrock", region="us-west-2", status=503),
        entry(
            "w3", T0, deployment="bedrock/us-west-2", provider="bedrock", region="us-west-2", latency_ms=None
        ),
    ]
    await store.spend.write_spend(east + west + [entry("old", T0 - D, status=500)])
    stats = await store.reports.deployment_errors(T0, T0 + H)
    assert [(s.deployment, s.requests, s.errors, s.rate_limited) for s in stats] == [
        ("vertex/us-east5", 10, 0, 0),
        ("bedrock/us-west-2", 3, 2, 1),
    ]
    east_stats, west_stats = stats
    assert isinstance(east_stats, DeploymentStats)
    assert (east_stats.provider, east_stats.region) == ("vertex", "us-east5")
    assert east_stats.p50_latency_ms == bucket_value(histogram_bucket(500.0))
    assert east_stats.p90_latency_ms == bucket_value(histogram_bucket(900.0))
    assert west_stats.p50_latency_ms == bucket_value(histogram_bucket(800.0))
    assert await store.reports.deployment_errors(T0 + D, T0 + 2 * D) == []


async def test_fresh_batches_skip_the_lookup_and_count_the_same(store: Store) -> None:
    batch = [entry(f"f{i}", T0 + i * M, cost_micro=10 + i, latency_ms=100.0 * i) for i in range(40)]
    lookups: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM spend " in statement + " ":
            lookups.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await store.spend.write_spend(batch[:20], fresh=True)
        assert lookups == []  # the stored rows were not looked for
        await store.spend.write_spend(batch[20:], fresh=False)
        assert len(lookups) == 1
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    overview = await store.reports.overview(T0, T0 + H)
    assert (overview.requests, overview.cost_micro) == (40, sum(10 + i for i in range(40)))
    # The retry of a batch that did commit is not fresh: it looks, and counts nothing twice.
    await store.spend.write_spend(batch[:20])
    assert (await store.reports.overview(T0, T0 + H)).requests == 40


async def test_replays_and_replacements_count_once(store: Store) -> None:
    batch = [entry("a", cost_micro=100), entry("b", cost_micro=200)]
    await store.spend.write_spend(batch)
    await store.spend.write_spend(batch)  # a replayed batch: nothing changes
    # An interrupted entry, charged its reservation, then its final version.
    await store.spend.write_spend([entry("c", interrupted=True, cost_micro=9_000, status=0, latency_ms=None)])
    assert (await store.reports.overview(T0, T0 + H)).cost_micro == 9_300
    await store.spend.write_spend([entry("c", cost_micro=50, status=529, error_type="overloaded_error")])
    await store.spend.write_spend([entry("c", interrupted=True, cost_micro=9_000)])  # late replay: ignored
    # Repeats inside one batch too.
    await store.spend.write_spend([entry("d", interrupted=True, cost_micro=5), entry("d", cost_micro=6)])
    overview = await store.reports.overview(T0, T0 + H)
    assert (overview.requests, overview.errors, overview.cost_micro) == (4, 1, 356)
    stats = await store.reports.deployment_errors(T0, T0 + H)
    assert [(s.requests, s.errors) for s in stats] == [(4, 1)]
    assert await store.reports.spend_by_day(T0, T0 + D, "key") == [
        SpendPoint(T0.date(), "key_a", "key_a", 356, 4)
    ]


async def test_rollups_agree_with_the_spend_table(store: Store) -> None:
    rng = random.Random(42)
    models = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"]
    entries = [
        entry(
            f"req_{i:05d}",
            T0 + timedelta(seconds=rng.uniform(0, 3 * 86400)),
            key_id=rng.choice(["k1", "k2", "k3", None]),
            team_id=rng.choice(["t1", "t2", None]),
            model=rng.choice(models),
            cost_micro=rng.randrange(0, 50_000),
            input_tokens=rng.randrange(0, 5000),
            cache_read_tokens=rng.randrange(0, 5000),
            status=rng.choice([200, 200, 200, 429, 500]),
            interrupted=rng.random() < 0.05,
        )
        for i in range(1500)
    ]
    for start in range(0, len(entries), 400):
        await store.spend.write_spend(entries[start : start + 400])
    # Some interrupted ones get their final entry later, as a journal replay would.
    finals = [
        entry(e.request_id, e.started_at, cost_micro=17, model=e.model, key_id=e.key_id, team_id=e.team_id)
        for e in entries
        if e.interrupted
    ]
    await store.spend.write_spend(finals)
    per_day = {r.group: r for r in await store.spend.spend_report("day", T0, T0 + 3 * D)}
    traffic = await store.reports.traffic(T0, T0 + 3 * D, "day")
    assert [(p.start.date().isoformat(), p.requests, p.input_tokens) for p in traffic] == [
        (day, per_day[day].requests, per_day[day].input_tokens) for day in sorted(per_day)
    ]
    by_model = await store.reports.spend_by_day(T0, T0 + 3 * D, "model")
    assert sum(p.cost_micro for p in by_model) == sum(r.cost_micro for r in per_day.values())
    for by in ("key", "team", "model"):
        raw = {r.group or "": r for r in await store.spend.spend_report(by, T0, T0 + 3 * D)}  # type: ignore[arg-type]
        points = await store.reports.spend_by_day(T0, T0 + 3 * D, by)  # type: ignore[arg-type]
        sums: dict[str, tuple[int, int]] = {}
        for p in points:
            cost, requests = sums.get(p.group, (0, 0))
            sums[p.group] = (cost + p.cost_micro, requests + p.requests)
        assert sums == {g: (r.cost_micro, r.requests) for g, r in raw.items()}
    async with store.sessions() as session:
        errors = await session.scalar(
            select(func.count()).where((Spend.status >= 400) | Spend.error_type.is_not(None))
        )
    assert (await store.reports.overview(T0, T0 + 3 * D)).errors == errors


async def test_budget_usage_follows_the_governance_windows(store: Store) -> None:
    team = await store.teams.create("platform")
    ada = await store.users.create("ada", team_id=team.id)
    key = (await store.keys.create("ci", user_id=ada.id)).key
    now = datetime(2025, 3, 5, 12, 0, tzinfo=UTC)  # a Wednesday
    owners = {"team_id": team.id, "user_id": ada.id, "key_id": key.id}
    await store.spend.write_spend(
        [
            entry("feb", datetime(2025, 2, 20, 9, tzinfo=UTC), cost_micro=1, **owners),
            entry("sun", datetime(2025, 3, 2, 23, 59, tzinfo=UTC), cost_micro=10, **owners),
            entry("tue", datetime(2025, 3, 4, 8, tzinfo=UTC), cost_micro=100, **owners),
            entry("wed", datetime(2025, 3, 5, 0, 0, tzinfo=UTC), cost_micro=1_000, **owners),
            entry(
                "other", datetime(2025, 3, 5, 1, tzinfo=UTC), cost_micro=5_000, team_id="team_x", key_id="k"
            ),
        ]
    )
    daily = await store.budgets.set(Scope.TEAM, team.id, Period.DAILY, 2_000)
    weekly = await store.budgets.set(Scope.KEY, key.id, Period.WEEKLY, 3_000)
    monthly = await store.budgets.set(Scope.USER, ada.id, Period.MONTHLY, 4_000)
    total = await store.budgets.set(Scope.TEAM, team.id, Period.TOTAL, 5_000)
    uses = {u.budget_id: u for u in await Reports(store, clock=lambda: now).budget_usage()}
    assert uses == {
        daily.budget_id: BudgetUse(
            daily.budget_id,
            "team",
            team.id,
            "platform",
            "daily",
            2_000,
            1_000,
            datetime(2025, 3, 5, tzinfo=UTC),
        ),
        weekly.budget_id: BudgetUse(
            weekly.budget_id, "key", key.id, "ci", "weekly", 3_000, 1_100, datetime(2025, 3, 3, tzinfo=UTC)
        ),
        monthly.budget_id: BudgetUse(
            monthly.budget_id,
            "user",
            ada.id,
            "ada",
            "monthly",
            4_000,
            1_110,
            datetime(2025, 3, 1, tzinfo=UTC),
        ),
        total.budget_id: BudgetUse(total.budget_id, "team", team.id, "platform", "total", 5_000, 1_111, None),
    }


async def test_the_migration_fills_the_rollups_from_existing_spend(database: Database) -> None:
    engine = database.engine()
    try:
        await upgrade(engine, "0003")
        entries = [
            entry("old1", T0 + H, cost_micro=5, first_token_ms=300.0, cache_write_1h_tokens=3),
            entry("old2", T0 + H, cost_micro=6, status=429, team_id=None),
            entry("old3", T0 + D, cost_micro=7, model="claude-haiku-4-5", latency_ms=None),
        ]
        async with engine.begin() as conn:
            table = Spend.__table__
            await conn.execute(
                insert(table),
                [{c.name: getattr(e, c.name) for c in table.columns} for e in entries],  # type: ignore[attr-defined]
            )
        await upgrade(engine)
        migrated = Store(engine)
        reports = (
            await migrated.reports.overview(T0, T0 + 2 * D),
            await migrated.reports.traffic(T0, T0 + 2 * D, "hour"),
            await migrated.reports.spend_by_day(T0, T0 + 2 * D, "team"),
            await migrated.reports.deployment_errors(T0, T0 + 2 * D),
        )
        # The same entries written through the store give the same reports.
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM spend"))
            await conn.execute(text("DELETE FROM spend_hourly"))
            await conn.execute(text("DELETE FROM spend_daily"))
        await migrated.spend.write_spend(entries)
        assert reports == (
            await migrated.reports.overview(T0, T0 + 2 * D),
            await migrated.reports.traffic(T0, T0 + 2 * D, "hour"),
            await migrated.reports.spend_by_day(T0, T0 + 2 * D, "team"),
            await migrated.reports.deployment_errors(T0, T0 + 2 * D),
        )
        assert reports[0].requests == 3 and reports[0].cost_micro == 18
    finally:
        await engine.dispose()


async def test_reports_read_the_rollups_through_indexes(store: Store, database: Database) -> None:
    if database.kind != "sqlite":
        pytest.skip("plans on a tiny PostgreSQL table are seq scans; bench/console.py shows them at scale")
    team = await store.teams.create("platform")
    await store.budgets.set(Scope.TEAM, team.id, Period.DAILY, 1)
    await store.spend.write_spend([entry("r1", team_id=team.id)])
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "spend_" in statement:
            statements.append((statement, parameters))

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await store.reports.spend_by_day(T0, T0 + D, "team")
        await store.reports.traffic(T0, T0 + D, "hour")
        await store.reports.overview(T0, T0 + D)
        await store.reports.deployment_errors(T0, T0 + D)
        await store.reports.budget_usage()
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    assert len(statements) == 5
    async with store.engine.connect() as conn:
        for statement, parameters in statements:
            plan = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
            details = " / ".join(row[-1] for row in plan)
            assert "SCAN spend" not in details, (statement, details)  # no full table scans
            assert "USING" in details and "INDEX" in details, (statement, details)
    assert spend_hourly.name == "spend_hourly"


def test_public_names() -> None:
    day = date(2025, 1, 1)
    assert SpendPoint(day, "", "(none)", 0, 0).label == "(none)"


def test_in_lists_come_in_a_few_lengths_only() -> None:
    # The SQLite driver keeps one prepared statement per SQL text; an IN list of every length
    # from 1 to 512 filled that cache with large statements (bench/memory.py).
    from cloudgate.store.reports import _padded

    lengths = set()
    for n in range(1, 513):
        ids = [f"req_{i}" for i in range(n)]
        padded = _padded(ids)
        assert set(padded) == set(ids) and padded[:n] == ids
        lengths.add(len(padded))
    assert lengths == {1 << k for k in range(10)}
