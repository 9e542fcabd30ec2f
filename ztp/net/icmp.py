"""ICMP echo for DHCP conflict detection (RFC 792; RFC 2131 §2.2 asks a server to probe an address before
allocating it): a pure codec plus a thin asyncio shell on one raw socket.

The raw socket (CAP_NET_RAW) is opened once at start, before `ztp serve` gives up root, and reused for
every probe. Who answered is looked up in the kernel's neighbour table (/proc/net/arp): the echo reply
came in over a link whose ARP entry the kernel has just resolved.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

log = logging.getLogger("ztp.net")

ECHO_REPLY = 0
ECHO_REQUEST = 8
_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_PAYLOAD = b"ztp conflict probe"
MAX_IN_FLIGHT = 4096  # probes outstanding at once: each holds a timer and a dict entry
SEND_BUFFER = 16 << 20  # bytes of echo requests the kernel may hold while it resolves their addresses
SO_SNDBUFFORCE = 32


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data` (ICMP here; IPv4 and UDP headers in the agent)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_echo_request(ident: int, seq: int, payload: bytes = _PAYLOAD) -> bytes:
    """An ICMP echo request (RFC 792) with its checksum."""
    body = _HEADER.pack(ECHO_REQUEST, 0, 0, ident, seq) + payload
    return _HEADER.pack(ECHO_REQUEST, 0, inet_checksum(body), ident, seq) + payload


def parse_echo_reply(datagram: bytes) -> tuple[IPv4Address, int, int] | None:
    """(source address, identifier, sequence) of an IPv4 datagram carrying an ICMP echo reply, else None
    (a raw ICMP socket receives every ICMP message, IP header included)."""
    if len(datagram) < 20 or datagram[0] >> 4 != 4:
        return None
    ihl = (datagram[0] & 0x0F) * 4
    if len(datagram) < ihl + _HEADER.size or datagram[9] != socket.IPPROTO_ICMP:
        return None
    kind, code, _, ident, seq = _HEADER.unpack_from(datagram, ihl)
    if kind != ECHO_REPLY or code != 0:
        return None
    return IPv4Address(datagram[12:16]), ident, seq


def neighbour_mac(ip: IPv4Address, table: Path = Path("/proc/net/arp")) -> str | None:
    """The MAC the kernel's ARP table holds for `ip` (a complete entry), or None."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return None
    text = str(ip)
    for line in lines:
        fields = line.split()
        # IP address, HW type, Flags (0x2 = ATF_COM, complete), HW address, Mask, Device
        if len(fields) >= 4 and fields[0] == text and int(fields[2], 16) & 0x2:
            return fields[3]
    return None


Resolved = Callable[[bool | None], None]
"""Called once per probe: True (an echo reply came), False (none within the timeout), None (not sent)."""


class Pinger:
    """Sends one echo request per probe and reports, once, whether a reply came within the timeout."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ident = os.getpid() & 0xFFFF
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[tuple[IPv4Address, int], tuple[Resolved, asyncio.TimerHandle]] = {}

    @classmethod
    def open(cls) -> Pinger:
        """A Pinger on a new raw ICMP socket (OSError without CAP_NET_RAW)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        # An echo to an address nobody holds waits in the kernel for ARP to give up (about 3 s), charged to
        # this socket's send buffer: the default (~200 KiB) holds a few hundred, and a boot storm probes
        # thousands of addresses per second. SO_SNDBUFFORCE (CAP_NET_ADMIN) passes net.core.wmem_max.
        for option in (SO_SNDBUFFORCE, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SEND_BUFFER)
                break
            except OSError:
                continue
        sock.setblocking(False)
        return cls(sock)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading replies on `loop`."""
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        """Stop reading, resolve nothing more, close the socket."""
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        for _, timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        self.sock.close()

    def busy(self) -> bool:
        """Whether the cap on probes in flight is reached."""
        return len(self._waiting) >= MAX_IN_FLIGHT

    def probe(self, ip: IPv4Address, timeout: float, resolved: Resolved) -> None:
        """Ping `ip`; call `resolved(True)` on its first reply, `resolved(False)` after `timeout` seconds,
        `resolved(None)` at once when the request cannot be sent (e.g. the neighbour table is full)."""
        assert self._loop is not None, "start() first"
        self._seq = (self._seq + 1) & 0xFFFF
        key = (ip, self._seq)
        try:
            self.sock.sendto(build_echo_request(self.ident, self._seq), (str(ip), 0))
        except OSError as exc:
            log.debug("ping %s not sent: %s", ip, exc)
            self._loop.call_soon(resolved, None)
            return
        timer = self._loop.call_later(timeout, self._timed_out, key)
        self._waiting[key] = (resolved, timer)

    def _timed_out(self, key: tuple[IPv4Address, int]) -> None:
        entry = self._waiting.pop(key, None)
        if entry is not None:
            entry[0](False)

    def _readable(self) -> None:
        for _ in range(64):  # bounded burst
            try:
                data = self.sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("ping receive failed: %s", exc)
                return
            reply = parse_echo_reply(data)
            if reply is None:
                continue
            source, ident, seq = reply
            if ident != self.ident:
                continue
            entry = self._waiting.pop((source, seq), None)
            if entry is not None:
                entry[1].cancel()
                entry[0](True)
