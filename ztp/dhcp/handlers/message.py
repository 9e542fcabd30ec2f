"""Which messages a server answers at all (RFC 2131 §3, Table 2)."""

from __future__ import annotations

from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Proposal, Reply, Request, silent

CLIENT_MESSAGES = frozenset({None, p.DISCOVER, p.REQUEST, p.DECLINE, p.RELEASE, p.INFORM})  # None: BOOTP


class AcceptMessage:
    """Pass DISCOVER, REQUEST, DECLINE, RELEASE, INFORM and BOOTP requests; drop server-only types."""

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Ignore OFFER, ACK, NAK and unknown types sent to a server."""
        if req.mtype in CLIENT_MESSAGES:
            return reply
        return silent("message type %s is not for a server; ignored", req.mtype, counter="not_for_server")
