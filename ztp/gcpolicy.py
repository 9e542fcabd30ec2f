"""Garbage collection for a server whose heap is mostly long-lived: leases, inventory, templates, history.

CPython's collector now and then runs a full collection over every tracked object, and it runs one each
time the long-lived heap has grown by a quarter. A DHCP storm grows that heap fast (a lease, a device
status and their addresses per new client), so the pauses came at ever larger heaps: tens of milliseconds
each, which was most of the p99 reply latency under load and about 7 % of the CPU per DORA (measured with
perfdhcp at 3,000 DORA/s: p99 140-600 ms with the default collector, 16-80 ms with none).

Here, every `every` seconds, the young generations are collected (cyclic garbage freed: cheap, they hold
only the last moments' objects) and the survivors are frozen (`gc.freeze`, a list splice: moved to the
permanent generation, which collections skip), so no collection looks at more than about a second's worth
of objects. Frozen objects are still freed by reference counting when dropped; only garbage *cycles* among
them wait, so once per `full_every`, when no storm is under way, everything is unfrozen and collected.
(Collecting the whole unfrozen heap every 2 s instead still paused 40-75 ms at 2,000 DORA/s.)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("ztp.gc")


async def keep_heap_frozen(*, every: float = 1.0, full_every: float = 600.0,
                           busy: Callable[[], bool] = lambda: False) -> None:
    """Run until cancelled: collect the young generations and freeze the survivors every `every` seconds, and
    collect the whole heap every `full_every` seconds (postponed while `busy()`)."""
    gc.collect()
    gc.freeze()
    full_at = time.monotonic() + full_every
    while True:
        await asyncio.sleep(every)
        gc.collect(1)  # generations 0 and 1: objects from the last moments
        if time.monotonic() >= full_at and not busy():
            started = time.perf_counter()
            gc.unfreeze()
            freed = gc.collect()
            log.debug("gc: full collection freed %d objects in %.1f ms", freed,
                      (time.perf_counter() - started) * 1000)
            full_at = time.monotonic() + full_every
        gc.freeze()
