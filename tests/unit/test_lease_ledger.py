"""The lease ledger: nothing is applied before the store has it, failures leave memory untouched, pending
addresses are not handed out twice, expiry runs on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from ztp.config import Subnet
from ztp.leases.ledger import ChangeKind, EventKind, LeaseChange, LeaseEvent, Ledger
from ztp.leases.table import Lease, LeaseState, LeaseTable

T0 = 1_000.0
POOL = Subnet(network=IPv4Network("10.0.0.0/24"), pool_start=IPv4Address("10.0.0.10"),
              pool_end=IPv4Address("10.0.0.12"), routers=(), dns_servers=(), domain=None, lease_time=60,
              options={}, line=1)


def bound(ip: str, client: str, expires: float = T0 + 60) -> Lease:
    return Lease(ip=IPv4Address(ip), client=client, mac=client, state=LeaseState.BOUND, expires=expires, updated=T0)


class ManualStore:
    """A store whose commits complete only when the test says so."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.futures: list[tuple[Lease, asyncio.Future[None]]] = []

    def commit(self, lease: Lease) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.loop.create_future()
        self.futures.append((lease, fut))
        return fut


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_a_binding_is_applied_only_after_the_store_has_it() -> None:
    async def scenario() -> None:
        store = ManualStore(asyncio.get_running_loop())
        table = LeaseTable()
        ledger = Ledger(table, store)
        events: list[LeaseEvent] = []
        ledger.subscribe(events.append)
        outcome: list[BaseException | None] = []
        lease = bound("10.0.0.10", "a")
        ledger.commit(LeaseChange(ChangeKind.BIND, lease), outcome.append)
        await asyncio.sleep(0)
        assert not table.leases() and outcome == [] and events == []  # not visible before it is on disk
        store.futures[0][1].set_result(None)
        await asyncio.sleep(0)
        assert table.at(lease.ip) is lease and outcome == [None]
        assert [e.kind for e in events] == [EventKind.BOUND]
    run(scenario)


def test_a_failed_commit_changes_nothing_and_reports_the_error() -> None:
    async def scenario() -> None:
        store = ManualStore(asyncio.get_running_loop())
        table = LeaseTable([bound("10.0.0.11", "b")])
        ledger = Ledger(table, store)
        events: list[LeaseEvent] = []
        ledger.subscribe(events.append)
        outcome: list[BaseException | None] = []
        ledger.commit(LeaseChange(ChangeKind.BIND, bound("10.0.0.10", "a")), outcome.append)
        store.futures[0][1].set_exception(OSError("disk full"))
        await asyncio.sleep(0)
        assert isinstance(outcome[0], OSError) and events == []
        assert [lease.ip for lease in table.leases()] == [IPv4Address("10.0.0.11")] and table.lease_of("a") is None
        assert ledger.commit_failures == 1
        assert ledger.available(IPv4Address("10.0.0.10"), "c", T0)  # no longer pending either
    run(scenario)


def test_an_address_being_committed_is_not_given_to_another_client() -> None:
    async def scenario() -> None:
        store = ManualStore(asyncio.get_running_loop())
        ledger = Ledger(LeaseTable(), store)
        ip = IPv4Address("10.0.0.10")
        ledger.commit(LeaseChange(ChangeKind.BIND, bound(str(ip), "a")), lambda e: None)
        assert not ledger.available(ip, "b", T0)
        assert ledger.available(ip, "a", T0)  # the same client retransmitting
        assert ledger.choose(POOL, "b", reserved=None, requested=ip, now=T0) == IPv4Address("10.0.0.11")
        assert ledger.choose(POOL, "a", reserved=None, requested=ip, now=T0) == ip
        store.futures[0][1].set_result(None)
        await asyncio.sleep(0)
        assert not ledger.available(ip, "b", T0)  # now because it is bound
    run(scenario)


def test_changes_apply_in_commit_order_and_renewal_is_told_apart() -> None:
    async def scenario() -> None:
        store = ManualStore(asyncio.get_running_loop())
        table = LeaseTable()
        ledger = Ledger(table, store)
        events: list[LeaseEvent] = []
        ledger.subscribe(events.append)
        first, second = bound("10.0.0.10", "a"), bound("10.0.0.10", "a", expires=T0 + 120)
        ledger.commit(LeaseChange(ChangeKind.BIND, first), lambda e: None)
        ledger.commit(LeaseChange(ChangeKind.BIND, second), lambda e: None)
        for _, fut in store.futures:
            fut.set_result(None)
        await asyncio.sleep(0)
        assert table.at(first.ip) is second
        assert [e.kind for e in events] == [EventKind.BOUND, EventKind.RENEWED]
    run(scenario)


def test_memory_only_changes_apply_at_once_without_the_store() -> None:
    async def scenario() -> None:
        store = ManualStore(asyncio.get_running_loop())
        table = LeaseTable()
        ledger = Ledger(table, store)
        offer = Lease(ip=IPv4Address("10.0.0.10"), client="a", mac="a", state=LeaseState.OFFERED,
                      expires=T0 + 30, updated=T0)
        done: list[BaseException | None] = []
        ledger.commit(LeaseChange(ChangeKind.OFFER, offer), done.append)
        assert table.at(offer.ip) is offer and done == [None] and store.futures == []
        ledger.commit(LeaseChange(ChangeKind.WITHDRAW, offer), done.append)
        assert not table.leases() and table.lease_of("a") is None
    run(scenario)


def test_release_and_decline_events() -> None:
    table = LeaseTable([bound("10.0.0.10", "a")])
    ledger = Ledger(table)
    events: list[LeaseEvent] = []
    ledger.subscribe(events.append)
    released = Lease(ip=IPv4Address("10.0.0.10"), client="a", mac="a", state=LeaseState.RELEASED, expires=T0,
                     updated=T0)
    ledger.commit(LeaseChange(ChangeKind.RELEASE, released), lambda e: None)
    declined = Lease(ip=IPv4Address("10.0.0.10"), client="a", mac="a", state=LeaseState.DECLINED,
                     expires=T0 + 600, updated=T0)
    ledger.commit(LeaseChange(ChangeKind.DECLINE, declined), lambda e: None)
    assert [e.kind for e in events] == [EventKind.RELEASED, EventKind.DECLINED]
    assert not ledger.available(declined.ip, "b", T0 + 1) and ledger.available(declined.ip, "b", T0 + 601)


def test_expiry_is_a_timer_on_a_fake_clock() -> None:
    table = LeaseTable([bound("10.0.0.10", "a", expires=T0 + 10), bound("10.0.0.11", "b", expires=T0 + 20)])
    ledger = Ledger(table)
    events: list[LeaseEvent] = []
    ledger.subscribe(events.append)
    assert ledger.next_deadline() == T0 + 10
    assert ledger.expire(T0 + 5) == [] and events == []
    # b renews before its expiry: the old row's deadline passes without an event.
    ledger.commit(LeaseChange(ChangeKind.BIND, bound("10.0.0.11", "b", expires=T0 + 80)), lambda e: None)
    expired = ledger.expire(T0 + 30)
    assert [lease.client for lease in expired] == ["a"]
    assert [(e.kind, e.lease.client) for e in events if e.kind == EventKind.EXPIRED] == [(EventKind.EXPIRED, "a")]
    assert ledger.next_deadline() == T0 + 80
    assert [lease.client for lease in ledger.expire(T0 + 80)] == ["b"]
    assert ledger.next_deadline() is None


def test_a_failing_subscriber_does_not_undo_the_change(caplog: pytest.LogCaptureFixture) -> None:
    table = LeaseTable()
    ledger = Ledger(table)

    def broken(event: LeaseEvent) -> None:
        raise RuntimeError("bug")

    ledger.subscribe(broken)
    lease = bound("10.0.0.10", "a")
    ledger.commit(LeaseChange(ChangeKind.BIND, lease), lambda e: None)
    assert table.at(lease.ip) is lease and "subscriber failed" in caplog.text
