"""The embedded lease store (the default): SQLite in WAL mode, one writer process, group commit through a
commit log.

RFC 2131 §3.1 (2) and §4.3.2: the server commits the binding to persistent storage before sending the
DHCPACK. `LeaseWriter.commit()` returns an awaitable that completes only after the writer process has
appended it to the commit log and fdatasync'd it (`ztp.commitlog`); requests arriving while a transaction is
being written are gathered into the next one, so durability costs no throughput. The writer writes the
logged rows into the database once a second; every reader (`load_leases`) reads the log's rest on top.
The schema is versioned (`schema_version`) and upgraded in place when the database is opened
(`ztp db upgrade` does the same without serving).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from ztp import commitlog
from ztp.frames import FrameReader, frame
from ztp.ipkey import dotted
from ztp.leases.store.errors import LeaseDatabaseError, LeaseWriterError
from ztp.leases.table import Lease, LeaseState
from ztp.loopfd import unwatch
from ztp.rowwriter import ignore_stop_signals
from ztp.sqlbatch import CACHED_STATEMENTS, write_rows

log = logging.getLogger("ztp.leases")

# Version n's statements take a version n-1 database to version n. A database written before versioning
# (a `leases` table and no `schema_version`) is version 1: its CREATE is a no-op.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    ("""CREATE TABLE IF NOT EXISTS leases (
    ip       TEXT PRIMARY KEY,
    client   TEXT NOT NULL,
    mac      TEXT NOT NULL,
    state    TEXT NOT NULL,
    expires  REAL NOT NULL,
    updated  REAL NOT NULL,
    hostname TEXT
)""",),
    # 2: the vendor profile the device's DHCP fingerprint was recognised as (templates branch on it).
    ("ALTER TABLE leases ADD COLUMN vendor TEXT",),
    # 3: the commit log's position: this database's id (its segments repeat it) and the last segment it holds.
    ("CREATE TABLE commit_log (db_id TEXT NOT NULL, applied INTEGER NOT NULL)",
     "INSERT INTO commit_log (db_id, applied) VALUES (lower(hex(randomblob(8))), 0)"),
)
SCHEMA_VERSION = len(MIGRATIONS)
_UPSERT = "INSERT OR REPLACE INTO leases (ip, client, mac, state, expires, updated, hostname, vendor)"
APPLY_EVERY = 1.0  # seconds between the writer's rounds of writing the logged rows into the database
SEGMENT_BYTES = commitlog.SEGMENT_BYTES
BUSY_TIMEOUT = 5.0  # seconds the writer waits for another process's lock on the database before failing
RESPAWN_AFTER = 1.0  # seconds between attempts to start the writer process
CLOSE_TIMEOUT = 10.0  # seconds the writer process has to finish at close before it is killed


def database_path(state_dir: Path) -> Path:
    """Where the lease database lives under `state_dir`."""
    return state_dir / "leases.sqlite3"


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                           cached_statements=CACHED_STATEMENTS)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    _upgrade(conn)
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version: 0 when empty, 1 for a database written before versioning."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" in tables:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)
    return 1 if "leases" in tables else 0


def _upgrade(conn: sqlite3.Connection) -> tuple[int, int]:
    conn.execute("BEGIN IMMEDIATE")  # one upgrader at a time (two processes opening one state_dir)
    try:
        before = schema_version(conn)
        if before > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"lease database schema version {before} is newer than this ztp's "
                                        f"({SCHEMA_VERSION}): upgrade ztp")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied REAL NOT NULL)")
        for version in range(before + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
        if conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 0 or before < SCHEMA_VERSION:
            conn.execute("INSERT INTO schema_version (version, applied) VALUES (?, strftime('%s', 'now'))",
                         (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return before, SCHEMA_VERSION


def upgrade(path: Path) -> tuple[int, int]:
    """Create or migrate the database at `path`: (version before, version after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        return _upgrade(conn)
    finally:
        conn.close()


def load_leases(path: Path) -> list[Lease]:
    """Every lease on disk: the database's rows and, on top, those of the commit log it does not hold yet
    (an empty list when there is no database yet, or it has no rows yet); LeaseDatabaseError naming the file
    and the reason when it cannot be read."""
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        try:
            # Read-only (tools read a database `ztp serve` owns): a version 1 file has no vendor column yet.
            columns = {r[1] for r in conn.execute("PRAGMA table_info(leases)")}
            vendor = "vendor" if "vendor" in columns else "NULL"
            rows, logged = commitlog.overlay(conn, path, "SELECT ip, client, mac, state, expires, updated, "
                                                         f"hostname, {vendor} FROM leases")
        finally:
            conn.close()
        by_ip = {r[0]: r for r in rows}
        for r in logged:
            by_ip[r[0]] = r
        return [Lease(ip=IPv4Address(r[0]), client=r[1], mac=r[2], state=LeaseState(r[3]), expires=r[4],
                      updated=r[5], hostname=r[6], vendor=r[7]) for r in by_ip.values()]
    except sqlite3.OperationalError as exc:
        if str(exc) == "no such table: leases":
            return []  # created but never written to: the writer creates the table
        error: Exception = exc
    except (sqlite3.Error, ValueError, OSError) as exc:  # not a database, corrupt, or rows that are not leases
        error = exc
    raise LeaseDatabaseError(f"lease database {path} cannot be read: {error}. Not starting with an empty lease "
                             "table (its addresses would be handed out again): restore the file from a backup, "
                             "or move it away to start with no leases")


def _row(lease: Lease) -> tuple[str, str, str, str, float, float, str | None, str | None]:
    return (dotted(lease.ip), lease.client, lease.mac, lease.state.value, lease.expires, lease.updated,
            lease.hostname, lease.vendor)


class LeaseWriter:
    """Persists leases from the event loop through a writer process (`ztp.rowwriter`) that batches them into
    fdatasync'd transactions of the commit log.

    The embedded `ztp.leases.store.LeaseBackend`: one appliance owns the file, so nothing is shared.

    `commit` queues a row; once per pass of the event loop the rows queued in it go to the writer as one
    frame, and a commit's future completes when the writer acknowledges the transaction that held it. The
    writer is a process, not a thread: its work never takes the event loop's GIL (issue 14). `start` starts
    it (as `user` once it has the database open, when given); after it died the next commit starts another,
    at most once a second; the commits it held, or that arrive while it cannot be started, fail (no ACK
    leaves for them); the next writer first writes what the dead one logged into the database. Every
    APPLY_EVERY s the writer writes the logged rows into the database and checkpoints its WAL (PASSIVE);
    at `close` it writes the rest and deletes the log, then the WAL is truncated.
    """

    shared = False

    def __init__(self, path: Path, *, user: str | None = None) -> None:
        self.path = path
        self.user = user
        self._conn = _connect(path)  # creates or upgrades the schema; tools' reads and `write_all`
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._queued: list[tuple[Lease, asyncio.Future[None] | None]] = []
        self._out = bytearray()  # frames the pipe did not take yet
        self._inflight: deque[list[asyncio.Future[None]]] = deque()  # per frame sent, its waiting commits
        self._acks = FrameReader()
        self._next_spawn = 0.0
        self.transactions = 0
        self.rows = 0
        self.applied = 0  # rounds of the writer's writing logged rows into the database

    def load(self) -> list[Lease]:
        """Every lease row (call before `start`)."""
        return load_leases(self.path)

    def start(self, loop: asyncio.AbstractEventLoop,
              on_remote: Callable[[list[Lease]], None] | None = None) -> None:
        """Start the writer process; commits are made on `loop` (`on_remote` is never called: no peers)."""
        self._loop = loop
        self._spawn()

    def commit(self, lease: Lease) -> asyncio.Future[None]:
        """Queue a lease; the returned future completes once it is on stable storage."""
        assert self._loop is not None, "start() first"
        fut: asyncio.Future[None] = self._loop.create_future()
        self._queue(lease, fut)
        return fut

    def write_soon(self, lease: Lease) -> None:
        """Queue a lease nobody waits for (release, decline)."""
        self._queue(lease, None)

    def _queue(self, lease: Lease, fut: asyncio.Future[None] | None) -> None:
        if not self._queued:
            assert self._loop is not None, "start() first"
            self._loop.call_soon(self._flush)
        self._queued.append((lease, fut))

    def _flush(self) -> None:
        """Send what this pass of the loop queued as one frame."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        futures = [fut for _, fut in queued if fut is not None]
        if self._proc is None and not self._spawn():
            _settle(futures, LeaseWriterError(f"lease database {self.path}: the writer process is not running"))
            return
        self._inflight.append(futures)
        self._send(frame([_row(lease) for lease, _ in queued]))

    def _spawn(self) -> bool:
        assert self._loop is not None
        now = time.monotonic()
        if now < self._next_spawn:
            return False
        self._next_spawn = now + RESPAWN_AFTER
        try:
            proc = subprocess.Popen([sys.executable, "-m", "ztp.rowwriter", str(self.path), _UPSERT,
                                     str(BUSY_TIMEOUT), str(APPLY_EVERY), str(SEGMENT_BYTES), self.user or ""],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
                                    preexec_fn=ignore_stop_signals)
        except OSError as exc:
            log.error("lease database %s: cannot start the writer process: %s", self.path, exc)
            return False
        assert proc.stdin is not None and proc.stdout is not None
        os.set_blocking(proc.stdin.fileno(), False)
        self._loop.add_reader(proc.stdout.fileno(), self._readable)
        self._proc = proc
        self._acks = FrameReader()
        return True

    def _send(self, data: bytes) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and self._loop is not None
        if self._out:
            self._out += data
            return
        try:
            sent = os.write(proc.stdin.fileno(), data)
        except BlockingIOError:
            sent = 0
        except BrokenPipeError:
            return  # the writer died: its end of file on our reader fails what it held
        if sent < len(data):
            self._out += data[sent:]
            self._loop.add_writer(proc.stdin.fileno(), self._writable)

    def _writable(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and self._loop is not None
        try:
            sent = os.write(proc.stdin.fileno(), self._out)
        except BlockingIOError:
            return
        except BrokenPipeError:
            sent = len(self._out)
        del self._out[:sent]
        if not self._out:
            unwatch(self._loop, proc.stdin.fileno(), reader=False, writer=True)

    def _readable(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        try:
            data = os.read(proc.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        if not data:
            self._died()
            return
        self._acknowledged(self._acks.feed(data))

    def _acknowledged(self, acks: list[Any]) -> None:
        for frames, error, self.transactions, self.rows, self.applied in acks:
            failure = None if error is None else LeaseWriterError(f"lease database {self.path}: {error}")
            for _ in range(frames):
                _settle(self._inflight.popleft(), failure)

    def _died(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None and proc.stdin is not None and self._loop is not None
        unwatch(self._loop, proc.stdout.fileno())
        if self._out:
            unwatch(self._loop, proc.stdin.fileno(), reader=False, writer=True)
            self._out.clear()
        code = proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        self._proc = None
        error = LeaseWriterError(f"lease database {self.path}: the writer process exited (status {code})")
        log.error("%s; %d commits not made durable, none acknowledged", error,
                  sum(len(f) for f in self._inflight))
        while self._inflight:
            _settle(self._inflight.popleft(), error)

    def close(self) -> None:
        """Write what is queued, stop the writer process, then checkpoint the WAL into the database and close it."""
        self._flush()
        proc = self._proc
        if proc is not None:
            assert proc.stdin is not None and proc.stdout is not None and self._loop is not None
            unwatch(self._loop, proc.stdout.fileno())
            if self._out:
                unwatch(self._loop, proc.stdin.fileno(), reader=False, writer=True)
            os.set_blocking(proc.stdin.fileno(), True)
            # Any: its stderr is not piped, so communicate returns (bytes, None), not the (bytes, bytes) of
            # typeshed, which a compiled build would check.
            piped: Any = proc
            try:
                # The rest of what it was sent, end of input, then its last acknowledgements until it exits.
                rest = piped.communicate(bytes(self._out), timeout=CLOSE_TIMEOUT)[0]
            except subprocess.TimeoutExpired:
                log.error("lease database %s: the writer process did not stop in %s s; killed", self.path,
                          CLOSE_TIMEOUT)
                proc.kill()
                rest = piped.communicate()[0]
            self._out.clear()
            self._acknowledged(self._acks.feed(rest))
            proc.stdout.close()
            self._proc = None
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("lease database %s: final WAL checkpoint failed: %s", self.path, exc)
        self._conn.close()

    def write_all(self, leases: Iterable[Lease]) -> None:
        """Synchronous bulk write straight into the database (tests and the bench; not from the event loop, and
        not while a commit log is left: its rows, written in later, would replace these)."""
        write_rows(self._conn, _UPSERT, [_row(lease) for lease in leases])


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
