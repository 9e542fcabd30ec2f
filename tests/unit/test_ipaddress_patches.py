"""ztp/__init__.py gives IPv4Address a cheaper hash and str (issue 14): same results as the standard library's."""

from __future__ import annotations

import ipaddress
import random

import ztp


def _stdlib_str(value: int) -> str:
    return ".".join(str(b) for b in value.to_bytes(4, "big"))


def test_str_is_the_standard_librarys_dotted_decimal() -> None:
    assert ipaddress.IPv4Address.__str__ is ztp._ipv4_str
    rng = random.Random(14)
    for value in [0, 1, 255, 256, 0x0A000001, 0x7F000001, 0xFFFFFFFF, *(rng.getrandbits(32) for _ in range(20000))]:
        address = ipaddress.IPv4Address(value)
        assert str(address) == _stdlib_str(value) == ipaddress._BaseV4._string_from_ip_int(value)  # type: ignore[attr-defined]


def test_formatting_and_interfaces_are_unchanged() -> None:
    address = ipaddress.IPv4Address("10.60.0.7")
    assert f"{address}|{address!s:>12}|{address:s}" == "10.60.0.7|   10.60.0.7|10.60.0.7"
    assert "%s" % (address,) == "10.60.0.7"  # noqa: UP031 (what the log lines do)
    assert repr(address) == "IPv4Address('10.60.0.7')"
    assert str(ipaddress.IPv4Interface("10.60.0.7/24")) == "10.60.0.7/24"
    assert str(ipaddress.IPv4Network("10.60.0.0/24")) == "10.60.0.0/24"


def test_hash_follows_equality() -> None:
    assert ipaddress.IPv4Address.__hash__ is ztp._ipv4_hash
    a, b = ipaddress.IPv4Address("10.60.0.7"), ipaddress.IPv4Address(0x0A3C0007)
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert len({ipaddress.IPv4Address(v) for v in range(1000)} | {ipaddress.IPv4Address(v) for v in range(500)}) == 1000
