"""Device timelines in the shared PostgreSQL (issue 13): every appliance writes its events to one table, so
either appliance's API, dashboard and `ztp status` show a device's whole story.

`PostgresTimelineStore` is a `TimelineStore` (ztp.timeline.store) on the lease database's DSN; its table comes
with the lease schema (version 2 of `ztp.leases.store.postgres.MIGRATIONS`, created by `ztp db upgrade`). It
has its own connections, never the lease writer's: history must not queue behind (or in front of) the lease
commits an ACK waits for. Like the SQLite store it is used from one thread at a time (the recorder's writer
thread); `remote()`, the catch-up on other appliances' events, uses a second connection from another thread.

Every row names the appliance that wrote it (`appliance`, the lease store's id of this process). `remote()`
returns the events other appliances wrote since the last call, at most `batch` of them, so each appliance's
state machine follows devices served by the others. Ids are taken before commit, so a row with a lower id
may become visible after a higher one: each call looks back from the id seen two calls ago and skips the
ids the previous call returned (transactions are far shorter than the polling interval).

A database that cannot be reached fails `append` (the recorder logs the lost batch: history, never a lease)
and the next call connects again.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from ztp.leases.store import StoreUnavailable
from ztp.leases.store.postgres import _check_schema, _connect, _reason, redact
from ztp.timeline.machine import Event
from ztp.timeline.store import _event, event_row

_COLUMNS = "key, at, kind, text, mac, ip, detail"
LOOKBACK = 1000  # ids re-read by the first remote() after load()


class PostgresTimelineStore:
    """`TimelineStore` in the shared database's `timeline` table (see the module docstring)."""

    def __init__(self, dsn: str, *, appliance: str = "", where: str = "state.dsn", batch: int = 5000) -> None:
        """Connect and check the schema now: a wrong DSN or an old schema is a StoreError naming `where`."""
        self.dsn = dsn
        self.where = where
        self.appliance = appliance
        self.batch = batch
        self._conn: psycopg.Connection[Any] | None = self._open()
        self._poll_conn: psycopg.Connection[Any] | None = None
        self._poll_lock = threading.Lock()
        self._marks = (0, 0)  # id seen two remote() calls ago, at the last one
        self._seen: set[int] = set()  # ids the last remote() call returned
        self.remote_events = 0

    def _open(self) -> psycopg.Connection[Any]:
        conn = _connect(self.dsn, self.where)
        try:
            _check_schema(conn, self.dsn, self.where)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, fn: Any) -> Any:
        """`fn(conn)` in a transaction on the main connection, reconnecting once; StoreUnavailable when down."""
        for attempt in (0, 1):
            conn = self._conn
            reused = conn is not None and not conn.closed
            try:
                if conn is None or conn.closed:
                    conn = self._conn = self._open()
                result = fn(conn)
                conn.commit()
                return result
            except psycopg.OperationalError as exc:
                self._drop()
                if attempt == 0 and reused:
                    continue  # a connection that died quietly (database restarted): one fresh try
                raise StoreUnavailable(f"timeline database {redact(self.dsn)} unreachable: {_reason(exc)}") \
                    from None
            except psycopg.Error:
                if conn is not None and not conn.closed:
                    conn.rollback()
                raise
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None

    def append(self, events: list[Event]) -> None:
        """Store a batch of events (one transaction)."""
        if not events:
            return
        rows = [(*event_row(e), self.appliance) for e in events]

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO timeline (key, at, kind, text, mac, ip, detail, appliance) "
                                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)

        self._run(write)

    def load(self, since: float) -> list[Event]:
        """Every retained event at or after `since`, oldest first (every appliance's); `remote()` then
        returns only what is newer."""
        rows: list[tuple[Any, ...]] = self._run(lambda conn: conn.execute(
            f"SELECT id, {_COLUMNS}, appliance FROM timeline WHERE at >= %s ORDER BY id", (since,)).fetchall())
        head = max((int(r[0]) for r in rows), default=0)
        head = max(head, self._head())
        floor = max(0, head - LOOKBACK)
        with self._poll_lock:
            self._marks = (floor, head)
            self._seen = {int(r[0]) for r in rows if int(r[0]) > floor}
        return [e for e in (_event(tuple(r[1:8])) for r in rows) if e is not None]

    def _head(self) -> int:
        row = self._run(lambda conn: conn.execute("SELECT coalesce(max(id), 0) FROM timeline").fetchone())
        return int(row[0]) if row else 0

    def device_events(self, key: str, limit: int = 1000) -> list[Event]:
        """The newest `limit` events of one device (from every appliance), oldest first."""
        rows: list[tuple[Any, ...]] = self._run(lambda conn: conn.execute(
            f"SELECT {_COLUMNS} FROM timeline WHERE key = %s ORDER BY id DESC LIMIT %s", (key, limit)).fetchall())
        return [e for e in map(_event, reversed(rows)) if e is not None]

    def prune(self, before: float, per_device: int) -> int:
        """Drop events older than `before`, and all but the newest `per_device` of each device (any appliance
        may prune: the same rule gives the same result)."""
        def delete(conn: psycopg.Connection[Any]) -> int:
            removed = conn.execute("DELETE FROM timeline WHERE at < %s", (before,)).rowcount
            removed += conn.execute(
                "DELETE FROM timeline WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER "
                "(PARTITION BY key ORDER BY id DESC) AS n FROM timeline) ranked WHERE n > %s)",
                (per_device,)).rowcount
            return int(removed)

        result: int = self._run(delete)
        return result

    def remote(self) -> list[Event]:
        """Events other appliances stored since the last call (at most `batch`), oldest first; [] and a fresh
        connection next time when the database cannot be reached (StoreUnavailable is raised once)."""
        with self._poll_lock:
            conn = self._poll_conn
            try:
                if conn is None or conn.closed:
                    conn = self._poll_conn = _connect(self.dsn, self.where, autocommit=True)
                older, last = self._marks
                head_row = conn.execute("SELECT coalesce(max(id), 0) FROM timeline").fetchone()
                head = int(head_row[0]) if head_row else 0
                rows = conn.execute(f"SELECT id, {_COLUMNS} FROM timeline WHERE id > %s AND id <= %s "
                                    "AND appliance <> %s ORDER BY id LIMIT %s",
                                    (older, head, self.appliance, self.batch)).fetchall()
            except psycopg.OperationalError as exc:
                if conn is not None:
                    conn.close()
                self._poll_conn = None
                raise StoreUnavailable(f"timeline database {redact(self.dsn)} unreachable: {_reason(exc)}") \
                    from None
            seen = self._seen
            fresh = [r for r in rows if int(r[0]) not in seen]
            self._seen = {int(r[0]) for r in rows}
            if len(rows) >= self.batch:  # more to read: go on from the last id returned
                top = int(rows[-1][0])
                self._marks = (top, max(top, last))
            else:
                self._marks = (last, max(head, last))
        events = [e for e in (_event(tuple(r[1:])) for r in fresh) if e is not None]
        self.remote_events += len(events)
        return events

    def close(self) -> None:
        """Close both connections."""
        self._drop()
        with self._poll_lock:
            if self._poll_conn is not None:
                self._poll_conn.close()
                self._poll_conn = None
