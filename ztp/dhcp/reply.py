"""Where a reply goes (RFC 2131 §4.1, "transmitting a reply"; RFC 1542 §4.1.2 and §5.4): pure.

Two steps, shared by the server and the relay so that both reach a client the same way:

1. `to_relay`: a request that came through a relay (non-zero giaddr) is answered to that relay's
   server port; the relay does step 2.
2. `on_link`: how to reach the client on its own link. The server uses it when it answers directly,
   the relay (`ztp.relay.policy`) when it delivers a reply after stripping option 82.

`destination(request, reply)` is the two together, as the server calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Final

from ztp.dhcp import packet as p
from ztp.dhcp.packet import DhcpPacket
from ztp.ipkey import is_zero

LIMITED_BROADCAST: Final = IPv4Address("255.255.255.255")
SERVER_PORT: Final = 67
CLIENT_PORT: Final = 68
ETHERNET: Final = 1  # ARP hardware type: the only one we can put into the neighbour table by hand


# __init__ spelled out (init=False) so that the compiled build stores fields directly (see DhcpPacket).
@dataclass(slots=True, init=False)  # not frozen only because one is built per reply (see DhcpPacket); never mutated
class Destination:
    """Address and port to send to; `arp_mac` set when the client must be reached before it has an IP."""

    ip: IPv4Address
    port: int
    broadcast: bool = False
    arp_mac: bytes | None = None

    def __init__(self, ip: IPv4Address, port: int, broadcast: bool = False, arp_mac: bytes | None = None) -> None:
        self.ip = ip
        self.port = port
        self.broadcast = broadcast
        self.arp_mac = arp_mac


def destination(request: DhcpPacket, reply: DhcpPacket) -> Destination:
    """Where the server sends `reply` to `request`: `to_relay` when relayed, else `on_link` (RFC 2131 §4.1)."""
    relay = to_relay(request)
    return relay if relay is not None else on_link(reply, request)


def to_relay(request: DhcpPacket) -> Destination | None:
    """The relay's server port when `request` was relayed (non-zero giaddr), else None.

    RFC 2131 §4.1: "If the 'giaddr' field in a DHCP message from a client is non-zero, the server sends
    any return messages to the 'DHCP server' port on the BOOTP relay agent whose address appears in
    'giaddr'" - whatever ciaddr, the broadcast flag or the message type say, NAKs included (RFC 2131
    §4.3.2 sets the broadcast bit in a relayed NAK instead, so that the relay broadcasts it). Same for
    BOOTP (RFC 1542 §5.4).
    """
    if is_zero(request.giaddr):
        return None
    return Destination(request.giaddr, SERVER_PORT)


def on_link(reply: DhcpPacket, request: DhcpPacket | None = None) -> Destination:
    """How to reach the client of `reply` on its own link (RFC 2131 §4.1, RFC 1542 §4.1.2 and §5.4).

    The client's own fields (ciaddr, broadcast flag, htype, hlen, chaddr) are read from `request` when
    the caller has it (the server); a relay only has the reply, where the server copied them (RFC 2131
    Table 3), and passes None. In order:

    - NAK: broadcast. RFC 2131 §4.1: "when 'giaddr' is zero, the server broadcasts any DHCPNAK"; the
      relay broadcasts it too (RFC 2131 §4.3.2: the client may have no usable address or mask).
    - ACK or BOOTP reply with a usable ciaddr: unicast to ciaddr, the client answers ARP for it (RFC 2131
      §4.1 "unicasts DHCPOFFER and DHCPACK messages to the address in 'ciaddr'"; RFC 1542 §5.4 for
      BOOTP). Never for an OFFER, although §4.1 names it too: it answers a DISCOVER, whose client is in
      INIT and has no address (RFC 2131 §4.4.1, Table 5: ciaddr 0 in DHCPDISCOVER), so a ciaddr there
      is garbage (seen: 255.255.255.255) and unicasting to it fails or reaches someone else. An ACK
      answers a REQUEST (RENEWING/REBINDING carry ciaddr) or an INFORM, the only messages whose ciaddr
      names the client (RFC 2131 §4.3.2, §4.3.5).
    - Broadcast flag set: broadcast (RFC 2131 §4.1, RFC 1542 §2.2: the client cannot receive unicast
      before it is configured).
    - No yiaddr to unicast to, or hardware other than 6-byte Ethernet whose address we cannot put in
      the ARP table: broadcast (RFC 2131 §4.1: "If unicasting is not possible, the message MAY be sent
      as an IP broadcast").
    - Otherwise unicast to yiaddr at chaddr, with an ARP entry the sender installs first because the
      client does not answer ARP for an address it does not have yet.
    """
    client = reply if request is None else request
    mtype = reply.message_type
    if mtype == p.NAK:
        return Destination(LIMITED_BROADCAST, CLIENT_PORT, broadcast=True)
    if mtype in (p.ACK, None) and usable_ciaddr(client.ciaddr):
        return Destination(client.ciaddr, CLIENT_PORT)
    if (client.broadcast or is_zero(reply.yiaddr)
            or client.htype != ETHERNET or client.hlen != 6 or len(client.chaddr) < 6):
        return Destination(LIMITED_BROADCAST, CLIENT_PORT, broadcast=True)
    return Destination(reply.yiaddr, CLIENT_PORT, arp_mac=client.chaddr[:6])


def usable_ciaddr(ip: IPv4Address) -> bool:
    """Whether a client-supplied ciaddr can be a unicast destination.

    Not 0.0.0.0/8 ("this network", RFC 1122 §3.2.1.3), loopback 127/8, multicast 224/4, nor class E
    240/4 (reserved, including 255.255.255.255): a client sending those is broken or lying, and a send to
    them fails ("Network is unreachable") or leaves the link.
    """
    first = int(ip) >> 24  # integer test: this runs for every reply, ipaddress properties cost more
    return 0 < first < 224 and first != 127
