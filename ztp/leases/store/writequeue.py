"""What the event loop hands a store's writer thread: items in, batches out, no Python-level lock.

The PostgreSQL lease store writes on a thread (the SQLite lease store writes in a
process of its own, `ztp.rowwriter`). They group-commit: everything queued while a transaction is being
written goes into the next one. The loop's side used to be a `threading.Condition` (`with cond: append;
notify()`): Python code taking two locks per lease, about a twentieth of the loop's GIL time in a DHCP
storm. `queue.SimpleQueue` is C: `put` never blocks and wakes the writer itself.
"""

from __future__ import annotations

import queue
from typing import Generic, TypeVar

T = TypeVar("T")

_CLOSE = object()  # put by close(): everything before it is still handed out


class WriteQueue(Generic[T]):
    """FIFO from any thread to one consumer thread, taken in batches."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = False

    def put(self, item: T) -> None:
        """Queue `item` (any thread, never blocks)."""
        self._queue.put(item)

    def close(self) -> None:
        """No more items: `take` hands out what was queued before, then returns None."""
        self._queue.put(_CLOSE)

    def take(self) -> list[T] | None:
        """Wait for at least one item, then take every item queued (in order); None once closed and drained."""
        if self._closed:
            return None
        get = self._queue.get_nowait
        batch: list[T] = []
        item = self._queue.get()
        while True:
            if item is _CLOSE:
                self._closed = True
                return batch or None
            batch.append(item)  # type: ignore[arg-type]
            try:
                item = get()
            except queue.Empty:
                return batch
