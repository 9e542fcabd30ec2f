"""Where a reply goes: every case of RFC 2131 §4.1 ("transmitting a reply") and §4.3.2 for NAKs."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from ztp.dhcp import packet as p
from ztp.dhcp.packet import DhcpPacket, mac_to_chaddr
from ztp.dhcp.reply import CLIENT_PORT, LIMITED_BROADCAST, SERVER_PORT, Destination, destination

CHADDR = mac_to_chaddr("02:00:00:00:00:01")
GIADDR = IPv4Address("10.70.0.1")
CIADDR = IPv4Address("10.60.0.50")
YIADDR = IPv4Address("10.60.0.100")


def request(*, giaddr: IPv4Address = p.ZERO_IP, ciaddr: IPv4Address = p.ZERO_IP, broadcast: bool = False,
            htype: int = 1, hlen: int = 6) -> DhcpPacket:
    return DhcpPacket(op=p.BOOTREQUEST, xid=1, chaddr=CHADDR, htype=htype, hlen=hlen, giaddr=giaddr,
                      ciaddr=ciaddr, flags=p.BROADCAST_FLAG if broadcast else 0, options={53: b"\x03"})


def reply(mtype: int | None, *, yiaddr: IPv4Address = YIADDR) -> DhcpPacket:
    opts = {} if mtype is None else {53: bytes((mtype,))}
    return DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=CHADDR, yiaddr=yiaddr, options=opts, bootp=mtype is None)


BROADCAST = Destination(LIMITED_BROADCAST, CLIENT_PORT, broadcast=True)


@pytest.mark.parametrize("mtype", [p.OFFER, p.ACK, p.NAK, None])
@pytest.mark.parametrize("broadcast", [False, True])
@pytest.mark.parametrize("ciaddr", [p.ZERO_IP, CIADDR])
def test_giaddr_set_goes_to_the_relay_on_port_67(mtype: int | None, broadcast: bool,
                                                 ciaddr: IPv4Address) -> None:
    # "If the 'giaddr' field is nonzero, the server sends any return messages to the 'DHCP server' port
    # on the BOOTP relay agent whose address appears in 'giaddr'" - whatever else the request says.
    dest = destination(request(giaddr=GIADDR, ciaddr=ciaddr, broadcast=broadcast), reply(mtype))
    assert dest == Destination(GIADDR, SERVER_PORT)


@pytest.mark.parametrize("ciaddr", [p.ZERO_IP, CIADDR])
@pytest.mark.parametrize("broadcast", [False, True])
def test_nak_without_giaddr_is_always_broadcast(ciaddr: IPv4Address, broadcast: bool) -> None:
    # "In all cases, when 'giaddr' is zero, the server broadcasts any DHCPNAK messages to 0xffffffff."
    dest = destination(request(ciaddr=ciaddr, broadcast=broadcast), reply(p.NAK, yiaddr=p.ZERO_IP))
    assert dest == BROADCAST


@pytest.mark.parametrize("mtype", [p.OFFER, p.ACK])
@pytest.mark.parametrize("broadcast", [False, True])
def test_ciaddr_set_is_unicast_to_ciaddr(mtype: int, broadcast: bool) -> None:
    # RENEWING clients and INFORM: "unicasts DHCPOFFER and DHCPACK messages to the address in 'ciaddr'".
    dest = destination(request(ciaddr=CIADDR, broadcast=broadcast), reply(mtype, yiaddr=CIADDR))
    assert dest == Destination(CIADDR, CLIENT_PORT)
    assert dest.arp_mac is None  # the client owns the address: ordinary ARP works


def test_inform_ack_with_zero_yiaddr_goes_to_ciaddr() -> None:
    dest = destination(request(ciaddr=CIADDR), reply(p.ACK, yiaddr=p.ZERO_IP))
    assert dest == Destination(CIADDR, CLIENT_PORT)


@pytest.mark.parametrize("mtype", [p.OFFER, p.ACK, None])
def test_broadcast_flag_is_broadcast(mtype: int | None) -> None:
    assert destination(request(broadcast=True), reply(mtype)) == BROADCAST


@pytest.mark.parametrize("mtype", [p.OFFER, p.ACK, None])
def test_otherwise_unicast_to_yiaddr_at_chaddr(mtype: int | None) -> None:
    dest = destination(request(), reply(mtype))
    assert dest == Destination(YIADDR, CLIENT_PORT, arp_mac=bytes.fromhex("020000000001"))
    assert not dest.broadcast


@pytest.mark.parametrize(("htype", "hlen"), [(6, 6), (1, 8), (32, 16)])
def test_no_arp_injection_for_non_ethernet_hardware_falls_back_to_broadcast(htype: int, hlen: int) -> None:
    assert destination(request(htype=htype, hlen=hlen), reply(p.OFFER)) == BROADCAST


def test_zero_yiaddr_without_ciaddr_is_broadcast() -> None:
    assert destination(request(), reply(p.ACK, yiaddr=p.ZERO_IP)) == BROADCAST
