"""The embedded lease store (the default): SQLite in WAL mode with synchronous=FULL, one writer thread,
group commit.

RFC 2131 §3.1 (2) and §4.3.2: the server commits the binding to persistent storage before sending the
DHCPACK. `LeaseWriter.commit()` returns an awaitable that completes only after fsync; requests arriving
while a transaction is being written are gathered into the next one, so durability costs no throughput.
The schema is versioned (`schema_version`) and upgraded in place when the database is opened
(`ztp db upgrade` does the same without serving).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address
from pathlib import Path

from ztp.leases.store.writequeue import WriteQueue
from ztp.leases.table import Lease, LeaseState
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
)
SCHEMA_VERSION = len(MIGRATIONS)
_UPSERT = "INSERT OR REPLACE INTO leases (ip, client, mac, state, expires, updated, hostname, vendor)"
CHECKPOINT_EVERY = 1.0  # seconds between the checkpointer's passive WAL checkpoints


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


class LeaseDatabaseError(OSError):
    """The lease database exists but cannot be read. Starting with an empty table instead would hand out
    again every address it holds (duplicate addresses on the network), so `ztp serve` stops."""


def load_leases(path: Path) -> list[Lease]:
    """Every lease row on disk (an empty list when there is no database yet, or it has no rows yet);
    LeaseDatabaseError naming the file and the reason when it cannot be read."""
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            # Read-only (tools read a database `ztp serve` owns): a version 1 file has no vendor column yet.
            columns = {r[1] for r in conn.execute("PRAGMA table_info(leases)")}
            vendor = "vendor" if "vendor" in columns else "NULL"
            rows = conn.execute(f"SELECT ip, client, mac, state, expires, updated, hostname, {vendor} "
                                "FROM leases").fetchall()
        finally:
            conn.close()
        return [Lease(ip=IPv4Address(r[0]), client=r[1], mac=r[2], state=LeaseState(r[3]), expires=r[4],
                      updated=r[5], hostname=r[6], vendor=r[7]) for r in rows]
    except sqlite3.OperationalError as exc:
        if str(exc) == "no such table: leases":
            return []  # created but never written to: the writer creates the table
        error: Exception = exc
    except (sqlite3.Error, ValueError) as exc:  # not a database, corrupt, or rows that are not leases
        error = exc
    raise LeaseDatabaseError(f"lease database {path} cannot be read: {error}. Not starting with an empty lease "
                             "table (its addresses would be handed out again): restore the file from a backup, "
                             "or move it away to start with no leases")


def _row(lease: Lease) -> tuple[str, str, str, str, float, float, str | None, str | None]:
    return (str(lease.ip), lease.client, lease.mac, lease.state.value, lease.expires, lease.updated,
            lease.hostname, lease.vendor)


class LeaseWriter:
    """Persists leases from the event loop; a dedicated thread batches them into fsync'd transactions.

    The embedded `ztp.leases.store.LeaseBackend`: one appliance owns the file, so nothing is shared.

    The WAL is checkpointed by a thread of its own (PASSIVE, every CHECKPOINT_EVERY s: it never blocks the
    writer), not by the commit that happens to cross SQLite's 1,000-page mark: that commit copied the WAL
    into the database and synced it before its ACKs could leave, the slowest commits of a storm.
    """

    shared = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = _connect(path)
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread's job
        self._queue: WriteQueue[tuple[Lease, asyncio.Future[None] | None]] = WriteQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="lease-writer", daemon=True)
        self._stop_checkpoints = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoints, name="lease-checkpoint", daemon=True)
        self.transactions = 0
        self.rows = 0
        self.checkpoints = 0

    def load(self) -> list[Lease]:
        """Every lease row (call before `start`)."""
        return load_leases(self.path)

    def start(self, loop: asyncio.AbstractEventLoop,
              on_remote: Callable[[list[Lease]], None] | None = None) -> None:
        """Start the writer thread; futures are completed on `loop` (`on_remote` is never called: no peers)."""
        self._loop = loop
        self._thread.start()
        self._checkpointer.start()

    def _checkpoints(self) -> None:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            while not self._stop_checkpoints.wait(CHECKPOINT_EVERY):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # the commits go on; the WAL only grows until the next one works
                    log.warning("lease database %s: WAL checkpoint failed: %s", self.path, exc)
        finally:
            conn.close()

    def commit(self, lease: Lease) -> asyncio.Future[None]:
        """Queue a lease; the returned future completes once it is on stable storage."""
        assert self._loop is not None, "start() first"
        fut: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((lease, fut))
        return fut

    def write_soon(self, lease: Lease) -> None:
        """Queue a lease nobody waits for (release, decline)."""
        self._queue.put((lease, None))

    def _run(self) -> None:
        while (batch := self._queue.take()) is not None:
            error: BaseException | None = None
            try:
                write_rows(self._conn, _UPSERT, [_row(lease) for lease, _ in batch])
                self.transactions += 1
                self.rows += len(batch)
            except sqlite3.Error as exc:
                error = exc
            futures = [f for _, f in batch if f is not None]
            if futures and self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(_settle, futures, error)

    def close(self) -> None:
        """Write what is queued, then stop the threads, checkpoint the WAL into the database and close it."""
        self._queue.close()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._stop_checkpoints.set()
        if self._checkpointer.is_alive():
            self._checkpointer.join(timeout=10)
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("lease database %s: final WAL checkpoint failed: %s", self.path, exc)
        self._conn.close()

    def write_all(self, leases: Iterable[Lease]) -> None:
        """Synchronous bulk write (tools and tests; not from the event loop)."""
        write_rows(self._conn, _UPSERT, [_row(lease) for lease in leases])


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
