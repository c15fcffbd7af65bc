"""The spend log: idempotent upserts, interrupted entries replaced, sums and reports."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, select

from cloudgate.governance.types import Scope, SpendEntry
from cloudgate.store import SpendReportRow, Store
from cloudgate.store.models import Spend

T0 = datetime(2025, 3, 1, 23, 30, tzinfo=UTC)


def entry(request_id: str, **fields: object) -> SpendEntry:
    values: dict[str, object] = {
        "started_at": T0,
        "key_id": "key_a",
        "user_id": "user_a",
        "team_id": "team_a",
        "model": "claude-sonnet-4-5",
        "input_tokens": 100,
        "output_tokens": 10,
        "cost_micro": 1_000,
        "status": 200,
    }
    values.update(fields)
    return SpendEntry(request_id=request_id, **values)  # type: ignore[arg-type]


async def rows(store: Store) -> dict[str, Spend]:
    async with store.sessions() as session:
        return {r.request_id: r for r in await session.scalars(select(Spend))}


async def test_write_round_trips_every_field(store: Store) -> None:
    full = entry(
        "req_1",
        finished_at=T0 + timedelta(seconds=3),
        frontdoor="anthropic",
        provider="vertex",
        upstream_model="claude-sonnet-4-5@20250929",
        region="us-east5",
        cache_write_5m_tokens=1,
        cache_write_1h_tokens=2,
        cache_read_tokens=3,
        reserved_micro=5_000,
        latency_ms=1234.5,
        first_token_ms=321.0,
        error_type=None,
        session_id="sess",
        tags=["ci", "nightly"],
        deployment="vertex/europe-west1",
        attempts=3,
    )
    await store.spend.write_spend([full])
    row = (await rows(store))["req_1"]
    stored = SpendEntry(**{f.name: getattr(row, f.name) for f in dataclasses.fields(SpendEntry)})
    assert stored == full


async def test_write_is_idempotent(store: Store) -> None:
    batch = [entry("r1"), entry("r2", cost_micro=2_000)]
    await store.spend.write_spend(batch)
    await store.spend.write_spend(batch)
    await store.spend.write_spend([])
    assert await store.spend.spent_micro(Scope.KEY, "key_a") == 3_000
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Spend)) == 2


async def test_final_entry_replaces_interrupted_but_never_the_reverse(store: Store) -> None:
    await store.spend.write_spend([entry("r1", interrupted=True, cost_micro=9_000, reserved_micro=9_000)])
    final = entry("r1", cost_micro=1_234, reserved_micro=9_000, output_tokens=77, finished_at=T0)
    await store.spend.write_spend([final])
    row = (await rows(store))["r1"]
    assert (row.interrupted, row.cost_micro, row.output_tokens) == (False, 1_234, 77)
    # A late replay of the interrupted version, or a different final one, changes nothing.
    await store.spend.write_spend([entry("r1", interrupted=True, cost_micro=9_000)])
    await store.spend.write_spend([entry("r1", cost_micro=1)])
    assert (await rows(store))["r1"].cost_micro == 1_234


async def test_repeats_within_one_batch(store: Store) -> None:
    await store.spend.write_spend(
        [
            entry("r1", interrupted=True, cost_micro=5),
            entry("r1", cost_micro=6),
            entry("r1", interrupted=True, cost_micro=7),
            entry("r2", interrupted=True, cost_micro=8),
            entry("r2", interrupted=True, cost_micro=9),
        ]
    )
    stored = await rows(store)
    assert (stored["r1"].cost_micro, stored["r1"].interrupted) == (6, False)
    assert (stored["r2"].cost_micro, stored["r2"].interrupted) == (9, True)


async def test_spent_micro_windows_and_scopes(store: Store) -> None:
    await store.spend.write_spend(
        [
            entry("old", started_at=T0 - timedelta(days=10), cost_micro=100),
            entry("edge", started_at=T0, cost_micro=20),
            entry("new", started_at=T0 + timedelta(hours=1), cost_micro=3, interrupted=True),
            entry("other", key_id="key_b", user_id="user_b", team_id="team_a", cost_micro=4_000),
        ]
    )
    assert await store.spend.spent_micro(Scope.KEY, "key_a") == 123
    assert await store.spend.spent_micro(Scope.KEY, "key_a", since=T0) == 23  # `since` is inclusive
    assert await store.spend.spent_micro(Scope.KEY, "key_a", since=T0 + timedelta(microseconds=1)) == 3
    assert await store.spend.spent_micro(Scope.USER, "user_a", since=T0 - timedelta(days=30)) == 123
    assert await store.spend.spent_micro(Scope.TEAM, "team_a", since=T0) == 4_023
    assert await store.spend.spent_micro(Scope.TEAM, "team_none") == 0
    # A non-UTC `since` means the same instant.
    plus2 = T0.astimezone(timezone(timedelta(hours=2)))
    assert await store.spend.spent_micro(Scope.KEY, "key_a", since=plus2) == 23


async def test_spend_report_groupings(store: Store) -> None:
    day2 = T0 + timedelta(hours=1)  # 2025-03-02 00:30 UTC
    await store.spend.write_spend(
        [
            entry("a1", cost_micro=100, cache_read_tokens=5),
            entry("a2", started_at=day2, cost_micro=200, model="claude-opus-4-1", cache_write_5m_tokens=1),
            entry(
                "b1",
                key_id="key_b",
                user_id="user_b",
                started_at=day2,
                cost_micro=1_000,
                cache_write_1h_tokens=2,
            ),
            entry("anon", key_id=None, user_id=None, team_id=None, started_at=day2, cost_micro=1),
            entry("too_old", started_at=T0 - timedelta(days=40), cost_micro=99_999),
        ]
    )
    since = T0 - timedelta(days=1)

    by_key = await store.spend.spend_report("key", since)
    assert by_key == [
        SpendReportRow("key_b", 1, 100, 10, 0, 2, 0, 1_000, attempts=1),
        SpendReportRow("key_a", 2, 200, 20, 1, 0, 5, 300, attempts=2),
        SpendReportRow(None, 1, 100, 10, 0, 0, 0, 1, attempts=1),
    ]
    assert [(r.group, r.cost_micro) for r in await store.spend.spend_report("user", since)] == [
        ("user_b", 1_000),
        ("user_a", 300),
        (None, 1),
    ]
    assert [(r.group, r.requests) for r in await store.spend.spend_report("team", since)] == [
        ("team_a", 3),
        (None, 1),
    ]
    assert [(r.group, r.cost_micro) for r in await store.spend.spend_report("model", since)] == [
        ("claude-sonnet-4-5", 1_101),
        ("claude-opus-4-1", 200),
    ]
    # Days are UTC days, oldest first.
    assert [(r.group, r.requests, r.cost_micro) for r in await store.spend.spend_report("day", since)] == [
        ("2025-03-01", 1, 100),
        ("2025-03-02", 3, 1_201),
    ]
    assert [r.group for r in await store.spend.spend_report("day", since, until=day2)] == ["2025-03-01"]
    assert await store.spend.spend_report("key", T0 + timedelta(days=5)) == []


async def test_sql_spend_sink_writes_through_the_store(store: Store) -> None:
    sink = store.spend_sink()
    await sink.write_spend([entry("s1", cost_micro=42)])
    await sink.write_spend([entry("s1", cost_micro=42)])
    assert await store.spend.spent_micro(Scope.KEY, "key_a") == 42


async def test_spend_report_by_deployment_sums_attempts(store: Store) -> None:
    await store.spend.write_spend(
        [
            entry("e1", deployment="vertex/europe-west1", cost_micro=300),
            # Served by the second deployment after the first failed: two upstream requests.
            entry("e2", deployment="bedrock/eu-west-1", attempts=2, cost_micro=500),
            entry("e3", deployment="bedrock/eu-west-1", attempts=3, cost_micro=100),
            # Refused before any upstream call.
            entry("refused", attempts=0, status=402, cost_micro=0),
            entry("legacy", cost_micro=1),  # written before deployments were recorded
        ]
    )
    report = await store.spend.spend_report("deployment", T0 - timedelta(days=1))
    assert [(r.group, r.requests, r.attempts, r.cost_micro) for r in report] == [
        ("bedrock/eu-west-1", 2, 5, 600),
        ("vertex/europe-west1", 1, 1, 300),
        (None, 2, 1, 1),
    ]
    by_key = await store.spend.spend_report("key", T0 - timedelta(days=1))
    assert [(r.requests, r.attempts) for r in by_key] == [(5, 7)]


async def test_a_replayed_final_entry_brings_its_deployment_and_attempts(store: Store) -> None:
    await store.spend.write_spend([entry("r1", interrupted=True, deployment="vertex/us-east5")])
    await store.spend.write_spend([entry("r1", deployment="bedrock/us-east-1", attempts=2)])
    row = (await rows(store))["r1"]
    assert (row.deployment, row.attempts, row.interrupted) == ("bedrock/us-east-1", 2, False)
