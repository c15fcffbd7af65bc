"""The upstream HTTP client behind a small interface: pooled keep-alive connections.

The client itself is `providers/http1.py`, written for this job because the general-purpose
clients cost more per request than everything cloudgate does for governance (see
docs/decisions/0002-aiohttp-upstream-client.md and 0031-lean-upstream-client.md); keeping it
behind `Transport` means a change of client touches these two files only.

Timeouts, all in seconds:
- connect: TCP (and TLS) connection establishment;
- first_byte: from sending the request to receiving the response headers;
- idle: longest silence between two chunks of the response body;
- total: the whole exchange, headers and body (None for no limit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from multidict import CIMultiDict

from cloudgate.providers.http1 import Client, ConnectFailed, ConnectionLost, ConnectTimeout, Response


@dataclass(slots=True, frozen=True)
class Timeouts:
    """Upstream timeouts in seconds; see the module docstring."""

    connect: float = 10.0
    first_byte: float = 120.0
    idle: float = 120.0
    total: float | None = 900.0


class TransportError(Exception):
    """The upstream could not be reached or did not answer in time."""


class UpstreamConnectError(TransportError):
    """No connection could be made (refused, DNS, TLS)."""


class UpstreamTimeout(TransportError):
    """A timeout fired; `phase` says which: connect, first_byte, idle or total."""

    def __init__(self, phase: str, seconds: float) -> None:
        super().__init__(f"upstream {phase.replace('_', ' ')} timeout after {seconds:g}s")
        self.phase = phase
        self.seconds = seconds


class UpstreamDisconnected(TransportError):
    """The upstream closed the connection in the middle of the response body."""


class UpstreamResponse:
    """Status and headers have arrived; the body is read with `read()` or `iter_chunks()`.

    Always `release()` it (or exhaust it) so the connection returns to the pool.
    """

    __slots__ = ("_deadline", "_resp", "_timeouts", "headers", "status")

    def __init__(self, resp: Response, timeouts: Timeouts, deadline: float | None) -> None:
        self._resp = resp
        self._timeouts = timeouts
        self._deadline = deadline
        self.status: int = resp.status
        self.headers: CIMultiDict[str] = resp.headers

    def _budget(self) -> tuple[float, str]:
        idle = self._timeouts.idle
        if self._deadline is None:
            return idle, "idle"
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise UpstreamTimeout("total", self._timeouts.total or 0)
        return (left, "total") if left < idle else (idle, "idle")

    async def read(self) -> bytes:
        """The whole body, under one timeout (the idle limit, or what is left of the total)."""
        budget, phase = self._budget()
        try:
            async with asyncio.timeout(budget):
                return await self._resp.read()
        except TimeoutError:
            seconds = self._timeouts.idle if phase == "idle" else (self._timeouts.total or 0)
            raise UpstreamTimeout(phase, seconds) from None
        except ConnectionLost as exc:
            raise UpstreamDisconnected(f"upstream closed the connection mid-body: {exc}") from exc
        finally:
            self._resp.close()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive, with the idle and total timeouts applied per read."""
        resp = self._resp
        watch = _ReadWatch(self)
        try:
            while True:
                watch.reading()
                try:
                    chunk = await resp.readchunk()
                except asyncio.CancelledError:
                    if watch.expired():
                        raise UpstreamTimeout(watch.phase, watch.limit) from None
                    raise
                except ConnectionLost as exc:
                    raise UpstreamDisconnected(f"upstream closed the stream: {exc}") from exc
                watch.paused()  # the chunk is with the consumer: its time does not count
                if not chunk:
                    return
                yield chunk
        finally:
            watch.stop()
            resp.close()

    def release(self) -> None:
        """Done with the response: a body not read to its end drops the connection."""
        self._resp.close()

    def close(self) -> None:
        """Drop the connection: used when the caller went away mid-stream."""
        self._resp.close()


class _ReadWatch:
    """The idle and total timeouts of a streamed body, with one lazy timer per stream.

    A read notes when it started and how long it may take; the timer, when it fires, expires
    the read if it is past that, and otherwise sets itself again for the read's own limit. A
    timer rescheduled around every chunk cost more than the rest of a chunk's relay, and
    streams run to thousands of chunks. Expiry cancels the reading task, as `asyncio.timeout`
    does, and `expired()` tells that cancellation from any other.
    """

    __slots__ = (
        "_allowed",
        "_cancelling",
        "_due",
        "_expired",
        "_handle",
        "_loop",
        "_response",
        "_since",
        "_task",
        "limit",
        "phase",
    )

    def __init__(self, response: UpstreamResponse) -> None:
        self._response = response
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._cancelling = self._task.cancelling() if self._task is not None else 0
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0  # when the timer fires
        self._expired = False
        self._since: float | None = None  # when the current read started; None between reads
        self._allowed = 0.0  # how long the current read may take
        self.limit = 0.0  # the configured limit that applies, for the error message
        self.phase = "idle"

    def reading(self) -> None:
        """A read starts now (raises UpstreamTimeout if the total time is already spent)."""
        budget, self.phase = self._response._budget()
        timeouts = self._response._timeouts
        self.limit = timeouts.idle if self.phase == "idle" else (timeouts.total or 0)
        now = self._loop.time()
        self._since, self._allowed = now, budget
        due = now + budget
        if self._handle is None or self._due > due:
            self._arm(due)

    def paused(self) -> None:
        """The read returned."""
        self._since = None

    def _arm(self, due: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._due = due
        self._handle = self._loop.call_at(due, self._check)

    def _check(self) -> None:
        self._handle = None
        since = self._since
        if since is None:
            return  # between reads: the next read sets the timer again
        due = since + self._allowed
        if self._loop.time() < due:
            self._arm(due)
            return
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    def expired(self) -> bool:
        """Whether the cancellation being handled is this watch's (then it is absorbed)."""
        if not self._expired or self._task is None:
            return False
        return self._task.uncancel() <= self._cancelling

    def stop(self) -> None:
        """No more reads."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class Transport:
    """A pooled HTTP client for upstream calls."""

    def __init__(self, *, limit: int = 1000, timeouts: Timeouts | None = None) -> None:
        self._limit = limit
        self.timeouts = timeouts or Timeouts()
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_client(self) -> Client:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # connections belong to one loop
            if self._client is not None:
                self._client.close()
            self._client = Client(self._limit)
            self._loop = loop
        return self._client

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeouts: Timeouts | None = None,
    ) -> UpstreamResponse:
        """Send a request and wait for the response headers (connect and first-byte timeouts)."""
        t = timeouts or self.timeouts
        client = self._get_client()
        deadline = time.monotonic() + t.total if t.total else None
        wait = t.first_byte if deadline is None else min(t.first_byte, t.total or t.first_byte)
        phase = "first_byte" if wait == t.first_byte else "total"
        try:
            async with asyncio.timeout(wait):
                resp = await client.request(method, url, headers, body, connect_timeout=t.connect)
        except TimeoutError:
            raise UpstreamTimeout(phase, wait) from None
        except ConnectTimeout as exc:
            raise UpstreamTimeout("connect", t.connect) from exc
        except ConnectFailed as exc:
            raise UpstreamConnectError(str(exc)) from exc
        except ConnectionLost as exc:
            raise UpstreamDisconnected(f"upstream connection failed: {exc}") from exc
        return UpstreamResponse(resp, t, deadline)

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._client is not None:
            self._client.close()
            self._client = None
