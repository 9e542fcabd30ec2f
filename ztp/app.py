"""Composition root: builds the appliance from a Config, runs it on one event loop, shuts it down in order."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import signal
import socket
import time
from ipaddress import IPv4Address
from typing import Any

from ztp import build
from ztp.access import AccessRule, access_warnings
from ztp.api.metrics import ApplianceCollector, Metrics
from ztp.api.routes import OperatorApi
from ztp.check import validate
from ztp.config import Config, Problem
from ztp.dhcp.chain import Chain
from ztp.dhcp.server import DhcpServer
from ztp.dns.names import build_zone
from ztp.dns.server import DnsServer, SourceRateLimiter
from ztp.dns.zone import Zone
from ztp.gcpolicy import keep_heap_frozen
from ztp.http.boot import HttpBoot
from ztp.http.pnp import PnpRoutes, PnpService
from ztp.http.server import HttpServer
from ztp.leases.ledger import EventKind, LeaseEvent
from ztp.leases.store import LeaseBackend, describe, ledger_for, merge_remote, open_store, read_through
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.net.listen import WILDCARD, listen_addresses
from ztp.net.sockets import interface_ipv4
from ztp.privilege import drop_privileges
from ztp.provision import RenderedConfigs
from ztp.render import Renderer, TemplateSet
from ztp.snapshot import Snapshot
from ztp.syslog.server import SyslogServer
from ztp.tftp.content import ChainedContent, ContentProvider, StaticRoot
from ztp.tftp.server import TftpServer
from ztp.timeline.machine import Event, Kind
from ztp.timeline.recorder import Recorder
from ztp.timeline.sources import lease_key
from ztp.timeline.store import open_timeline

log = logging.getLogger("ztp")
SWEEP_SECONDS = 5.0
TIMELINE_POLL_SECONDS = 1.0  # a shared timeline: how often other appliances' events are read


def keep_fixed_settings(old: Config, new: Config) -> tuple[Config, list[str]]:
    """`new` with the settings a reload cannot change put back to `old`'s values, and their names.

    They need new sockets (ports, DNS on or off, the DNS forwarders' socket) or another lease database
    (state_dir); they take effect on restart.
    """
    kept: list[str] = []
    changes: dict[str, Any] = {}
    if new.state_dir != old.state_dir:
        kept.append("state_dir")
        changes["state_dir"] = old.state_dir
    if new.state != old.state:
        kept.append("state")
        changes["state"] = old.state
    if new.dhcp_port != old.dhcp_port:
        kept.append("dhcp.port")
        changes["dhcp_port"] = old.dhcp_port
    if new.tftp_port != old.tftp_port:
        kept.append("tftp.port")
        changes["tftp_port"] = old.tftp_port
    if new.listen != old.listen:
        kept.append("listen")
        changes["listen"] = old.listen
    if new.user != old.user:
        kept.append("user")  # root is gone after the first switch: another user needs a restart
        changes["user"] = old.user
    if (old.dns is None) != (new.dns is None):
        kept.append("dns (enabling or disabling it)")
        changes["dns"] = old.dns
    elif old.dns is not None and new.dns is not None:
        dns_changes: dict[str, Any] = {}
        if new.dns.port != old.dns.port:
            kept.append("dns.port")
            dns_changes["port"] = old.dns.port
        if new.dns.forwarders != old.dns.forwarders:
            kept.append("dns.forwarders")
            dns_changes["forwarders"] = old.dns.forwarders
        if dns_changes:
            changes["dns"] = dataclasses.replace(new.dns, **dns_changes)
    if old.syslog != new.syslog:
        kept.append("syslog")
        changes["syslog"] = old.syslog
    if (old.http is None) != (new.http is None):
        kept.append("http (enabling or disabling it)")
        changes["http"] = old.http
    elif old.http is not None and new.http is not None and \
            (old.http.port, old.http.listen) != (new.http.port, new.http.listen):
        kept.append("http.port/http.listen")
        changes["http"] = dataclasses.replace(new.http, port=old.http.port, listen=old.http.listen)
    return (dataclasses.replace(new, **changes) if changes else new), kept


class Appliance:
    """DHCP + TFTP (+ DNS) sharing one lease table and one renderer."""

    def __init__(self, config: Config, templates: TemplateSet | None = None) -> None:
        """Build from a validated snapshot: `config` and the `templates` compiled with it (read now if None)."""
        self.config = config
        # StoreError (a wrong DSN, an old schema, an unreachable database) stops the start with the fix.
        self.writer: LeaseBackend = open_store(config)
        self.table = LeaseTable(self.writer.load())
        self.ledger = ledger_for(self.table, self.writer)  # SharedLedger on a shared store
        self.ledger.subscribe(self._lease_event)
        self.chain = Chain(config, self.ledger)
        self.renderer = Renderer(config, templates)
        # The device timeline (issue 11): fed by the ledger, DHCP, rendering, TFTP and syslog; its events live
        # in their own SQLite file, or with the leases in the shared PostgreSQL (ztp.timeline.store), batched
        # off the packet paths. Rows are marked with the lease store's id of this appliance.
        self.recorder = Recorder.for_config(config, self.table,
                                            open_timeline(config, appliance=getattr(self.writer, "appliance", "")))
        self.ledger.subscribe(self._record_lease)
        self.dns: DnsServer | None = None
        self.zone: Zone | None = None
        if config.dns is not None:
            self._build_dns()
        self.dhcp = DhcpServer(self.chain, self.ledger, interfaces=config.interfaces, port=config.dhcp_port)
        self.dhcp.read_through = read_through(self.writer, self.ledger)  # a shared store: cache misses read it
        self.static_root = StaticRoot(config.tftp_root) if config.tftp_root is not None else None
        self.tftp = TftpServer(self._content(), port=config.tftp_port,
                               log=logging.getLogger("ztp.tftp"), describe_peer=self.describe_peer,
                               max_blksize=config.tftp_max_blksize, max_sessions=config.tftp_max_sessions,
                               max_sessions_per_peer=config.tftp_max_sessions_per_peer)
        self.tftp.on_complete = self._served
        self.tftp.on_transfer = self.recorder.transfer
        self.dhcp.observe = self.recorder.dhcp
        self.recorder.activity = lambda: self.dhcp.counters["received"]  # storms: the history yields
        self.syslog: SyslogServer | None = None
        if config.syslog is not None:
            self.syslog = SyslogServer(self._syslog_sender, self._syslog_message, wanted=self._syslog_awaited,
                                       port=config.syslog.port)
        # The one HTTP listener; features add their routes here, before run() starts it (ztp.http.server).
        self.http: HttpServer | None = None
        if config.http is not None:
            self.http = HttpServer(port=config.http.port, token=config.http.token, log=logging.getLogger("ztp.http"))
            # HTTP boot: the providers TFTP serves from, asked anew per request (a reload swaps them).
            self.http.add_routes(HttpBoot(lambda: self.configs, lambda: self.static_root,
                                          on_delivered=self._served, on_transfer=self.recorder.transfer).routes())
            # Cisco PnP (IOS-XE day 0): work requests point at the HTTP boot config route above.
            self.pnp = PnpService(lambda: self.config, self.table)
            self.http.add_routes(PnpRoutes(self.pnp, post=self.recorder.post).routes())
            self.metrics = Metrics(ApplianceCollector(self.recorder, lambda: self.config, self.table,
                                                      lambda: self.dhcp.counters, lambda: self.tftp.counters,
                                                      time.time))
            self.api = OperatorApi(self.recorder, lambda: self.config, self.table, self.metrics,
                                   reload=self.request_reload)
            self.http.add_routes(self.api.routes())
        self._reload_task: asyncio.Task[bool] | None = None
        self._reload_again = False

    def _content(self) -> ChainedContent:
        """TFTP content: rendered device configs first, then the static root; both behind the access rule."""
        self.access = AccessRule(self.config, self.table)
        self.configs = RenderedConfigs(self.config, self.renderer, self.table, access=self.access)
        self.configs.on_render = self.recorder.rendered
        providers: list[ContentProvider] = [self.configs]
        if self.static_root is not None:
            self.static_root.private = self.config.tftp_private
            self.static_root.may_read_private = self.access.known
            providers.append(self.static_root)
        return ChainedContent(*providers)

    def _build_dns(self) -> None:
        zone = self._make_zone(self.config)
        dns = self.config.dns
        assert dns is not None
        self._install_zone(zone)
        self.dns = DnsServer(zone, port=dns.port, log=logging.getLogger("ztp.dns"),
                             forwarders=[str(f) for f in dns.forwarders], rate_limit=dns.rate_limit)

    def _make_zone(self, config: Config) -> Zone:
        """The zone of `config` with its static names (ValueError for a bad name or address)."""
        dns = config.dns
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
        ifnames = config.interfaces or tuple(n for _, n in socket.if_nameindex() if n != "lo")
        candidates = [str(a) for a in map(interface_ipv4, ifnames) if a is not None]
        candidates += [str(a) for s in config.subnets for a in (*s.dns_servers, *s.routers)]
        server_ips = list(dict.fromkeys(ip for ip in candidates if local(ip)))
        if not server_ips:
            # Not (yet) on the provisioning network: still answer with what DHCP hands out as option 6.
            server_ips = sorted({str(r) for s in config.subnets for r in s.dns_servers} or
                                {str(s.routers[0]) for s in config.subnets if s.routers})
        zone = build_zone(config, server_ips)  # the same build `ztp check` validated (ztp.dns.names)
        log.info("dns %s is %s", zone.server_fqdn, ", ".join(server_ips) or "(no address)")
        return zone

    def _install_zone(self, zone: Zone) -> None:
        """Make `zone` (built from self.config) current and give it the names of the active leases."""
        dns = self.config.dns
        assert dns is not None
        self.zone = zone
        # Names a device's option 12 must not take over: the appliance's own and the static records.
        origin = "." + zone.origin.rstrip(".")
        self._dns_static = {n.lower().rstrip(".").removesuffix(origin) for n in (dns.server_name, *dns.records)}
        self._dns_ip_of: dict[str, str] = {}  # dynamic name -> address, so a stale release cannot drop it
        self._dns_name_at: dict[str, str] = {}  # address -> dynamic name, so a renamed lease drops the old one
        now = time.time()
        for lease in self.table.all():
            if lease.state == LeaseState.BOUND and lease.expires > now and lease.hostname:
                self._bound(lease)

    def request_reload(self) -> None:
        """SIGHUP: reload now, or once more after the reload in progress (signals arriving meanwhile coalesce)."""
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True
            return
        self._reload_task = asyncio.create_task(self._reload_loop())

    async def _reload_loop(self) -> bool:
        ok = await self.reload()
        while self._reload_again:
            self._reload_again = False
            ok = await self.reload()
        return ok

    async def reload(self) -> bool:
        """Re-read the configuration, inventory and templates and swap them in; False (old config kept) when
        anything is wrong. Leases, in-flight TFTP transfers and sockets are untouched."""
        path = self.config.path
        log.info("reloading %s", path)
        # Validation renders every device: off the event loop, so DHCP and TFTP keep answering meanwhile.
        try:
            snapshot, problems = await asyncio.to_thread(validate, path)
        except Exception as exc:  # noqa: BLE001 - a reload must never take the running appliance down
            snapshot, problems = None, [Problem(path, 0, f"{type(exc).__name__}: {exc}")]
        if snapshot is None or problems:
            for problem in problems:
                log.error("%s", problem)
            log.error("reload failed: %d problem(s); still serving the previous configuration", len(problems))
            return False
        return self.apply(snapshot)

    def apply(self, snapshot: Snapshot) -> bool:
        """Swap in a validated snapshot (config, inventory, compiled templates) whole, at once (on the event loop,
        between two datagrams). Settings that need new sockets or another lease database keep their old values,
        with a warning; False when the new DNS zone cannot be built (the old snapshot is kept)."""
        config, kept = keep_fixed_settings(self.config, snapshot.config)
        if kept:
            log.warning("reload: %s changed; the old value is kept until ztp serve is restarted", ", ".join(kept))
        if config.interfaces != self.config.interfaces:
            log.warning("reload: dhcp.interfaces changed; DHCP follows it now, TFTP and DNS keep listening on %s "
                        "until ztp serve is restarted", ", ".join(self.tftp.hosts))
        zone = None
        if self.dns is not None:
            try:
                zone = self._make_zone(config)
            except ValueError as exc:
                log.error("%s: dns: %s", config.path, exc)
                log.error("reload failed: 1 problem(s); still serving the previous configuration")
                return False
        self.config = config
        self.chain = Chain(config, self.ledger)  # the handlers' caches belong to the old configuration
        self.dhcp.chain = self.chain
        self.renderer = Renderer(config, snapshot.templates)  # never re-read from disk until the next reload
        if config.tftp_root != (self.static_root.root if self.static_root is not None else None):
            self.static_root = StaticRoot(config.tftp_root) if config.tftp_root is not None else None
        self.tftp.content = self._content()
        self.recorder.reconfigure(config)
        self.tftp.max_blksize = config.tftp_max_blksize
        self.tftp.quota.resize(config.tftp_max_sessions, config.tftp_max_sessions_per_peer)
        self.dhcp.interfaces = frozenset(config.interfaces)
        if self.http is not None and config.http is not None:
            self.http.token = config.http.token
        if self.dns is not None and zone is not None and config.dns is not None:
            self._install_zone(zone)
            self.dns.zone = zone
            if self.dns.limiter.rate != config.dns.rate_limit:
                self.dns.limiter = SourceRateLimiter(config.dns.rate_limit)
        log.info("reloaded: %d subnets, %d devices", len(config.subnets), len(config.inventory.devices))
        return True

    def describe_peer(self, ip: str) -> str:
        """A TFTP peer's device key (MAC) when it holds a lease, else its address."""
        try:
            lease = self.table.at(IPv4Address(ip))
        except ValueError:
            return ip
        if lease is None or lease.state != LeaseState.BOUND:
            return ip
        return f"{lease.mac} ({lease.hostname})" if lease.hostname else lease.mac

    def _lease_event(self, event: LeaseEvent) -> None:
        """Lease events from the ledger, after each change is on disk and applied."""
        kind, lease = event.kind, event.lease
        if kind in (EventKind.BOUND, EventKind.RENEWED):
            self._bound(lease)
        elif kind in (EventKind.RELEASED, EventKind.DECLINED, EventKind.CONFLICT):
            self._released(lease)
        elif kind == EventKind.EXPIRED:
            log.info("%s dhcp lease %s expired", lease.mac, lease.ip)

    def _record_lease(self, event: LeaseEvent) -> None:
        """Lease events to the timeline, except other appliances' rows being merged: they recorded them."""
        if not getattr(self.ledger, "merging", False):
            self.recorder.lease(event)

    async def _follow_timeline(self) -> None:
        """A shared timeline: every TIMELINE_POLL_SECONDS, other appliances' new events (at most a batch) into
        this appliance's state machine and live listeners (the dashboard), so its API, syslog confirmation and
        deadlines know devices the others served. Bounded: one query per poll, one thread."""
        remote = getattr(self.recorder.store, "remote", None)
        if remote is None:
            return
        loop = asyncio.get_running_loop()
        failing = False
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="timeline-follow") as pool:
            while True:
                await asyncio.sleep(TIMELINE_POLL_SECONDS)
                try:
                    events: list[Event] = await loop.run_in_executor(pool, remote)
                except Exception as exc:  # noqa: BLE001 - history: log once per outage, keep serving
                    if not failing:
                        log.warning("timeline: other appliances' events cannot be read: %s", exc)
                    failing = True
                    continue
                failing = False
                if not events:
                    continue
                machine, cap = self.recorder.machine, self.recorder.retention.max_devices
                for event in events:  # stored already: applied, not recorded again; the device cap holds
                    if event.key not in machine.devices and len(machine.devices) >= cap:
                        self.recorder.counters["devices_dropped"] += 1
                        continue
                    machine.replay((event,))
                for listener in list(self.recorder.listeners):
                    try:
                        listener(events)
                    except Exception:
                        log.exception("timeline listener failed")

    def _remote_leases(self, rows: list[Lease]) -> None:
        """Rows another appliance committed to the shared store: into the cache, through the ledger."""
        merge_remote(self.ledger, rows)

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

    def _syslog_sender(self, ip: IPv4Address) -> str | None:
        """The timeline key of the device holding `ip` (syslog attribution), or None."""
        lease = self.table.at(ip)
        if lease is not None and lease.state == LeaseState.BOUND:
            return lease_key(self.config, lease)
        return None

    def _syslog_awaited(self, key: str) -> bool:
        """Whether `key`'s syslog lines matter now: its config was delivered, it has not confirmed yet."""
        status = self.recorder.machine.status(key)
        return status is not None and status.awaits_confirmation

    def _syslog_message(self, key: str, ip: str, text: str, now: float) -> None:
        """A device's syslog line: only the first one after its config was delivered matters (confirmation)."""
        status = self.recorder.machine.status(key)
        if status is not None and status.awaits_confirmation:
            self.recorder.post(Event(key, now, Kind.SYSLOG, f"syslog from {ip}: {text}", status.mac, ip))

    def _served(self, peer_ip: str, filename: str, nbytes: int) -> None:
        log.info("%s provisioned: %s (%d bytes) delivered", self.describe_peer(peer_ip), filename, nbytes)

    async def _sweep(self) -> None:
        """Run the ledger's expiry timer and drop expired DNS names (names must not outlive their lease)."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.time()
            self.ledger.expire(now)
            if self.zone is None:
                continue
            origin = "." + self.zone.origin
            for fqdn in self.zone.prune(now):
                name = fqdn.removesuffix(origin)
                ip = self._dns_ip_of.pop(name, None)
                if ip is not None and self._dns_name_at.get(ip) == name:
                    del self._dns_name_at[ip]
                log.info("dns %s removed: its lease expired", fqdn)

    def _bind_to_provisioning_network(self) -> None:
        """Point TFTP and DNS at the addresses of dhcp.interfaces and `listen` (ListenError, an OSError
        naming the interfaces that exist, when one is missing), and warn about open settings."""
        addresses = listen_addresses(self.config.interfaces, self.config.listen)
        if addresses == [WILDCARD]:
            log.warning("tftp and dns listen on every address (0.0.0.0): set dhcp.interfaces or listen to "
                        "serve only the provisioning network")
        self.tftp.hosts = tuple(addresses)
        if self.dns is not None:
            self.dns.hosts = tuple(addresses)
            self.dns.host = addresses[0]
        if self.http is not None and self.config.http is not None:
            explicit = self.config.http.listen
            self.http.hosts = tuple(listen_addresses((), explicit) if explicit else addresses)
        if self.syslog is not None:
            self.syslog.hosts = tuple(addresses)
        for warning in access_warnings(self.config):
            log.warning("%s", warning)

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then shut down in reverse order of start-up."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        self._bind_to_provisioning_network()
        # Other appliances' rows (a shared store) reach the cache, DNS and the expiry timer through the ledger.
        self.writer.start(loop, self._remote_leases)
        log.info("leases: %s%s", describe(self.config), " (shared)" if self.writer.shared else "")
        started: list[Any] = []
        try:
            await self.recorder.start()
            started.append(self.recorder)
            for server, what in ((self.tftp, "tftp"), (self.dns, "dns"), (self.http, "http"), (self.syslog, "syslog"),
                                 (self.dhcp, "dhcp")):
                if server is None:
                    continue
                await server.start()
                started.append(server)
                log.info("%s started", what)
            if self.config.user:
                # Every port and raw socket is open: from here on only what DHCP still needs.
                drop_privileges(self.config.user, state_dir=self.config.state_dir)
            log.info("ztp serving, %s build: %d subnets, %d inventory devices, %d leases on disk", build(),
                     len(self.config.subnets), len(self.config.inventory.devices), len(self.table.leases()))
            sweeper = asyncio.create_task(self._sweep())
            follower = asyncio.create_task(self._follow_timeline())
            collector = asyncio.create_task(keep_heap_frozen(busy=lambda: self.recorder.storming))
            await stop.wait()
            sweeper.cancel()
            follower.cancel()
            collector.cancel()
            if self._reload_task is not None:
                self._reload_task.cancel()
            log.info("ztp stopping")
        finally:
            for server in reversed(started):
                await server.close()
            self.writer.close()
            log.info("ztp stopped; dhcp counters %s; tftp counters %s", dict(self.dhcp.counters),
                     {k: v for k, v in self.tftp.counters.items() if v})
            if self.dns is not None:
                log.info("dns counters %s", {k: v for k, v in self.dns.counters.items() if v})
