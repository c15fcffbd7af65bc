"""Transport: the idle and total timeouts of streamed bodies, against a real pacing server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from cloudgate.providers.transport import Timeouts, Transport, UpstreamTimeout
from cloudgate.util.server import serving


async def paced(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`GET /?every=S&count=N&stall_after=K&stall=T`: N chunks S seconds apart, a T-second
    silence after chunk K."""
    if scope["type"] != "http":
        return
    query = {k: float(v[0]) for k, v in parse_qs(scope["query_string"].decode()).items()}
    every, count = query.get("every", 0.0), int(query.get("count", 1))
    stall_after, stall = int(query.get("stall_after", -1)), query.get("stall", 0.0)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(count):
        await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
        await asyncio.sleep(stall if i == stall_after else every)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serving(paced) as srv:
        yield srv.url


async def read_all(url: str, timeouts: Timeouts, pause: float = 0.0) -> list[bytes]:
    transport = Transport(timeouts=timeouts)
    try:
        resp = await transport.request("GET", url, headers={})
        chunks = []
        async for chunk in resp.iter_chunks():
            chunks.append(chunk)
            if pause:
                await asyncio.sleep(pause)  # a slow consumer: its time is not upstream silence
        return chunks
    finally:
        await transport.close()


async def test_a_stream_longer_than_the_idle_limit_but_never_silent_passes(server: str) -> None:
    chunks = await read_all(f"{server}/?every=0.05&count=16", Timeouts(idle=0.3, total=None))
    assert b"".join(chunks).count(b"chunk") == 16  # 0.8 s in all, never 0.3 s without a byte


async def test_a_silence_past_the_idle_limit_times_out_promptly(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as caught:
        await read_all(f"{server}/?every=0.02&count=5&stall_after=1&stall=1", Timeouts(idle=0.3, total=None))
    assert caught.value.phase == "idle" and caught.value.seconds == 0.3
    assert time.monotonic() - started < 1.5


async def test_the_total_limit_ends_a_stream_that_never_goes_quiet(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as caught:
        await read_all(f"{server}/?every=0.05&count=24", Timeouts(idle=5, total=0.5))
    assert caught.value.phase == "total"
    assert 0.4 < time.monotonic() - started < 2.0


async def test_a_slow_consumer_does_not_count_as_upstream_silence(server: str) -> None:
    chunks = await read_all(f"{server}/?every=0&count=4", Timeouts(idle=0.2, total=None), pause=0.35)
    assert b"".join(chunks).count(b"chunk") == 4


async def test_an_outside_cancel_stays_a_cancel(server: str) -> None:
    task = asyncio.ensure_future(read_all(f"{server}/?every=0.05&count=14", Timeouts(idle=0.2, total=None)))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
