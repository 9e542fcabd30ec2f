"""The shared lease store: PostgreSQL, for several appliances serving the same pools.

The database decides who gets an address. `leases.ip` is the primary key and every write is one
conditional upsert: it replaces the address's row only when that row is the same client's, released, or
run out (`expires <= updated` of the new row); otherwise it writes nothing and the commit fails with
`LeaseConflict` carrying the winning row, which goes to the appliance's cache first, so the handler chain
stops offering the address. Whoever commits first wins, on any number of appliances.

Durability: `synchronous_commit = on` on the writer's session (whatever the server's default), so a
commit returns once the WAL is flushed (and replicated, if the server is set up for synchronous
replication) — before the ACK leaves. A writer thread gathers every commit queued while the previous
transaction was being written into one transaction, sent in one pipelined round trip (group commit).

Other appliances' writes reach the cache through LISTEN/NOTIFY (a trigger sends each written row) on a
second connection; on (re)connect and every `refresh` seconds the rows written since the last look
(`seq`, a sequence every write takes) are read again, so a notification lost while disconnected is not
a lease lost. A database that cannot be reached fails every commit (`StoreUnavailable`: the appliance
sends no ACK it could not store, and logs why); both connections come back by themselves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import Any

import psycopg

from ztp.leases.store import LeaseConflict, StoreError, StoreUnavailable
from ztp.leases.store.writequeue import WriteQueue
from ztp.leases.table import Lease, LeaseState

log = logging.getLogger("ztp.leases")

CHANNEL = "ztp_leases"
CONNECT_TIMEOUT = 5
LOAD_LOOKBACK = 10_000  # writes re-read by the first catch-up after load()
_LOCK_KEY = 0x7A7470  # pg_advisory_xact_lock key: one `ztp db upgrade` at a time

# Version n's statements take a version n-1 database to version n.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE SEQUENCE ztp_lease_seq",
        """CREATE TABLE leases (
            ip        inet PRIMARY KEY,
            client    text NOT NULL,
            mac       text NOT NULL,
            state     text NOT NULL CHECK (state IN ('offered', 'bound', 'released', 'declined')),
            expires   double precision NOT NULL,
            updated   double precision NOT NULL,
            hostname  text,
            appliance text NOT NULL DEFAULT '',
            seq       bigint NOT NULL DEFAULT nextval('ztp_lease_seq')
        )""",
        "CREATE INDEX leases_client ON leases (client)",
        "CREATE INDEX leases_seq ON leases (seq)",
        f"""CREATE FUNCTION ztp_lease_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', json_build_array(host(NEW.ip), NEW.client, NEW.mac, NEW.state,
                NEW.expires, NEW.updated, NEW.hostname, NEW.appliance, NEW.seq)::text);
            RETURN NULL;
        END $$""",
        "CREATE TRIGGER leases_notify AFTER INSERT OR UPDATE ON leases FOR EACH ROW "
        "EXECUTE FUNCTION ztp_lease_notify()",
    ),
    (
        # The vendor profile the device's DHCP fingerprint was recognised as (templates branch on it),
        # appended to the notification so that older positions keep their meaning. Idempotent.
        "ALTER TABLE leases ADD COLUMN IF NOT EXISTS vendor text",
        f"""CREATE OR REPLACE FUNCTION ztp_lease_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', json_build_array(host(NEW.ip), NEW.client, NEW.mac, NEW.state,
                NEW.expires, NEW.updated, NEW.hostname, NEW.appliance, NEW.seq, NEW.vendor)::text);
            RETURN NULL;
        END $$""",
    ),
    (  # 3: device timelines shared by every appliance (ztp.timeline.postgres)
        """CREATE TABLE timeline (
            id        bigserial PRIMARY KEY,
            key       text NOT NULL,
            at        double precision NOT NULL,
            kind      text NOT NULL,
            text      text NOT NULL,
            mac       text,
            ip        text,
            detail    text NOT NULL,
            appliance text NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX timeline_key ON timeline (key, id)",
        "CREATE INDEX timeline_at ON timeline (at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_COLUMNS = "host(ip), client, mac, state, expires, updated, hostname, appliance, seq, vendor"
# The one write: a row for an address replaces the current one only if that is the same client's, released,
# or run out by the time the new row was decided. RETURNING is empty when it was not written.
_UPSERT = """
INSERT INTO leases AS l (ip, client, mac, state, expires, updated, hostname, appliance, vendor)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (ip) DO UPDATE SET client = EXCLUDED.client, mac = EXCLUDED.mac, state = EXCLUDED.state,
    expires = EXCLUDED.expires, updated = EXCLUDED.updated, hostname = EXCLUDED.hostname,
    appliance = EXCLUDED.appliance, vendor = EXCLUDED.vendor, seq = nextval('ztp_lease_seq')
WHERE l.client = EXCLUDED.client OR l.state = 'released' OR l.expires <= EXCLUDED.updated
RETURNING 1
"""


_INSERT_NEW = """
INSERT INTO leases (ip, client, mac, state, expires, updated, hostname, appliance, vendor)
VALUES (%s, %s, %s, %s, %s, %s, %s, '', %s)
ON CONFLICT (ip) DO NOTHING
RETURNING 1
"""


def import_rows(dsn: str, leases: list[Lease], *, where: str = "state.dsn") -> int:
    """Insert `leases` in one transaction, skipping every address that already has a row (so running it
    twice changes nothing); how many were inserted. Running appliances hear of them (the trigger)."""
    with _connect(dsn, where) as conn:
        _check_schema(conn, dsn, where)
        inserted = 0
        with conn.cursor() as cur:
            cur.executemany(_INSERT_NEW, [(str(x.ip), x.client, x.mac, x.state.value, x.expires, x.updated,
                                           x.hostname, x.vendor) for x in leases], returning=True)
            while leases:
                inserted += cur.fetchone() is not None
                if not cur.nextset():
                    break
        conn.commit()
    return inserted


def redact(dsn: str) -> str:
    """`dsn` without its password (URI or key=value form), for logs and errors."""
    dsn = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", dsn)
    return re.sub(r"(password\s*=\s*)(\S+)", r"\1***", dsn)


def _reason(exc: BaseException) -> str:
    """The first line of a libpq message (they run over several lines), or the exception's type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connect(dsn: str, where: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    try:
        # A database host that vanishes (power, network) must fail commits within seconds, not after TCP's
        # retransmission timeout (minutes): keepalives on idle connections, tcp_user_timeout (ms) on sent
        # data. Unix-socket connections ignore them.
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT,
                               application_name="ztp", keepalives=1, keepalives_idle=5, keepalives_interval=2,
                               keepalives_count=3, tcp_user_timeout=10_000)
    except psycopg.Error as exc:
        raise StoreUnavailable(f"{where}: cannot reach the lease database {redact(dsn)}: {_reason(exc)}") from None


def _schema_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    version = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(version[0] or 0) if version else 0


def upgrade(dsn: str, *, where: str = "state.dsn") -> tuple[int, int]:
    """Create or migrate the schema (one upgrader at a time, in one transaction): (before, after)."""
    with _connect(dsn, where) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        before = _schema_version(conn)
        if before > SCHEMA_VERSION:
            raise StoreError(f"{where}: the lease database's schema version {before} is newer than this ztp's "
                             f"({SCHEMA_VERSION}): upgrade ztp on this appliance")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                     "(version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())")
        for version in range(before + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        conn.commit()
    return before, SCHEMA_VERSION


def _check_schema(conn: psycopg.Connection[Any], dsn: str, where: str) -> None:
    version = _schema_version(conn)
    conn.rollback()
    if version != SCHEMA_VERSION:
        fix = "run `ztp db upgrade --config FILE` once (from any appliance)" if version < SCHEMA_VERSION \
            else "upgrade ztp on this appliance"
        raise StoreError(f"{where}: the lease database {redact(dsn)} has schema version {version}, this ztp "
                         f"needs {SCHEMA_VERSION}: {fix}")


def _lease(row: Sequence[Any]) -> Lease:
    return Lease(ip=IPv4Address(row[0]), client=row[1], mac=row[2], state=LeaseState(row[3]),
                 expires=float(row[4]), updated=float(row[5]), hostname=row[6],
                 vendor=row[9] if len(row) > 9 else None)


def read_rows(dsn: str, *, where: str = "state.dsn") -> list[Lease]:
    """Every lease row (tools)."""
    with _connect(dsn, where) as conn:
        _check_schema(conn, dsn, where)
        return [_lease(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM leases").fetchall()]


Pending = tuple[Lease, "asyncio.Future[None] | None"]
Lookup = tuple[str, "asyncio.Future[list[Lease]]"]


class PostgresStore:
    """The shared `LeaseBackend`: a writer thread (group commit) and a listener thread (other appliances'
    rows), each on its own connection."""

    shared = True

    def __init__(self, dsn: str, *, refresh: float = 30.0, where: str = "state.dsn") -> None:
        """Connect and check the schema now, so that a wrong DSN or an old schema stops `ztp serve` at start
        (StoreError naming `where`, the config file and line, and the fix)."""
        self.dsn = dsn
        self.where = where
        self.refresh = refresh
        self.appliance = uuid.uuid4().hex[:12]  # this process's writes, recognised in notifications
        self._conn: psycopg.Connection[Any] | None = self._open()
        # Writes are (lease, future or None); lookups are (client, future of rows): told apart by the first.
        self._queue: WriteQueue[Pending | Lookup] = WriteQueue()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_remote: Callable[[list[Lease]], None] | None = None
        self._writer = threading.Thread(target=self._run, name="lease-writer-pg", daemon=True)
        self._listener = threading.Thread(target=self._listen, name="lease-listener-pg", daemon=True)
        self._marks = (0, 0)  # seq seen two refreshes ago, at the last refresh
        self.transactions = 0
        self.rows = 0
        self.conflicts = 0
        self.remote_rows = 0
        self._down_since: float | None = None

    def _open(self) -> psycopg.Connection[Any]:
        conn = _connect(self.dsn, self.where)
        try:
            _check_schema(conn, self.dsn, self.where)
            # Durable before the ACK whatever the server or role default says.
            conn.execute("SET synchronous_commit = on")
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    # --- LeaseBackend -------------------------------------------------------------------------------

    def load(self) -> list[Lease]:
        """Every lease row; remembers the newest `seq` so the listener reads only what is newer."""
        assert self._conn is not None
        rows = self._conn.execute(f"SELECT {_COLUMNS} FROM leases").fetchall()
        self._conn.rollback()
        top = max((int(r[8]) for r in rows), default=0)
        # A write that took its sequence number before `top` may commit after this read: the listener's
        # first catch-up looks a generous number of writes back (rows already known are skipped on merge).
        self._marks = (max(0, top - LOAD_LOOKBACK), top)
        return [_lease(r) for r in rows]

    def start(self, loop: asyncio.AbstractEventLoop,
              on_remote: Callable[[list[Lease]], None] | None = None) -> None:
        """Start the writer and (with `on_remote`) the listener; futures complete on `loop`."""
        self._loop = loop
        self._on_remote = on_remote
        self._writer.start()
        if on_remote is not None:
            self._listener.start()

    def commit(self, lease: Lease) -> asyncio.Future[None]:
        """Queue `lease`; the future completes once it is committed (or fails: LeaseConflict, StoreError)."""
        assert self._loop is not None, "start() first"
        fut: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((lease, fut))
        return fut

    def lookup(self, client: str) -> asyncio.Future[list[Lease]]:
        """Every row of `client` in the database (read-through for a key the cache does not know); lookups
        queued together are one query. Fails with StoreError when the database cannot be reached."""
        assert self._loop is not None, "start() first"
        fut: asyncio.Future[list[Lease]] = self._loop.create_future()
        self._queue.put((client, fut))
        return fut

    def write_soon(self, lease: Lease) -> None:
        """Queue a lease nobody waits for."""
        self._queue.put((lease, None))

    def close(self) -> None:
        """Write what is queued, then stop both threads and close the connections."""
        self._queue.close()
        self._stop.set()
        if self._writer.is_alive():
            self._writer.join(timeout=10)
        if self._listener.is_alive():
            self._listener.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write_all(self, leases: list[Lease]) -> list[bool]:
        """Synchronous batch write (tools, tests, migration; not from the event loop): which rows won."""
        return self._write([(lease, None) for lease in leases])

    # --- writer thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        while (items := self._queue.take()) is not None:
            batch: list[Pending] = []
            lookups: list[Lookup] = []
            for item in items:
                if isinstance(item[0], str):
                    lookups.append(item)
                else:
                    batch.append(item)
            if lookups:
                self._read_clients(lookups)
            if not batch:
                continue
            error: BaseException | None = None
            won: list[bool] = []
            try:
                won = self._write(batch)
            except StoreError as exc:
                error = exc
            except psycopg.Error as exc:  # a statement failed: the transaction was rolled back
                error = exc
            self._deliver(batch, won, error)

    def _read_clients(self, lookups: list[Lookup]) -> None:
        found: dict[str, list[Lease]] = {client: [] for client, _ in lookups}
        error: BaseException | None = None
        try:
            conn = self._conn
            if conn is None or conn.closed:
                conn = self._conn = self._open()
            rows = conn.execute(f"SELECT {_COLUMNS} FROM leases WHERE client = ANY(%s)", (list(found),)).fetchall()
            conn.rollback()
            for row in rows:
                found[row[1]].append(_lease(row))
        except psycopg.OperationalError as exc:
            self._lost(self._conn, exc)
            error = StoreUnavailable(f"lease database {redact(self.dsn)} unreachable: {_reason(exc)}")
        except (psycopg.Error, StoreError) as exc:
            error = exc
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        results = [(fut, found[client], error) for client, fut in lookups]
        try:
            loop.call_soon_threadsafe(_settle_lookups, results)
        except RuntimeError:
            pass

    def _write(self, batch: list[Pending]) -> list[bool]:
        """One transaction for the batch, pipelined; which rows were written. StoreUnavailable when the
        database cannot be reached. A connection kept from earlier batches may have died quietly (the
        database restarted, an idle timeout): then the batch gets one more try on a fresh connection, so the
        first requests after that are not refused for nothing (a row of the same client may be written twice:
        the second write changes nothing)."""
        reused = self._conn is not None and not self._conn.closed
        try:
            return self._write_once(batch)
        except StoreUnavailable:
            if not reused:
                raise
            return self._write_once(batch)

    def _write_once(self, batch: list[Pending]) -> list[bool]:
        conn = self._conn
        try:
            if conn is None or conn.closed:
                conn = self._conn = self._open()
                if self._down_since is not None:
                    log.warning("lease database %s reachable again after %.0f s", redact(self.dsn),
                                time.monotonic() - self._down_since)
                    self._down_since = None
            params = [(str(x.ip), x.client, x.mac, x.state.value, x.expires, x.updated, x.hostname,
                       self.appliance, x.vendor) for x, _ in batch]
            won: list[bool] = []
            with conn.cursor() as cur:
                cur.executemany(_UPSERT, params, returning=True)
                while True:
                    won.append(cur.fetchone() is not None)
                    if not cur.nextset():
                        break
            conn.commit()
        except psycopg.OperationalError as exc:
            self._lost(conn, exc)
            raise StoreUnavailable(f"lease database {redact(self.dsn)} unreachable: {_reason(exc)}") from None
        except StoreUnavailable as exc:
            self._lost(conn, exc)
            raise
        except psycopg.Error:
            if conn is not None and not conn.closed:
                conn.rollback()
            raise
        self.transactions += 1
        self.rows += sum(won)
        return won

    def _lost(self, conn: psycopg.Connection[Any] | None, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("lease database %s unreachable (%s): no lease can be written, so no DHCP ACK is sent "
                      "until it is back", redact(self.dsn), _reason(exc))
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass
        self._conn = None

    def _deliver(self, batch: list[Pending], won: list[bool], error: BaseException | None) -> None:
        """Settle the batch's futures on the loop; losers' winning rows reach the cache first."""
        losers = [lease for (lease, _), ok in zip(batch, won, strict=False) if not ok] if error is None else []
        current: dict[IPv4Address, Lease] = {}
        if losers:
            self.conflicts += len(losers)
            try:
                current = self._rows_at([x.ip for x in losers])
            except (psycopg.Error, StoreError) as exc:
                log.warning("lease database: re-reading %d contested address(es) failed: %s", len(losers), exc)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        results: list[tuple[asyncio.Future[None], BaseException | None]] = []
        for i, (lease, fut) in enumerate(batch):
            if fut is None:
                continue
            if error is not None:
                results.append((fut, error))
            elif not won[i]:
                results.append((fut, LeaseConflict(lease, current.get(lease.ip))))
            else:
                results.append((fut, None))
        fresh = list(current.values())
        try:
            loop.call_soon_threadsafe(self._settle, results, fresh)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _rows_at(self, ips: list[IPv4Address]) -> dict[IPv4Address, Lease]:
        conn = self._conn
        if conn is None:
            return {}
        rows = conn.execute(f"SELECT {_COLUMNS} FROM leases WHERE ip = ANY(%s::inet[])",
                            ([str(ip) for ip in ips],)).fetchall()
        conn.rollback()
        return {x.ip: x for x in map(_lease, rows)}

    def _settle(self, results: list[tuple[asyncio.Future[None], BaseException | None]],
                fresh: list[Lease]) -> None:
        if fresh and self._on_remote is not None:
            self._on_remote(fresh)  # the cache learns the winners before the losers' callers hear "no"
        for fut, error in results:
            if fut.done():
                continue
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

    # --- listener thread ----------------------------------------------------------------------------

    def _listen(self) -> None:
        backoff = 0.5
        failing = False
        while not self._stop.is_set():
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = _connect(self.dsn, self.where, autocommit=True)
                conn.execute(f"LISTEN {CHANNEL}")
                self._catch_up(conn)  # what was written while we were not listening
                backoff, failing = 0.5, False
                next_refresh = time.monotonic() + self.refresh
                while not self._stop.is_set():
                    rows = self._notified(conn)
                    if rows:
                        self._hand_over(rows)
                    if time.monotonic() >= next_refresh:
                        self._catch_up(conn)
                        next_refresh = time.monotonic() + self.refresh
            except (psycopg.Error, StoreError) as exc:
                if not self._stop.is_set():
                    # Once per outage at warning (the writer logs the outage itself), then quietly.
                    log.log(logging.DEBUG if failing else logging.WARNING,
                            "lease database listener: %s; reconnecting in %.1f s", _reason(exc), backoff)
                failing = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                if conn is not None:
                    conn.close()

    def _notified(self, conn: psycopg.Connection[Any]) -> list[Lease]:
        """Wait up to 0.5 s for a notification, then take whatever else is already queued."""
        rows: list[Lease] = []
        for notify in conn.notifies(timeout=0.5, stop_after=1):
            self._take(notify.payload, rows)
        if rows:
            for notify in conn.notifies(timeout=0.005, stop_after=5000):
                self._take(notify.payload, rows)
        return rows

    def _take(self, payload: str, rows: list[Lease]) -> None:
        try:
            row = json.loads(payload)
        except ValueError:
            return
        if row[7] != self.appliance:
            rows.append(_lease(row))

    def _catch_up(self, conn: psycopg.Connection[Any]) -> None:
        """Rows written since the refresh before last: sequence numbers are taken before commit, so a row
        with a lower `seq` may become visible after a higher one; looking one refresh further back catches
        it (transactions are far shorter than `refresh`)."""
        older, last = self._marks
        rows = conn.execute(f"SELECT {_COLUMNS} FROM leases WHERE seq > %s",
                            (older,)).fetchall()
        top = max((int(r[8]) for r in rows), default=last)
        self._marks = (last, max(top, last))
        theirs = [_lease(r) for r in rows if r[7] != self.appliance]
        if theirs:
            self._hand_over(theirs)

    def _hand_over(self, rows: list[Lease]) -> None:
        self.remote_rows += len(rows)
        loop, on_remote = self._loop, self._on_remote
        if loop is None or on_remote is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(on_remote, rows)
        except RuntimeError:
            pass


def _settle_lookups(results: list[tuple[asyncio.Future[list[Lease]], list[Lease], BaseException | None]]) -> None:
    for fut, leases, error in results:
        if fut.done():
            continue
        if error is None:
            fut.set_result(leases)
        else:
            fut.set_exception(error)
