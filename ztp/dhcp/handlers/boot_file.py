"""What the device fetches: options 66 and 67 (RFC 2132 §9.4, §9.5), named by the device registry."""

from __future__ import annotations

from ztp.config import Config
from ztp.devices import boot_file_name
from ztp.dhcp import options as o
from ztp.dhcp.exchange import Proposal, Reply, Request
from ztp.ipkey import spelled


class BootFile:
    """Sets `reply.boot_file` and, unless a configured layer set them, options 66 (us) and 67 (the file)."""

    def __init__(self, config: Config) -> None:
        self.inventory = config.inventory

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Name the boot file for this device."""
        name = boot_file_name(self.inventory, reply.device, req.mac)
        if name is None:
            return reply
        reply.boot_file = name
        opts = reply.options
        if o.TFTP_SERVER_NAME not in opts:
            opts[o.TFTP_SERVER_NAME] = spelled(reply.server_id)[1]
        if o.BOOTFILE_NAME not in opts:
            opts[o.BOOTFILE_NAME] = name.encode()
        return reply
