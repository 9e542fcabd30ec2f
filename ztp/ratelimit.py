"""Token buckets per key with a bounded table: the rate limits of DNS (per source) and DHCP (per client and
per relay). Sans-I/O: fed `now`, never reads a clock."""

from __future__ import annotations

from collections.abc import Hashable

from ztp.bounded import make_room


class SourceRateLimiter:
    """A token bucket per source address: ``rate`` messages/s sustained, up to ``burst`` at once (sans-I/O).

    Fed ``(source, now)``; never reads a clock. ``rate`` 0 admits everything. The table is bounded by
    ``max_sources``: when full, the least recently seen sources (a sixteenth of
    the table, `ztp.bounded.make_room`) are forgotten. A forgotten source comes back
    with a full bucket, which is also what any source idle for ``burst / rate`` seconds has, so eviction
    only ever favours a source that was being limited and has since gone quiet for a while.
    """

    __slots__ = ("rate", "burst", "max_sources", "_buckets")

    def __init__(self, rate: float, burst: float | None = None, *, max_sources: int = 4096) -> None:
        """``burst`` defaults to ``2 * rate``; ValueError for a negative rate, a burst under 1 or no table."""
        if rate < 0:
            raise ValueError(f"rate limit {rate}: must be 0 (off) or more")
        burst = 2 * rate if burst is None else burst
        if rate > 0 and burst < 1:
            raise ValueError(f"rate limit burst {burst}: must be at least 1")
        if max_sources < 1:
            raise ValueError(f"rate limit table size {max_sources}: must be at least 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_sources = max_sources
        # source -> (tokens left, when last seen); dict order is least recently seen first.
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def __len__(self) -> int:
        """How many sources the table holds."""
        return len(self._buckets)

    def allow(self, source: Hashable, now: float) -> bool:
        """Take one token from ``source``'s bucket at ``now``; False when it has none (drop the message)."""
        if self.rate <= 0:
            return True
        buckets = self._buckets
        # get and del, not pop(source, None): compiled, pop with a default is a generic method call.
        bucket = buckets.get(source)
        if bucket is None:
            make_room(buckets, self.max_sources)
            tokens = self.burst
        else:
            del buckets[source]  # re-inserted below: the most recently seen goes last
            tokens, last = bucket
            # max(): a clock that steps back must not drain a bucket.
            tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        buckets[source] = (tokens, now)
        return allowed
