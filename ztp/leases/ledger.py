"""The lease ledger: decide, commit, apply.

DHCP handlers only *propose* a `LeaseChange`. The ledger writes a durable change to the store (fsync'd,
RFC 2131 §4.3.2: the binding is on stable storage before the DHCPACK leaves), and only once that has
succeeded applies it to the in-memory table and tells its subscribers (DNS names, later the device
timeline) with a `LeaseEvent`. A failed commit leaves memory as it was and the caller sends nothing.

While a change is being written its address is *pending*: other clients cannot be given it, so two
requests decided in the same instant cannot both be granted one address.

Lease expiry is a timer of the ledger (`next_deadline` / `expire`): sans-I/O, fed `now`.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address
from typing import Protocol

from ztp.config import Subnet
from ztp.ipkey import ip_key
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.native import mypyc_attr

log = logging.getLogger("ztp.leases")


class ChangeKind(StrEnum):
    """What a proposed change does to the table."""

    OFFER = "offer"  # hold an address for offer_hold seconds: memory only
    WITHDRAW = "withdraw"  # the client chose another server: drop our pending offer, memory only
    BIND = "bind"  # DHCPACK (new binding or renewal) or a BOOTP binding: durable
    RELEASE = "release"  # DHCPRELEASE: durable
    DECLINE = "decline"  # DHCPDECLINE: the address is held out of the pool, durable
    CONFLICT = "conflict"  # someone answered our ping for a pool address: held out like a DECLINE, durable


_DURABLE = frozenset({ChangeKind.BIND, ChangeKind.RELEASE, ChangeKind.DECLINE, ChangeKind.CONFLICT})


# LeaseChange and LeaseEvent spell out __init__ (init=False): compiled (setup.py's HOT build, mypyc) an
# explicit __init__ stores the fields directly instead of calling the interpreted one dataclasses generates
# (see Lease); frozen all the same (object.__setattr__ is what the generated one does too).
@dataclass(frozen=True, slots=True, init=False)
class LeaseChange:
    """One proposed change: the lease row as it will be after it."""

    kind: ChangeKind
    lease: Lease

    def __init__(self, kind: ChangeKind, lease: Lease) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "lease", lease)

    @property
    def durable(self) -> bool:
        """Whether the change must be on disk before it is applied (and before any reply leaves)."""
        return self.kind in _DURABLE


class EventKind(StrEnum):
    """What happened to a lease, as subscribers hear it."""

    BOUND = "bound"
    RENEWED = "renewed"
    RELEASED = "released"
    DECLINED = "declined"
    CONFLICT = "conflict"  # the address answered a ping before it was offered: held out for decline_hold
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, init=False)
class LeaseEvent:
    """A lease change that has been committed and applied (or a binding that ran out)."""

    kind: EventKind
    lease: Lease
    previous: Lease | None = None

    def __init__(self, kind: EventKind, lease: Lease, previous: Lease | None = None) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "lease", lease)
        object.__setattr__(self, "previous", previous)


class LeaseStore(Protocol):
    """Durable storage: `commit` completes once the row is on stable storage."""

    def commit(self, lease: Lease) -> asyncio.Future[None]:
        """Queue `lease`; the future completes after fsync, or fails with the store's error."""
        ...


class _PendingForOthers:
    """The addresses (their integers) being committed for clients other than `client` (a read-only container
    view)."""

    __slots__ = ("client", "pending")

    def __init__(self, pending: dict[int, tuple[str, int]], client: str) -> None:
        self.pending = pending
        self.client = client

    def __contains__(self, key: object) -> bool:
        entry = self.pending.get(key) if isinstance(key, int) else None
        return entry is not None and entry[0] != self.client


Subscriber = Callable[[LeaseEvent], None]
Done = Callable[[BaseException | None], None]


@mypyc_attr(allow_interpreted_subclasses=True)  # SharedLedger (ztp.leases.store) is not compiled
class Ledger:
    """The one writer of the lease table: proposals in, committed and applied changes and events out."""

    def __init__(self, table: LeaseTable, store: LeaseStore | None = None) -> None:
        self.table = table
        self.store = store
        self._subscribers: list[Subscriber] = []
        # address (ipkey.ip_key) -> (client, changes in flight)
        self._pending: dict[int, tuple[str, int]] = {}
        self._expiry: list[tuple[float, int, Lease]] = []  # heap of bound leases by expiry
        self._seq = 0
        now_bound = [lease for lease in table.leases() if lease.state == LeaseState.BOUND]
        for lease in now_bound:
            self._watch(lease)
        self.commit_failures = 0

    # --- reads for the handlers ---------------------------------------------------------------------

    def lease_of(self, client: str) -> Lease | None:
        """The client's current or last lease (committed state)."""
        return self.table.lease_of(client)

    def at(self, ip: IPv4Address) -> Lease | None:
        """The lease row of an address (committed state)."""
        return self.table.at(ip)

    def available(self, ip: IPv4Address, client: str, now: float) -> bool:
        """Whether `ip` may be given to `client` now: free in the table and not being written for another."""
        pending = self._pending.get(ip_key(ip))
        if pending is not None and pending[0] != client:
            return False
        return self.table.available(ip, client, now)

    def choose(self, subnet: Subnet, client: str, *, reserved: IPv4Address | None,
               requested: IPv4Address | None, now: float) -> IPv4Address | None:
        """The address to offer (LeaseTable.choose's order), never one another client's commit holds."""
        # A view, not a copy: under load hundreds of commits are in flight at any time, and copying them into
        # a set for every DISCOVER cost more than the rest of the allocation.
        taken = _PendingForOthers(self._pending, client) if self._pending else None
        return self.table.choose(subnet, client, reserved=reserved, requested=requested, now=now, taken=taken)

    # --- commit and apply ---------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call `subscriber` with every event, after the change is applied."""
        self._subscribers.append(subscriber)

    def commit(self, change: LeaseChange, done: Done) -> None:
        """Make `change` durable (if it must be), then apply it, then call `done(None)`; on a failed write
        call `done(error)` with nothing applied. Memory-only changes are applied at once."""
        if not change.durable or self.store is None:
            self.apply(change)
            done(None)
            return
        key, client = ip_key(change.lease.ip), change.lease.client
        owner, count = self._pending.get(key, (client, 0))
        self._pending[key] = (owner, count + 1)
        fut = self.store.commit(change.lease)
        fut.add_done_callback(lambda f: self._committed(f, change, done))

    def _committed(self, fut: asyncio.Future[None], change: LeaseChange, done: Done) -> None:
        key = ip_key(change.lease.ip)
        entry = self._pending.get(key)
        if entry is not None:
            owner, count = entry
            if count > 1:
                self._pending[key] = (owner, count - 1)
            else:
                del self._pending[key]
        error: BaseException | None = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if error is not None:
            self.commit_failures += 1
            done(error)
            return
        self.apply(change)
        done(None)

    def apply(self, change: LeaseChange) -> LeaseEvent | None:
        """Apply a change to memory (after it is durable) and tell the subscribers."""
        lease = change.lease
        table = self.table
        if change.kind == ChangeKind.WITHDRAW:
            table.forget_offer(lease.client)
            return None
        previous = table.at(lease.ip)
        if change.kind == ChangeKind.OFFER:
            table.put(lease)
            return None
        table.put(lease)
        if change.kind == ChangeKind.BIND:
            renewed = previous is not None and previous.state == LeaseState.BOUND \
                and previous.client == lease.client
            event = LeaseEvent(EventKind.RENEWED if renewed else EventKind.BOUND, lease, previous)
            self._watch(lease)
        elif change.kind == ChangeKind.RELEASE:
            event = LeaseEvent(EventKind.RELEASED, lease, previous)
        elif change.kind == ChangeKind.CONFLICT:
            event = LeaseEvent(EventKind.CONFLICT, lease, previous)
        else:
            event = LeaseEvent(EventKind.DECLINED, lease, previous)
        self._emit(event)
        return event

    def _emit(self, event: LeaseEvent) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # a subscriber's bug must not undo a committed lease or stop the server
                log.exception("%s lease event %s: subscriber failed", event.lease.mac, event.kind)

    # --- expiry timer -------------------------------------------------------------------------------

    def _watch(self, lease: Lease) -> None:
        self._seq += 1
        heapq.heappush(self._expiry, (lease.expires, self._seq, lease))

    def next_deadline(self) -> float | None:
        """When the next bound lease runs out (None: no bound lease)."""
        return self._expiry[0][0] if self._expiry else None

    def expire(self, now: float) -> list[Lease]:
        """Emit `expired` for every binding that ran out by `now` and is still the address's current row.

        O(k log n) for k expiries: renewed, released or replaced rows are skipped, not searched for.
        """
        out: list[Lease] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, _, lease = heapq.heappop(heap)
            if self.table.at(lease.ip) is lease:
                out.append(lease)
                self._emit(LeaseEvent(EventKind.EXPIRED, lease))
        return out
