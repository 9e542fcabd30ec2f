"""Where leases are kept: one small interface, two backends.

`state.backend: sqlite` (the default, `ztp.leases.store.sqlite`) is embedded: one appliance, one file under
`state_dir`. `state.backend: postgresql` (`ztp.leases.store.postgres`) lets several appliances share pools
and leases through one database: the database decides who gets an address (a unique address and a
conditional upsert), and each appliance's in-memory `LeaseTable` is a read cache that other appliances'
writes reach through `on_remote`.

The interface (`LeaseBackend`) is what `ztp.app` uses; the ledger needs only `commit`
(`ztp.leases.ledger.LeaseStore`). Both backends:

- `load()` returns every row (before `start`);
- `commit(lease)` returns a future completed once the row is durable (RFC 2131 §4.3.2: before the ACK),
  or failed: `LeaseConflict` when another appliance holds the address, `StoreUnavailable` when the
  database cannot be reached; concurrent commits are written in one transaction (group commit);
- `start(loop, on_remote)` starts the writer; `on_remote(leases)` is called on `loop` with rows other
  appliances wrote (never for a single-appliance backend);
- `close()` writes what is queued and stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ztp.leases.store.sqlite import LeaseWriter, database_path, load_leases
from ztp.leases.table import Lease, LeaseState

if TYPE_CHECKING:
    from ztp.config import Config
    from ztp.leases.ledger import Ledger

__all__ = ["LeaseBackend", "LeaseConflict", "LeaseWriter", "StoreError", "StoreUnavailable", "database_path",
           "describe", "load_leases", "merge_remote", "open_store", "read_leases", "upgrade"]


class StoreError(Exception):
    """The lease store cannot be used as configured; the message says what to do."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now; nothing was written."""


class LeaseConflict(Exception):
    """Another appliance holds the address (an active lease of another client): nothing was written.

    `current` is the row that won, already handed to `on_remote` so that the cache stops offering it.
    """

    def __init__(self, lease: Lease, current: Lease | None) -> None:
        holder = f" by {current.client} ({current.state}) until {current.expires:.0f}" if current else ""
        super().__init__(f"{lease.ip} is held{holder} on the shared lease store")
        self.lease = lease
        self.current = current


RemoteRows = Callable[[list[Lease]], None]


class LeaseBackend(Protocol):
    """What the appliance needs of a lease store (see the module docstring)."""

    shared: bool  # True when other appliances write to the same store

    def load(self) -> list[Lease]:
        """Every lease row."""
        ...

    def start(self, loop: asyncio.AbstractEventLoop, on_remote: RemoteRows | None = None) -> None:
        """Start writing; `on_remote` gets other appliances' rows on `loop`."""
        ...

    def commit(self, lease: Lease) -> asyncio.Future[None]:
        """Queue `lease`; the future completes once it is durable."""
        ...

    def close(self) -> None:
        """Write what is queued, then stop."""
        ...


def open_store(config: Config) -> LeaseBackend:
    """The configured backend, connected and with its schema checked (StoreError naming the fix)."""
    if config.state.backend == "postgresql":
        from ztp.leases.store.postgres import PostgresStore

        assert config.state.dsn is not None
        return PostgresStore(config.state.dsn, refresh=config.state.refresh, where=_where(config))
    return LeaseWriter(database_path(config.state_dir))


def read_leases(config: Config) -> list[Lease]:
    """Every lease row of the configured store, for tools (`ztp leases`, `ztp render`)."""
    if config.state.backend == "postgresql":
        from ztp.leases.store.postgres import read_rows

        assert config.state.dsn is not None
        return read_rows(config.state.dsn, where=_where(config))
    return load_leases(database_path(config.state_dir))


def upgrade(config: Config) -> tuple[str, int, int]:
    """Create or migrate the configured store's schema: (what, version before, version after)."""
    if config.state.backend == "postgresql":
        from ztp.leases.store.postgres import upgrade as pg_upgrade

        assert config.state.dsn is not None
        before, after = pg_upgrade(config.state.dsn, where=_where(config))
        return describe(config), before, after
    from ztp.leases.store.sqlite import upgrade as sqlite_upgrade

    before, after = sqlite_upgrade(database_path(config.state_dir))
    return describe(config), before, after


def describe(config: Config) -> str:
    """The store for people: the SQLite file, or the PostgreSQL DSN without its password."""
    if config.state.backend == "postgresql":
        from ztp.leases.store.postgres import redact

        return f"postgresql {redact(config.state.dsn or '')}"
    return f"sqlite {database_path(config.state_dir)}"


def _where(config: Config) -> str:
    return f"{config.path}:{config.line('state', 'dsn')}"


log = logging.getLogger("ztp.leases")
_KIND_OF_STATE = {LeaseState.BOUND: "bind", LeaseState.RELEASED: "release", LeaseState.DECLINED: "decline"}


def merge_remote(ledger: Ledger, leases: list[Lease]) -> int:
    """Apply rows another appliance committed to this appliance's cache (through the ledger, so DNS and
    the other subscribers hear of them); returns how many changed it.

    A row older than the cached one of its address is skipped (notifications and refreshes may arrive
    late or twice), except over one of our offers: an offer is memory only and loses to any durable row.
    """
    from ztp.leases.ledger import ChangeKind, LeaseChange

    applied = 0
    for lease in leases:
        current = ledger.at(lease.ip)
        if current == lease:
            continue
        if current is not None and current.state != LeaseState.OFFERED and current.updated > lease.updated:
            continue
        kind = _KIND_OF_STATE.get(lease.state)
        if kind is None:
            continue
        ledger.apply(LeaseChange(ChangeKind(kind), lease))
        applied += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s lease %s %s until %.0f, written by another appliance", lease.mac, lease.ip, lease.state,
                      lease.expires)
    return applied
