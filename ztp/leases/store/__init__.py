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

For a shared store (`shared` is True) the appliance also uses: `merge_remote` (other appliances' rows into
the cache, through the ledger so that DNS and expiry follow), `ReadThrough` over the store's
`lookup(client)` (a client the cache does not know is read from the database before the DHCP chain
decides), and `SharedLedger` (a withdrawn offer keeps its address until the chosen appliance's binding
arrives). `ledger_for` and `read_through` pick what fits the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ztp.leases.ledger import ChangeKind, LeaseChange, LeaseEvent, Ledger
from ztp.leases.store.sqlite import LeaseWriter, database_path, load_leases
from ztp.leases.table import Lease, LeaseState, LeaseTable

if TYPE_CHECKING:
    from ztp.config import Config

__all__ = ["LeaseBackend", "LeaseConflict", "LeaseWriter", "ReadThrough", "SharedLedger", "StoreError",
           "StoreUnavailable", "database_path", "describe", "ledger_for", "load_leases", "merge_remote",
           "migrate_from_sqlite", "open_store", "read_leases", "read_through", "upgrade"]


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
    return LeaseWriter(database_path(config.state_dir), user=config.user)


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


def migrate_from_sqlite(config: Config, state_dir: Path) -> tuple[Path, int, int]:
    """Copy the lease rows of the SQLite database under `state_dir` into the configured PostgreSQL (schema
    current: `ztp db upgrade` first): (the SQLite file, rows copied, rows skipped because their address
    already has a row there). StoreError naming the fix when there is nothing to copy from or to."""
    if config.state.backend != "postgresql" or config.state.dsn is None:
        raise StoreError(f"{config.path}:{config.line('state')}: state.backend is not postgresql: set state: "
                         "{backend: postgresql, dsn: ...} to say where the leases go")
    path = database_path(state_dir)
    if not path.is_file():
        raise StoreError(f"{path}: no lease database there (STATE_DIR is the state_dir of the old configuration)")
    try:
        leases = load_leases(path)
    except OSError as exc:
        raise StoreError(str(exc)) from None
    from ztp.leases.store.postgres import import_rows

    copied = import_rows(config.state.dsn, leases, where=_where(config))
    return path, copied, len(leases) - copied


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
    shared = ledger if isinstance(ledger, SharedLedger) else None
    if shared is not None:
        shared.merging = True  # subscribers may tell other appliances' changes from this one's (timeline)
    try:
        return _merge(ledger, leases)
    finally:
        if shared is not None:
            shared.merging = False


def _merge(ledger: Ledger, leases: list[Lease]) -> int:
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


Lookup = Callable[[str], "asyncio.Future[list[Lease]]"]


class ReadThrough:
    """Before the DHCP chain decides for a client the cache does not know, read that client's rows from the
    shared store: a client that another appliance bound, and whose row has not reached this cache yet (a
    notification in flight, a listener reconnecting), still gets its own address back.

    `__call__(client, decide)` returns False when the cache can answer now (the client is known, or too many
    lookups are under way); otherwise it returns True and calls `decide()` once the client's rows are in the
    cache (or the lookup failed: the cache then answers as it stands). Retransmissions arriving meanwhile wait
    for the same lookup. A new client costs one lookup (the offer then makes it known); lookups queued
    together are one query.
    """

    def __init__(self, ledger: Ledger, lookup: Lookup, *, max_pending: int = 1024) -> None:
        self.ledger = ledger
        self.lookup = lookup
        self.max_pending = max_pending
        self._waiting: dict[str, list[Callable[[], None]]] = {}
        self.lookups = 0

    def __call__(self, client: str, decide: Callable[[], None]) -> bool:
        """Whether `decide` was deferred until `client`'s rows are read."""
        if self.ledger.lease_of(client) is not None:
            return False
        waiting = self._waiting.get(client)
        if waiting is not None:
            if len(waiting) < 4:  # a client's retransmissions; beyond a few they are dropped
                waiting.append(decide)
            return True
        if len(self._waiting) >= self.max_pending:
            return False  # a storm of new clients: answer from the cache rather than queue without bound
        self._waiting[client] = [decide]
        self.lookups += 1
        fut = self.lookup(client)
        fut.add_done_callback(lambda f: self._found(client, f))
        return True

    def _found(self, client: str, fut: asyncio.Future[list[Lease]]) -> None:
        if not fut.cancelled():
            error = fut.exception()
            if error is None:
                merge_remote(self.ledger, sorted(fut.result(), key=lambda x: x.updated))
            else:
                log.debug("lease lookup for %s failed: %s; answering from the cache", client, error)
        for decide in self._waiting.pop(client, []):
            decide()


def read_through(store: LeaseBackend, ledger: Ledger) -> ReadThrough | None:
    """The read-through for a shared store (None for SQLite: its cache is the whole truth)."""
    lookup = getattr(store, "lookup", None)
    if not store.shared or lookup is None:
        return None
    return ReadThrough(ledger, lookup)


def ledger_for(table: LeaseTable, store: LeaseBackend) -> Ledger:
    """The ledger over `store`: a `SharedLedger` when other appliances write to it too."""
    return SharedLedger(table, store) if store.shared else Ledger(table, store)


class SharedLedger(Ledger):
    """A ledger over a store other appliances share. A SELECTING REQUEST naming another server withdraws our
    offer (RFC 2131 §4.3.2); alone, an appliance gives the address back to the pool at once. Here the other
    server is most likely an appliance about to bind that address for that client, and until its row arrives
    (milliseconds, through LISTEN/NOTIFY) the freed address would be the next one this appliance offers, to
    another client, who would then lose the race for it in the database. So the withdrawn offer keeps its
    address until the binding replaces it or `offer_hold` runs out.

    `merging` is True while `merge_remote` applies other appliances' rows: DNS follows them like its own,
    but the device timeline does not record them again (the appliance that committed them did)."""

    merging = False

    def apply(self, change: LeaseChange) -> LeaseEvent | None:
        """As `Ledger.apply`, except that a withdrawal leaves the offer in place."""
        if change.kind == ChangeKind.WITHDRAW:
            return None
        return super().apply(change)
