"""Rate limits over every scope of a principal, in memory and in Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from cloudgate.governance.counters import Counters
from cloudgate.governance.ratelimits import LimitName, RateLimited, RateLimiter
from cloudgate.governance.types import Limits, Principal, Scope, ScopedLimits

if TYPE_CHECKING:
    from conftest import FakeClock  # tests/governance/conftest.py


def principal(
    key: Limits | None = None, user: Limits | None = None, team: Limits | None = None, key_id: str = "k1"
) -> Principal:
    scoped = []
    if key:
        scoped.append(ScopedLimits(Scope.KEY, key_id, key))
    if user:
        scoped.append(ScopedLimits(Scope.USER, "u1", user))
    if team:
        scoped.append(ScopedLimits(Scope.TEAM, "t1", team))
    return Principal(
        key_id=key_id, key_prefix="cg-" + key_id, user_id="u1", team_id="t1", limits=tuple(scoped)
    )


async def refused(limiter: RateLimiter, who: Principal, estimate: int = 0) -> RateLimited:
    with pytest.raises(RateLimited) as info:
        await limiter.admit(who, estimate)
    return info.value


async def test_no_limits_no_counters(counters: Counters) -> None:
    limiter = RateLimiter(counters)
    admission = await limiter.admit(principal(), 10**9)
    assert admission.statuses == ()
    await limiter.finish(admission, 10**9, 10**9)


async def test_requests_per_minute_slides(counters: Counters, clock: FakeClock) -> None:
    limiter = RateLimiter(counters)
    who = principal(key=Limits(requests_per_minute=2))
    first = await limiter.admit(who, 10)
    status = first.tightest(LimitName.REQUESTS)
    assert status is not None and status.remaining == 1 and status.limit == 2
    assert status.reset_at == datetime.fromtimestamp(clock() + 60, UTC)
    clock.advance(10)
    assert (await limiter.admit(who, 10)).tightest(LimitName.REQUESTS).remaining == 0  # type: ignore[union-attr]
    clock.advance(5)  # t0+15
    error = await refused(limiter, who)
    assert (error.scope, error.scope_id, error.limit_name, error.limit) == (
        Scope.KEY,
        "k1",
        LimitName.REQUESTS,
        2,
    )
    assert error.retry_after_s == 45 and error.retry_after_header == "45"
    assert error.remaining == 0
    clock.advance(45)  # t0+60: the first request has left the window
    await limiter.admit(who, 10)
    clock.advance(5)  # t0+65: the second leaves at t0+70
    assert (await refused(limiter, who)).retry_after_s == 5


async def test_fractional_retry_after_rounds_up_in_the_header(counters: Counters, clock: FakeClock) -> None:
    limiter = RateLimiter(counters)
    who = principal(key=Limits(requests_per_minute=1))
    await limiter.admit(who, 0)
    clock.advance(59.25)
    error = await refused(limiter, who)
    assert error.retry_after_s == pytest.approx(0.75)
    assert error.retry_after_header == "1"


async def test_tightest_scope_wins(counters: Counters) -> None:
    limiter = RateLimiter(counters)
    who = principal(
        key=Limits(requests_per_minute=100),
        user=Limits(requests_per_minute=50),
        team=Limits(requests_per_minute=2),
    )
    admission = await limiter.admit(who, 0)
    tightest = admission.tightest(LimitName.REQUESTS)
    assert tightest is not None and (tightest.scope, tightest.remaining) == (Scope.TEAM, 1)
    await limiter.admit(who, 0)
    error = await refused(limiter, who)
    assert (error.scope, error.scope_id) == (Scope.TEAM, "t1")
    # another key of the same team is held by the team's limit too
    assert (
        await refused(limiter, principal(team=Limits(requests_per_minute=2), key_id="k2"))
    ).scope == Scope.TEAM
    # a refused request counted nowhere
    assert await counters.window_total("rl:key:k1:requests") == 2


async def test_input_tokens_estimated_then_corrected(counters: Counters, clock: FakeClock) -> None:
    limiter = RateLimiter(counters)
    who = principal(user=Limits(input_tokens_per_minute=1_000))
    admission = await limiter.admit(who, 600)
    status = admission.tightest(LimitName.INPUT_TOKENS)
    assert status is not None and status.remaining == 400
    error = await refused(limiter, who, 600)
    assert (error.scope, error.limit_name, error.remaining, error.retry_after_s) == (
        Scope.USER,
        LimitName.INPUT_TOKENS,
        400,
        60,
    )
    clock.advance(3)
    await limiter.finish(admission, 150, 0)  # the estimate was 450 too many
    assert await counters.window_total("rl:user:u1:input-tokens") == 150
    await limiter.admit(who, 600)


async def test_output_tokens_counted_at_the_end(counters: Counters, clock: FakeClock) -> None:
    limiter = RateLimiter(counters)
    who = principal(key=Limits(output_tokens_per_minute=1_000))
    first = await limiter.admit(who, 100)
    second = await limiter.admit(who, 100)  # admitted while the first is still running
    clock.advance(10)
    await limiter.finish(first, 100, 700)
    await limiter.finish(second, 100, 300)
    error = await refused(limiter, who)
    assert (error.limit_name, error.remaining, error.retry_after_s) == (LimitName.OUTPUT_TOKENS, 0, 60)
    clock.advance(60)
    await limiter.admit(who, 100)


async def test_concurrent_requests(counters: Counters) -> None:
    limiter = RateLimiter(counters)
    who = principal(key=Limits(max_concurrent=2), team=Limits(requests_per_minute=100))
    first = await limiter.admit(who, 0)
    await limiter.admit(who, 0)
    error = await refused(limiter, who)
    assert (error.limit_name, error.limit, error.remaining, error.retry_after_s) == (
        LimitName.CONCURRENT,
        2,
        0,
        1.0,
    )
    await limiter.finish(first, 0, 0)
    await limiter.finish(first, 0, 0)  # twice: still only one slot given back
    third = await limiter.admit(who, 0)
    concurrent = third.tightest(LimitName.CONCURRENT)
    assert concurrent is not None and concurrent.remaining == 0
    await refused(limiter, who)


async def test_parallel_admissions_respect_the_limit(counters: Counters) -> None:
    limiter = RateLimiter(counters)
    who = principal(key=Limits(requests_per_minute=30, max_concurrent=20))
    results = await asyncio.gather(*(limiter.admit(who, 10) for _ in range(50)), return_exceptions=True)
    admitted = [r for r in results if not isinstance(r, BaseException)]
    assert len(admitted) == 20
    assert all(isinstance(r, RateLimited) for r in results if isinstance(r, BaseException))
    await asyncio.gather(*(limiter.finish(a, 10, 10) for a in admitted))
    results = await asyncio.gather(*(limiter.admit(who, 10) for _ in range(50)), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 10  # 30 per minute in all


async def test_longest_wait_is_reported(counters: Counters, clock: FakeClock) -> None:
    limiter = RateLimiter(counters)
    await limiter.admit(principal(team=Limits(requests_per_minute=1)), 0)
    clock.advance(40)
    who = principal(key=Limits(requests_per_minute=1), team=Limits(requests_per_minute=1))
    await limiter.admit(principal(key=Limits(requests_per_minute=1)), 0)
    error = await refused(limiter, who)
    # the team frees up in 20 s, the key in 60 s: retrying before 60 s would fail again
    assert (error.scope, error.retry_after_s) == (Scope.KEY, 60)


async def test_changed_limits_apply_at_once_to_the_same_key(counters: Counters) -> None:
    # The limiter works a principal's limits out once and keeps the result: a key whose limits
    # an administrator changed comes back as a principal with other limits, and those count.
    limiter = RateLimiter(counters)
    await limiter.admit(principal(key=Limits(requests_per_minute=5)), 0)
    tighter = principal(key=Limits(requests_per_minute=1))
    assert (await refused(limiter, tighter)).limit == 1  # the same counter: 1 already counted
    looser = principal(key=Limits(requests_per_minute=3))
    assert (await limiter.admit(looser, 0)).tightest(LimitName.REQUESTS).remaining == 1  # type: ignore[union-attr]
