"""UDP sockets for the servers: IP_PKTINFO ancillary data, interface addresses, broadcast on one port."""

from __future__ import annotations

import fcntl
import socket
import struct
import time
from ipaddress import IPv4Address
from typing import Final

IP_PKTINFO: Final = 8  # Linux value; absent from Python 3.11's socket module
SIOCGIFADDR: Final = 0x8915
SIOCGIFNETMASK: Final = 0x891B
SIOCGIFHWADDR: Final = 0x8927
SO_SNDBUFFORCE: Final = 32
SO_RCVBUFFORCE: Final = 33
IN_PKTINFO = struct.Struct("=I4s4s")  # struct in_pktinfo: ipi_ifindex, ipi_spec_dst, ipi_addr


def udp_socket(host: str, port: int, *, broadcast: bool = False, pktinfo: bool = False,
               device: str | None = None, rcvbuf: int = 4 << 20, sndbuf: int = 4 << 20) -> socket.socket:
    """A non-blocking UDP socket bound to host:port with the options a DHCP/TFTP/DNS server needs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if broadcast:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if pktinfo:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        if device:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        # The *FORCE variants (CAP_NET_ADMIN) go past net.core.rmem_max, which would otherwise silently cap a
        # burst-absorbing buffer at ~200 KiB: a boot storm then loses DISCOVERs in the kernel.
        for force, plain, size in ((SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf),
                                   (SO_SNDBUFFORCE, socket.SO_SNDBUF, sndbuf)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, size)
            except OSError:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, plain, size)
                except OSError:
                    pass
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def parse_pktinfo(ancdata: list[tuple[int, int, bytes]]) -> tuple[int, IPv4Address, IPv4Address] | None:
    """(ifindex, local address the packet was routed to, header destination) from recvmsg's ancillary data."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= IN_PKTINFO.size:
            ifindex, spec_dst, addr = IN_PKTINFO.unpack_from(data)
            return ifindex, IPv4Address(spec_dst), IPv4Address(addr)
    return None


def pktinfo_cmsg(ifindex: int, source: IPv4Address | None = None) -> list[tuple[int, int, bytes]]:
    """Ancillary data that makes sendmsg leave through `ifindex` (needed for 255.255.255.255)."""
    spec = source.packed if source is not None else bytes(4)
    return [(socket.IPPROTO_IP, IP_PKTINFO, IN_PKTINFO.pack(ifindex, spec, bytes(4)))]


def ifreq(sock: socket.socket, request: int, ifname: str) -> bytes:
    """One SIOCGIF* ioctl on `ifname` (struct ifreq); raises OSError (EADDRNOTAVAIL: no IPv4 address)."""
    return fcntl.ioctl(sock.fileno(), request, struct.pack("256s", ifname.encode()[:15]))


def interface_ipv4(ifname: str) -> IPv4Address | None:
    """The primary IPv4 address of an interface, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = ifreq(s, SIOCGIFADDR, ifname)
        except OSError:
            return None
    return IPv4Address(res[20:24])


def interface_mac(ifname: str) -> bytes:
    """The hardware address of `ifname` (SIOCGIFHWADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return ifreq(s, SIOCGIFHWADDR, ifname)[18:24]


class InterfaceTable:
    """ifindex -> (name, primary IPv4), cached briefly: interfaces rarely change, packets come often."""

    def __init__(self, ttl: float = 5.0) -> None:
        self._ttl = ttl
        self._cache: dict[int, tuple[float, str | None, IPv4Address | None]] = {}

    def lookup(self, ifindex: int) -> tuple[str | None, IPv4Address | None]:
        """Name and primary address of an interface index."""
        now = time.monotonic()
        hit = self._cache.get(ifindex)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1], hit[2]
        try:
            name: str | None = socket.if_indextoname(ifindex)
        except OSError:
            name = None
        addr = interface_ipv4(name) if name else None
        self._cache[ifindex] = (now, name, addr)
        return name, addr


def route_source(peer: str) -> str | None:
    """The local address the kernel would send from to reach `peer` (no packet is sent), or None.

    A connected UDP socket is bound by the routing decision; for a device that fetched over TFTP this is the
    appliance address it reached, which a document built for it (a POAP script) names as its server.
    """
    family = socket.AF_INET6 if ":" in peer else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((peer, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return None
