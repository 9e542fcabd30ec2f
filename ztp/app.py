"""Composition root: builds the appliance from a Config, runs it on one event loop, shuts it down in order."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from ipaddress import IPv4Address
from typing import Any

from ztp.config import Config
from ztp.dhcp.responder import Responder
from ztp.dhcp.server import DhcpServer
from ztp.dns.server import DnsServer
from ztp.dns.zone import Zone
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
        self.dns: DnsServer | None = None
        self.zone: Zone | None = None
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

    def _build_dns(self) -> None:
        import socket

        from ztp.net.sockets import interface_ipv4

        dns = self.config.dns
        assert dns is not None

        def local(ip: str) -> bool:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind((ip, 0))
                except OSError:
                    return False
            return True

        # The appliance's own name must resolve to addresses devices can reach it on: those of the
        # interfaces it serves, then configured router/DNS server addresses that are local to this host.
        ifnames = self.config.interfaces or tuple(n for _, n in socket.if_nameindex() if n != "lo")
        candidates = [str(a) for a in map(interface_ipv4, ifnames) if a is not None]
        candidates += [str(a) for s in self.config.subnets for a in (*s.dns_servers, *s.routers)]
        server_ips = list(dict.fromkeys(ip for ip in candidates if local(ip)))
        if not server_ips:
            # Not (yet) on the provisioning network: still answer with what DHCP hands out as option 6.
            server_ips = sorted({str(r) for s in self.config.subnets for r in s.dns_servers} or
                                {str(s.routers[0]) for s in self.config.subnets if s.routers})
        self.zone = Zone(dns.zone, server_name=dns.server_name, server_ips=server_ips,
                         subnets=[str(s.network) for s in self.config.subnets], ttl=dns.ttl,
                         records=dict(dns.records))
        log.info("dns %s is %s", self.zone.server_fqdn, ", ".join(server_ips) or "(no address)")
        # Names a device's option 12 must not take over: the appliance's own and the static records.
        origin = "." + self.zone.origin.rstrip(".")
        self._dns_static = {n.lower().rstrip(".").removesuffix(origin) for n in (dns.server_name, *dns.records)}
        self._dns_ip_of: dict[str, str] = {}  # dynamic name -> address, so a stale release cannot drop it
        self._dns_name_at: dict[str, str] = {}  # address -> dynamic name, so a renamed lease drops the old one
        for device in self.config.inventory.devices:
            if device.ip is not None:
                try:
                    self.zone.set_host(device.hostname, str(device.ip))
                except ValueError as exc:
                    log.warning("dns: no name for %s: %s", device.hostname, exc)
        now = time.time()
        for lease in self.table.all():
            if lease.state == LeaseState.BOUND and lease.expires > now and lease.hostname:
                self._bound(lease)
        self.dns = DnsServer(self.zone, port=dns.port, log=logging.getLogger("ztp.dns"),
                             forwarders=[str(f) for f in dns.forwarders], rate_limit=dns.rate_limit)

    def describe_peer(self, ip: str) -> str:
        """A TFTP peer's device key (MAC) when it holds a lease, else its address."""
        try:
            lease = self.table.by_ip.get(IPv4Address(ip))
        except ValueError:
            return ip
        if lease is None or lease.state != LeaseState.BOUND:
            return ip
        return f"{lease.mac} ({lease.hostname})" if lease.hostname else lease.mac

    def _bound(self, lease: Lease) -> None:
        if self.zone is None or not lease.hostname:
            return
        name, ip = lease.hostname, str(lease.ip)
        reserved = self.config.inventory.by_hostname.get(name)
        if reserved is not None and reserved.ip is not None:
            return  # a reservation's name is static, whatever address this lease has
        if name in self._dns_static:
            log.warning("%s dns: host name %r is a static name of the zone; not registered", lease.mac, name)
            return
        previous = self._dns_name_at.get(ip)
        if previous is not None and previous != name:
            self._forget_name(previous, ip)
        try:
            self.zone.set_host(name, ip, lease.expires)
        except ValueError as exc:
            log.warning("%s dns: no name for %s: %s", lease.mac, ip, exc)
            return
        moved_from = self._dns_ip_of.get(name)
        if moved_from is not None and moved_from != ip and self._dns_name_at.get(moved_from) == name:
            del self._dns_name_at[moved_from]
        self._dns_ip_of[name] = ip
        self._dns_name_at[ip] = name

    def _released(self, lease: Lease) -> None:
        if self.zone is not None:
            ip = str(lease.ip)
            self._forget_name(lease.hostname or self._dns_name_at.get(ip), ip)

    def _forget_name(self, name: str | None, ip: str) -> None:
        """Drop the dynamic ``name`` if it still points at ``ip`` (another device may have taken it since)."""
        if name is None or self._dns_ip_of.get(name) != ip:
            return
        del self._dns_ip_of[name]
        if self._dns_name_at.get(ip) == name:
            del self._dns_name_at[ip]
        if self.zone is not None:
            self.zone.remove_host(name)

    def _served(self, peer_ip: str, filename: str, nbytes: int) -> None:
        log.info("%s provisioned: %s (%d bytes) delivered", self.describe_peer(peer_ip), filename, nbytes)

    async def _sweep(self) -> None:
        """Log leases that expired and drop their DNS names (names must not outlive their lease)."""
        last = time.time()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.time()
            for lease in self.table.all():
                if lease.state == LeaseState.BOUND and last < lease.expires <= now:
                    log.info("%s dhcp lease %s expired", lease.mac, lease.ip)
            last = now
            if self.zone is None:
                continue
            origin = "." + self.zone.origin
            for fqdn in self.zone.prune(now):
                name = fqdn.removesuffix(origin)
                ip = self._dns_ip_of.pop(name, None)
                if ip is not None and self._dns_name_at.get(ip) == name:
                    del self._dns_name_at[ip]
                log.info("dns %s removed: its lease expired", fqdn)

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
            log.info("ztp stopped; dhcp counters %s; tftp counters %s", dict(self.dhcp.counters),
                     {k: v for k, v in self.tftp.counters.items() if v})
            if self.dns is not None:
                log.info("dns counters %s", {k: v for k, v in self.dns.counters.items() if v})
