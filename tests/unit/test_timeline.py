"""The device state machine (ztp.timeline.machine): every path and failure reason, on a fake clock."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FakeClock
from ztp.timeline.machine import DeviceTimeline, Event, Kind, Stage, Timeouts
from ztp.timeline.store import SqliteTimelineStore

MAC = "02:00:00:00:00:01"


def ev(clock: FakeClock, kind: Kind, key: str = "leaf01", **detail: object) -> Event:
    return Event(key, clock.now, kind, kind.value, MAC, "10.60.0.11", detail)


def boot_to(machine: DeviceTimeline, clock: FakeClock, *kinds: Kind) -> None:
    for kind in kinds:
        machine.feed(ev(clock, kind))
        clock.advance(1)


def test_happy_path_to_confirmed_by_syslog(fake_clock: FakeClock) -> None:
    machine = DeviceTimeline()
    boot_to(machine, fake_clock, Kind.OFFER)
    assert machine.status("leaf01").state == Stage.OFFERED  # type: ignore[union-attr]
    boot_to(machine, fake_clock, Kind.REQUEST, Kind.BOUND, Kind.RENDERED, Kind.TRANSFER_STARTED)
    assert machine.status("leaf01").state == Stage.FETCHING  # type: ignore[union-attr]
    boot_to(machine, fake_clock, Kind.TRANSFER_FINISHED)
    assert machine.status("leaf01").state == Stage.DELIVERED  # type: ignore[union-attr]
    out = machine.feed(ev(fake_clock, Kind.SYSLOG))
    assert [e.kind for e in out] == [Kind.SYSLOG, Kind.CONFIRMED]
    status = machine.status("leaf01")
    assert status is not None and status.state == Stage.CONFIRMED and status.reason == ""
    assert machine.feed(ev(fake_clock, Kind.SYSLOG)) == []  # later chatter is not a timeline event
    fake_clock.advance(10_000)
    assert machine.handle_timer(fake_clock.now) == []  # confirmed devices have no deadline


def test_syslog_before_delivery_confirms_nothing(fake_clock: FakeClock) -> None:
    machine = DeviceTimeline()
    boot_to(machine, fake_clock, Kind.OFFER, Kind.BOUND)
    assert machine.feed(ev(fake_clock, Kind.SYSLOG)) == []
    assert machine.status("leaf01").state == Stage.BOUND  # type: ignore[union-attr]


def test_offered_never_requested(fake_clock: FakeClock) -> None:
    machine = DeviceTimeline(Timeouts(offered=60))
    boot_to(machine, fake_clock, Kind.OFFER)
    assert machine.handle_timer(fake_clock.advance(30)) == []
    machine.feed(ev(fake_clock, Kind.OFFER))  # a retransmitted DISCOVER: the clock restarts
    assert machine.handle_timer(fake_clock.advance(59)) == []
    out = machine.handle_timer(fake_clock.advance(1))
    assert [e.kind for e in out] == [Kind.FAILED]
    status = machine.status("leaf01")
    assert status is not None and status.state == Stage.FAILED and status.failed_stage == Stage.OFFERED
    assert "never requested: another DHCP server on the segment" in status.reason
    assert machine.next_deadline() is None


def test_bound_never_fetched(fake_clock: FakeClock) -> None:
    machine = DeviceTimeline(Timeouts(bound=300))
    boot_to(machine, fake_clock, Kind.OFFER, Kind.BOUND)
    assert machine.next_deadline() == fake_clock.now - 1 + 300
    out = machine.handle_timer(fake_clock.advance(300))
    status = machine.status("leaf01")
    assert out and status is not None and status.failed_stage == Stage.BOUND
    assert "never fetched the config within 300 s: check option 66/67" in status.reason


def test_tftp_timeout_names_the_block(fake_clock: FakeClock) -> None:
    machine = DeviceTimeline()
    boot_to(machine, fake_clock, Kind.OFFER, Kind.BOUND, Kind.TRANSFER_STARTED)
    machine.feed(Event("leaf01", fake_clock.now, Kind.TRANSFER_FAILED, "TFTP leaf01.cfg timed out at block 37"))
    status = machine.status("leaf01")
    assert status is not None and status.state == Stage.FAILED and status.failed_stage == Stage.FETCHING
    assert status.reason == "TFTP leaf01.cfg timed out at block 37"


def test_fetching_safety_net(fake_clock: FakeClock) -> None:
    machine = DeviceTimeline(Timeouts(fetching=600))
    boot_to(machine, fake_clock, Kind.BOUND, Kind.TRANSFER_STARTED)
    machine.handle_timer(fake_clock.advance(600))
    status = machine.status("leaf01")
    assert status is not None and status.failed_stage == Stage.FETCHING and "never finished" in status.reason


def test_unanswered_discover_and_declined_and_fatal_refusal(fake_clock: FakeClock) -> None:
    machine = DeviceTimeline()
    machine.feed(Event("a", fake_clock.now, Kind.DISCOVER, "DISCOVER not answered: no free address",
                       detail={"reason": "no free address in 10.60.0.0/24"}))
    a = machine.status("a")
    assert a is not None and a.state == Stage.FAILED and a.failed_stage == Stage.SEEN
    boot_to(machine, fake_clock, Kind.OFFER)  # the pool got an address: it moves on
    assert machine.status("leaf01").state == Stage.OFFERED  # type: ignore[union-attr]
    machine.feed(ev(fake_clock, Kind.DECLINED, "b"))
    assert machine.status("b").state == Stage.FAILED  # type: ignore[union-attr]
    boot_to(machine, fake_clock, Kind.BOUND)
    machine.feed(Event("leaf01", fake_clock.now, Kind.REFUSED, "refused to 10.9.9.9", detail={"fatal": False}))
    assert machine.status("leaf01").state == Stage.BOUND  # type: ignore[union-attr]  # someone else asked
    machine.feed(Event("leaf01", fake_clock.now, Kind.REFUSED, "cannot be rendered", detail={"fatal": True}))
    status = machine.status("leaf01")
    assert status is not None and status.state == Stage.FAILED and status.reason == "cannot be rendered"


def test_miscabled_is_flagged_and_kept(fake_clock: FakeClock) -> None:
    machine = DeviceTimeline()
    machine.feed(Event("leaf01", fake_clock.now, Kind.MISCABLED, "miscabled: expected A, on B",
                       detail={"expected": "A", "actual": "B"}))
    boot_to(machine, fake_clock, Kind.OFFER, Kind.BOUND)
    status = machine.status("leaf01")
    assert status is not None and status.miscabled == {"expected": "A", "actual": "B"}
    assert status.reason == "miscabled: expected A, on B" and status.state == Stage.BOUND


def test_api_confirmation_from_any_state(fake_clock: FakeClock) -> None:
    machine = DeviceTimeline()
    boot_to(machine, fake_clock, Kind.BOUND)
    machine.feed(ev(fake_clock, Kind.CONFIRMED, source="api"))
    assert machine.status("leaf01").state == Stage.CONFIRMED  # type: ignore[union-attr]
    assert machine.counts()["confirmed"] == 1 and machine.counts()["failed"] == 0


def test_replay_from_the_store_survives_a_restart(fake_clock: FakeClock, tmp_path: Path) -> None:
    store = SqliteTimelineStore(tmp_path / "leases.sqlite3")
    machine = DeviceTimeline(Timeouts(offered=60))
    events: list[Event] = []
    for kind in (Kind.OFFER, Kind.BOUND, Kind.TRANSFER_STARTED, Kind.TRANSFER_FINISHED):
        events += machine.feed(ev(fake_clock, kind))
        fake_clock.advance(1)
    events += machine.feed(ev(fake_clock, Kind.OFFER, "spine01"))
    fake_clock.advance(61)
    events += machine.handle_timer(fake_clock.now)
    store.append(events)
    store.close()

    again = DeviceTimeline(Timeouts(offered=60))
    reopened = SqliteTimelineStore(tmp_path / "leases.sqlite3", read_only=True)
    again.replay(reopened.load(0))
    assert again.status("leaf01").state == Stage.DELIVERED  # type: ignore[union-attr]
    spine = again.status("spine01")
    assert spine is not None and spine.state == Stage.FAILED and spine.failed_stage == Stage.OFFERED
    assert again.handle_timer(fake_clock.advance(1000)) == []  # nothing fires twice
    assert [e.kind for e in reopened.device_events("leaf01")][-1] == Kind.TRANSFER_FINISHED


def test_retention_prunes_by_age_and_per_device(tmp_path: Path) -> None:
    store = SqliteTimelineStore(tmp_path / "t.sqlite3")
    store.append([Event("a", float(t), Kind.RENEWED) for t in range(10)] + [Event("b", 5.0, Kind.RENEWED)])
    assert store.prune(before=3.0, per_device=4) == 3 + 3
    assert [e.at for e in store.load(0)] == [6.0, 7.0, 8.0, 9.0, 5.0]
