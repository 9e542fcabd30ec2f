"""Where a server reply goes (RFC 2131 §4.1, "transmitting a reply"): pure."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Final

from ztp.dhcp import packet as p
from ztp.dhcp.packet import DhcpPacket

LIMITED_BROADCAST: Final = IPv4Address("255.255.255.255")
SERVER_PORT: Final = 67
CLIENT_PORT: Final = 68


@dataclass(slots=True)  # not frozen only because one is built per reply (see DhcpPacket); never mutated
class Destination:
    """Address and port to send to; `arp_mac` set when the client must be reached before it has an IP."""

    ip: IPv4Address
    port: int
    broadcast: bool = False
    arp_mac: bytes | None = None


def destination(request: DhcpPacket, reply: DhcpPacket) -> Destination:
    """giaddr -> the relay; NAK -> broadcast; ciaddr -> unicast; broadcast flag -> broadcast;
    otherwise unicast to yiaddr at chaddr."""
    if request.giaddr != p.ZERO_IP:
        return Destination(request.giaddr, SERVER_PORT)
    if reply.message_type == p.NAK:
        return Destination(LIMITED_BROADCAST, CLIENT_PORT, broadcast=True)
    if request.ciaddr != p.ZERO_IP:
        return Destination(request.ciaddr, CLIENT_PORT)
    if request.broadcast or reply.yiaddr == p.ZERO_IP or request.htype != 1 or request.hlen != 6:
        return Destination(LIMITED_BROADCAST, CLIENT_PORT, broadcast=True)
    return Destination(reply.yiaddr, CLIENT_PORT, arp_mac=request.chaddr[:6])
