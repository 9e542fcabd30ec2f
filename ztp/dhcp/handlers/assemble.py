"""Turn the reply in progress into a BOOTREPLY (RFC 2131 Table 3), and build NAKs.

Option order: 53 and 54 first, then what option 55 lists in its order, then the rest by code. The
client's option 61 is echoed (RFC 6842 §3 MUST); option 82 belongs to the relay (RFC 3046 §2.2): never
one of ours, only the relay's echoed, last.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from ztp.dhcp import options as o
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Proposal, Reply, Request
from ztp.dhcp.packet import DhcpPacket
from ztp.ipkey import is_zero, spelled

_FIRST = (o.MESSAGE_TYPE, o.SERVER_ID)
_MESSAGE_TYPE = {mtype: bytes((mtype,)) for mtype in (p.OFFER, p.ACK, p.NAK)}


@lru_cache(maxsize=1024)  # clients send a handful of distinct option 55 lists; bounded against odd ones
def option_order(codes: tuple[int, ...], requested: bytes) -> tuple[int, ...]:
    """53 and 54 first, then what option 55 lists in its order, then the rest by code."""
    present = set(codes)
    out: dict[int, None] = {code: None for code in _FIRST if code in present}
    for code in requested:
        if code in present and code not in out:
            out[code] = None
    for code in sorted(codes):
        if code not in out:
            out[code] = None
    return tuple(out)


@lru_cache(maxsize=1024)
def _wire_order(codes: tuple[int, ...], requested: bytes) -> dict[int, bytes]:
    """A dict whose keys are `option_order`'s (values empty): copied and then updated with a reply's options,
    it holds them in wire order. A copy of a dict and an update of keys it has are two C loops over
    preallocated slots, where inserting the options one by one into a new dict resized it on the way and
    took 12,000 instructions a reply (compiled, callgrind; issue 14). Never handed out: callers copy it."""
    return dict.fromkeys(option_order(codes, requested), b"")


def _echoed(request: DhcpPacket, opts: dict[int, bytes]) -> dict[int, bytes]:
    """`opts` ordered for the wire, with the client's 61 and the relay's 82 echoed."""
    client_id = request.options.get(o.CLIENT_ID)
    if client_id is not None:
        opts[o.CLIENT_ID] = client_id
    ordered = _wire_order(tuple(opts), request.options.get(o.PARAMETER_LIST, b"")).copy()
    ordered.update(opts)  # every key is already there: the values change, the order does not
    if o.RELAY_AGENT_INFO in ordered:  # never one of ours (`in` and `del`: pop with a default is a generic call)
        del ordered[o.RELAY_AGENT_INFO]
    relay82 = request.options.get(o.RELAY_AGENT_INFO)
    if relay82 is not None:
        ordered[o.RELAY_AGENT_INFO] = relay82
    return ordered


class Assemble:
    """Sets `reply.packet` from the fields the handlers filled in."""

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Build the BOOTREPLY."""
        pkt = req.pkt
        opts = reply.options  # this request's own dict: handlers copy cached option sets into it
        server = reply.server_id
        packed, text = spelled(server)
        if reply.mtype is not None:
            opts[o.MESSAGE_TYPE] = _MESSAGE_TYPE[reply.mtype]
            opts[o.SERVER_ID] = packed
        boot = reply.boot_file
        sname = text if boot is not None else b""
        reply.packet = DhcpPacket(
            op=p.BOOTREPLY, xid=pkt.xid, chaddr=pkt.chaddr, htype=pkt.htype, hlen=pkt.hlen, flags=pkt.flags,
            ciaddr=reply.ciaddr, yiaddr=reply.yiaddr, siaddr=server if boot is not None else p.ZERO_IP,
            giaddr=pkt.giaddr, sname=sname, file=boot.encode()[:127] if boot is not None else b"",
            options=_echoed(pkt, opts), bootp=pkt.bootp,
        )
        return reply


def nak(req: Request, reply: Reply, why: str) -> Proposal:
    """A DHCPNAK (RFC 2131 §4.3.2, Table 3) carrying `why` in option 56; relayed NAKs set the broadcast
    bit so that the relay broadcasts them to a client that has no usable address."""
    pkt = req.pkt
    opts = {o.MESSAGE_TYPE: bytes((p.NAK,)), o.SERVER_ID: reply.server_id.packed, o.MESSAGE: why.encode()[:255]}
    flags = pkt.flags | (p.BROADCAST_FLAG if not is_zero(pkt.giaddr) else 0)
    packet = DhcpPacket(op=p.BOOTREPLY, xid=pkt.xid, chaddr=pkt.chaddr, htype=pkt.htype, hlen=pkt.hlen,
                        flags=flags, giaddr=pkt.giaddr, options=_echoed(pkt, opts))
    return Proposal(reply=packet, log_format="%s -> NAK", log_args=(why,), level=logging.WARNING, counter="nak")
