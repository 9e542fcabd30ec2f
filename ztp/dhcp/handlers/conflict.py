"""Conflict detection before an offer: is anyone already using the address? (RFC 2131 §2.2: "the
allocating server SHOULD probe the reused address before allocating the address, e.g., with an ICMP echo
request"; §3.1 step 2; dhcpd and Kea's ping-check do the same.)

A DISCOVER whose chosen address has no current binding ends the chain with a Proposal that holds the
address for this client (the OFFER's memory-only hold) and asks the server to `probe` it. The server
pings; on silence it runs the chain again with `Request.cleared` set and the OFFER goes out; on an answer
it commits `conflict()` (the address is held out of the pool for `dhcp.decline_hold`, like a DECLINE) and
runs the chain again, which picks the next free address. Reservations are never probed (the device
itself may still answer on its address), nor addresses the client holds a binding for.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address

from ztp.bounded import make_room
from ztp.config import Config
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Proposal, Reply, Request
from ztp.leases.ledger import ChangeKind, LeaseChange
from ztp.leases.table import Lease, LeaseState

MAX_CLEARED = 65536  # addresses remembered as recently probed clear (bounded: oldest forgotten first)
CONFLICT_CLIENT = "conflict"  # the client key of a conflict row (no client holds it)


class ProbeAddress:
    """Ends a DISCOVER's chain with a probe request for an address that has not been probed lately."""

    def __init__(self, config: Config) -> None:
        self.enabled = config.ping_check
        # A silent probe is good for an offer's lifetime: a client that DISCOVERs again (its OFFER was
        # lost) is not made to wait again for the same address.
        self.fresh = float(config.offer_hold)
        self._cleared: dict[IPv4Address, float] = {}  # address -> when its probe went unanswered

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Pass the reply on, or ask for a probe of `reply.yiaddr` first."""
        if not self.enabled or req.mtype != p.DISCOVER or reply.change is None:
            return reply  # no change: the client already holds a binding of this address
        ip = reply.yiaddr
        device = reply.device
        if device is not None and device.ip == ip:
            return reply
        cleared = self._cleared
        now = req.now
        if req.cleared == ip:
            cleared.pop(ip, None)
            make_room(cleared, MAX_CLEARED)
            cleared[ip] = now
            return reply
        when = cleared.get(ip)
        if when is not None and 0 <= now - when < self.fresh:
            return reply
        return Proposal(change=reply.change, probe=ip, log_format="DISCOVER: probing %s before offering it",
                        log_args=(ip,), level=logging.DEBUG, counter="probes")


def conflict(config: Config, ip: IPv4Address, answered_by: str | None, now: float) -> Proposal:
    """The change for an address that answered its probe: held out of the pool for `dhcp.decline_hold`,
    with the answering host's MAC (from the neighbour table) when known, for `ztp leases` and the log."""
    hold = config.decline_hold
    lease = Lease(ip=ip, client=CONFLICT_CLIENT, mac=answered_by or "unknown", state=LeaseState.DECLINED,
                  expires=now + hold, updated=now)
    return Proposal(change=LeaseChange(ChangeKind.CONFLICT, lease),
                    log_format="address %s is in use (it answered a ping, from %s): held out of the pool %ss "
                               "and not offered", log_args=(ip, answered_by or "an unknown MAC", hold),
                    level=logging.WARNING, counter="conflicts")
