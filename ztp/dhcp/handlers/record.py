"""The lease change the reply stands for: an offer held in memory, or a binding to commit first."""

from __future__ import annotations

from ztp.config import Config
from ztp.dhcp.exchange import Proposal, Reply, Request
from ztp.ipkey import is_zero
from ztp.leases.ledger import ChangeKind, LeaseChange, Ledger
from ztp.leases.table import Lease, LeaseState


class RecordLease:
    """Sets `reply.change`: OFFER holds yiaddr for `dhcp.offer_hold` seconds (never shortening the client's
    binding of it); ACK and BOOTREPLY bind it for `reply.lease_time`."""

    def __init__(self, config: Config, ledger: Ledger) -> None:
        self.offer_hold = config.offer_hold
        self.ledger = ledger

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Propose the lease row for yiaddr."""
        ip = reply.yiaddr
        if is_zero(ip):
            return reply
        now = req.now
        vendor = reply.vendor or None
        if reply.vendor is None and reply.state != "init":
            # A REQUEST without a fingerprint (no 60, 77, ...) keeps what its offer or binding was recognised
            # as; one that names something else (or a new DISCOVER) decides afresh.
            held = self.ledger.at(ip)
            vendor = held.vendor if held is not None and held.client == req.client else None
        if reply.binding:
            assert reply.lease_time is not None
            lease = Lease(ip=ip, client=req.client, mac=req.mac, state=LeaseState.BOUND,
                          expires=now + reply.lease_time, updated=now, hostname=reply.hostname, vendor=vendor)
            reply.change = LeaseChange(ChangeKind.BIND, lease)
            return reply
        current = self.ledger.at(ip)
        if current is not None and current.client == req.client and current.state == LeaseState.BOUND \
                and current.active(now):
            return reply  # already bound: an OFFER must not shorten the binding
        lease = Lease(ip=ip, client=req.client, mac=req.mac, state=LeaseState.OFFERED,
                      expires=now + self.offer_hold, updated=now, hostname=reply.hostname, vendor=vendor)
        reply.change = LeaseChange(ChangeKind.OFFER, lease)
        return reply
