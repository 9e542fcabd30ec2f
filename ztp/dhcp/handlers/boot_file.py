"""What the device fetches: options 66 and 67 (RFC 2132 §9.4, §9.5), named by the device registry."""

from __future__ import annotations

from ztp.config import Config
from ztp.devices import boot_file_name
from ztp.dhcp import options as o
from ztp.dhcp.exchange import Proposal, Reply, Request
from ztp.ipkey import ip_key


class BootFile:
    """Sets `reply.boot_file` and, unless a configured layer set them, options 66 (us) and 67 (the file)."""

    def __init__(self, config: Config) -> None:
        self.inventory = config.inventory
        self._names: dict[int, bytes] = {}  # by server address (ipkey.ip_key)

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Name the boot file for this device."""
        name = boot_file_name(self.inventory, reply.device, req.mac)
        if name is None:
            return reply
        reply.boot_file = name
        opts = reply.options
        if o.TFTP_SERVER_NAME not in opts:
            key = ip_key(reply.server_id)
            server = self._names.get(key)
            if server is None:  # remembered: IPv4Address spells itself digit by digit
                server = self._names[key] = str(reply.server_id).encode()
            opts[o.TFTP_SERVER_NAME] = server
        if o.BOOTFILE_NAME not in opts:
            opts[o.BOOTFILE_NAME] = name.encode()
        return reply
