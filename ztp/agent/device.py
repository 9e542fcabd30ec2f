"""One emulated device's boot flow on asyncio: DHCP, ARP probe, address, boot server, TFTP, result.

This is the I/O shell around the sans-I/O machines in :mod:`ztp.agent.dhcp_client` and
:mod:`ztp.agent.tftp_client`; the link layer (one AF_PACKET socket shared by a whole fleet) is
:class:`ztp.agent.rawsock.PacketLink`. Every log line starts with the device's MAC.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import random
import re
import socket
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from dnslib import QTYPE, DNSRecord  # type: ignore[import-untyped,unused-ignore]

from ztp.agent import netlink, rawsock
from ztp.agent.attempts import AttemptFailure, BootRetry
from ztp.agent.dhcp_client import (
    Acked,
    Bound,
    ClientConfig,
    ClientState,
    Declined,
    DhcpClient,
    Lease,
    LeaseExpired,
    Nacked,
    Offered,
    RequestTimedOut,
    Retransmitted,
    Transmit,
)
from ztp.agent.tftp_client import TftpOptions, TftpReadClient
from ztp.dhcp import options as opt
from ztp.dhcp.options import decode_value
from ztp.dhcp.packet import ZERO_IP, DhcpPacket, MalformedPacket, parse

log = logging.getLogger("ztp.agent")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NO_OFFER = 3
EXIT_NAK = 4
EXIT_NO_BOOT_FILE = 5
EXIT_TFTP = 6
EXIT_CONFLICT = 7
EXIT_DNS = 8
EXIT_NO_ACK = 9

STAGES = ("discover_offer", "request_ack", "arp_probe", "configure", "tftp", "total")


class DeviceFailure(Exception):
    """The boot flow stopped at `stage` for `reason`; `exit_code` is the CLI status for it."""

    def __init__(self, stage: str, reason: str, exit_code: int) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """Who one emulated device is (what it puts in its DHCP messages)."""

    mac: str
    hostname: str | None = None
    vendor_class: str | None = None
    client_id: bytes | None = None
    broadcast: bool = False
    profile: str | None = None  # a vendor profile (ztp.agent.profiles): its fingerprint and way of fetching
    serial: str | None = None
    user_class: bytes | None = None
    parameter_list: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """How devices behave; shared by every device of a run. Times are seconds."""

    interface: str
    timeout: float = 60.0
    out_dir: Path | None = None
    per_device_dir: bool = False
    configure: bool = True
    tftp: TftpOptions = field(default_factory=TftpOptions)
    arp_probes: int = 2
    arp_interval: float = 0.2
    arp_wait: float = 0.5
    decline_wait: float = 10.0
    max_naks: int = 3
    stay: float | None = None  # None: exit once provisioned; inf: until stopped
    release: bool = False
    #: Boot attempts (ztp.agent.attempts): after a failed fetch, or an OFFER never ACKed for
    #: `request_timeout` s, the device forgets its address and DISCOVERs again, up to this many times in all
    #: within `timeout`; 1: one attempt (DHCP retries until `timeout`, a failed fetch ends the run).
    boot_attempts: int = 3
    boot_backoff: float = 2.0
    boot_backoff_max: float = 16.0
    request_timeout: float = 10.0


@dataclass(slots=True)
class DeviceResult:
    """What one device did (issue 3, step 7); `to_json` is the `--json` form."""

    mac: str
    status: str = "failed"
    exit_code: int = EXIT_ERROR
    stage: str | None = None
    reason: str | None = None
    ip: str | None = None
    prefixlen: int | None = None
    router: str | None = None
    server_id: str | None = None
    lease_time: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    boot_server: str | None = None
    boot_server_source: str | None = None
    boot_file: str | None = None
    path: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    tftp_options: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    discovers: int = 0
    requests: int = 0
    offers: int = 0
    naks: int = 0
    declines: int = 0
    declined: list[str] = field(default_factory=list)
    renewals: int = 0
    rebinds: int = 0
    tftp_retransmits: int = 0
    released: bool = False
    profile: str | None = None  # the vendor profile booted as (ztp agent --profile)
    transport: str | None = None  # how the config came: tftp or http
    fetched: list[str] = field(default_factory=list)  # every URL the profile's flow tried, in order
    verified: list[str] = field(default_factory=list)  # what was checked the vendor's way (md5 line, JSON...)
    attempts: int = 0  # boot attempts made (--boot-attempts): each one DHCP from DISCOVER, then the fetch
    attempt_failures: list[dict[str, Any]] = field(default_factory=list)  # why each earlier attempt failed

    @property
    def provisioned(self) -> bool:
        """True when the device fetched and stored its boot file."""
        return self.status == "provisioned"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (timings in seconds, rounded to the microsecond)."""
        out = asdict(self)
        out["timings"] = {k: round(v, 6) for k, v in self.timings.items()}
        return out


@dataclass(frozen=True, slots=True)
class BootTarget:
    """Where the boot file comes from (issue 3, step 5); a server may still be a hostname."""

    server: str | None
    server_source: str | None
    file: str | None
    file_source: str | None


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def boot_target(ack: DhcpPacket) -> BootTarget:
    """Boot server from option 66, else 150 (RFC 5859), else siaddr, else sname; file from 67, else `file`."""
    server: str | None = None
    source: str | None = None
    raw66 = ack.options.get(opt.TFTP_SERVER_NAME)
    if raw66 and _text(raw66):
        server, source = re.split(r"[\s,]+", _text(raw66))[0], "option66"
    elif (raw150 := ack.options.get(opt.TFTP_SERVER_ADDRESS)) and len(raw150) >= 4:
        server, source = str(IPv4Address(raw150[:4])), "option150"
    elif ack.siaddr != ZERO_IP:
        server, source = str(ack.siaddr), "siaddr"
    elif ack.sname and _text(ack.sname):
        server, source = _text(ack.sname), "sname"
    file: str | None = None
    file_source: str | None = None
    raw67 = ack.options.get(opt.BOOTFILE_NAME)
    if raw67 and _text(raw67):
        file, file_source = _text(raw67), "option67"
    elif ack.file and _text(ack.file):
        file, file_source = _text(ack.file), "file"
    return BootTarget(server, source, file, file_source)


def _is_ip(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True


class InterfaceConfigurator:
    """Adds leased addresses (and the default route) to the agent's interface over rtnetlink.

    The first address gets its prefix route and the default route; later ones (a fleet) are added with
    ``noprefixroute`` so the routing table stays one entry per subnet. Each change is one netlink request
    on a shared socket (:mod:`ztp.agent.netlink`), so a boot storm does not queue behind ``ip`` processes.
    """

    def __init__(self, ifname: str, *, enabled: bool = True, rtnl: netlink.RouteRequests | None = None,
                 ifindex: int | None = None) -> None:
        """Configure `ifname`; with `enabled` False every call is a no-op (and no socket is opened).

        The netlink socket and interface index are looked up on first use unless given.
        """
        self.ifname = ifname
        self.enabled = enabled
        self._primary: IPv4Address | None = None
        self._route = False
        self._added: dict[IPv4Address, int] = {}  # addresses configured here (oldest first) -> prefix length
        self._rtnl = rtnl
        self._ifindex = ifindex

    def _socket(self) -> tuple[netlink.RouteRequests, int]:
        if self._ifindex is None:
            self._ifindex = socket.if_nametoindex(self.ifname)
        if self._rtnl is None:
            self._rtnl = netlink.RouteSocket()
        return self._rtnl, self._ifindex

    async def add(self, lease: Lease) -> None:
        """Add the lease's address (and once, the default route via its first router); OSError on failure."""
        if not self.enabled:
            return
        rtnl, ifindex = self._socket()
        cidr = f"{lease.address}/{lease.prefixlen}"
        # Claimed before the first await: concurrent devices then agree on which address is primary, and
        # the kernel sees the primary (with its prefix route) before any noprefixroute secondary.
        claimed = self._primary is None
        if claimed:
            self._primary = lease.address
        seq = rtnl.next_seq()
        msg = netlink.build_address(seq, ifindex, lease.address, lease.prefixlen,
                                    noprefixroute=self._primary != lease.address)
        try:
            ack = await rtnl.request(seq, msg)
            if ack.error != errno.EEXIST:
                ack.raise_for_error(f"add {cidr} to {self.ifname}")
        except OSError:
            if claimed and self._primary == lease.address:
                self._primary = None
            raise
        self._added[lease.address] = lease.prefixlen
        if lease.routers and not self._route:
            self._route = True
            seq = rtnl.next_seq()
            ack = await rtnl.request(seq, netlink.build_default_route(seq, ifindex, lease.routers[0]))
            if ack.error:
                # As a device would: it still has its address and a route to its own subnet.
                log.warning("default route via %s on %s not set: %s", lease.routers[0], self.ifname,
                            os.strerror(ack.error) + (f": {ack.message}" if ack.message else ""))

    async def remove(self, lease: Lease) -> None:
        """Remove the lease's address again (errors are logged, not raised)."""
        if not self.enabled:
            return
        rtnl, ifindex = self._socket()
        net = IPv4Network(f"{lease.address}/{lease.prefixlen}", strict=False)
        self._added.pop(lease.address, None)
        others = [a for a in self._added if a in net]
        primary = self._primary == lease.address
        if primary and others:
            # Without promote_secondaries the kernel deletes every secondary of the subnet with its primary
            # (ip-address(8)): the other devices of a fleet would lose their addresses mid-transfer.
            self._promote_secondaries()
        seq = rtnl.next_seq()
        msg = netlink.build_address(seq, ifindex, lease.address, lease.prefixlen, add=False)
        ack = await rtnl.request(seq, msg)
        if ack.error:
            log.debug("remove %s/%s from %s: %s", lease.address, lease.prefixlen, self.ifname,
                      os.strerror(ack.error))
        if not primary:
            return
        if not others:
            self._primary = None
            self._route = False  # the kernel dropped every route via the interface with its last address
            return
        # The oldest secondary is promoted (the kernel's list order); added noprefixroute, it does not bring
        # back the on-link route that left with the old primary, so put that route back.
        self._primary = others[0]
        seq = rtnl.next_seq()
        ack = await rtnl.request(seq, netlink.build_prefix_route(seq, ifindex, net))
        if ack.error:
            log.warning("on-link route %s on %s not restored: %s", net, self.ifname, os.strerror(ack.error))

    def _promote_secondaries(self) -> None:
        path = Path("/proc/sys/net/ipv4/conf") / self.ifname / "promote_secondaries"
        try:
            if path.read_text().strip() != "1":
                path.write_text("1\n")
        except OSError as exc:
            log.warning("cannot set %s (%s): removing %s's first address removes the others", path, exc,
                        self.ifname)

    def close(self) -> None:
        """Close the netlink socket (addresses stay configured)."""
        if self._rtnl is not None:
            self._rtnl.close()
            self._rtnl = None


class _UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.queue.put_nowait((data, (str(addr[0]), int(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class Device:
    """One device running the whole flow on a shared :class:`~ztp.agent.rawsock.PacketLink`."""

    def __init__(self, spec: DeviceSpec, link: rawsock.PacketLink, host: InterfaceConfigurator,
                 opts: AgentOptions, rng: random.Random | None = None) -> None:
        """Prepare the device; nothing is sent before run()."""
        self.spec = spec
        self.link = link
        self.host = host
        self.opts = opts
        self.mac = rawsock.mac_bytes(spec.mac)
        self.retry = BootRetry(opts.boot_attempts, opts.boot_backoff, opts.boot_backoff_max)
        config = ClientConfig(mac=spec.mac, hostname=spec.hostname, vendor_class=spec.vendor_class,
                              client_id=spec.client_id, broadcast=spec.broadcast, decline_wait=opts.decline_wait,
                              user_class=spec.user_class,
                              # One attempt keeps RFC 2131's patience; with more, a silent server ends the
                              # attempt (and the next DISCOVER may find another appliance).
                              request_timeout=opts.request_timeout if opts.boot_attempts > 1 else None)
        if spec.parameter_list:
            config = dataclasses.replace(config, parameter_list=spec.parameter_list)
        self._rng = rng or random.Random()
        self.client = DhcpClient(config, self._rng)
        self.result = DeviceResult(mac=self.client.chaddr[:6].hex(":"), profile=spec.profile)
        self._queue: asyncio.Queue[rawsock.UdpFrame] = asyncio.Queue()
        self._server_mac: bytes | None = None
        self._configured: Lease | None = None
        self._saw_offer = False
        self._last_nak = False
        self._attempt_naks = 0
        self._last_attempt = True
        self.on_stage: Any = None  # optional callback(stage: str) for progress displays

    # -- run -------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> DeviceResult:
        """Provision the device (and with `stay`, keep its lease); never raises for protocol failures."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.opts.timeout
        self.link.register_dhcp(self.mac, self._queue.put_nowait)
        res = self.result
        try:
            await self._attempts(deadline)
            res.timings["total"] = loop.time() - start
            res.status, res.exit_code = "provisioned", EXIT_OK
            log.info("%s provisioned: %s, %s bytes of %s from %s in %.3fs", res.mac, res.ip, res.bytes,
                     res.boot_file, res.boot_server, res.timings["total"])
            if self.opts.stay is not None:
                await self._stay(stop, loop.time() + self.opts.stay)
        except DeviceFailure as exc:
            res.stage, res.reason, res.exit_code = exc.stage, exc.reason, exc.exit_code
            res.timings.setdefault("total", loop.time() - start)
            log.warning("%s failed at %s: %s", res.mac, exc.stage, exc.reason)
        except asyncio.CancelledError:
            res.stage, res.reason = res.stage or "cancelled", "stopped before completion"
            raise
        finally:
            if self.opts.release:
                await self._release()
            self.client.stop()
            self.link.unregister_dhcp(self.mac)
        return res

    async def _attempts(self, deadline: float) -> None:
        """Boot attempts until one provisions; the last failure (or one no retry can fix) is raised."""
        loop = asyncio.get_running_loop()
        res = self.result
        attempt = 0
        while True:
            attempt += 1
            res.attempts = attempt
            self._last_attempt = self.retry.is_last(attempt)
            self._saw_offer = self._last_nak = False
            self._attempt_naks = 0
            try:
                lease = await self._acquire(deadline)
                await self._boot(lease, deadline)
                self._last_attempt = True  # provisioned: what follows (--stay) is lease keeping, not booting
                return
            except DeviceFailure as exc:
                wait = self.retry.next_attempt(attempt, exc.stage, loop.time(), deadline, self._rng)
                if wait is None:
                    raise
                res.attempt_failures.append(
                    AttemptFailure(attempt, exc.stage, exc.reason, exc.exit_code, wait).to_json())
                log.warning("%s boot attempt %d of %d ended at %s: %s; DHCP again in %.1fs", res.mac, attempt,
                            self.retry.attempts, exc.stage, exc.reason, wait)
            await self._forget()
            self._stage("backoff")
            await asyncio.sleep(wait)

    async def _forget(self) -> None:
        """Drop the lease as a rebooting switch does: no RELEASE (its server may be the one that failed, and
        the shared lease lets any appliance give the address back), the address and route off the interface
        (a stale address would answer the next attempt's ARP probe and keep the route)."""
        self.client.stop()
        self.client.datagrams_to_send()  # anything the ended attempt still queued is not sent
        while self.client.next_event() is not None:
            pass
        await self._unconfigure()
        self._server_mac = None

    # -- DHCP ------------------------------------------------------------------------------------------

    async def _acquire(self, deadline: float) -> Lease:
        loop = asyncio.get_running_loop()
        self.client.start(loop.time())
        while True:
            lease = await self._pump(deadline)
            if lease is not None:
                return lease
            if loop.time() >= deadline:
                raise self._timeout_failure()

    def _timeout_failure(self) -> DeviceFailure:
        res = self.result
        if self._last_nak:
            return DeviceFailure("request", f"NAK ({res.naks} in total) and no lease in "
                                 f"{self.opts.timeout:g}s", EXIT_NAK)
        if res.declines:
            return DeviceFailure("arp_probe", f"declined {', '.join(res.declined)} (address conflict) and "
                                 f"no usable lease in {self.opts.timeout:g}s", EXIT_CONFLICT)
        if self._saw_offer:
            return DeviceFailure("request", f"offered but never acknowledged in {self.opts.timeout:g}s",
                                 EXIT_NO_ACK)
        return DeviceFailure("discover", f"no offer in {self.opts.timeout:g}s "
                             f"({res.discovers} DISCOVERs sent)", EXIT_NO_OFFER)

    async def _pump(self, deadline: float) -> Lease | None:
        """Run the DHCP machine until it binds (first binding returned) or `deadline` passes."""
        loop = asyncio.get_running_loop()
        while True:
            # Events before the datagrams queued with them: an attempt that ends on RequestTimedOut must not
            # send the DISCOVER the machine queued when it fell back to INIT (the next attempt sends its own).
            while (ev := self.client.next_event()) is not None:
                bound = await self._on_event(ev)
                self._flush()
                if bound is not None:
                    return bound
            self._flush()
            now = loop.time()
            timer = self.client.get_timer()
            until = deadline if timer is None else min(timer, deadline)
            if now >= deadline:
                return None
            frame: rawsock.UdpFrame | None = None
            if until > now:
                try:
                    async with asyncio.timeout(until - now):
                        frame = await self._queue.get()
                except TimeoutError:
                    frame = None
            now = loop.time()
            if frame is not None:
                try:
                    pkt = parse(frame.payload)
                except MalformedPacket as exc:
                    log.debug("%s dropped malformed reply: %s", self.result.mac, exc)
                    continue
                if pkt.message_type == 5 and pkt.xid == self.client.xid:
                    # Unicast renewals go to the MAC the ACK came from: the server's, or the relay's.
                    self._server_mac = frame.src_mac
                self.client.receive(pkt, now)
            self.client.handle_timer(now)

    def _flush(self) -> None:
        for tx in self.client.datagrams_to_send():
            self._send(tx)

    def _send(self, tx: Transmit) -> None:
        mtype = tx.packet.message_type
        if mtype == 1:
            self.result.discovers += 1
        elif mtype == 3:
            self.result.requests += 1
        dst_mac = rawsock.BROADCAST_MAC if tx.broadcast else (self._server_mac or rawsock.BROADCAST_MAC)
        self.link.send(rawsock.build_udp_frame(self.mac, dst_mac, tx.source, tx.destination,
                                               rawsock.DHCP_CLIENT_PORT, rawsock.DHCP_SERVER_PORT, tx.payload))

    async def _on_event(self, ev: object) -> Lease | None:
        res = self.result
        now = asyncio.get_running_loop().time()
        if isinstance(ev, Offered):
            res.offers += 1
            self._saw_offer = True
            res.timings["discover_offer"] = ev.at - ev.discover_at
            log.info("%s offer %s from %s", res.mac, ev.offer.yiaddr, ev.offer.option_ip(opt.SERVER_ID))
            self._stage("request")
        elif isinstance(ev, Acked):
            self._last_nak = False
            res.timings["request_ack"] = ev.at - ev.request_at
            log.info("%s ack %s, probing", res.mac, ev.lease.address)
            self._stage("probe")
            t0 = now
            conflict = await self._probe(ev.lease.address)
            res.timings["arp_probe"] = asyncio.get_running_loop().time() - t0
            self.client.probe_result(conflict, asyncio.get_running_loop().time())
        elif isinstance(ev, Bound):
            if ev.renewed or ev.rebound:
                res.renewals += ev.renewed
                res.rebinds += ev.rebound
                self._record_lease(ev.lease)
                log.info("%s %s %s, lease %ss", res.mac, "renewed" if ev.renewed else "rebound",
                         ev.lease.address, ev.lease.lease_time)
                if self._configured is None or self._configured.address != ev.lease.address:
                    await self._configure(ev.lease)
                return None
            self._record_lease(ev.lease)
            log.info("%s bound %s/%s server %s lease %ss", res.mac, ev.lease.address, ev.lease.prefixlen,
                     ev.lease.server_id, ev.lease.lease_time)
            self.link.send(rawsock.build_arp_announcement(self.mac, ev.lease.address))
            t0 = asyncio.get_running_loop().time()
            await self._configure(ev.lease)
            res.timings["configure"] = asyncio.get_running_loop().time() - t0
            return ev.lease
        elif isinstance(ev, Nacked):
            res.naks += 1
            self._attempt_naks += 1
            self._last_nak = True
            log.warning("%s NAK from %s in %s: %s", res.mac, ev.server_id, ev.state.value, ev.message or "-")
            if self._configured is not None:
                await self._unconfigure()
            if self._attempt_naks >= self.opts.max_naks:
                raise DeviceFailure("request", f"{self._attempt_naks} NAKs: {ev.message or 'no reason given'}",
                                    EXIT_NAK)
        elif isinstance(ev, RequestTimedOut):
            log.warning("%s no ACK from %s for %s after %d REQUEST(s) in %.1fs: DISCOVER again", res.mac,
                        ev.server_id, ev.address, ev.requests, ev.waited)
            if not self._last_attempt:
                # The machine already re-DISCOVERs; ending the attempt adds the backoff and the record.
                raise DeviceFailure("request", f"offered {ev.address} by {ev.server_id} but no ACK after "
                                    f"{ev.requests} REQUEST(s) in {ev.waited:.1f}s", EXIT_NO_ACK)
        elif isinstance(ev, Declined):
            res.declines += 1
            res.declined.append(str(ev.address))
            log.warning("%s %s is in use (ARP reply): DECLINE sent, restarting in %gs", res.mac, ev.address,
                        self.opts.decline_wait)
        elif isinstance(ev, LeaseExpired):
            log.warning("%s lease on %s expired", res.mac, ev.address)
            if self._configured is not None:
                await self._unconfigure()
        elif isinstance(ev, Retransmitted):
            log.debug("%s retransmit %s #%s", res.mac, ev.message_type, ev.attempt)
        return None

    def _record_lease(self, lease: Lease) -> None:
        res = self.result
        res.ip = str(lease.address)
        res.prefixlen = lease.prefixlen
        res.router = str(lease.routers[0]) if lease.routers else None
        res.server_id = str(lease.server_id)
        res.lease_time = lease.lease_time
        res.options = {str(code): decode_value(code, raw) for code, raw in lease.ack.options.items()}

    def _stage(self, stage: str) -> None:
        if self.on_stage is not None:
            self.on_stage(stage)

    async def _probe(self, address: IPv4Address) -> bool:
        """RFC 5227 §2.1 style probe: ARP requests with sender IP 0; any ARP from `address` is a conflict."""
        if self.opts.arp_probes <= 0:
            return False
        conflict = asyncio.Event()
        own = {self.mac, self.link.mac}

        def on_arp(frame: rawsock.ArpFrame) -> None:
            if frame.sender_mac not in own:
                conflict.set()

        stop = self.link.watch_arp(address, on_arp)
        try:
            for i in range(self.opts.arp_probes):
                self.link.send(rawsock.build_arp_probe(self.mac, address))
                wait = self.opts.arp_wait if i == self.opts.arp_probes - 1 else self.opts.arp_interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await conflict.wait()
                if conflict.is_set():
                    return True
            return False
        finally:
            stop()

    async def _configure(self, lease: Lease) -> None:
        try:
            if self._configured is not None and self._configured.address != lease.address:
                await self._unconfigure()
            await self.host.add(lease)
        except OSError as exc:
            raise DeviceFailure("configure", str(exc), EXIT_ERROR) from exc
        self._configured = lease

    async def _unconfigure(self) -> None:
        lease, self._configured = self._configured, None
        if lease is not None:
            with contextlib.suppress(OSError):
                await self.host.remove(lease)

    # -- boot ------------------------------------------------------------------------------------------

    async def _boot(self, lease: Lease, deadline: float) -> None:
        if self.spec.profile and self.spec.profile not in ("generic", "generic-tftp"):
            await self._boot_profile(lease, deadline)
            return
        res = self.result
        res.transport = "tftp"
        target = boot_target(lease.ack)
        res.boot_file, res.boot_server_source = target.file, target.server_source
        if target.file is None:
            raise DeviceFailure("boot", "no boot file (neither option 67 nor the file field)", EXIT_NO_BOOT_FILE)
        if target.server is None:
            raise DeviceFailure("boot", "no boot server (no option 66 or 150, siaddr or sname)",
                                EXIT_NO_BOOT_FILE)
        local = str(lease.address) if self.host.enabled else "0.0.0.0"
        server = target.server
        if not _is_ip(server):
            self._stage("resolve")
            server = await self._resolve(server, lease, local, deadline)
        res.boot_server = server
        self._stage("tftp")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        data = await self._fetch(server, target.file, local, deadline)
        res.timings["tftp"] = loop.time() - t0
        res.bytes = len(data)
        res.sha256 = hashlib.sha256(data).hexdigest()
        if self.opts.out_dir is not None:
            res.path = str(self._write(target.file, data))

    async def _boot_profile(self, lease: Lease, deadline: float) -> None:
        """Read the ACK and fetch the way the vendor does (ztp.agent.profiles), following documents."""
        from ztp.agent import profiles  # the vendor tables load only for --profile runs

        res = self.result
        profile = profiles.resolve(self.spec.profile or "")
        serial = self.spec.serial or profiles.default_serial(res.mac)
        local = str(lease.address) if self.host.enabled else "0.0.0.0"
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            step = profiles.plan(profile, lease.ack, serial=serial, mac=res.mac)
        except (profiles.PlanError, ValueError) as exc:
            raise DeviceFailure("boot", f"{profile.name}: {exc}", EXIT_NO_BOOT_FILE) from None
        self._stage("fetch")
        for _ in range(4):  # a document leads to at most a couple more fetches (POAP script -> config)
            data, fetch = await self._try_fetches(step, local, deadline)
            res.verified.append(step.what)
            if step.follow is None:
                break
            try:
                step = step.follow(data)
            except (KeyError, ValueError, TypeError) as exc:
                raise DeviceFailure("verify", f"{step.what} from {fetch.url}: {exc}", EXIT_TFTP) from None
        res.timings["tftp"] = loop.time() - t0
        res.boot_file, res.boot_server, res.transport = fetch.url, fetch.server or None, fetch.transport
        res.bytes = len(data)
        res.sha256 = hashlib.sha256(data).hexdigest()
        if self.opts.out_dir is not None:
            res.path = str(self._write(fetch.name, data))

    async def _try_fetches(self, step: Any, local: str, deadline: float) -> tuple[bytes, Any]:
        res = self.result
        failures: list[str] = []
        for fetch in step.fetches:
            res.fetched.append(fetch.url)
            try:
                if fetch.transport == "pnp":
                    data, fetch = await self._pnp(fetch, local, deadline)
                elif fetch.transport == "http":
                    data = await self._http_get(fetch.name, fetch.headers, local, deadline)
                else:
                    data = await self._fetch(fetch.server, fetch.name, local, deadline)
            except DeviceFailure as exc:
                failures.append(f"{fetch.url}: {exc.reason}")
                continue
            problem = step.verify(data)
            if problem:
                raise DeviceFailure("verify", f"{step.what} from {fetch.url}: {problem}", EXIT_TFTP)
            return data, fetch
        raise DeviceFailure("fetch", f"no {step.what}: " + "; ".join(failures[-3:]), EXIT_TFTP)

    async def _pnp(self, fetch: Any, local: str, deadline: float) -> tuple[bytes, Any]:
        """Cisco PnP against the server (ztp.agent.pnp_client); the result reads as the config's HTTP fetch."""
        from ztp.agent import pnp_client, profiles
        from ztp.vendors.pnp_xml import parse_udi

        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise DeviceFailure("http", f"{fetch.url}: overall timeout {self.opts.timeout:g}s reached", EXIT_TFTP)
        try:
            done = await pnp_client.fetch_config(fetch.name, parse_udi(dict(fetch.headers)["udi"]),
                                                 local=local if local != "0.0.0.0" else None, timeout=left)
        except pnp_client.PnpFailure as exc:
            raise DeviceFailure("http", f"pnp: {exc}", EXIT_TFTP) from None
        self.result.fetched.extend(done.steps[1:])
        return done.config, profiles.Fetch("http", fetch.server, done.location)

    async def _http_get(self, url: str, headers: tuple[tuple[str, str], ...], local: str, deadline: float) -> bytes:
        import aiohttp  # only devices that fetch over HTTP need it

        loop = asyncio.get_running_loop()
        left = deadline - loop.time()
        if left <= 0:
            raise DeviceFailure("http", f"{url}: overall timeout {self.opts.timeout:g}s reached", EXIT_TFTP)
        connector = aiohttp.TCPConnector(local_addr=(local, 0) if local != "0.0.0.0" else None, force_close=True)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=left)) as web:
                async with web.get(url, headers=dict(headers)) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise DeviceFailure("http", f"{url}: HTTP {response.status}", EXIT_TFTP)
                    return body
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeviceFailure("http", f"{url}: {type(exc).__name__}: {exc}", EXIT_TFTP) from None

    async def _resolve(self, name: str, lease: Lease, local: str, deadline: float) -> str:
        raw = lease.ack.options.get(opt.DNS_SERVERS, b"")
        servers = [str(IPv4Address(raw[i : i + 4])) for i in range(0, len(raw) - len(raw) % 4, 4)]
        if not servers:
            raise DeviceFailure("resolve", f"boot server {name!r} is a name and option 6 names no DNS server",
                                EXIT_DNS)
        names = [name]
        domain = lease.ack.options.get(opt.DOMAIN_NAME)
        if "." not in name.rstrip(".") and domain:
            names.insert(0, f"{name}.{_text(domain)}")
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(_UdpEndpoint, local_addr=(local, 0))
        try:
            for qname in names:
                for attempt in range(3):
                    for server in servers:
                        query = DNSRecord.question(qname, "A")
                        transport.sendto(query.pack(), (server, 53))
                        answer = await self._dns_answer(proto, query.header.id, server,
                                                        min(1.0 * (attempt + 1), deadline - loop.time()))
                        if answer is not None:
                            if answer:
                                log.info("%s resolved %s -> %s via %s", self.result.mac, qname, answer, server)
                                return answer
                            break  # a definite "no such name" from this server
        finally:
            transport.close()
        raise DeviceFailure("resolve", f"cannot resolve boot server {name!r} via {', '.join(servers)}",
                            EXIT_DNS)

    @staticmethod
    async def _dns_answer(proto: _UdpEndpoint, qid: int, server: str, wait: float) -> str | None:
        """The first A record of the reply to `qid`; "" for an answer without one; None on timeout."""
        if wait <= 0:
            return None
        try:
            async with asyncio.timeout(wait):
                while True:
                    data, addr = await proto.queue.get()
                    if addr[0] != server:
                        continue
                    try:
                        reply = DNSRecord.parse(data)
                    except Exception:  # dnslib raises several types for garbage (DNSError, struct.error)
                        continue
                    if reply.header.id != qid:
                        continue
                    for rr in reply.rr:
                        if rr.rtype == QTYPE.A:
                            return str(rr.rdata)
                    return ""
        except TimeoutError:
            return None

    async def _fetch(self, server: str, filename: str, local: str, deadline: float) -> bytes:
        loop = asyncio.get_running_loop()
        client = TftpReadClient(filename, self.opts.tftp)
        try:
            transport, proto = await loop.create_datagram_endpoint(_UdpEndpoint, local_addr=(local, 0))
        except OSError as exc:
            raise DeviceFailure("tftp", f"cannot open a UDP socket on {local}: {exc}", EXIT_TFTP) from exc
        try:
            client.start(loop.time())
            while True:
                for out in client.datagrams_to_send():
                    transport.sendto(out.payload, (server, out.port))
                if client.finished:
                    break
                now = loop.time()
                if now >= deadline:
                    raise DeviceFailure("tftp", f"{filename} from {server}: overall timeout "
                                        f"{self.opts.timeout:g}s reached", EXIT_TFTP)
                timer = client.get_timer()
                until = deadline if timer is None else min(timer, deadline)
                item: tuple[bytes, tuple[str, int]] | None = None
                if until > now:
                    try:
                        async with asyncio.timeout(until - now):
                            item = await proto.queue.get()
                    except TimeoutError:
                        item = None
                if item is not None:
                    data, (host, port) = item
                    if host == server:
                        client.receive(data, port, loop.time())
                    # drain whatever else is already queued before looking at timers
                    while not proto.queue.empty() and not client.finished:
                        data, (host, port) = proto.queue.get_nowait()
                        if host == server:
                            client.receive(data, port, loop.time())
                client.handle_timer(loop.time())
            for out in client.datagrams_to_send():
                transport.sendto(out.payload, (server, out.port))
        finally:
            transport.close()
        self.result.tftp_retransmits = client.retransmits
        self.result.tftp_options = dict(client.negotiated)
        if not client.done:
            reason = client.failure.reason if client.failure else "transfer did not finish"
            raise DeviceFailure("tftp", f"{filename} from {server}: {reason}", EXIT_TFTP)
        return client.data

    def _write(self, boot_file: str, data: bytes) -> Path:
        assert self.opts.out_dir is not None
        name = re.sub(r"[^A-Za-z0-9._-]", "_", boot_file.replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")
        directory = self.opts.out_dir
        if self.opts.per_device_dir:
            directory = directory / self.result.mac.replace(":", "")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / (name or "bootfile")
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError as exc:
            raise DeviceFailure("write", f"cannot write {boot_file}: {exc}", EXIT_ERROR) from exc
        return path

    # -- lease keeping ---------------------------------------------------------------------------------

    async def _stay(self, stop: asyncio.Event, until: float) -> None:
        """Keep the lease (RENEWING at T1, REBINDING at T2, NAK -> INIT) until `stop` or `until`."""
        loop = asyncio.get_running_loop()
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set() and loop.time() < until:
                pump = asyncio.ensure_future(self._pump(until))
                done, _ = await asyncio.wait({pump, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if pump not in done:
                    pump.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pump
                    break
                pump.result()  # re-raises DeviceFailure (e.g. too many NAKs)
        finally:
            stopper.cancel()

    async def _release(self) -> None:
        lease = self.client.lease
        if lease is not None and self.client.state in (ClientState.BOUND, ClientState.RENEWING,
                                                       ClientState.REBINDING):
            self.client.release(asyncio.get_running_loop().time())
            self._flush()
            self.result.released = True
            log.info("%s released %s", self.result.mac, lease.address)
        await self._unconfigure()


class ClientPortSink:
    """A UDP socket on 0.0.0.0:68 that swallows unicast DHCP replies the kernel would otherwise answer with
    ICMP port-unreachable (the AF_PACKET socket has already seen them). Used while leases are kept."""

    def __init__(self) -> None:
        """Bind the socket; silently does nothing if the port is taken (another client owns it)."""
        self.sock: socket.socket | None = None
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", rawsock.DHCP_CLIENT_PORT))
            s.setblocking(False)
            self.sock = s
        except OSError as exc:
            log.debug("no UDP sink on port 68: %s", exc)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start discarding datagrams."""
        if self.sock is not None:
            loop.add_reader(self.sock.fileno(), self._drain)

    def _drain(self) -> None:
        assert self.sock is not None
        with contextlib.suppress(OSError):
            for _ in range(64):
                self.sock.recv(2048)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop and close."""
        if self.sock is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
