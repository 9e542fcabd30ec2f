"""ARP-cache injection (SIOCSARP), so a unicast reply can reach a client that has no address yet.

This is what dnsmasq does (src/dhcp.c); RFC 2131 §4.1 allows falling back to broadcast when it fails.
"""

from __future__ import annotations

import fcntl
import socket
import struct
from ipaddress import IPv4Address
from typing import Final

SIOCSARP: Final = 0x8955
ARPHRD_ETHER: Final = 1
ATF_COM: Final = 0x02


def inject_arp(sock: socket.socket, ifname: str, ip: IPv4Address, mac: bytes) -> bool:
    """Add ip -> mac to the kernel's neighbour table on `ifname`; False when not permitted or failed."""
    protocol = struct.pack("=HH4s8x", socket.AF_INET, 0, ip.packed)
    hardware = struct.pack("=H14s", ARPHRD_ETHER, mac[:6].ljust(14, b"\0"))
    request = protocol + hardware + struct.pack("=i", ATF_COM) + bytes(16) + ifname.encode()[:15].ljust(16, b"\0")
    try:
        fcntl.ioctl(sock.fileno(), SIOCSARP, request)
    except OSError:
        return False
    return True
