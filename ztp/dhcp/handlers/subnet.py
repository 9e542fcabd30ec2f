"""Which configured subnet a request is for.

RFC 3527 link-selection sub-option > giaddr (RFC 2131 §4.3.1) > ciaddr of a unicast REQUEST, INFORM,
RELEASE or DECLINE with giaddr 0 (RFC 2131 §4.3.2: a RENEWING client's unicast is trusted by ciaddr; it
reaches the appliance through routers, not relays, so the ingress interface says nothing about it) > the
interface the broadcast arrived on.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address

from ztp.config import Config, Subnet
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Proposal, Reply, Request, silent
from ztp.ipkey import ip_key, is_zero

LINK_SELECTION = 5  # RFC 3527 §3: sub-option of option 82
_BY_CIADDR = frozenset({p.REQUEST, p.INFORM, p.RELEASE, p.DECLINE})
_OWN_SUBNET = frozenset({p.RELEASE, p.DECLINE})  # these are judged by the address they name
_UNKNOWN = object()
_REMEMBERED = 4096  # interfaces and relay addresses whose subnet is remembered


def select_subnet(config: Config, req: Request) -> tuple[Subnet | None, str]:
    """The subnet of the request and what chose it (for logs and `ztp explain`)."""
    pkt = req.pkt
    if req.relay is not None:
        link = req.relay.get(LINK_SELECTION)
        if link is not None and len(link) == 4:
            address = IPv4Address(link)
            return config.subnet_for(address), f"link-selection {address}"
    if not is_zero(pkt.giaddr):
        return config.subnet_for(pkt.giaddr), f"giaddr {pkt.giaddr}"
    if not is_zero(pkt.ciaddr) and not req.ingress.broadcast and req.mtype in _BY_CIADDR:
        return config.subnet_for(pkt.ciaddr), f"ciaddr {pkt.ciaddr}"
    return config.subnet_for(req.ingress.server_ip), f"interface {req.ingress.ifname}"


class SelectSubnet:
    """Sets `reply.subnet`; a request from where no subnet is configured is ignored."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # Broadcasts arrive on a few interfaces and relayed requests from a few relays: their subnet is looked
        # up once, not per request (membership tests on IPv4Network cost about a microsecond each, and the
        # text naming where a request came from is built only for the log line of one that has no subnet).
        # Both by address (ipkey.ip_key).
        self._by_interface: dict[int, Subnet | None] = {}
        self._by_giaddr: dict[int, Subnet | None] = {}

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Choose the subnet, or drop the request with a warning naming where it came from."""
        pkt = req.pkt
        if req.relay is None:
            if not is_zero(pkt.giaddr):
                known, key = self._by_giaddr, pkt.giaddr
            elif req.ingress.broadcast:
                known, key = self._by_interface, req.ingress.server_ip
            else:
                known = None
            if known is not None:
                number = ip_key(key)
                subnet = known.get(number, _UNKNOWN)
                if subnet is _UNKNOWN:
                    if len(known) >= _REMEMBERED:  # spoofed giaddrs must not grow it without bound
                        known.clear()
                    subnet = known[number] = self.config.subnet_for(key)
                if subnet is not None:
                    reply.subnet = subnet  # type: ignore[assignment]
                    return reply
        subnet, where = select_subnet(self.config, req)
        if subnet is None and req.mtype not in _OWN_SUBNET:
            name = p.MESSAGE_TYPE_NAMES.get(req.mtype, "BOOTREQUEST") if req.mtype is not None else "BOOTREQUEST"
            return silent("%s from %s: no subnet is configured there; ignored", name, where,
                          level=logging.WARNING, counter="no_subnet")
        reply.subnet = subnet
        return reply
