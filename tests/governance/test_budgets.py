"""Budgets: periods, seeding, all-or-nothing reservations, and concurrency (memory, SQLite, Redis)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cloudgate.governance.budgets import (
    BudgetExceeded,
    BudgetGuard,
    budget_key,
    period_end,
    period_start,
)
from cloudgate.governance.counters import Counters, RedisCounters
from cloudgate.governance.sqlite_counters import SQLiteCounters
from cloudgate.governance.types import BudgetRule, Period, Principal, Scope

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from conftest import FakeClock  # tests/governance/conftest.py


def rule(
    amount: int, period: Period = Period.MONTHLY, scope: Scope = Scope.KEY, budget_id: str = "b-key"
) -> BudgetRule:
    return BudgetRule(
        budget_id=budget_id, scope=scope, scope_id=f"{scope}-1", amount_micro=amount, period=period
    )


def principal(*rules: BudgetRule) -> Principal:
    return Principal(key_id="k1", key_prefix="cg-k1", budgets=rules)


class Spent:
    """A stand-in for the database: what each budget had spent before, and how often it was asked."""

    def __init__(self, spent: dict[str, int] | None = None) -> None:
        self.spent = spent or {}
        self.calls: list[tuple[str, datetime]] = []

    async def __call__(self, rule: BudgetRule, start: datetime) -> int:
        self.calls.append((rule.budget_id, start))
        await asyncio.sleep(0)  # a real load awaits
        return self.spent.get(rule.budget_id, 0)


class TestPeriods:
    NOW = datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)  # a Wednesday

    def test_starts(self) -> None:
        assert period_start(Period.DAILY, self.NOW) == datetime(2025, 12, 31, tzinfo=UTC)
        assert period_start(Period.WEEKLY, self.NOW) == datetime(2025, 12, 29, tzinfo=UTC)  # Monday
        assert period_start(Period.MONTHLY, self.NOW) == datetime(2025, 12, 1, tzinfo=UTC)
        assert period_start(Period.TOTAL, self.NOW) == datetime(1970, 1, 1, tzinfo=UTC)

    def test_ends(self) -> None:
        assert period_end(Period.DAILY, self.NOW) == datetime(2026, 1, 1, tzinfo=UTC)
        assert period_end(Period.WEEKLY, self.NOW) == datetime(2026, 1, 5, tzinfo=UTC)
        assert period_end(Period.MONTHLY, self.NOW) == datetime(2026, 1, 1, tzinfo=UTC)
        assert period_end(Period.MONTHLY, datetime(2025, 2, 10, tzinfo=UTC)) == datetime(
            2025, 3, 1, tzinfo=UTC
        )
        assert period_end(Period.TOTAL, self.NOW) is None

    def test_other_timezones_and_naive_are_utc(self) -> None:
        from datetime import timedelta, timezone

        tokyo = datetime(2026, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=9)))  # 2025-12-31 23:00 UTC
        assert period_start(Period.DAILY, tokyo) == datetime(2025, 12, 31, tzinfo=UTC)
        assert period_start(Period.DAILY, datetime(2025, 6, 1, 12)) == datetime(2025, 6, 1, tzinfo=UTC)

    def test_week_starting_on_monday_itself(self) -> None:
        monday = datetime(2025, 12, 29, 0, 0, tzinfo=UTC)
        assert period_start(Period.WEEKLY, monday) == monday

    def test_key_carries_period_and_start(self) -> None:
        assert (
            budget_key(rule(1, Period.WEEKLY), datetime(2025, 12, 29, tzinfo=UTC))
            == "budget:b-key:weekly:20251229"
        )


async def test_reserve_settle_and_exceed(counters: Counters, clock: FakeClock) -> None:
    guard = BudgetGuard(counters, Spent())
    who = principal(rule(10_000))
    first = await guard.reserve(who, 6_000)
    await guard.settle(first, 4_000)
    second = await guard.reserve(who, 6_000)  # 4,000 + 6,000 = 10,000: fits exactly
    with pytest.raises(BudgetExceeded) as info:
        await guard.reserve(who, 1)
    assert info.value.spent == 10_000 and info.value.limit == 10_000
    assert info.value.rule == who.budgets[0]
    assert info.value.resets_at == period_end(Period.MONTHLY, datetime.fromtimestamp(clock(), UTC))
    assert "exhausted" in str(info.value)
    await guard.release(second)
    assert (await guard.reserve(who, 6_000)).amount == 6_000


async def test_settle_twice_and_release_after_settle_are_harmless(counters: Counters) -> None:
    guard = BudgetGuard(counters, Spent())
    who = principal(rule(10_000))
    reservation = await guard.reserve(who, 5_000)
    await guard.settle(reservation, 3_000)
    await guard.settle(reservation, 3_000)
    await guard.release(reservation)
    key = reservation.keys[0]
    assert await counters.budget(key) == (3_000, 0)
    # a second guard (another process) settling the same hold does nothing either
    await BudgetGuard(counters, Spent()).settle(
        type(reservation)(reservation.id, reservation.amount, reservation.keys, reservation.rules), 3_000
    )
    assert await counters.budget(key) == (3_000, 0)


async def test_seeded_from_the_database_once(counters: Counters, clock: FakeClock) -> None:
    loads = Spent({"b-key": 9_000})
    guard = BudgetGuard(counters, loads)
    who = principal(rule(10_000))
    results = await asyncio.gather(*(guard.reserve(who, 500) for _ in range(5)), return_exceptions=True)
    # 9,000 already spent: two holds of 500 fit, the rest are refused
    assert sum(not isinstance(r, BaseException) for r in results) == 2
    assert all(
        isinstance(r, BudgetExceeded) and r.spent == 10_000 for r in results if isinstance(r, BaseException)
    )
    start = period_start(Period.MONTHLY, datetime.fromtimestamp(clock(), UTC))
    assert loads.calls == [("b-key", start)]


async def test_new_period_starts_from_its_own_spending(counters: Counters, clock: FakeClock) -> None:
    loads = Spent()
    guard = BudgetGuard(counters, loads)
    who = principal(rule(1_000, Period.DAILY))
    await guard.settle(await guard.reserve(who, 1_000), 1_000)
    with pytest.raises(BudgetExceeded):
        await guard.reserve(who, 1)
    clock.advance(86_400)
    loads.spent["b-key"] = 0  # what the database says the new day has spent
    await guard.reserve(who, 1_000)
    assert [c[1].day for c in loads.calls] == [
        datetime.fromtimestamp(clock() - 86_400, UTC).day,
        datetime.fromtimestamp(clock(), UTC).day,
    ]


async def test_the_counter_key_changes_at_the_period_boundary_not_a_minute_later(
    counters: Counters, clock: FakeClock
) -> None:
    # A rule's key is worked out once a minute, but never used past its period's end.
    clock.now = datetime(2025, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC).timestamp()
    guard = BudgetGuard(counters, Spent())
    who = principal(rule(1_000, Period.DAILY))
    before = await guard.reserve(who, 10)
    clock.advance(0.4)  # still the 31st: the same counter
    assert (await guard.reserve(who, 10)).keys == before.keys
    clock.advance(0.2)  # 00:00:00.1 on New Year's Day
    after = await guard.reserve(who, 10)
    assert before.keys == (budget_key(who.budgets[0], datetime(2025, 12, 31, tzinfo=UTC)),)
    assert after.keys == (budget_key(who.budgets[0], datetime(2026, 1, 1, tzinfo=UTC)),)
    assert await counters.budget(after.keys[0]) == (0, 10)


async def test_every_budget_must_pass(counters: Counters) -> None:
    guard = BudgetGuard(counters, Spent({"team": 900}))
    key_rule = rule(100_000, budget_id="key")
    team_rule = rule(1_000, scope=Scope.TEAM, budget_id="team")
    who = principal(key_rule, team_rule)
    reservation = await guard.reserve(who, 100)
    with pytest.raises(BudgetExceeded) as info:
        await guard.reserve(who, 100)
    assert info.value.rule == team_rule and info.value.spent == 1_000
    # the refused request held nothing on the key's budget
    assert await counters.budget(reservation.keys[0]) == (0, 100)


async def test_no_budgets_no_counters(counters: Counters) -> None:
    guard = BudgetGuard(counters, Spent())
    reservation = await guard.reserve(principal(), 10**12)
    await guard.settle(reservation, 10**12)
    assert reservation.keys == ()


M = 10_000
LIMIT = 10 * M + M // 2


async def _reserve_and_settle(guard: BudgetGuard, who: Principal, rng: random.Random) -> int:
    try:
        reservation = await guard.reserve(who, M)
    except BudgetExceeded:
        return 0
    await asyncio.sleep(rng.random() / 1000)  # the upstream call
    actual = rng.randint(1, M)  # 0 stands for "refused"
    await guard.settle(reservation, actual)
    return actual


async def test_parallel_reservations_never_overspend(counters: Counters, clock: FakeClock) -> None:
    guard = BudgetGuard(counters, Spent())
    who = principal(rule(LIMIT))
    rng = random.Random(7)
    actuals = await asyncio.gather(*(_reserve_and_settle(guard, who, rng) for _ in range(100)))
    admitted = [a for a in actuals if a]
    spent, reserved = await counters.budget(guard_key(who, clock)) or (0, 0)
    assert reserved == 0
    assert spent == sum(actuals)
    assert spent <= LIMIT + M
    assert len(admitted) >= 10  # what settles below M frees room for more


def guard_key(who: Principal, clock: FakeClock) -> str:
    rule_ = who.budgets[0]
    return budget_key(rule_, period_start(rule_.period, datetime.fromtimestamp(clock(), UTC)))


async def test_parallel_reservations_over_two_redis_connections(
    open_redis: Callable[[], Awaitable[RedisCounters]], clock: FakeClock
) -> None:
    a, b = await open_redis(), await open_redis()
    who = principal(rule(LIMIT))
    guards = [BudgetGuard(a, Spent()), BudgetGuard(b, Spent())]
    rng = random.Random(11)
    actuals = await asyncio.gather(*(_reserve_and_settle(guards[i % 2], who, rng) for i in range(100)))
    spent, reserved = await a.budget(guard_key(who, clock)) or (0, 0)
    assert reserved == 0 and spent == sum(actuals) <= LIMIT + M
    assert sum(1 for x in actuals if x) >= 10


CHILD = textwrap.dedent(
    """
    import asyncio, json, random, sys
    from cloudgate.governance.budgets import BudgetExceeded, BudgetGuard
    from cloudgate.governance.counters import RedisCounters
    from cloudgate.governance.sqlite_counters import SQLiteCounters
    from cloudgate.governance.types import BudgetRule, Period, Principal, Scope

    url, prefix, now, limit, m, seed = sys.argv[1:]
    async def zero(rule, start):
        return 0
    async def one(guard, who, rng):
        try:
            r = await guard.reserve(who, int(m))
        except BudgetExceeded:
            return 0
        await asyncio.sleep(rng.random() / 1000)
        actual = rng.randint(1, int(m))
        await guard.settle(r, actual)
        return actual
    async def main():
        if url.startswith("redis"):
            counters = RedisCounters.from_url(url, prefix=prefix, clock=lambda: float(now))
        else:  # a SQLite file
            counters = SQLiteCounters(url, clock=lambda: float(now))
        rule = BudgetRule("b-key", Scope.KEY, "key-1", int(limit), Period.MONTHLY)
        who = Principal(key_id="k1", key_prefix="cg-k1", budgets=(rule,))
        guard = BudgetGuard(counters, zero)
        rng = random.Random(int(seed))
        actuals = await asyncio.gather(*(one(guard, who, rng) for _ in range(50)))
        await counters.aclose()
        return actuals
    print(json.dumps(asyncio.run(main())))
    """
)


async def _race_from_two_processes(counters: Counters, where: str, prefix: str, clock: FakeClock) -> None:
    """Two processes reserve against one budget at once, through `where` (a Redis URL or a
    SQLite file); the budget is never overspent."""
    args = [where, prefix, repr(clock()), str(LIMIT), str(M)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, *args, str(seed), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for seed in (1, 2)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    actuals: list[int] = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        actuals += json.loads(out)
    spent, reserved = await counters.budget(guard_key(principal(rule(LIMIT)), clock)) or (0, 0)
    assert reserved == 0 and spent == sum(actuals) <= LIMIT + M
    assert sum(1 for a in actuals if a) >= 10


async def test_parallel_reservations_from_two_processes(
    open_redis: Callable[[], Awaitable[RedisCounters]], redis_test_url: str, prefix: str, clock: FakeClock
) -> None:
    await _race_from_two_processes(await open_redis(), redis_test_url, prefix, clock)


async def test_parallel_reservations_from_two_processes_on_sqlite(tmp_path: Path, clock: FakeClock) -> None:
    counters = SQLiteCounters(tmp_path / "counters.db", clock=clock)
    try:
        await _race_from_two_processes(counters, str(tmp_path / "counters.db"), "", clock)
    finally:
        await counters.aclose()
