"""Garbage collection for a server whose heap is mostly long-lived: leases, inventory, templates, history.

CPython's collector now and then runs a full collection over every tracked object, and it runs one each
time the long-lived heap has grown by a quarter. A DHCP storm grows that heap fast (a lease, a device
status and their addresses per new client), so the pauses came at ever larger heaps: tens of milliseconds
each, which was most of the p99 reply latency under load and about 7 % of the CPU per DORA (measured with
perfdhcp at 3,000 DORA/s: p99 140-600 ms with the default collector, 16-80 ms with none).

Here, every `every` seconds, the youngest generation is collected (cyclic garbage freed: it holds only the
last moments' objects) and everything else is frozen (`gc.freeze`, a list splice: moved to the permanent
generation, which collections skip), so no collection looks at more than `every` seconds' worth of objects.
Frozen objects are still freed by reference counting when dropped; only garbage *cycles* among them wait, so
once per `full_every`, when no storm is under way, everything is unfrozen and collected.
(Collecting the whole unfrozen heap every 2 s instead still paused 40-75 ms at 2,000 DORA/s.)

Why every 0.1 s and only generation 0 (issue 14): a DHCP storm's survivors (about 20 tracked objects per
DORA) fill generation 2 again after each freeze, and CPython runs a full collection of the unfrozen heap each
time it has grown by a quarter since the last one. Frozen once a second, those were collections over up to a
second's survivors (~50,000 objects at 4,500 DORA/s): a 30-65 ms pause about once a second, the loop's
worst lag 65-105 ms and perfdhcp's p99 120-250 ms. Frozen every 0.1 s: no collection over 4.5 ms, the worst
lag 9-20 ms, p99 16-55 ms (same rate, same machine). The young collections under that load found no
garbage cycles at all (0 objects collected), so freezing the survivors without collecting them first loses
nothing the full collection would not find.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("ztp.gc")


async def keep_heap_frozen(*, every: float = 0.1, full_every: float = 600.0,
                           busy: Callable[[], bool] = lambda: False) -> None:
    """Run until cancelled: collect the youngest generation and freeze the survivors every `every` seconds, and
    collect the whole heap every `full_every` seconds (postponed while `busy()`)."""
    gc.collect()
    gc.freeze()
    full_at = time.monotonic() + full_every
    while True:
        await asyncio.sleep(every)
        gc.collect(0)  # the last moments' objects; the rest is at most `every` seconds old
        if time.monotonic() >= full_at and not busy():
            started = time.perf_counter()
            gc.unfreeze()
            freed = gc.collect()
            log.debug("gc: full collection freed %d objects in %.1f ms", freed,
                      (time.perf_counter() - started) * 1000)
            full_at = time.monotonic() + full_every
        gc.freeze()
