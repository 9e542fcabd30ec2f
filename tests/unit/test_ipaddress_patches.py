"""ztp/__init__.py gives IPv4Address a cheaper hash, str, == and != (issue 14): same results as the standard
library's."""

from __future__ import annotations

import ipaddress
import random

import pytest

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


def _compare(pairs: list[tuple[object, object]]) -> list[tuple[bool, bool, bool, bool]]:
    return [(a == b, a != b, b == a, b != a) for a, b in pairs]


def test_equality_is_the_standard_librarys(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ipaddress.IPv4Address.__eq__ is ztp._ipv4_eq and ipaddress.IPv4Address.__ne__ is ztp._ipv4_ne
    v4 = ipaddress.IPv4Address
    rng = random.Random(15)
    values = [0, 1, 0x0A3C0007, 0xFFFFFFFF, *(rng.getrandbits(32) for _ in range(2000))]
    pairs: list[tuple[object, object]] = [(v4(x), v4(y)) for x in values for y in (x, x ^ 1, rng.choice(values))]
    a = v4("10.60.0.7")
    # Other kinds answer for themselves, as before: interfaces, a network, IPv6, text, an int, None.
    pairs += [(a, other) for other in (ipaddress.IPv4Interface("10.60.0.7/24"), ipaddress.IPv4Interface("10.60.0.7/32"),
                                       ipaddress.IPv4Network("10.60.0.7/32"), ipaddress.IPv6Address("::a3c:7"),
                                       ipaddress.IPv6Address("::ffff:10.60.0.7"), "10.60.0.7", 0x0A3C0007, None)]
    ours = _compare(pairs)
    monkeypatch.setattr(v4, "__eq__", ipaddress._BaseAddress.__eq__)  # type: ignore[attr-defined]
    monkeypatch.delattr(v4, "__ne__")
    assert ours == _compare(pairs)  # the standard library's answers, every one
    assert sum(eq for eq, _, _, _ in ours) > 2000  # both outcomes were compared
    monkeypatch.undo()
    assert a in {v4("10.60.0.7")} and a in [v4("10.60.0.7")] and a not in [v4("10.60.0.8")]
    assert sorted([v4(3), v4(1), v4(2)]) == [v4(1), v4(2), v4(3)]
