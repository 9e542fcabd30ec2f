"""Boot attempts (issue 13's caveat): the retry policy (pure), REQUESTING's give-up in the sans-I/O DHCP client
(fake clock), and the device flow over the smallest fakes (an in-process DHCP server behind a fake link, a
fake netlink socket, a boot step that fails on demand): a failed fetch forgets the address and DISCOVERs
again."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from tests.conftest import FakeClock
from ztp.agent import netlink, rawsock
from ztp.agent.attempts import RETRYABLE_STAGES, AttemptFailure, BootRetry
from ztp.agent.device import (
    EXIT_NO_ACK,
    EXIT_TFTP,
    AgentOptions,
    Device,
    DeviceFailure,
    DeviceSpec,
    InterfaceConfigurator,
)
from ztp.agent.dhcp_client import ClientConfig, ClientState, DhcpClient, Lease, Offered, RequestTimedOut
from ztp.dhcp import options as opt
from ztp.dhcp.packet import ACK, BOOTREPLY, DISCOVER, OFFER, REQUEST, DhcpPacket, build, parse

SERVER = IPv4Address("10.60.0.1")
ADDR = IPv4Address("10.60.1.5")
OTHER = IPv4Address("10.60.1.6")
MAC = "02:00:00:00:00:07"

# -- the policy ---------------------------------------------------------------------------------------------


def test_backoff_doubles_is_jittered_within_half_a_step_and_bounded() -> None:
    retry = BootRetry(attempts=8, backoff=2.0, backoff_max=16.0)
    rng = random.Random(1)
    for attempt, step in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 16.0), (7, 16.0)]:
        waits = [retry.delay(attempt, rng) for _ in range(200)]
        assert all(step / 2 <= w <= step for w in waits), (attempt, min(waits), max(waits))
        assert max(waits) - min(waits) > step / 4  # spread: a fleet does not come back in lock-step


def test_next_attempt_only_for_retryable_stages_with_attempts_and_time_left() -> None:
    retry = BootRetry(attempts=3, backoff=2.0)
    rng = random.Random(2)
    for stage in ("tftp", "http", "fetch", "verify", "resolve", "boot", "request"):
        assert stage in RETRYABLE_STAGES
        wait = retry.next_attempt(1, stage, now=0.0, deadline=60.0, rng=rng)
        assert wait is not None and 1.0 <= wait <= 2.0
    # The agent's own errors and the ones that already used the whole --timeout end the run.
    for stage in ("configure", "write", "discover", "arp_probe"):
        assert retry.next_attempt(1, stage, now=0.0, deadline=60.0, rng=rng) is None
    assert retry.next_attempt(3, "tftp", now=0.0, deadline=60.0, rng=rng) is None  # the last attempt
    assert retry.next_attempt(2, "tftp", now=0.0, deadline=60.0, rng=rng) is not None
    assert retry.next_attempt(1, "tftp", now=59.5, deadline=60.0, rng=rng) is None  # the wait would end past it
    assert BootRetry(attempts=1).next_attempt(1, "tftp", now=0.0, deadline=60.0, rng=rng) is None
    with pytest.raises(ValueError, match="at least 1"):
        BootRetry(attempts=0)


def test_attempt_failure_json() -> None:
    assert AttemptFailure(1, "tftp", "x.cfg from 10.60.0.1: timeout", 6, 1.23456).to_json() == {
        "attempt": 1, "stage": "tftp", "reason": "x.cfg from 10.60.0.1: timeout", "exit_code": 6, "backoff": 1.235}


# -- REQUESTING gives up (sans-I/O client, fake clock) -------------------------------------------------------


def offer(client: DhcpClient, mtype: int = OFFER) -> DhcpPacket:
    options = {opt.MESSAGE_TYPE: bytes((mtype,)), opt.SERVER_ID: SERVER.packed,
               opt.LEASE_TIME: (3600).to_bytes(4, "big"), opt.SUBNET_MASK: IPv4Address("255.255.248.0").packed}
    return DhcpPacket(op=BOOTREPLY, xid=client.xid or 0, chaddr=client.chaddr, yiaddr=ADDR, options=options)


def drain(client: DhcpClient) -> list[object]:
    out: list[object] = []
    while (ev := client.next_event()) is not None:
        out.append(ev)
    return out


def test_request_timeout_falls_back_to_discover_with_an_event() -> None:
    clock = FakeClock()
    client = DhcpClient(ClientConfig(mac=MAC, request_timeout=10.0), random.Random(3))
    client.start(clock.now)
    client.receive(offer(client), clock.now)
    assert [tx.packet.message_type for tx in client.datagrams_to_send()] == [DISCOVER, REQUEST]
    assert isinstance(drain(client)[0], Offered)
    requests = 1
    while client.state is ClientState.REQUESTING:
        timer = client.get_timer()
        assert timer is not None and timer <= 1_000.0 + 10.0  # never a retransmission past the limit
        client.handle_timer(clock.advance(timer - clock.now))
        requests += sum(tx.packet.message_type == REQUEST for tx in client.datagrams_to_send())
    assert clock.now == 1_010.0
    assert client.state is ClientState.SELECTING
    timed_out = [ev for ev in drain(client) if isinstance(ev, RequestTimedOut)]
    assert timed_out == [RequestTimedOut(SERVER, ADDR, requests, 10.0)]
    assert requests == 2  # 4 s (+-1) then the limit: RFC 2131's 4/8/16 s backoff would wait 124 s


def test_without_request_timeout_requesting_waits_out_its_retransmissions() -> None:
    clock = FakeClock()
    client = DhcpClient(ClientConfig(mac=MAC), random.Random(3))
    client.start(clock.now)
    client.receive(offer(client), clock.now)
    drain(client)
    while client.state is ClientState.REQUESTING:
        timer = client.get_timer()
        assert timer is not None
        client.handle_timer(clock.advance(timer - clock.now))
    assert clock.now - 1_000.0 > 100  # 4 + 8 + 16 + 32 + 64 s, jittered
    (ev,) = [ev for ev in drain(client) if isinstance(ev, RequestTimedOut)]
    assert ev.requests == 5 and ev.address == ADDR


# -- the device flow over fakes -----------------------------------------------------------------------------


class FakeRoute:
    """Netlink that says yes to everything and records what it was asked."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.seq = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def request(self, seq: int, message: bytes) -> netlink.NetlinkAck:
        self.sent.append(message)
        return netlink.NetlinkAck(seq, 0)

    def close(self) -> None:
        pass


class FakeLink:
    """The shared packet link with a DHCP server behind it: `answer(request)` gives the reply (or None)."""

    def __init__(self, answer: Callable[[DhcpPacket], DhcpPacket | None]) -> None:
        self.mac = bytes.fromhex("020000000099")
        self.answer = answer
        self.sinks: dict[bytes, Callable[[rawsock.UdpFrame], None]] = {}
        self.requests: list[DhcpPacket] = []

    def register_dhcp(self, mac: bytes, sink: Callable[[rawsock.UdpFrame], None]) -> None:
        self.sinks[mac] = sink

    def unregister_dhcp(self, mac: bytes) -> None:
        self.sinks.pop(mac, None)

    def watch_arp(self, ip: IPv4Address, sink: Any) -> Callable[[], None]:
        return lambda: None

    def send(self, frame: bytes) -> bool:
        if frame[12:14] != b"\x08\x00":
            return True  # ARP announcements
        udp = 14 + (frame[14] & 0x0F) * 4
        pkt = parse(frame[udp + 8:])
        self.requests.append(pkt)
        reply = self.answer(pkt)
        if reply is not None:
            sink = self.sinks[frame[6:12]]
            out = rawsock.UdpFrame(bytes.fromhex("02000000aa01"), frame[6:12], SERVER, IPv4Address("255.255.255.255"),
                                   67, 68, build(reply))
            asyncio.get_running_loop().call_soon(sink, out)
        return True


def server(*, drop_first_requests: int = 0) -> Callable[[DhcpPacket], DhcpPacket | None]:
    """A DHCP server handing out ADDR with a boot file; it ignores the first `drop_first_requests` REQUESTs."""
    dropped = 0

    def answer(pkt: DhcpPacket) -> DhcpPacket | None:
        nonlocal dropped
        mtype = pkt.message_type
        if mtype == REQUEST and dropped < drop_first_requests:
            dropped += 1
            return None
        if mtype not in (DISCOVER, REQUEST):
            return None
        options = {opt.MESSAGE_TYPE: bytes((OFFER if mtype == DISCOVER else ACK,)), opt.SERVER_ID: SERVER.packed,
                   opt.LEASE_TIME: (3600).to_bytes(4, "big"), opt.SUBNET_MASK: IPv4Address("255.255.248.0").packed,
                   opt.TFTP_SERVER_NAME: str(SERVER).encode(), opt.BOOTFILE_NAME: b"leaf07.cfg"}
        return DhcpPacket(op=BOOTREPLY, xid=pkt.xid, chaddr=pkt.chaddr, yiaddr=ADDR, options=options)

    return answer


class FlakyBoot(Device):
    """A device whose boot-file fetch fails `fails` times (as a TFTP timeout from a dead appliance would)."""

    fails = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.booted: list[IPv4Address] = []

    async def _boot(self, lease: Lease, deadline: float) -> None:
        self.booted.append(lease.address)
        if len(self.booted) <= self.fails:
            raise DeviceFailure("tftp", f"leaf07.cfg from {SERVER}: timeout after 5 retransmissions", EXIT_TFTP)
        self.result.boot_file, self.result.bytes = "leaf07.cfg", 42


def run_device(link: FakeLink, rtnl: FakeRoute, fails: int = 1, **opts: Any) -> tuple[FlakyBoot, dict[str, Any]]:
    options = AgentOptions(interface="eth0", timeout=10.0, arp_probes=0, boot_backoff=0.01, boot_backoff_max=0.02,
                           **opts)
    host = InterfaceConfigurator("eth0", rtnl=rtnl, ifindex=3)
    device = FlakyBoot(DeviceSpec(mac=MAC), link, host, options, random.Random(4))
    device.fails = fails
    res = asyncio.run(device.run())
    return device, res.to_json()


def addresses(rtnl: FakeRoute) -> list[str]:
    """'+A' / '-A' for every address added or removed, in order."""
    out = []
    for msg in rtnl.sent:
        kind = int.from_bytes(msg[4:6], "little")
        if kind in (netlink.RTM_NEWADDR, netlink.RTM_DELADDR):
            out.append(("+" if kind == netlink.RTM_NEWADDR else "-") + str(IPv4Address(msg[-4:])))
    return out


def test_a_failed_fetch_forgets_the_address_and_boots_again_from_discover() -> None:
    link, rtnl = FakeLink(server()), FakeRoute()
    device, out = run_device(link, rtnl)
    assert out["status"] == "provisioned" and out["exit_code"] == 0
    assert out["attempts"] == 2 and device.booted == [ADDR, ADDR]
    (failure,) = out["attempt_failures"]
    assert failure["attempt"] == 1 and failure["stage"] == "tftp" and failure["exit_code"] == EXIT_TFTP
    assert "timeout after 5 retransmissions" in failure["reason"] and 0.005 <= failure["backoff"] <= 0.01
    # The address left the interface before the second attempt's DISCOVER, and came back with its lease.
    assert addresses(rtnl) == [f"+{ADDR}", f"-{ADDR}", f"+{ADDR}"]
    assert [p.message_type for p in link.requests] == [DISCOVER, REQUEST, DISCOVER, REQUEST]
    assert link.requests[0].xid != link.requests[2].xid  # a new exchange, not a retransmission
    # Existing keys are unchanged: totals count both attempts.
    assert (out["discovers"], out["requests"], out["offers"], out["ip"]) == (2, 2, 2, str(ADDR))


def test_one_boot_attempt_fails_as_before() -> None:
    link, rtnl = FakeLink(server()), FakeRoute()
    device, out = run_device(link, rtnl, boot_attempts=1)
    assert (out["status"], out["stage"], out["exit_code"]) == ("failed", "tftp", EXIT_TFTP)
    assert out["attempts"] == 1 and out["attempt_failures"] == []
    assert addresses(rtnl) == [f"+{ADDR}"]  # as today: the address stays configured
    assert [p.message_type for p in link.requests] == [DISCOVER, REQUEST]


def test_every_attempt_failing_reports_the_last_and_each_earlier_reason() -> None:
    link, rtnl = FakeLink(server()), FakeRoute()
    device, out = run_device(link, rtnl, fails=5, boot_attempts=3)
    assert (out["status"], out["stage"], out["exit_code"], out["attempts"]) == ("failed", "tftp", EXIT_TFTP, 3)
    assert [f["attempt"] for f in out["attempt_failures"]] == [1, 2]
    assert len(device.booted) == 3


def test_an_offer_never_acked_ends_the_attempt_and_the_next_one_provisions() -> None:
    link, rtnl = FakeLink(server(drop_first_requests=1)), FakeRoute()
    device, out = run_device(link, rtnl, fails=0, request_timeout=0.05)
    assert out["status"] == "provisioned" and out["attempts"] == 2
    (failure,) = out["attempt_failures"]
    assert failure["stage"] == "request" and failure["exit_code"] == EXIT_NO_ACK
    assert f"offered {ADDR} by {SERVER} but no ACK" in failure["reason"]
    assert device.booted == [ADDR] and addresses(rtnl) == [f"+{ADDR}"]  # no address for an unACKed offer
    assert [p.message_type for p in link.requests] == [DISCOVER, REQUEST, DISCOVER, REQUEST]


def test_one_boot_attempt_keeps_requesting_as_rfc_2131_says() -> None:
    client = FlakyBoot(DeviceSpec(mac=MAC), FakeLink(server()), InterfaceConfigurator("eth0", enabled=False),
                       AgentOptions(interface="eth0", boot_attempts=1)).client
    assert client.config.request_timeout is None


# -- the interface: removing a fleet's first address -------------------------------------------------------

IP_ROUTE_REPLACE_PREFIX = bytes.fromhex(
    # `strace ip route replace 10.60.0.0/21 dev v0 proto kernel scope link` (iproute2 6.1), seq 3, ifindex 3
    "2c000000" "1800" "0505" "03000000" "00000000"
    "02" "15" "00" "00" "fe" "02" "fd" "01" "00000000"  # AF_INET /21, main, kernel, link, unicast
    "0800" "0100" "0a3c0000"                        # RTA_DST 10.60.0.0
    "0800" "0400" "03000000"                        # RTA_OIF 3
)


def test_prefix_route_is_what_iproute2_sends() -> None:
    assert netlink.build_prefix_route(3, 3, IPv4Network("10.60.0.0/21")) == IP_ROUTE_REPLACE_PREFIX


def test_removing_a_fleets_primary_promotes_a_secondary_and_restores_the_on_link_route(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rtnl = FakeRoute()
    host = InterfaceConfigurator("eth0", rtnl=rtnl, ifindex=3)
    promoted: list[str] = []
    monkeypatch.setattr(host, "_promote_secondaries", lambda: promoted.append(host.ifname))

    def lease(address: IPv4Address) -> Lease:
        ack = DhcpPacket(op=BOOTREPLY, xid=1, chaddr=bytes(16), yiaddr=address,
                         options={opt.SUBNET_MASK: IPv4Address("255.255.248.0").packed})
        return Lease(address, SERVER, 3600, 1800, 3150, 0.0, ack)

    async def go() -> None:
        await host.add(lease(ADDR))
        await host.add(lease(OTHER))
        await host.remove(lease(ADDR))  # the primary, with a secondary still in use
        await host.add(lease(ADDR))  # back, now a secondary itself

    asyncio.run(go())
    assert promoted == ["eth0"]
    assert rtnl.sent == [netlink.build_address(1, 3, ADDR, 21),
                         netlink.build_address(2, 3, OTHER, 21, noprefixroute=True),
                         netlink.build_address(3, 3, ADDR, 21, add=False),
                         netlink.build_prefix_route(4, 3, IPv4Network("10.60.0.0/21")),
                         netlink.build_address(5, 3, ADDR, 21, noprefixroute=True)]
    # A secondary's removal, or the last address's, needs neither.
    asyncio.run(host.remove(lease(ADDR)))
    asyncio.run(host.remove(lease(OTHER)))
    assert promoted == ["eth0"] and len(rtnl.sent) == 7
