"""The network options and the configured option layers: global < inventory defaults < subnet < device."""

from __future__ import annotations

from ipaddress import IPv4Address

from ztp.config import Config, Device, Subnet
from ztp.dhcp import options as o
from ztp.dhcp.exchange import Proposal, Reply, Request
from ztp.ipkey import ip_key


class LayeredOptions:
    """Adds options 1, 3, 6, 15, 28 from the subnet, then each configured layer, most specific last."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # Most of a reply is the same for every request from one (server address, subnet, device): computed
        # once each. Subnet and Device are unhashable but live as long as self.config (a reload builds a
        # new chain), so their ids are stable keys; the key space is bounded by the configuration.
        self._cache: dict[tuple[int, int, int], dict[int, bytes]] = {}

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Merge the options for this subnet and device into the reply."""
        subnet = reply.subnet
        if subnet is None:
            return reply
        key = (ip_key(reply.server_id), id(subnet), id(reply.device))
        layered = self._cache.get(key)
        if layered is None:
            layered = self._cache[key] = self._options(reply.server_id, subnet, reply.device)
        reply.options.update(layered)
        return reply

    def _options(self, server: IPv4Address, subnet: Subnet, device: Device | None) -> dict[int, bytes]:
        config = self.config
        opts: dict[int, bytes] = {o.SUBNET_MASK: subnet.network.netmask.packed}
        if subnet.routers:
            opts[o.ROUTERS] = b"".join(r.packed for r in subnet.routers)
        dns = subnet.dns_servers or ((server,) if config.dns else ())
        if dns:
            opts[o.DNS_SERVERS] = b"".join(d.packed for d in dns)
        domain = subnet.domain or (config.dns.zone if config.dns else None)
        if domain:
            opts[o.DOMAIN_NAME] = domain.encode()
        opts[o.BROADCAST_ADDRESS] = subnet.network.broadcast_address.packed
        for layer in (config.global_options, config.inventory.default_options, subnet.options,
                      device.options if device is not None else {}):
            opts.update(layer)
        return opts
