"""Raw DHCP / lease / TFTP observations as timeline events: keys, reasons, the cabling check."""

from __future__ import annotations

import logging
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

from ztp.config import load_config
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Proposal
from ztp.dhcp.relayinfo import RelayInfo, build_relay_info
from ztp.leases.ledger import EventKind, LeaseEvent
from ztp.leases.table import Lease, LeaseState
from ztp.timeline.machine import Kind
from ztp.timeline.sources import cabling, dhcp_events, lease_event, transfer_reason

REPO = Path(__file__).resolve().parents[2]
CONFIG = load_config(REPO / "ztp.yaml")


def request(mac: str, mtype: int, *, circuit: str | None = None) -> p.DhcpPacket:
    opts = {53: bytes((mtype,))}
    if circuit is not None:
        opts[82] = build_relay_info(RelayInfo(((1, circuit.encode()),)))
    return p.DhcpPacket(op=p.BOOTREQUEST, xid=1, chaddr=p.mac_to_chaddr(mac), options=opts)


def reply(mtype: int, yiaddr: str = "0.0.0.0") -> p.DhcpPacket:
    return p.DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=b"\0" * 6, yiaddr=IPv4Address(yiaddr),
                        options={53: bytes((mtype,))})


def test_offer_keyed_by_inventory_hostname_else_mac() -> None:
    [e] = dhcp_events(CONFIG, request("02:00:00:00:00:01", p.DISCOVER), Proposal(reply(p.OFFER, "10.60.0.11")), 5.0)
    assert (e.key, e.kind, e.ip, e.text) == ("leaf01", Kind.OFFER, "10.60.0.11", "DISCOVER -> OFFER 10.60.0.11")
    [u] = dhcp_events(CONFIG, request("02:00:00:00:00:99", p.DISCOVER), Proposal(reply(p.OFFER, "10.60.0.100")), 5.0)
    assert u.key == "02:00:00:00:00:99"
    # The chain's match travels with its outcome (a device it knew by serial, say): no second matching.
    leaf02 = CONFIG.inventory.by_hostname["leaf02"]
    [k] = dhcp_events(CONFIG, request("02:00:00:00:00:98", p.DISCOVER),
                      Proposal(reply(p.OFFER, "10.60.0.101"), device=leaf02, identified=True), 5.0)
    assert k.key == "leaf02"


def test_unanswered_discover_carries_the_chains_reason_but_rate_limits_do_not() -> None:
    why = Proposal(log_format="DISCOVER: no free address in %s", log_args=("10.60.0.0/24",),
                   level=logging.WARNING, counter="pool_exhausted")
    [e] = dhcp_events(CONFIG, request("02:00:00:00:00:02", p.DISCOVER), why, 5.0)
    assert e.kind == Kind.DISCOVER and e.detail["reason"] == "DISCOVER: no free address in 10.60.0.0/24"
    limited = Proposal(log_format="relay over limit", level=logging.WARNING, counter="rate_limited_relay")
    assert dhcp_events(CONFIG, request("02:00:00:00:00:02", p.DISCOVER), limited, 5.0) == []


def test_nak_reason_and_ack_left_to_the_ledger() -> None:
    nak = Proposal(reply(p.NAK), log_format="%s -> NAK", log_args=("REQUEST (init-reboot) for 10.1.1.1: wrong",))
    [e] = dhcp_events(CONFIG, request("02:00:00:00:00:02", p.REQUEST), nak, 5.0)
    assert e.kind == Kind.NAK and e.detail["reason"] == "REQUEST (init-reboot) for 10.1.1.1: wrong"
    assert dhcp_events(CONFIG, request("02:00:00:00:00:02", p.REQUEST), Proposal(reply(p.ACK, "10.60.0.5")), 5) == []


def test_cabling() -> None:
    leaf07 = CONFIG.inventory.by_hostname["leaf07"]  # listed by its port only: cannot be miscabled
    assert cabling(leaf07, None, mac="02:00:00:00:00:77") is None
    moved = replace(CONFIG.inventory.by_hostname["leaf01"], circuit_id="r1-port1")
    assert cabling(moved, RelayInfo(((1, b"r1-port1"),)), mac="02:00:00:00:00:01") is None
    wrong = cabling(moved, RelayInfo(((1, b"r1-port9"),)), mac="02:00:00:00:00:01")
    assert wrong is not None and wrong.text == ("miscabled: inventory expects circuit-id 'r1-port1', the device "
                                                "is on circuit-id 'r1-port9'")
    direct = cabling(moved, None, mac="02:00:00:00:00:01")
    assert direct is not None and direct.actual == "no relay port (direct segment)"


def test_lease_events() -> None:
    lease = Lease(IPv4Address("10.60.0.11"), "02:00:00:00:00:01", "02:00:00:00:00:01", LeaseState.DECLINED,
                  expires=0.0, updated=7.0)
    e = lease_event(CONFIG, LeaseEvent(EventKind.DECLINED, lease), 9.0)
    assert e is not None and (e.key, e.kind, e.at) == ("leaf01", Kind.DECLINED, 7.0)
    assert "address conflict" in e.text


def test_transfer_reasons() -> None:
    assert transfer_reason("leaf05.cfg", "timeout waiting for ACK of block 37 after 5 retransmission(s)") == \
        "TFTP leaf05.cfg timed out at block 37 (no ACK after 5 retransmissions)"
    assert transfer_reason("x.cfg", "peer sent error 0: disk full") == "TFTP x.cfg failed: peer sent error 0: disk full"
