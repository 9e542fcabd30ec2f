"""Which inventory device is asking: MAC, then client-id, then serial number, then relay circuit-id/remote-id.

The serial is read the way its vendor sends it (`ztp.vendors.serial_of`: POAP's type-0 option 61,
Juniper's option 60), only when the inventory lists serials at all.
"""

from __future__ import annotations

from ztp.config import Config
from ztp.dhcp import options as o
from ztp.dhcp.exchange import Proposal, Reply, Request
from ztp.inventory import Identity, match_device
from ztp.vendors import serial_of
from ztp.vendors.profile import Fingerprint


class IdentifyDevice:
    """Sets `reply.device` (None for a device the inventory does not list)."""

    def __init__(self, config: Config) -> None:
        self.inventory = config.inventory

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Match the request against the inventory's indexes."""
        inventory = self.inventory
        device = inventory.by_mac.get(req.mac)
        if device is None and (inventory.client_id_index or inventory.relay_index or inventory.by_serial):
            opts = req.pkt.options
            serial = None
            if inventory.by_serial:
                serial = serial_of(Fingerprint(vendor_class=opts.get(o.VENDOR_CLASS), client_id=opts.get(o.CLIENT_ID)))
            device = match_device(inventory, Identity(mac=req.mac, client_id=opts.get(o.CLIENT_ID),
                                                      relay=req.relay, serial=serial))
        reply.device = device
        return reply
