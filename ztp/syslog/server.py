"""The syslog receiver's UDP shell: attributes each message to a device by its source address.

A message from the address a device leased (or has reserved) is that device's; the first one after its
config was delivered marks it `confirmed` (ztp.timeline). Everything else is counted and dropped: the
receiver is a confirmation signal, not a log store. Bound like TFTP to the provisioning addresses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address

from ztp.net.listen import WILDCARD
from ztp.syslog.message import SyslogMalformed, parse

log = logging.getLogger("ztp.syslog")

# (source address) -> the device's timeline key, or None when the sender is no known device
Attribute = Callable[[IPv4Address], str | None]
# (key, source address, message text, now) -> None
Deliver = Callable[[str, str, str, float], None]
# (key) -> whether a message from this device matters now (one awaiting confirmation)
Wanted = Callable[[str], bool]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: SyslogServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        self.server.datagram(data, str(addr[0]))


class SyslogServer:
    """UDP syslog on `port` of each of `hosts`."""

    def __init__(self, attribute: Attribute, deliver: Deliver, *, wanted: Wanted = lambda key: True, port: int = 514,
                 hosts: Sequence[str] = (WILDCARD,), clock: Callable[[], float] = time.time) -> None:
        """`attribute` names the sender's device; only messages of `wanted` devices are parsed and delivered."""
        self.attribute = attribute
        self.deliver = deliver
        self.wanted = wanted
        self.port = port
        self.hosts = tuple(hosts)
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self._transports: list[asyncio.DatagramTransport] = []

    def datagram(self, data: bytes, source: str) -> None:
        """One datagram from `source` (the shell's whole logic; tests call it directly).

        Who sent it is looked up first (two dict lookups): a flood from strangers, or the chatter of devices
        already confirmed, costs no parsing."""
        self.counters["received"] += 1
        try:
            key = self.attribute(IPv4Address(source))
        except ValueError:
            key = None
        if key is None:
            self.counters["unknown_sender"] += 1
            return
        if not self.wanted(key):
            self.counters["not_awaited"] += 1
            return
        try:
            message = parse(data)
        except SyslogMalformed as exc:
            self.counters["malformed"] += 1
            log.debug("syslog from %s dropped: %s", source, exc)
            return
        self.counters["attributed"] += 1
        self.deliver(key, source, message.text[:200], self.clock())

    async def start(self) -> None:
        """Bind every host (OSError, nothing left bound, when one fails)."""
        loop = asyncio.get_running_loop()
        try:
            for host in self.hosts:
                transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=(host,
                                                                                                         self.port))
                self._transports.append(transport)
        except BaseException:
            await self.close()
            raise
        log.info("syslog listening on %s port %d", ", ".join(self.hosts), self.port)

    async def close(self) -> None:
        """Close the sockets."""
        for transport in self._transports:
            transport.close()
        self._transports.clear()
