"""LeaseTable's by-MAC and by-host-name groups stay equal to a walk over by_client through every operation,
and provision's lookups (latest_lease, device_view) answer as the walks they replaced."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from tests.conftest import FakeClock
from ztp.config import Config, Device, Inventory, Subnet
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.provision import device_view, latest_lease

MACS = [f"02:00:00:00:00:{n:02x}" for n in range(1, 6)]
CLIENTS = [*MACS, "id:0141", "id:0142", "id:0143"]  # client-id clients may show up with any of the MACs
NAMES = [None, "leaf01", "leaf02", "printer"]
NET = Subnet(network=IPv4Network("10.60.0.0/24"), pool_start=IPv4Address("10.60.0.100"),
             pool_end=IPv4Address("10.60.0.105"), routers=(), dns_servers=(), domain=None, lease_time=60,
             options={}, line=1)


def _groups_by_walk(table: LeaseTable, field: str) -> dict[str, dict[str, Lease]]:
    groups: dict[str, dict[str, Lease]] = {}
    for client, lease in table.by_client.items():
        key = getattr(lease, field)
        if key is not None:
            groups.setdefault(key, {})[client] = lease
    return groups


def _latest_by_walk(table: LeaseTable, mac: str) -> Lease | None:
    best: Lease | None = None
    for lease in table.by_client.values():
        if lease.mac != mac or lease.state == LeaseState.DECLINED:
            continue
        if best is None or lease.updated > best.updated:
            best = lease
    return best


def _assert_consistent(table: LeaseTable) -> None:
    by_mac = _groups_by_walk(table, "mac")
    by_name = _groups_by_walk(table, "hostname")
    assert table._client_by_mac == by_mac  # no empty groups left behind either
    assert table._client_by_hostname == by_name
    for mac in MACS:
        assert {x.client for x in table.client_leases_of_mac(mac)} == set(by_mac.get(mac, {}))
        assert latest_lease(table, mac) is _latest_by_walk(table, mac)
    for name in NAMES[1:]:
        assert {x.client for x in table.client_leases_named(name or "")} == set(by_name.get(name or "", {}))


def test_indexes_follow_every_operation(fake_clock: FakeClock) -> None:
    rng = random.Random(6)
    table = LeaseTable()
    for _ in range(3000):
        fake_clock.advance(rng.choice([0.5, 1, 7, 40]))  # strictly increasing: no ties in `updated`
        now = fake_clock.now
        client, mac, name = rng.choice(CLIENTS), rng.choice(MACS), rng.choice(NAMES)
        if not client.startswith("id:"):
            mac = client
        action = rng.randrange(6)
        if action == 0:
            picked = table.choose(NET, client, reserved=None, requested=None, now=now)
            if picked is not None:
                table.offer(picked, client, mac, hold=30, now=now, hostname=name)
        elif action == 1:
            held = table.lease_of(client)
            if held is not None and table.available(held.ip, client, now):
                table.bind(held.ip, client, mac, lease_time=rng.choice([20, 60]), now=now, hostname=name)
        elif action == 2:
            held = table.lease_of(client)
            if held is not None:
                table.release(client, held.ip, now)
        elif action == 3:
            held = table.lease_of(client)
            # A client declines the address it was given (declining another while holding an offer is
            # not exercised here).
            target = held.ip if held is not None else IPv4Address(f"10.60.0.{rng.randrange(100, 106)}")
            table.decline(target, client, mac, quarantine=30, now=now)
        elif action == 4:
            table.forget_offer(client)
        else:
            wanted = IPv4Address(f"10.60.0.{rng.randrange(100, 106)}")  # INIT-REBOOT for an address
            if table.available(wanted, client, now):
                table.bind(wanted, client, mac, lease_time=60, now=now, hostname=name)
        _assert_consistent(table)
    rebuilt = LeaseTable(list(table.leases()))
    _assert_consistent(rebuilt)


def _config(*devices: Device) -> Config:
    inventory = Inventory(path=Path("inventory.yaml"), default_template=None, default_vars={},
                          default_options={}, devices=devices, by_hostname={d.hostname: d for d in devices})
    return Config(path=Path("ztp.yaml"), state_dir=Path("state"), templates=Path("templates"),
                  inventory=inventory, log_level="info", interfaces=(), lease_time=60, offer_hold=30,
                  authoritative=True, dhcp_port=67, global_options={}, subnets=(NET,), tftp_root=None, tftp_port=69,
                  tftp_max_blksize=1468, dns=None)


def test_device_known_by_client_id_is_found_through_its_host_name(fake_clock: FakeClock) -> None:
    leaf = Device(hostname="leaf01", mac=None, client_id="SER1", circuit_id=None, remote_id=None, ip=None,
                  template=None, vars={}, options={}, line=1)
    config = _config(leaf)
    table = LeaseTable()
    for n in range(5000):  # the crowd the lookup must not walk
        table.bind(IPv4Address(int(IPv4Address("10.61.0.0")) + n), f"02:01:00:00:{n >> 8:02x}:{n & 255:02x}",
                   f"02:01:00:00:{n >> 8:02x}:{n & 255:02x}", lease_time=60, now=fake_clock.now)
    assert device_view(config, table, device=leaf, mac=None).ip is None
    table.bind(IPv4Address("10.60.0.100"), "id:00534552 31", "02:00:00:00:00:01", lease_time=60,
               now=fake_clock.now, hostname="leaf01")
    view = device_view(config, table, device=leaf, mac=None)
    assert (view.ip, view.mac) == (IPv4Address("10.60.0.100"), "02:00:00:00:00:01")
    assert view.subnet is NET
