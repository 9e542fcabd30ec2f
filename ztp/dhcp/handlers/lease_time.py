"""How long a binding lasts: options 51, 58 and 59 (RFC 2131 §4.4.5: T1 = 0.5, T2 = 0.875)."""

from __future__ import annotations

from ztp.config import Config
from ztp.dhcp import options as o
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Proposal, Reply, Request


class LeaseTime:
    """Sets `reply.lease_time` and the lease options of OFFER and ACK; none for INFORM (§4.3.5) or BOOTP."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._encoded: dict[int, tuple[bytes, bytes, bytes]] = {}  # lease time -> options 51, 58, 59

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """The subnet's lease time; BOOTP bindings get `dhcp.bootp_lease_time` and no lease options."""
        if reply.mtype is None:
            if reply.binding:
                reply.lease_time = self.config.bootp_lease_time
            return reply
        if req.mtype == p.INFORM or reply.subnet is None:
            return reply
        seconds = reply.subnet.lease_time
        reply.lease_time = seconds
        encoded = self._encoded.get(seconds)
        if encoded is None:
            encoded = self._encoded[seconds] = (o.u32(seconds), o.u32(seconds // 2), o.u32(seconds * 7 // 8))
        opts = reply.options
        opts[o.LEASE_TIME], opts[o.RENEWAL_TIME], opts[o.REBINDING_TIME] = encoded
        return reply
