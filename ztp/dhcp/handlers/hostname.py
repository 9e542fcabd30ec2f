"""The device's host name: option 12 for inventory devices; a sanitised option 12 kept for others."""

from __future__ import annotations

from ztp.config import Config
from ztp.dhcp import options as o
from ztp.dhcp.exchange import Proposal, Reply, Request
from ztp.dns.zone import sanitize_hostname


class HostName:
    """Inventory devices are told their name; an unlisted device's own name is kept in its lease (for DNS),
    sanitised, never echoed, and never one of the inventory's names."""

    def __init__(self, config: Config) -> None:
        self.inventory = config.inventory

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Set `reply.hostname` and, for inventory devices, option 12."""
        device = reply.device
        if device is not None:
            reply.hostname = device.hostname
            reply.options.setdefault(o.HOST_NAME, device.hostname.encode())
            return reply
        raw = req.pkt.options.get(o.HOST_NAME)
        if raw:
            name = sanitize_hostname(raw)
            if name is not None and name not in self.inventory.by_hostname:
                reply.hostname = name
        return reply
