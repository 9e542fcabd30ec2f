"""The in-memory lease table: states over a fake clock and the documented allocation order."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from tests.conftest import FakeClock
from ztp.config import Subnet
from ztp.leases.table import Lease, LeaseState, LeaseTable

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"


def ip(n: int) -> IPv4Address:
    return IPv4Address(f"10.60.0.{n}")


def subnet(first: int = 100, last: int = 102) -> Subnet:
    return Subnet(network=IPv4Network("10.60.0.0/24"), pool_start=ip(first), pool_end=ip(last), routers=(),
                  dns_servers=(), domain=None, lease_time=3600, options={}, line=1)


def choose(table: LeaseTable, client: str, now: float, *, requested: IPv4Address | None = None,
           reserved: IPv4Address | None = None, net: Subnet | None = None) -> IPv4Address | None:
    return table.choose(net or subnet(), client, reserved=reserved, requested=requested, now=now)


def test_states_over_time(fake_clock: FakeClock) -> None:
    table = LeaseTable()
    offer = table.offer(ip(100), A, A, hold=30, now=fake_clock.now)
    assert offer.state == LeaseState.OFFERED and offer.active(fake_clock.now)
    fake_clock.advance(30)
    assert not offer.active(fake_clock.now)  # expires is exclusive
    assert offer.state_at(fake_clock.now) == "offer-expired"
    bound = table.bind(ip(100), A, A, lease_time=60, now=fake_clock.now)
    assert bound.state_at(fake_clock.now) == "bound"
    fake_clock.advance(59.9)
    assert bound.active(fake_clock.now)
    fake_clock.advance(0.1)
    assert not bound.active(fake_clock.now) and bound.state_at(fake_clock.now) == "expired"
    assert table.available(ip(100), B, fake_clock.now)


def test_available_rules(fake_clock: FakeClock) -> None:
    table = LeaseTable()
    now = fake_clock.now
    assert table.available(ip(100), A, now)
    table.bind(ip(100), A, A, lease_time=60, now=now)
    assert table.available(ip(100), A, now)  # one's own address
    assert not table.available(ip(100), B, now)
    table.decline(ip(101), A, A, quarantine=600, now=now)
    assert not table.available(ip(101), A, now)  # a quarantine binds even the decliner
    assert table.available(ip(101), A, now + 600)


def test_allocation_order(fake_clock: FakeClock) -> None:
    table = LeaseTable()
    now = fake_clock.now
    # 1. reservation, whatever else
    assert choose(table, A, now, reserved=ip(11), requested=ip(101)) == ip(11)
    # 3. requested if free (nothing held before)
    assert choose(table, A, now, requested=ip(101)) == ip(101)
    table.bind(ip(101), A, A, lease_time=60, now=now)
    # 2. the previous address beats the requested one
    assert choose(table, A, now, requested=ip(102)) == ip(101)
    # 4. first never-used address; a requested address held by someone else is skipped
    assert choose(table, B, now, requested=ip(101)) == ip(100)
    table.bind(ip(100), B, B, lease_time=120, now=now)
    assert choose(table, C, now) == ip(102)
    table.bind(ip(102), C, C, lease_time=30, now=now)
    # pool full and everything active
    assert choose(table, "02:00:00:00:00:0d", now) is None
    # 5. the oldest expired: C (30 s) before A (60 s) before B (120 s)
    assert choose(table, "02:00:00:00:00:0d", now + 200) == ip(102)
    assert choose(table, "02:00:00:00:00:0d", now + 45) == ip(102)
    assert choose(table, "02:00:00:00:00:0d", now + 20) is None


def test_released_address_is_reused_last_but_returns_to_its_client(fake_clock: FakeClock) -> None:
    table = LeaseTable()
    now = fake_clock.now
    table.bind(ip(100), A, A, lease_time=60, now=now)
    released = table.release(A, ip(100), now + 1)
    assert released is not None and released.state == LeaseState.RELEASED and released.expires == now + 1
    assert choose(table, B, now + 2) == ip(101)  # never-used addresses first
    assert choose(table, A, now + 2) == ip(100)  # the client gets its own back


def test_release_only_by_the_holder_of_a_bound_lease(fake_clock: FakeClock) -> None:
    table = LeaseTable()
    table.offer(ip(100), A, A, hold=30, now=fake_clock.now)
    assert table.release(A, ip(100), fake_clock.now) is None  # an offer is not released
    table.bind(ip(100), A, A, lease_time=60, now=fake_clock.now)
    assert table.release(B, ip(100), fake_clock.now) is None
    assert table.release(A, ip(101), fake_clock.now) is None


def test_offer_does_not_downgrade_a_binding(fake_clock: FakeClock) -> None:
    table = LeaseTable()
    bound = table.bind(ip(100), A, A, lease_time=600, now=fake_clock.now)
    assert table.offer(ip(100), A, A, hold=30, now=fake_clock.now + 1) is bound


def test_one_pending_offer_per_client(fake_clock: FakeClock) -> None:
    table = LeaseTable()
    table.offer(ip(100), A, A, hold=30, now=fake_clock.now)
    table.offer(ip(101), A, A, hold=30, now=fake_clock.now)
    assert table.at(ip(100)) is None
    assert table.lease_of(A) is not None and table.lease_of(A).ip == ip(101)  # type: ignore[union-attr]
    assert choose(table, B, fake_clock.now) == ip(100)


def test_taking_over_an_expired_address_forgets_the_old_client(fake_clock: FakeClock) -> None:
    table = LeaseTable()
    table.bind(ip(100), A, A, lease_time=60, now=fake_clock.now)
    table.bind(ip(100), B, B, lease_time=60, now=fake_clock.now + 100)
    assert table.lease_of(A) is None
    assert table.at(ip(100)).client == B


def test_decline_drops_the_client_record(fake_clock: FakeClock) -> None:
    table = LeaseTable()
    table.bind(ip(100), A, A, lease_time=60, now=fake_clock.now)
    declined = table.decline(ip(100), A, A, quarantine=600, now=fake_clock.now)
    assert declined.state == LeaseState.DECLINED
    assert table.lease_of(A) is None
    assert choose(table, A, fake_clock.now) == ip(101)


def test_forget_offer_frees_the_address_only_for_offers(fake_clock: FakeClock) -> None:
    table = LeaseTable()
    table.offer(ip(100), A, A, hold=30, now=fake_clock.now)
    table.forget_offer(A)
    assert table.all() == [] and table.lease_of(A) is None
    table.bind(ip(100), A, A, lease_time=60, now=fake_clock.now)
    table.forget_offer(A)
    assert table.at(ip(100)).state == LeaseState.BOUND


def test_rebuilt_from_rows_in_update_order(fake_clock: FakeClock) -> None:
    now = fake_clock.now
    rows = [
        Lease(ip(100), B, B, LeaseState.BOUND, now + 60, now + 5),  # B took it over later
        Lease(ip(100), A, A, LeaseState.BOUND, now - 10, now - 70),
        Lease(ip(101), C, C, LeaseState.RELEASED, now, now),
    ]
    table = LeaseTable(rows)
    assert table.at(ip(100)).client == B
    assert table.lease_of(A) is None
    assert [x.ip for x in table.all()] == [ip(100), ip(101)]
    assert choose(table, "02:00:00:00:00:0d", now) == ip(102)


def test_pools_of_two_subnets_have_separate_cursors(fake_clock: FakeClock) -> None:
    table = LeaseTable()
    other = Subnet(network=IPv4Network("10.70.0.0/24"), pool_start=IPv4Address("10.70.0.100"),
                   pool_end=IPv4Address("10.70.0.101"), routers=(), dns_servers=(), domain=None,
                   lease_time=60, options={}, line=2)
    table.bind(ip(100), A, A, lease_time=60, now=fake_clock.now)
    assert choose(table, B, fake_clock.now, net=other) == IPv4Address("10.70.0.100")
    assert choose(table, B, fake_clock.now) == ip(101)


def test_subnet_without_pool_offers_nothing(fake_clock: FakeClock) -> None:
    bare = Subnet(network=IPv4Network("10.60.0.0/24"), pool_start=None, pool_end=None, routers=(),
                  dns_servers=(), domain=None, lease_time=60, options={}, line=1)
    assert choose(LeaseTable(), A, fake_clock.now, net=bare) is None
    assert choose(LeaseTable(), A, fake_clock.now, net=bare, reserved=ip(5)) == ip(5)


def test_decline_of_another_address_drops_the_pending_offer_cleanly() -> None:
    # A client holding an OFFER that DECLINEs some other address must not leave a stale record that later
    # deletes whoever is given the offered address.
    from ipaddress import IPv4Address as A

    from ztp.leases.table import LeaseState, LeaseTable

    t = LeaseTable()
    t.offer(A("10.60.0.100"), "C", "C", hold=30, now=0)
    t.decline(A("10.60.0.101"), "C", "C", quarantine=600, now=1)
    assert t.at(A("10.60.0.100")) is None and t.lease_of("C") is None
    t.bind(A("10.60.0.100"), "D", "D", lease_time=60, now=2)
    t.bind(A("10.60.0.102"), "C", "C", lease_time=60, now=3)
    kept = t.at(A("10.60.0.100"))
    assert kept.client == "D" and kept.state == LeaseState.BOUND
    assert t.at(A("10.60.0.101")).state == LeaseState.DECLINED
