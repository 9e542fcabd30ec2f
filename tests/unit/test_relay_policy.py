"""Relay policy rules (RFC 1542 §4, RFC 2131 §4.1, RFC 3046) on hand-built packets with a fake clock."""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

import pytest

from ztp.dhcp.options import LEASE_TIME, RELAY_AGENT_INFO, SERVER_ID
from ztp.dhcp.packet import (
    ACK,
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    DECLINE,
    DISCOVER,
    INFORM,
    NAK,
    OFFER,
    RELEASE,
    REQUEST,
    ZERO_IP,
    DhcpPacket,
    build,
    mac_to_chaddr,
    parse,
)
from ztp.dhcp.relayinfo import CIRCUIT_ID, REMOTE_ID, RelayInfo, build_relay_info, parse_relay_info
from ztp.dhcp.reply import on_link
from ztp.relay.policy import (
    DEFAULT_MAX_HOPS,
    DROP_FOREIGN_GIADDR,
    DROP_GIADDR_SPOOF,
    DROP_HOPS,
    DROP_REQUEST_UPSTREAM,
    DROP_ROGUE_SERVER,
    DROP_UNTRUSTED_OPTION82,
    OPTION82_STRIPPED,
    OPTION82_TOO_BIG,
    RELAYED_REPLY,
    RELAYED_REQUEST,
    ClientInterface,
    Deliver,
    Drop,
    Forward,
    RelayPolicy,
    RelaySettings,
    relay_info_of,
)

if TYPE_CHECKING:
    from conftest import FakeClock

MAC = "02:00:00:00:00:01"
SERVER = IPv4Address("10.50.0.1")
SERVER2 = IPv4Address("10.50.0.9")
ETH0 = ClientInterface(
    "eth0", 2, IPv4Address("10.70.0.1"), IPv4Network("10.70.0.0/24"), bytes.fromhex("0200000070aa")
)
ETH2 = ClientInterface(
    "eth2", 4, IPv4Address("10.71.0.1"), IPv4Network("10.71.0.0/24"), bytes.fromhex("0200000071aa")
)
TRUSTED = ClientInterface(
    "eth3", 5, IPv4Address("10.72.0.1"), IPv4Network("10.72.0.0/24"), b"\x02\0\0\0\x72\xaa", trusted=True
)
UPSTREAM = "eth1"


def policy(**settings: object) -> RelayPolicy:
    kwargs: dict[str, object] = {"servers": (SERVER,)}
    kwargs.update(settings)
    return RelayPolicy((ETH0, ETH2, TRUSTED), RelaySettings(**kwargs))  # type: ignore[arg-type]


def request(mtype: int = DISCOVER, *, mac: str = MAC, **fields: object) -> DhcpPacket:
    options = {53: bytes([mtype]), 55: bytes([1, 3, 6])}
    extra = fields.pop("options", None)
    if isinstance(extra, dict):
        options.update(extra)
    return DhcpPacket(op=BOOTREQUEST, xid=0x1234, chaddr=mac_to_chaddr(mac), options=options, **fields)  # type: ignore[arg-type]


def reply(mtype: int = OFFER, *, giaddr: IPv4Address = ETH0.address, **fields: object) -> DhcpPacket:
    info = build_relay_info(RelayInfo(((CIRCUIT_ID, b"eth0"), (REMOTE_ID, ETH0.mac))))
    options = {53: bytes([mtype]), SERVER_ID: SERVER.packed, LEASE_TIME: (600).to_bytes(4, "big"),
               RELAY_AGENT_INFO: info}
    extra = fields.pop("options", None)
    if isinstance(extra, dict):
        options.update(extra)
    fields.setdefault("yiaddr", IPv4Address("10.70.0.100"))
    return DhcpPacket(
        op=BOOTREPLY, xid=0x1234, chaddr=mac_to_chaddr(MAC), giaddr=giaddr, hops=1, options=options,
        **fields,  # type: ignore[arg-type]
    )


# -- requests: RFC 1542 §4.1.1, RFC 2131 §4.1 -------------------------------------------------------


def test_request_gets_giaddr_hops_and_goes_to_every_server() -> None:
    pol = policy(servers=(SERVER, SERVER2))
    out = pol.receive(request(hops=0), "eth0", 0.0)
    assert isinstance(out, Forward)
    assert out.servers == (SERVER, SERVER2)
    assert out.packet.giaddr == ETH0.address
    assert out.packet.hops == 1
    assert out.interface is ETH0
    assert pol.counters[RELAYED_REQUEST] == 1


def test_giaddr_is_the_receiving_interfaces_address() -> None:
    out = policy().receive(request(), "eth2", 0.0)
    assert isinstance(out, Forward)
    assert out.packet.giaddr == ETH2.address


def test_non_zero_giaddr_is_never_changed_and_no_option82_added() -> None:
    downstream = IPv4Address("10.80.0.1")
    out = policy().receive(request(giaddr=downstream, hops=2), "eth0", 0.0)
    assert isinstance(out, Forward)
    assert out.packet.giaddr == downstream
    assert out.packet.hops == 3
    assert RELAY_AGENT_INFO not in out.packet.options  # RFC 3046 §2.1


def test_downstream_relays_option82_is_kept_untouched() -> None:
    theirs = build_relay_info(RelayInfo(((CIRCUIT_ID, b"ge-0/0/7"),)))
    pkt = request(giaddr=IPv4Address("10.80.0.1"), options={RELAY_AGENT_INFO: theirs})
    out = policy().receive(pkt, "eth0", 0.0)
    assert isinstance(out, Forward)
    assert out.packet.options[RELAY_AGENT_INFO] == theirs


@pytest.mark.parametrize(("hops", "max_hops", "relayed"), [
    (0, DEFAULT_MAX_HOPS, True),
    (DEFAULT_MAX_HOPS, DEFAULT_MAX_HOPS, True),  # "exceeds": equal to the threshold still passes
    (DEFAULT_MAX_HOPS + 1, DEFAULT_MAX_HOPS, False),
    (16, 16, True),
    (17, 16, False),
    (16, DEFAULT_MAX_HOPS, False),
    (255, 16, False),
])
def test_hops_threshold(hops: int, max_hops: int, relayed: bool) -> None:
    pol = policy(max_hops=max_hops)
    out = pol.receive(request(hops=hops), "eth0", 0.0)
    if relayed:
        assert isinstance(out, Forward) and out.packet.hops == hops + 1
    else:
        assert isinstance(out, Drop) and out.reason == DROP_HOPS
        assert pol.counters[DROP_HOPS] == 1


def test_default_threshold_is_rfc1542s_four() -> None:
    assert RelaySettings(servers=(SERVER,)).max_hops == 4


@pytest.mark.parametrize("bad", [-1, 17])
def test_hops_threshold_above_sixteen_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="max_hops"):
        RelaySettings(servers=(SERVER,), max_hops=bad)


def test_request_on_upstream_interface_is_dropped() -> None:
    pol = policy()
    out = pol.receive(request(), UPSTREAM, 0.0)
    assert isinstance(out, Drop) and out.reason == DROP_REQUEST_UPSTREAM


def test_request_claiming_our_own_giaddr_is_dropped() -> None:
    out = policy().receive(request(giaddr=ETH2.address), "eth0", 0.0)
    assert isinstance(out, Drop) and out.reason == DROP_GIADDR_SPOOF


# -- option 82: RFC 3046 ---------------------------------------------------------------------------


def test_option82_defaults_circuit_is_interface_remote_is_mac() -> None:
    out = policy().receive(request(), "eth0", 0.0)
    assert isinstance(out, Forward)
    info = relay_info_of(out.packet)
    assert info is not None
    assert info.circuit_id == b"eth0"
    assert info.remote_id == ETH0.mac
    # RFC 3046 §2.1: appended after the client's own options.
    assert list(out.packet.options)[-1] == RELAY_AGENT_INFO


def test_option82_configured_texts_with_interface_placeholder() -> None:
    out = policy(circuit_id="sw1:{interface}", remote_id="relay-a").receive(request(), "eth2", 0.0)
    assert isinstance(out, Forward)
    info = relay_info_of(out.packet)
    assert info is not None and info.circuit_id == b"sw1:eth2" and info.remote_id == b"relay-a"


def test_option82_survives_the_wire() -> None:
    out = policy().receive(request(), "eth0", 0.0)
    assert isinstance(out, Forward)
    again = parse(build(out.packet))
    assert parse_relay_info(again.options[RELAY_AGENT_INFO]).circuit_id == b"eth0"
    assert again.giaddr == ETH0.address and again.hops == 1


def test_client_supplied_option82_on_untrusted_interface_is_dropped() -> None:
    pol = policy()
    forged = build_relay_info(RelayInfo(((CIRCUIT_ID, b"leaf01-port"),)))
    out = pol.receive(request(options={RELAY_AGENT_INFO: forged}), "eth0", 0.0)
    assert isinstance(out, Drop) and out.reason == DROP_UNTRUSTED_OPTION82
    assert pol.counters[DROP_UNTRUSTED_OPTION82] == 1


def test_option82_from_trusted_snooping_switch_is_kept_and_not_duplicated() -> None:
    theirs = build_relay_info(RelayInfo(((CIRCUIT_ID, b"Gi1/0/5"),)))
    out = policy().receive(request(options={RELAY_AGENT_INFO: theirs}), "eth3", 0.0)
    assert isinstance(out, Forward)
    assert out.packet.giaddr == TRUSTED.address
    assert out.packet.options[RELAY_AGENT_INFO] == theirs


def test_option82_left_out_when_it_would_exceed_the_mtu() -> None:
    pol = policy(max_size=300)
    big = request(options={43: bytes(40)})
    assert len(build(big)) <= 300
    out = pol.receive(big, "eth0", 0.0)
    assert isinstance(out, Forward)
    assert RELAY_AGENT_INFO not in out.packet.options
    assert out.packet.giaddr == ETH0.address
    assert pol.counters[OPTION82_TOO_BIG] == 1


# -- replies: RFC 1542 §4.1.2, RFC 3046 §2.2 -------------------------------------------------------


def test_reply_for_our_giaddr_is_stripped_and_unicast_to_yiaddr_at_chaddr() -> None:
    pol = policy()
    out = pol.receive(reply(), UPSTREAM, 0.0)
    assert isinstance(out, Deliver)
    assert out.interface is ETH0
    assert not out.broadcast
    assert out.address == IPv4Address("10.70.0.100")
    assert out.mac == bytes.fromhex("020000000001")
    assert out.needs_arp
    assert RELAY_AGENT_INFO not in out.packet.options
    assert out.packet.giaddr == ETH0.address  # the relay passes giaddr through untouched
    assert pol.counters[RELAYED_REPLY] == 1 and pol.counters[OPTION82_STRIPPED] == 1


def test_reply_with_broadcast_flag_is_broadcast_on_the_giaddr_interface() -> None:
    out = policy().receive(reply(giaddr=ETH2.address, flags=BROADCAST_FLAG), UPSTREAM, 0.0)
    assert isinstance(out, Deliver)
    assert out.broadcast and out.address == IPv4Address("255.255.255.255")
    assert out.interface is ETH2


def test_inform_ack_goes_to_ciaddr_without_arp() -> None:
    ciaddr = IPv4Address("10.70.0.55")
    pkt = reply(ACK, yiaddr=ZERO_IP, ciaddr=ciaddr, options={53: bytes([ACK])})
    pkt = pkt.with_options({k: v for k, v in pkt.options.items() if k != LEASE_TIME})
    out = policy().receive(pkt, UPSTREAM, 0.0)
    assert isinstance(out, Deliver) and out.address == ciaddr and not out.needs_arp and not out.broadcast


def test_nak_without_addresses_is_broadcast() -> None:
    out = policy().receive(reply(NAK, yiaddr=ZERO_IP), UPSTREAM, 0.0)
    assert isinstance(out, Deliver) and out.broadcast


BCAST = IPv4Address("255.255.255.255")
YIADDR = IPv4Address("10.70.0.100")
CIADDR = IPv4Address("10.70.0.55")
CHADDR6 = bytes.fromhex("020000000001")


def _no_lease(pkt: DhcpPacket) -> DhcpPacket:
    return pkt.with_options({k: v for k, v in pkt.options.items() if k != LEASE_TIME})


def _bootp(pkt: DhcpPacket) -> DhcpPacket:
    return replace(pkt, options={}, bootp=True)


# (reply as the server sent it, expected (broadcast, address, mac, needs_arp)); the same rule as the
# server's direct reply (ztp.dhcp.reply.on_link, RFC 2131 §4.1).
DELIVERY_CASES = {
    "offer -> yiaddr at chaddr": (reply(OFFER), (False, YIADDR, CHADDR6, True)),
    "offer, broadcast flag": (reply(OFFER, flags=BROADCAST_FLAG), (True, BCAST, b"\xff" * 6, False)),
    "offer never to ciaddr": (reply(OFFER, ciaddr=CIADDR), (False, YIADDR, CHADDR6, True)),
    "offer, bogus ciaddr": (reply(OFFER, ciaddr=BCAST), (False, YIADDR, CHADDR6, True)),
    "ack -> yiaddr at chaddr": (reply(ACK), (False, YIADDR, CHADDR6, True)),
    "ack, broadcast flag": (reply(ACK, flags=BROADCAST_FLAG), (True, BCAST, b"\xff" * 6, False)),
    "renewing ack -> ciaddr": (reply(ACK, ciaddr=YIADDR), (False, YIADDR, CHADDR6, False)),
    "ack, bogus ciaddr": (reply(ACK, ciaddr=IPv4Address("224.0.0.1")), (False, YIADDR, CHADDR6, True)),
    "inform ack -> ciaddr": (_no_lease(reply(ACK, yiaddr=ZERO_IP, ciaddr=CIADDR)),
                             (False, CIADDR, CHADDR6, False)),
    "inform ack, broadcast flag -> ciaddr": (_no_lease(reply(ACK, yiaddr=ZERO_IP, ciaddr=CIADDR,
                                                             flags=BROADCAST_FLAG)),
                                             (False, CIADDR, CHADDR6, False)),
    "ack, no address at all": (reply(ACK, yiaddr=ZERO_IP), (True, BCAST, b"\xff" * 6, False)),
    "nak (relayed: broadcast bit)": (reply(NAK, yiaddr=ZERO_IP, flags=BROADCAST_FLAG),
                                     (True, BCAST, b"\xff" * 6, False)),
    "nak without the bit": (reply(NAK, yiaddr=ZERO_IP), (True, BCAST, b"\xff" * 6, False)),
    "nak with ciaddr": (reply(NAK, yiaddr=ZERO_IP, ciaddr=CIADDR), (True, BCAST, b"\xff" * 6, False)),
    "bootp -> yiaddr at chaddr": (_bootp(reply()), (False, YIADDR, CHADDR6, True)),
    "bootp with ciaddr": (_bootp(reply(ciaddr=CIADDR)), (False, CIADDR, CHADDR6, False)),
    "non-ethernet htype": (reply(OFFER, htype=6), (True, BCAST, b"\xff" * 6, False)),
    "non-ethernet hlen": (reply(OFFER, hlen=8), (True, BCAST, b"\xff" * 6, False)),
}


@pytest.mark.parametrize("case", DELIVERY_CASES)
def test_reply_delivery(case: str) -> None:
    pkt, (broadcast, address, mac, needs_arp) = DELIVERY_CASES[case]
    out = policy().receive(pkt, UPSTREAM, 0.0)
    assert isinstance(out, Deliver)
    assert (out.broadcast, out.address, out.mac, out.needs_arp) == (broadcast, address, mac, needs_arp)
    assert out.interface is ETH0
    assert RELAY_AGENT_INFO not in out.packet.options


@pytest.mark.parametrize("case", DELIVERY_CASES)
def test_relay_delivers_where_the_server_would_answer_directly(case: str) -> None:
    # One rule for both (RFC 2131 §4.1): the relay's Deliver is ztp.dhcp.reply.on_link of the reply.
    pkt = DELIVERY_CASES[case][0]
    out = policy().receive(pkt, UPSTREAM, 0.0)
    assert isinstance(out, Deliver)
    dest = on_link(out.packet)
    assert (out.broadcast, out.address, out.needs_arp) == (dest.broadcast, dest.ip, dest.arp_mac is not None)


def test_reply_for_someone_elses_giaddr_is_dropped() -> None:
    pol = policy()
    out = pol.receive(reply(giaddr=IPv4Address("10.99.0.1")), UPSTREAM, 0.0)
    assert isinstance(out, Drop) and out.reason == DROP_FOREIGN_GIADDR
    assert pol.counters[RELAYED_REPLY] == 0


@pytest.mark.parametrize("mtype", [OFFER, ACK, NAK])
def test_server_message_on_client_interface_is_dropped_as_rogue(mtype: int) -> None:
    pol = policy()
    out = pol.receive(reply(mtype), "eth0", 0.0)
    assert isinstance(out, Drop) and out.reason == DROP_ROGUE_SERVER
    assert str(SERVER) in out.detail
    assert pol.counters[DROP_ROGUE_SERVER] == 1
    assert len(pol.bindings) == 0


# -- binding table ---------------------------------------------------------------------------------


def test_ack_creates_binding_that_expires_with_the_lease(fake_clock: FakeClock) -> None:
    pol = policy()
    pol.receive(reply(OFFER), UPSTREAM, fake_clock.now)
    assert pol.bindings.active(fake_clock.now) == []  # an OFFER grants nothing
    pol.receive(reply(ACK), UPSTREAM, fake_clock.now)
    [binding] = pol.bindings.active(fake_clock.now)
    assert (binding.mac, str(binding.ip), binding.interface) == (MAC, "10.70.0.100", "eth0")
    assert binding.lease_end == fake_clock.now + 600
    fake_clock.advance(599)
    assert len(pol.bindings.active(fake_clock.now)) == 1
    fake_clock.advance(1)
    assert pol.bindings.active(fake_clock.now) == []


def test_infinite_lease_never_expires() -> None:
    pol = policy()
    pol.receive(reply(ACK, options={LEASE_TIME: b"\xff\xff\xff\xff"}), UPSTREAM, 0.0)
    [binding] = pol.bindings.active(1e12)
    assert binding.lease_end is None


@pytest.mark.parametrize("mtype", [RELEASE, DECLINE])
def test_release_and_decline_forget_the_binding(mtype: int) -> None:
    pol = policy()
    pol.receive(reply(ACK), UPSTREAM, 0.0)
    out = pol.receive(request(mtype, ciaddr=IPv4Address("10.70.0.100")), "eth0", 1.0)
    assert isinstance(out, Forward)  # still relayed to the server
    assert pol.bindings.active(1.0) == []


def test_nak_forgets_the_binding() -> None:
    pol = policy()
    pol.receive(reply(ACK), UPSTREAM, 0.0)
    pol.receive(reply(NAK, yiaddr=ZERO_IP), UPSTREAM, 1.0)
    assert pol.bindings.active(1.0) == []


def test_inform_ack_is_not_a_binding() -> None:
    pol = policy()
    pol.receive(request(INFORM, ciaddr=IPv4Address("10.70.0.55")), "eth0", 0.0)
    ack = reply(ACK, yiaddr=ZERO_IP, ciaddr=IPv4Address("10.70.0.55"))
    pol.receive(ack.with_options({53: bytes([ACK])}), UPSTREAM, 0.0)
    assert pol.bindings.active(0.0) == []


def test_snapshot_is_json_with_bindings_and_counters() -> None:
    pol = policy()
    pol.receive(request(REQUEST), "eth0", 100.0)
    pol.receive(reply(ACK), UPSTREAM, 100.0)
    pol.receive(request(hops=9), "eth0", 100.0)
    snap = json.loads(pol.snapshot_json(160.0))
    assert snap["bindings"] == [
        {"mac": MAC, "ip": "10.70.0.100", "interface": "eth0", "lease_end": 700.0, "remaining": 540}
    ]
    assert snap["counters"] == {
        "drop_hops": 1, "option82_stripped": 1, "relayed_reply": 1, "relayed_request": 1,
    }


def test_settings_need_a_server_and_policy_an_interface() -> None:
    with pytest.raises(ValueError):
        RelaySettings(servers=())
    with pytest.raises(ValueError):
        RelayPolicy((), RelaySettings(servers=(SERVER,)))
