"""ztp.gcpolicy: the youngest generation collected and the rest frozen each round, the whole heap now and
then, not in storms."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from ztp.gcpolicy import keep_heap_frozen


@pytest.fixture(autouse=True)
def _unfreeze_after() -> Iterator[None]:
    yield
    gc.unfreeze()


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_survivors_are_frozen_and_young_cycles_still_freed() -> None:
    kept = [Cycle() for _ in range(1000)]  # long-lived: end up in the permanent generation

    async def run() -> tuple[int, int]:
        task = asyncio.create_task(keep_heap_frozen(every=0.01, full_every=3600))
        await asyncio.sleep(0.05)
        frozen = gc.get_freeze_count()
        for _ in range(1000):
            Cycle()  # garbage cycles made after the freeze: the next round's young collection frees them
        await asyncio.sleep(0.05)
        task.cancel()
        return frozen, sum(1 for o in _all_objects() if type(o) is Cycle)

    frozen, live_cycles = asyncio.run(run())
    assert frozen >= len(kept)
    assert live_cycles == len(kept)  # the thousand made after the freeze were freed, ours kept
    assert all(k.me is k for k in kept)


def test_the_full_collection_waits_while_busy_and_frees_frozen_cycles() -> None:
    busy = [True]

    async def run() -> tuple[int, int]:
        task = asyncio.create_task(keep_heap_frozen(every=0.01, full_every=0.02, busy=lambda: busy[0]))
        await asyncio.sleep(0.03)
        junk = [Cycle() for _ in range(500)]
        await asyncio.sleep(0.03)  # frozen while still referenced
        del junk  # now frozen garbage cycles: only a full collection can free them
        await asyncio.sleep(0.06)
        while_busy = sum(1 for o in _all_objects() if type(o) is Cycle)
        busy[0] = False
        await asyncio.sleep(0.06)
        task.cancel()
        return while_busy, sum(1 for o in _all_objects() if type(o) is Cycle)

    while_busy, after = asyncio.run(run())
    assert while_busy >= 500  # postponed during the storm
    assert after == 0


def _all_objects() -> list[object]:
    """Tracked objects, frozen ones included."""
    gc.unfreeze()
    try:
        return gc.get_objects()
    finally:
        gc.freeze()
