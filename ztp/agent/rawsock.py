"""Link layer of the agent: Ethernet/IPv4/UDP/ARP framing and one shared AF_PACKET socket for all devices.

A device with no address cannot use a UDP socket for DHCP: it must send from 0.0.0.0:68 and receive
replies unicast to an address it does not own yet. Like busybox udhcpc and ISC dhclient (LPF), the agent
uses an ``AF_PACKET`` socket bound to the interface and builds IPv4+UDP headers itself. It is ``SOCK_RAW``
rather than ``SOCK_DGRAM`` so each emulated device sends from its own MAC (the bridge learns it, as it
would a real switch), and one socket serves every device of a fleet: frames are demultiplexed by chaddr
and ARP by sender IP. A classic BPF filter keeps the kernel from copying anything but DHCP-to-client and
ARP frames to user space.

Frames addressed to an emulated MAC are "other host" to the kernel, which would drop the device's TFTP
traffic; :class:`ForeignMacIngress` installs an nftables netdev ingress rule that marks frames for exactly
those MACs as ours (``meta pkttype set host``) for as long as the agent runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import struct
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from types import TracebackType

from ztp.net.icmp import inet_checksum
from ztp.net.sockets import interface_mac

log = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
DHCP_CLIENT_PORT = 68
DHCP_SERVER_PORT = 67

_SOL_PACKET = 263
_PACKET_ADD_MEMBERSHIP = 1
_PACKET_MR_PROMISC = 1
_PACKET_OUTGOING = 4
_SO_ATTACH_FILTER = 26

_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")

# Classic BPF: accept ARP, and IPv4 UDP (unfragmented) to port 68; drop everything else.
_BPF_PROGRAM: tuple[tuple[int, int, int, int], ...] = (
    (0x28, 0, 0, 12),          # 0: ldh [12]            ethertype
    (0x15, 9, 0, ETH_P_ARP),   # 1: jeq ARP -> accept
    (0x15, 0, 7, ETH_P_IP),    # 2: jeq IP else drop
    (0x30, 0, 0, 23),          # 3: ldb [23]            IP protocol
    (0x15, 0, 5, 17),          # 4: jeq UDP else drop
    (0x28, 0, 0, 20),          # 5: ldh [20]            flags + fragment offset
    (0x45, 3, 0, 0x1FFF),      # 6: jset fragment -> drop
    (0xB1, 0, 0, 14),          # 7: ldxb 4*([14]&0xf)   IP header length
    (0x48, 0, 0, 16),          # 8: ldh [x+16]          UDP destination port
    (0x15, 1, 0, DHCP_CLIENT_PORT),  # 9: jeq 68 -> accept
    (0x06, 0, 0, 0),           # 10: drop
    (0x06, 0, 0, 0x40000),     # 11: accept
)


class FrameError(ValueError):
    """A received frame that is not well-formed Ethernet/IPv4/UDP or ARP; says what and where."""


@dataclass(frozen=True, slots=True)
class UdpFrame:
    """An IPv4 UDP datagram with its link-layer addresses."""

    src_mac: bytes
    dst_mac: bytes
    src_ip: IPv4Address
    dst_ip: IPv4Address
    src_port: int
    dst_port: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class ArpFrame:
    """An ARP packet for IPv4 over Ethernet (RFC 826)."""

    op: int
    sender_mac: bytes
    sender_ip: IPv4Address
    target_mac: bytes
    target_ip: IPv4Address


def build_udp_frame(src_mac: bytes, dst_mac: bytes, src_ip: IPv4Address, dst_ip: IPv4Address,
                    src_port: int, dst_port: int, payload: bytes) -> bytes:
    """Ethernet + IPv4 (RFC 791) + UDP (RFC 768) frame, both checksums filled in."""
    udp_len = _UDP.size + len(payload)
    pseudo = src_ip.packed + dst_ip.packed + struct.pack("!BBH", 0, 17, udp_len)
    udp_sum = inet_checksum(pseudo + _UDP.pack(src_port, dst_port, udp_len, 0) + payload) or 0xFFFF
    udp = _UDP.pack(src_port, dst_port, udp_len, udp_sum) + payload
    # TOS 0x10 (low delay) and TTL 64, as ISC dhclient's LPF sender uses.
    head = _IP.pack(0x45, 0x10, _IP.size + udp_len, 0, 0, 64, 17, 0, src_ip.packed, dst_ip.packed)
    head = head[:10] + struct.pack("!H", inet_checksum(head)) + head[12:]
    return _ETH.pack(dst_mac, src_mac, ETH_P_IP) + head + udp


def build_arp_probe(src_mac: bytes, target_ip: IPv4Address) -> bytes:
    """RFC 5227 §2.1.1 ARP probe: a broadcast request with sender IP 0.0.0.0 for `target_ip`."""
    arp = _ARP.pack(1, ETH_P_IP, 6, 4, 1, src_mac, bytes(4), ZERO_MAC, target_ip.packed)
    return _ETH.pack(BROADCAST_MAC, src_mac, ETH_P_ARP) + arp


def build_arp_announcement(src_mac: bytes, ip: IPv4Address) -> bytes:
    """RFC 5227 §2.3 ARP announcement: sender and target IP both the newly bound address."""
    arp = _ARP.pack(1, ETH_P_IP, 6, 4, 1, src_mac, ip.packed, ZERO_MAC, ip.packed)
    return _ETH.pack(BROADCAST_MAC, src_mac, ETH_P_ARP) + arp


def parse_frame(frame: bytes) -> UdpFrame | ArpFrame | None:
    """Decode an Ethernet frame into UDP or ARP; None for other protocols. Raises FrameError."""
    if len(frame) < _ETH.size:
        raise FrameError(f"{len(frame)}-byte frame is shorter than an Ethernet header at offset 0")
    dst_mac, src_mac, ethertype = _ETH.unpack_from(frame)
    if ethertype == ETH_P_ARP:
        if len(frame) < _ETH.size + _ARP.size:
            raise FrameError(f"ARP packet truncated at offset {len(frame)}")
        _htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, _ETH.size)
        if ptype != ETH_P_IP or hlen != 6 or plen != 4:
            return None
        return ArpFrame(op, sha, IPv4Address(spa), tha, IPv4Address(tpa))
    if ethertype != ETH_P_IP:
        return None
    off = _ETH.size
    if len(frame) < off + _IP.size:
        raise FrameError(f"IPv4 header truncated at offset {off}")
    vihl, _tos, total, _id, frag, _ttl, proto, _sum, src, dst = _IP.unpack_from(frame, off)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20:
        raise FrameError(f"not an IPv4 header (version/IHL {vihl:#x}) at offset {off}")
    if proto != 17 or frag & 0x1FFF:
        return None
    end = min(len(frame), off + total)
    uoff = off + ihl
    if end < uoff + _UDP.size:
        raise FrameError(f"UDP header truncated at offset {uoff}")
    sport, dport, ulen, _usum = _UDP.unpack_from(frame, uoff)
    if ulen < _UDP.size or uoff + ulen > end:
        raise FrameError(f"UDP length {ulen} does not fit the IP packet at offset {uoff + 4}")
    return UdpFrame(src_mac, dst_mac, IPv4Address(src), IPv4Address(dst), sport, dport,
                    frame[uoff + _UDP.size : uoff + ulen])


def mac_bytes(mac: str) -> bytes:
    """'02:00:00:00:00:01' to 6 bytes."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"{mac!r} is not a 6-byte MAC address")
    return raw


def _attach_filter(sock: socket.socket) -> None:
    prog = b"".join(struct.pack("HBBI", *ins) for ins in _BPF_PROGRAM)
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HL", len(_BPF_PROGRAM), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


def open_packet_socket(ifname: str, *, promiscuous: bool) -> socket.socket:
    """AF_PACKET/SOCK_RAW socket on `ifname`, filtered to ARP and UDP-to-68, non-blocking."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        _attach_filter(sock)
        sock.bind((ifname, ETH_P_ALL))
        if promiscuous:
            # Membership (not `ip link set promisc`) ends with the socket, whatever way the agent exits.
            mreq = struct.pack("iHH8s", socket.if_nametoindex(ifname), _PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, mreq)
        for opt, size in ((socket.SO_RCVBUF, 4 << 20), (socket.SO_SNDBUF, 4 << 20)):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
        sock.setblocking(False)
        # Frames queued before the filter was attached are dropped here rather than parsed later.
        with contextlib.suppress(BlockingIOError):
            while True:
                sock.recv(65535)
    except BaseException:
        sock.close()
        raise
    return sock


DhcpSink = Callable[[UdpFrame], None]
ArpSink = Callable[[ArpFrame], None]


class PacketLink:
    """The agent's one AF_PACKET socket on an asyncio loop: send frames, deliver DHCP by chaddr, ARP by IP."""

    def __init__(self, ifname: str, *, promiscuous: bool = True) -> None:
        """Open the socket on `ifname` (needs CAP_NET_RAW)."""
        self.ifname = ifname
        self.mac = interface_mac(ifname)
        self._sock = open_packet_socket(ifname, promiscuous=promiscuous)
        self._dhcp: dict[bytes, DhcpSink] = {}
        self._arp: dict[IPv4Address, list[ArpSink]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped_sends = 0
        self.malformed = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading on `loop`."""
        self._loop = loop
        loop.add_reader(self._sock.fileno(), self._readable)

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def register_dhcp(self, mac: bytes, sink: DhcpSink) -> None:
        """Deliver DHCP frames whose chaddr is `mac` to `sink`."""
        self._dhcp[mac] = sink

    def unregister_dhcp(self, mac: bytes) -> None:
        """Stop delivering DHCP frames for `mac`."""
        self._dhcp.pop(mac, None)

    def watch_arp(self, ip: IPv4Address, sink: ArpSink) -> Callable[[], None]:
        """Deliver ARP packets whose sender IP is `ip` to `sink`; returns the function that stops it."""
        self._arp.setdefault(ip, []).append(sink)

        def stop() -> None:
            sinks = self._arp.get(ip, [])
            if sink in sinks:
                sinks.remove(sink)
            if not sinks:
                self._arp.pop(ip, None)

        return stop

    def send(self, frame: bytes) -> bool:
        """Send one frame; False (and counted) when the kernel queue is full, the caller retransmits."""
        try:
            self._sock.send(frame)
        except (BlockingIOError, InterruptedError):
            self.dropped_sends += 1
            return False
        except OSError as exc:
            log.debug("send on %s failed: %s", self.ifname, exc)
            self.dropped_sends += 1
            return False
        return True

    def _readable(self) -> None:
        for _ in range(256):  # bounded so one busy interface cannot starve the loop
            try:
                frame, addr = self._sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("receive on %s failed: %s", self.ifname, exc)
                return
            if addr[2] == _PACKET_OUTGOING:
                continue
            try:
                parsed = parse_frame(frame)
            except FrameError as exc:
                self.malformed += 1
                log.debug("dropped malformed frame: %s", exc)
                continue
            if isinstance(parsed, UdpFrame):
                if parsed.dst_port != DHCP_CLIENT_PORT or len(parsed.payload) < 34:
                    continue
                # chaddr sits at offset 28 of the BOOTP header.
                sink = self._dhcp.get(parsed.payload[28:34])
                if sink is not None:
                    sink(parsed)
            elif isinstance(parsed, ArpFrame):
                for arp_sink in list(self._arp.get(parsed.sender_ip, ())):
                    arp_sink(parsed)


class ForeignMacIngress:
    """nftables netdev ingress rule: frames to the emulated MACs are "for this host" while it exists.

    Without it the kernel drops unicast TFTP (and renewal) replies addressed to a MAC that is not the
    interface's own. The table is named after this process and deleted on exit.
    """

    def __init__(self, ifname: str, macs: Iterable[bytes]) -> None:
        """Prepare the rule for `macs` on `ifname` (applied by __enter__)."""
        self.ifname = ifname
        self.macs = sorted(set(macs))
        self.table = f"ztp_agent_{os.getpid()}"
        self.active = False

    def __enter__(self) -> ForeignMacIngress:
        """Install the table; logs a warning (and carries on) when nft is missing or refuses."""
        if not self.macs:
            return self
        elements = ", ".join(m.hex(":") for m in self.macs)
        script = (
            f"table netdev {self.table} {{\n"
            f"  set macs {{ type ether_addr; elements = {{ {elements} }}; }}\n"
            f"  chain ingress {{\n"
            f"    type filter hook ingress device \"{self.ifname}\" priority 0; policy accept;\n"
            f"    meta pkttype other ether daddr @macs meta pkttype set host\n"
            f"  }}\n"
            f"}}\n"
        )
        try:
            res = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True,
                                 timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("cannot install nft ingress rule (%s): TFTP to emulated MACs may fail", exc)
            return self
        if res.returncode != 0:
            log.warning("nft refused the ingress rule (%s): TFTP to emulated MACs may fail",
                        res.stderr.strip())
            return self
        self.active = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Delete the table."""
        if self.active:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(["nft", "delete", "table", "netdev", self.table], capture_output=True,
                               timeout=10, check=False)
            self.active = False
