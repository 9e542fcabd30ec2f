"""The SQLite lease store: durable before the ACK, group commit, reload after close."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine
from contextlib import closing
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import uvloop

from ztp.commitlog import segments
from ztp.leases.store import LeaseWriter, database_path, load_leases
from ztp.leases.table import Lease, LeaseState


def lease(n: int, *, state: LeaseState = LeaseState.BOUND, hostname: str | None = None) -> Lease:
    return Lease(ip=IPv4Address(0x0A3C0000 + n), client=f"id:{n:04x}",
                 mac=f"02:00:00:00:{n >> 8:02x}:{n & 255:02x}", state=state, expires=2000.0 + n,
                 updated=1000.0 + n, hostname=hostname)


def rows_seen_by_another_connection(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(str(path))
    try:
        return dict(conn.execute("SELECT ip, state FROM leases").fetchall())
    finally:
        conn.close()


def test_database_path(tmp_path: Path) -> None:
    assert database_path(tmp_path / "state") == tmp_path / "state" / "leases.sqlite3"


def test_load_without_a_database_is_empty(tmp_path: Path) -> None:
    assert load_leases(tmp_path / "nothing" / "leases.sqlite3") == []


Runner = Callable[[Coroutine[Any, Any, None]], None]


# `ztp serve` runs on uvloop, whose remove_reader returns None where asyncio's returns a bool: the compiled
# build (tests/unit/test_compiled.py runs this file on it) once raised TypeError in close() on uvloop only.
@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_commit_resolves_only_after_the_row_is_readable_elsewhere(tmp_path: Path, run: Runner) -> None:
    path = database_path(tmp_path / "state")  # the directory is created on demand

    async def main() -> None:
        writer = LeaseWriter(path)
        writer.start(asyncio.get_running_loop())
        try:
            for n in range(1, 6):
                fut = writer.commit(lease(n))
                await asyncio.wait_for(fut, 10)
                # Read by another reader (the database, the commit log on top) the moment the future completes.
                assert {x.ip: x.state for x in load_leases(path)}[lease(n).ip] == LeaseState.BOUND
        finally:
            writer.close()

    run(main())
    # Closed: the database alone holds every row, and the log is gone.
    assert len(rows_seen_by_another_connection(path)) == 5 and segments(path) == []
    conn = sqlite3.connect(str(path))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_group_commit_batches_many_commits(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    count = 300

    async def main() -> LeaseWriter:
        writer = LeaseWriter(path)
        writer.start(asyncio.get_running_loop())
        try:
            futures = [writer.commit(lease(n)) for n in range(count)]
            await asyncio.wait_for(asyncio.gather(*futures), 30)
        finally:
            writer.close()
        return writer

    writer = asyncio.run(main())
    assert writer.rows == count
    assert 1 <= writer.transactions <= count // 10, writer.transactions
    assert len(rows_seen_by_another_connection(path)) == count


def test_load_after_close_returns_every_field(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    written = [lease(1, hostname="leaf01"), lease(2, state=LeaseState.RELEASED),
               lease(3, state=LeaseState.DECLINED)]

    async def main() -> None:
        writer = LeaseWriter(path)
        writer.start(asyncio.get_running_loop())
        await writer.commit(written[0])
        writer.write_soon(written[1])  # nobody waits: close() must still flush it
        writer.write_soon(written[2])
        writer.close()

    asyncio.run(main())
    loaded = sorted(load_leases(path), key=lambda x: x.ip)
    assert loaded == written


def test_a_newer_row_replaces_the_address(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    writer = LeaseWriter(path)
    try:
        writer.write_all([lease(1), Lease(**{**_fields(lease(1)), "client": "other", "updated": 5000.0})])
    finally:
        writer.close()
    (only,) = load_leases(path)
    assert only.client == "other" and only.updated == 5000.0


def test_rows_the_database_refuses_stay_in_the_log_until_it_takes_them(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A commit is durable once logged: a database that refuses the rows (a trigger here; a lock held by
    # another process, a full disk) does not fail it, nor lose it. The rows stay in the log, every reader
    # sees them, and a later writer writes them into the database once it takes them.
    from ztp.leases.store import sqlite as store
    monkeypatch.setattr(store, "APPLY_EVERY", 0.05)
    path = database_path(tmp_path)
    bad = lease(1)
    LeaseWriter(path).close()  # creates the schema
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON leases WHEN NEW.ip = '{bad.ip}' "
                     "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")

    async def main() -> None:
        writer = LeaseWriter(path)
        writer.start(asyncio.get_running_loop())
        try:
            await asyncio.wait_for(writer.commit(bad), 10)
            await asyncio.wait_for(writer.commit(lease(2)), 10)
            await asyncio.sleep(0.3)  # several rounds of the applier, each refused
        finally:
            writer.close()

    asyncio.run(main())
    assert rows_seen_by_another_connection(path) == {}  # the transaction held both: neither is in the database
    assert segments(path) != []
    assert {x.ip for x in load_leases(path)} == {bad.ip, lease(2).ip}
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TRIGGER refuse")
    LeaseWriter(path).close()  # no writer process: the rows are still only logged
    assert rows_seen_by_another_connection(path) == {}

    async def again() -> None:
        writer = LeaseWriter(path)
        writer.start(asyncio.get_running_loop())  # its writer process replays the log first
        await asyncio.wait_for(writer.commit(lease(3)), 10)
        writer.close()

    asyncio.run(again())
    assert set(rows_seen_by_another_connection(path)) == {str(x.ip) for x in (bad, lease(2), lease(3))}
    assert segments(path) == []


def test_close_without_start(tmp_path: Path) -> None:
    writer = LeaseWriter(database_path(tmp_path))
    writer.close()
    assert load_leases(database_path(tmp_path)) == []


def _fields(x: Lease) -> dict[str, object]:
    return {f: getattr(x, f) for f in ("ip", "client", "mac", "state", "expires", "updated", "hostname")}


def test_a_commit_only_appends_to_the_log_and_never_touches_the_database(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A commit is one record appended to the log and fdatasync'd. The database (and its WAL) is written
    # by the applier every APPLY_EVERY s, here never while the commits go on; close() writes the rest.
    from ztp.leases.store import sqlite as store
    monkeypatch.setattr(store, "APPLY_EVERY", 3600.0)
    path = database_path(tmp_path)
    wal = path.with_name(path.name + "-wal")

    def wal_size() -> int:
        return wal.stat().st_size if wal.exists() else 0

    async def main() -> tuple[int, int, dict[str, str], int]:
        writer = LeaseWriter(path)
        writer.start(asyncio.get_running_loop())
        try:
            await asyncio.wait_for(writer.commit(lease(0)), 10)  # the writer process is up
            before = wal_size()  # the schema's pages
            for n in range(1, 1500):  # one transaction each
                await asyncio.wait_for(writer.commit(lease(n)), 10)
            return before, wal_size(), rows_seen_by_another_connection(path), len(load_leases(path))
        finally:
            writer.close()

    before, after, in_database, loaded = asyncio.run(main())
    assert in_database == {} and after == before
    assert loaded == 1500  # the log, read on top of the database
    assert not wal.exists() or wal.stat().st_size == 0  # close(): written, checkpointed and truncated
    assert len(rows_seen_by_another_connection(path)) == 1500 and segments(path) == []


def test_the_applier_writes_the_database_and_deletes_full_segments_while_commits_go_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ztp.leases.store import sqlite as store
    monkeypatch.setattr(store, "APPLY_EVERY", 0.02)
    monkeypatch.setattr(store, "SEGMENT_BYTES", 4096)  # a few dozen transactions each
    path = database_path(tmp_path)
    files: list[int] = []

    async def main() -> int:
        writer = LeaseWriter(path)
        writer.start(asyncio.get_running_loop())
        try:
            for n in range(300):
                await asyncio.wait_for(writer.commit(lease(n, hostname=f"h{n}")), 10)
                if n % 50 == 0:
                    await asyncio.sleep(0.1)
                    files.append(len(segments(path)))
                    assert len(load_leases(path)) == n + 1
            return writer.applied
        finally:
            writer.close()

    assert asyncio.run(main()) >= 3
    assert max(files) <= 3, files  # the current segment, the next one ready, at most one not yet written in
    assert segments(path) == []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # read without the WAL's help: in the database
    try:
        assert conn.execute("SELECT count(*) FROM leases").fetchone()[0] == 300
    finally:
        conn.close()


def test_the_writer_is_a_process_and_a_dead_one_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 14: the writing happens in a process of its own (no GIL shared with the event loop). When it
    # dies, what it held fails (no ACK for it) and the next commit starts another.
    import os
    import signal

    from ztp.leases.store import sqlite as store
    monkeypatch.setattr(store, "RESPAWN_AFTER", 0.0)
    monkeypatch.setattr(store, "APPLY_EVERY", 3600.0)  # what a writer acknowledged is only in the log
    path = database_path(tmp_path)

    async def main() -> None:
        writer = LeaseWriter(path)
        writer.start(asyncio.get_running_loop())
        try:
            assert writer._proc is not None
            os.kill(writer._proc.pid, signal.SIGTERM)  # a stop while it is still starting: ignored from exec on
            await asyncio.wait_for(writer.commit(lease(1)), 10)
            first = writer._proc
            assert first is not None and first.pid != os.getpid()
            # Stopping ztp serve signals its whole process group (Ctrl-C) or unit (systemd): the writer waits
            # for the end of its input instead of dying with commits in flight.
            os.kill(first.pid, signal.SIGTERM)
            os.kill(first.pid, signal.SIGINT)
            await asyncio.wait_for(writer.commit(lease(4)), 10)
            assert first.poll() is None
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            assert rows_seen_by_another_connection(path) == {}  # never written into the database ...
            assert {x.ip for x in load_leases(path)} == {lease(1).ip, lease(4).ip}  # ... but durable
            with pytest.raises(OSError, match="writer process exited"):
                # Queued to the dead process (or refused by it): failed, never reported durable.
                await asyncio.wait_for(writer.commit(lease(2)), 10)
            await asyncio.wait_for(writer.commit(lease(3)), 10)
            assert writer._proc is not None and writer._proc.pid != first.pid
        finally:
            writer.close()

    asyncio.run(main())
    # The second writer wrote the first one's log into the database before its own commits.
    assert set(rows_seen_by_another_connection(path)) == {str(lease(n).ip) for n in (1, 3, 4)}
    assert segments(path) == []


def test_frames_are_decoded_whatever_the_pieces_they_arrive_in() -> None:
    from ztp.frames import FrameReader, frame

    stream = frame([("10.0.0.1", "a", 1.5, None)]) + frame((1, None, 2, 3, 4)) + frame([])
    reader = FrameReader()
    got = []
    for i in range(0, len(stream), 3):
        got += reader.feed(stream[i:i + 3])
    assert got == [[("10.0.0.1", "a", 1.5, None)], (1, None, 2, 3, 4), []] and not reader.partial
