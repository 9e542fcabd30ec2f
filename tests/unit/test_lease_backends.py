"""The lease-store interface, one semantics suite run against both backends (SQLite and a real, throwaway
PostgreSQL), then what only a shared store does: the database refuses a second client for an address, the
loser's cache learns the winner, other appliances' rows reach the cache, the schema is versioned."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import psycopg
import pytest

from ztp.config import Config, Subnet
from ztp.leases.ledger import ChangeKind, LeaseChange, Ledger
from ztp.leases.store import (
    LeaseBackend,
    LeaseConflict,
    LeaseWriter,
    StoreError,
    StoreUnavailable,
    database_path,
    load_leases,
    merge_remote,
)
from ztp.leases.store import sqlite as sqlite_store
from ztp.leases.store.postgres import SCHEMA_VERSION, PostgresStore, read_rows, redact, upgrade
from ztp.leases.table import Lease, LeaseState, LeaseTable

T0 = 1_000.0
POOL = Subnet(network=IPv4Network("10.60.0.0/16"), pool_start=IPv4Address("10.60.0.10"),
              pool_end=IPv4Address("10.60.0.20"), routers=(), dns_servers=(), domain=None, lease_time=60,
              options={}, line=1)


def lease(n: int, *, client: str | None = None, state: LeaseState = LeaseState.BOUND, updated: float = T0,
          expires: float | None = None, hostname: str | None = None) -> Lease:
    return Lease(ip=IPv4Address(0x0A3C0000 + n), client=client or f"id:{n:04x}",
                 mac=f"02:00:00:00:{n >> 8:02x}:{n & 255:02x}", state=state,
                 expires=expires if expires is not None else updated + 3600, updated=updated, hostname=hostname)


Factory = Callable[[], LeaseBackend]
Reader = Callable[[], dict[str, str]]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Factory, Reader]]:
    """(a factory of stores on one database, a reader of `ip -> state` on a separate connection)."""
    if request.param == "sqlite":
        path = database_path(tmp_path / "state")

        def read_sqlite() -> dict[str, str]:  # another reader: the database and the commit log on top
            return {str(x.ip): x.state.value for x in load_leases(path)}
        yield (lambda: LeaseWriter(path)), read_sqlite
        return
    dsn: str = request.getfixturevalue("pg_dsn")
    upgrade(dsn)

    def read_pg() -> dict[str, str]:
        with psycopg.connect(dsn) as conn:
            return {r[0]: r[1] for r in conn.execute("SELECT host(ip), state FROM leases").fetchall()}
    yield (lambda: PostgresStore(dsn)), read_pg


def run(coro_fn: Callable[[], object]) -> None:
    asyncio.run(coro_fn())  # type: ignore[arg-type]


# --- the same semantics on both ------------------------------------------------------------------------

def test_commit_completes_only_once_another_connection_sees_the_row(backend: tuple[Factory, Reader]) -> None:
    make, read = backend

    async def main() -> None:
        store = make()
        store.start(asyncio.get_running_loop())
        try:
            for n in range(1, 6):
                await asyncio.wait_for(store.commit(lease(n)), 10)
                assert read()[str(lease(n).ip)] == "bound"
        finally:
            store.close()
    run(main)


def test_group_commit_writes_many_commits_in_few_transactions(backend: tuple[Factory, Reader]) -> None:
    make, read = backend
    count = 300

    async def main() -> None:
        store = make()
        store.start(asyncio.get_running_loop())
        try:
            await asyncio.wait_for(asyncio.gather(*[store.commit(lease(n)) for n in range(count)]), 30)
        finally:
            store.close()
        transactions = store.transactions  # type: ignore[attr-defined]
        assert 1 <= transactions <= count // 10, transactions
    run(main)
    assert len(read()) == count


def test_load_after_close_returns_every_field(backend: tuple[Factory, Reader]) -> None:
    make, _ = backend
    written = [lease(1, hostname="leaf01"), lease(2, state=LeaseState.RELEASED, expires=T0),
               lease(3, state=LeaseState.DECLINED)]

    async def main() -> None:
        store = make()
        store.start(asyncio.get_running_loop())
        try:
            await asyncio.gather(*[store.commit(x) for x in written])
        finally:
            store.close()
    run(main)
    again = make()
    try:
        assert sorted(again.load(), key=lambda x: x.ip) == written
    finally:
        again.close()


def test_a_newer_row_of_the_same_client_replaces_the_old(backend: tuple[Factory, Reader]) -> None:
    make, _ = backend

    async def main() -> None:
        store = make()
        store.start(asyncio.get_running_loop())
        try:
            await store.commit(lease(1))
            await store.commit(lease(1, updated=T0 + 50, hostname="renewed"))
        finally:
            store.close()
    run(main)
    again = make()
    try:
        (only,) = again.load()
        assert only.updated == T0 + 50 and only.hostname == "renewed"
    finally:
        again.close()


def test_the_ledger_applies_nothing_before_the_store_has_it(backend: tuple[Factory, Reader]) -> None:
    make, read = backend

    async def main() -> None:
        store = make()
        store.start(asyncio.get_running_loop())
        table = LeaseTable()
        ledger = Ledger(table, store)
        outcome: list[BaseException | None] = []
        x = lease(7)
        ledger.commit(LeaseChange(ChangeKind.BIND, x), outcome.append)
        assert not table.leases()
        for _ in range(1000):
            if outcome:
                break
            await asyncio.sleep(0.01)
        try:
            assert outcome == [None] and table.at(x.ip) == x and read()[str(x.ip)] == "bound"
        finally:
            store.close()
    run(main)


# --- schema versions ------------------------------------------------------------------------------------

def test_sqlite_schema_is_versioned_and_a_pre_version_database_is_version_1(tmp_path: Path) -> None:
    path = tmp_path / "leases.sqlite3"
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE leases (ip TEXT PRIMARY KEY, client TEXT NOT NULL, mac TEXT NOT NULL, "
                 "state TEXT NOT NULL, expires REAL NOT NULL, updated REAL NOT NULL, hostname TEXT)")
    conn.execute("INSERT INTO leases VALUES ('10.60.0.1', 'a', 'a', 'bound', 5, 1, NULL)")
    conn.commit()
    conn.close()
    assert sqlite_store.upgrade(path) == (1, sqlite_store.SCHEMA_VERSION)
    assert sqlite_store.upgrade(path) == (sqlite_store.SCHEMA_VERSION, sqlite_store.SCHEMA_VERSION)
    assert [x.client for x in sqlite_store.load_leases(path)] == ["a"]  # rows kept
    assert sqlite_store.upgrade(tmp_path / "new" / "leases.sqlite3") == (0, sqlite_store.SCHEMA_VERSION)


def test_postgresql_schema_is_created_by_upgrade_and_required_by_serve(pg_dsn: str) -> None:
    with pytest.raises(StoreError, match=r"ztp.yaml:3: .*schema version 0, this ztp needs .*ztp db upgrade"):
        PostgresStore(pg_dsn, where="ztp.yaml:3")
    assert upgrade(pg_dsn) == (0, SCHEMA_VERSION)
    assert upgrade(pg_dsn) == (SCHEMA_VERSION, SCHEMA_VERSION)
    PostgresStore(pg_dsn).close()
    assert read_rows(pg_dsn) == []


def test_an_unreachable_database_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    dsn = f"postgresql://ztp:s3cret@/ztp?host={tmp_path}&port=1"
    with pytest.raises(StoreUnavailable, match="ztp.yaml:4: cannot reach the lease database") as err:
        PostgresStore(dsn, where="ztp.yaml:4")
    assert "s3cret" not in str(err.value)
    assert redact("host=db password=s3cret dbname=ztp") == "host=db password=*** dbname=ztp"


# --- what only the shared store does ---------------------------------------------------------------------

@pytest.fixture
def shared(pg_dsn: str) -> str:
    upgrade(pg_dsn)
    return pg_dsn


def test_a_second_client_for_an_active_address_loses_and_its_cache_learns_the_winner(shared: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = PostgresStore(shared), PostgresStore(shared)
        table_b = LeaseTable()
        ledger_b = Ledger(table_b, b)
        a.start(loop)
        b.start(loop, lambda rows: merge_remote(ledger_b, rows))
        try:
            x = lease(1, client="c1")
            await a.commit(x)
            # b has not heard of it yet (offer decided from a stale cache): the database refuses.
            stale = lease(1, client="c2", updated=T0 + 1)
            outcome: list[BaseException | None] = []
            ledger_b.commit(LeaseChange(ChangeKind.BIND, stale), outcome.append)
            for _ in range(1000):
                if outcome:
                    break
                await asyncio.sleep(0.01)
            assert len(outcome) == 1 and isinstance(outcome[0], LeaseConflict)
            assert outcome[0].current == x
            # Nothing of the loser was applied; the winner is in the cache, so it is not offered again.
            assert table_b.at(x.ip) == x and table_b.lease_of("c2") is None
            chosen = ledger_b.choose(POOL, "c2", reserved=None, requested=x.ip, now=T0 + 2)
            assert chosen is not None and chosen != x.ip
        finally:
            a.close()
            b.close()
        assert {r.client for r in read_rows(shared)} == {"c1"}
    run(main)


def test_released_expired_and_own_rows_can_be_taken(shared: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = PostgresStore(shared), PostgresStore(shared)
        a.start(loop)
        b.start(loop)
        try:
            await a.commit(lease(1, client="c1"))
            await a.commit(lease(1, client="c1", state=LeaseState.RELEASED, updated=T0 + 5, expires=T0 + 5))
            await b.commit(lease(1, client="c2", updated=T0 + 6))  # released: free
            await a.commit(lease(2, client="c3", expires=T0 + 10))
            await b.commit(lease(2, client="c4", updated=T0 + 11))  # run out: free
            await a.commit(lease(3, client="c5", state=LeaseState.DECLINED, expires=T0 + 600))
            with pytest.raises(LeaseConflict):
                await b.commit(lease(3, client="c6", updated=T0 + 20))  # quarantined
            await b.commit(lease(3, client="c5", updated=T0 + 21))  # the same client's row: its own
        finally:
            a.close()
            b.close()
        assert {str(r.ip): r.client for r in read_rows(shared)} == {
            str(lease(1).ip): "c2", str(lease(2).ip): "c4", str(lease(3).ip): "c5"}
    run(main)


def test_other_appliances_rows_reach_the_cache_but_not_our_own(shared: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[Lease] = []
        a, b = PostgresStore(shared), PostgresStore(shared)
        a.load()
        b.load()
        a.start(loop, seen.extend)
        b.start(loop)
        try:
            await asyncio.sleep(0.3)  # a's listener is listening
            await a.commit(lease(1, client="mine"))
            theirs = lease(2, client="theirs", hostname="leaf02")
            await b.commit(theirs)
            deadline = time.monotonic() + 10
            while theirs not in seen and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
            # Once or twice (a notification and the first catch-up may both carry it: merging skips repeats).
            assert set(seen) == {theirs}
        finally:
            a.close()
            b.close()
    run(main)


def test_rows_written_while_not_listening_are_caught_up(shared: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        b = PostgresStore(shared)
        b.start(loop)
        a = PostgresStore(shared, refresh=0.2)
        a.load()
        try:
            early = lease(4, client="early")
            await b.commit(early)  # before a listens: the catch-up on connect reads it
            seen: list[Lease] = []
            a.start(loop, seen.extend)
            deadline = time.monotonic() + 10
            while early not in seen and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert early in seen
        finally:
            a.close()
            b.close()
    run(main)


def test_merge_skips_stale_rows_and_replaces_offers() -> None:
    table = LeaseTable()
    ledger = Ledger(table)
    events: list[str] = []
    ledger.subscribe(lambda e: events.append(e.kind.value))
    new = lease(1, client="c1", updated=T0 + 10)
    assert merge_remote(ledger, [new]) == 1 and table.at(new.ip) == new
    assert merge_remote(ledger, [lease(1, client="c0", updated=T0)]) == 0  # older than what we know
    assert merge_remote(ledger, [new]) == 0  # the same row twice
    table.offer(lease(2).ip, "c9", "c9", hold=30, now=T0 + 100)  # our offer, newer than their binding
    theirs = lease(2, client="c2", updated=T0 + 50)
    assert merge_remote(ledger, [theirs]) == 1 and table.at(theirs.ip) == theirs
    assert table.lease_of("c9") is None  # the offer is gone: a REQUEST for it is refused
    released = dataclasses.replace(new, state=LeaseState.RELEASED, updated=T0 + 20, expires=T0 + 20)
    assert merge_remote(ledger, [released]) == 1
    assert events == ["bound", "bound", "released"]


# --- configuration ----------------------------------------------------------------------------------------

def _config_with(tmp_path: Path, state: str) -> Path:
    from tests.integration.appliance import write_config

    return write_config(tmp_path, dns=False, config_extra=state)


def test_state_defaults_to_sqlite_under_state_dir(tmp_path: Path) -> None:
    from ztp.config import load_config
    from ztp.leases.store import describe

    config = load_config(_config_with(tmp_path, ""))
    assert config.state.backend == "sqlite" and config.state.dsn is None
    assert describe(config) == f"sqlite {tmp_path / 'state' / 'leases.sqlite3'}"


def test_state_postgresql_is_read_and_described_without_its_password(tmp_path: Path) -> None:
    from ztp.config import load_config
    from ztp.leases.store import describe

    config = load_config(_config_with(tmp_path, 'state:\n  backend: postgresql\n  dsn: "postgresql://ztp:pw@db/ztp"\n'
                                                "  refresh: 5\n"))
    assert (config.state.backend, config.state.dsn, config.state.refresh) == \
        ("postgresql", "postgresql://ztp:pw@db/ztp", 5.0)
    assert describe(config) == "postgresql postgresql://ztp:***@db/ztp"


@pytest.mark.parametrize(("state", "message"), [
    ("state:\n  backend: postgresql\n", "state.backend: postgresql needs state.dsn"),
    ("state:\n  dsn: host=db\n", "state.dsn is only used with state.backend: postgresql"),
])
def test_state_problems_name_the_line(tmp_path: Path, state: str, message: str) -> None:
    from ztp.config import check_config

    path = _config_with(tmp_path, state)
    _, problems = check_config(path)
    line = path.read_text().splitlines().index(state.splitlines()[1]) + 1
    assert [(p.line, message in p.message) for p in problems] == [(line, True)]


def test_a_reload_keeps_the_lease_store(tmp_path: Path) -> None:
    from ztp.app import keep_fixed_settings
    from ztp.config import StateSettings

    old = dataclasses.replace(_loaded(tmp_path), state=StateSettings())
    new = dataclasses.replace(old, state=StateSettings(backend="postgresql", dsn="host=db"))
    kept, names = keep_fixed_settings(old, new)
    assert kept.state == old.state and "state" in names


def _loaded(tmp_path: Path) -> Config:
    from ztp.config import load_config

    return load_config(_config_with(tmp_path, ""))


def test_an_outage_fails_commits_cleanly_and_the_store_comes_back_by_itself(
        caplog: pytest.LogCaptureFixture) -> None:
    from tests.conftest import skip_or_fail
    from tests.pgcluster import PgCluster, postgres_bin

    bindir = postgres_bin()
    if bindir is None:
        skip_or_fail("needs PostgreSQL: apt-get install postgresql (scripts/setup-debian.sh)")
    assert bindir is not None
    cluster = PgCluster(bindir)  # its own cluster: this test stops it
    cluster.start()
    try:
        dsn = cluster.database()
        upgrade(dsn)

        async def main() -> None:
            store = PostgresStore(dsn)
            store.start(asyncio.get_running_loop(), lambda rows: None)
            try:
                await asyncio.wait_for(store.commit(lease(1)), 10)
                cluster.halt()
                for n in (2, 3):  # nothing written, the caller hears why: no ACK for what cannot be stored
                    with pytest.raises(StoreUnavailable, match="cannot reach|unreachable"):
                        await asyncio.wait_for(store.commit(lease(n)), 30)
                cluster.start()
                await asyncio.wait_for(store.commit(lease(4)), 30)  # reconnected by itself
                # A restart nobody wrote through: the kept connection is dead, the commit still succeeds.
                cluster.halt()
                cluster.start()
                await asyncio.wait_for(store.commit(lease(5)), 30)
            finally:
                store.close()
        with caplog.at_level("WARNING", logger="ztp.leases"):
            run(main)
        assert sorted(x.ip for x in read_rows(dsn)) == [lease(1).ip, lease(4).ip, lease(5).ip]
        lines = [r.getMessage() for r in caplog.records if r.name == "ztp.leases"]
        assert sum("unreachable" in m and "no DHCP ACK" in m for m in lines) == 2  # once per outage
        assert any("reachable again" in m for m in lines)
    finally:
        cluster.stop()


# --- read-through on a cache miss ---------------------------------------------------------------------------

def test_lookup_reads_a_clients_rows_in_one_query(shared: str) -> None:
    async def main() -> None:
        store = PostgresStore(shared)
        store.start(asyncio.get_running_loop())
        try:
            await store.commit(lease(1, client="c1"))
            await store.commit(lease(2, client="c2"))
            got = await asyncio.wait_for(asyncio.gather(store.lookup("c1"), store.lookup("c2"), store.lookup("c3")),
                                         10)
            assert got == [[lease(1, client="c1")], [lease(2, client="c2")], []]
        finally:
            store.close()
    run(main)


class FakeLookup:
    """Lookups the test completes by hand."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.asked: list[tuple[str, asyncio.Future[list[Lease]]]] = []

    def __call__(self, client: str) -> asyncio.Future[list[Lease]]:
        fut: asyncio.Future[list[Lease]] = self.loop.create_future()
        self.asked.append((client, fut))
        return fut


def test_read_through_defers_the_decision_until_the_clients_row_is_in_the_cache() -> None:
    from ztp.leases.store import ReadThrough

    async def main() -> None:
        table = LeaseTable()
        ledger = Ledger(table)
        lookups = FakeLookup(asyncio.get_running_loop())
        rt = ReadThrough(ledger, lookups)
        decided: list[str] = []
        theirs = lease(12, client="moved", updated=T0)  # in POOL
        assert rt("moved", lambda: decided.append(str(table.lease_of("moved"))))
        assert rt("moved", lambda: decided.append("retransmission"))  # waits for the same lookup
        assert [c for c, _ in lookups.asked] == ["moved"] and decided == []
        lookups.asked[0][1].set_result([theirs])
        await asyncio.sleep(0)
        assert decided == [str(theirs), "retransmission"]
        # Known now: the chain's allocation gives the client the address it holds elsewhere.
        assert not rt("moved", lambda: None)
        assert ledger.choose(POOL, "moved", reserved=None, requested=None, now=T0 + 1) == theirs.ip

        # Not in the store: decided from the cache (which then holds the offer: no second lookup).
        assert rt("new", lambda: decided.append("new"))
        lookups.asked[1][1].set_result([])
        await asyncio.sleep(0)
        assert decided[-1] == "new" and table.lease_of("new") is None

        # The database unreachable: the decision runs anyway, from the cache.
        assert rt("down", lambda: decided.append("down"))
        lookups.asked[2][1].set_exception(StoreUnavailable("unreachable"))
        await asyncio.sleep(0)
        assert decided[-1] == "down"
    run(main)


def test_read_through_is_bounded() -> None:
    from ztp.leases.store import ReadThrough

    async def main() -> None:
        lookups = FakeLookup(asyncio.get_running_loop())
        rt = ReadThrough(Ledger(LeaseTable()), lookups, max_pending=2)
        assert rt("a", lambda: None) and rt("b", lambda: None)
        assert not rt("c", lambda: None)  # answered from the cache rather than queued
        for _ in range(10):
            rt("a", lambda: None)
        assert len(lookups.asked) == 2 and len(rt._waiting["a"]) == 4
    run(main)


def test_only_a_shared_store_reads_through(tmp_path: Path, shared: str) -> None:
    from ztp.leases.store import ReadThrough, read_through

    ledger = Ledger(LeaseTable())
    sqlite = LeaseWriter(database_path(tmp_path))
    pg = PostgresStore(shared)
    try:
        assert read_through(sqlite, ledger) is None
        assert isinstance(read_through(pg, ledger), ReadThrough)
    finally:
        sqlite.close()
        pg.close()


# --- moving an embedded install to PostgreSQL ---------------------------------------------------------------

def test_db_migrate_from_sqlite_copies_every_row_once(tmp_path: Path, pg_dsn: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from ztp.cli import main

    old_state = tmp_path / "old-state"
    rows = [lease(1, hostname="leaf01"), lease(2, state=LeaseState.RELEASED, expires=T0),
            lease(3, state=LeaseState.DECLINED)]
    writer = LeaseWriter(database_path(old_state))
    try:
        writer.write_all(rows)
    finally:
        writer.close()
    config = _config_with(tmp_path, f'state:\n  backend: postgresql\n  dsn: "{pg_dsn}"\n')
    assert main(["db", "migrate-from-sqlite", str(old_state), "--config", str(config)]) == 1
    assert "schema version 0" in capsys.readouterr().err  # the schema first: ztp db upgrade
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert f"schema version 0 -> {SCHEMA_VERSION}" in capsys.readouterr().out
    assert main(["db", "migrate-from-sqlite", str(old_state), "--config", str(config)]) == 0
    assert "3 lease rows copied from" in capsys.readouterr().out
    assert sorted(read_rows(pg_dsn), key=lambda x: x.ip) == rows
    assert main(["db", "migrate-from-sqlite", str(old_state), "--config", str(config)]) == 0
    again = capsys.readouterr().out
    assert "0 lease rows copied" in again and "3 skipped" in again
    assert len(read_rows(pg_dsn)) == 3
    # `ztp leases` reads the shared store.
    assert main(["leases", "--config", str(config), "--json"]) == 0
    assert {r["ip"] for r in json.loads(capsys.readouterr().out)} == {str(x.ip) for x in rows}


def test_db_migrate_names_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ztp.cli import main

    config = _config_with(tmp_path, "")
    assert main(["db", "migrate-from-sqlite", str(tmp_path), "--config", str(config)]) == 1
    assert "state.backend is not postgresql" in capsys.readouterr().err
    config = _config_with(tmp_path, 'state:\n  backend: postgresql\n  dsn: "host=/nonexistent"\n')
    assert main(["db", "migrate-from-sqlite", str(tmp_path / "none"), "--config", str(config)]) == 1
    assert "no lease database there" in capsys.readouterr().err


def test_the_writer_commits_synchronously_whatever_the_database_default(shared: str) -> None:
    with psycopg.connect(shared, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        assert name is not None
        conn.execute(f"ALTER DATABASE {name[0]} SET synchronous_commit = off")  # type: ignore[arg-type]
    store = PostgresStore(shared)
    try:
        assert store._conn is not None
        assert store._conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    finally:
        store.close()
    with psycopg.connect(shared) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)  # the default it overrode


class _Stub:
    """A store that is shared or not; commits complete at once."""

    def __init__(self, shared: bool) -> None:
        self.shared = shared

    def commit(self, lease: Lease) -> asyncio.Future[None]:
        raise AssertionError("memory-only changes never reach the store")


@pytest.mark.parametrize("shared", [True, False])
def test_a_withdrawn_offer_keeps_its_address_only_on_a_shared_store(shared: bool) -> None:
    from ztp.leases.store import SharedLedger, ledger_for

    table = LeaseTable()
    ledger = ledger_for(table, _Stub(shared))  # type: ignore[arg-type]
    assert isinstance(ledger, SharedLedger) == shared
    x = IPv4Address("10.60.0.10")
    offer = Lease(ip=x, client="c1", mac="c1", state=LeaseState.OFFERED, expires=T0 + 30, updated=T0)
    done: list[BaseException | None] = []
    ledger.commit(LeaseChange(ChangeKind.OFFER, offer), done.append)
    # c1 chose another server (RFC 2131 §4.3.2): with a shared store that is most likely the other appliance
    # binding x for c1 right now, so x must not go to the next client before its row arrives.
    ledger.commit(LeaseChange(ChangeKind.WITHDRAW, offer), done.append)
    assert done == [None, None]
    chosen = ledger.choose(POOL, "c2", reserved=None, requested=None, now=T0 + 1)
    if shared:
        assert table.at(x) == offer and chosen != x
        theirs = Lease(ip=x, client="c1", mac="c1", state=LeaseState.BOUND, expires=T0 + 3600, updated=T0 + 0.01)
        assert merge_remote(ledger, [theirs]) == 1 and table.at(x) == theirs
    else:
        assert table.at(x) is None and chosen == x  # alone: back to the pool at once
