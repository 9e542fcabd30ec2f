"""Who may fetch what: a device's rendered config only from the address that device holds.

A config carries secrets (credentials, SNMP communities, keys), and TFTP has no authentication, so the only
thing that ties a request to a device is its source address. With ``provisioning.access: lease-holder``
(the default) a config is served to a peer whose address is the device's reservation (inventory ``ip:``)
or a bound, unexpired lease of that device; static files under ``tftp.root`` listed in ``tftp.private``
are served only to peers holding some lease or reservation at all. ``open`` turns both checks off, for labs
where devices reach the appliance through NAT and every request comes from one address.

Every lookup is one dictionary access (`LeaseTable.at`, a set of reserved addresses), whatever the
size of the lease table or inventory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import IPv4Address

from ztp.config import Config
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.render import DeviceView

ACCESS_LEASE_HOLDER = "lease-holder"
ACCESS_OPEN = "open"
ACCESS_MODES = (ACCESS_LEASE_HOLDER, ACCESS_OPEN)


def _ipv4(peer_ip: str) -> IPv4Address | None:
    try:
        return IPv4Address(peer_ip)
    except ValueError:  # an IPv6 peer holds no DHCPv4 lease
        return None


class AccessRule:
    """Decides whether a peer address may read a device's config or a private static file (fed `clock`)."""

    def __init__(self, config: Config, table: LeaseTable, *, clock: Callable[[], float] = time.time) -> None:
        """`clock` must be the clock lease expiry times come from (wall-clock seconds)."""
        self.open = config.provisioning_access == ACCESS_OPEN
        self.table = table
        self.clock = clock
        self.reserved: dict[IPv4Address, str] = {d.ip: d.hostname for d in config.inventory.devices
                                                 if d.ip is not None}

    def _bound_lease(self, ip: IPv4Address) -> Lease | None:
        lease = self.table.at(ip)
        if lease is None or lease.state != LeaseState.BOUND or lease.expires <= self.clock():
            return None
        return lease

    def holds(self, view: DeviceView, peer_ip: str) -> bool:
        """Whether `peer_ip` is the device's reserved address or one of its bound, unexpired leases."""
        if self.open:
            return True
        ip = _ipv4(peer_ip)
        if ip is None:
            return False
        device = view.device
        if device is not None and device.ip == ip:
            return True
        lease = self._bound_lease(ip)
        if lease is None:
            return False
        if device is None:
            return lease.mac == view.mac
        # The responder names a lease after the inventory device it matched (by MAC, client-id or option 82)
        # and never lets a client's own option 12 take an inventory name, so the name identifies the device.
        return (device.mac is not None and lease.mac == device.mac) or lease.hostname == device.hostname

    def known(self, peer_ip: str) -> bool:
        """Whether `peer_ip` holds a reservation or a bound, unexpired lease (private static files)."""
        if self.open:
            return True
        ip = _ipv4(peer_ip)
        return ip is not None and (ip in self.reserved or self._bound_lease(ip) is not None)


def access_warnings(config: Config) -> list[str]:
    """What `ztp check` (and `ztp serve` at start) should warn about in the access settings."""
    if config.provisioning_access == ACCESS_OPEN:
        return [f"{config.path}: provisioning.access is 'open': any host that can reach the appliance's "
                "TFTP port can fetch every device's config; use it only behind NAT in a lab"]
    return []
