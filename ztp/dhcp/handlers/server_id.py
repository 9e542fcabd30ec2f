"""Option 54, the server identifier (RFC 2131 §4.3.1, §4.3.2, Table 5)."""

from __future__ import annotations

import logging

from ztp.dhcp import options as o
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Proposal, Reply, Request, silent
from ztp.leases.ledger import ChangeKind, LeaseChange, Ledger
from ztp.leases.table import LeaseState


class ServerId:
    """Our identifier is the address the client reached. A SELECTING REQUEST that names another server
    withdraws our offer; RELEASE and DECLINE must name us (Table 5: option 54 MUST be present)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Set `reply.server_id`; end the chain for messages meant for another server."""
        ingress = req.ingress
        reply.server_id = ingress.server_ip
        named = req.pkt.option_ip(o.SERVER_ID)
        ours = named is None or named == ingress.server_ip or named in ingress.local_ips
        if req.mtype == p.REQUEST and not ours:
            held = self.ledger.lease_of(req.client)
            change = LeaseChange(ChangeKind.WITHDRAW, held) \
                if held is not None and held.state == LeaseState.OFFERED else None
            return Proposal(change=change, log_format="REQUEST for server %s: not us; offer withdrawn",
                            log_args=(named,), level=logging.DEBUG)
        if req.mtype in (p.RELEASE, p.DECLINE) and (named is None or not ours):
            kind = p.MESSAGE_TYPE_NAMES[req.mtype]
            return silent("%s for server %s: not us; ignored", kind, named or "(none: option 54 missing)",
                          counter="not_our_server_id")
        return reply
