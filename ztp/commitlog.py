"""The lease database's commit log: where a lease is on stable storage before its ACK leaves.

The lease writer process (`ztp.rowwriter`) makes a transaction durable by appending one record to the
current segment and fdatasync'ing it; it writes the rows into SQLite afterwards, in the background, once a
second (`Applier`), in one transaction for everything that arrived meanwhile. A commit used to be an SQLite
transaction of its own (WAL, synchronous=FULL): per transaction 12 pwrite, 6 fcntl locks, pages of the table
and of its index, then the fsync (issue 14: that was ~50 us of the writer's CPU per DORA at 4,000 DORA/s).

Segments are files beside the database, ``<stem>.commitlog.<seq>``, created at SEGMENT_BYTES already
written (a header, then zeros) and synced with their directory: an append overwrites blocks the file
already has, so its fdatasync flushes data only, not a metadata change of the filesystem's journal. The
database remembers (table ``commit_log``) its own random id, which every segment's header repeats, and the
last segment whose rows it holds in full: segments up to that one are deleted; the rest are read on top of
the database by whoever reads the leases (`overlay`), and written into it when a writer starts (`replay`).
A segment of another database (one moved away to start with no leases) is never read.

A record: 4-byte length, 4-byte CRC-32 of the body, the body (the frames of one transaction, `ztp.frames`).
Reading a segment stops at the first record that is not whole and intact: a zero length (the preallocated
rest), a length past the end of the file, or a CRC mismatch (a write torn by a crash: never acknowledged).
The parsing is free of I/O (`bodies`); the file helpers below it are thin.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ztp.frames import FrameReader
from ztp.sqlbatch import immediate, insert_rows

MAGIC = b"ZTPCLOG1"
_ID_BYTES = 16  # the database's id, hex: commit_log.db_id
HEADER_BYTES = len(MAGIC) + _ID_BYTES
_RECORD = struct.Struct("!II")
SEGMENT_BYTES = 1 << 20  # a segment's preallocated size (a transaction larger than what is left starts the next)


class CommitLogError(ValueError):
    """An intact record (its CRC matches) whose frames cannot be decoded: not a torn write but a file this
    ztp cannot read (another Python's marshal format, or not ours). Nothing is dropped silently."""


# --- the format (no I/O) ------------------------------------------------------------------------------------

def header(db_id: str) -> bytes:
    """A segment's first bytes."""
    return MAGIC + db_id.encode("ascii")


def record(body: bytes) -> bytes:
    """One transaction's frames as a record."""
    return _RECORD.pack(len(body), zlib.crc32(body)) + body


def bodies(data: bytes, db_id: str) -> list[bytes]:
    """The intact records of a segment's bytes, in order (none if it belongs to another database)."""
    if data[:HEADER_BYTES] != header(db_id):
        return []
    out = []
    start = HEADER_BYTES
    while start + _RECORD.size <= len(data):
        size, crc = _RECORD.unpack_from(data, start)
        end = start + _RECORD.size + size
        if size == 0 or end > len(data):
            break
        body = data[start + _RECORD.size:end]
        if zlib.crc32(body) != crc:
            break
        out.append(body)
        start = end
    return out


def rows_of(data: bytes, db_id: str, where: Path) -> list[Sequence[Any]]:
    """Every row of a segment's intact records, in the order they were committed."""
    rows: list[Sequence[Any]] = []
    for body in bodies(data, db_id):
        reader = FrameReader()
        try:
            frames = reader.feed(body)
        except (ValueError, EOFError, TypeError) as exc:
            raise CommitLogError(f"{where}: a record cannot be decoded ({exc})") from None
        if reader.partial:
            raise CommitLogError(f"{where}: a record ends inside a frame")
        for rows_of_frame in frames:
            rows.extend(rows_of_frame)
    return rows


# --- files ---------------------------------------------------------------------------------------------------

def segment_path(db: Path, seq: int) -> Path:
    """Segment `seq` of the database at `db`."""
    return db.with_name(f"{db.stem}.commitlog.{seq:010d}")


def lock_path(db: Path) -> Path:
    """The file a writer of the database at `db` holds locked while it runs (`ztp.rowwriter`)."""
    return db.with_name(f"{db.stem}.commitlog.lock")


def segments(db: Path) -> list[tuple[int, Path]]:
    """The database's segment files, oldest first."""
    prefix = f"{db.stem}.commitlog."
    found = []
    for path in db.parent.glob(prefix + "*"):
        suffix = path.name[len(prefix):]
        if suffix.isdigit():
            found.append((int(suffix), path))
    return sorted(found)


def create(db: Path, seq: int, db_id: str, size: int) -> int:
    """Create segment `seq` at `size` bytes, synced with its directory entry; its descriptor (read-write)."""
    path = segment_path(db, seq)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        body = header(db_id) + bytes(max(size, HEADER_BYTES) - HEADER_BYTES)
        # One page per write: the page cache then holds the file in pages, not in the large folios one
        # big write gets (Linux 6.x, ext4), and an append's fdatasync writes one page to the disk instead
        # of the whole folio around it (up to the whole segment: 1 MiB per commit, measured).
        for offset in range(0, len(body), mmap.PAGESIZE):
            write_at(fd, body[offset : offset + mmap.PAGESIZE], offset)
        os.fsync(fd)
        sync_directory(db.parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_at(fd: int, data: bytes, offset: int) -> None:
    """All of `data` into the file at `offset` (a short write goes on where it stopped)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        offset += written
        view = view[written:]


def sync_directory(directory: Path) -> None:
    """fsync `directory`: an entry just created in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_all(fd: int) -> bytes:
    """Everything in the file just opened at `fd` (which stays open)."""
    with open(fd, "rb", closefd=False) as file:
        return file.read()


# --- the database's side -------------------------------------------------------------------------------------

def position(conn: sqlite3.Connection) -> tuple[str | None, int]:
    """(the database's id, the last segment it holds in full); (None, 0) before schema version 3."""
    try:
        row = conn.execute("SELECT db_id, applied FROM commit_log").fetchone()
    except sqlite3.OperationalError as exc:
        if str(exc).startswith("no such table"):
            return None, 0
        raise
    return (None, 0) if row is None else (str(row[0]), int(row[1]))


def overlay(conn: sqlite3.Connection, db: Path, query: str) -> tuple[list[Sequence[Any]], list[Sequence[Any]]]:
    """(the rows of `query` on the database, the rows of the segments it does not hold yet, in commit order),
    as of one moment: the segments are opened first (a descriptor keeps a segment deleted meanwhile readable),
    the database is read in one transaction, then the segments beyond its position are read (each holds at
    least what the database took from it)."""
    opened = []
    try:
        for seq, path in segments(db):
            try:
                opened.append((seq, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
            except FileNotFoundError:
                continue  # deleted since listed: the database held it in full before
        conn.execute("BEGIN")
        try:
            rows = conn.execute(query).fetchall()
            db_id, applied = position(conn)
        finally:
            conn.execute("COMMIT")
        later: list[Sequence[Any]] = []
        if db_id is not None:
            for seq, path, fd in opened:
                if seq > applied:
                    later.extend(rows_of(read_all(fd), db_id, path))
        return rows, later
    finally:
        for _, _, fd in opened:
            os.close(fd)


def apply(conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]], upto: int) -> None:
    """Write `rows` into the database and record that it holds every segment up to `upto`, in one
    transaction (synchronous=FULL: durable when this returns; rolled back if it fails)."""
    with immediate(conn):
        insert_rows(conn, head, rows)
        conn.execute("UPDATE commit_log SET applied = ?", (upto,))


def replay(conn: sqlite3.Connection, db: Path, head: str) -> tuple[str, int]:
    """Write what the segments hold beyond the database's position into it, then delete every segment file
    (a writer starts with none); (the database's id, the last segment number seen). Segments of another
    database are deleted unread."""
    db_id, applied = position(conn)
    if db_id is None:
        raise sqlite3.DatabaseError(f"{db}: no commit_log table (schema older than this ztp's: ztp db upgrade)")
    found = segments(db)
    rows: list[Sequence[Any]] = []
    last = applied
    for seq, path in found:
        data = path.read_bytes()
        if data[:HEADER_BYTES] != header(db_id):
            continue
        if seq > applied:
            rows += rows_of(data, db_id, path)
        last = max(last, seq)
    if rows or last != applied:
        apply(conn, head, rows, last)
    for _, path in found:
        path.unlink(missing_ok=True)
    return db_id, last
