"""DHCP relay agent decisions, sans-I/O (RFC 951 §7, RFC 1542 §4, RFC 2131 §4.1, RFC 3046).

The relay policy is fed one parsed message, the interface it arrived on and the current time, and returns
what to do with it: forward a request to the servers, deliver a reply to a client, or drop it with a
reason. It never touches a socket or reads the clock, so every rule is a fast unit test.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Final

from ztp.dhcp.options import LEASE_TIME, RELAY_AGENT_INFO, SERVER_ID
from ztp.dhcp.packet import (
    ACK,
    BOOTREPLY,
    BOOTREQUEST,
    DECLINE,
    MESSAGE_TYPE_NAMES,
    NAK,
    RELEASE,
    ZERO_IP,
    DhcpPacket,
    MalformedPacket,
    build,
)
from ztp.dhcp.relayinfo import CIRCUIT_ID, REMOTE_ID, RelayInfo, build_relay_info, parse_relay_info
from ztp.dhcp.reply import LIMITED_BROADCAST, on_link

HOPS_LIMIT: Final = 16
"""RFC 1542 §4.1.1: requests whose hops exceed 16 MUST be discarded; a smaller threshold may be set."""

DEFAULT_MAX_HOPS: Final = 4
"""RFC 1542 §4.1.1: "The default setting for a configurable threshold SHOULD be 4"."""

DEFAULT_MAX_SIZE: Final = 1500 - 20 - 8
"""Largest BOOTP message that fits an Ethernet frame (RFC 3046 §2.1 bounds option 82 insertion by MTU)."""

BROADCAST_MAC: Final = b"\xff" * 6
"""Link-layer destination of a broadcast delivery (RFC 2131 §4.1)."""

INFINITE_LEASE: Final = 0xFFFFFFFF
"""RFC 2132 §9.2: lease time meaning "forever"."""

# Counter keys, one per outcome; the I/O shell reports them as they are.
RELAYED_REQUEST: Final = "relayed_request"
RELAYED_REPLY: Final = "relayed_reply"
DROP_HOPS: Final = "drop_hops"
DROP_UNTRUSTED_OPTION82: Final = "drop_untrusted_option82"
DROP_GIADDR_SPOOF: Final = "drop_giaddr_spoof"
DROP_ROGUE_SERVER: Final = "drop_rogue_server"
DROP_FOREIGN_GIADDR: Final = "drop_foreign_giaddr"
DROP_REQUEST_UPSTREAM: Final = "drop_request_upstream"
DROP_MALFORMED: Final = "drop_malformed"
OPTION82_TOO_BIG: Final = "option82_too_big"
OPTION82_STRIPPED: Final = "option82_stripped"
REPLY_WITHOUT_OPTION82: Final = "reply_without_option82"


@dataclass(frozen=True, slots=True)
class ClientInterface:
    """An interface facing clients: requests arriving here are relayed, replies for its address delivered."""

    name: str
    ifindex: int
    address: IPv4Address
    network: IPv4Network
    mac: bytes
    trusted: bool = False  # RFC 3046 §2.1: may carry option 82 inserted by a downstream snooping switch


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """What the operator chose: servers, option 82 contents and the hops threshold."""

    servers: tuple[IPv4Address, ...]
    circuit_id: str | None = None  # None: the client interface's name; "{interface}" is substituted
    remote_id: str | None = None  # None: the client interface's MAC address (6 raw bytes)
    max_hops: int = DEFAULT_MAX_HOPS
    max_size: int = DEFAULT_MAX_SIZE

    def __post_init__(self) -> None:
        """Reject settings the RFCs forbid."""
        if not self.servers:
            raise ValueError("a relay needs at least one server")
        if not 0 <= self.max_hops <= HOPS_LIMIT:
            raise ValueError(f"max_hops must be 0..{HOPS_LIMIT} (RFC 1542 §4.1.1), not {self.max_hops}")


@dataclass(frozen=True, slots=True)
class Forward:
    """Send `packet` to port 67 of every server (RFC 2131 §4.1: the relay unicasts to each server)."""

    packet: DhcpPacket
    servers: tuple[IPv4Address, ...]
    interface: ClientInterface


@dataclass(frozen=True, slots=True)
class Deliver:
    """Send `packet` to port 68 out of `interface`: broadcast, or unicast to `address` at `mac`."""

    packet: DhcpPacket
    interface: ClientInterface
    broadcast: bool
    address: IPv4Address  # 255.255.255.255 when broadcast
    mac: bytes  # chaddr: the ARP entry to install before a unicast to a not-yet-configured client
    needs_arp: bool  # yiaddr is not configured on the client yet, the kernel cannot resolve it


@dataclass(frozen=True, slots=True)
class Drop:
    """Do nothing with the message; `reason` is a counter key, `detail` says why for the log."""

    reason: str
    detail: str


Decision = Forward | Deliver | Drop


@dataclass(frozen=True, slots=True)
class Binding:
    """A client's address as the relay saw it granted (the DHCP snooping binding table)."""

    mac: str
    ip: IPv4Address
    interface: str
    lease_end: float | None  # None: infinite lease

    def as_json(self, now: float) -> dict[str, object]:
        """A JSON-ready dict; `remaining` in whole seconds (None for an infinite lease)."""
        return {
            "mac": self.mac,
            "ip": str(self.ip),
            "interface": self.interface,
            "lease_end": self.lease_end,
            "remaining": None if self.lease_end is None else max(0, int(self.lease_end - now)),
        }


class BindingTable:
    """Bindings learnt from relayed ACKs, forgotten on RELEASE, DECLINE, NAK or expiry; keyed by MAC."""

    def __init__(self) -> None:
        """An empty table."""
        self._by_mac: dict[str, Binding] = {}

    def learn(self, binding: Binding) -> None:
        """Record or refresh a client's binding."""
        self._by_mac[binding.mac] = binding

    def forget(self, mac: str) -> Binding | None:
        """Remove a client's binding, returning it if there was one."""
        return self._by_mac.pop(mac, None)

    def active(self, now: float) -> list[Binding]:
        """Unexpired bindings sorted by IP; expired ones are removed."""
        for mac in [m for m, b in self._by_mac.items() if b.lease_end is not None and b.lease_end <= now]:
            del self._by_mac[mac]
        return sorted(self._by_mac.values(), key=lambda b: b.ip)

    def get(self, mac: str) -> Binding | None:
        """The binding for a MAC, expired or not."""
        return self._by_mac.get(mac)

    def __len__(self) -> int:
        """Number of bindings held (expired ones included until the next `active()`)."""
        return len(self._by_mac)


def deliver(pkt: DhcpPacket, iface: ClientInterface) -> Deliver:
    """How to hand a server's reply to its client on `iface`: the server's own direct-reply rule.

    RFC 2131 §4.1 gives "a server or relay agent sending or relaying a DHCP message directly to a DHCP
    client" the same job, so both use `ztp.dhcp.reply.on_link` (NAK -> broadcast, ACK/BOOTP with a usable
    ciaddr -> unicast there, broadcast flag -> broadcast, else yiaddr at chaddr, broadcast when that is
    impossible). The reply carries the client's fields the server copied from the request (RFC 2131
    Table 3); a relayed NAK also has the broadcast bit (RFC 2131 §4.3.2).
    """
    dest = on_link(pkt)
    if dest.broadcast:
        return Deliver(pkt, iface, True, LIMITED_BROADCAST, BROADCAST_MAC, needs_arp=False)
    if dest.arp_mac is not None:
        return Deliver(pkt, iface, False, dest.ip, dest.arp_mac, needs_arp=True)
    # The client owns ciaddr and answers ARP for it: the kernel resolves it.
    return Deliver(pkt, iface, False, dest.ip, pkt.chaddr[: pkt.hlen], needs_arp=False)


def message_name(pkt: DhcpPacket) -> str:
    """DHCP message type name, or BOOTREQUEST/BOOTREPLY for plain BOOTP."""
    mtype = pkt.message_type
    if mtype is not None:
        return MESSAGE_TYPE_NAMES.get(mtype, f"type{mtype}")
    return "BOOTREQUEST" if pkt.op == BOOTREQUEST else "BOOTREPLY"


class RelayPolicy:
    """The relay's rules. Feed `receive()`; read `counters` and `bindings`."""

    def __init__(self, interfaces: tuple[ClientInterface, ...], settings: RelaySettings) -> None:
        """Relay between `interfaces` (client side) and `settings.servers`."""
        if not interfaces:
            raise ValueError("a relay needs at least one client interface")
        self.settings = settings
        self.interfaces = interfaces
        self._by_name = {i.name: i for i in interfaces}
        self._by_address = {i.address: i for i in interfaces}
        self.counters: Counter[str] = Counter()
        self.bindings = BindingTable()

    def client_interface(self, name: str) -> ClientInterface | None:
        """The client interface with this name, or None for an upstream (or unknown) interface."""
        return self._by_name.get(name)

    def receive(self, pkt: DhcpPacket, ingress: str, now: float) -> Decision:
        """Decide what to do with a message that arrived on interface `ingress`; counts the outcome."""
        decision = self._decide(pkt, ingress, now)
        if isinstance(decision, Drop):
            self.counters[decision.reason] += 1
        elif isinstance(decision, Forward):
            self.counters[RELAYED_REQUEST] += 1
        else:
            self.counters[RELAYED_REPLY] += 1
        return decision

    def count_malformed(self) -> None:
        """The shell could not parse a datagram: it is dropped silently on the wire, but counted."""
        self.counters[DROP_MALFORMED] += 1

    def _decide(self, pkt: DhcpPacket, ingress: str, now: float) -> Decision:
        client_if = self._by_name.get(ingress)
        if client_if is not None:
            if pkt.op == BOOTREPLY:
                server = pkt.option_ip(SERVER_ID)
                return Drop(
                    DROP_ROGUE_SERVER,
                    f"{message_name(pkt)} from server {server or 'unknown'} on client interface {ingress}",
                )
            return self._request(pkt, client_if, now)
        if pkt.op == BOOTREQUEST:
            return Drop(DROP_REQUEST_UPSTREAM, f"request arrived on non-client interface {ingress}")
        return self._reply(pkt, now)

    # -- client -> server ---------------------------------------------------------------------------

    def _request(self, pkt: DhcpPacket, iface: ClientInterface, now: float) -> Decision:
        # RFC 1542 §4.1.1: discard when hops already exceeds the threshold, otherwise increment it.
        if pkt.hops > self.settings.max_hops:
            return Drop(DROP_HOPS, f"hops {pkt.hops} exceeds the limit {self.settings.max_hops}")
        has_82 = RELAY_AGENT_INFO in pkt.options
        options = dict(pkt.options)
        giaddr = pkt.giaddr
        if giaddr != ZERO_IP:
            # RFC 3046 §2.1: a giaddr of our own can only be a spoof or a loop.
            if giaddr in self._by_address:
                return Drop(DROP_GIADDR_SPOOF, f"giaddr {giaddr} is one of the relay's own addresses")
            # RFC 3046 §2.1: forward a downstream relay's request WITHOUT adding option 82, and RFC 2131
            # §4.1 / RFC 1542 §4.1.1: never change a non-zero giaddr.
        elif has_82:
            # RFC 3046 §2.1: option 82 with giaddr 0 came from the client itself unless a trusted
            # snooping switch below us inserted it; then it is forwarded untouched.
            if not iface.trusted:
                return Drop(DROP_UNTRUSTED_OPTION82, f"option 82 with giaddr 0 on untrusted {iface.name}")
            giaddr = iface.address
        else:
            giaddr = iface.address
            options[RELAY_AGENT_INFO] = build_relay_info(self._relay_info(iface))
        out = replace(pkt, hops=pkt.hops + 1, giaddr=giaddr, options=options)
        if RELAY_AGENT_INFO in options and not has_82 and len(build(out)) > self.settings.max_size:
            # RFC 3046 §2.1: forward without the option rather than exceed the MTU, and count it.
            self.counters[OPTION82_TOO_BIG] += 1
            out = out.with_options(dict(pkt.options))
        if pkt.message_type in (RELEASE, DECLINE):
            self.bindings.forget(pkt.mac)
        return Forward(out, self.settings.servers, iface)

    def _relay_info(self, iface: ClientInterface) -> RelayInfo:
        circuit = self.settings.circuit_id
        circuit_id = iface.name if circuit is None else circuit.replace("{interface}", iface.name)
        remote = self.settings.remote_id
        remote_id = iface.mac if remote is None else remote.replace("{interface}", iface.name).encode()
        return RelayInfo(((CIRCUIT_ID, circuit_id.encode()), (REMOTE_ID, remote_id)))

    # -- server -> client ---------------------------------------------------------------------------

    def _reply(self, pkt: DhcpPacket, now: float) -> Decision:
        # RFC 1542 §4.1.2: a BOOTREPLY is ours only if giaddr names one of our client interfaces.
        iface = self._by_address.get(pkt.giaddr)
        if iface is None:
            return Drop(DROP_FOREIGN_GIADDR, f"reply giaddr {pkt.giaddr} is not a relay address")
        options = dict(pkt.options)
        # RFC 3046 §2.2: the relay removes option 82 before passing the reply to the client.
        if options.pop(RELAY_AGENT_INFO, None) is not None:
            self.counters[OPTION82_STRIPPED] += 1
        else:
            self.counters[REPLY_WITHOUT_OPTION82] += 1
        out = pkt.with_options(options)
        self._learn(out, iface, now)
        return deliver(out, iface)

    def _learn(self, pkt: DhcpPacket, iface: ClientInterface, now: float) -> None:
        mtype = pkt.message_type
        if mtype == NAK:
            self.bindings.forget(pkt.mac)
            return
        lease = pkt.options.get(LEASE_TIME)
        # INFORM's ACK grants no lease (RFC 2131 §4.3.5): no option 51, nothing to bind.
        if mtype != ACK or pkt.yiaddr == ZERO_IP or lease is None or len(lease) != 4:
            return
        seconds = int.from_bytes(lease, "big")
        end = None if seconds == INFINITE_LEASE else now + seconds
        self.bindings.learn(Binding(pkt.mac, pkt.yiaddr, iface.name, end))

    # -- reporting ----------------------------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, object]:
        """Bindings and counters as one JSON-ready object (what SIGUSR1 and --bindings-file show)."""
        return {
            "bindings": [b.as_json(now) for b in self.bindings.active(now)],
            "counters": dict(sorted(self.counters.items())),
        }

    def snapshot_json(self, now: float) -> str:
        """`snapshot()` as one line of JSON."""
        return json.dumps(self.snapshot(now), sort_keys=False)


def relay_info_of(pkt: DhcpPacket) -> RelayInfo | None:
    """The message's option 82, decoded; None when absent or malformed."""
    raw = pkt.options.get(RELAY_AGENT_INFO)
    if raw is None:
        return None
    try:
        return parse_relay_info(raw)
    except MalformedPacket:
        return None
