"""The timeline recorder's shell logic without sockets: hooks queue, drains classify, store, replay, reload."""

from __future__ import annotations

import asyncio
import dataclasses
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from ztp.config import TimelineSettings, load_config
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Ingress, Proposal
from ztp.leases.ledger import EventKind, LeaseEvent
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.tftp.server import TransferNote
from ztp.timeline.machine import DeviceTimeline, Event, Stage
from ztp.timeline.recorder import Recorder
from ztp.timeline.store import SqliteTimelineStore

REPO = Path(__file__).resolve().parents[2]
CONFIG = load_config(REPO / "ztp.yaml")
MAC = "02:00:00:00:00:01"
INGRESS = Ingress(2, "s1", IPv4Address("10.60.0.1"), broadcast=True)


def boot(recorder: Recorder, clock: FakeClock) -> None:
    discover = p.DhcpPacket(op=p.BOOTREQUEST, xid=1, chaddr=p.mac_to_chaddr(MAC), options={53: bytes((p.DISCOVER,))})
    offer = p.DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=p.mac_to_chaddr(MAC), yiaddr=IPv4Address("10.60.0.11"),
                         options={53: bytes((p.OFFER,))})
    recorder.dhcp(discover, INGRESS, Proposal(offer), clock.now)
    lease = Lease(IPv4Address("10.60.0.11"), MAC, MAC, LeaseState.BOUND, clock.now + 3600, clock.now, "leaf01")
    recorder.lease(LeaseEvent(EventKind.BOUND, lease))
    recorder.transfer(TransferNote("started", "10.60.0.11", "leaf01.cfg", size=417,
                                   options=(("blksize", "1468"),)))


def test_hooks_queue_until_the_drain(tmp_path: Path, fake_clock: FakeClock) -> None:
    store = SqliteTimelineStore(tmp_path / "leases.sqlite3")
    recorder = Recorder.for_config(CONFIG, LeaseTable(), store, clock=fake_clock)
    heard: list[list[Event]] = []
    recorder.listeners.append(heard.append)
    boot(recorder, fake_clock)
    assert recorder.machine.devices == {}  # nothing classified on the packet paths
    out = recorder.drain()
    assert [e.kind.value for e in out] == ["offer", "bound", "transfer-started"]
    assert heard == [out]
    status = recorder.machine.status("leaf01")
    assert status is not None and status.state == Stage.FETCHING and status.ip == "10.60.0.11"
    assert recorder.dhcp_messages[("discover", "offer")] == 1
    recorder.transfer(TransferNote("failed", "10.60.0.11", "leaf01.cfg", size=417, bytes_sent=296, seconds=6.0,
                                   reason="timeout waiting for ACK of block 37 after 5 retransmission(s)"))
    recorder.transfer(TransferNote("finished", "10.60.0.9", "images/eos.swi", size=10))  # not a device config
    recorder.drain()
    assert recorder.machine.status("leaf01").reason.startswith("TFTP leaf01.cfg timed out at block 37")  # type: ignore[union-attr]
    asyncio.run(_close(recorder))
    again = SqliteTimelineStore(tmp_path / "leases.sqlite3", read_only=True)
    assert [e.kind.value for e in again.device_events("leaf01")] == ["offer", "bound", "transfer-started",
                                                                     "transfer-failed"]


async def _close(recorder: Recorder) -> None:
    await recorder.close()


def test_start_replays_and_fires_missed_deadlines(tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "leases.sqlite3"
    first = Recorder.for_config(CONFIG, LeaseTable(), SqliteTimelineStore(path), clock=fake_clock)
    discover = p.DhcpPacket(op=p.BOOTREQUEST, xid=1, chaddr=p.mac_to_chaddr(MAC), options={53: bytes((p.DISCOVER,))})
    offer = p.DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=b"", yiaddr=IPv4Address("10.60.0.11"),
                         options={53: bytes((p.OFFER,))})
    first.dhcp(discover, INGRESS, Proposal(offer), fake_clock.now)
    asyncio.run(_close(first))
    fake_clock.advance(3600)  # the appliance was down past the offer's deadline

    async def restart() -> Recorder:
        second = Recorder.for_config(CONFIG, LeaseTable(), SqliteTimelineStore(path), clock=fake_clock)
        await second.start()
        second.drain()
        await second.close()
        return second

    second = asyncio.run(restart())
    status = second.machine.status("leaf01")
    assert status is not None and status.state == Stage.FAILED and status.failed_stage == Stage.OFFERED


def test_reload_takes_the_new_timeouts_and_unknown_devices_are_capped(tmp_path: Path,
                                                                       fake_clock: FakeClock) -> None:
    recorder = Recorder.for_config(CONFIG, LeaseTable(), SqliteTimelineStore(tmp_path / "t.sqlite3"),
                                   clock=fake_clock)
    assert recorder.machine.timeouts.offered == 60
    recorder.reconfigure(dataclasses.replace(CONFIG, timeline=TimelineSettings(offer_timeout=5, max_devices=2)))
    assert recorder.machine.timeouts.offered == 5 and recorder.retention.max_devices == 2
    for i in range(4):
        mac = f"02:00:00:00:01:0{i}"
        pkt = p.DhcpPacket(op=p.BOOTREQUEST, xid=1, chaddr=p.mac_to_chaddr(mac), options={53: bytes((p.DISCOVER,))})
        recorder.dhcp(pkt, INGRESS, Proposal(p.DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=b"",
                                                          yiaddr=IPv4Address(f"10.60.0.{100 + i}"),
                                                          options={53: bytes((p.OFFER,))})), fake_clock.now)
    recorder.drain()
    assert len(recorder.machine.devices) == 2 and recorder.counters["devices_dropped"] == 2
    fake_clock.advance(5)
    failed = recorder.drain()
    assert [e.kind.value for e in failed] == ["failed", "failed"]
    asyncio.run(_close(recorder))


def test_drain_in_slices_keeps_order(tmp_path: Path, fake_clock: FakeClock) -> None:
    # The recorder's task drains a storm's observations a slice per loop turn: each slice takes at most
    # `limit`, and the slices together give what one drain would.
    store = SqliteTimelineStore(tmp_path / "timeline.sqlite3")
    recorder = Recorder.for_config(CONFIG, LeaseTable(), store, clock=fake_clock)
    boot(recorder, fake_clock)
    first = recorder.drain(limit=2)
    assert [e.kind.value for e in first] == ["offer", "bound"] and len(recorder._raw) == 1
    rest = recorder.drain(limit=2)
    assert [e.kind.value for e in rest] == ["transfer-started"] and not recorder._raw
    asyncio.run(_close(recorder))


def test_history_is_kept_apart_from_the_lease_database(tmp_path: Path) -> None:
    from ztp.leases.store import database_path
    from ztp.timeline.store import timeline_path
    assert timeline_path(tmp_path) != database_path(tmp_path)  # its write lock never stalls a lease commit
    assert SqliteTimelineStore.in_state_dir(tmp_path).path == timeline_path(tmp_path)


def test_request_ack_is_counted_not_queued(tmp_path: Path, fake_clock: FakeClock) -> None:
    # An ACK is the ledger's bound/renewed event once committed: the hook only counts it (issue 14).
    recorder = Recorder.for_config(CONFIG, LeaseTable(), SqliteTimelineStore(tmp_path / "t.sqlite3"),
                                   clock=fake_clock)
    request = p.DhcpPacket(op=p.BOOTREQUEST, xid=2, chaddr=p.mac_to_chaddr(MAC), options={53: bytes((p.REQUEST,))})
    ack = p.DhcpPacket(op=p.BOOTREPLY, xid=2, chaddr=p.mac_to_chaddr(MAC), yiaddr=IPv4Address("10.60.0.11"),
                       options={53: bytes((p.ACK,))})
    nak = dataclasses.replace(ack, yiaddr=p.ZERO_IP, options={53: bytes((p.NAK,))})
    recorder.dhcp(request, INGRESS, Proposal(ack), fake_clock.now)
    assert not recorder._raw and recorder.dhcp_messages[("request", "ack")] == 1
    recorder.dhcp(request, INGRESS, Proposal(nak, log_format="wrong subnet -> NAK"), fake_clock.now)
    assert [e.kind.value for e in recorder.drain()] == ["nak"]
    assert recorder.dhcp_messages[("request", "nak")] == 1
    asyncio.run(_close(recorder))


def test_a_tick_is_stored_and_published_as_one_batch(tmp_path: Path, fake_clock: FakeClock) -> None:
    # Classified in slices, but one store transaction and one listener call per tick (issue 14: every
    # batch woke the store's thread, and its GIL hand-overs delayed the lease writer's ACKs).
    store = SqliteTimelineStore(tmp_path / "t.sqlite3")
    recorder = Recorder.for_config(CONFIG, LeaseTable(), store, clock=fake_clock, tick=0.01)
    appended: list[int] = []
    real_append = store.append

    def append(events: list[Event]) -> None:
        appended.append(len(events))
        real_append(events)

    store.append = append  # type: ignore[method-assign]
    heard: list[list[Event]] = []
    recorder.listeners.append(heard.append)
    for _ in range(30):  # 90 observations: three slices and more
        boot(recorder, fake_clock)

    async def run() -> None:
        await recorder.start()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not recorder._raw and appended:
                break
        await recorder.close()

    asyncio.run(run())
    assert len(heard) == 1 and appended == [len(heard[0])] and len(heard[0]) >= 3


def test_in_a_storm_the_history_waits_and_catches_up_after(tmp_path: Path, fake_clock: FakeClock,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # DHCP requests faster than STORM_RATE: each tick records only STORM_SHARE of its time's worth (here none
    # beyond the first slice) and arms no deadlines while a backlog waits; once the rate drops, all of it.
    from ztp.timeline import recorder as rec
    monkeypatch.setattr(rec, "STORM_SHARE", 0.0)
    received = [0]
    store = SqliteTimelineStore(tmp_path / "t.sqlite3")
    recorder = Recorder.for_config(CONFIG, LeaseTable(), store, clock=fake_clock, tick=0.02,
                                   activity=lambda: received[0])
    fired: list[float] = []

    class CountingTimeline(DeviceTimeline):
        def handle_timer(self, now: float) -> list[Event]:
            fired.append(now)
            return super().handle_timer(now)

    recorder.machine = CountingTimeline(recorder.machine.timeouts)
    for _ in range(100):  # 300 observations: ten slices of 32
        boot(recorder, fake_clock)

    async def run() -> tuple[int, int, bool]:
        await recorder.start()
        for _ in range(5):  # a storm: a thousand requests per tick
            received[0] += 1000
            await asyncio.sleep(0.02)
        during, timers_during, storming = len(recorder._raw), len(fired), recorder.storming
        for _ in range(200):  # quiet again
            await asyncio.sleep(0.02)
            if not recorder._raw:
                break
        await asyncio.sleep(0.05)
        return during, timers_during, storming

    during, timers_during, storming = asyncio.run(run())
    assert storming and 0 < during < 300  # a slice per tick went through, the rest waited
    assert timers_during == 0  # no deadline is judged while events that may meet it wait
    assert not recorder._raw and fired  # caught up, deadlines back
    asyncio.run(_close(recorder))
    assert len(SqliteTimelineStore(tmp_path / "t.sqlite3", read_only=True).load(0)) == 300
