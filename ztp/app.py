"""Composition root: builds the appliance from a Config, runs it on one event loop, shuts it down in order."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from ztp.config import Config
from ztp.dhcp.responder import Responder
from ztp.dhcp.server import DhcpServer
from ztp.leases.store import LeaseWriter, database_path, load_leases
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.provision import RenderedConfigs
from ztp.render import Renderer
from ztp.tftp.content import ChainedContent, ContentProvider, StaticRoot
from ztp.tftp.server import TftpServer

log = logging.getLogger("ztp")
SWEEP_SECONDS = 5.0


class Appliance:
    """DHCP + TFTP (+ DNS) sharing one lease table and one renderer."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.table = LeaseTable(load_leases(database_path(config.state_dir)))
        self.writer = LeaseWriter(database_path(config.state_dir))
        self.responder = Responder(config, self.table)
        self.renderer = Renderer(config)
        self.dns: Any = None
        self.zone: Any = None
        if config.dns is not None:
            self._build_dns()
        self.dhcp = DhcpServer(self.responder, self.writer, interfaces=config.interfaces, port=config.dhcp_port,
                               on_bound=self._bound, on_released=self._released)
        providers: list[ContentProvider] = [RenderedConfigs(config, self.renderer, self.table)]
        if config.tftp_root is not None:
            providers.append(StaticRoot(config.tftp_root))
        self.tftp = TftpServer(ChainedContent(*providers), port=config.tftp_port,
                               log=logging.getLogger("ztp.tftp"), describe_peer=self.describe_peer,
                               max_blksize=config.tftp_max_blksize)
        self.tftp.on_complete = self._served
        self._by_ip_cache: dict[str, str] = {}

    def _build_dns(self) -> None:
        from ztp.dns.server import DnsServer
        from ztp.dns.zone import Zone

        dns = self.config.dns
        assert dns is not None
        server_ips = sorted({str(r) for s in self.config.subnets for r in s.dns_servers} or
                            {str(s.routers[0]) for s in self.config.subnets if s.routers})
        self.zone = Zone(dns.zone, server_name=dns.server_name, server_ips=server_ips,
                         subnets=[str(s.network) for s in self.config.subnets], ttl=dns.ttl,
                         records=dict(dns.records))
        for device in self.config.inventory.devices:
            if device.ip is not None:
                self.zone.set_host(device.hostname, str(device.ip))
        now = time.time()
        for lease in self.table.all():
            if lease.state == LeaseState.BOUND and lease.expires > now and lease.hostname:
                self.zone.set_host(lease.hostname, str(lease.ip), lease.expires)
        self.dns = DnsServer(self.zone, port=dns.port, log=logging.getLogger("ztp.dns"),
                             forwarders=[str(f) for f in dns.forwarders])

    def describe_peer(self, ip: str) -> str:
        """A TFTP peer's device key (MAC) when it holds a lease, else its address."""
        for lease in self.table.by_client.values():
            if str(lease.ip) == ip and lease.state == LeaseState.BOUND:
                return f"{lease.mac} ({lease.hostname or ip})" if lease.hostname else lease.mac
        return ip

    def _bound(self, lease: Lease) -> None:
        if self.zone is not None and lease.hostname:
            reserved = self.config.inventory.by_hostname.get(lease.hostname)
            if reserved is None or reserved.ip is None:
                self.zone.set_host(lease.hostname, str(lease.ip), lease.expires)

    def _released(self, lease: Lease) -> None:
        if self.zone is not None:
            self._forget_name(lease)

    def _forget_name(self, lease: Lease) -> None:
        name = lease.hostname
        if name is None:
            current = self.table.by_ip.get(lease.ip)
            name = current.hostname if current is not None else None
        if name is None:
            return
        reserved = self.config.inventory.by_hostname.get(name)
        if reserved is None or reserved.ip is None:
            self.zone.remove_host(name)

    def _served(self, peer_ip: str, filename: str, nbytes: int) -> None:
        log.info("%s provisioned: %s (%d bytes) delivered", self.describe_peer(peer_ip), filename, nbytes)

    async def _sweep(self) -> None:
        """Drop DNS names of leases that expired (names must not outlive their lease)."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.time()
            for lease in self.table.all():
                if lease.state == LeaseState.BOUND and now - SWEEP_SECONDS * 2 < lease.expires <= now:
                    log.info("%s dhcp lease %s expired", lease.mac, lease.ip)
                    if self.zone is not None:
                        self._forget_name(lease)

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then shut down in reverse order of start-up."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.writer.start(loop)
        started: list[Any] = []
        try:
            for server, what in ((self.tftp, "tftp"), (self.dns, "dns"), (self.dhcp, "dhcp")):
                if server is None:
                    continue
                await server.start()
                started.append(server)
                log.info("%s started", what)
            log.info("ztp serving: %d subnets, %d inventory devices, %d leases on disk",
                     len(self.config.subnets), len(self.config.inventory.devices), len(self.table.by_ip))
            sweeper = asyncio.create_task(self._sweep())
            await stop.wait()
            sweeper.cancel()
            log.info("ztp stopping")
        finally:
            for server in reversed(started):
                await server.close()
            self.writer.close()
            log.info("ztp stopped; dhcp counters %s", dict(self.dhcp.counters))
