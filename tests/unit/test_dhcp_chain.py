"""DHCP server policy (RFC 2131 §4.3) through the handler chain and the ledger: no sockets, a fake clock,
a real Config."""

from __future__ import annotations

import logging
import struct
import textwrap
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ztp.config import Config, load_config
from ztp.dhcp import packet as p
from ztp.dhcp.chain import Chain
from ztp.dhcp.exchange import Ingress, Proposal, client_key
from ztp.dhcp.packet import DhcpPacket, MalformedPacket, build, mac_to_chaddr, parse
from ztp.dhcp.relayinfo import RelayInfo, build_relay_info
from ztp.dhcp.reply import LIMITED_BROADCAST, destination
from ztp.leases.ledger import ChangeKind, Ledger
from ztp.leases.table import Lease, LeaseState, LeaseTable

CAPTURES = Path(__file__).resolve().parent.parent / "data" / "dhcp"
SERVER = IPv4Address("10.60.0.1")
RELAY_TARGET = IPv4Address("10.50.0.1")  # the appliance address dhcrelay sends to
DIRECT = Ingress(ifindex=2, ifname="s1", server_ip=SERVER, local_ips=frozenset({SERVER, RELAY_TARGET}),
                 broadcast=True)
UNICAST = Ingress(ifindex=2, ifname="s1", server_ip=SERVER, local_ips=DIRECT.local_ips, broadcast=False)
RELAYED = Ingress(ifindex=3, ifname="r1", server_ip=RELAY_TARGET, local_ips=DIRECT.local_ips, broadcast=False)
T0 = 1_000_000.0

ZTP_YAML = """\
state_dir: ./state
templates: ./templates
inventory: ./inventory.yaml
dhcp:
  interfaces: [s1]
  lease_time: 3600
  offer_hold: 30
  subnets:
    - network: 10.60.0.0/24
      pool: {pool}
      routers: [10.60.0.1]
      dns_servers: [10.60.0.1]
      domain: lab.test
    - network: 10.70.0.0/24
      pool: 10.70.0.100-10.70.0.199
      routers: [10.70.0.1]
      options: {{150: [10.50.0.1]}}
"""

INVENTORY_YAML = """\
defaults:
  template: default.j2
  vars: {ntp_server: 10.60.0.1}
devices:
  - hostname: leaf01
    mac: 02:00:00:00:00:01
    ip: 10.60.0.11
    template: leaf.j2
    options: {43: "hex:01037a7470"}
  - hostname: leaf02
    mac: 02:00:00:00:00:02
    template: leaf.j2
  - hostname: leaf07
    circuit_id: "r1-port7"
    template: leaf.j2
  - hostname: serial9
    client_id: "SN-0009"
    template: leaf.j2
"""


class Policy:
    """The chain over a ledger whose commits succeed at once: the server's decisions without sockets."""

    def __init__(self, config: Config) -> None:
        self.table = LeaseTable()
        self.ledger = Ledger(self.table)
        self.chain = Chain(config, self.ledger)

    def handle(self, pkt: DhcpPacket, ingress: Ingress, now: float) -> Proposal:
        proposal = self.chain.handle(pkt, ingress, now)
        if proposal.change is not None:
            self.ledger.commit(proposal.change, lambda error: None)
        if proposal.probe is not None:  # dhcp.ping_check: nobody answers the ping on this network
            return self.handle_cleared(pkt, ingress, now, proposal.probe)
        return proposal

    def handle_cleared(self, pkt: DhcpPacket, ingress: Ingress, now: float, ip: IPv4Address) -> Proposal:
        proposal = self.chain.handle(pkt, ingress, now, cleared=ip)
        assert proposal.probe is None, proposal.log
        if proposal.change is not None:
            self.ledger.commit(proposal.change, lambda error: None)
        return proposal


def durable(d: Proposal) -> Lease | None:
    """The binding the server must have on disk before the reply leaves."""
    return d.change.lease if d.change is not None and d.change.kind == ChangeKind.BIND else None


def returned(d: Proposal) -> Lease | None:
    """The released or declined row (committed; no reply)."""
    kinds = (ChangeKind.RELEASE, ChangeKind.DECLINE)
    return d.change.lease if d.change is not None and d.change.kind in kinds else None


def make_config(tmp_path: Path, *, pool: str = "10.60.0.100-10.60.0.199") -> Config:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "default.j2").write_text("hostname {{ hostname }}\n")
    (tmp_path / "templates" / "leaf.j2").write_text("hostname {{ hostname }}\n")
    (tmp_path / "ztp.yaml").write_text(ZTP_YAML.format(pool=pool))
    (tmp_path / "inventory.yaml").write_text(INVENTORY_YAML)
    return load_config(tmp_path / "ztp.yaml")


@pytest.fixture
def responder(tmp_path: Path) -> Policy:
    return Policy(make_config(tmp_path))


@pytest.fixture
def tiny(tmp_path: Path) -> Policy:
    """A three-address pool: .100-.102."""
    return Policy(make_config(tmp_path, pool="10.60.0.100-10.60.0.102"))


def mac(n: int) -> str:
    return f"02:00:00:00:01:{n:02x}"


def msg(mtype: int | None, client: str, *, xid: int = 0x1000, ciaddr: str | None = None,
        requested: str | None = None, server_id: str | None = None, prl: bytes | None = None,
        giaddr: str | None = None, relay: RelayInfo | None = None, flags: int = 0,
        extra: dict[int, bytes] | None = None) -> DhcpPacket:
    opts: dict[int, bytes] = {}
    if mtype is not None:
        opts[53] = bytes((mtype,))
    if server_id:
        opts[54] = IPv4Address(server_id).packed
    if requested:
        opts[50] = IPv4Address(requested).packed
    if prl is not None:
        opts[55] = prl
    opts.update(extra or {})
    if relay is not None:
        opts[82] = build_relay_info(relay)
    pkt = DhcpPacket(op=p.BOOTREQUEST, xid=xid, chaddr=mac_to_chaddr(client), flags=flags,
                     ciaddr=IPv4Address(ciaddr) if ciaddr else p.ZERO_IP,
                     giaddr=IPv4Address(giaddr) if giaddr else p.ZERO_IP, hops=1 if giaddr else 0,
                     options=opts, bootp=mtype is None and not opts)
    return parse(build(pkt))  # everything goes through the codec, as on the wire


def reply_of(decision: Proposal) -> DhcpPacket:
    assert decision.reply is not None, decision.log
    # Replies must survive the codec too.
    raw = build(decision.reply)
    assert len(raw) >= 300
    return parse(raw)


def wire_codes(pkt: DhcpPacket) -> list[int]:
    """Option codes in wire order, as encoded (duplicates would show here)."""
    raw = build(pkt)
    codes, i = [], 240
    while raw[i] != 255:
        if raw[i] == 0:
            i += 1
            continue
        codes.append(raw[i])
        i += 2 + raw[i + 1]
    return codes


def u32(raw: bytes) -> int:
    return int(struct.unpack("!I", raw)[0])


def dora(r: Policy, client: str, now: float, *, requested: str | None = None,
         ingress: Ingress = DIRECT, giaddr: str | None = None) -> IPv4Address:
    offer = reply_of(r.handle(msg(p.DISCOVER, client, requested=requested, giaddr=giaddr), ingress, now))
    ack = reply_of(r.handle(msg(p.REQUEST, client, requested=str(offer.yiaddr), server_id=str(SERVER),
                                giaddr=giaddr), ingress, now))
    assert ack.message_type == p.ACK, ack.options.get(56)
    return ack.yiaddr


# --- DISCOVER -> OFFER: contents ----------------------------------------------------------------------

def test_offer_for_inventory_device_carries_everything(responder: Policy) -> None:
    d = responder.handle(msg(p.DISCOVER, "02:00:00:00:00:01", xid=0xABCD), DIRECT, T0)
    offer = reply_of(d)
    assert durable(d) is None  # an offer is not persisted
    assert offer.op == p.BOOTREPLY and offer.xid == 0xABCD
    assert offer.chaddr == mac_to_chaddr("02:00:00:00:00:01")
    assert offer.message_type == p.OFFER
    assert offer.yiaddr == IPv4Address("10.60.0.11")  # the reservation
    assert offer.option_ip(54) == SERVER
    assert u32(offer.options[51]) == 3600
    assert u32(offer.options[58]) == 1800  # T1 = 0.5 (RFC 2131 §4.4.5)
    assert u32(offer.options[59]) == 3150  # T2 = 0.875
    assert offer.options[1] == IPv4Address("255.255.255.0").packed
    assert offer.options[3] == SERVER.packed
    assert offer.options[6] == SERVER.packed
    assert offer.options[15] == b"lab.test"
    assert offer.options[12] == b"leaf01"
    assert offer.options[66] == b"10.60.0.1"
    assert offer.options[67] == b"leaf01.cfg"
    assert offer.options[43] == b"\x01\x03ztp"  # the device's own option
    # Legacy BOOTP ROMs read the boot server and file from the header.
    assert offer.siaddr == SERVER
    assert offer.sname == b"10.60.0.1"
    assert offer.file == b"leaf01.cfg"
    assert offer.ciaddr == p.ZERO_IP and offer.giaddr == p.ZERO_IP


def test_offer_for_unknown_device_gets_default_boot_file(responder: Policy) -> None:
    offer = reply_of(responder.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0))
    assert offer.yiaddr == IPv4Address("10.60.0.100")
    assert offer.options[67] == b"020000000101.cfg" and offer.file == b"020000000101.cfg"
    assert 12 not in offer.options  # unknown devices get no hostname from us


def test_option_55_order_is_respected_and_53_54_come_first(responder: Policy) -> None:
    prl = bytes((67, 66, 3, 54, 1, 53, 15, 200))
    offer = reply_of(responder.handle(msg(p.DISCOVER, "02:00:00:00:00:01", prl=prl), DIRECT, T0))
    codes = wire_codes(offer)
    assert codes[:7] == [53, 54, 67, 66, 3, 1, 15]
    rest = codes[7:]
    assert rest == sorted(rest)  # then the others, by code
    assert 200 not in codes  # asked for but not configured: not invented


@pytest.mark.parametrize("prl", [None, bytes(range(1, 255)), bytes((3, 3, 3, 67, 67))])
def test_never_the_same_option_twice(responder: Policy, prl: bytes | None) -> None:
    offer = reply_of(responder.handle(msg(p.DISCOVER, "02:00:00:00:00:01", prl=prl), DIRECT, T0))
    codes = wire_codes(offer)
    assert len(codes) == len(set(codes))
    assert codes[0] == 53


def test_relayed_discover_from_dhcrelay_capture(responder: Policy) -> None:
    request = parse(bytes.fromhex((CAPTURES / "dhcrelay_discover.hex").read_text().strip()))
    d = responder.handle(request, RELAYED, T0)
    offer = reply_of(d)
    assert offer.yiaddr == IPv4Address("10.70.0.100")  # subnet chosen by giaddr 10.70.0.1
    assert offer.giaddr == IPv4Address("10.70.0.1")
    assert offer.option_ip(54) == RELAY_TARGET  # the address the relay reached
    assert offer.siaddr == RELAY_TARGET and offer.options[66] == b"10.50.0.1"
    assert offer.options[3] == IPv4Address("10.70.0.1").packed
    assert offer.options[150] == IPv4Address("10.50.0.1").packed  # the subnet's own option
    # RFC 3046 §2.2: option 82 echoed unchanged, and last.
    assert offer.options[82] == request.options[82]
    assert wire_codes(offer)[-1] == 82
    assert destination(request, offer).ip == IPv4Address("10.70.0.1")
    assert destination(request, offer).port == 67


def test_device_matched_by_circuit_id(responder: Policy) -> None:
    relay = RelayInfo(((1, b"r1-port7"), (2, b"relay-1")))
    offer = reply_of(responder.handle(msg(p.DISCOVER, mac(7), giaddr="10.70.0.1", relay=relay), RELAYED, T0))
    assert offer.options[12] == b"leaf07"
    assert offer.options[67] == b"leaf07.cfg" and offer.file == b"leaf07.cfg"
    assert offer.options[82] == build_relay_info(relay)
    other = RelayInfo(((1, b"r1-port8"),))
    offer = reply_of(responder.handle(msg(p.DISCOVER, mac(8), giaddr="10.70.0.1", relay=other), RELAYED, T0))
    assert 12 not in offer.options and offer.options[67] == b"020000000108.cfg"


def test_device_matched_by_client_id(responder: Policy) -> None:
    offer = reply_of(responder.handle(msg(p.DISCOVER, mac(9), extra={61: b"\x00SN-0009"}), DIRECT, T0))
    assert offer.options[12] == b"serial9"


def test_client_id_is_the_client_key() -> None:
    assert client_key(msg(p.DISCOVER, mac(1), extra={61: b"\x01ab"})) == "id:016162"
    assert client_key(msg(p.DISCOVER, mac(1))) == mac(1)


# --- allocation order -----------------------------------------------------------------------------

def test_reservation_beats_requested_address(responder: Policy) -> None:
    offer = reply_of(responder.handle(msg(p.DISCOVER, "02:00:00:00:00:01", requested="10.60.0.150"),
                                      DIRECT, T0))
    assert offer.yiaddr == IPv4Address("10.60.0.11")
    assert dora(responder, "02:00:00:00:00:01", T0) == IPv4Address("10.60.0.11")


def test_requested_address_if_free_else_first_free(tiny: Policy) -> None:
    assert dora(tiny, mac(1), T0, requested="10.60.0.102") == IPv4Address("10.60.0.102")
    assert dora(tiny, mac(2), T0, requested="10.60.0.102") == IPv4Address("10.60.0.100")  # taken
    assert dora(tiny, mac(3), T0, requested="10.60.0.50") == IPv4Address("10.60.0.101")  # outside the pool


def test_previous_address_beats_requested(tiny: Policy) -> None:
    assert dora(tiny, mac(1), T0) == IPv4Address("10.60.0.100")
    offer = reply_of(tiny.handle(msg(p.DISCOVER, mac(1), requested="10.60.0.102"), DIRECT, T0 + 5))
    assert offer.yiaddr == IPv4Address("10.60.0.100")


def test_previous_address_even_after_expiry(tiny: Policy) -> None:
    assert dora(tiny, mac(1), T0) == IPv4Address("10.60.0.100")
    assert dora(tiny, mac(1), T0 + 10_000) == IPv4Address("10.60.0.100")


def test_pool_exhausted_then_oldest_expired_or_released(tiny: Policy) -> None:
    assert dora(tiny, mac(1), T0) == IPv4Address("10.60.0.100")
    assert dora(tiny, mac(2), T0 + 100) == IPv4Address("10.60.0.101")
    assert dora(tiny, mac(3), T0 + 200) == IPv4Address("10.60.0.102")
    full = tiny.handle(msg(p.DISCOVER, mac(4)), DIRECT, T0 + 300)
    assert full.reply is None and full.level == logging.WARNING and "no free address" in full.log
    # mac(2) releases at T0+400: its record expires "now", before mac(1)'s (T0+3600).
    assert tiny.handle(msg(p.RELEASE, mac(2), ciaddr="10.60.0.101", server_id=str(SERVER)), UNICAST,
                       T0 + 400)
    assert dora(tiny, mac(4), T0 + 500) == IPv4Address("10.60.0.101")
    # Later everything expires: the oldest expiry (mac(1), T0+3600) goes first.
    assert dora(tiny, mac(5), T0 + 10_000) == IPv4Address("10.60.0.100")
    assert dora(tiny, mac(6), T0 + 10_000) == IPv4Address("10.60.0.102")


# --- offers are held ------------------------------------------------------------------------------

def test_two_clients_are_never_offered_the_same_address(tiny: Policy) -> None:
    a = reply_of(tiny.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0))
    b = reply_of(tiny.handle(msg(p.DISCOVER, mac(2), requested=str(a.yiaddr)), DIRECT, T0 + 1))
    c = reply_of(tiny.handle(msg(p.DISCOVER, mac(3), requested=str(a.yiaddr)), DIRECT, T0 + 2))
    assert len({a.yiaddr, b.yiaddr, c.yiaddr}) == 3
    assert tiny.handle(msg(p.DISCOVER, mac(4)), DIRECT, T0 + 3).reply is None  # all held
    # The same client retransmitting its DISCOVER gets its held address again.
    assert reply_of(tiny.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0 + 4)).yiaddr == a.yiaddr
    # After offer_hold (30 s) the unanswered offers lapse.
    assert reply_of(tiny.handle(msg(p.DISCOVER, mac(4)), DIRECT, T0 + 40)).yiaddr is not None


def test_request_for_an_address_offered_to_another_is_nakked(tiny: Policy) -> None:
    a = reply_of(tiny.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0))
    nak = reply_of(tiny.handle(msg(p.REQUEST, mac(2), requested=str(a.yiaddr)), DIRECT, T0 + 1))
    assert nak.message_type == p.NAK


def test_selecting_another_server_withdraws_the_offer(tiny: Policy) -> None:
    a = reply_of(tiny.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0))
    d = tiny.handle(msg(p.REQUEST, mac(1), requested=str(a.yiaddr), server_id="10.60.0.99"), DIRECT, T0 + 1)
    assert d.reply is None and durable(d) is None
    assert tiny.table.lease_of(mac(1)) is None
    b = reply_of(tiny.handle(msg(p.DISCOVER, mac(2)), DIRECT, T0 + 2))
    assert b.yiaddr == a.yiaddr  # free again at once, not after the hold


def test_withdrawn_offer_is_not_lost_from_the_pool(tiny: Policy) -> None:
    a = reply_of(tiny.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0))
    b = reply_of(tiny.handle(msg(p.DISCOVER, mac(2)), DIRECT, T0))
    tiny.handle(msg(p.REQUEST, mac(1), requested=str(a.yiaddr), server_id="10.60.0.99"), DIRECT, T0 + 1)
    c = reply_of(tiny.handle(msg(p.DISCOVER, mac(3)), DIRECT, T0 + 2))
    d = reply_of(tiny.handle(msg(p.DISCOVER, mac(4)), DIRECT, T0 + 3))
    assert {a.yiaddr, b.yiaddr, c.yiaddr, d.yiaddr} == {IPv4Address(f"10.60.0.{n}") for n in (100, 101, 102)}
    assert len({b.yiaddr, c.yiaddr, d.yiaddr}) == 3


def test_selecting_ack_persists_the_lease(responder: Policy) -> None:
    offer = reply_of(responder.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0))
    d = responder.handle(msg(p.REQUEST, mac(1), requested=str(offer.yiaddr), server_id=str(SERVER)), DIRECT,
                         T0 + 1)
    ack = reply_of(d)
    assert ack.message_type == p.ACK and ack.yiaddr == offer.yiaddr
    assert durable(d) is not None and durable(d) is durable(d)
    assert durable(d).state == LeaseState.BOUND and durable(d).ip == offer.yiaddr
    assert durable(d).expires == T0 + 1 + 3600
    assert u32(ack.options[51]) == 3600


def test_selecting_without_a_matching_offer_is_nakked(responder: Policy) -> None:
    offer = reply_of(responder.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0))
    wrong = IPv4Address(int(offer.yiaddr) + 1)
    nak = reply_of(responder.handle(msg(p.REQUEST, mac(1), requested=str(wrong), server_id=str(SERVER)),
                                    DIRECT, T0 + 1))
    assert nak.message_type == p.NAK
    late = reply_of(responder.handle(msg(p.REQUEST, mac(2), requested="10.60.0.120", server_id=str(SERVER)),
                                     DIRECT, T0 + 1))
    assert late.message_type == p.NAK


def test_server_id_of_another_local_address_is_us(responder: Policy) -> None:
    offer = reply_of(responder.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0))
    ack = reply_of(responder.handle(msg(p.REQUEST, mac(1), requested=str(offer.yiaddr),
                                        server_id=str(RELAY_TARGET)), DIRECT, T0 + 1))
    assert ack.message_type == p.ACK


# --- INIT-REBOOT, RENEWING, REBINDING ------------------------------------------------------------

def test_init_reboot_wrong_network_is_nakked(responder: Policy) -> None:
    d = responder.handle(msg(p.REQUEST, mac(1), requested="192.168.1.50"), DIRECT, T0)
    nak = reply_of(d)
    assert nak.message_type == p.NAK
    assert nak.option_ip(54) == SERVER
    assert nak.yiaddr == p.ZERO_IP and 51 not in nak.options and 67 not in nak.options
    assert b"wrong network" in nak.options[56]
    assert durable(d) is None
    assert destination(msg(p.REQUEST, mac(1)), nak).ip == LIMITED_BROADCAST


def test_init_reboot_right_network_and_free_is_acked(responder: Policy) -> None:
    d = responder.handle(msg(p.REQUEST, mac(1), requested="10.60.0.150"), DIRECT, T0)
    ack = reply_of(d)
    assert ack.message_type == p.ACK and ack.yiaddr == IPv4Address("10.60.0.150")
    assert durable(d) is not None and durable(d).ip == IPv4Address("10.60.0.150")


@pytest.mark.parametrize(("requested", "why"), [(None, b"without option 50"),
                                                ("10.60.0.20", b"not in the pool"),
                                                ("10.60.0.11", b"not in the pool")])
def test_init_reboot_refusals(responder: Policy, requested: str | None, why: bytes) -> None:
    nak = reply_of(responder.handle(msg(p.REQUEST, mac(1), requested=requested), DIRECT, T0))
    assert nak.message_type == p.NAK and why in nak.options[56]


def test_init_reboot_of_a_reserved_device_for_another_address(responder: Policy) -> None:
    nak = reply_of(responder.handle(msg(p.REQUEST, "02:00:00:00:00:01", requested="10.60.0.150"), DIRECT, T0))
    assert nak.message_type == p.NAK and b"reserved 10.60.0.11" in nak.options[56]
    ack = reply_of(responder.handle(msg(p.REQUEST, "02:00:00:00:00:01", requested="10.60.0.11"), DIRECT, T0))
    assert ack.message_type == p.ACK


def test_init_reboot_for_an_address_leased_to_another_is_nakked(responder: Policy) -> None:
    ip = dora(responder, mac(1), T0)
    nak = reply_of(responder.handle(msg(p.REQUEST, mac(2), requested=str(ip)), DIRECT, T0 + 10))
    assert nak.message_type == p.NAK and b"leased to another client" in nak.options[56]


def test_renew_extends_the_lease(responder: Policy) -> None:
    ip = dora(responder, mac(1), T0)
    d = responder.handle(msg(p.REQUEST, mac(1), ciaddr=str(ip)), UNICAST, T0 + 1800)
    ack = reply_of(d)
    assert ack.message_type == p.ACK and ack.yiaddr == ip
    assert durable(d) is not None and durable(d).expires == T0 + 1800 + 3600
    assert "renewing" in d.log
    assert destination(msg(p.REQUEST, mac(1), ciaddr=str(ip)), ack).ip == ip


def test_rebinding_is_told_apart_by_broadcast(responder: Policy) -> None:
    ip = dora(responder, mac(1), T0)
    d = responder.handle(msg(p.REQUEST, mac(1), ciaddr=str(ip)), DIRECT, T0 + 3200)
    assert reply_of(d).message_type == p.ACK and "rebinding" in d.log


def test_renew_of_someone_elses_address_is_nakked(responder: Policy) -> None:
    ip = dora(responder, mac(1), T0)
    d = responder.handle(msg(p.REQUEST, mac(2), ciaddr=str(ip)), UNICAST, T0 + 10)
    assert reply_of(d).message_type == p.NAK and durable(d) is None
    assert responder.table.at(ip).client == mac(1)


def test_rebinding_from_the_wrong_network_is_nakked(responder: Policy) -> None:
    # A broadcast REBINDING REQUEST is judged by the segment it was heard on (RFC 2131 §4.3.2).
    nak = reply_of(responder.handle(msg(p.REQUEST, mac(1), ciaddr="10.70.0.150"), DIRECT, T0))
    assert nak.message_type == p.NAK and b"wrong network" in nak.options[56]


def test_unicast_renewal_of_a_relayed_client_is_judged_by_ciaddr(responder: Policy) -> None:
    # Bound through the relay; at T1 the client unicasts to us with giaddr 0, arriving on whatever
    # interface routes it here: the subnet comes from ciaddr, and the ACK echoes ciaddr (Table 3).
    ip = dora(responder, mac(1), T0, ingress=RELAYED, giaddr="10.70.0.1")
    upstream = Ingress(ifindex=3, ifname="r1", server_ip=RELAY_TARGET, local_ips=frozenset({RELAY_TARGET}))
    request = msg(p.REQUEST, mac(1), ciaddr=str(ip))
    d = responder.handle(request, upstream, T0 + 1800)
    ack = reply_of(d)
    assert ack.message_type == p.ACK and ack.yiaddr == ip and ack.ciaddr == ip
    assert ack.option_ip(54) == RELAY_TARGET and "renewing" in d.log
    lease = durable(d)
    assert lease is not None and lease.expires == T0 + 1800 + 3600
    assert destination(request, ack).ip == ip  # unicast back to the client, routed via the relay


def test_renewing_and_rebinding_acks_carry_ciaddr(responder: Policy) -> None:
    ip = dora(responder, mac(1), T0)
    for ingress in (UNICAST, DIRECT):
        ack = reply_of(responder.handle(msg(p.REQUEST, mac(1), ciaddr=str(ip)), ingress, T0 + 1800))
        assert ack.message_type == p.ACK and ack.ciaddr == ip and ack.yiaddr == ip


def test_relayed_request_with_ciaddr_is_rebinding(responder: Policy) -> None:
    ip = dora(responder, mac(1), T0, ingress=RELAYED, giaddr="10.70.0.1")
    d = responder.handle(msg(p.REQUEST, mac(1), ciaddr=str(ip), giaddr="10.70.0.1"), RELAYED, T0 + 3200)
    assert reply_of(d).message_type == p.ACK and "rebinding" in d.log


def test_unicast_renewal_for_an_unserved_network_is_ignored(responder: Policy) -> None:
    d = responder.handle(msg(p.REQUEST, mac(1), ciaddr="192.0.2.7"), UNICAST, T0)
    assert d.reply is None and "ciaddr 192.0.2.7" in d.log


def test_init_reboot_for_another_address_than_the_clients_is_nakked(responder: Policy) -> None:
    ip = dora(responder, mac(1), T0)
    other = IPv4Address(int(ip) + 5)  # free, in the pool: still not this client's address
    nak = reply_of(responder.handle(msg(p.REQUEST, mac(1), requested=str(other)), DIRECT, T0 + 10))
    assert nak.message_type == p.NAK and f"address is {ip}".encode() in nak.options[56]
    ack = reply_of(responder.handle(msg(p.REQUEST, mac(1), requested=str(ip)), DIRECT, T0 + 11))
    assert ack.message_type == p.ACK and ack.yiaddr == ip


def test_client_id_is_echoed_in_offer_ack_and_nak(responder: Policy) -> None:
    cid = {61: b"\x01\x02\x00\x00\x00\x01\x33"}
    offer = reply_of(responder.handle(msg(p.DISCOVER, mac(0x33), extra=cid), DIRECT, T0))
    assert offer.options[61] == cid[61]  # RFC 6842 §3
    ack = reply_of(responder.handle(msg(p.REQUEST, mac(0x33), requested=str(offer.yiaddr), server_id=str(SERVER),
                                        extra=cid), DIRECT, T0 + 1))
    assert ack.message_type == p.ACK and ack.options[61] == cid[61]
    nak = reply_of(responder.handle(msg(p.REQUEST, mac(0x33), requested="192.0.2.1", extra=cid), DIRECT, T0 + 2))
    assert nak.message_type == p.NAK and nak.options[61] == cid[61]
    assert 61 not in reply_of(responder.handle(msg(p.DISCOVER, mac(0x34)), DIRECT, T0)).options


def test_discover_with_a_bogus_ciaddr_gets_an_offer_not_routed_by_it(responder: Policy) -> None:
    request = msg(p.DISCOVER, mac(1), ciaddr="255.255.255.255")
    offer = reply_of(responder.handle(request, DIRECT, T0))
    assert offer.message_type == p.OFFER and offer.ciaddr == p.ZERO_IP
    dest = destination(request, offer)
    assert dest.ip == offer.yiaddr and dest.arp_mac is not None


@pytest.mark.parametrize("limit", [None, 576])
def test_reply_fits_the_clients_size_limit(tmp_path: Path, limit: int | None) -> None:
    # Thirty configured 40-byte options make an OFFER of ~1,700 bytes; the client can take 576 (none sent:
    # the RFC 2131 §2 minimum; 576 sent: RFC 2132 §9.10's smallest legal value).
    make_config(tmp_path)
    big = ", ".join(f'{code}: "hex:{"ab" * 40}"' for code in range(100, 130))
    text = (tmp_path / "ztp.yaml").read_text()
    (tmp_path / "ztp.yaml").write_text(text.replace("  offer_hold: 30\n", f"  offer_hold: 30\n  options: {{{big}}}\n"))
    policy = Policy(load_config(tmp_path / "ztp.yaml"))
    extra = {57: limit.to_bytes(2, "big")} if limit else {}
    prl = bytes((1, 3, 6, 12, 15, 28, 42, 43, 51, 54, 58, 59, 66, 67, *range(100, 130)))
    d = policy.handle(msg(p.DISCOVER, "02:00:00:00:00:01", prl=prl, extra=extra), DIRECT, T0)
    assert d.reply is not None
    raw = build(d.reply)
    assert len(raw) + 28 <= 576  # a 576-byte IP datagram at most
    offer = parse(raw)
    for code in (1, 3, 51, 53, 54, 66, 67):
        assert code in offer.options, code
    assert all(len(offer.options[code]) == 40 for code in range(100, 130) if code in offer.options)  # whole
    assert "left out options" in d.log and d.level == logging.WARNING
    roomy = policy.handle(msg(p.DISCOVER, "02:00:00:00:00:01", prl=prl, extra={57: (1500).to_bytes(2, "big")}),
                          DIRECT, T0)
    assert roomy.reply is not None and len(build(roomy.reply)) + 28 <= 1500
    assert len(roomy.reply.options) > len(offer.options) + 15  # a larger limit keeps more


def test_bootp_from_an_unlisted_device_is_refused_by_default(responder: Policy) -> None:
    d = responder.handle(msg(None, mac(1)), DIRECT, T0)
    assert d.reply is None and d.change is None and "dhcp.bootp" in d.log
    assert responder.table.all() == []


def test_dynamic_bootp_gets_a_finite_binding(tmp_path: Path) -> None:
    make_config(tmp_path)
    text = (tmp_path / "ztp.yaml").read_text()
    (tmp_path / "ztp.yaml").write_text(text.replace("  offer_hold: 30\n",
                                                    "  offer_hold: 30\n  bootp: dynamic\n  bootp_lease_time: 7200\n"))
    responder = Policy(load_config(tmp_path / "ztp.yaml"))
    request = msg(None, mac(1))
    assert request.bootp and request.message_type is None
    d = responder.handle(request, DIRECT, T0)
    reply = reply_of(d)
    assert reply.op == p.BOOTREPLY and reply.message_type is None
    for code in (53, 54, 51, 58, 59):
        assert code not in reply.options
    assert reply.yiaddr == IPv4Address("10.60.0.100")
    assert reply.siaddr == SERVER and reply.file == b"020000000101.cfg"
    assert reply.options[1] == IPv4Address("255.255.255.0").packed  # RFC 1497 vendor extensions
    assert durable(d) is not None and durable(d).state == LeaseState.BOUND
    assert durable(d).expires == T0 + 7200  # finite: a dynamic BOOTP client never says it is gone
    assert reply_of(responder.handle(msg(None, mac(1)), DIRECT, T0 + 3600)).yiaddr == reply.yiaddr


def test_bootp_reservation_and_zeroed_vend_area(responder: Policy) -> None:
    raw = build(DhcpPacket(op=p.BOOTREQUEST, xid=5, chaddr=mac_to_chaddr("02:00:00:00:00:01"), bootp=True))
    assert raw[236:] == bytes(64)  # RFC 951 vend field left empty
    reply = reply_of(responder.handle(parse(raw), DIRECT, T0))
    assert reply.yiaddr == IPv4Address("10.60.0.11") and reply.file == b"leaf01.cfg"


# --- relayed requests -----------------------------------------------------------------------------

def test_relayed_nak_sets_the_broadcast_flag(responder: Policy) -> None:
    relay = RelayInfo(((1, b"port3"),))
    request = msg(p.REQUEST, mac(1), requested="10.60.0.150", giaddr="10.70.0.1", relay=relay)
    nak = reply_of(responder.handle(request, RELAYED, T0))
    assert nak.message_type == p.NAK
    assert nak.flags & p.BROADCAST_FLAG  # RFC 2131 §4.3.2: the relay must broadcast it
    assert nak.giaddr == IPv4Address("10.70.0.1")
    assert nak.option_ip(54) == RELAY_TARGET
    assert nak.options[82] == build_relay_info(relay) and wire_codes(nak)[-1] == 82
    dest = destination(request, nak)
    assert (dest.ip, dest.port) == (IPv4Address("10.70.0.1"), 67)


def test_relayed_dora_in_the_relay_subnet(responder: Policy) -> None:
    ip = dora(responder, mac(1), T0, ingress=RELAYED, giaddr="10.70.0.1")
    assert ip == IPv4Address("10.70.0.100")


def test_relay_link_selection_suboption_picks_the_subnet(responder: Policy) -> None:
    # RFC 3527: sub-option 5 names the client's link when giaddr is the relay's own upstream address.
    relay = RelayInfo(((1, b"p1"), (5, IPv4Address("10.70.0.0").packed)))
    request = msg(p.DISCOVER, mac(1), giaddr="10.60.0.254", relay=relay)
    offer = reply_of(responder.handle(request, RELAYED, T0))
    assert offer.yiaddr == IPv4Address("10.70.0.100")


def test_malformed_option_82_raises_for_the_server_to_count(responder: Policy) -> None:
    request = msg(p.DISCOVER, mac(1), giaddr="10.70.0.1", extra={82: b"\x01\x09short"})
    with pytest.raises(MalformedPacket):
        responder.handle(request, RELAYED, T0)


def test_request_from_a_subnet_we_do_not_serve_is_ignored(responder: Policy) -> None:
    d = responder.handle(msg(p.DISCOVER, mac(1), giaddr="10.99.0.1"), RELAYED, T0)
    assert d.reply is None and d.level == logging.WARNING and "giaddr 10.99.0.1" in d.log
    elsewhere = Ingress(ifindex=9, ifname="x9", server_ip=IPv4Address("192.168.5.1"))
    d = responder.handle(msg(p.DISCOVER, mac(1)), elsewhere, T0)
    assert d.reply is None and "interface x9" in d.log


def test_bootreply_and_server_only_types_are_ignored(responder: Policy) -> None:
    reply = DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=mac_to_chaddr(mac(1)), options={53: b"\x02"})
    assert responder.handle(reply, DIRECT, T0).reply is None
    for mtype in (p.OFFER, p.ACK, p.NAK, 9, 200):
        assert responder.handle(msg(mtype, mac(1)), DIRECT, T0).reply is None


def test_device_sent_hostname_is_sanitized_in_the_lease(responder: Policy) -> None:
    evil = b"{{7*7}}$(reboot);`id`\nip route"
    offer = reply_of(responder.handle(msg(p.DISCOVER, mac(1), extra={12: evil}), DIRECT, T0))
    d = responder.handle(msg(p.REQUEST, mac(1), requested=str(offer.yiaddr), server_id=str(SERVER),
                             extra={12: evil}), DIRECT, T0)
    assert durable(d) is not None and durable(d).hostname is not None
    assert set(durable(d).hostname) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert 12 not in reply_of(d).options  # never echoed back to an unknown device


def test_device_cannot_claim_an_inventory_hostname(responder: Policy) -> None:
    offer = reply_of(responder.handle(msg(p.DISCOVER, mac(1), extra={12: b"LEAF02"}), DIRECT, T0))
    d = responder.handle(msg(p.REQUEST, mac(1), requested=str(offer.yiaddr), server_id=str(SERVER),
                             extra={12: b"LEAF02"}), DIRECT, T0)
    assert durable(d) is not None and durable(d).hostname is None


def test_offer_does_not_shorten_a_bound_lease(responder: Policy) -> None:
    ip = dora(responder, mac(1), T0)
    reply_of(responder.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0 + 10))
    lease = responder.table.at(ip)
    assert lease.state == LeaseState.BOUND and lease.expires == T0 + 3600


def test_config_template_for_responder_is_valid(tmp_path: Path) -> None:
    # Guard for the fixtures themselves: the YAML above must load cleanly.
    config = make_config(tmp_path)
    assert [str(s.network) for s in config.subnets] == ["10.60.0.0/24", "10.70.0.0/24"]
    assert textwrap.dedent(INVENTORY_YAML) == INVENTORY_YAML


def test_configured_option_82_is_never_sent_only_the_relays_echo(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    (tmp_path / "ztp.yaml").write_text((tmp_path / "ztp.yaml").read_text().replace(
        "  offer_hold: 30\n", "  offer_hold: 30\n  options: {82: \"hex:0103616263\"}\n"))
    config = load_config(tmp_path / "ztp.yaml")
    r = Policy(config)
    direct = reply_of(r.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0))
    assert 82 not in direct.options
    relay = RelayInfo(((1, b"r1-port8"),))
    relayed = reply_of(r.handle(msg(p.DISCOVER, mac(9), giaddr="10.70.0.1", relay=relay), RELAYED, T0))
    assert relayed.options[82] == build_relay_info(relay) and wire_codes(relayed)[-1] == 82


def test_init_reboot_without_record_is_silent_unless_authoritative(tmp_path: Path) -> None:
    make_config(tmp_path)
    text = (tmp_path / "ztp.yaml").read_text()
    (tmp_path / "ztp.yaml").write_text(text.replace("  offer_hold: 30\n", "  offer_hold: 30\n  authoritative: false\n"))
    shy = Policy(load_config(tmp_path / "ztp.yaml"))
    reboot = msg(p.REQUEST, mac(40), requested="10.60.0.150")
    silent = shy.handle(reboot, DIRECT, T0)
    assert silent.reply is None and "no record" in silent.log
    # Wrong network is still a NAK (RFC 2131 §4.3.2), and a client we know gets its ACK.
    wrong = reply_of(shy.handle(msg(p.REQUEST, mac(40), requested="192.0.2.9"), DIRECT, T0))
    assert wrong.message_type == p.NAK
    ip = dora(shy, mac(41), T0)
    known = reply_of(shy.handle(msg(p.REQUEST, mac(41), requested=str(ip)), DIRECT, T0 + 1))
    assert known.message_type == p.ACK and known.yiaddr == ip
    # The default (authoritative) answers the unknown client.
    (tmp_path / "b").mkdir()
    bold = Policy(make_config(tmp_path / "b"))
    assert reply_of(bold.handle(reboot, DIRECT, T0)).message_type == p.ACK


def test_the_chain_calls_each_handler_the_cheaper_way(tmp_path: Path) -> None:
    """A handler class written in Python is called through its bound __call__, a compiled one (and a function)
    as it is; either way every handler runs, in order."""
    from ztp.dhcp.chain import _step, default_handlers
    from ztp.dhcp.exchange import Reply, Request

    config = make_config(tmp_path)
    seen: list[str] = []

    class Python:
        def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
            seen.append("class")
            return reply

    def function(req: Request, reply: Reply) -> Reply | Proposal:
        seen.append("function")
        return reply

    instance = Python()
    assert _step(instance) == instance.__call__ and _step(function) is function
    for handler in default_handlers(config, Ledger(LeaseTable())):
        compiled = not isinstance(type(handler).__call__, type(function))
        assert (_step(handler) is handler) is compiled
    ledger = Ledger(LeaseTable())
    chain = Chain(config, ledger, handlers=[instance, function, *default_handlers(config, ledger)])
    proposal = chain.handle(msg(p.DISCOVER, mac(1)), DIRECT, 1000.0)
    assert seen == ["class", "function"]
    assert proposal.change is not None and proposal.change.lease.ip == IPv4Address("10.60.0.100")
