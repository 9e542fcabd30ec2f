"""The DhcpServer shell's side of conflict detection, with a fake pinger and a fake clock: the chain asks
for a probe, the shell holds the OFFER until it resolves while other clients are served, commits a conflict
on an answer and moves on to the next address, and gives up after MAX_PROBES answers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from test_dhcp_chain import make_config, msg
from test_dhcp_durability import SERVER, RecordingSocket, _receive

from tests.conftest import FakeClock
from ztp.dhcp import packet as p
from ztp.dhcp.chain import Chain
from ztp.dhcp.server import MAX_PROBES, DhcpServer
from ztp.leases.ledger import Ledger
from ztp.leases.table import LeaseState, LeaseTable

SQUATTER = "02:5e:00:00:00:01"


class FakePinger:
    """Records probes; the test decides when and how each resolves."""

    def __init__(self) -> None:
        self.pending: dict[IPv4Address, Callable[[bool | None], None]] = {}
        self.timeouts: list[float] = []

    def busy(self) -> bool:
        return False

    def probe(self, ip: IPv4Address, timeout: float, resolved: Callable[[bool | None], None]) -> None:
        assert ip not in self.pending
        self.pending[ip] = resolved
        self.timeouts.append(timeout)

    def resolve(self, ip: str, answered: bool | None) -> None:
        self.pending.pop(IPv4Address(ip))(answered)


def _shell(tmp_path: Path, clock: FakeClock, pinger: FakePinger | None) -> tuple[DhcpServer, RecordingSocket,
                                                                                  LeaseTable]:
    config = make_config(tmp_path)
    assert config.ping_check
    table = LeaseTable()
    ledger = Ledger(table)  # memory-only commits: the durability tests cover the store
    server = DhcpServer(Chain(config, ledger), ledger, interfaces=("s1",), clock=lambda: clock.now)
    sock = RecordingSocket()
    server._sock = sock  # type: ignore[assignment]
    server._ifaces._cache[7] = (1e18, "s1", SERVER)
    server.pinger = pinger  # type: ignore[assignment]
    return server, sock, table


def _discover(server: DhcpServer, mac: str) -> None:
    _receive(server, msg(p.DISCOVER, mac, flags=p.BROADCAST_FLAG))


def test_offer_waits_for_the_probe_while_others_are_served(tmp_path: Path, fake_clock: FakeClock) -> None:
    pinger = FakePinger()
    server, sock, _ = _shell(tmp_path, fake_clock, pinger)
    _discover(server, "02:77:00:00:00:01")
    assert sock.sent == [] and list(pinger.pending) == [IPv4Address("10.60.0.100")]
    assert pinger.timeouts == [0.5]
    _discover(server, "02:77:00:00:00:01")  # its retransmission: answered by the probe under way
    assert server.counters["probe_pending"] == 1 and len(pinger.pending) == 1
    _discover(server, "02:77:00:00:00:02")  # another client is not held up, nor given the probed address
    assert IPv4Address("10.60.0.101") in pinger.pending
    _receive(server, msg(p.DISCOVER, "02:00:00:00:00:01", flags=p.BROADCAST_FLAG))  # leaf01: reserved, no probe
    assert [o.yiaddr for o in sock.sent] == [IPv4Address("10.60.0.11")]
    fake_clock.advance(0.5)
    pinger.resolve("10.60.0.101", answered=False)
    pinger.resolve("10.60.0.100", answered=False)
    assert [(o.message_type, o.yiaddr) for o in sock.sent[1:]] == [(p.OFFER, IPv4Address("10.60.0.101")),
                                                                 (p.OFFER, IPv4Address("10.60.0.100"))]
    assert sock.sent[2].chaddr[:6] == bytes.fromhex("027700000001")


def test_an_answer_commits_a_conflict_and_the_next_address_is_probed(tmp_path: Path, fake_clock: FakeClock,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("ztp.dhcp.server.neighbour_mac", lambda ip: SQUATTER)
    pinger = FakePinger()
    server, sock, table = _shell(tmp_path, fake_clock, pinger)
    with caplog.at_level(logging.WARNING, logger="ztp.dhcp"):
        _discover(server, "02:77:00:00:00:01")
        pinger.resolve("10.60.0.100", answered=True)
    assert sock.sent == [] and list(pinger.pending) == [IPv4Address("10.60.0.101")]
    row = table.at(IPv4Address("10.60.0.100"))
    assert row.state == LeaseState.DECLINED and row.mac == SQUATTER
    assert server.counters["conflicts"] == 1
    assert any(r.getMessage().startswith("02:77:00:00:00:01 dhcp address 10.60.0.100 is in use") and SQUATTER in
               r.getMessage() for r in caplog.records)
    pinger.resolve("10.60.0.101", answered=False)
    assert [(o.message_type, o.yiaddr) for o in sock.sent] == [(p.OFFER, IPv4Address("10.60.0.101"))]
    # Nobody is offered the squatted address while it is held.
    for n in range(2, 6):
        _discover(server, f"02:77:00:00:00:{n:02x}")
    assert IPv4Address("10.60.0.100") not in pinger.pending


def test_gives_up_after_max_probes_answers(tmp_path: Path, fake_clock: FakeClock) -> None:
    pinger = FakePinger()
    server, sock, _ = _shell(tmp_path, fake_clock, pinger)
    _discover(server, "02:77:00:00:00:01")
    for n in range(MAX_PROBES):
        pinger.resolve(f"10.60.0.{100 + n}", answered=True)
    assert sock.sent == [] and not pinger.pending
    assert server.counters["conflicts"] == MAX_PROBES and server.counters["probe_gave_up"] == 1


def test_without_an_icmp_socket_offers_go_out_unprobed(tmp_path: Path, fake_clock: FakeClock) -> None:
    server, sock, _ = _shell(tmp_path, fake_clock, None)
    _discover(server, "02:77:00:00:00:01")
    assert [(o.message_type, o.yiaddr) for o in sock.sent] == [(p.OFFER, IPv4Address("10.60.0.100"))]
    assert server.counters["probe_unavailable"] == 1


def test_an_echo_that_cannot_be_sent_is_counted_and_the_offer_goes_ahead(tmp_path: Path, fake_clock: FakeClock,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    pinger = FakePinger()
    server, sock, _ = _shell(tmp_path, fake_clock, pinger)
    with caplog.at_level(logging.WARNING, logger="ztp.dhcp"):
        for n in (1, 2):
            _discover(server, f"02:77:00:00:00:{n:02x}")
            pinger.resolve(f"10.60.0.{99 + n}", answered=None)  # e.g. ENOBUFS: the neighbour table is full
    assert [o.yiaddr for o in sock.sent] == [IPv4Address("10.60.0.100"), IPv4Address("10.60.0.101")]
    assert server.counters["probe_unsent"] == 2
    assert sum("gc_thresh3" in r.getMessage() for r in caplog.records) == 1  # said once, then counted
