"""The values that flow through the DHCP handler chain: Request in, Reply in progress, Proposal out.

`Handler = (Request, Reply) -> Reply | Proposal`: a handler reads the request and the reply so far and
returns the reply to hand to the next handler, or a `Proposal` that ends the chain (a reply to send, a
lease change to commit first, or silence). Handlers touch no socket, clock or store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from ztp.config import Device, Subnet
from ztp.dhcp import options as o
from ztp.dhcp import packet as p
from ztp.dhcp.packet import DhcpPacket
from ztp.dhcp.relayinfo import RelayInfo
from ztp.leases.ledger import LeaseChange


# The per-packet records below spell out __init__ (init=False): compiled (setup.py's HOT build, mypyc) an
# explicit __init__ stores the fields directly instead of calling the interpreted one dataclasses generates
# (callgrind, a Reply: 6,000 -> 390 instructions; see DhcpPacket).
@dataclass(slots=True, init=False)  # not frozen only because one is built per datagram (see DhcpPacket); never mutated
class Ingress:
    """Where a request arrived: the receiving interface and the appliance address the client reached."""

    ifindex: int
    ifname: str | None
    server_ip: IPv4Address
    local_ips: frozenset[IPv4Address] = frozenset()
    broadcast: bool = False  # sent to 255.255.255.255 rather than to one of our addresses
    peer: IPv4Address = p.ZERO_IP  # the datagram's source address (a relay's, or a renewing client's)

    def __init__(self, ifindex: int, ifname: str | None, server_ip: IPv4Address,
                 local_ips: frozenset[IPv4Address] = frozenset(), broadcast: bool = False,
                 peer: IPv4Address = p.ZERO_IP) -> None:
        self.ifindex = ifindex
        self.ifname = ifname
        self.server_ip = server_ip
        self.local_ips = local_ips
        self.broadcast = broadcast
        self.peer = peer


def client_key(pkt: DhcpPacket, mac: str | None = None) -> str:
    """RFC 2131 §4.2: a client is identified by option 61 when present, else by chaddr (`mac`: pkt.mac,
    when the caller has it already)."""
    cid = pkt.options.get(o.CLIENT_ID)
    return "id:" + cid.hex() if cid else pkt.mac if mac is None else mac


@dataclass(slots=True, init=False)
class Request:
    """One decoded BOOTREQUEST with where it came from and when."""

    pkt: DhcpPacket
    ingress: Ingress
    now: float
    mtype: int | None  # None: BOOTP (RFC 951)
    client: str
    relay: RelayInfo | None
    mac: str  # chaddr as the device key (computed once: several handlers need it)
    cleared: IPv4Address | None = None  # an address just probed (ICMP echo) with no answer: offer it now

    def __init__(self, pkt: DhcpPacket, ingress: Ingress, now: float, mtype: int | None, client: str,
                 relay: RelayInfo | None, mac: str, cleared: IPv4Address | None = None) -> None:
        self.pkt = pkt
        self.ingress = ingress
        self.now = now
        self.mtype = mtype
        self.client = client
        self.relay = relay
        self.mac = mac
        self.cleared = cleared


@dataclass(slots=True, init=False)
class Reply:
    """The reply being built; each handler fills in its part."""

    mtype: int | None  # OFFER or ACK; None for a BOOTREPLY
    server_id: IPv4Address = p.ZERO_IP
    subnet: Subnet | None = None
    device: Device | None = None
    yiaddr: IPv4Address = p.ZERO_IP
    ciaddr: IPv4Address = p.ZERO_IP
    state: str = ""  # RFC 2131 client state the request was sent in (selecting, renewing, ...), for logs
    binding: bool = False  # the reply binds yiaddr (ACK, BOOTREPLY); an OFFER only holds it
    lease_time: int | None = None  # seconds of the binding; None: the reply carries no lease (INFORM)
    options: dict[int, bytes] = field(default_factory=dict)
    boot_file: str | None = None
    hostname: str | None = None  # kept in the lease; sent as option 12 only for inventory devices
    vendor: str | None = None  # the profile the request's fingerprint was recognised as ("" none, None no fingerprint)
    change: LeaseChange | None = None
    packet: DhcpPacket | None = None  # the assembled BOOTREPLY
    dropped: tuple[int, ...] = ()  # options left out to fit the client's size limit

    def __init__(self, mtype: int | None, server_id: IPv4Address = p.ZERO_IP, subnet: Subnet | None = None,
                 device: Device | None = None, yiaddr: IPv4Address = p.ZERO_IP, ciaddr: IPv4Address = p.ZERO_IP,
                 state: str = "", binding: bool = False, lease_time: int | None = None,
                 options: dict[int, bytes] | None = None, boot_file: str | None = None, hostname: str | None = None,
                 vendor: str | None = None, change: LeaseChange | None = None, packet: DhcpPacket | None = None,
                 dropped: tuple[int, ...] = ()) -> None:
        self.mtype = mtype
        self.server_id = server_id
        self.subnet = subnet
        self.device = device
        self.yiaddr = yiaddr
        self.ciaddr = ciaddr
        self.state = state
        self.binding = binding
        self.lease_time = lease_time
        self.options = {} if options is None else options
        self.boot_file = boot_file
        self.hostname = hostname
        self.vendor = vendor
        self.change = change
        self.packet = packet
        self.dropped = dropped


@dataclass(slots=True, init=False)
class Proposal:
    """The chain's outcome: a reply (maybe none) and the lease change to commit before it is sent."""

    reply: DhcpPacket | None = None
    change: LeaseChange | None = None
    # The log line is formatted only when it is emitted (`log`): building it costs more than deciding
    # a routine OFFER or ACK, and the server logs those at INFO, usually off.
    log_format: str = ""
    log_args: tuple[object, ...] = ()
    level: int = logging.INFO
    counter: str = ""  # a counter to bump for refusals worth counting ("" none)
    # Probe this address (ICMP echo) before answering: the server commits `change` (the offer hold), pings,
    # and runs the chain again once the probe has resolved (ztp.dhcp.handlers.conflict).
    probe: IPv4Address | None = None
    # Who the request is from, as the chain recognised it (`identified`: it ran through every handler): the
    # timeline keys its events by this instead of matching the request against the inventory again.
    device: Device | None = None
    relay: RelayInfo | None = None
    identified: bool = False

    def __init__(self, reply: DhcpPacket | None = None, change: LeaseChange | None = None, log_format: str = "",
                 log_args: tuple[object, ...] = (), level: int = logging.INFO, counter: str = "",
                 probe: IPv4Address | None = None, device: Device | None = None, relay: RelayInfo | None = None,
                 identified: bool = False) -> None:
        self.reply = reply
        self.change = change
        self.log_format = log_format
        self.log_args = log_args
        self.level = level
        self.counter = counter
        self.probe = probe
        self.device = device
        self.relay = relay
        self.identified = identified

    @property
    def log(self) -> str:
        """What happened, as one line for the log (empty: nothing worth logging)."""
        return self.log_format % self.log_args if self.log_args else self.log_format


def silent(log_format: str, *args: object, level: int = logging.DEBUG, counter: str = "") -> Proposal:
    """A Proposal that answers nothing and changes nothing."""
    return Proposal(log_format=log_format, log_args=args, level=level, counter=counter)


Handler = Callable[[Request, Reply], "Reply | Proposal"]
