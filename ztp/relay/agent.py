"""DHCP relay agent I/O shell: sockets, IP_PKTINFO, ARP injection, signals; decisions come from RelayPolicy.

One wildcard socket on :67 with IP_PKTINFO receives everything: client requests (broadcast, or unicast
from a downstream relay) and server replies addressed to a giaddr; the ingress interface index decides
which rule applies. A second socket on :68 only watches client interfaces for DHCP servers that should not
be there (rogue server guard). Replies to clients leave through the giaddr's interface, chosen with an
IP_PKTINFO record on `sendmsg` (so a broadcast goes out of the right port).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Final

from ztp.dhcp.packet import BOOTREPLY, MalformedPacket, build, parse
from ztp.dhcp.relayinfo import printable
from ztp.net.arp import ARPHRD_ETHER, inject_arp
from ztp.net.sockets import (
    IN_PKTINFO,
    SIOCGIFADDR,
    SIOCGIFHWADDR,
    SIOCGIFNETMASK,
    ifreq,
    interface_ipv4,
    parse_pktinfo,
    pktinfo_cmsg,
    udp_socket,
)
from ztp.relay.policy import (
    DROP_GIADDR_SPOOF,
    DROP_REQUEST_UPSTREAM,
    DROP_ROGUE_SERVER,
    DROP_UNTRUSTED_OPTION82,
    ClientInterface,
    Deliver,
    Drop,
    Forward,
    RelayPolicy,
    message_name,
    relay_info_of,
)

log = logging.getLogger("ztp.relay")

SERVER_PORT: Final = 67
CLIENT_PORT: Final = 68

_RECV_SIZE: Final = 65535
_RCVBUF: Final = 1 << 20
_MAX_BATCH: Final = 256  # datagrams drained per readiness event, so one busy socket cannot starve the loop

# Drops that mean someone on a client segment misbehaves: worth a warning, not just an info line.
_SECURITY_DROPS: Final = frozenset({DROP_ROGUE_SERVER, DROP_UNTRUSTED_OPTION82, DROP_GIADDR_SPOOF})


class InterfaceError(RuntimeError):
    """A client interface that does not exist or has no IPv4 address."""


@dataclass(frozen=True, slots=True)
class Received:
    """One datagram with where it came from and which interface it arrived on."""

    data: bytes
    source: tuple[str, int]
    ifindex: int


def lookup_interface(name: str, *, trusted: bool = False) -> ClientInterface:
    """The interface's index, primary IPv4 address, network and MAC, read with ioctls in this namespace."""
    try:
        ifindex = socket.if_nametoindex(name)
    except OSError as exc:
        raise InterfaceError(f"no interface {name!r} in this network namespace") from exc
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            address = IPv4Address(ifreq(sock, SIOCGIFADDR, name)[20:24])
            netmask = IPv4Address(ifreq(sock, SIOCGIFNETMASK, name)[20:24])
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InterfaceError(f"interface {name} has no IPv4 address to use as giaddr") from exc
            raise
        mac = ifreq(sock, SIOCGIFHWADDR, name)[18:24]
    network = IPv4Network(f"{address}/{netmask}", strict=False)
    return ClientInterface(name, ifindex, address, network, mac, trusted)


def resolve_interface(spec: str) -> str:
    """An interface name as given, or the interface holding an address in `spec` when it is a network.

    Containers name their interfaces in attachment order, so a network (`10.70.0.0/24`) is the stable
    way to say "the interface facing the access segment" there.
    """
    try:
        network = IPv4Network(spec, strict=False)
    except ValueError:
        return spec
    for _, name in socket.if_nameindex():
        address = interface_ipv4(name)
        if address is not None and address in network:
            return name
    raise InterfaceError(f"no interface has an address in {network}")


def _udp_socket(port: int) -> socket.socket:
    return udp_socket("0.0.0.0", port, broadcast=True, pktinfo=True, rcvbuf=_RCVBUF)


def _receive(sock: socket.socket) -> Received | None:
    try:
        data, ancdata, _flags, source = sock.recvmsg(_RECV_SIZE, socket.CMSG_SPACE(IN_PKTINFO.size))
    except (BlockingIOError, InterruptedError):
        return None
    info = parse_pktinfo(ancdata)
    ifindex = info[0] if info is not None else 0
    return Received(data, source, ifindex)


class RelayAgent:
    """Owns the relay's sockets and feeds every datagram to a RelayPolicy; reports bindings and counters."""

    def __init__(
        self,
        policy: RelayPolicy,
        *,
        bindings_file: Path | None = None,
        clock: Callable[[], float] = time.time,
        watch_rogue_servers: bool = True,
    ) -> None:
        """Relay per `policy`; `clock` is wall time because binding lease ends are shown to people."""
        self.policy = policy
        self.bindings_file = bindings_file
        self.clock = clock
        self.watch_rogue_servers = watch_rogue_servers
        self._server_sock: socket.socket | None = None
        self._watch_sock: socket.socket | None = None
        self._own_addresses = {str(i.address) for i in policy.interfaces}
        self._ifnames: dict[int, str] = {}

    # -- life cycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Bind :67 (and :68 for the rogue server guard, best effort)."""
        self._server_sock = _udp_socket(SERVER_PORT)
        if self.watch_rogue_servers:
            try:
                self._watch_sock = _udp_socket(CLIENT_PORT)
            except OSError as exc:
                log.warning("rogue server guard limited to port 67: cannot bind %d: %s", CLIENT_PORT, exc)

    def close(self) -> None:
        """Close every socket (idempotent)."""
        for sock in (self._server_sock, self._watch_sock):
            if sock is not None:
                sock.close()
        self._server_sock = self._watch_sock = None

    async def serve(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; SIGUSR1 prints bindings and counters as JSON on stderr."""
        loop = asyncio.get_running_loop()
        if self._server_sock is None:
            self.open()
        assert self._server_sock is not None
        socks = [s for s in (self._server_sock, self._watch_sock) if s is not None]
        for sock in socks:
            loop.add_reader(sock.fileno(), self._on_readable, sock)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGUSR1, self.dump)
        names = ", ".join(
            f"{i.name}={i.address}{' (trusted)' if i.trusted else ''}" for i in self.policy.interfaces
        )
        servers = ", ".join(str(s) for s in self.policy.settings.servers)
        log.info("relaying between %s and servers %s (max hops %d)", names, servers,
                 self.policy.settings.max_hops)
        self.write_bindings()
        try:
            await stop.wait()
        finally:
            for sock in socks:
                loop.remove_reader(sock.fileno())
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGUSR1)
            self.write_bindings()
            log.info("relay stopped; counters %s", dict(sorted(self.policy.counters.items())))

    # -- reporting ----------------------------------------------------------------------------------

    def dump(self) -> None:
        """Print bindings and counters as one JSON line on stderr, and refresh --bindings-file."""
        print(self.policy.snapshot_json(self.clock()), file=sys.stderr, flush=True)
        self.write_bindings()

    def write_bindings(self) -> None:
        """Atomically replace --bindings-file with the current snapshot (no-op without one)."""
        if self.bindings_file is None:
            return
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".bindings-", dir=self.bindings_file.parent)
            with os.fdopen(fd, "w") as fh:
                os.fchmod(fh.fileno(), 0o644)  # a status file for dashboards and operators, not a secret
                fh.write(self.policy.snapshot_json(self.clock()) + "\n")
            os.replace(tmp, self.bindings_file)
        except OSError as exc:
            log.error("cannot write bindings file %s: %s", self.bindings_file, exc)
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    # -- datagrams ----------------------------------------------------------------------------------

    def _on_readable(self, sock: socket.socket) -> None:
        handled = 0
        for _ in range(_MAX_BATCH):
            try:
                received = _receive(sock)
            except OSError as exc:
                log.debug("recvmsg failed: %s", exc)
                break
            if received is None:
                break
            handled += self.handle(received, watch=sock is self._watch_sock)
        if handled:
            self.write_bindings()

    def _ifname(self, ifindex: int) -> str:
        name = self._ifnames.get(ifindex)
        if name is None:
            try:
                name = socket.if_indextoname(ifindex)
            except OSError:
                name = f"if{ifindex}"
            self._ifnames[ifindex] = name
        return name

    def handle(self, received: Received, *, watch: bool = False) -> int:
        """Process one datagram; returns 1 if it changed counters or bindings, else 0."""
        if received.source[0] in self._own_addresses:
            return 0  # our own broadcast to clients, looped back to the :68 watch socket
        ingress = self._ifname(received.ifindex)
        if watch and self.policy.client_interface(ingress) is None:
            return 0  # port 68 upstream is none of our business
        try:
            pkt = parse(received.data)
        except MalformedPacket as exc:
            self.policy.count_malformed()
            log.debug("malformed datagram from %s:%d on %s: %s", *received.source, ingress, exc)
            return 1
        if watch and pkt.op != BOOTREPLY:
            return 0  # a client's request to port 68 is not a server message
        decision = self.policy.receive(pkt, ingress, self.clock())
        name = message_name(pkt)
        if isinstance(decision, Drop):
            level = logging.WARNING if decision.reason in _SECURITY_DROPS else logging.INFO
            if decision.reason == DROP_REQUEST_UPSTREAM:
                level = logging.DEBUG
            log.log(level, "%s dropped %s xid=%#010x from %s on %s: %s", pkt.mac, name, pkt.xid,
                    received.source[0], ingress, decision.detail)
        elif isinstance(decision, Forward):
            self._forward(decision, name)
        else:
            self._deliver(decision, name)
        return 1

    def _forward(self, decision: Forward, name: str) -> None:
        assert self._server_sock is not None
        pkt = decision.packet
        data = build(pkt)
        sent = []
        for server in decision.servers:
            try:
                self._server_sock.sendto(data, (str(server), SERVER_PORT))
                sent.append(str(server))
            except OSError as exc:
                log.warning("%s cannot forward %s to %s: %s", pkt.mac, name, server, exc)
        info = relay_info_of(pkt)
        circuit_id = None if info is None else info.circuit_id
        circuit = "" if circuit_id is None else f" circuit-id={printable(circuit_id)}"
        log.info("%s %s xid=%#010x %s -> %s giaddr=%s hops=%d%s", pkt.mac, name, pkt.xid,
                 decision.interface.name, ",".join(sent) or "nobody", pkt.giaddr, pkt.hops, circuit)

    def _deliver(self, decision: Deliver, name: str) -> None:
        assert self._server_sock is not None
        pkt = decision.packet
        iface = decision.interface
        address = decision.address
        how = "broadcast" if decision.broadcast else f"unicast {address}"
        if decision.needs_arp:
            ethernet = pkt.htype == ARPHRD_ETHER and pkt.hlen == 6
            if not (ethernet and inject_arp(self._server_sock, iface.name, address, decision.mac)):
                # RFC 2131 §4.1 lets a reply be broadcast when unicast is impossible.
                log.debug("%s no ARP entry for %s: broadcasting", pkt.mac, address)
                address = IPv4Address("255.255.255.255")
                how = "broadcast (no ARP)"
        try:
            self._server_sock.sendmsg(
                [build(pkt)], pktinfo_cmsg(iface.ifindex, iface.address), 0, (str(address), CLIENT_PORT)
            )
        except OSError as exc:
            log.warning("%s cannot deliver %s on %s: %s", pkt.mac, name, iface.name, exc)
            return
        log.info("%s %s xid=%#010x yiaddr=%s -> %s %s", pkt.mac, name, pkt.xid, pkt.yiaddr, iface.name, how)
