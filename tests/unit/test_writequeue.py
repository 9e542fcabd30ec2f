"""ztp.leases.store.writequeue: items from the loop to a writer thread, in order, in batches."""

from __future__ import annotations

import threading

from ztp.leases.store.writequeue import WriteQueue


def test_take_returns_everything_queued_in_order_then_none_after_close() -> None:
    q: WriteQueue[int] = WriteQueue()
    for i in range(5):
        q.put(i)
    assert q.take() == [0, 1, 2, 3, 4]
    q.put(5)
    q.close()
    q.put(6)  # after close: never handed out
    assert q.take() == [5]
    assert q.take() is None
    assert q.take() is None


def test_close_with_nothing_queued_ends_the_consumer() -> None:
    q: WriteQueue[int] = WriteQueue()
    q.close()
    assert q.take() is None


def test_a_waiting_consumer_gets_items_from_another_thread() -> None:
    q: WriteQueue[int] = WriteQueue()
    got: list[int] = []

    def consume() -> None:
        while (batch := q.take()) is not None:
            got.extend(batch)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(1000):
        q.put(i)
    q.close()
    t.join(timeout=10)
    assert not t.is_alive() and got == list(range(1000))
