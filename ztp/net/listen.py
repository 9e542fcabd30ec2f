"""Which local addresses TFTP and DNS listen on: the provisioning network's, never every address by default.

The addresses are those of `dhcp.interfaces` (each interface's primary IPv4 address) plus the top-level
`listen:` list (addresses that relayed subnets reach the appliance on, e.g. the side facing the relays).
A configured interface that does not exist or has no IPv4 address is an error naming the interfaces that
do exist, so `ztp serve` stops instead of silently serving the wrong network. Only when neither is
configured does it fall back to the wildcard 0.0.0.0 (the caller warns): a bare test or lab setup.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address

from ztp.net.sockets import interface_ipv4

WILDCARD = "0.0.0.0"


class ListenError(OSError):
    """The configured listening addresses cannot be used; the message says which and what exists."""


def _interface_names() -> list[str]:
    return [name for _, name in socket.if_nameindex()]


def _is_local(ip: IPv4Address) -> bool:
    """Whether `ip` is an address of this host (network namespace): binding to it succeeds."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(ip), 0))
        except OSError:
            return False
    return True


def listen_addresses(
    interfaces: Sequence[str],
    extra: Iterable[IPv4Address],
    *,
    names: Callable[[], list[str]] = _interface_names,
    address_of: Callable[[str], IPv4Address | None] = interface_ipv4,
    is_local: Callable[[IPv4Address], bool] = _is_local,
) -> list[str]:
    """The addresses to bind, in order and without duplicates; `ListenError` listing every problem.

    `names`, `address_of` and `is_local` look at the host; tests pass fakes.
    """
    problems: list[str] = []
    addresses: list[str] = []
    existing: list[str] | None = None
    for ifname in interfaces:
        ip = address_of(ifname)
        if ip is not None:
            addresses.append(str(ip))
            continue
        if existing is None:
            existing = names()
        if ifname not in existing:
            problems.append(f"dhcp.interfaces: {ifname!r} does not exist")
        else:
            problems.append(f"dhcp.interfaces: {ifname!r} has no IPv4 address")
    for ip in extra:
        if is_local(ip):
            addresses.append(str(ip))
        else:
            problems.append(f"listen: {ip} is not an address of this host")
    if problems:
        shown = ", ".join(existing if existing is not None else names()) or "(none)"
        raise ListenError("; ".join(problems) + f" (interfaces here: {shown})")
    if not addresses:
        return [WILDCARD]
    return list(dict.fromkeys(addresses))
