"""Issue 10: who may relay, per-client and per-relay rate limits, conflict detection (ping check) before an
offer, and bounded per-packet cost (full pool, PTR names). Sans-I/O with a fake clock."""

from __future__ import annotations

import dataclasses
import logging
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from test_dhcp_chain import DIRECT, RELAYED, T0, Policy, mac, make_config, msg
from test_dns_zone import ask, make_zone

from ztp.config import load_config
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Ingress, Proposal
from ztp.dhcp.handlers.conflict import CONFLICT_CLIENT
from ztp.dhcp.handlers.rate_limit import MAX_CLIENTS, RateLimit
from ztp.dns.zone import Rcode
from ztp.leases.ledger import ChangeKind, EventKind, LeaseEvent
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.net.icmp import build_echo_request, inet_checksum, neighbour_mac, parse_echo_reply

RELAY = IPv4Address("10.50.0.2")  # dhcrelay's upstream address
GIADDR = "10.70.0.1"


def relayed(peer: IPv4Address = RELAY) -> Ingress:
    return dataclasses.replace(RELAYED, peer=peer)


def policy(tmp_path: Path, **settings: Any) -> Policy:
    return Policy(dataclasses.replace(make_config(tmp_path), **settings))


def offered(d: Proposal) -> IPv4Address:
    assert d.reply is not None and d.probe is None, d.log
    return d.reply.yiaddr


# --- who may relay -------------------------------------------------------------------------------------

def test_unset_relays_need_a_giaddr_in_a_configured_subnet(tmp_path: Path) -> None:
    pol = policy(tmp_path, ping_check=False)
    assert offered(pol.handle(msg(p.DISCOVER, mac(1), giaddr=GIADDR), relayed(), T0)) in IPv4Network("10.70.0.0/24")
    refused = pol.handle(msg(p.DISCOVER, mac(2), giaddr="192.0.2.1"), relayed(), T0)
    assert refused.reply is None and refused.change is None and refused.counter == "relay_refused"
    assert "192.0.2.1" in refused.log and "dhcp.relays" in refused.log


def test_configured_relays_restrict_source_and_giaddr(tmp_path: Path) -> None:
    pol = policy(tmp_path, ping_check=False, relays=(IPv4Network("10.50.0.0/24"), IPv4Network("10.70.0.1/32")))
    assert offered(pol.handle(msg(p.DISCOVER, mac(1), giaddr=GIADDR), relayed(), T0)) in IPv4Network("10.70.0.0/24")
    for giaddr, peer in (("10.70.0.1", IPv4Address("10.99.0.9")),   # source not a relay
                         ("10.70.0.5", RELAY)):                      # giaddr not one of the relays
        refused = pol.handle(msg(p.DISCOVER, mac(3), giaddr=giaddr), relayed(peer), T0)
        assert refused.reply is None and refused.counter == "relay_refused", refused.log
        assert pol.table.lease_of(mac(3)) is None
    # A direct broadcast and a renewing client's unicast (giaddr 0) are no relay.
    assert offered(pol.handle(msg(p.DISCOVER, mac(4)), DIRECT, T0)) in IPv4Network("10.60.0.0/24")


def test_relays_key_accepts_addresses_and_networks(tmp_path: Path) -> None:
    make_config(tmp_path)
    text = (tmp_path / "ztp.yaml").read_text().replace("  offer_hold: 30\n",
                                                       "  offer_hold: 30\n  relays: [10.50.0.2, 10.70.0.0/24]\n")
    (tmp_path / "ztp.yaml").write_text(text)
    config = load_config(tmp_path / "ztp.yaml")
    assert config.relays == (IPv4Network("10.50.0.2/32"), IPv4Network("10.70.0.0/24"))
    assert config.ping_check is True and config.ping_timeout == 0.5  # the documented defaults
    assert config.rate_limit == 20 and config.relay_rate_limit == 20000


# --- rate limits ---------------------------------------------------------------------------------------

def test_per_client_rate_limit_drops_and_counts_without_touching_others(tmp_path: Path) -> None:
    pol = policy(tmp_path, ping_check=False, rate_limit=2.0)  # bursts of 4
    outcomes = [pol.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0) for _ in range(6)]
    assert [o.reply is not None for o in outcomes] == [True] * 4 + [False] * 2
    assert outcomes[-1].counter == "rate_limited_client"
    assert pol.handle(msg(p.DISCOVER, mac(2)), DIRECT, T0).reply is not None  # another client is served
    assert pol.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0 + 0.5).reply is not None  # one token back


def test_per_relay_rate_limit(tmp_path: Path) -> None:
    pol = policy(tmp_path, ping_check=False, relay_rate_limit=5.0)  # bursts of 10
    outcomes = [pol.handle(msg(p.DISCOVER, mac(n), giaddr=GIADDR), relayed(), T0) for n in range(12)]
    assert sum(o.reply is not None for o in outcomes) == 10
    assert outcomes[-1].counter == "rate_limited_relay"
    assert pol.handle(msg(p.DISCOVER, mac(40)), DIRECT, T0).reply is not None  # direct clients unaffected
    assert pol.handle(msg(p.DISCOVER, mac(41), giaddr=GIADDR), relayed(), T0 + 1).reply is not None


def test_spoofed_macs_cannot_grow_the_rate_limit_tables(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path), rate_limit=1.0)
    limit = RateLimit(config)
    for n in range(MAX_CLIENTS + 5000):
        assert limit.clients.allow(f"02:{n:010x}", T0)
    assert MAX_CLIENTS - MAX_CLIENTS // 16 < len(limit.clients) <= MAX_CLIENTS  # bounded (room made in batches)


# --- conflict detection --------------------------------------------------------------------------------

def test_discover_asks_for_a_probe_and_holds_the_address_meanwhile(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    pol = Policy(config)
    first = pol.chain.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0)
    assert first.probe == IPv4Address("10.60.0.100") and first.reply is None
    assert first.change is not None and first.change.kind == ChangeKind.OFFER  # memory-only hold
    pol.ledger.commit(first.change, lambda error: None)
    # While the probe runs, other clients are served (their own probes) and never get the probed address.
    other = pol.chain.handle(msg(p.DISCOVER, mac(2)), DIRECT, T0 + 0.1)
    assert other.probe == IPv4Address("10.60.0.101")
    # Silence: the same client now gets its OFFER at once, for the probed address.
    after = pol.chain.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0 + 0.5, cleared=first.probe)
    assert offered(after) == first.probe
    pol.ledger.commit(after.change, lambda error: None)  # type: ignore[arg-type]
    # A retransmitted DISCOVER within the offer's lifetime is not made to wait again.
    assert offered(pol.chain.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0 + 5)) == first.probe
    # ... but after it, an address with no binding is probed again.
    assert pol.chain.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0 + config.offer_hold + 1).probe == first.probe


def test_an_answered_probe_holds_the_address_out_and_the_client_gets_the_next(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    pol = Policy(config)
    events: list[LeaseEvent] = []
    pol.ledger.subscribe(events.append)
    first = pol.chain.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0)
    assert first.change is not None and first.probe is not None
    pol.ledger.commit(first.change, lambda error: None)
    squatted = first.probe
    found = pol.chain.conflict(squatted, "02:5e:00:00:00:01", T0 + 0.01)
    assert found.change is not None and found.change.kind == ChangeKind.CONFLICT and found.change.durable
    assert found.level == logging.WARNING and "02:5e:00:00:00:01" in found.log and found.counter == "conflicts"
    pol.ledger.commit(found.change, lambda error: None)
    assert [e.kind for e in events] == [EventKind.CONFLICT]
    row = pol.table.at(squatted)
    assert row.state == LeaseState.DECLINED and row.client == CONFLICT_CLIENT and row.mac == "02:5e:00:00:00:01"
    assert row.expires == T0 + 0.01 + config.decline_hold
    assert pol.table.lease_of(mac(1)) is None  # the client's hold went with it
    # The chain runs again: the next free address, probed in its turn; the squatted one is never offered.
    again = pol.chain.handle(msg(p.DISCOVER, mac(1)), DIRECT, T0 + 0.02)
    assert again.probe == IPv4Address("10.60.0.101")
    for n in range(2, 40):
        assert pol.handle(msg(p.DISCOVER, mac(n)), DIRECT, T0 + 1).reply.yiaddr != squatted  # type: ignore[union-attr]
    # Nor requested by a client that names it.
    nak = pol.handle(msg(p.REQUEST, mac(50), requested=str(squatted)), DIRECT, T0 + 2)
    assert nak.reply is not None and nak.reply.message_type == p.NAK
    # After decline_hold it is an address like any other again (probed before it is offered).
    later = T0 + config.decline_hold + 10
    assert pol.table.available(squatted, mac(60), later)


def test_no_probe_for_reservations_bindings_or_when_off(tmp_path: Path) -> None:
    pol = Policy(make_config(tmp_path))
    leaf01 = "02:00:00:00:00:01"  # reserved 10.60.0.11
    assert offered(pol.chain.handle(msg(p.DISCOVER, leaf01), DIRECT, T0)) == IPv4Address("10.60.0.11")
    # A client that holds a binding of the address it is offered.
    pol.table.bind(IPv4Address("10.60.0.150"), mac(7), mac(7), lease_time=3600, now=T0)
    assert offered(pol.chain.handle(msg(p.DISCOVER, mac(7)), DIRECT, T0 + 10)) == IPv4Address("10.60.0.150")
    (tmp_path / "off").mkdir()
    off = policy(tmp_path / "off", ping_check=False)
    assert off.chain.handle(msg(p.DISCOVER, mac(8)), DIRECT, T0).probe is None
    # REQUESTs are never delayed: the address was probed before it was offered.
    sel = pol.handle(msg(p.DISCOVER, mac(9)), DIRECT, T0)
    ack = pol.chain.handle(msg(p.REQUEST, mac(9), requested=str(offered(sel)), server_id="10.60.0.1"), DIRECT, T0)
    assert ack.probe is None and ack.reply is not None and ack.reply.message_type == p.ACK


def test_icmp_codec() -> None:
    req = build_echo_request(0x1234, 7, b"abc")
    assert req[0] == 8 and inet_checksum(req) == 0  # a correct checksum sums to zero
    # An echo reply as a raw socket hands it over: IP header (20 bytes, proto 1) + ICMP.
    icmp = bytes([0, 0]) + req[2:]
    icmp = icmp[:2] + inet_checksum(icmp[:2] + b"\0\0" + icmp[4:]).to_bytes(2, "big") + icmp[4:]
    header = bytes([0x45, 0, 0, 20 + len(icmp), 0, 0, 0, 0, 64, 1, 0, 0]) + bytes([10, 60, 0, 150]) + bytes(4)
    assert parse_echo_reply(header + icmp) == (IPv4Address("10.60.0.150"), 0x1234, 7)
    assert parse_echo_reply(header + req) is None  # a request, not a reply
    assert parse_echo_reply(b"\x45" + bytes(10)) is None


def test_neighbour_mac_reads_complete_entries(tmp_path: Path) -> None:
    table = tmp_path / "arp"
    table.write_text("IP address       HW type     Flags       HW address            Mask     Device\n"
                     "10.60.0.150      0x1         0x2         02:5e:00:00:00:01     *        s1\n"
                     "10.60.0.151      0x1         0x0         00:00:00:00:00:00     *        s1\n")
    assert neighbour_mac(IPv4Address("10.60.0.150"), table) == "02:5e:00:00:00:01"
    assert neighbour_mac(IPv4Address("10.60.0.151"), table) is None
    assert neighbour_mac(IPv4Address("10.60.0.152"), tmp_path / "missing") is None


# --- bounded cost --------------------------------------------------------------------------------------

class CountingDict(dict[int, Lease]):
    walks = 0

    def values(self):  # type: ignore[no-untyped-def]
        CountingDict.walks += 1
        return super().values()

    def items(self):  # type: ignore[no-untyped-def]
        CountingDict.walks += 1
        return super().items()


def test_discover_on_a_full_pool_never_walks_the_leases(tmp_path: Path) -> None:
    subnet = make_config(tmp_path).subnets[0]  # pool .100-.199
    table = LeaseTable()
    table._rows = CountingDict()
    for i in range(100, 200):
        table.bind(IPv4Address(f"10.60.0.{i}"), mac(i), mac(i), lease_time=60 + i, now=T0)
    table.choose(subnet, "new", reserved=None, requested=None, now=T0)  # builds the pool's index once
    CountingDict.walks = 0
    assert table.choose(subnet, "new", reserved=None, requested=None, now=T0 + 10) is None
    # Oldest expiry first, one after another, as addresses are taken over.
    for i in range(100, 150):
        ip = table.choose(subnet, f"n{i}", reserved=None, requested=None, now=T0 + 1000)
        assert ip == IPv4Address(f"10.60.0.{i}")
        table.bind(ip, f"n{i}", f"n{i}", lease_time=3600, now=T0 + 1000)
    assert CountingDict.walks == 0
    # Renewals push entries; the index is compacted, so it stays proportional to the table.
    for _ in range(20):
        for i in range(100, 200):
            table.bind(IPv4Address(f"10.60.0.{i}"), mac(i), mac(i), lease_time=3600, now=T0 + 2000)
        table.choose(subnet, "new", reserved=None, requested=None, now=T0 + 2000)
    assert all(len(pool.heap) <= 2 * 100 + 64 for pool in table._reusable.values())


def test_released_and_expired_declined_addresses_are_reused_oldest_first(tmp_path: Path) -> None:
    subnet = make_config(tmp_path, pool="10.60.0.100-10.60.0.102").subnets[0]
    table = LeaseTable()
    for n in (100, 101, 102):
        table.bind(IPv4Address(f"10.60.0.{n}"), mac(n), mac(n), lease_time=3600, now=T0)
    assert table.choose(subnet, "x", reserved=None, requested=None, now=T0 + 1) is None
    table.release(mac(101), IPv4Address("10.60.0.101"), T0 + 5)
    assert table.choose(subnet, "x", reserved=None, requested=None, now=T0 + 6) == IPv4Address("10.60.0.101")
    table.decline(IPv4Address("10.60.0.101"), mac(101), mac(101), quarantine=100, now=T0 + 7)
    assert table.choose(subnet, "x", reserved=None, requested=None, now=T0 + 8) is None
    assert table.choose(subnet, "x", reserved=None, requested=None, now=T0 + 108) == IPv4Address("10.60.0.101")
    # Addresses being committed for another client (their integers) are skipped, not lost.
    assert table.choose(subnet, "x", reserved=None, requested=None, now=T0 + 108,
                        taken={int(IPv4Address("10.60.0.101"))}) is None
    assert table.choose(subnet, "x", reserved=None, requested=None, now=T0 + 108) == IPv4Address("10.60.0.101")


def test_ptr_partial_and_many_label_names_are_lookups() -> None:
    zone = make_zone(subnets=["10.0.0.0/8"])
    static = (dict(zone._ptr_ents), dict(zone._host_ents))
    zone.set_host("a", "10.1.2.3", expires_at=None)
    assert ask(zone, "2.1.10.in-addr.arpa", "PTR").header.rcode == Rcode.NOERROR  # above a known address
    assert ask(zone, "1.10.in-addr.arpa", "PTR").header.rcode == Rcode.NOERROR
    assert ask(zone, "9.1.10.in-addr.arpa", "PTR").header.rcode == Rcode.NXDOMAIN
    many = ".".join("x" * 3 for _ in range(30)) + ".3.2.1.10.in-addr.arpa"
    assert ask(zone, many, "PTR").header.rcode == Rcode.NXDOMAIN
    zone.remove_host("a")
    assert ask(zone, "2.1.10.in-addr.arpa", "PTR").header.rcode == Rcode.NXDOMAIN
    assert (dict(zone._ptr_ents), dict(zone._host_ents)) == static  # nothing left behind

