"""The agent's sans-I/O DHCP client (RFC 2131 §4.4) with a fake clock: DORA, backoff, NAK, DECLINE, T1/T2."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from tests.conftest import FakeClock
from ztp.agent.device import boot_target
from ztp.agent.dhcp_client import (
    BROADCAST_IP,
    DEFAULT_PARAMETER_LIST,
    Acked,
    Bound,
    ClientConfig,
    ClientState,
    Declined,
    DhcpClient,
    LeaseExpired,
    Nacked,
    Offered,
    Transmit,
    client_id_from_text,
    retransmit_delay,
)
from ztp.dhcp import options as opt
from ztp.dhcp.packet import ACK, BOOTREPLY, DECLINE, DISCOVER, NAK, OFFER, RELEASE, REQUEST, DhcpPacket, parse

MAC = "02:00:00:00:00:01"
SERVER = IPv4Address("10.60.0.1")
ADDR = IPv4Address("10.60.0.100")


def reply(client: DhcpClient, mtype: int, *, yiaddr: IPv4Address = ADDR, lease: int = 100,
          t1: int | None = None, t2: int | None = None, server: IPv4Address = SERVER,
          xid: int | None = None) -> DhcpPacket:
    options: dict[int, bytes] = {opt.MESSAGE_TYPE: bytes((mtype,)), opt.SERVER_ID: server.packed}
    if mtype in (OFFER, ACK):
        options[opt.LEASE_TIME] = lease.to_bytes(4, "big")
        options[opt.SUBNET_MASK] = IPv4Address("255.255.255.0").packed
        options[opt.ROUTERS] = SERVER.packed
        if t1 is not None:
            options[opt.RENEWAL_TIME] = t1.to_bytes(4, "big")
        if t2 is not None:
            options[opt.REBINDING_TIME] = t2.to_bytes(4, "big")
    assert client.xid is not None or xid is not None
    return DhcpPacket(op=BOOTREPLY, xid=xid if xid is not None else client.xid or 0, chaddr=client.chaddr,
                      yiaddr=yiaddr if mtype != NAK else IPv4Address(0), options=options)


def sent(client: DhcpClient) -> list[Transmit]:
    return client.datagrams_to_send()


def events(client: DhcpClient) -> list[object]:
    out: list[object] = []
    while (ev := client.next_event()) is not None:
        out.append(ev)
    return out


def bind(client: DhcpClient, clock: FakeClock, *, lease: int = 100, t1: int | None = None,
         t2: int | None = None) -> None:
    client.start(clock.now)
    sent(client)
    client.receive(reply(client, OFFER), clock.now)
    sent(client)
    client.receive(reply(client, ACK, lease=lease, t1=t1, t2=t2), clock.now)
    client.probe_result(False, clock.now)
    events(client)
    assert client.state is ClientState.BOUND


@pytest.fixture
def client() -> DhcpClient:
    return DhcpClient(ClientConfig(mac=MAC, hostname="sw1", vendor_class="acme", client_id=b"\x00SN1"),
                      random.Random(7))


def test_discover_is_broadcast_from_zero_with_identity_options(client: DhcpClient, fake_clock: FakeClock) -> None:
    client.start(fake_clock.now)
    (tx,) = sent(client)
    assert tx.source == IPv4Address(0) and tx.destination == BROADCAST_IP and tx.broadcast
    pkt = parse(tx.payload)
    assert pkt.message_type == DISCOVER and pkt.mac == MAC and pkt.flags == 0  # flag only when asked
    assert pkt.options[opt.PARAMETER_LIST] == bytes(DEFAULT_PARAMETER_LIST)
    assert pkt.options[opt.HOST_NAME] == b"sw1" and pkt.options[opt.VENDOR_CLASS] == b"acme"
    assert pkt.options[opt.CLIENT_ID] == b"\x00SN1"
    assert client.state is ClientState.SELECTING


def test_broadcast_flag_when_asked(fake_clock: FakeClock) -> None:
    c = DhcpClient(ClientConfig(mac=MAC, broadcast=True), random.Random(1))
    c.start(fake_clock.now)
    assert parse(sent(c)[0].payload).broadcast


def test_discover_backoff_4_8_16_32_64_64_with_jitter(client: DhcpClient, fake_clock: FakeClock) -> None:
    client.start(fake_clock.now)
    sent(client)
    gaps = []
    for _ in range(7):
        timer = client.get_timer()
        assert timer is not None
        gaps.append(timer - fake_clock.now)
        fake_clock.advance(timer - fake_clock.now - 0.01)
        client.handle_timer(fake_clock.now)
        assert sent(client) == []  # not yet
        fake_clock.advance(0.01)
        client.handle_timer(fake_clock.now)
        (tx,) = sent(client)
        assert parse(tx.payload).message_type == DISCOVER
    for gap, base in zip(gaps, (4, 8, 16, 32, 64, 64, 64), strict=True):
        assert base - 1 <= gap <= base + 1
    assert len({round(g % 1, 6) for g in gaps}) > 1  # randomized


def test_retransmit_delay_bounds() -> None:
    rng = random.Random(3)
    for attempt in range(12):
        d = retransmit_delay(attempt, rng)
        base = min(4 * 2**attempt, 64)
        assert base - 1 <= d <= base + 1


def test_offer_then_request_with_50_and_54_same_xid(client: DhcpClient, fake_clock: FakeClock) -> None:
    client.start(fake_clock.now)
    xid = parse(sent(client)[0].payload).xid
    fake_clock.advance(0.5)
    client.receive(reply(client, OFFER), fake_clock.now)
    (tx,) = sent(client)
    req = parse(tx.payload)
    assert req.message_type == REQUEST and req.xid == xid and tx.broadcast
    assert req.option_ip(opt.REQUESTED_IP) == ADDR and req.option_ip(opt.SERVER_ID) == SERVER
    assert req.ciaddr == IPv4Address(0)
    (ev,) = events(client)
    assert isinstance(ev, Offered) and ev.at - ev.discover_at == pytest.approx(0.5)
    assert client.state is ClientState.REQUESTING


def test_second_offer_and_foreign_xid_are_ignored(client: DhcpClient, fake_clock: FakeClock) -> None:
    client.start(fake_clock.now)
    sent(client)
    client.receive(reply(client, OFFER, xid=12345), fake_clock.now)
    assert client.state is ClientState.SELECTING and sent(client) == []
    client.receive(reply(client, OFFER), fake_clock.now)
    sent(client)
    client.receive(reply(client, OFFER, yiaddr=IPv4Address("10.60.0.101")), fake_clock.now)
    assert sent(client) == []


def test_ack_probes_then_binds_with_t1_t2_defaults(client: DhcpClient, fake_clock: FakeClock) -> None:
    client.start(fake_clock.now)
    sent(client)
    client.receive(reply(client, OFFER), fake_clock.now)
    sent(client)
    fake_clock.advance(0.2)
    client.receive(reply(client, ACK, lease=100), fake_clock.now)
    evs = events(client)
    assert isinstance(evs[-1], Acked) and client.state is ClientState.PROBING
    assert client.get_timer() is None  # waiting for the shell's ARP probe
    client.probe_result(False, fake_clock.now)
    (ev,) = events(client)
    assert isinstance(ev, Bound) and not ev.renewed
    lease = ev.lease
    assert lease.address == ADDR and lease.prefixlen == 24 and lease.routers == [SERVER]
    # RFC 2131 §4.4.5 defaults 0.5 / 0.875, counted from when the REQUEST left.
    assert lease.t1_at == pytest.approx(1000.0 + 50) and lease.t2_at == pytest.approx(1000.0 + 87.5)
    assert client.get_timer() == pytest.approx(lease.t1_at)


def test_conflict_sends_decline_and_restarts_after_wait(client: DhcpClient, fake_clock: FakeClock) -> None:
    client.start(fake_clock.now)
    sent(client)
    client.receive(reply(client, OFFER), fake_clock.now)
    sent(client)
    client.receive(reply(client, ACK), fake_clock.now)
    events(client)
    client.probe_result(True, fake_clock.now)
    (tx,) = sent(client)
    decline = parse(tx.payload)
    assert decline.message_type == DECLINE and tx.broadcast
    assert decline.option_ip(opt.REQUESTED_IP) == ADDR and decline.option_ip(opt.SERVER_ID) == SERVER
    assert decline.options[opt.CLIENT_ID] == b"\x00SN1"
    assert isinstance(events(client)[0], Declined)
    assert client.state is ClientState.INIT and client.lease is None
    assert client.get_timer() == pytest.approx(fake_clock.now + 10)  # RFC 2131 §3.1 step 5
    fake_clock.advance(10)
    client.handle_timer(fake_clock.now)
    assert parse(sent(client)[0].payload).message_type == DISCOVER


def test_nak_in_requesting_restarts_with_new_xid(client: DhcpClient, fake_clock: FakeClock) -> None:
    client.start(fake_clock.now)
    xid = parse(sent(client)[0].payload).xid
    client.receive(reply(client, OFFER), fake_clock.now)
    sent(client)
    client.receive(reply(client, NAK), fake_clock.now)
    evs = events(client)
    assert isinstance(evs[-1], Nacked) and evs[-1].state is ClientState.REQUESTING
    (tx,) = sent(client)
    again = parse(tx.payload)
    assert again.message_type == DISCOVER and again.xid != xid


def test_nak_from_another_server_is_ignored(client: DhcpClient, fake_clock: FakeClock) -> None:
    client.start(fake_clock.now)
    sent(client)
    client.receive(reply(client, OFFER), fake_clock.now)
    sent(client)
    client.receive(reply(client, NAK, server=IPv4Address("10.60.0.2")), fake_clock.now)
    assert client.state is ClientState.REQUESTING and sent(client) == []


def test_request_retransmits_then_falls_back_to_init(fake_clock: FakeClock) -> None:
    c = DhcpClient(ClientConfig(mac=MAC, request_retries=2), random.Random(5))
    c.start(fake_clock.now)
    sent(c)
    c.receive(reply(c, OFFER), fake_clock.now)
    sent(c)
    types = []
    for _ in range(3):
        timer = c.get_timer()
        assert timer is not None
        fake_clock.advance(timer - fake_clock.now)
        c.handle_timer(fake_clock.now)
        types += [parse(t.payload).message_type for t in sent(c)]
    assert types == [REQUEST, REQUEST, DISCOVER]
    assert c.state is ClientState.SELECTING


def test_renew_at_t1_unicast_then_ack_extends(client: DhcpClient, fake_clock: FakeClock) -> None:
    bind(client, fake_clock, lease=40, t1=10, t2=30)
    fake_clock.advance(10)
    client.handle_timer(fake_clock.now)
    (tx,) = sent(client)
    req = parse(tx.payload)
    assert client.state is ClientState.RENEWING
    assert req.message_type == REQUEST and tx.destination == SERVER and tx.source == ADDR
    assert req.ciaddr == ADDR and opt.REQUESTED_IP not in req.options and opt.SERVER_ID not in req.options
    # RFC 2131 §4.4.5: no retransmission before T2 when half the remaining time is under 60 s.
    assert client.get_timer() == pytest.approx(1000 + 30)
    fake_clock.advance(1)
    client.receive(reply(client, ACK, lease=40, t1=10, t2=30), fake_clock.now)
    (ev,) = events(client)
    assert isinstance(ev, Bound) and ev.renewed and not ev.rebound
    assert client.state is ClientState.BOUND
    assert client.get_timer() == pytest.approx(1010 + 10)


def test_rebind_at_t2_broadcast_then_expiry_restarts(client: DhcpClient, fake_clock: FakeClock) -> None:
    bind(client, fake_clock, lease=40, t1=10, t2=30)
    fake_clock.advance(10)
    client.handle_timer(fake_clock.now)
    sent(client)
    fake_clock.advance(20)
    client.handle_timer(fake_clock.now)
    (tx,) = sent(client)
    assert client.state is ClientState.REBINDING and tx.broadcast and tx.source == ADDR
    assert parse(tx.payload).ciaddr == ADDR
    assert client.get_timer() == pytest.approx(1000 + 40)
    fake_clock.advance(10)
    client.handle_timer(fake_clock.now)
    evs = events(client)
    assert any(isinstance(e, LeaseExpired) for e in evs)
    assert client.state is ClientState.SELECTING and client.lease is None
    assert parse(sent(client)[0].payload).message_type == DISCOVER


def test_rebind_ack_reports_rebound(client: DhcpClient, fake_clock: FakeClock) -> None:
    bind(client, fake_clock, lease=40, t1=10, t2=30)
    fake_clock.advance(30)
    client.handle_timer(fake_clock.now)
    sent(client)
    assert client.state is ClientState.REBINDING
    client.receive(reply(client, ACK, lease=40, t1=10, t2=30), fake_clock.now)
    (ev,) = events(client)
    assert isinstance(ev, Bound) and ev.rebound


def test_nak_while_renewing_restarts(client: DhcpClient, fake_clock: FakeClock) -> None:
    bind(client, fake_clock, lease=40, t1=10, t2=30)
    fake_clock.advance(10)
    client.handle_timer(fake_clock.now)
    sent(client)
    client.receive(reply(client, NAK), fake_clock.now)
    evs = events(client)
    assert isinstance(evs[0], Nacked) and evs[0].state is ClientState.RENEWING
    assert client.lease is None and client.state is ClientState.SELECTING


def test_release_is_unicast_with_ciaddr(client: DhcpClient, fake_clock: FakeClock) -> None:
    bind(client, fake_clock)
    client.release(fake_clock.now)
    (tx,) = sent(client)
    rel = parse(tx.payload)
    assert rel.message_type == RELEASE and rel.ciaddr == ADDR and tx.destination == SERVER
    assert client.state is ClientState.STOPPED and client.get_timer() is None


def test_client_id_text() -> None:
    assert client_id_from_text("SN1") == b"\x00SN1"
    assert client_id_from_text("hex:01:02:00:00:00:00:01") == bytes.fromhex("01020000000001")


def _ack(**fields: object) -> DhcpPacket:
    base: dict[str, object] = {"op": BOOTREPLY, "xid": 1, "chaddr": bytes(16)}
    base.update(fields)
    return DhcpPacket(**base)  # type: ignore[arg-type]


def test_boot_target_precedence() -> None:
    full = _ack(siaddr=IPv4Address("10.0.0.3"), sname=b"sname.host", file=b"f.bin",
                options={66: b"boot.lab\0", 150: IPv4Address("10.0.0.2").packed, 67: b"o67.cfg"})
    t = boot_target(full)
    assert (t.server, t.server_source, t.file, t.file_source) == ("boot.lab", "option66", "o67.cfg", "option67")
    t = boot_target(_ack(siaddr=IPv4Address("10.0.0.3"), options={150: IPv4Address("10.0.0.2").packed}))
    assert (t.server, t.server_source, t.file) == ("10.0.0.2", "option150", None)
    t = boot_target(_ack(siaddr=IPv4Address("10.0.0.3"), sname=b"x", file=b"f.bin"))
    assert (t.server, t.server_source, t.file, t.file_source) == ("10.0.0.3", "siaddr", "f.bin", "file")
    t = boot_target(_ack(sname=b"tftp.lab"))
    assert (t.server, t.server_source) == ("tftp.lab", "sname")
