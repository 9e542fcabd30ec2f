"""Issue 11: a delivered config that is never confirmed fails after `timeline.confirm_timeout` (0: off), on a
fake clock; the dashboard's pool use is recounted for the event stream only after lease events, at most
once per POOLS_INTERVAL."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from ztp.api.metrics import ApplianceCollector, Metrics
from ztp.api.routes import _SSE_KEEPALIVE, POOLS_INTERVAL, OperatorApi
from ztp.config import load_config
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.timeline.machine import DeviceTimeline, Event, Kind, Stage, Timeouts
from ztp.timeline.recorder import Recorder

MAC = "02:00:00:00:00:01"
REPO = Path(__file__).resolve().parents[2]


def ev(clock: FakeClock, kind: Kind) -> Event:
    return Event("leaf01", clock.now, kind, kind.value, MAC, "10.60.0.11")


def deliver(machine: DeviceTimeline, clock: FakeClock) -> None:
    for kind in (Kind.OFFER, Kind.BOUND, Kind.TRANSFER_STARTED, Kind.TRANSFER_FINISHED):
        machine.feed(ev(clock, kind))
        clock.advance(1)


def test_delivered_never_confirmed_fails_with_a_reason_a_person_understands(fake_clock: FakeClock) -> None:
    machine = DeviceTimeline(Timeouts(delivered=600))
    deliver(machine, fake_clock)
    assert machine.status("leaf01").state == Stage.DELIVERED  # type: ignore[union-attr]
    assert machine.next_deadline() == fake_clock.now - 1 + 600
    assert machine.handle_timer(fake_clock.advance(598)) == []
    out = machine.handle_timer(fake_clock.advance(1))
    assert [e.kind for e in out] == [Kind.FAILED] and out[0].detail == {"stage": "delivered"}
    status = machine.status("leaf01")
    assert status is not None and status.state == Stage.FAILED and status.failed_stage == Stage.DELIVERED
    assert status.reason == ("delivered, never confirmed within 600 s: is `logging host` in its config and "
                             "udp/514 open?")
    assert status.awaits_confirmation
    # A late first syslog line (udp/514 opened afterwards) still confirms it.
    late = machine.feed(ev(fake_clock, Kind.SYSLOG))
    assert [e.kind for e in late] == [Kind.SYSLOG, Kind.CONFIRMED]
    status = machine.status("leaf01")
    assert status is not None and status.state == Stage.CONFIRMED and status.reason == ""
    assert not status.awaits_confirmation


def test_confirmed_in_time_and_zero_is_off(fake_clock: FakeClock) -> None:
    machine = DeviceTimeline(Timeouts(delivered=600))
    deliver(machine, fake_clock)
    machine.feed(ev(fake_clock, Kind.CONFIRMED))  # POST /api/devices/leaf01/confirm
    assert machine.handle_timer(fake_clock.advance(10_000)) == []
    off = DeviceTimeline(Timeouts(delivered=0))
    deliver(off, fake_clock)
    assert off.next_deadline() is None
    assert off.handle_timer(fake_clock.advance(86_400)) == []
    assert off.status("leaf01").state == Stage.DELIVERED  # type: ignore[union-attr]


def test_a_new_delivery_restarts_the_wait(fake_clock: FakeClock) -> None:
    machine = DeviceTimeline(Timeouts(delivered=600))
    deliver(machine, fake_clock)
    fake_clock.advance(500)
    deliver(machine, fake_clock)  # rebooted and fetched again
    assert machine.handle_timer(fake_clock.advance(500)) == []
    assert machine.handle_timer(fake_clock.advance(100))[0].kind == Kind.FAILED


def test_config_key_default_and_reload(tmp_path: Path) -> None:
    config = load_config(REPO / "ztp.yaml")
    assert config.timeline.confirm_timeout == 600
    assert _recorder(config, LeaseTable()).machine.timeouts.delivered == 600
    text = (REPO / "ztp.yaml").read_text() + "timeline:\n  confirm_timeout: 0\n"
    (tmp_path / "ztp.yaml").write_text(text.replace("./", f"{REPO}/"))
    off = load_config(tmp_path / "ztp.yaml")
    assert off.timeline.confirm_timeout == 0
    assert _recorder(off, LeaseTable()).machine.timeouts.delivered == 0


class _NoStore:
    def append(self, events: object) -> None: ...
    def close(self) -> None: ...


def _recorder(config, table):  # type: ignore[no-untyped-def]
    recorder = Recorder(config, table, _NoStore())  # type: ignore[arg-type]
    recorder.reconfigure(config)
    return recorder


def test_pool_use_is_recounted_only_after_lease_events_and_at_most_once_a_second(fake_clock: FakeClock) -> None:
    config = load_config(REPO / "ztp.yaml")
    subnet = next(s for s in config.subnets if s.pool_start is not None)
    assert subnet.pool_start is not None
    table = LeaseTable()
    recorder = _recorder(config, table)
    metrics = Metrics(ApplianceCollector(recorder, lambda: config, table, dict, dict, fake_clock))
    api = OperatorApi(recorder, lambda: config, table, metrics, clock=fake_clock)

    def tell(*kinds: Kind) -> None:
        for listener in list(recorder.listeners):
            listener([Event("x", fake_clock.now, k) for k in kinds])

    first = api.pools(fake_clock.now)
    assert api.pool_counts == 1 and first[0]["used"] == 0
    ip = subnet.pool_start
    table.put(Lease(ip=ip, client="c1", mac="m1", state=LeaseState.BOUND, expires=fake_clock.now + 3600,
                    updated=fake_clock.now))
    assert api.pools(fake_clock.advance(2)) is first  # nothing said a lease changed: not recounted
    tell(Kind.RENDERED, Kind.TRANSFER_FINISHED)
    assert api.pools(fake_clock.advance(1)) is first and not api.pools_pending()
    for _ in range(100):  # a storm of bindings within one interval costs one count
        tell(Kind.BOUND)
        api.pools(fake_clock.now)
    second = api.pools(fake_clock.now)
    assert second is not first and second[0]["used"] == 1 and api.pool_counts == 2
    tell(Kind.BOUND)
    assert api.pools(fake_clock.advance(POOLS_INTERVAL / 2)) is second and api.pools_pending()
    assert api.pools(fake_clock.advance(POOLS_INTERVAL / 2)) is second  # counted again, unchanged: same list
    assert api.pool_counts == 3 and not api.pools_pending()
    # An offer that runs out says nothing: the keepalive period recounts.
    table.put(Lease(ip=IPv4Address(int(ip) + 1), client="c2", mac="m2", state=LeaseState.OFFERED,
                    expires=fake_clock.now + 5, updated=fake_clock.now))
    tell(Kind.OFFER)
    assert api.pools(fake_clock.advance(POOLS_INTERVAL))[0]["used"] == 2
    assert api.pools(fake_clock.advance(10))[0]["used"] == 2
    assert api.pools(fake_clock.advance(_SSE_KEEPALIVE))[0]["used"] == 1


def test_observations_beyond_the_queue_are_dropped_logged_once_and_counted(
        fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from ztp.timeline import recorder as rec
    monkeypatch.setattr(rec, "_MAX_QUEUE", 5)
    config = load_config(REPO / "ztp.yaml")
    table = LeaseTable()
    recorder = _recorder(config, table)
    metrics = Metrics(ApplianceCollector(recorder, lambda: config, table, dict, dict, fake_clock))
    with caplog.at_level(logging.WARNING, logger="ztp.timeline"):
        for n in range(8):
            recorder.post(Event(f"d{n}", fake_clock.now, Kind.CONFIRMED))
    assert len(recorder._raw) == 5 and recorder.counters["queue_dropped"] == 3
    assert [r.getMessage() for r in caplog.records].count(
        "timeline: 5 observations wait to be recorded; further ones are dropped until it catches up "
        "(metric ztp_timeline_dropped_total)") == 1
    assert "ztp_timeline_dropped_total 3.0" in metrics.exposition().decode()
