"""rtnetlink for the agent's interface: add and remove leased addresses and the default route.

A fleet binds hundreds of addresses a second; one ``ip addr add`` process per device (fork + exec +
its own netlink round trip) made "configure" the slowest stage of a boot storm. The agent instead keeps
one ``AF_NETLINK``/``NETLINK_ROUTE`` socket and sends the same messages iproute2 sends (RFC 3549 §2.3.3;
layouts from ``linux/netlink.h``, ``linux/if_addr.h``, ``linux/rtnetlink.h``). The kernel handles an
rtnetlink request inside ``send()``, so its ACK is already queued when the call returns: a request costs
two system calls and no loop iteration.

Two layers: pure message builders and an ACK parser (no socket), and :class:`RouteSocket`, the asyncio
shell that matches ACKs to requests by sequence number.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

log = logging.getLogger(__name__)

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_NEWROUTE = 24

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100  # on an NLMSG_ERROR: the request is not echoed, only its header
NLM_F_ACK_TLVS = 0x200  # on an NLMSG_ERROR: extended-ACK attributes follow

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_F_NOPREFIXROUTE = 0x200

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

NLMSGERR_ATTR_MSG = 1

_SOL_NETLINK = 270
_NETLINK_CAP_ACK = 10
_NETLINK_EXT_ACK = 11

# Netlink is host byte order ("=": native order, standard sizes, no padding).
_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")


class NetlinkError(ValueError):
    """A netlink reply that is not well-formed; says what and at which offset."""


@dataclass(frozen=True, slots=True)
class NetlinkAck:
    """The kernel's answer to one request (an NLMSG_ERROR): `error` 0 is success, else a positive errno."""

    seq: int
    error: int
    message: str | None = None

    def raise_for_error(self, what: str) -> None:
        """Raise OSError(errno, ...) naming `what` when the request failed."""
        if self.error:
            detail = f": {self.message}" if self.message else ""
            raise OSError(self.error, f"{what}: {os.strerror(self.error)}{detail}")


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, value: bytes) -> bytes:
    size = _RTATTR.size + len(value)
    return _RTATTR.pack(size, kind) + value + bytes(_align(size) - size)


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def build_address(seq: int, ifindex: int, address: IPv4Address, prefixlen: int, *, add: bool = True,
                  noprefixroute: bool = False) -> bytes:
    """RTM_NEWADDR (create, fail if it exists) or RTM_DELADDR for `address/prefixlen` on `ifindex`.

    Byte for byte what iproute2 6.1 sends for ``ip addr add|del A/P dev IF [noprefixroute]``.
    """
    if not 0 <= prefixlen <= 32:
        raise ValueError(f"prefix length {prefixlen} is not 0..32")
    body = _IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, ifindex)
    body += _attr(IFA_LOCAL, address.packed)
    if noprefixroute:
        # The flag does not fit ifa_flags (8 bits): it travels as IFA_FLAGS (Linux 3.14+).
        body += _attr(IFA_FLAGS, struct.pack("=I", IFA_F_NOPREFIXROUTE))
    body += _attr(IFA_ADDRESS, address.packed)
    if add:
        return _message(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE, seq, body)
    return _message(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq, body)


def build_prefix_route(seq: int, ifindex: int, network: IPv4Network) -> bytes:
    """RTM_NEWROUTE create-or-replace of the on-link route of `network`, as the kernel adds for a primary
    address: ``ip route replace NET/P dev IF proto kernel scope link``."""
    body = _RTMSG.pack(socket.AF_INET, network.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_KERNEL, RT_SCOPE_LINK,
                       RTN_UNICAST, 0)
    body += _attr(RTA_DST, network.network_address.packed) + _attr(RTA_OIF, struct.pack("=I", ifindex))
    return _message(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE, seq, body)


def build_default_route(seq: int, ifindex: int, gateway: IPv4Address) -> bytes:
    """RTM_NEWROUTE create-or-replace of the main table's default route: ``ip route replace default via
    GW dev IF``."""
    body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
    body += _attr(RTA_GATEWAY, gateway.packed) + _attr(RTA_OIF, struct.pack("=I", ifindex))
    return _message(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE, seq, body)


def parse_acks(data: bytes) -> list[NetlinkAck]:
    """The NLMSG_ERROR messages (ACKs) in one datagram from the kernel; other message types are skipped.

    Understands capped ACKs (NETLINK_CAP_ACK) and the extended-ACK error text (NLMSGERR_ATTR_MSG).
    """
    acks: list[NetlinkAck] = []
    off = 0
    while off + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < _NLMSGHDR.size or off + length > len(data):
            raise NetlinkError(f"netlink message length {length} does not fit the {len(data)}-byte datagram "
                               f"at offset {off}")
        if kind == NLMSG_ERROR:
            body = off + _NLMSGHDR.size
            if length < _NLMSGHDR.size + _ERRNO.size + _NLMSGHDR.size:
                raise NetlinkError(f"NLMSG_ERROR of {length} bytes is too short at offset {off}")
            (err,) = _ERRNO.unpack_from(data, body)
            orig_len = _NLMSGHDR.unpack_from(data, body + _ERRNO.size)[0]
            message = None
            if flags & NLM_F_ACK_TLVS:
                # Without NLM_F_CAPPED the whole request is echoed before the attributes.
                echoed = _NLMSGHDR.size if flags & NLM_F_CAPPED else _align(orig_len)
                tlv = body + _ERRNO.size + echoed
                message = _ext_ack_message(data, tlv, off + length)
            acks.append(NetlinkAck(seq=seq, error=-err, message=message))
        off += _align(length)
    if off < len(data) and data[off:].strip(b"\0"):
        raise NetlinkError(f"{len(data) - off} trailing bytes at offset {off}")
    return acks


def _ext_ack_message(data: bytes, off: int, end: int) -> str | None:
    while off + _RTATTR.size <= end:
        size, kind = _RTATTR.unpack_from(data, off)
        if size < _RTATTR.size or off + size > end:
            raise NetlinkError(f"extended-ACK attribute length {size} overruns the message at offset {off}")
        if kind == NLMSGERR_ATTR_MSG:
            return data[off + _RTATTR.size : off + size].split(b"\0", 1)[0].decode("utf-8", "replace")
        off += _align(size)
    return None


class RouteRequests(Protocol):
    """What a caller needs from a netlink socket: :class:`RouteSocket`, or a fake in unit tests."""

    def next_seq(self) -> int:
        """A fresh sequence number."""
        ...

    async def request(self, seq: int, message: bytes) -> NetlinkAck:
        """Send `message` and return its ACK."""
        ...

    def close(self) -> None:
        """Release the socket."""
        ...


class RouteSocket:
    """One NETLINK_ROUTE socket on the running asyncio loop; :meth:`request` sends and awaits its ACK.

    Requests may overlap (each has its own sequence number); the reader drains ACKs right after each send,
    so in practice a request completes without waiting for the loop.
    """

    def __init__(self) -> None:
        """Open the socket (changing addresses later needs CAP_NET_ADMIN)."""
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   socket.NETLINK_ROUTE)
        try:
            self._sock.bind((0, 0))
            for opt in (_NETLINK_CAP_ACK, _NETLINK_EXT_ACK):
                with contextlib.suppress(OSError):  # older kernels: plain ACKs, errno only
                    self._sock.setsockopt(_SOL_NETLINK, opt, 1)
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0
        self._pending: dict[int, asyncio.Future[NetlinkAck]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def next_seq(self) -> int:
        """A fresh sequence number for the next message."""
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    async def request(self, seq: int, message: bytes) -> NetlinkAck:
        """Send `message` (built with sequence number `seq`) and return the kernel's ACK."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._detach()
            self._loop = loop
            loop.add_reader(self._sock.fileno(), self._drain)
        fut: asyncio.Future[NetlinkAck] = loop.create_future()
        self._pending[seq] = fut
        try:
            self._sock.send(message)
        except OSError:
            self._pending.pop(seq, None)
            raise
        self._drain()
        try:
            return await fut
        finally:
            self._pending.pop(seq, None)

    def _drain(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ENOBUFS: ACKs were dropped; nobody will answer the requests in flight.
                log.warning("netlink receive failed: %s", exc)
                self._fail_all(exc)
                return
            try:
                acks = parse_acks(data)
            except NetlinkError as exc:
                log.warning("dropped malformed netlink reply: %s", exc)
                continue
            for ack in acks:
                fut = self._pending.pop(ack.seq, None)
                if fut is not None and not fut.done():
                    fut.set_result(ack)

    def _fail_all(self, exc: OSError) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(OSError(exc.errno or errno.EIO, f"netlink: {exc}"))

    def _detach(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):  # the loop may already be closed
                self._loop.remove_reader(self._sock.fileno())
            self._loop = None

    def close(self) -> None:
        """Stop reading, fail outstanding requests and close the socket."""
        self._detach()
        self._fail_all(OSError(errno.ECANCELED, "closed"))
        self._sock.close()
