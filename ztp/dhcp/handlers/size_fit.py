"""The reply fits the client's limit (option 57, else 576 bytes; RFC 2131 §2, RFC 2132 §9.10): option 52
overload where `file`/`sname` are free, else the least essential options left out, whole."""

from __future__ import annotations

from ztp.dhcp.exchange import Proposal, Reply, Request
from ztp.dhcp.fit import IP_UDP_OVERHEAD, MIN_DATAGRAM, OPTIONS_START, fit_reply

_SMALLEST_LIMIT = MIN_DATAGRAM - IP_UDP_OVERHEAD  # 548: what every client accepts


class SizeFit:
    """Replaces `reply.packet` by one that fits, and records in `reply.dropped` what had to go."""

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Fit the assembled packet."""
        packet = reply.packet
        if packet is None:
            return reply
        opts = packet.options
        # Most replies are far below any client's limit: an upper bound (no value over 255 bytes, so no
        # RFC 3396 split) settles them without planning anything. A plain loop, which compiles to one.
        size = OPTIONS_START + 1
        for value in opts.values():
            size += len(value) + 2
        if size <= _SMALLEST_LIMIT:
            return reply
        fitted = fit_reply(packet, req.pkt)
        reply.packet = fitted.reply
        reply.dropped = fitted.dropped
        return reply
