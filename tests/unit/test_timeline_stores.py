"""The timeline stores' shared semantics (SQLite and PostgreSQL, the same suite), and what only the shared
PostgreSQL store does: every appliance's events in one history, `remote()` for another appliance's events.
PostgreSQL is the session's throwaway cluster (tests/pgcluster.py), no mocks."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import FakeClock
from ztp.cli import main
from ztp.config import load_config
from ztp.leases.store import StoreError
from ztp.leases.store.postgres import upgrade
from ztp.timeline.machine import DeviceTimeline, Event, Kind, Stage, Timeouts
from ztp.timeline.postgres import PostgresTimelineStore
from ztp.timeline.status import load_timeline
from ztp.timeline.store import SqliteTimelineStore, TimelineStore

MAC = "02:00:00:00:00:01"
Opener = Callable[[str], TimelineStore]  # appliance id -> a store on the same history


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[TimelineStore] = []
    if request.param == "sqlite":
        def make(appliance: str) -> TimelineStore:
            opened.append(SqliteTimelineStore(tmp_path / "timeline.sqlite3"))
            return opened[-1]
    else:
        dsn: str = request.getfixturevalue("pg_dsn")
        upgrade(dsn)

        def make(appliance: str) -> TimelineStore:
            opened.append(PostgresTimelineStore(dsn, appliance=appliance))
            return opened[-1]
    yield make
    for store in opened:
        store.close()


def ev(at: float, kind: Kind, key: str = "leaf01", **detail: object) -> Event:
    return Event(key, at, kind, kind.value, MAC, "10.60.0.11", detail)


def test_replay_from_the_store_survives_a_restart(opener: Opener, fake_clock: FakeClock) -> None:
    store = opener("a")
    machine = DeviceTimeline(Timeouts(offered=60))
    events: list[Event] = []
    for kind in (Kind.OFFER, Kind.BOUND, Kind.TRANSFER_STARTED, Kind.TRANSFER_FINISHED):
        events += machine.feed(ev(fake_clock.now, kind, filename="leaf01.cfg", bytes=1234))
        fake_clock.advance(1)
    events += machine.feed(ev(fake_clock.now, Kind.OFFER, "spine01"))
    fake_clock.advance(61)
    events += machine.handle_timer(fake_clock.now)
    store.append(events)
    store.append([])  # nothing to write: no transaction, no error
    store.close()

    again = DeviceTimeline(Timeouts(offered=60))
    reopened = opener("a")
    loaded = reopened.load(0)
    assert loaded == events  # every field, detail included, in order
    again.replay(loaded)
    assert again.status("leaf01").state == Stage.DELIVERED  # type: ignore[union-attr]
    spine = again.status("spine01")
    assert spine is not None and spine.state == Stage.FAILED and spine.failed_stage == Stage.OFFERED
    assert again.handle_timer(fake_clock.advance(1000)) == []  # nothing fires twice
    assert [e.kind for e in reopened.device_events("leaf01")][-1] == Kind.TRANSFER_FINISHED
    assert [e.kind for e in reopened.device_events("leaf01", limit=2)] == [Kind.TRANSFER_STARTED,
                                                                          Kind.TRANSFER_FINISHED]
    assert reopened.device_events("nobody") == []
    assert [e.at for e in reopened.load(events[3].at)] == [e.at for e in events[3:]]


def test_retention_prunes_by_age_and_per_device(opener: Opener) -> None:
    store = opener("a")
    store.append([Event("a", float(t), Kind.RENEWED) for t in range(10)] + [Event("b", 5.0, Kind.RENEWED)])
    assert store.prune(before=3.0, per_device=4) == 3 + 3
    assert [e.at for e in store.load(0)] == [6.0, 7.0, 8.0, 9.0, 5.0]


def test_a_kind_from_a_newer_ztp_is_skipped(opener: Opener) -> None:
    store = opener("a")
    store.append([ev(1.0, Kind.OFFER), ev(2.0, Kind.BOUND)])
    if isinstance(store, SqliteTimelineStore):
        store._conn.execute("UPDATE timeline SET kind = 'teleported' WHERE at = 1.0")
    else:
        assert isinstance(store, PostgresTimelineStore)
        with psycopg.connect(store.dsn, autocommit=True) as conn:
            conn.execute("UPDATE timeline SET kind = 'teleported' WHERE at = 1.0")
    assert [e.kind for e in store.load(0)] == [Kind.BOUND]
    assert [e.kind for e in store.device_events("leaf01")] == [Kind.BOUND]


# --- the shared store only --------------------------------------------------------------------------------


@pytest.fixture
def shared(pg_dsn: str) -> Iterator[tuple[PostgresTimelineStore, PostgresTimelineStore]]:
    upgrade(pg_dsn)
    a, b = PostgresTimelineStore(pg_dsn, appliance="a"), PostgresTimelineStore(pg_dsn, appliance="b")
    yield a, b
    a.close()
    b.close()


def test_two_appliances_share_one_history_and_follow_each_other(
        shared: tuple[PostgresTimelineStore, PostgresTimelineStore]) -> None:
    a, b = shared
    a.append([ev(1.0, Kind.OFFER)])
    assert b.load(0) == [ev(1.0, Kind.OFFER)]  # b starts: a's history is its own
    assert b.remote() == []  # what load() returned is not returned again
    a.append([ev(2.0, Kind.BOUND), ev(3.0, Kind.TRANSFER_STARTED)])
    b.append([ev(2.5, Kind.OFFER, "spine01")])
    assert [e.kind for e in b.remote()] == [Kind.BOUND, Kind.TRANSFER_STARTED]  # a's only, in order
    assert b.remote() == []  # once
    assert [e.kind for e in a.remote()] == [Kind.OFFER]  # a never loaded: it reads b's from the start
    assert [e.at for e in a.device_events("leaf01")] == [1.0, 2.0, 3.0]
    assert [e.key for e in b.load(0)] == ["leaf01", "leaf01", "leaf01", "spine01"]


def test_remote_reads_in_bounded_batches(shared: tuple[PostgresTimelineStore, PostgresTimelineStore]) -> None:
    a, b = shared
    b.load(0)
    b.batch = 100
    a.append([ev(float(t), Kind.RENEWED, f"d{t}") for t in range(250)])
    got = [len(b.remote()) for _ in range(4)]
    assert got == [100, 100, 50, 0]


def test_a_row_that_commits_late_with_a_lower_id_is_not_lost(
        shared: tuple[PostgresTimelineStore, PostgresTimelineStore]) -> None:
    """Ids are taken before commit: a transaction holding a lower id that commits after a higher one was
    read must still reach the other appliance, once."""
    a, b = shared
    b.load(0)
    with psycopg.connect(a.dsn) as slow:
        slow.execute("INSERT INTO timeline (key, at, kind, text, detail, appliance) "
                     "VALUES ('late', 1, 'offer', 'offer', '{}', 'a')")  # takes its id now, commits later
        a.append([ev(2.0, Kind.OFFER, "early")])
        assert [e.key for e in b.remote()] == ["early"]
        slow.commit()
    assert [e.key for e in b.remote()] == ["late"]
    assert b.remote() == []


def test_an_old_schema_and_an_unreachable_database_are_clear_errors(pg_dsn: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"schema version 0, this ztp needs .*ztp db upgrade"):
        PostgresTimelineStore(pg_dsn)
    with pytest.raises(StoreError, match=r"cannot reach"):
        PostgresTimelineStore(f"postgresql:///nowhere?host={tmp_path}")


def test_ztp_status_reads_the_shared_timeline(pg_dsn: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    upgrade(pg_dsn)
    store = PostgresTimelineStore(pg_dsn, appliance="a")
    t0 = time.time() - 100  # within the retention `ztp status` reads
    store.append([ev(t0, Kind.OFFER), ev(t0 + 1, Kind.BOUND), ev(t0 + 2, Kind.OFFER, "spine01")])
    store.close()
    inv = tmp_path / "inventory.yaml"
    inv.write_text("devices: []\n")
    (tmp_path / "templates").mkdir()
    cfg = tmp_path / "ztp.yaml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\nstate:\n  backend: postgresql\n  dsn: \"{pg_dsn}\"\n"
                   f"inventory: {inv}\ndhcp:\n  subnets:\n    - network: 10.60.0.0/24\n"
                   "      pool: 10.60.0.10-10.60.0.20\n")
    config = load_config(cfg)
    machine = load_timeline(config, now=t0 + 5)
    assert machine.status("leaf01").state == Stage.BOUND  # type: ignore[union-attr]
    assert machine.status("spine01").state == Stage.OFFERED  # type: ignore[union-attr]
    assert main(["status", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^leaf01 .* bound ", out, re.M) and re.search(r"^spine01 .* offered ", out, re.M), out
    cfg.write_text(cfg.read_text().replace(pg_dsn, f"postgresql:///nowhere?host={tmp_path}"))
    assert main(["status", "--config", str(cfg)]) == 1
    assert "cannot reach the lease database" in capsys.readouterr().err


def test_rows_merged_from_another_appliance_are_marked_for_the_subscribers() -> None:
    """DNS follows every row (the subscriber hears it); the timeline skips what another appliance recorded
    (ztp.app._record_lease reads `merging`)."""
    from ipaddress import IPv4Address

    from ztp.leases.ledger import LeaseEvent
    from ztp.leases.store import SharedLedger, merge_remote
    from ztp.leases.table import Lease, LeaseState, LeaseTable

    ledger = SharedLedger(LeaseTable(), None)  # no commits here: merges only
    heard: list[tuple[str, bool]] = []

    def subscriber(event: LeaseEvent) -> None:
        heard.append((event.kind.value, ledger.merging))

    ledger.subscribe(subscriber)
    row = Lease(ip=IPv4Address("10.60.1.5"), client="id:01", mac=MAC, state=LeaseState.BOUND, expires=2e9,
                updated=1e9, hostname="leaf02")
    assert merge_remote(ledger, [row]) == 1
    assert heard == [("bound", True)] and ledger.merging is False
