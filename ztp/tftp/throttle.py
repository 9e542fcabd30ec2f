"""Repeated log lines, bounded: the first occurrence of an event is logged, repeats at most once per interval.

A host sending thousands of refused requests (another device's config, a private file) must not turn each
one into log lines: the log is where an operator looks for the devices, and writing it costs the loop too.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from ztp.bounded import make_room


class RepeatGate:
    """Per key: let the first event through, then one per `interval` seconds, counting those held back.

    Sans-I/O apart from the injected `clock`. Remembers at most `max_keys` keys (the least recently seen is
    forgotten first), so a flood from many sources costs bounded memory.
    """

    __slots__ = ("interval", "max_keys", "clock", "_keys")

    def __init__(self, clock: Callable[[], float], *, interval: float = 10.0, max_keys: int = 4096) -> None:
        """`clock`: monotonic seconds (a fake one in tests)."""
        self.interval = interval
        self.max_keys = max(1, max_keys)
        self.clock = clock
        self._keys: dict[Hashable, tuple[float, int]] = {}  # key -> (next time to log, held back since)

    def admit(self, key: Hashable) -> int | None:
        """None: do not log this one. Otherwise log it, noting this many repeats were held back before it."""
        now = self.clock()
        keys = self._keys
        entry = keys.pop(key, None)
        if entry is None:
            make_room(keys, self.max_keys)
            keys[key] = (now + self.interval, 0)
            return 0
        due, held = entry
        if now >= due:
            keys[key] = (now + self.interval, 0)
            return held
        keys[key] = (due, held + 1)
        return None
