"""Bounded tables kept in least-recently-seen order (the rate limiters', the probe cache's, the log gates').

Such a table moves a key to the end by popping and re-inserting it, so its oldest entries are at the front.
Forgetting them one at a time with ``del table[next(iter(table))]`` is quadratic in CPython: the popped
entries leave deleted slots at the front of the dict's entry array until its next resize, and every
``next(iter(...))`` walks past all of them. With a full table (a flood of spoofed MACs) that took 29 us per
new key in a 65,536-entry limiter; forgetting a sixteenth at once takes 0.4 (issue 14).
"""

from __future__ import annotations

from itertools import islice
from typing import Any


def make_room(table: dict[Any, Any], limit: int) -> None:
    """When `table` holds `limit` keys or more, forget its oldest sixteenth (at least one key), so that one
    more fits; the walk over the front of the dict is paid once per limit/16 insertions."""
    if len(table) >= limit:
        for key in list(islice(table, max(1, len(table) - limit + 1, limit // 16))):
            del table[key]
