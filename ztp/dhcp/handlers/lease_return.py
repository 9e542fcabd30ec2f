"""RELEASE and DECLINE: a client gives an address back (RFC 2131 §4.3.3, §4.3.4).

Only the lease's holder can: the sender's client key (client-id when the lease has one, else chaddr)
must be the lease's, so one forged packet cannot free or quarantine someone else's address. A declined
address is held out of the pool for `dhcp.decline_hold` seconds; only pool addresses can be declined, so
DECLINEs cannot grow the table without bound.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from ipaddress import IPv4Address

from ztp.config import Config
from ztp.dhcp import options as o
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Proposal, Reply, Request, silent
from ztp.leases.ledger import ChangeKind, LeaseChange, Ledger
from ztp.leases.table import Lease, LeaseState


class ReturnLease:
    """Ends the chain for RELEASE and DECLINE with the change to commit (no reply is ever sent)."""

    def __init__(self, config: Config, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Propose the released or declined row, or ignore a packet from someone who does not hold it."""
        if req.mtype == p.RELEASE:
            return self._release(req)
        if req.mtype == p.DECLINE:
            return self._decline(req)
        return reply

    def _held(self, req: Request, ip: IPv4Address) -> Lease | None:
        lease = self.ledger.at(ip)
        if lease is None or lease.client != req.client or lease.state != LeaseState.BOUND:
            return None
        return lease

    def _release(self, req: Request) -> Proposal:
        ip = req.pkt.ciaddr
        lease = self._held(req, ip)
        if lease is None:
            return silent("RELEASE of %s: not a lease of this client; ignored", ip, level=logging.WARNING,
                          counter="release_refused")
        released = replace(lease, state=LeaseState.RELEASED, expires=req.now, updated=req.now)
        return Proposal(change=LeaseChange(ChangeKind.RELEASE, released), log_format="RELEASE %s",
                        log_args=(ip,))

    def _decline(self, req: Request) -> Proposal:
        ip = req.pkt.option_ip(o.REQUESTED_IP)
        if ip is None:
            return silent("DECLINE without option 50; ignored", level=logging.WARNING, counter="decline_refused")
        subnet = self.config.subnet_for(ip)
        if subnet is None or not subnet.in_pool(ip):
            return silent("DECLINE of %s: not a pool address; ignored", ip, level=logging.WARNING,
                          counter="decline_refused")
        lease = self._held(req, ip)
        if lease is None:
            return silent("DECLINE of %s: not a lease of this client; ignored", ip, level=logging.WARNING,
                          counter="decline_refused")
        hold = self.config.decline_hold
        declined = Lease(ip=ip, client=req.client, mac=req.mac, state=LeaseState.DECLINED,
                         expires=req.now + hold, updated=req.now)
        return Proposal(change=LeaseChange(ChangeKind.DECLINE, declined),
                        log_format="DECLINE %s: address in use on the network, held out of the pool %ss",
                        log_args=(ip, hold), level=logging.WARNING)
