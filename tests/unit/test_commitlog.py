"""The commit log's format and its replay: what a crash leaves is read up to the last intact record."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from contextlib import closing
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ztp import commitlog
from ztp.commitlog import CommitLogError, bodies, header, record, rows_of, segments
from ztp.frames import FrameReader, frame
from ztp.leases.store import LeaseWriter, database_path, load_leases
from ztp.leases.table import Lease, LeaseState

DB_ID = "0123456789abcdef"


def row(n: int) -> tuple[object, ...]:
    return (f"10.60.0.{n}", f"id:{n}", f"02:00:00:00:00:{n:02x}", "bound", 2000.0 + n, 1000.0 + n, None, None)


def test_records_are_read_up_to_the_first_that_is_not_whole_and_intact() -> None:
    one, two, three = frame([row(1)]), frame([row(2)]) + frame([row(3)]), frame([row(4)])
    data = header(DB_ID) + record(one) + record(two)
    assert bodies(data, DB_ID) == [one, two]
    assert bodies(data + bytes(4096), DB_ID) == [one, two]  # the preallocated rest: a zero length
    assert bodies(data + record(three)[:-1], DB_ID) == [one, two]  # torn by a crash inside the body
    assert bodies(data + record(three)[:5], DB_ID) == [one, two]  # ... inside the record's header
    flipped = bytearray(record(three))
    flipped[-1] ^= 1
    assert bodies(data + bytes(flipped) + record(one), DB_ID) == [one, two]  # a bad CRC ends the segment
    assert bodies(data, "fedcba9876543210") == []  # another database's segment
    assert bodies(b"not a segment", DB_ID) == []
    assert rows_of(data + record(three), DB_ID, Path("s")) == [row(1), row(2), row(3), row(4)]


def test_an_intact_record_that_cannot_be_decoded_is_an_error_naming_the_file() -> None:
    data = header(DB_ID) + record(b"\x00\x00\x00\x03abc")  # a frame whose marshal body is not one
    with pytest.raises(CommitLogError, match="seg1: a record cannot be decoded"):
        rows_of(data, DB_ID, Path("seg1"))
    with pytest.raises(CommitLogError, match="seg2: a record ends inside a frame"):
        rows_of(header(DB_ID) + record(frame([row(1)])[:-2]), DB_ID, Path("seg2"))


def _lease(n: int) -> Lease:
    return Lease(ip=IPv4Address(f"10.60.0.{n}"), client=f"id:{n}", mac=f"02:00:00:00:00:{n:02x}",
                 state=LeaseState.BOUND, expires=2000.0 + n, updated=1000.0 + n)


def _db_id(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return str(conn.execute("SELECT db_id FROM commit_log").fetchone()[0])


def test_what_a_crash_left_in_the_log_is_read_on_top_and_written_in_by_the_next_writer(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    LeaseWriter(path).close()  # the schema, no rows
    db_id = _db_id(path)
    # As a writer killed mid-append leaves them: segment 1 full, segment 2 with an intact record, a torn
    # one and the zeros after it; segment 3 created ahead, empty; a segment of another database.
    newer = (*row(1)[:3], "released", *row(1)[4:])
    seg1 = header(db_id) + record(frame([row(1), row(2)]))
    seg2 = header(db_id) + record(frame([newer])) + record(frame([row(9)]))[:-3] + bytes(100)
    commitlog.segment_path(path, 1).write_bytes(seg1)
    commitlog.segment_path(path, 2).write_bytes(seg2)
    commitlog.segment_path(path, 3).write_bytes(header(db_id) + bytes(100))
    commitlog.segment_path(path, 7).write_bytes(header("f" * 16) + record(frame([row(5)])))
    expected = {IPv4Address("10.60.0.1"): LeaseState.RELEASED, IPv4Address("10.60.0.2"): LeaseState.BOUND}
    assert {x.ip: x.state for x in load_leases(path)} == expected  # read on top of the (empty) database

    async def main() -> None:
        writer = LeaseWriter(path)
        writer.start(asyncio.get_running_loop())
        await asyncio.wait_for(writer.commit(_lease(3)), 10)
        writer.close()

    asyncio.run(main())
    with closing(sqlite3.connect(path)) as conn:
        in_database = dict(conn.execute("SELECT ip, state FROM leases").fetchall())
        applied = conn.execute("SELECT applied FROM commit_log").fetchone()[0]
    assert in_database == {"10.60.0.1": "released", "10.60.0.2": "bound", "10.60.0.3": "bound"}
    assert applied >= 4 and segments(path) == []  # numbered on after the last one seen; all deleted


def test_a_database_moved_away_takes_its_log_with_it(tmp_path: Path) -> None:
    # "Move the database away to start with no leases": a log left behind is of the old database (its id)
    # and never comes back into the new one.
    path = database_path(tmp_path)
    LeaseWriter(path).close()
    commitlog.segment_path(path, 1).write_bytes(header(_db_id(path)) + record(frame([row(1)])))
    assert [str(x.ip) for x in load_leases(path)] == ["10.60.0.1"]
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    LeaseWriter(path).close()  # a new database, a new id
    assert load_leases(path) == []


def test_a_frame_cut_short_by_the_parents_death_is_not_logged(tmp_path: Path) -> None:
    # `ztp serve` killed while writing a frame into the pipe: the writer logs the whole frames only (a record
    # with a piece of a frame would be intact, CRC and all, and stop every later start). The database is
    # locked here, so the writer's last round fails and its log stays for this test to read.
    from ztp.leases.store.sqlite import _UPSERT
    from ztp.rowwriter import serve

    path = database_path(tmp_path)
    LeaseWriter(path).close()
    read_end, write_end = os.pipe()
    acks, ack_end = os.pipe()
    os.write(write_end, frame([row(1)]) + frame([row(2)])[:7])
    os.close(write_end)
    with closing(sqlite3.connect(path, isolation_level=None)) as locker:
        locker.execute("BEGIN EXCLUSIVE")
        serve(read_end, ack_end, str(path), _UPSERT, 0.1, 3600.0, 4096)
        locker.execute("ROLLBACK")
    os.close(read_end)
    os.close(ack_end)
    assert FrameReader().feed(os.read(acks, 65536)) == [(1, None, 1, 1, 0)]
    os.close(acks)
    (seg,) = segments(path)
    assert rows_of(seg[1].read_bytes(), _db_id(path), seg[1]) == [row(1)]
    assert [str(x.ip) for x in load_leases(path)] == ["10.60.0.1"]


def test_a_second_writer_on_one_database_is_refused(tmp_path: Path) -> None:
    import fcntl

    from ztp.leases.store.sqlite import _UPSERT
    from ztp.rowwriter import serve

    path = database_path(tmp_path)
    LeaseWriter(path).close()
    lock = path.with_name("leases.commitlog.lock")
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the first writer
        read_end, write_end = os.pipe()
        try:
            with pytest.raises(OSError, match=f"another lease writer holds {lock}"):
                serve(read_end, write_end, str(path), _UPSERT, 0.1, 1.0, 4096)
        finally:
            os.close(read_end)
            os.close(write_end)
    assert segments(path) == []  # it touched nothing
