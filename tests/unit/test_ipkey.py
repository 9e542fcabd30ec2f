"""ztp.ipkey: an address's integer as a cache key, and the 0.0.0.0 test, agree with the standard library."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Interface

from ztp.ipkey import ip_key, is_zero


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
