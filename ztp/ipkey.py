"""IPv4 addresses on the per-packet path, by their integer (compiled with it: setup.py's HOT modules).

`ztp/__init__.py` gives IPv4Address a cheaper hash and ==, but they stay Python functions, which CPython's
slots call for every dict lookup and comparison, compiled callers included (about 600 instructions each). A
cache or a pending-commit table keyed by `ip_key(address)` hashes an int in C instead, and `is_zero` tests
the integer instead of `== ZERO_IP`.
"""

from __future__ import annotations

from ipaddress import IPv4Address


def ip_key(address: IPv4Address) -> int:
    """An address as a dict key: its integer."""
    value: int = address._ip  # type: ignore[attr-defined]
    return value


def is_zero(address: IPv4Address) -> bool:
    """0.0.0.0 (an unset giaddr, ciaddr or yiaddr)."""
    value: int = address._ip  # type: ignore[attr-defined]
    return value == 0
