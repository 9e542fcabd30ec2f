"""ztp: a zero-touch provisioning appliance."""

import ipaddress as _ipaddress


def _ipv4_hash(address: _ipaddress.IPv4Address) -> int:
    """The hash of an IPv4 address: its integer's (equal addresses, equal hashes, as before)."""
    return hash(address._ip)  # type: ignore[attr-defined]


# Leases, pools, pending commits, relays and interfaces are dicts and sets keyed by IPv4Address, and a DHCP
# exchange looks addresses up about thirty times. The standard library hashes an address by formatting its
# integer as a hex string first (`hash(hex(int(self)))`): this is the same hash without that string, 5.7 %
# fewer instructions per DORA (issue 14). Set when the package is first imported, before any ztp module
# builds a dict of addresses (a hash that changed under a filled dict would lose its keys).
_ipaddress.IPv4Address.__hash__ = _ipv4_hash  # type: ignore[method-assign,assignment]

__version__ = "0.1.0"
