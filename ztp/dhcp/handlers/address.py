"""Which address the reply gives (RFC 2131 §4.3.1 for DISCOVER, §4.3.2 for the REQUEST states).

Allocation order: the device's reservation; the address the client held before; the requested address
(option 50) if free; the first never-used pool address; then the oldest expired or released one.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address

from ztp.config import Config, Device, Subnet
from ztp.dhcp import options as o
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Proposal, Reply, Request, silent
from ztp.dhcp.handlers.assemble import nak
from ztp.ipkey import is_zero
from ztp.leases.ledger import Ledger
from ztp.leases.table import LeaseState


def reservation(device: Device | None, subnet: Subnet) -> IPv4Address | None:
    """The device's inventory address when it lies in `subnet`."""
    if device is not None and device.ip is not None and device.ip in subnet.network:
        return device.ip
    return None


class AssignAddress:
    """Sets `reply.yiaddr` (and `binding`, `state`, `ciaddr`), or ends the chain with a NAK or silence."""

    def __init__(self, config: Config, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Dispatch on the message type."""
        mtype = req.mtype
        if mtype == p.DISCOVER:
            return self._discover(req, reply)
        if mtype == p.REQUEST:
            return self._request(req, reply)
        if mtype == p.INFORM:
            # RFC 2131 §4.3.5: no address, no lease; ciaddr is echoed (Table 3).
            reply.ciaddr = req.pkt.ciaddr
            reply.state = "inform"
            return reply
        if mtype is None:
            return self._bootp(req, reply)
        return reply

    def _discover(self, req: Request, reply: Reply) -> Reply | Proposal:
        subnet = reply.subnet
        assert subnet is not None
        ip = self.ledger.choose(subnet, req.client, reserved=reservation(reply.device, subnet),
                                requested=req.pkt.option_ip(o.REQUESTED_IP), now=req.now)
        if ip is None:
            return silent("DISCOVER: no free address in %s", subnet.network, level=logging.WARNING,
                          counter="pool_exhausted")
        reply.yiaddr = ip
        reply.state = "init"
        return reply

    def _request(self, req: Request, reply: Reply) -> Reply | Proposal:
        pkt = req.pkt
        subnet = reply.subnet
        assert subnet is not None
        requested = pkt.option_ip(o.REQUESTED_IP)
        if pkt.options.get(o.SERVER_ID) is not None:
            # SELECTING: the client answers our OFFER (ServerId has checked that it names us).
            if not is_zero(pkt.ciaddr) and requested is None:
                requested = pkt.ciaddr
            held = self.ledger.lease_of(req.client)
            if requested is None or held is None or held.ip != requested or not held.active(req.now):
                return nak(req, reply, f"REQUEST (selecting) for {requested}: no matching offer")
            return self._grant(reply, requested, "selecting")
        reserved = reservation(reply.device, subnet)
        if is_zero(pkt.ciaddr):
            # INIT-REBOOT: verify the address the client remembers.
            if requested is None:
                return nak(req, reply, "REQUEST (init-reboot) without option 50")
            if requested not in subnet.network:
                return nak(req, reply, f"REQUEST (init-reboot) for {requested}: wrong network {subnet.network}")
            held = self.ledger.lease_of(req.client)
            if held is not None and held.state != LeaseState.OFFERED and held.ip != requested \
                    and reserved is None:
                # §4.3.2: "the client's notion of its IP address is not correct": we know it by another.
                return nak(req, reply, f"REQUEST (init-reboot) for {requested}: this client's address "
                                       f"is {held.ip}")
            if not self.config.authoritative and reserved is None and (held is None or held.ip != requested):
                # §4.3.2: with no record of the client a server MUST stay silent, so that servers that do
                # not share state can coexist; an authoritative one (the default) answers.
                return silent("REQUEST (init-reboot) for %s: no record of this client; silent "
                              "(dhcp.authoritative is false)", requested)
            return self._verify(req, reply, requested, reserved, "init-reboot")
        # RENEWING (unicast) or REBINDING (broadcast): ciaddr carries the address, and is echoed (Table 3).
        # A relay forwards only broadcasts: a relayed REQUEST with ciaddr set is a REBINDING one too.
        state = "rebinding" if req.ingress.broadcast or not is_zero(pkt.giaddr) else "renewing"
        if pkt.ciaddr not in subnet.network:
            return nak(req, reply, f"REQUEST ({state}) for {pkt.ciaddr}: wrong network {subnet.network}")
        reply.ciaddr = pkt.ciaddr
        return self._verify(req, reply, pkt.ciaddr, reserved, state)

    def _verify(self, req: Request, reply: Reply, ip: IPv4Address, reserved: IPv4Address | None,
                state: str) -> Reply | Proposal:
        subnet = reply.subnet
        assert subnet is not None
        if reserved is not None and ip != reserved:
            return nak(req, reply, f"REQUEST ({state}) for {ip}: this device is reserved {reserved}")
        if reserved is None and not subnet.in_pool(ip):
            return nak(req, reply, f"REQUEST ({state}) for {ip}: not in the pool")
        if not self.ledger.available(ip, req.client, req.now):
            return nak(req, reply, f"REQUEST ({state}) for {ip}: leased to another client")
        return self._grant(reply, ip, state)

    @staticmethod
    def _grant(reply: Reply, ip: IPv4Address, state: str) -> Reply:
        reply.yiaddr = ip
        reply.binding = True
        reply.state = state
        return reply

    def _bootp(self, req: Request, reply: Reply) -> Reply | Proposal:
        subnet = reply.subnet
        assert subnet is not None
        reserved = reservation(reply.device, subnet)
        mode = self.config.bootp
        if mode == "off" or (reserved is None and mode != "dynamic"):
            # A BOOTP binding never ends by itself: only inventory devices get one unless asked for.
            return silent("BOOTREQUEST: no reservation for this device and dynamic BOOTP is off "
                          "(dhcp.bootp: %s); ignored", mode, level=logging.INFO, counter="bootp_refused")
        ip = self.ledger.choose(subnet, req.client, reserved=reserved, requested=None, now=req.now)
        if ip is None:
            return silent("BOOTREQUEST: no free address in %s", subnet.network, level=logging.WARNING,
                          counter="pool_exhausted")
        return self._grant(reply, ip, "bootp")
