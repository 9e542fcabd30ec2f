"""The DHCP server's I/O shell: one UDP socket on :67 with IP_PKTINFO. Policy is the handler chain
(ztp.dhcp.chain); leases change only through the ledger, which commits them before the reply is sent."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from ipaddress import IPv4Address

from ztp.bounded import make_room
from ztp.dhcp import packet as p
from ztp.dhcp.chain import Chain
from ztp.dhcp.exchange import Ingress, Proposal, client_key
from ztp.dhcp.packet import DhcpPacket, MalformedPacket
from ztp.dhcp.reply import LIMITED_BROADCAST, Destination, destination
from ztp.ipkey import is_zero
from ztp.leases.ledger import LeaseChange, Ledger
from ztp.leases.store import LeaseConflict
from ztp.logwriter import fast_log
from ztp.loopfd import unwatch
from ztp.net.arp import inject_arp
from ztp.net.icmp import Pinger, neighbour_mac
from ztp.net.sockets import InterfaceTable, parse_pktinfo, pktinfo_cmsg, udp_socket

log = logging.getLogger("ztp.dhcp")
_log = fast_log(log)  # the per-request lines (two per DORA at the default level)
_BUF = 4096
# Datagrams read per wake-up before the loop runs its other ready work, above all the lease writer's
# acknowledgements: every ACK waits for one after its REQUEST was read. At 64 a durable ACK waited behind up
# to 64 more requests in a storm; fixed 4,000 DORA/s, 3 rounds each (ABBA): perfdhcp's p99 REQUEST-ACK minus
# its p99 DISCOVER-OFFER (the part commits add) 15-18 ms at 64, 4-8 ms at 16, with no more CPU per DORA
# (issue 14).
_BURST = 16
MAX_PROBES = 3  # addresses probed for one DISCOVER before it is dropped (the client will ask again)
# Where datagrams arrived is remembered for as long as the interface table remembers an interface's name and
# address, each half of the 5 s the table alone used to: a change of either is still seen within 5 s. Bounded
# for the variety of renewing clients' source addresses.
_INGRESS_TTL = 2.5
_INGRESSES_MAX = 1024


@lru_cache(maxsize=4096)
def _address_text(ip: IPv4Address) -> str:
    # The socket API wants text and IPv4Address builds it digit by digit; replies go to the same relays
    # and the broadcast address over and over, so remember the spellings (bounded for clients' addresses).
    return str(ip)


@lru_cache(maxsize=256)
def _pktinfo(anc: tuple[tuple[int, int, bytes], ...]) -> tuple[int, IPv4Address, IPv4Address] | None:
    # Decoding builds two IPv4Address objects per datagram, yet only a few (interface, local address,
    # destination) combinations ever arrive: remember them.
    return parse_pktinfo(list(anc))


@lru_cache(maxsize=4096)
def _peer_address(text: str) -> IPv4Address:
    # Relays and renewing clients send again and again from the same few addresses (bounded cache).
    return IPv4Address(text)


class DhcpServer:
    """Receives BOOTREQUESTs, runs the chain, commits the lease change through the ledger, then sends the
    reply per RFC 2131 §4.1."""

    def __init__(self, chain: Chain, ledger: Ledger, *, interfaces: tuple[str, ...], port: int = 67,
                 clock: Callable[[], float] = time.time) -> None:
        self.chain = chain  # replaced whole on a configuration reload
        self.ledger = ledger
        self._interfaces = frozenset(interfaces)
        self.port = port
        self.clock = clock
        self.counters: Counter[str] = Counter()
        # Told of every decided request (packet, ingress, proposal, now): the timeline queues it, O(1).
        self.observe: Callable[[DhcpPacket, Ingress, Proposal, float], None] | None = None
        self._ifaces = InterfaceTable(_INGRESS_TTL)
        # (IP_PKTINFO, source address, relayed) -> (expires, Ingress): a few relays and interfaces send nearly
        # every datagram, and working one out built a frozenset, two addresses and the Ingress (6,000
        # instructions a datagram compiled; issue 14). Ingress is never mutated: one object serves them all.
        self._ingresses: dict[tuple[tuple[tuple[int, int, bytes], ...], str, bool], tuple[float, Ingress]] = {}
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pinger: Pinger | None = None  # conflict detection (dhcp.ping_check); None: offers are not probed
        # A shared lease store's read-through (ztp.leases.store.ReadThrough): given the client's key and the
        # decision to run, True when it runs it later, once the client's rows are in the cache.
        self.read_through: Callable[[str, Callable[[], None]], bool] | None = None
        self._probing: set[IPv4Address] = set()

    @property
    def interfaces(self) -> frozenset[str]:
        """dhcp.interfaces: where broadcasts are answered (empty: everywhere)."""
        return self._interfaces

    @interfaces.setter
    def interfaces(self, names: frozenset[str]) -> None:
        self._interfaces = names
        self._ingresses.clear()  # remembered arrivals were admitted under the old list

    async def start(self) -> None:
        """Bind 0.0.0.0:port, open the ICMP socket for conflict detection, and start reading."""
        self._loop = asyncio.get_running_loop()
        self._sock = udp_socket("0.0.0.0", self.port, broadcast=True, pktinfo=True)
        if self.chain.config.ping_check and self.pinger is None:
            try:
                self.pinger = Pinger.open()
            except OSError as exc:
                log.warning("dhcp.ping_check: cannot open an ICMP socket (%s; it needs CAP_NET_RAW): addresses "
                            "are offered without probing them first", exc)
        if self.pinger is not None:
            self.pinger.start(self._loop)
        self._loop.add_reader(self._sock.fileno(), self._readable)

    async def close(self) -> None:
        """Stop reading and close the sockets."""
        if self._sock is not None and self._loop is not None:
            unwatch(self._loop, self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self.pinger is not None:
            self.pinger.close()
            self.pinger = None

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(_BURST):
            try:
                data, anc, _flags, peer = sock.recvmsg(_BUF, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("dhcp receive failed: %s", exc)
                return
            self._datagram(data, anc, peer)

    def _ingress(self, pkt: DhcpPacket, anc: list[tuple[int, int, bytes]], source: str) -> Ingress | None:
        key = (tuple(anc), source, not is_zero(pkt.giaddr))
        now = time.monotonic()
        hit = self._ingresses.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        ingress = self._arrival(key[0], source, key[2])
        if ingress is not None:  # refusals are worked out (and counted) each time
            make_room(self._ingresses, _INGRESSES_MAX)
            self._ingresses[key] = (now + _INGRESS_TTL, ingress)
        return ingress

    def _arrival(self, anc: tuple[tuple[int, int, bytes], ...], source: str, relayed: bool) -> Ingress | None:
        info = _pktinfo(anc)
        if info is None:
            return None
        ifindex, spec_dst, dst = info
        ifname, if_addr = self._ifaces.lookup(ifindex)
        peer = _peer_address(source)
        # IP_PKTINFO: for a datagram sent to one of our addresses the local address (spec_dst) is that
        # address; for a broadcast it is the interface's own.
        unicast = dst == spec_dst
        if relayed:
            # Relayed: accepted on any local address; the server id is the address the relay sent to.
            return Ingress(ifindex, ifname, dst if unicast else spec_dst, frozenset({spec_dst}), broadcast=False,
                           peer=peer)
        if unicast:
            # RENEWING, INFORM, RELEASE, DECLINE sent to our address: routed here, possibly from a client
            # behind a relay arriving on the upstream interface. dhcp.interfaces restricts broadcasts only.
            return Ingress(ifindex, ifname, dst, frozenset({dst} if if_addr is None else {dst, if_addr}),
                           broadcast=False, peer=peer)
        if self.interfaces and ifname not in self.interfaces:
            self.counters["ignored_interface"] += 1
            return None
        if if_addr is None:
            return None
        return Ingress(ifindex, ifname, if_addr, frozenset({if_addr, spec_dst}), broadcast=True, peer=peer)

    def _datagram(self, data: bytes, anc: list[tuple[int, int, bytes]], peer: tuple[str, int]) -> None:
        self.counters["received"] += 1
        try:
            pkt = p.parse(data)
        except MalformedPacket as exc:
            self.counters["malformed"] += 1
            log.debug("dhcp malformed datagram from %s:%s dropped: %s", peer[0], peer[1], exc)
            return
        if pkt.op != p.BOOTREQUEST:
            self.counters["not_request"] += 1
            return
        ingress = self._ingress(pkt, anc, peer[0])
        if ingress is None:
            self.counters["ignored"] += 1
            log.debug("%s dhcp request on an interface we do not serve; ignored", pkt.mac)
            return
        if self.read_through is not None and self.read_through(client_key(pkt),
                                                               lambda: self._decide(pkt, ingress, None, 0)):
            return
        self._decide(pkt, ingress, None, 0)

    def _decide(self, pkt: DhcpPacket, ingress: Ingress, cleared: IPv4Address | None, probes: int) -> None:
        """Run the chain over a request (again, with `cleared`, once a probe went unanswered) and act on it."""
        now = self.clock()
        try:
            proposal = self.chain.handle(pkt, ingress, now, cleared=cleared)
        except MalformedPacket as exc:
            self.counters["malformed"] += 1
            log.debug("%s dhcp malformed option dropped: %s", pkt.mac, exc)
            return
        if proposal.counter:
            self.counters[proposal.counter] += 1
        if proposal.log_format and log.isEnabledFor(proposal.level):
            # The line's text is left to the log handler (built off the packet path by ztp serve's writer
            # thread): the arguments travel unformatted.
            fmt = proposal.log_format if proposal.log_args else proposal.log_format.replace("%", "%%")
            if not is_zero(pkt.giaddr):
                _log(proposal.level, "%s dhcp " + fmt + " via %s", (pkt.mac, *proposal.log_args, pkt.giaddr))
            else:
                _log(proposal.level, "%s dhcp " + fmt + " on %s", (pkt.mac, *proposal.log_args, ingress.ifname))
        if proposal.probe is not None:
            self._probe(pkt, ingress, proposal.probe, proposal.change, probes)
            return
        if self.observe is not None:
            self.observe(pkt, ingress, proposal, now)
        reply, change = proposal.reply, proposal.change
        if change is None:
            if reply is None:
                self.counters["no_reply"] += 1
                return
            self._send(pkt, reply, ingress)
            return
        self.ledger.commit(change, lambda error: self._committed(error, pkt, reply, ingress, change))

    # --- conflict detection: the chain asks for a probe, the shell pings, then runs the chain again ------

    def _probe(self, pkt: DhcpPacket, ingress: Ingress, ip: IPv4Address, hold: LeaseChange | None,
               probes: int) -> None:
        pinger = self.pinger
        if pinger is None:
            self.counters["probe_unavailable"] += 1
            self._decide(pkt, ingress, ip, probes)
            return
        if ip in self._probing:
            self.counters["probe_pending"] += 1  # the client's retransmission: the probe under way answers it
            return
        if probes >= MAX_PROBES:
            self.counters["probe_gave_up"] += 1
            log.warning("%s dhcp DISCOVER: %s addresses in a row answered a ping; no offer this time", pkt.mac,
                        probes)
            return
        if pinger.busy():
            self.counters["probe_busy"] += 1  # a flood of new clients: counted, not logged per packet
            return
        if hold is not None:
            self.ledger.commit(hold, _ignore)  # the offer's hold, memory only: nobody else is offered ip
        self._probing.add(ip)
        pinger.probe(ip, self.chain.config.ping_timeout,
                     lambda answered: self._probed(pkt, ingress, ip, answered, probes + 1))

    def _probed(self, pkt: DhcpPacket, ingress: Ingress, ip: IPv4Address, answered: bool | None,
                probes: int) -> None:
        self._probing.discard(ip)
        if self._sock is None:
            return
        if answered is None:
            # Could not even be sent: nobody can answer it, so the offer goes ahead, but say so once.
            self.counters["probe_unsent"] += 1
            if self.counters["probe_unsent"] == 1:
                log.warning("dhcp.ping_check: echo requests cannot be sent (the neighbour table may be full: raise "
                            "net.ipv4.neigh.default.gc_thresh3); such addresses are offered unprobed "
                            "(counter probe_unsent)")
        if not answered:
            self._decide(pkt, ingress, ip, probes)
            return
        proposal = self.chain.conflict(ip, neighbour_mac(ip), self.clock())
        self.counters[proposal.counter] += 1
        log.log(proposal.level, "%s dhcp %s", pkt.mac, proposal.log)
        change = proposal.change
        assert change is not None
        self.ledger.commit(change, lambda error: self._conflict_committed(error, pkt, ingress, change, probes))

    def _conflict_committed(self, error: BaseException | None, pkt: DhcpPacket, ingress: Ingress,
                            change: LeaseChange, probes: int) -> None:
        if error is not None:
            self._committed(error, pkt, None, ingress, change)
            return
        self._decide(pkt, ingress, None, probes)  # the next free address (probed in its turn)

    def _committed(self, error: BaseException | None, pkt: DhcpPacket, reply: DhcpPacket | None,
                   ingress: Ingress, change: LeaseChange) -> None:
        if error is not None:
            # Nothing was applied: memory still agrees with the disk, and the client hears nothing rather
            # than an ACK for a binding that would not survive a restart.
            self.counters["commit_failed"] += 1
            lease = change.lease
            who = f"{lease.mac} ({lease.hostname})" if lease.hostname else lease.mac
            # Another appliance sharing the store won the address: expected now and then, not a fault.
            level = logging.WARNING if isinstance(error, LeaseConflict) else logging.ERROR
            log.log(level, "%s dhcp lease %s (%s) NOT written: %s; no reply sent", who, lease.ip, change.kind,
                    error or "cancelled")
            return
        if reply is None:
            self.counters["no_reply"] += 1
            return
        self._send(pkt, reply, ingress)

    def _send(self, pkt: DhcpPacket, reply: DhcpPacket, ingress: Ingress) -> None:
        sock = self._sock
        if sock is None:
            return
        dest = destination(pkt, reply)
        data = p.build(reply)
        try:
            if dest.broadcast:
                sock.sendmsg([data], pktinfo_cmsg(ingress.ifindex, ingress.server_ip),
                               0, (_address_text(dest.ip), dest.port))
            elif dest.arp_mac is not None:
                self._send_unicast_to_new_client(sock, data, dest, ingress)
            else:
                sock.sendto(data, (_address_text(dest.ip), dest.port))
            self.counters["sent"] += 1
        except OSError as exc:
            self.counters["send_failed"] += 1
            log.warning("%s dhcp send to %s:%s failed: %s", pkt.mac, dest.ip, dest.port, exc)

    def _send_unicast_to_new_client(self, sock: socket.socket, data: bytes, dest: Destination,
                                    ingress: Ingress) -> None:
        assert dest.arp_mac is not None
        if ingress.ifname and inject_arp(sock, ingress.ifname, dest.ip, dest.arp_mac):
            sock.sendmsg([data], pktinfo_cmsg(ingress.ifindex, ingress.server_ip), 0,
                         (_address_text(dest.ip), dest.port))
        else:
            self.counters["arp_fallback_broadcast"] += 1
            if self.counters["arp_fallback_broadcast"] == 1:
                log.warning("dhcp cannot add ARP entries on %s (neighbour table full or no CAP_NET_ADMIN); "
                            "replying by broadcast. With more than ~500 devices per segment raise "
                            "net.ipv4.neigh.default.gc_thresh3 (and gc_thresh2): unicast TFTP to the devices "
                            "also needs one entry each", ingress.ifname)
            sock.sendmsg([data], pktinfo_cmsg(ingress.ifindex, ingress.server_ip), 0,
                         (_address_text(LIMITED_BROADCAST), dest.port))


def _ignore(error: BaseException | None) -> None:
    """Done-callback of a memory-only change (it cannot fail)."""
