"""Which inventory device is asking: MAC, then client-id, then relay circuit-id/remote-id."""

from __future__ import annotations

from ztp.config import Config
from ztp.dhcp import options as o
from ztp.dhcp.exchange import Proposal, Reply, Request
from ztp.inventory import Identity, match_device


class IdentifyDevice:
    """Sets `reply.device` (None for a device the inventory does not list)."""

    def __init__(self, config: Config) -> None:
        self.inventory = config.inventory

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Match the request against the inventory's indexes."""
        inventory = self.inventory
        device = inventory.by_mac.get(req.mac)
        if device is None and (inventory.client_id_index or inventory.relay_index):
            device = match_device(inventory, Identity(mac=req.mac, client_id=req.pkt.options.get(o.CLIENT_ID),
                                                      relay=req.relay))
        reply.device = device
        return reply
