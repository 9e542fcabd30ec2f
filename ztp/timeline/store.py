"""Where timeline events are kept: an SQLite file beside the lease database, behind `TimelineStore`.

`TimelineStore` is the whole interface the recorder and the tools use (append a batch, load what is
retained, prune), so the events can move with the leases to another database (PostgreSQL, issue 13) by
adding one more implementation. `SqliteTimelineStore` keeps them in `timeline.sqlite3` under `state_dir`,
not in the lease database: a batch of events holds the SQLite write lock while it is written, and in the
lease database's file that lock would stall the lease writer (and every ACK waiting on it) behind the
history. Timeline writes are batched and never fsync'd one by one (WAL with synchronous=NORMAL: a crash may
lose the last second of history, never a lease).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ztp.sqlbatch import CACHED_STATEMENTS, write_rows
from ztp.timeline.machine import Event, Kind

if TYPE_CHECKING:
    from ztp.config import Config

_SCHEMA = """
CREATE TABLE IF NOT EXISTS timeline (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    key    TEXT NOT NULL,
    at     REAL NOT NULL,
    kind   TEXT NOT NULL,
    text   TEXT NOT NULL,
    mac    TEXT,
    ip     TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_key ON timeline (key, id);
CREATE INDEX IF NOT EXISTS timeline_at ON timeline (at);
"""


class TimelineStore(Protocol):
    """Durable timeline events (bounded: `prune`)."""

    def append(self, events: list[Event]) -> None:
        """Store a batch of events (one transaction)."""
        ...

    def load(self, since: float) -> list[Event]:
        """Every retained event at or after `since`, oldest first."""
        ...

    def device_events(self, key: str, limit: int = 1000) -> list[Event]:
        """The newest `limit` events of one device, oldest first."""
        ...

    def prune(self, before: float, per_device: int) -> int:
        """Drop events older than `before` and all but the newest `per_device` of each device; how many."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...


def _event(row: tuple[str, float, str, str, str | None, str | None, str]) -> Event | None:
    try:
        kind = Kind(row[2])
    except ValueError:
        return None  # a kind from a newer ztp: skipped, not fatal
    return Event(key=row[0], at=row[1], kind=kind, text=row[3], mac=row[4], ip=row[5], detail=json.loads(row[6]))



_ENCODE_DETAIL = json.JSONEncoder(default=str, separators=(",", ":")).encode  # one encoder, not one per event


def event_row(e: Event) -> tuple[str, float, str, str, str | None, str | None, str]:
    """An event as a row (key, at, kind, text, mac, ip, detail as JSON): what every store writes.

    Built on the timeline's writer thread for hundreds of events per tick of a storm, so it is kept lean:
    `json.dumps(..., default=str)` built a new encoder per event, and half of the events have no detail."""
    detail = e.detail
    text = _ENCODE_DETAIL(detail if type(detail) is dict else dict(detail)) if detail else "{}"
    return (e.key, e.at, e.kind.value, e.text, e.mac, e.ip, text)


def timeline_path(state_dir: Path) -> Path:
    """Where the device history lives under `state_dir` (its own file: see the module docstring)."""
    return state_dir / "timeline.sqlite3"

class SqliteTimelineStore:
    """`TimelineStore` in an SQLite file (`timeline_path`); read-only for tools when asked."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if read_only:
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10,
                                         cached_statements=CACHED_STATEMENTS)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)

    @classmethod
    def in_state_dir(cls, state_dir: Path, *, read_only: bool = False) -> SqliteTimelineStore:
        """The store in `timeline_path(state_dir)`."""
        return cls(timeline_path(state_dir), read_only=read_only)

    def append(self, events: list[Event]) -> None:
        """Store a batch of events (one transaction)."""
        if not events:
            return
        write_rows(self._conn, "INSERT INTO timeline (key, at, kind, text, mac, ip, detail)",
                   [event_row(e) for e in events])

    def load(self, since: float) -> list[Event]:
        """Every retained event at or after `since`, oldest first (none when the table does not exist)."""
        try:
            rows = self._conn.execute("SELECT key, at, kind, text, mac, ip, detail FROM timeline WHERE at >= ? "
                                      "ORDER BY id", (since,)).fetchall()
        except sqlite3.OperationalError:
            return []
        return [e for e in map(_event, rows) if e is not None]

    def device_events(self, key: str, limit: int = 1000) -> list[Event]:
        """The newest `limit` events of one device, oldest first."""
        try:
            rows = self._conn.execute("SELECT key, at, kind, text, mac, ip, detail FROM timeline WHERE key = ? "
                                      "ORDER BY id DESC LIMIT ?", (key, limit)).fetchall()
        except sqlite3.OperationalError:
            return []
        return [e for e in map(_event, reversed(rows)) if e is not None]

    def prune(self, before: float, per_device: int) -> int:
        """Drop events older than `before`, and all but the newest `per_device` of each device."""
        cur = self._conn.execute("DELETE FROM timeline WHERE at < ?", (before,))
        removed = cur.rowcount
        cur = self._conn.execute(
            "DELETE FROM timeline WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER "
            "(PARTITION BY key ORDER BY id DESC) AS n FROM timeline) WHERE n > ?)", (per_device,))
        return removed + cur.rowcount

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def store_all(store: TimelineStore, events: Iterable[Event]) -> None:
    """Append `events` in one batch (tools and tests)."""
    store.append(list(events))


def open_timeline(config: Config, *, appliance: str = "", read_only: bool = False) -> TimelineStore:
    """The configured timeline store: the shared database's (`ztp.timeline.postgres`, rows marked with
    `appliance`) when `state.backend` is postgresql, else the SQLite file under `state_dir`. StoreError
    (a wrong DSN, an old schema: `ztp db upgrade`) names the config line and the fix."""
    if config.state.backend == "postgresql":
        from ztp.timeline.postgres import PostgresTimelineStore

        assert config.state.dsn is not None
        return PostgresTimelineStore(config.state.dsn, appliance=appliance,
                                     where=f"{config.path}:{config.line('state', 'dsn')}")
    return SqliteTimelineStore.in_state_dir(config.state_dir, read_only=read_only)
