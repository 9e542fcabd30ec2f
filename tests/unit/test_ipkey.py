"""ztp.ipkey: an address's integer as a cache key, the 0.0.0.0 test and its spellings agree with the standard
library."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Interface

from ztp import ipkey
from ztp.ipkey import dotted, ip_key, is_zero, spelled


def test_key_and_zero_agree_with_the_standard_library() -> None:
    rng = random.Random(4)
    for value in [0, 1, 255, 0x0A000001, 0xFFFFFFFF, *(rng.getrandbits(32) for _ in range(2000))]:
        address = IPv4Address(value)
        assert ip_key(address) == int(address) == value
        assert is_zero(address) is (address == IPv4Address("0.0.0.0"))
    assert ip_key(IPv4Interface("10.60.0.7/24")) == int(IPv4Address("10.60.0.7"))
    assert is_zero(IPv4Address(0)) and not is_zero(IPv4Address("0.0.0.1"))
    # As dict keys: equal addresses, one key.
    assert len({ip_key(IPv4Address("10.1.2.3")), ip_key(IPv4Address(0x0A010203))}) == 1


def test_spellings_are_the_standard_librarys_and_remembered_within_a_bound() -> None:
    rng = random.Random(5)
    for value in [0, 1, 0x0A3C0001, 0xFFFFFFFF, *(rng.getrandbits(32) for _ in range(600))]:
        address = IPv4Address(value)
        assert spelled(address) == (address.packed, str(address).encode())
        assert len(ipkey._SPELLED) <= ipkey._SPELLED_MAX
    server = IPv4Address("10.60.0.1")
    # Built once per address while remembered (compiled, the pair itself is rebuilt around the same bytes).
    assert all(a is b for a, b in zip(spelled(server), spelled(IPv4Address("10.60.0.1")), strict=True))


def test_dotted_text_is_the_standard_librarys() -> None:
    rng = random.Random(6)
    for value in [0, 1, 255, 256, 0x0A3C0001, 0x7F000001, 0xFFFFFFFF, *(rng.getrandbits(32) for _ in range(2000))]:
        address = IPv4Address(value)
        # The standard library's own spelling (ztp's IPv4Address.__str__ is inet_ntoa's).
        assert dotted(address) == IPv4Address._string_from_ip_int(value) == str(address)
    assert dotted(IPv4Address("192.0.2.10")) == "192.0.2.10"
