"""Four allocators (four processes, each an appliance's ledger, cache and PostgresStore) allocate from one
pool on one PostgreSQL at once: no address is granted twice, every client gets exactly one, and the rate is
printed (issue 13 measured 2.2-2.4k allocations/s with four allocators on this machine class)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import psycopg

from ztp.config import Subnet
from ztp.leases.ledger import ChangeKind, LeaseChange, Ledger
from ztp.leases.store import LeaseConflict, merge_remote
from ztp.leases.store.postgres import PostgresStore, upgrade
from ztp.leases.table import Lease, LeaseState, LeaseTable

ALLOCATORS = 4
CLIENTS = 1000  # per allocator
IN_FLIGHT = 64  # concurrent DORAs per allocator, as a busy appliance has
POOL = Subnet(network=IPv4Network("10.61.0.0/16"), pool_start=IPv4Address("10.61.0.10"),
              pool_end=IPv4Address("10.61.39.255"), routers=(), dns_servers=(), domain=None, lease_time=3600,
              options={}, line=1)


async def _allocate(dsn: str, who: int, start_at: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    store = PostgresStore(dsn)
    table = LeaseTable(store.load())
    ledger = Ledger(table, store)
    store.start(loop, lambda rows: merge_remote(ledger, rows))
    granted: dict[str, str] = {}
    conflicts = 0

    async def one(client: str) -> None:
        nonlocal conflicts
        for _ in range(1000):
            now = time.time()
            ip = ledger.choose(POOL, client, reserved=None, requested=None, now=now)
            assert ip is not None, "pool exhausted"
            lease = Lease(ip=ip, client=client, mac=client, state=LeaseState.BOUND, expires=now + 3600, updated=now)
            done: asyncio.Future[BaseException | None] = loop.create_future()
            ledger.commit(LeaseChange(ChangeKind.BIND, lease), done.set_result)
            error = await done
            if error is None:
                granted[client] = str(ip)
                return
            assert isinstance(error, LeaseConflict), error
            conflicts += 1
        raise AssertionError(f"{client}: no address after 1000 tries")

    clients = [f"a{who}-{n:05d}" for n in range(CLIENTS)]
    queue = iter(clients)

    async def worker() -> None:
        for client in queue:
            await one(client)

    await asyncio.sleep(max(0.0, start_at - time.time()))
    t0 = time.monotonic()
    await asyncio.gather(*[worker() for _ in range(IN_FLIGHT)])
    elapsed = time.monotonic() - t0
    store.close()
    return {"granted": granted, "conflicts": conflicts, "elapsed": elapsed, "transactions": store.transactions}


def _allocator(dsn: str, who: int, start_at: float, out: Any) -> None:
    out.put(asyncio.run(_allocate(dsn, who, start_at)))


def test_four_allocators_on_one_postgresql_never_grant_an_address_twice(pg_dsn: str) -> None:
    upgrade(pg_dsn)
    ctx = multiprocessing.get_context("spawn")  # no inherited loop or threads
    out = ctx.Queue()
    start_at = time.time() + 3.0  # all four start together, after their interpreters are up
    procs = [ctx.Process(target=_allocator, args=(pg_dsn, who, start_at, out)) for who in range(ALLOCATORS)]
    for proc in procs:
        proc.start()
    try:
        results = [out.get(timeout=240) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    granted: dict[str, str] = {}
    for r in results:
        granted.update(r["granted"])
    assert len(granted) == ALLOCATORS * CLIENTS
    assert len(set(granted.values())) == len(granted), "an address was granted to two clients"
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT client, host(ip), state FROM leases").fetchall()
    assert {c: ip for c, ip, _ in rows} == granted  # the database agrees with every ACK, row for row
    total = len(granted)
    wall = max(r["elapsed"] for r in results)
    print(f"\n{ALLOCATORS} allocators, one PostgreSQL: {total} allocations in {wall:.2f} s = "
          f"{total / wall:.0f}/s; {sum(r['conflicts'] for r in results)} lost races retried; "
          f"{sum(r['transactions'] for r in results)} transactions")
