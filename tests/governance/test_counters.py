"""The counter primitives, with identical expectations in memory and in Redis."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from cloudgate.governance.counters import (
    BudgetHold,
    Counters,
    RedisCounters,
    SlotCheck,
    WindowAdd,
    WindowCheck,
)

if TYPE_CHECKING:
    from conftest import FakeClock  # tests/governance/conftest.py


class TestBudgets:
    async def test_unseeded_counters_are_reported_and_untouched(self, counters: Counters) -> None:
        await counters.seed("a", 0, 0)
        result = await counters.reserve([BudgetHold("a", 100), BudgetHold("b", 100)], "h1", 10, 60)
        assert not result.ok and result.unseeded == (1,)
        assert await counters.budget("a") == (0, 0)
        assert await counters.budget("b") is None

    async def test_seed_is_idempotent(self, counters: Counters) -> None:
        assert await counters.seed("a", 40, 0)
        assert not await counters.seed("a", 99, 0)
        assert await counters.budget("a") == (40, 0)

    async def test_all_or_nothing(self, counters: Counters) -> None:
        await counters.seed("a", 0, 0)
        await counters.seed("b", 50, 0)
        holds = [BudgetHold("a", 100), BudgetHold("b", 100)]
        assert (await counters.reserve(holds, "h1", 40, 60)).ok
        refused = await counters.reserve(holds, "h2", 20, 60)
        # b: 50 spent + 40 reserved = 90; 90 + 20 > 100
        assert not refused.ok and refused.refused == 1 and refused.current == 90
        assert await counters.budget("a") == (0, 40)
        assert await counters.budget("b") == (50, 40)

    async def test_settle_release_are_idempotent(self, counters: Counters) -> None:
        await counters.seed("a", 0, 0)
        holds = [BudgetHold("a", 1_000)]
        assert (await counters.reserve(holds, "h1", 100, 60)).ok
        assert (await counters.reserve(holds, "h2", 100, 60)).ok
        assert await counters.budget("a") == (0, 200)
        await counters.settle(["a"], "h1", 70)
        assert await counters.budget("a") == (70, 100)
        await counters.settle(["a"], "h1", 70)
        await counters.release(["a"], "h1")
        assert await counters.budget("a") == (70, 100)
        await counters.release(["a"], "h2")
        await counters.settle(["a"], "h2", 50)
        assert await counters.budget("a") == (70, 0)

    async def test_limit_is_inclusive_and_full_budget_refuses_zero_cost(self, counters: Counters) -> None:
        await counters.seed("a", 0, 0)
        holds = [BudgetHold("a", 100)]
        assert (await counters.reserve(holds, "h1", 100, 60)).ok  # exactly the limit
        await counters.settle(["a"], "h1", 100)
        # an unpriced request reserves 0 but an exhausted budget still refuses it
        refused = await counters.reserve(holds, "h2", 0, 60)
        assert not refused.ok and refused.current == 100

    async def test_expired_hold_becomes_spending(self, counters: Counters, clock: FakeClock) -> None:
        await counters.seed("a", 0, 0)
        holds = [BudgetHold("a", 1_000)]
        assert (await counters.reserve(holds, "lost", 300, 10)).ok
        clock.advance(11)
        assert (await counters.reserve(holds, "h2", 100, 10)).ok
        assert await counters.budget("a") == (300, 100)
        await counters.settle(["a"], "lost", 5)  # too late: harmless
        assert await counters.budget("a") == (300, 100)

    async def test_a_later_hold_still_expires_after_an_earlier_one_was_settled(
        self, counters: Counters, clock: FakeClock
    ) -> None:
        await counters.seed("a", 0, 0)
        holds = [BudgetHold("a", 1_000)]
        assert (await counters.reserve(holds, "early", 10, 5)).ok
        assert (await counters.reserve(holds, "late", 20, 10)).ok
        await counters.settle(["a"], "early", 7)
        clock.advance(6)  # past the settled hold's expiry: nothing else has expired
        assert (await counters.reserve(holds, "h3", 1, 60)).ok
        assert await counters.budget("a") == (7, 21)
        clock.advance(5)  # past the late hold's: it becomes spending
        assert (await counters.reserve(holds, "h4", 1, 60)).ok
        assert await counters.budget("a") == (27, 2)


class TestWindows:
    async def test_fills_and_slides(self, counters: Counters, clock: FakeClock) -> None:
        check = [WindowCheck("w", 3, 1)]
        assert (await counters.admit(check, [], "t")).used == (0,)
        clock.advance(20)
        assert (await counters.admit(check, [], "t")).ok
        assert (await counters.admit(check, [], "t")).used == (2,)
        clock.advance(10)  # t0+30
        refused = await counters.admit(check, [], "t")
        # the t0 bucket leaves the window at t0+60: 30 s from now
        assert not refused.ok and refused.refused == 0 and refused.retry_after_s == 30
        assert refused.used == (3,)
        clock.advance(29.5)
        assert (await counters.admit(check, [], "t")).retry_after_s == 0.5
        clock.advance(0.5)  # t0+60
        assert (await counters.admit(check, [], "t")).used == (2,)
        # now t0+20 (2) and t0+60 (1): the first one that frees enough is t0+20, at t0+80
        assert (await counters.admit(check, [], "t")).retry_after_s == 20

    async def test_retry_after_counts_what_must_leave(self, counters: Counters, clock: FakeClock) -> None:
        await counters.admit([WindowCheck("w", 1_000, 300)], [], "t")
        clock.advance(10)
        await counters.admit([WindowCheck("w", 1_000, 300)], [], "t")
        clock.advance(10)
        await counters.admit([WindowCheck("w", 1_000, 300)], [], "t")
        clock.advance(5)  # t0+25, window holds 900
        refused = await counters.admit([WindowCheck("w", 1_000, 500)], [], "t")
        # 900 + 500 > 1000; without t0's 300: 600 + 500 still > 1000; without t0+10's too: fits, at t0+70
        assert not refused.ok and refused.retry_after_s == 45
        assert (await counters.admit([WindowCheck("w", 1_000, 100)], [], "t")).ok

    async def test_oversized_request_needs_an_empty_window(
        self, counters: Counters, clock: FakeClock
    ) -> None:
        assert (await counters.admit([WindowCheck("w", 1_000, 5_000)], [], "t")).ok
        assert await counters.window_total("w") == 5_000
        assert not (await counters.admit([WindowCheck("w", 1_000, 1)], [], "t")).ok
        clock.advance(60)
        assert await counters.window_total("w") == 0

    async def test_check_only_refuses_a_full_window(self, counters: Counters, clock: FakeClock) -> None:
        await counters.record([WindowAdd("out", 999, 1e9)], [], "t")  # outside the window: ignored
        assert await counters.window_total("out") == 0
        T0 = clock()
        await counters.record([WindowAdd("out", 999, T0)], [], "t")
        assert (await counters.admit([WindowCheck("out", 1_000, 0)], [], "t")).ok
        assert await counters.window_total("out") == 999  # a check adds nothing
        await counters.record([WindowAdd("out", 1, T0)], [], "t")
        refused = await counters.admit([WindowCheck("out", 1_000, 0)], [], "t")
        assert not refused.ok and refused.retry_after_s == 60

    async def test_corrections_go_to_their_bucket_and_clamp(
        self, counters: Counters, clock: FakeClock
    ) -> None:
        start = clock()
        await counters.admit([WindowCheck("in", 1_000, 600)], [], "t")
        clock.advance(30)
        await counters.record([WindowAdd("in", -500, start)], [], "t")
        assert await counters.window_total("in") == 100
        await counters.record([WindowAdd("in", -1_000, start)], [], "t")
        assert await counters.window_total("in") == 0
        clock.advance(31)  # start's bucket has left: a correction to it is dropped
        await counters.record([WindowAdd("in", 400, start)], [], "t")
        assert await counters.window_total("in") == 0

    async def test_all_or_nothing_and_worst_retry(self, counters: Counters, clock: FakeClock) -> None:
        await counters.admit([WindowCheck("a", 10, 10)], [], "t")
        clock.advance(30)
        await counters.admit([WindowCheck("b", 10, 10)], [], "t")
        checks = [WindowCheck("c", 10, 1), WindowCheck("a", 10, 1), WindowCheck("b", 10, 1)]
        refused = await counters.admit(checks, [], "t")
        # a frees at t0+60 (30 s), b at t0+90 (60 s): the caller must wait for both
        assert not refused.ok and refused.refused == 2 and refused.retry_after_s == 60
        assert refused.used == (0, 10, 10)
        assert await counters.window_total("c") == 0

    async def test_zero_limit_never_admits(self, counters: Counters) -> None:
        refused = await counters.admit([WindowCheck("w", 0, 1)], [], "t")
        assert not refused.ok and refused.retry_after_s == 60


class TestSlots:
    async def test_acquire_release(self, counters: Counters) -> None:
        slot = [SlotCheck("s", 2)]
        assert (await counters.admit([], slot, "t1")).ok
        assert (await counters.admit([], slot, "t2")).used == (1,)
        refused = await counters.admit([WindowCheck("w", 10, 1)], slot, "t3")
        assert not refused.ok and refused.refused == 1 and refused.retry_after_s == 1.0
        assert refused.used == (0, 2)
        assert await counters.window_total("w") == 0  # the window was not charged
        await counters.record([], ["s"], "t1")
        await counters.record([], ["s"], "t1")  # twice: harmless
        assert await counters.slots_in_use("s") == 1
        assert (await counters.admit([], slot, "t3")).ok

    async def test_dead_holders_expire(self, counters: Counters, clock: FakeClock) -> None:
        slot = [SlotCheck("s", 1)]
        assert (await counters.admit([], slot, "dead")).ok
        assert not (await counters.admit([], slot, "t2")).ok
        clock.advance(901)  # the default slot TTL is 900 s
        assert await counters.slots_in_use("s") == 0
        assert (await counters.admit([], slot, "t2")).ok

    async def test_slots_expire_in_the_order_they_were_taken(
        self, counters: Counters, clock: FakeClock
    ) -> None:
        slot = [SlotCheck("s", 100)]
        for i in range(10):  # one slot a minute; those of t2, t5 and t8 given back
            assert (await counters.admit([], slot, f"t{i}")).ok
            clock.advance(60)
        for i in (2, 5, 8):
            await counters.record([], ["s"], f"t{i}")
        assert await counters.slots_in_use("s") == 7
        clock.advance(541)  # t0..t4 (taken at 0-240 s) are over 900 s old now: t0, t1, t3, t4 expire
        assert await counters.slots_in_use("s") == 3  # t6, t7, t9
        clock.advance(300)
        assert await counters.slots_in_use("s") == 0


async def test_redis_keys_are_namespaced_and_expire(counters: Counters) -> None:
    if not isinstance(counters, RedisCounters):
        pytest.skip("Redis only")
    await counters.seed("b", 0, 3_600)
    await counters.reserve([BudgetHold("b", 100, 3_600)], "h", 1, 60)
    await counters.admit([WindowCheck("w", 10, 1)], [SlotCheck("s", 1)], "t")
    keys = sorted(k.decode() for k in await counters.redis.keys(counters.prefix + "*"))
    assert keys == [counters.prefix + k for k in ("b", "b:holds", "s", "w")]
    for key in keys:
        assert 0 < await counters.redis.ttl(key) <= 3_600


async def test_redis_reloads_flushed_scripts(counters: Counters) -> None:
    if not isinstance(counters, RedisCounters):
        pytest.skip("Redis only")
    assert (await counters.admit([WindowCheck("w", 10, 1)], [], "t")).ok
    await counters.redis.script_flush()
    assert (await counters.admit([WindowCheck("w", 10, 1)], [], "t")).used == (1,)


async def test_redis_calls_made_together_share_round_trips(counters: Counters) -> None:
    if not isinstance(counters, RedisCounters):
        pytest.skip("Redis only")
    # 50 requests at once against a limit of 30: exactly 30 admitted, in far fewer round trips.
    results = await asyncio.gather(
        *(counters.admit([WindowCheck("w", 30, 1)], [], f"t{i}") for i in range(50))
    )
    assert sum(r.ok for r in results) == 30
    assert counters.round_trips < 50
    assert await counters.window_total("w") == 30


async def test_redis_pipelined_calls_fail_alone_and_survive_a_script_flush(counters: Counters) -> None:
    if not isinstance(counters, RedisCounters):
        pytest.skip("Redis only")
    from redis.exceptions import ResponseError

    assert (await counters.admit([WindowCheck("w", 10, 1)], [], "t")).ok  # scripts loaded
    await counters.redis.script_flush()
    malformed = counters._run("admit", [counters.prefix + "x"], ["not a time"])
    results = await asyncio.gather(
        *(counters.admit([WindowCheck("w", 10, 1)], [], f"t{i}") for i in range(5)),
        malformed,
        return_exceptions=True,
    )
    assert all(r.ok for r in results[:5])
    assert isinstance(results[5], ResponseError)
    assert await counters.window_total("w") == 6


async def test_redis_calls_waiting_for_a_cancelled_pipeline_are_cancelled(counters: Counters) -> None:
    if not isinstance(counters, RedisCounters):
        pytest.skip("Redis only")
    calls = [asyncio.ensure_future(counters.admit([WindowCheck("w", 9, 1)], [], f"t{i}")) for i in range(4)]
    await asyncio.sleep(0)  # the first is on the wire, the rest wait for the pipeline
    assert counters._pipelines._task is not None
    counters._pipelines._task.cancel()  # as when the loop shuts down
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
    assert results[0].ok
    assert all(isinstance(r, asyncio.CancelledError) for r in results[1:])


def test_a_memory_window_keeps_its_sum_and_oldest_bucket_through_any_changes() -> None:
    import random

    from cloudgate.governance.counters import _MemWindow

    rng = random.Random(3)
    window = _MemWindow()
    plain: dict[int, int] = {}
    first = 0
    for _ in range(20_000):
        if rng.random() < 0.05:
            first += rng.randrange(1, 4)
            window.expire(first)
            plain = {b: v for b, v in plain.items() if b >= first}
        else:
            bucket = first + rng.randrange(0, 60)
            amount = rng.randrange(-50, 100)
            window.add(bucket, amount)
            value = plain.get(bucket, 0) + amount
            if value > 0:
                plain[bucket] = value
            else:
                plain.pop(bucket, None)
        assert window.buckets == plain
        assert window.total == sum(plain.values())
        assert window.oldest == min(plain, default=None)
