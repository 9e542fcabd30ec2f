"""ztp's IPv4Address hash (ztp/__init__.py): the stdlib's equality, without its hex string."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address

import ztp  # noqa: F401  (sets the hash)


def test_equal_addresses_hash_alike_and_find_each_other_in_dicts_and_sets() -> None:
    built = [IPv4Address("10.60.0.7"), IPv4Address(0x0A3C0007), IPv4Address(b"\x0a\x3c\x00\x07")]
    assert len({hash(a) for a in built}) == 1 and hash(built[0]) == 0x0A3C0007
    table = {IPv4Address(f"10.60.0.{n}"): n for n in range(256)}
    assert all(table[a] == 7 for a in built) and IPv4Address("10.60.1.7") not in table
    assert len(set(built) | {IPv4Address("10.60.0.8")}) == 2


def test_other_address_types_keep_their_own_hashes_and_equality() -> None:
    assert IPv4Address("0.0.0.1") != IPv6Address("::1") and len({IPv4Address("0.0.0.1"), IPv6Address("::1")}) == 2
    iface = IPv4Interface("10.60.0.7/24")
    assert {iface: 1}[IPv4Interface("10.60.0.7/24")] == 1 and hash(iface) != hash(IPv4Interface("10.60.0.7/25"))
    assert {IPv4Network("10.60.0.0/24"): 1}[IPv4Network("10.60.0.0/24")] == 1
