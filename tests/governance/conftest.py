"""Counter backends for the governance tests: every test runs in memory, in SQLite and against Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from cloudgate.governance.counters import Counters, MemoryCounters, RedisCounters
from cloudgate.governance.sqlite_counters import SQLiteCounters

T0 = 1_750_000_000.0  # a whole second, so bucket arithmetic in the tests stays readable


class FakeClock:
    """A wall clock that only moves when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def redis_url() -> str:
    """The test Redis URL (`scripts/services.sh` prints it); skip without one, fail in CI."""
    url = os.environ.get("CLOUDGATE_TEST_REDIS_URL")
    if not url:
        message = "CLOUDGATE_TEST_REDIS_URL is not set (run scripts/services.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


async def open_redis_counters(prefix: str, clock: FakeClock) -> RedisCounters:
    """Redis counters on their own connection pool, or skip/fail when Redis does not answer."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    counters = RedisCounters.from_url(redis_url(), prefix=prefix, clock=clock)
    try:
        await counters.redis.ping()
    except (RedisConnectionError, OSError) as exc:
        await counters.aclose()
        if os.environ.get("CI"):
            pytest.fail(f"Redis does not answer: {exc}")
        pytest.skip(f"Redis does not answer: {exc}")
    return counters


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prefix() -> str:
    return f"cloudgate:test:{uuid.uuid4().hex}:"


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def counters(
    request: pytest.FixtureRequest, clock: FakeClock, prefix: str, tmp_path: Path
) -> AsyncIterator[Counters]:
    if request.param == "memory":
        yield MemoryCounters(clock=clock)
        return
    if request.param == "sqlite":
        sqlite = SQLiteCounters(tmp_path / "counters.db", clock=clock)
        try:
            yield sqlite
        finally:
            await sqlite.aclose()
        return
    backend = await open_redis_counters(prefix, clock)
    try:
        yield backend
    finally:
        await backend.clear()
        await backend.aclose()


@pytest.fixture
def redis_test_url() -> str:
    return redis_url()


@pytest.fixture
async def open_redis(
    clock: FakeClock, prefix: str, redis_test_url: str
) -> AsyncIterator[Callable[[], Awaitable[RedisCounters]]]:
    """Opens Redis counters on separate connection pools sharing the test's prefix (two
    gateway processes, as far as Redis can tell); deletes the prefix's keys afterwards."""
    opened: list[RedisCounters] = []

    async def open_one() -> RedisCounters:
        opened.append(await open_redis_counters(prefix, clock))
        return opened[-1]

    yield open_one
    if opened:
        await opened[0].clear()
    for backend in opened:
        await backend.aclose()
