"""The reply fits the client's limit (option 57, else 576 bytes; RFC 2131 §2, RFC 2132 §9.10): option 52
overload where `file`/`sname` are free, else the least essential options left out, whole."""

from __future__ import annotations

from ztp.dhcp.exchange import Proposal, Reply, Request
from ztp.dhcp.fit import fit_reply


class SizeFit:
    """Replaces `reply.packet` by one that fits, and records in `reply.dropped` what had to go."""

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Fit the assembled packet."""
        if reply.packet is None:
            return reply
        fitted = fit_reply(reply.packet, req.pkt)
        reply.packet = fitted.reply
        reply.dropped = fitted.dropped
        return reply
