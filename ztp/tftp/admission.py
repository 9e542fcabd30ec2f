"""How many TFTP transfers may run at once: a cap per source address and one in total (sans-I/O).

Every transfer holds a socket, a timer and possibly an open file until it ends; without a cap one host
(a stray script, a misbehaving boot loop, a spoofed flood of RRQs) could take every session and starve
the devices being provisioned. The per-peer cap is the one that matters for fairness: a switch fetches
one or two files at a time, so a handful per address is plenty.
"""

from __future__ import annotations

DEFAULT_MAX_SESSIONS = 2000
DEFAULT_MAX_SESSIONS_PER_PEER = 8


class SessionQuota:
    """Counts running transfers per peer address and in total; `admit` says whether one more may start."""

    __slots__ = ("total", "per_peer", "_by_peer", "_active")

    def __init__(self, total: int = DEFAULT_MAX_SESSIONS, per_peer: int = DEFAULT_MAX_SESSIONS_PER_PEER) -> None:
        """`total` and `per_peer` are at least 1 (ValueError otherwise)."""
        if total < 1 or per_peer < 1:
            raise ValueError(f"session caps must be at least 1 (total {total}, per peer {per_peer})")
        self.total = total
        self.per_peer = per_peer
        self._by_peer: dict[str, int] = {}
        self._active = 0

    @property
    def active(self) -> int:
        """Transfers admitted and not yet released."""
        return self._active

    def of(self, peer: str) -> int:
        """Transfers running for one peer address."""
        return self._by_peer.get(peer, 0)

    def refusal(self, peer: str) -> str | None:
        """Why one more transfer for `peer` may not start now, or None if it may."""
        if self._active >= self.total:
            return f"{self._active} transfers running (tftp.max_sessions {self.total})"
        held = self._by_peer.get(peer, 0)
        if held >= self.per_peer:
            return f"{held} transfers running for {peer} (tftp.max_sessions_per_peer {self.per_peer})"
        return None

    def admit(self, peer: str) -> str | None:
        """Take a slot for `peer` and return None, or return why not (nothing taken)."""
        why = self.refusal(peer)
        if why is None:
            self._by_peer[peer] = self._by_peer.get(peer, 0) + 1
            self._active += 1
        return why

    def release(self, peer: str) -> None:
        """Give back one of `peer`'s slots (a no-op for a peer holding none)."""
        held = self._by_peer.get(peer, 0)
        if held <= 0:
            return
        if held == 1:
            del self._by_peer[peer]
        else:
            self._by_peer[peer] = held - 1
        self._active -= 1

    def resize(self, total: int, per_peer: int) -> None:
        """New caps (a reload); running transfers are kept and count against them."""
        if total < 1 or per_peer < 1:
            raise ValueError(f"session caps must be at least 1 (total {total}, per peer {per_peer})")
        self.total = total
        self.per_peer = per_peer
