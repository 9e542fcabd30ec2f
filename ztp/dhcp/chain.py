"""The DHCP server's policy: the handlers, in the order they run.

    accept message -> relay guard -> rate limit -> subnet -> device -> server id -> release/decline
      -> address -> lease time -> options (global < defaults < subnet < device)
      -> vendor profile (under the device's) -> boot file -> host name -> lease change
      -> conflict probe (ICMP echo before a new offer) -> assemble -> size fit

`Chain.handle(packet, ingress, now)` returns a `Proposal`: the reply to send (or none) and the lease
change the server must commit before sending it. Nothing here touches a socket, the clock or the store.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import cast

from ztp.config import Config
from ztp.dhcp import options as o
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Handler, Ingress, Proposal, Reply, Request, client_key, silent
from ztp.dhcp.handlers.address import AssignAddress
from ztp.dhcp.handlers.assemble import Assemble
from ztp.dhcp.handlers.boot_file import BootFile
from ztp.dhcp.handlers.conflict import ProbeAddress, conflict
from ztp.dhcp.handlers.device import IdentifyDevice
from ztp.dhcp.handlers.hostname import HostName
from ztp.dhcp.handlers.layers import LayeredOptions
from ztp.dhcp.handlers.lease_return import ReturnLease
from ztp.dhcp.handlers.lease_time import LeaseTime
from ztp.dhcp.handlers.message import AcceptMessage
from ztp.dhcp.handlers.rate_limit import RateLimit
from ztp.dhcp.handlers.record import RecordLease
from ztp.dhcp.handlers.relay_guard import RelayGuard
from ztp.dhcp.handlers.server_id import ServerId
from ztp.dhcp.handlers.size_fit import SizeFit
from ztp.dhcp.handlers.subnet import SelectSubnet
from ztp.dhcp.handlers.vendor import VendorOptions
from ztp.dhcp.packet import DhcpPacket
from ztp.dhcp.relayinfo import parse_relay_info
from ztp.leases.ledger import Ledger

_REPLY_TYPE = {p.DISCOVER: p.OFFER, p.REQUEST: p.ACK, p.INFORM: p.ACK}


def default_handlers(config: Config, ledger: Ledger) -> list[Handler]:
    """The standard chain for `config`; a new rule is one more entry here."""
    return [
        AcceptMessage(),
        RelayGuard(config),
        RateLimit(config),
        SelectSubnet(config),
        IdentifyDevice(config),
        ServerId(ledger),
        ReturnLease(config, ledger),
        AssignAddress(config, ledger),
        LeaseTime(config),
        LayeredOptions(config),
        VendorOptions(config),
        BootFile(config),
        HostName(config),
        RecordLease(config, ledger),
        ProbeAddress(config),
        Assemble(),
        SizeFit(),
    ]


class Chain:
    """Runs the handlers over one request; built per configuration (a reload builds a new one)."""

    def __init__(self, config: Config, ledger: Ledger, handlers: Sequence[Handler] | None = None) -> None:
        self.config = config
        self.ledger = ledger
        self.handlers: tuple[Handler, ...] = tuple(handlers if handlers is not None
                                                   else default_handlers(config, ledger))
        # Each handler the cheaper way for its build (_step).
        self._steps: tuple[Handler, ...] = tuple(map(_step, self.handlers))

    def handle(self, pkt: DhcpPacket, ingress: Ingress, now: float, *,
               cleared: IPv4Address | None = None) -> Proposal:
        """Decide one BOOTREQUEST. A malformed option 82 raises MalformedPacket (the server counts it).
        `cleared`: an address the server has just probed without an answer (see `Proposal.probe`)."""
        if pkt.op != p.BOOTREQUEST:
            return silent("not a BOOTREQUEST; ignored")
        raw82 = pkt.options.get(o.RELAY_AGENT_INFO)
        relay = parse_relay_info(raw82) if raw82 is not None else None
        mtype = pkt.message_type
        mac = pkt.mac
        req = Request(pkt=pkt, ingress=ingress, now=now, mtype=mtype, client=client_key(pkt, mac), relay=relay,
                      mac=mac, cleared=cleared)
        reply = Reply(mtype=_REPLY_TYPE.get(mtype) if mtype is not None else None)
        for step in self._steps:
            out = step(req, reply)
            if isinstance(out, Proposal):
                return out
            reply = out
        return _outcome(req, reply)

    def conflict(self, ip: IPv4Address, answered_by: str | None, now: float) -> Proposal:
        """The change to commit for an address that answered its probe (then handle the request again)."""
        return conflict(self.config, ip, answered_by, now)


def _step(handler: Handler) -> Handler:
    """How the chain calls `handler`. A class written in Python: its __call__ bound once (called through the
    type's slot, each call costs the interpreter one more frame). A class compiled by mypyc, or a function: as
    it is (its slot is C; its bound __call__ would be a slot wrapper, which parses its arguments at every
    call: 4 % of the decision's instructions per DORA in the compiled build)."""
    python_class = inspect.isfunction(type(handler).__call__)
    return cast(Handler, getattr(handler, "__call__")) if python_class else handler  # noqa: B004,B009


def _outcome(req: Request, reply: Reply) -> Proposal:
    """The Proposal for a reply that ran through every handler, with its log line."""
    who = f" ({reply.device.hostname})" if reply.device is not None else ""
    level = logging.INFO
    args: tuple[object, ...]
    if req.mtype == p.DISCOVER:
        fmt, args = "DISCOVER -> OFFER %s%s", (reply.yiaddr, who)
    elif req.mtype == p.INFORM:
        fmt, args = "INFORM from %s -> ACK%s", (req.pkt.ciaddr, who)
    elif req.mtype is None:
        fmt, args = "BOOTREQUEST -> BOOTREPLY %s for %ss%s", (reply.yiaddr, reply.lease_time, who)
    else:
        fmt, args = "REQUEST (%s) -> ACK %s for %ss%s", (reply.state, reply.yiaddr, reply.lease_time, who)
    if reply.dropped:
        fmt += "; left out options %s to fit the client's size limit"
        args = (*args, ",".join(map(str, reply.dropped)))
        level = logging.WARNING
    return Proposal(reply=reply.packet, change=reply.change, log_format=fmt, log_args=args, level=level,
                    device=reply.device, relay=req.relay, identified=True)
