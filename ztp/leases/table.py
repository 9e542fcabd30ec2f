"""The lease table and address allocation (RFC 2131 §4.3.1): pure, fed `now`, no I/O."""

from __future__ import annotations

import heapq
from collections.abc import Collection, Container
from dataclasses import dataclass, field, replace
from enum import StrEnum
from ipaddress import IPv4Address

from ztp.config import Subnet
from ztp.ipkey import ip_key


class LeaseState(StrEnum):
    """Where a binding stands; `expired` is derived from `expires`, not stored."""

    OFFERED = "offered"
    BOUND = "bound"
    RELEASED = "released"
    DECLINED = "declined"


# __init__ is spelled out (init=False): compiled (setup.py's HOT build, mypyc) an explicit __init__ stores the
# fields directly instead of calling the interpreted one dataclasses generates (callgrind: 13,000 -> 240
# instructions a Lease); still frozen (object.__setattr__, as the generated one does).
@dataclass(frozen=True, slots=True, init=False)
class Lease:
    """One address binding. `client` is the client-id (hex) when the client sent one, else its MAC."""

    ip: IPv4Address
    client: str
    mac: str
    state: LeaseState
    expires: float
    updated: float
    hostname: str | None = None
    # The vendor profile the device's DHCP fingerprint (options 60/61/77/55) was recognised as, kept with
    # the binding so that every render (TFTP, HTTP, `ztp render` from the lease database) sees the same
    # `vendor` the DHCP reply was built for. None: not recognised (the inventory or defaults decide).
    vendor: str | None = None

    def __init__(self, ip: IPv4Address, client: str, mac: str, state: LeaseState, expires: float, updated: float,
                 hostname: str | None = None, vendor: str | None = None) -> None:
        object.__setattr__(self, "ip", ip)
        object.__setattr__(self, "client", client)
        object.__setattr__(self, "mac", mac)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "expires", expires)
        object.__setattr__(self, "updated", updated)
        object.__setattr__(self, "hostname", hostname)
        object.__setattr__(self, "vendor", vendor)

    def active(self, now: float) -> bool:
        """Whether the address is taken right now (a held offer, a bound lease or a quarantine)."""
        return self.state in (LeaseState.OFFERED, LeaseState.BOUND, LeaseState.DECLINED) and self.expires > now

    def state_at(self, now: float) -> str:
        """The state as an operator would say it."""
        if self.state == LeaseState.BOUND and self.expires <= now:
            return "expired"
        if self.state == LeaseState.OFFERED and self.expires <= now:
            return "offer-expired"
        return self.state.value


@dataclass(slots=True)
class _Reusable:
    """A pool's leases by expiry (a heap with lazy deletion): its oldest expired or released address is the
    top, found in O(log n) instead of by walking every lease when the pool has no never-used address left.
    Entries whose lease is no longer the address's current row are dropped when they reach the top, and
    the heap is rebuilt when stale entries outnumber live ones (renewals push new entries)."""

    start: int
    end: int
    heap: list[tuple[float, int, Lease]] = field(default_factory=list)


class LeaseTable:
    """All leases in memory, indexed by address and by client; the store persists what it returns."""

    def __init__(self, leases: list[Lease] | None = None) -> None:
        # Each address's current row, keyed by the address's integer (ipkey.ip_key): an IPv4Address key costs
        # a call of its Python __hash__ per lookup, and of __eq__ when the key is another object, about
        # fifteen of each a DORA (issue 14). Read through `at` and `leases`.
        self._rows: dict[int, Lease] = {}
        self.by_client: dict[str, Lease] = {}  # change only through _set_client/_drop_client (indexes below)
        # by_client's leases grouped by MAC and by host name (client -> lease, in by_client order), so that
        # "this device's lease" (TFTP config requests, `ztp leases`) costs a lookup, not a walk over
        # every lease: a hall of 50,000 leases made each config request scan them all.
        self._client_by_mac: dict[str, dict[str, Lease]] = {}
        self._client_by_hostname: dict[str, dict[str, Lease]] = {}
        self._fresh: dict[int, int] = {}  # pool start -> next never-used candidate (addresses as ints)
        self._reusable: dict[int, _Reusable] = {}  # pool start (int) -> its leases by expiry (built lazily)
        self._seq = 0
        for lease in sorted(leases or [], key=lambda x: x.updated):
            self._put(lease)

    def at(self, ip: IPv4Address) -> Lease | None:
        """The address's current row, if it has one."""
        return self._rows.get(ip_key(ip))

    def leases(self) -> Collection[Lease]:
        """Every address's current row (a live view: do not change the table while walking it)."""
        return self._rows.values()

    def put(self, lease: Lease) -> None:
        """Make `lease` the address's current row (the ledger calls this once the row is durable)."""
        if lease.state == LeaseState.DECLINED:
            held = self.by_client.get(lease.client)
            if held is not None and ip_key(held.ip) == ip_key(lease.ip):
                self._drop_client(lease.client)  # the declined address is no longer the client's lease
        self._put(lease)

    def _put(self, lease: Lease) -> None:
        rows = self._rows
        key = ip_key(lease.ip)
        old = rows.get(key)
        if old is not None and old.client != lease.client and self.by_client.get(old.client) is old:
            self._drop_client(old.client)
        previous = self.by_client.get(lease.client)
        if previous is not None and previous.state == LeaseState.OFFERED:
            offered = ip_key(previous.ip)
            if offered != key:
                # A client holds at most one pending offer: the old one goes back to the pool.
                if rows.get(offered) is previous:
                    del rows[offered]
                    self._unused(offered)
                if lease.state == LeaseState.DECLINED:
                    # A DECLINE is not the client's lease: nothing may keep pointing at the dropped offer.
                    self._drop_client(lease.client)
        rows[key] = lease
        if lease.state != LeaseState.DECLINED:
            self._set_client(lease)
        if self._reusable:
            value = key
            for pool in self._reusable.values():
                if pool.start <= value <= pool.end:
                    self._seq += 1
                    heapq.heappush(pool.heap, (lease.expires, self._seq, lease))

    def _set_client(self, lease: Lease) -> None:
        previous = self.by_client.get(lease.client)
        self.by_client[lease.client] = lease
        # Replacing in place when the MAC (host name) is unchanged keeps each group in by_client's order.
        if previous is not None and previous.mac != lease.mac:
            _ungroup(self._client_by_mac, previous.mac, lease.client)
        self._client_by_mac.setdefault(lease.mac, {})[lease.client] = lease
        if previous is not None and previous.hostname is not None and previous.hostname != lease.hostname:
            _ungroup(self._client_by_hostname, previous.hostname, lease.client)
        if lease.hostname is not None:
            self._client_by_hostname.setdefault(lease.hostname, {})[lease.client] = lease

    def _drop_client(self, client: str) -> None:
        lease = self.by_client.pop(client)
        _ungroup(self._client_by_mac, lease.mac, client)
        if lease.hostname is not None:
            _ungroup(self._client_by_hostname, lease.hostname, client)

    def _unused(self, value: int) -> None:
        # An address (its integer) dropped from the rows is never-used again: move any pool cursor past it
        # back, or neither the first-free scan nor the oldest-expired scan (which walks the rows) would find it.
        for start, cursor in self._fresh.items():
            if start <= value < cursor:
                self._fresh[start] = value

    def lease_of(self, client: str) -> Lease | None:
        """The client's current or last lease."""
        return self.by_client.get(client)

    def client_leases_of_mac(self, mac: str) -> list[Lease]:
        """The current or last lease of every client with this MAC (one per client-id it used), in
        `by_client` order."""
        group = self._client_by_mac.get(mac)
        return list(group.values()) if group else []

    def client_leases_named(self, hostname: str) -> list[Lease]:
        """The current or last lease of every client that was given this host name, in `by_client` order."""
        group = self._client_by_hostname.get(hostname)
        return list(group.values()) if group else []

    def available(self, ip: IPv4Address, client: str, now: float) -> bool:
        """Whether `ip` may be given to `client` now."""
        lease = self._rows.get(ip_key(ip))
        if lease is None:
            return True
        if lease.state == LeaseState.DECLINED:
            return lease.expires <= now
        return lease.client == client or not lease.active(now)

    def choose(self, subnet: Subnet, client: str, *, reserved: IPv4Address | None,
               requested: IPv4Address | None, now: float,
               taken: Container[int] | None = None) -> IPv4Address | None:
        """The address to offer, in the documented order, or None when the pool is exhausted.

        Reservation; the address this client held before; the requested address (option 50) if free;
        the first never-used pool address; then the oldest expired or released one. Addresses in `taken`
        (their integers: being committed for another client) are skipped.
        """
        if reserved is not None:
            return reserved
        busy: Container[int] = taken if taken is not None else ()
        previous = self.by_client.get(client)
        if previous is not None and subnet.in_pool(previous.ip) and ip_key(previous.ip) not in busy \
                and self.available(previous.ip, client, now):
            return previous.ip
        if requested is not None and subnet.in_pool(requested) and ip_key(requested) not in busy \
                and self.available(requested, client, now):
            return requested
        if subnet.pool_start is None or subnet.pool_end is None:
            return None
        start, end = ip_key(subnet.pool_start), ip_key(subnet.pool_end)
        rows = self._rows
        # Candidates are integers: only the one chosen is built as an IPv4Address.
        cursor = self._fresh.get(start, start)
        while cursor <= end and cursor in rows:
            cursor += 1
        self._fresh[start] = cursor
        probe = cursor  # past the cursor only by the few never-used addresses being committed right now
        while probe <= end and (probe in busy or probe in rows):
            probe += 1
        if probe <= end:
            return IPv4Address(probe)
        return self._oldest_reusable(start, end, busy, now)

    def _oldest_reusable(self, start: int, end: int, busy: Container[int], now: float) -> IPv4Address | None:
        """The pool's address whose lease ran out (or was released) first, or None: O(log n) amortised."""
        rows = self._rows
        pool = self._reusable.get(start)
        if pool is None or len(pool.heap) > 2 * len(rows) + 64:
            pool = self._reusable[start] = _Reusable(start, end)
            for lease in rows.values():
                if start <= ip_key(lease.ip) <= end:
                    self._seq += 1
                    pool.heap.append((lease.expires, self._seq, lease))
            heapq.heapify(pool.heap)
        heap = pool.heap
        skipped: list[tuple[float, int, Lease]] = []  # being committed for another client: few
        found: IPv4Address | None = None
        while heap:
            expires, _, lease = heap[0]
            key = ip_key(lease.ip)
            if rows.get(key) is not lease:
                heapq.heappop(heap)  # replaced or dropped since: stale
                continue
            if expires > now and lease.state != LeaseState.RELEASED:
                break  # the oldest live lease is still active: nothing to reuse
            if key in busy:
                skipped.append(heapq.heappop(heap))
                continue
            found = lease.ip
            break
        for entry in skipped:
            heapq.heappush(heap, entry)
        return found

    def offer(self, ip: IPv4Address, client: str, mac: str, *, hold: float, now: float,
              hostname: str | None = None) -> Lease:
        """Hold `ip` for `client` for `hold` seconds so nobody else is offered it (kept in memory only)."""
        current = self._rows.get(ip_key(ip))
        if current is not None and current.client == client and current.active(now) \
                and current.state == LeaseState.BOUND:
            return current  # already bound: an OFFER must not shorten the binding
        lease = Lease(ip=ip, client=client, mac=mac, state=LeaseState.OFFERED, expires=now + hold,
                      updated=now, hostname=hostname)
        self._put(lease)
        return lease

    def bind(self, ip: IPv4Address, client: str, mac: str, *, lease_time: int, now: float,
             hostname: str | None = None) -> Lease:
        """Bind `ip` to `client`; the caller persists the result before sending the ACK."""
        lease = Lease(ip=ip, client=client, mac=mac, state=LeaseState.BOUND, expires=now + lease_time,
                      updated=now, hostname=hostname)
        self._put(lease)
        return lease

    def release(self, client: str, ip: IPv4Address, now: float) -> Lease | None:
        """RFC 2131 §4.3.4: free the address; the client's record stays so it gets the same one back."""
        lease = self._rows.get(ip_key(ip))
        if lease is None or lease.client != client or lease.state != LeaseState.BOUND:
            return None
        released = replace(lease, state=LeaseState.RELEASED, expires=now, updated=now)
        self._put(released)
        return released

    def decline(self, ip: IPv4Address, client: str, mac: str, *, quarantine: float, now: float) -> Lease:
        """RFC 2131 §4.3.3: the address is in use by someone else; keep it out of the pool for a while."""
        lease = Lease(ip=ip, client=client, mac=mac, state=LeaseState.DECLINED, expires=now + quarantine,
                      updated=now)
        self.put(lease)
        return lease

    def forget_offer(self, client: str) -> None:
        """The client chose another server (RFC 2131 §4.3.2): drop our pending offer."""
        lease = self.by_client.get(client)
        if lease is not None and lease.state == LeaseState.OFFERED:
            self._drop_client(client)
            key = ip_key(lease.ip)
            if self._rows.get(key) is lease:
                del self._rows[key]
                self._unused(key)

    def all(self) -> list[Lease]:
        """Every lease, by address."""
        return [lease for _, lease in sorted(self._rows.items())]  # keys are unique: leases never compared


def _ungroup(groups: dict[str, dict[str, Lease]], key: str, client: str) -> None:
    group = groups[key]
    del group[client]
    if not group:
        del groups[key]  # keep the index as small as the table: MACs come and go
