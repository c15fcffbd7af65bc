"""Group commit: calls made while a batch is under way wait, then go together in the next one.

The shared counters use it twice: SQLite runs a batch in one transaction in its thread, Redis
sends a batch as one pipeline. Either way the fixed cost of a trip (a thread hand-off, a round
trip) is paid once per batch instead of once per call, and a busy gateway makes large batches
by itself. `send` gets the items of a batch and returns one outcome per item, `(True, value)` or
`(False, exception)`, so one call's failure stays with that call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from cloudgate.util.tasks import spawn

T = TypeVar("T")
Outcome = tuple[bool, Any]  # (True, the result) or (False, the exception to raise)


class Batcher(Generic[T]):
    """Queues items and sends them in batches, one batch at a time, from a task of its own."""

    def __init__(self, send: Callable[[list[T]], Awaitable[list[Outcome]]], *, name: str) -> None:
        self._send = send
        self._name = name
        self._queue: list[tuple[T, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """Whether a batch is being sent (or items wait for the next)."""
        return self._task is not None

    def submit(self, item: T) -> asyncio.Future[Any]:
        """Queue `item`; the future gets its outcome once its batch is sent."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._task is None:
            self._task = spawn(self._drain(), name=self._name)
            self._task.add_done_callback(self._drained)
        return done

    async def wait(self) -> None:
        """Return once everything queued so far has been sent."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    outcomes = await self._send([item for item, _ in batch])
                except Exception as exc:  # the trip itself failed: every item in it did
                    outcomes = [(False, exc)] * len(batch)
                except BaseException:  # cancelled (the loop is closing): so are its items
                    for _, done in batch:
                        done.cancel()
                    raise
                for (_, done), (ok, value) in zip(batch, outcomes, strict=True):
                    if done.done():  # its caller went away
                        continue
                    if ok:
                        done.set_result(value)
                    else:
                        done.set_exception(value)
        finally:
            self._task = None

    def _drained(self, task: asyncio.Task[None]) -> None:
        # A task cancelled before its first step never runs its body (nor its `finally`).
        if self._task is task:
            self._task = None
        if task.cancelled() and self._task is None:  # nobody will send what still waits
            for _, done in self._queue:
                done.cancel()
            self._queue = []
