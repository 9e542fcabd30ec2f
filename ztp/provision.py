"""Which config a device gets: boot-file names -> devices -> rendered bytes (the TFTP content provider)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from ztp.access import AccessRule
from ztp.config import Config, Device
from ztp.devices import BootTarget, boot_target
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.net.sockets import route_source
from ztp.render import DeviceView, Renderer, RenderError
from ztp.tftp.content import TftpRefusal, normalise_path
from ztp.tftp.throttle import RepeatGate
from ztp.vendors.boot import build_document

log = logging.getLogger("ztp.provision")

ERR_NOT_FOUND = 1
ERR_ACCESS = 2
ERR_NOT_DEFINED = 0


def latest_lease(table: LeaseTable, mac: str) -> Lease | None:
    """The newest non-declined lease of a MAC (whatever its client-id)."""
    best: Lease | None = None
    for lease in table.client_leases_of_mac(mac):
        if lease.state != LeaseState.DECLINED and (best is None or lease.updated > best.updated):
            best = lease
    return best


def device_view(config: Config, table: LeaseTable, *, device: Device | None, mac: str | None) -> DeviceView:
    """What is known about a device for rendering: reservation or lease address and its subnet, and the
    vendor profile its lease says the DHCP fingerprint was recognised as."""
    if device is not None and mac is None:
        mac = device.mac
    lease = latest_lease(table, mac) if mac else None
    if lease is None and device is not None:
        # Devices matched by client-id or option 82: their leases carry the inventory host name. The last
        # one (in lease-table order) gives the address, the first the MAC, as when this walked every lease.
        named = [c for c in table.client_leases_named(device.hostname) if c.state != LeaseState.DECLINED]
        if named:
            lease = named[-1]
            mac = mac or next((c.mac for c in named if c.mac), None)
    ip: IPv4Address | None = device.ip if device is not None and device.ip is not None else None
    if ip is None and lease is not None:
        ip = lease.ip
    subnet = config.subnet_for(ip) if ip is not None else None
    client_hostname = lease.hostname if lease is not None and device is None else None
    return DeviceView(mac=mac or "00:00:00:00:00:00", device=device, ip=ip, subnet=subnet,
                      client_hostname=client_hostname, vendor=lease.vendor if lease is not None else None)


class RenderedConfigs:
    """TFTP content for `<hostname>.cfg` (inventory devices) and `<mac>.cfg` (leased unknown devices).

    With an `access` rule, a config is rendered only for a peer that holds the device's address (see
    `ztp.access`); anyone else gets ERROR 2 and a log line naming the device and the peer. Without one
    (tests, `ztp render`) every peer is served.
    """

    def __init__(self, config: Config, renderer: Renderer, table: LeaseTable,
                 on_error: Callable[[str, RenderError], None] | None = None, *,
                 access: AccessRule | None = None) -> None:
        self.config = config
        self.renderer = renderer
        self.table = table
        self.on_error = on_error
        self.access = access
        # Told of every render (view, path, template, bytes, seconds): the device timeline and metrics.
        self.on_render: Callable[[DeviceView, str, str | None, bytes, float], None] | None = None
        self._refusals = RepeatGate(time.monotonic)  # one line per peer and file per 10 s, however many asks

    def view_for_path(self, path: str) -> DeviceView | None:
        """The device a boot-file name belongs to, or None."""
        found = self.target_for_path(path)
        return found[1] if found is not None else None

    def target_for_path(self, path: str) -> tuple[BootTarget, DeviceView] | None:
        """The boot target a name asks for (the config, or a profile document around it) and its device."""
        target = boot_target(self.config.inventory, path.lstrip("/"))
        if target is None:
            return None
        if target.device is not None:
            return target, device_view(self.config, self.table, device=target.device, mac=None)
        if target.mac is None or latest_lease(self.table, target.mac) is None:
            return None  # an unlisted device's config exists only while it holds a lease
        return target, device_view(self.config, self.table, device=None, mac=target.mac)

    def get(self, path: str, peer: tuple[str, int], *, transport: str = "tftp", server: str | None = None) -> bytes:
        """Rendered bytes, or a TftpRefusal; never a partial config, never another device's config.

        HTTP boot asks here too (`transport` names it in the log). A profile document (a POAP script, a
        SONiC ztp.json) names `server`, the appliance address the request reached; without it, the address
        routing uses towards the peer.
        """
        path = normalise_path(path)
        found = self.target_for_path(path)
        if found is None:
            raise TftpRefusal(ERR_NOT_FOUND, f"{path}: no such device config")
        target, view = found
        if self.access is not None and not self.access.holds(view, peer[0]):
            # Checked before rendering: a stranger's request costs a lookup, not a render.
            held = self._refusals.admit((peer[0], path))
            if held is not None:
                log.warning("%s %s %s refused to %s: it holds neither a lease nor the reservation of %s%s",
                            view.mac, transport, path, peer[0], view.hostname,
                            f" ({held} more refused since the last report)" if held else "")
            raise TftpRefusal(ERR_ACCESS, f"{path}: only the device holding its address may fetch it")
        start = time.perf_counter()
        try:
            data = self.renderer.render(view)
            if target.document:
                local = IPv4Address(server or route_source(peer[0]) or "0.0.0.0")
                data = build_document(self.config, target.document, data, target.device, target.config_name,
                                      local)
        except RenderError as exc:
            log.error("%s render %s failed: %s", view.mac, path, exc)
            if self.on_error is not None:
                self.on_error(view.mac, exc)
            raise TftpRefusal(ERR_NOT_DEFINED, f"config for {view.hostname} cannot be rendered: "
                                               f"{exc.message} ({exc.file}:{exc.line})"[:400]) from None
        seconds = time.perf_counter() - start
        log.info("%s render %s (%s) %d bytes in %.1f ms for %s", view.mac, path, self.renderer.template_for(view),
                 len(data), seconds * 1000, peer[0])
        if self.on_render is not None:
            self.on_render(view, path, self.renderer.template_for(view), data, seconds)
        return data
