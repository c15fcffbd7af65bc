"""The group-commit helper the shared counters send their calls through."""

from __future__ import annotations

import asyncio

import pytest

from cloudgate.util.batching import Batcher, Outcome


class Recorder:
    """A `send` that records its batches and answers each item by a rule, after a moment."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail_trip = False

    async def __call__(self, batch: list[int]) -> list[Outcome]:
        self.batches.append(batch)
        await asyncio.sleep(0.01)
        if self.fail_trip:
            raise ConnectionError("trip failed")
        return [(False, ValueError(f"odd {i}")) if i % 2 else (True, i * 10) for i in batch]


async def test_items_submitted_while_a_batch_is_sent_go_together_in_the_next() -> None:
    send = Recorder()
    batcher: Batcher[int] = Batcher(send, name="test")
    first = batcher.submit(0)
    assert batcher.busy
    await asyncio.sleep(0.005)  # the first batch is on its way
    later = [batcher.submit(i) for i in (2, 3, 4)]
    assert await first == 0
    results = await asyncio.gather(*later, return_exceptions=True)
    assert send.batches == [[0], [2, 3, 4]]
    assert results[0] == 20 and results[2] == 40
    assert isinstance(results[1], ValueError)  # one item's failure stays with it
    await batcher.wait()
    assert not batcher.busy


async def test_a_failed_trip_fails_every_item_in_it_and_the_next_batch_still_goes() -> None:
    send = Recorder()
    send.fail_trip = True
    batcher: Batcher[int] = Batcher(send, name="test")
    failed = await asyncio.gather(batcher.submit(2), batcher.submit(4), return_exceptions=True)
    assert all(isinstance(f, ConnectionError) for f in failed)
    send.fail_trip = False
    assert await batcher.submit(6) == 60


@pytest.mark.parametrize("started", [False, True], ids=["before-it-starts", "while-sending"])
async def test_cancelling_the_sender_cancels_the_waiting_items(started: bool) -> None:
    batcher: Batcher[int] = Batcher(Recorder(), name="test")
    items = [batcher.submit(i) for i in (2, 4)]
    if started:
        await asyncio.sleep(0.001)
        items.append(batcher.submit(6))  # waiting for the next batch
    assert batcher._task is not None
    batcher._task.cancel()  # as when the loop shuts down
    results = await asyncio.wait_for(asyncio.gather(*items, return_exceptions=True), 5)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert not batcher.busy
    assert await batcher.submit(8) == 80  # and it still works afterwards
