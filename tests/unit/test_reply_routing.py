"""Where a reply goes: every case of RFC 2131 §4.1 ("transmitting a reply") and §4.3.2 for NAKs.

The relay's side of the same rule (delivery after option 82 is stripped) is in test_relay_policy.py.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from ztp.dhcp import packet as p
from ztp.dhcp.packet import DhcpPacket, mac_to_chaddr
from ztp.dhcp.reply import (
    CLIENT_PORT,
    LIMITED_BROADCAST,
    SERVER_PORT,
    Destination,
    destination,
    on_link,
    to_relay,
    usable_ciaddr,
)

CHADDR = mac_to_chaddr("02:00:00:00:00:01")
GIADDR = IPv4Address("10.70.0.1")
CIADDR = IPv4Address("10.60.0.50")
YIADDR = IPv4Address("10.60.0.100")


BOGUS_CIADDRS = [IPv4Address(a) for a in ("255.255.255.255", "0.0.0.1", "127.0.0.1", "224.0.0.1",
                                            "239.255.255.250", "240.0.0.1")]


def request(mtype: int | None = p.REQUEST, *, giaddr: IPv4Address = p.ZERO_IP,
            ciaddr: IPv4Address = p.ZERO_IP, broadcast: bool = False, htype: int = 1,
            hlen: int = 6) -> DhcpPacket:
    opts = {} if mtype is None else {53: bytes((mtype,))}
    return DhcpPacket(op=p.BOOTREQUEST, xid=1, chaddr=CHADDR, htype=htype, hlen=hlen, giaddr=giaddr,
                      ciaddr=ciaddr, flags=p.BROADCAST_FLAG if broadcast else 0, options=opts,
                      bootp=mtype is None)


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


@pytest.mark.parametrize(("req", "mtype"), [(p.REQUEST, p.ACK), (p.INFORM, p.ACK), (None, None)])
@pytest.mark.parametrize("broadcast", [False, True])
def test_ciaddr_set_is_unicast_to_ciaddr(req: int | None, mtype: int | None, broadcast: bool) -> None:
    # RENEWING/REBINDING clients, INFORM and BOOTP (RFC 1542 §5.4): "unicasts ... DHCPACK messages to
    # the address in 'ciaddr'". (Not an OFFER: see test_offer_never_goes_to_ciaddr.)
    dest = destination(request(req, ciaddr=CIADDR, broadcast=broadcast), reply(mtype, yiaddr=CIADDR))
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


# --- the DISCOVER-with-garbage-ciaddr bug: an OFFER never goes to ciaddr -------------------------------

@pytest.mark.parametrize("ciaddr", [*BOGUS_CIADDRS, CIADDR])
def test_offer_never_goes_to_ciaddr(ciaddr: IPv4Address) -> None:
    # A DISCOVER comes from a client in INIT, which has no address (RFC 2131 Table 5: ciaddr 0): the OFFER
    # used to be unicast to 255.255.255.255 and the send failed with "Network is unreachable".
    dest = destination(request(p.DISCOVER, ciaddr=ciaddr), reply(p.OFFER))
    assert dest == Destination(YIADDR, CLIENT_PORT, arp_mac=bytes.fromhex("020000000001"))


@pytest.mark.parametrize("ciaddr", BOGUS_CIADDRS)
def test_offer_with_bogus_ciaddr_and_broadcast_flag_is_broadcast(ciaddr: IPv4Address) -> None:
    assert destination(request(p.DISCOVER, ciaddr=ciaddr, broadcast=True), reply(p.OFFER)) == BROADCAST


@pytest.mark.parametrize("ciaddr", BOGUS_CIADDRS)
@pytest.mark.parametrize("mtype", [p.ACK, None])
def test_ack_with_unusable_ciaddr_falls_back_to_yiaddr_at_chaddr(ciaddr: IPv4Address, mtype: int | None) -> None:
    req = p.REQUEST if mtype == p.ACK else None
    dest = destination(request(req, ciaddr=ciaddr), reply(mtype))
    assert dest == Destination(YIADDR, CLIENT_PORT, arp_mac=bytes.fromhex("020000000001"))


@pytest.mark.parametrize("ciaddr", BOGUS_CIADDRS)
def test_inform_ack_with_unusable_ciaddr_and_no_yiaddr_is_broadcast(ciaddr: IPv4Address) -> None:
    assert destination(request(p.INFORM, ciaddr=ciaddr), reply(p.ACK, yiaddr=p.ZERO_IP)) == BROADCAST


@pytest.mark.parametrize(("ip", "usable"), [
    ("10.60.0.50", True), ("1.0.0.1", True), ("169.254.3.4", True), ("223.255.255.254", True),
    ("0.0.0.0", False), ("0.1.2.3", False), ("127.0.0.1", False), ("224.0.0.1", False),
    ("239.1.1.1", False), ("240.0.0.1", False), ("255.255.255.255", False),
])
def test_usable_ciaddr(ip: str, usable: bool) -> None:
    assert usable_ciaddr(IPv4Address(ip)) is usable


# --- the two steps: to the relay, then on the client's link ----------------------------------------------

def test_to_relay_only_when_giaddr_is_set() -> None:
    assert to_relay(request(p.DISCOVER)) is None
    assert to_relay(request(p.DISCOVER, giaddr=GIADDR)) == Destination(GIADDR, SERVER_PORT)


def copied(req: DhcpPacket, rep: DhcpPacket) -> DhcpPacket:
    """The reply as a relay sees it: the client's fields copied from the request (RFC 2131 Table 3)."""
    ciaddr = req.ciaddr if rep.message_type in (p.ACK, None) else p.ZERO_IP
    return DhcpPacket(op=p.BOOTREPLY, xid=rep.xid, chaddr=req.chaddr, htype=req.htype, hlen=req.hlen,
                      flags=req.flags, ciaddr=ciaddr, yiaddr=rep.yiaddr, options=rep.options, bootp=rep.bootp)


@pytest.mark.parametrize(("req", "rep"), [
    (request(p.DISCOVER), reply(p.OFFER)),
    (request(p.DISCOVER, broadcast=True), reply(p.OFFER)),
    (request(p.REQUEST), reply(p.ACK)),
    (request(p.REQUEST, ciaddr=CIADDR), reply(p.ACK, yiaddr=CIADDR)),
    (request(p.REQUEST, ciaddr=CIADDR, broadcast=True), reply(p.ACK, yiaddr=CIADDR)),
    (request(p.REQUEST), reply(p.NAK, yiaddr=p.ZERO_IP)),
    (request(p.INFORM, ciaddr=CIADDR), reply(p.ACK, yiaddr=p.ZERO_IP)),
    (request(None), reply(None)),
    (request(None, ciaddr=CIADDR), reply(None, yiaddr=CIADDR)),
    (request(p.DISCOVER, htype=6), reply(p.OFFER)),
])
def test_server_direct_and_relay_delivery_are_the_same_rule(req: DhcpPacket, rep: DhcpPacket) -> None:
    # What the server does on the client's link equals what a relay does with the copied reply.
    assert destination(req, rep) == on_link(rep, req) == on_link(copied(req, rep))
