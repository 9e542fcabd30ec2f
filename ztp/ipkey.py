"""IPv4 addresses on the per-packet path, by their integer (compiled with it: setup.py's HOT modules).

`ztp/__init__.py` gives IPv4Address a cheaper hash and ==, but they stay Python functions, which CPython's
slots call for every dict lookup and comparison, compiled callers included (about 600 instructions each). A
cache or a pending-commit table keyed by `ip_key(address)` hashes an int in C instead, and `is_zero` tests
the integer instead of `== ZERO_IP`.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Final

from ztp.bounded import make_room


def ip_key(address: IPv4Address) -> int:
    """An address as a dict key: its integer."""
    value: int = address._ip  # type: ignore[attr-defined]
    return value


def is_zero(address: IPv4Address) -> bool:
    """0.0.0.0 (an unset giaddr, ciaddr or yiaddr)."""
    value: int = address._ip  # type: ignore[attr-defined]
    return value == 0


# A server's own addresses, as the reply spells them: a few per appliance (bounded all the same).
_SPELLED: Final[dict[int, tuple[bytes, bytes]]] = {}
_SPELLED_MAX: Final = 256


def spelled(address: IPv4Address) -> tuple[bytes, bytes]:
    """The address's 4 bytes and its dotted text as bytes (option 54; option 66 and sname), remembered per
    address: IPv4Address builds both digit by digit."""
    value: int = address._ip  # type: ignore[attr-defined]
    both = _SPELLED.get(value)
    if both is None:
        make_room(_SPELLED, _SPELLED_MAX)
        both = _SPELLED[value] = (address.packed, str(address).encode())
    return both


_OCTETS: Final[tuple[str, ...]] = tuple(str(octet) for octet in range(256))


def dotted(address: IPv4Address) -> str:
    """The address in dotted decimal, the text `str(address)` gives, without a call through IPv4Address's
    __str__ slot into Python (the timeline's events and the lease rows spell an address or two a DORA)."""
    value: int = address._ip  # type: ignore[attr-defined]
    octets = _OCTETS
    return f"{octets[value >> 24]}.{octets[(value >> 16) & 255]}.{octets[(value >> 8) & 255]}.{octets[value & 255]}"
