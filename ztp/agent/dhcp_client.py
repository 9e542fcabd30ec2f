"""Sans-I/O DHCP client state machine (RFC 2131 §4.4, Figure 5) for the device agent.

The machine is fed received messages and the current time and hands back messages to transmit, events and
its next deadline; it never reads a clock or touches a socket (model: aioquic's connection API).
States: INIT -> SELECTING -> REQUESTING -> PROBING -> BOUND -> RENEWING -> REBINDING. PROBING is the
RFC 2131 §4.4.1 "client SHOULD probe the newly received address" step: the I/O shell runs the ARP probe
and reports back with :meth:`DhcpClient.probe_result`; a conflict sends DHCPDECLINE and restarts.
"""

from __future__ import annotations

import enum
import random
import struct
from collections import deque
from dataclasses import dataclass
from ipaddress import IPv4Address

from ztp.dhcp import options as opt
from ztp.dhcp.packet import (
    ACK,
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    DECLINE,
    DISCOVER,
    NAK,
    OFFER,
    RELEASE,
    REQUEST,
    ZERO_IP,
    DhcpPacket,
    build,
    mac_to_chaddr,
)

BROADCAST_IP = IPv4Address("255.255.255.255")
INFINITE_LEASE = 0xFFFFFFFF

#: Option 55 the agent asks for, like a switch ROM that wants its boot server (issue 3, step 1).
DEFAULT_PARAMETER_LIST: tuple[int, ...] = (1, 3, 6, 12, 15, 28, 42, 43, 51, 54, 58, 59, 66, 67, 150)


class ClientState(enum.Enum):
    """RFC 2131 Figure 5 client states, plus PROBING (ARP check after the ACK) and STOPPED."""

    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    PROBING = "probing"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Who the client is and how patient it is; times are seconds."""

    mac: str
    hostname: str | None = None
    vendor_class: str | None = None
    client_id: bytes | None = None
    broadcast: bool = False
    parameter_list: tuple[int, ...] = DEFAULT_PARAMETER_LIST
    user_class: bytes | None = None  # option 77 as sent (a vendor profile's, ztp.agent.profiles)
    #: REQUEST retransmissions in REQUESTING before falling back to INIT (RFC 2131 §4.4.1 leaves it open).
    request_retries: int = 4
    #: Seconds REQUESTING may go unanswered before falling back to INIT, whatever the retransmissions left;
    #: None: only `request_retries` ends it. ISC dhclient gives up REQUESTING after its `reboot` timeout, 10 s
    #: by default (dhclient.conf(5); dhclient.c send_request), so a switch whose server died re-DISCOVERs.
    request_timeout: float | None = None
    #: RFC 2131 §3.1 step 5: wait at least ten seconds after a DHCPDECLINE before restarting.
    decline_wait: float = 10.0
    #: RFC 2131 §4.4.5: retransmissions in RENEWING/REBINDING are at least 60 s apart.
    min_renew_retransmit: float = 60.0


@dataclass(frozen=True, slots=True)
class Transmit:
    """One message to send: UDP from `source`:68 to `destination`:67 (broadcast when 255.255.255.255)."""

    packet: DhcpPacket
    payload: bytes
    source: IPv4Address
    destination: IPv4Address

    @property
    def broadcast(self) -> bool:
        """True when the datagram goes to the limited broadcast address (and broadcast MAC)."""
        return self.destination == BROADCAST_IP


@dataclass(frozen=True, slots=True)
class Lease:
    """A granted address with its timers (RFC 2131 §4.4.5); times are absolute on the caller's clock."""

    address: IPv4Address
    server_id: IPv4Address
    lease_time: int
    renewal_time: float
    rebinding_time: float
    acquired_at: float
    ack: DhcpPacket

    @property
    def t1_at(self) -> float:
        """When RENEWING starts."""
        return self.acquired_at + self.renewal_time

    @property
    def t2_at(self) -> float:
        """When REBINDING starts."""
        return self.acquired_at + self.rebinding_time

    @property
    def expires_at(self) -> float:
        """When the lease runs out (infinite leases never do)."""
        if self.lease_time == INFINITE_LEASE:
            return float("inf")
        return self.acquired_at + self.lease_time

    @property
    def prefixlen(self) -> int:
        """Prefix length from option 1, else 24 (the common default of ROM clients)."""
        mask = self.ack.option_ip(opt.SUBNET_MASK)
        if mask is None:
            return 24
        return bin(int(mask)).count("1")

    @property
    def routers(self) -> list[IPv4Address]:
        """Option 3 routers in order."""
        raw = self.ack.options.get(opt.ROUTERS, b"")
        return [IPv4Address(raw[i : i + 4]) for i in range(0, len(raw) - len(raw) % 4, 4)]


@dataclass(frozen=True, slots=True)
class Offered:
    """An OFFER was taken (SELECTING -> REQUESTING); `discover_at` is when this exchange's DISCOVER left."""

    offer: DhcpPacket
    discover_at: float
    at: float


@dataclass(frozen=True, slots=True)
class Acked:
    """An ACK arrived in REQUESTING; the shell must ARP-probe `lease.address` and call probe_result()."""

    lease: Lease
    request_at: float
    at: float


@dataclass(frozen=True, slots=True)
class Bound:
    """The client is BOUND; `renewed` tells a RENEWING/REBINDING extension from the first binding."""

    lease: Lease
    renewed: bool = False
    rebound: bool = False


@dataclass(frozen=True, slots=True)
class Nacked:
    """A NAK arrived (RFC 2131 §4.4.1/§4.4.5): the client restarts in INIT."""

    server_id: IPv4Address | None
    message: str
    state: ClientState


@dataclass(frozen=True, slots=True)
class Declined:
    """The ARP probe found `address` in use; a DECLINE was sent and INIT restarts after decline_wait."""

    address: IPv4Address


@dataclass(frozen=True, slots=True)
class LeaseExpired:
    """The lease ran out in REBINDING without an ACK (RFC 2131 §4.4.5): back to INIT."""

    address: IPv4Address


@dataclass(frozen=True, slots=True)
class Retransmitted:
    """A message was retransmitted after its timer ran out."""

    message_type: int
    attempt: int


@dataclass(frozen=True, slots=True)
class RequestTimedOut:
    """REQUESTING gave up on the offer of `address` by `server_id` after `requests` unanswered REQUESTs
    (`request_retries` or `request_timeout`): the client is back in INIT and has sent a new DISCOVER."""

    server_id: IPv4Address | None
    address: IPv4Address | None
    requests: int
    waited: float


Event = Offered | Acked | Bound | Nacked | Declined | LeaseExpired | Retransmitted | RequestTimedOut


@dataclass(slots=True)
class _Exchange:
    xid: int
    started_at: float
    attempt: int = 0
    sent_at: float = 0.0
    offer: DhcpPacket | None = None
    server_id: IPv4Address | None = None
    request_at: float = 0.0


def retransmit_delay(attempt: int, rng: random.Random) -> float:
    """RFC 2131 §4.1: 4 s, 8 s, ... up to 64 s, each randomized by a uniform -1..+1 s."""
    base = min(4.0 * 2.0 ** min(attempt, 8), 64.0)
    jitter: float = rng.uniform(-1.0, 1.0)
    return base + jitter


def client_id_from_text(text: str) -> bytes:
    """Option 61 value from CLI text: ``hex:...`` is taken raw, anything else is type 0 + the text."""
    if text.startswith("hex:"):
        return bytes.fromhex(text[4:].replace(":", ""))
    return b"\x00" + text.encode()


class DhcpClient:
    """One device's DHCP client (RFC 2131 §4.4); drive with start/receive/handle_timer, drain the outputs."""

    def __init__(self, config: ClientConfig, rng: random.Random) -> None:
        """Create an idle client (state INIT); `rng` supplies xids and the retransmission jitter."""
        self.config = config
        self.chaddr = mac_to_chaddr(config.mac)
        self._rng = rng
        self.state = ClientState.INIT
        self.lease: Lease | None = None
        self._exchange: _Exchange | None = None
        self._timer: float | None = None
        self._out: deque[Transmit] = deque()
        self._events: deque[Event] = deque()
        self.sent: dict[int, int] = {}

    # -- public API ------------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Enter INIT and send the first DISCOVER (RFC 2131 §4.4.1)."""
        self._restart(now)

    @property
    def xid(self) -> int | None:
        """Transaction id of the exchange in progress, or None."""
        return self._exchange.xid if self._exchange is not None else None

    def get_timer(self) -> float | None:
        """The next absolute time handle_timer() must be called, or None."""
        return self._timer

    def datagrams_to_send(self) -> list[Transmit]:
        """Messages produced since the last call, in order."""
        out = list(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        """The oldest undelivered event, or None."""
        return self._events.popleft() if self._events else None

    def receive(self, pkt: DhcpPacket, now: float) -> None:
        """Feed one received BOOTREPLY; replies for other transactions or hardware addresses are ignored."""
        ex = self._exchange
        if ex is None or pkt.op != BOOTREPLY or pkt.xid != ex.xid:
            return
        if pkt.chaddr[:6] != self.chaddr[:6]:
            return
        mtype = pkt.message_type
        if self.state is ClientState.SELECTING and mtype == OFFER:
            self._on_offer(pkt, now)
        elif self.state is ClientState.REQUESTING and mtype in (ACK, NAK):
            server = pkt.option_ip(opt.SERVER_ID)
            if ex.server_id is not None and server is not None and server != ex.server_id:
                return  # RFC 2131 §4.4.1: only the selected server's answer counts
            if mtype == NAK:
                self._on_nak(pkt, now)
            else:
                self._on_ack(pkt, now, renewal=False)
        elif self.state in (ClientState.RENEWING, ClientState.REBINDING) and mtype in (ACK, NAK):
            if mtype == NAK:
                self._on_nak(pkt, now)
            else:
                self._on_ack(pkt, now, renewal=True)

    def handle_timer(self, now: float) -> None:
        """Act on an expired timer: retransmit, move to RENEWING/REBINDING, expire, or restart."""
        if self._timer is None or now < self._timer:
            return
        self._timer = None
        ex = self._exchange
        if self.state is ClientState.INIT:
            self._restart(now)
        elif self.state is ClientState.SELECTING and ex is not None:
            ex.attempt += 1
            self._send_discover(now)
            self._events.append(Retransmitted(DISCOVER, ex.attempt))
        elif self.state is ClientState.REQUESTING and ex is not None:
            limit = self.config.request_timeout
            if ex.attempt >= self.config.request_retries or (limit is not None and now - ex.request_at >= limit):
                offered = ex.offer.yiaddr if ex.offer is not None else None
                self._events.append(RequestTimedOut(ex.server_id, offered, ex.attempt + 1, now - ex.request_at))
                self._restart(now)
                return
            ex.attempt += 1
            self._send_selecting_request(now)
            self._events.append(Retransmitted(REQUEST, ex.attempt))
        elif self.state in (ClientState.BOUND, ClientState.RENEWING, ClientState.REBINDING):
            self._lease_timer(now)

    def probe_result(self, conflict: bool, now: float) -> None:
        """Report the ARP probe of the acked address: BOUND, or DHCPDECLINE and INIT (RFC 2131 §4.4.1)."""
        if self.state is not ClientState.PROBING or self.lease is None:
            return
        lease = self.lease
        if not conflict:
            self._enter_bound(lease, now)
            self._events.append(Bound(lease))
            return
        ex = self._exchange
        assert ex is not None
        options: dict[int, bytes] = {opt.MESSAGE_TYPE: bytes((DECLINE,))}
        if self.config.client_id is not None:
            options[opt.CLIENT_ID] = self.config.client_id
        options[opt.REQUESTED_IP] = lease.address.packed
        options[opt.SERVER_ID] = lease.server_id.packed
        self._emit(self._packet(ex.xid, options, secs=0), ZERO_IP, BROADCAST_IP)
        self.lease = None
        self._exchange = None
        self.state = ClientState.INIT
        self._timer = now + self.config.decline_wait
        self._events.append(Declined(lease.address))

    def release(self, now: float) -> None:
        """Send DHCPRELEASE for the current lease (RFC 2131 §4.4.6) and stop."""
        lease = self.lease
        if lease is not None and self.state in (ClientState.BOUND, ClientState.RENEWING,
                                                ClientState.REBINDING):
            options: dict[int, bytes] = {opt.MESSAGE_TYPE: bytes((RELEASE,))}
            if self.config.client_id is not None:
                options[opt.CLIENT_ID] = self.config.client_id
            options[opt.SERVER_ID] = lease.server_id.packed
            xid = self._rng.getrandbits(32)
            self._emit(self._packet(xid, options, ciaddr=lease.address, secs=0), lease.address,
                       lease.server_id)
        self.stop()

    def stop(self) -> None:
        """Stop all timers; the client sends nothing more."""
        self.state = ClientState.STOPPED
        self._timer = None
        self._exchange = None

    # -- transitions -----------------------------------------------------------------------------------

    def _restart(self, now: float) -> None:
        self.lease = None
        self._exchange = _Exchange(xid=self._rng.getrandbits(32), started_at=now)
        self.state = ClientState.SELECTING
        self._send_discover(now)

    def _send_discover(self, now: float) -> None:
        ex = self._exchange
        assert ex is not None
        options: dict[int, bytes] = {opt.MESSAGE_TYPE: bytes((DISCOVER,))}
        self._identity_options(options)
        self._emit(self._packet(ex.xid, options, secs=self._secs(now)), ZERO_IP, BROADCAST_IP)
        ex.sent_at = now
        self._timer = now + retransmit_delay(ex.attempt, self._rng)

    def _on_offer(self, pkt: DhcpPacket, now: float) -> None:
        ex = self._exchange
        assert ex is not None
        if pkt.yiaddr == ZERO_IP:
            return
        server = pkt.option_ip(opt.SERVER_ID) or (pkt.siaddr if pkt.siaddr != ZERO_IP else None)
        if server is None:
            return  # RFC 2131 §4.3.1: an OFFER must name its server; we could never REQUEST it
        ex.offer = pkt
        ex.server_id = server
        self._events.append(Offered(pkt, ex.started_at, now))
        self.state = ClientState.REQUESTING
        ex.attempt = 0
        ex.request_at = now
        self._send_selecting_request(now)

    def _send_selecting_request(self, now: float) -> None:
        ex = self._exchange
        assert ex is not None and ex.offer is not None and ex.server_id is not None
        options: dict[int, bytes] = {opt.MESSAGE_TYPE: bytes((REQUEST,))}
        if self.config.client_id is not None:
            options[opt.CLIENT_ID] = self.config.client_id
        options[opt.REQUESTED_IP] = ex.offer.yiaddr.packed
        options[opt.SERVER_ID] = ex.server_id.packed
        self._identity_options(options, with_client_id=False)
        self._emit(self._packet(ex.xid, options, secs=self._secs(now)), ZERO_IP, BROADCAST_IP)
        self._timer = now + retransmit_delay(ex.attempt, self._rng)
        if self.config.request_timeout is not None:
            self._timer = min(self._timer, ex.request_at + self.config.request_timeout)

    def _on_nak(self, pkt: DhcpPacket, now: float) -> None:
        message = pkt.options.get(opt.MESSAGE, b"").decode("utf-8", "replace")
        self._events.append(Nacked(pkt.option_ip(opt.SERVER_ID), message, self.state))
        self._restart(now)

    def _on_ack(self, pkt: DhcpPacket, now: float, *, renewal: bool) -> None:
        ex = self._exchange
        assert ex is not None
        if pkt.yiaddr == ZERO_IP:
            return
        lease_time = _u32(pkt.options.get(opt.LEASE_TIME)) or INFINITE_LEASE
        t1 = _u32(pkt.options.get(opt.RENEWAL_TIME))
        t2 = _u32(pkt.options.get(opt.REBINDING_TIME))
        # RFC 2131 §4.4.5 defaults: T1 = 0.5 * lease, T2 = 0.875 * lease.
        renewal_time = float(t1) if t1 is not None else lease_time * 0.5
        rebinding_time = float(t2) if t2 is not None else lease_time * 0.875
        if rebinding_time > lease_time:
            rebinding_time = lease_time * 0.875
        if renewal_time > rebinding_time:
            renewal_time = rebinding_time * 0.5 / 0.875
        server = pkt.option_ip(opt.SERVER_ID) or ex.server_id or (self.lease.server_id if self.lease else None)
        if server is None:
            return
        # RFC 2131 §4.4.1: the lease starts when the REQUEST was sent, not when the ACK arrived.
        lease = Lease(address=pkt.yiaddr, server_id=server, lease_time=lease_time,
                      renewal_time=renewal_time, rebinding_time=rebinding_time,
                      acquired_at=ex.request_at, ack=pkt)
        self.lease = lease
        if renewal:
            was_rebinding = self.state is ClientState.REBINDING
            self._enter_bound(lease, now)
            self._events.append(Bound(lease, renewed=not was_rebinding, rebound=was_rebinding))
            return
        self.state = ClientState.PROBING
        self._timer = None
        self._events.append(Acked(lease, ex.request_at, now))

    def _enter_bound(self, lease: Lease, now: float) -> None:
        self.state = ClientState.BOUND
        self._exchange = None
        self._timer = lease.t1_at if lease.lease_time != INFINITE_LEASE else None

    def _lease_timer(self, now: float) -> None:
        lease = self.lease
        assert lease is not None
        if now >= lease.expires_at:
            self._events.append(LeaseExpired(lease.address))
            self._restart(now)
            return
        if now >= lease.t2_at:
            if self.state is not ClientState.REBINDING:
                self.state = ClientState.REBINDING
                self._exchange = _Exchange(xid=self._rng.getrandbits(32), started_at=now)
            self._send_lease_request(now, lease, broadcast=True)
            self._timer = self._renew_retransmit_at(now, lease.expires_at)
            return
        if now >= lease.t1_at:
            if self.state is not ClientState.RENEWING:
                self.state = ClientState.RENEWING
                self._exchange = _Exchange(xid=self._rng.getrandbits(32), started_at=now)
            self._send_lease_request(now, lease, broadcast=False)
            self._timer = self._renew_retransmit_at(now, lease.t2_at)
            return
        self._timer = lease.t1_at

    def _renew_retransmit_at(self, now: float, limit: float) -> float:
        # RFC 2131 §4.4.5: wait half the time left until `limit`, at least 60 s, never past `limit`.
        wait = max((limit - now) / 2, self.config.min_renew_retransmit)
        return min(now + wait, limit)

    def _send_lease_request(self, now: float, lease: Lease, *, broadcast: bool) -> None:
        ex = self._exchange
        assert ex is not None
        ex.request_at = now
        ex.server_id = lease.server_id if not broadcast else None
        options: dict[int, bytes] = {opt.MESSAGE_TYPE: bytes((REQUEST,))}
        # RFC 2131 §4.3.2: RENEWING/REBINDING requests carry ciaddr and neither option 50 nor 54.
        self._identity_options(options)
        pkt = self._packet(ex.xid, options, ciaddr=lease.address, secs=self._secs(now), force_unicast=True)
        self._emit(pkt, lease.address, BROADCAST_IP if broadcast else lease.server_id)

    # -- building --------------------------------------------------------------------------------------

    def _identity_options(self, options: dict[int, bytes], *, with_client_id: bool = True) -> None:
        cfg = self.config
        if with_client_id and cfg.client_id is not None:
            options[opt.CLIENT_ID] = cfg.client_id
        if cfg.hostname:
            options[opt.HOST_NAME] = cfg.hostname.encode()
        if cfg.vendor_class:
            options[opt.VENDOR_CLASS] = cfg.vendor_class.encode()
        if cfg.user_class:
            options[77] = cfg.user_class  # RFC 3004
        options[opt.PARAMETER_LIST] = bytes(cfg.parameter_list)

    def _packet(self, xid: int, options: dict[int, bytes], *, ciaddr: IPv4Address = ZERO_IP, secs: int,
                force_unicast: bool = False) -> DhcpPacket:
        flags = BROADCAST_FLAG if self.config.broadcast and not force_unicast else 0
        return DhcpPacket(op=BOOTREQUEST, xid=xid, chaddr=self.chaddr, secs=min(secs, 0xFFFF), flags=flags,
                          ciaddr=ciaddr, options=options)

    def _secs(self, now: float) -> int:
        ex = self._exchange
        return int(now - ex.started_at) if ex is not None else 0

    def _emit(self, pkt: DhcpPacket, source: IPv4Address, destination: IPv4Address) -> None:
        mtype = pkt.message_type or 0
        self.sent[mtype] = self.sent.get(mtype, 0) + 1
        self._out.append(Transmit(pkt, build(pkt), source, destination))


def _u32(raw: bytes | None) -> int | None:
    if raw is None or len(raw) != 4:
        return None
    value: int = struct.unpack("!I", raw)[0]
    return value
