"""Each DHCP handler on its own: given a request and the reply so far, what it sets or how it ends the chain."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from test_dhcp_chain import DIRECT, RELAYED, SERVER, T0, UNICAST, mac, make_config, msg

from ztp.config import Config
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Ingress, Proposal, Reply, Request, client_key
from ztp.dhcp.handlers.address import AssignAddress
from ztp.dhcp.handlers.assemble import Assemble, nak, option_order
from ztp.dhcp.handlers.boot_file import BootFile
from ztp.dhcp.handlers.device import IdentifyDevice
from ztp.dhcp.handlers.hostname import HostName
from ztp.dhcp.handlers.layers import LayeredOptions
from ztp.dhcp.handlers.lease_return import ReturnLease
from ztp.dhcp.handlers.lease_time import LeaseTime
from ztp.dhcp.handlers.message import AcceptMessage
from ztp.dhcp.handlers.record import RecordLease
from ztp.dhcp.handlers.server_id import ServerId
from ztp.dhcp.handlers.size_fit import SizeFit
from ztp.dhcp.handlers.subnet import SelectSubnet
from ztp.dhcp.packet import DhcpPacket
from ztp.dhcp.relayinfo import RelayInfo, parse_relay_info
from ztp.leases.ledger import ChangeKind, Ledger
from ztp.leases.table import Lease, LeaseState, LeaseTable


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


def request(pkt: DhcpPacket, ingress: Ingress = DIRECT, now: float = T0) -> Request:
    raw82 = pkt.options.get(82)
    return Request(pkt=pkt, ingress=ingress, now=now, mtype=pkt.message_type, client=client_key(pkt),
                   relay=parse_relay_info(raw82) if raw82 is not None else None, mac=pkt.mac)


def reply(config: Config, req: Request, **fields: object) -> Reply:
    r = Reply(mtype={p.DISCOVER: p.OFFER, p.REQUEST: p.ACK, p.INFORM: p.ACK}.get(req.mtype or 0),
              server_id=req.ingress.server_ip, subnet=config.subnets[0])
    for name, value in fields.items():
        setattr(r, name, value)
    return r


def bound(ip: str, client: str) -> Lease:
    return Lease(ip=IPv4Address(ip), client=client, mac=client, state=LeaseState.BOUND, expires=T0 + 3600,
                 updated=T0 - 10)


def test_accept_message_drops_server_only_types(config: Config) -> None:
    for mtype in (p.OFFER, p.ACK, p.NAK, 200):
        assert isinstance(AcceptMessage()(request(msg(mtype, mac(1))), Reply(None)), Proposal)
    for mtype in (p.DISCOVER, p.REQUEST, p.DECLINE, p.RELEASE, p.INFORM, None):
        assert isinstance(AcceptMessage()(request(msg(mtype, mac(1))), Reply(None)), Reply)


@pytest.mark.parametrize(("pkt", "ingress", "network"), [
    (msg(p.DISCOVER, mac(1)), DIRECT, "10.60.0.0/24"),  # the interface
    (msg(p.DISCOVER, mac(1), giaddr="10.70.0.1"), RELAYED, "10.70.0.0/24"),  # giaddr
    (msg(p.DISCOVER, mac(1), giaddr="10.60.0.254", relay=RelayInfo(((5, IPv4Address("10.70.0.0").packed),))),
     RELAYED, "10.70.0.0/24"),  # RFC 3527 link-selection beats giaddr
    (msg(p.REQUEST, mac(1), ciaddr="10.70.0.150"), UNICAST, "10.70.0.0/24"),  # unicast renewal: ciaddr
    (msg(p.REQUEST, mac(1), ciaddr="10.70.0.150"), DIRECT, "10.60.0.0/24"),  # broadcast rebinding: interface
    (msg(p.DISCOVER, mac(1), ciaddr="10.70.0.150"), UNICAST, "10.60.0.0/24"),  # DISCOVER never by ciaddr
])
def test_select_subnet(config: Config, pkt: DhcpPacket, ingress: Ingress, network: str) -> None:
    out = SelectSubnet(config)(request(pkt, ingress), Reply(p.OFFER))
    assert isinstance(out, Reply) and out.subnet is not None and str(out.subnet.network) == network


def test_select_subnet_ignores_unserved_places(config: Config) -> None:
    out = SelectSubnet(config)(request(msg(p.DISCOVER, mac(1), giaddr="10.99.0.1"), RELAYED), Reply(p.OFFER))
    assert isinstance(out, Proposal) and out.reply is None and out.counter == "no_subnet"


def test_identify_device(config: Config) -> None:
    out = IdentifyDevice(config)(request(msg(p.DISCOVER, "02:00:00:00:00:01")), Reply(p.OFFER))
    assert isinstance(out, Reply) and out.device is not None and out.device.hostname == "leaf01"
    relay = RelayInfo(((1, b"r1-port7"),))
    out = IdentifyDevice(config)(request(msg(p.DISCOVER, mac(7), giaddr="10.70.0.1", relay=relay), RELAYED),
                                 Reply(p.OFFER))
    assert isinstance(out, Reply) and out.device is not None and out.device.hostname == "leaf07"


def test_server_id(config: Config) -> None:
    ledger = Ledger(LeaseTable())
    out = ServerId(ledger)(request(msg(p.DISCOVER, mac(1)), RELAYED), Reply(p.OFFER))
    assert isinstance(out, Reply) and out.server_id == RELAYED.server_ip
    other = ServerId(ledger)(request(msg(p.REQUEST, mac(1), requested="10.60.0.100", server_id="10.60.0.99")),
                             Reply(p.ACK))
    assert isinstance(other, Proposal) and other.reply is None
    for sid in (None, "10.60.0.99"):
        out = ServerId(ledger)(request(msg(p.RELEASE, mac(1), ciaddr="10.60.0.100", server_id=sid), UNICAST),
                               Reply(None))
        assert isinstance(out, Proposal) and out.change is None and out.counter == "not_our_server_id"


def test_return_lease_only_for_the_holder(config: Config) -> None:
    ledger = Ledger(LeaseTable([bound("10.60.0.100", mac(1))]))
    handler = ReturnLease(config, ledger)
    ip = "10.60.0.100"
    for pkt in (msg(p.RELEASE, mac(2), ciaddr=ip, server_id=str(SERVER)),
                msg(p.DECLINE, mac(2), requested=ip, server_id=str(SERVER)),
                msg(p.DECLINE, mac(1), requested="10.60.0.20", server_id=str(SERVER)),  # outside the pool
                msg(p.DECLINE, mac(1), server_id=str(SERVER))):  # no option 50
        out = handler(request(pkt, UNICAST), Reply(None))
        assert isinstance(out, Proposal) and out.change is None and out.counter, pkt
    release = handler(request(msg(p.RELEASE, mac(1), ciaddr=ip, server_id=str(SERVER)), UNICAST), Reply(None))
    assert isinstance(release, Proposal) and release.change is not None
    assert release.change.kind == ChangeKind.RELEASE and release.change.lease.state == LeaseState.RELEASED
    decline = handler(request(msg(p.DECLINE, mac(1), requested=ip, server_id=str(SERVER))), Reply(None))
    assert isinstance(decline, Proposal) and decline.change is not None and decline.reply is None
    assert decline.change.kind == ChangeKind.DECLINE and decline.change.lease.expires == T0 + config.decline_hold


def test_assign_address_init_reboot_for_another_address_is_nakked(config: Config) -> None:
    ledger = Ledger(LeaseTable([bound("10.60.0.100", mac(1))]))
    out = AssignAddress(config, ledger)(request(msg(p.REQUEST, mac(1), requested="10.60.0.105")),
                                        reply(config, request(msg(p.REQUEST, mac(1)))))
    assert isinstance(out, Proposal) and out.reply is not None and out.reply.message_type == p.NAK


def test_assign_address_renewal_echoes_ciaddr(config: Config) -> None:
    ledger = Ledger(LeaseTable([bound("10.60.0.100", mac(1))]))
    req = request(msg(p.REQUEST, mac(1), ciaddr="10.60.0.100"), UNICAST)
    out = AssignAddress(config, ledger)(req, reply(config, req))
    assert isinstance(out, Reply) and out.binding and out.state == "renewing"
    assert out.yiaddr == out.ciaddr == IPv4Address("10.60.0.100")


def test_lease_time_options(config: Config) -> None:
    req = request(msg(p.DISCOVER, mac(1)))
    out = LeaseTime(config)(req, reply(config, req))
    assert isinstance(out, Reply) and out.lease_time == 3600
    assert {51, 58, 59} <= set(out.options)
    inform = request(msg(p.INFORM, mac(1), ciaddr="10.60.0.40"), UNICAST)
    out = LeaseTime(config)(inform, reply(config, inform))
    assert isinstance(out, Reply) and out.lease_time is None and not {51, 58, 59} & set(out.options)


def test_layered_options_most_specific_wins(config: Config) -> None:
    device = config.inventory.by_hostname["leaf01"]
    req = request(msg(p.DISCOVER, "02:00:00:00:00:01"))
    out = LayeredOptions(config)(req, reply(config, req, device=device))
    assert isinstance(out, Reply) and out.options[43] == b"\x01\x03ztp" and out.options[1] == b"\xff\xff\xff\x00"


def test_boot_file_named_by_the_registry_and_configured_67_wins(config: Config) -> None:
    req = request(msg(p.DISCOVER, mac(1)))
    out = BootFile(config)(req, reply(config, req))
    assert isinstance(out, Reply) and out.boot_file == "020000000101.cfg" and out.options[67] == b"020000000101.cfg"
    out = BootFile(config)(req, reply(config, req, options={67: b"custom.bin"}))
    assert isinstance(out, Reply) and out.options[67] == b"custom.bin" and out.options[66] == b"10.60.0.1"


def test_hostname(config: Config) -> None:
    req = request(msg(p.DISCOVER, mac(1), extra={12: b"My Printer!"}))
    out = HostName(config)(req, reply(config, req))
    assert isinstance(out, Reply) and out.hostname is not None and 12 not in out.options


def test_record_lease_offer_does_not_shorten_a_binding(config: Config) -> None:
    ledger = Ledger(LeaseTable([bound("10.60.0.100", mac(1))]))
    req = request(msg(p.DISCOVER, mac(1)))
    out = RecordLease(config, ledger)(req, reply(config, req, yiaddr=IPv4Address("10.60.0.100")))
    assert isinstance(out, Reply) and out.change is None
    req = request(msg(p.DISCOVER, mac(2)))
    out = RecordLease(config, ledger)(req, reply(config, req, yiaddr=IPv4Address("10.60.0.101")))
    assert isinstance(out, Reply) and out.change is not None and out.change.kind == ChangeKind.OFFER
    assert out.change.lease.expires == T0 + config.offer_hold


def test_assemble_orders_and_echoes(config: Config) -> None:
    relay = RelayInfo(((1, b"p1"),))
    req = request(msg(p.DISCOVER, mac(1), giaddr="10.70.0.1", relay=relay, prl=bytes((67, 3)),
                      extra={61: b"\x01abc"}), RELAYED)
    out = Assemble()(req, reply(config, req, yiaddr=IPv4Address("10.70.0.100"), options={3: b"\x0a" * 4, 67: b"f",
                                                                                          82: b"mine"}))
    assert isinstance(out, Reply) and out.packet is not None
    codes = list(out.packet.options)
    assert codes[:4] == [53, 54, 67, 3] and codes[-1] == 82 and out.packet.options[61] == b"\x01abc"
    assert out.packet.options[82] == req.pkt.options[82]  # the relay's, never ours
    assert option_order((54, 53, 3), b"") == (53, 54, 3)


def test_assemble_reuses_its_wire_order_without_carrying_values_over(config: Config) -> None:
    # The order is remembered per option set and option 55 (a dict copied for each reply): a second reply
    # with the same codes gets its own values, and the relay's 82 of the first stays out of the second.
    first = request(msg(p.DISCOVER, mac(1), giaddr="10.70.0.1", relay=RelayInfo(((1, b"p1"),)),
                        prl=bytes((67, 3))), RELAYED)
    second = request(msg(p.DISCOVER, mac(2), prl=bytes((67, 3))), RELAYED)
    assemble = Assemble()
    one = assemble(first, reply(config, first, yiaddr=IPv4Address("10.70.0.100"), options={3: b"\x0a" * 4, 67: b"a"}))
    two = assemble(second, reply(config, second, yiaddr=IPv4Address("10.70.0.101"), options={3: b"\x0b" * 4,
                                                                                             67: b"b"}))
    assert isinstance(one, Reply) and one.packet is not None and isinstance(two, Reply) and two.packet is not None
    assert list(one.packet.options)[:4] == list(two.packet.options)[:4] == [53, 54, 67, 3]
    assert (one.packet.options[67], one.packet.options[3]) == (b"a", b"\x0a" * 4)
    assert (two.packet.options[67], two.packet.options[3]) == (b"b", b"\x0b" * 4)
    assert 82 in one.packet.options and 82 not in two.packet.options


def test_nak_is_broadcast_by_the_relay(config: Config) -> None:
    req = request(msg(p.REQUEST, mac(1), giaddr="10.70.0.1"), RELAYED)
    out = nak(req, reply(config, req), "why")
    assert out.reply is not None and out.reply.flags & p.BROADCAST_FLAG and out.level == logging.WARNING


def test_size_fit_handler(config: Config) -> None:
    req = request(msg(p.DISCOVER, mac(1), extra={57: (576).to_bytes(2, "big")}))
    big = {code: bytes(60) for code in range(100, 120)}
    r = reply(config, req, yiaddr=IPv4Address("10.60.0.100"), options={1: b"\xff\xff\xff\x00", **big})
    out = SizeFit()(req, Assemble()(req, r))  # type: ignore[arg-type]
    assert isinstance(out, Reply) and out.packet is not None and out.dropped
    assert len(p.build(out.packet)) <= 548
