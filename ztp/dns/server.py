"""DNS server: the asyncio shell around :class:`~ztp.dns.zone.Zone` (UDP and TCP, RFC 1035 §4.2).

It listens on the given ``hosts`` (the provisioning network's addresses; one UDP socket each, and TCP on
all of them), so answers leave from the address the query was sent to and nothing is served elsewhere.

Every datagram is answered inline on the event loop (no thread per query, unlike dnslib's ``DNSServer``):
parse, decide and pack take well under a millisecond, so DNS shares the appliance's loop with DHCP.
TCP (RFC 1035 §4.2.2, RFC 7766) carries two-octet length-prefixed messages, several per connection,
with a bounded number of connections and an idle timeout so idle or slow peers cannot pin resources.

Queries outside the zone get REFUSED unless ``forwarders`` are configured; then they are relayed over UDP
under a fresh message ID, with a per-query timeout (trying each forwarder in turn) and a bounded table of
pending queries (SERVFAIL when full or when every forwarder stayed silent).

Malformed input (garbage, responses, truncated messages) is counted, logged at debug level and dropped
without a reply, so spoofed junk cannot be reflected.

A flood of queries must not slow DHCP, which shares the loop: each source address gets a token bucket
(:class:`SourceRateLimiter`, ``rate_limit`` queries/s, bursts of twice that), checked before anything is
parsed, so a flooding source costs one ``recvfrom`` and a dictionary update per datagram. Each UDP
readiness callback drains up to a batch of rate-limited datagrams but answers at most one query, so DHCP's
socket gets its turn after every answer however many sources flood (scripts/dns_flood_vs_dhcp.py with the
limit off: eight answers per callback made a 3,000 q/s flood multiply DHCP's REQUEST-ACK delay by 3 to 7,
one by 1.4 to 2). Excess queries wait in the socket buffer and, when that is full, are dropped by the kernel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import logging
import secrets
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dnslib import DNSRecord  # type: ignore[import-untyped,unused-ignore]

from ztp.dns.zone import Rcode, Zone, error_reply
from ztp.ratelimit import SourceRateLimiter

__all__ = ["COUNTERS", "DEFAULT_RATE_LIMIT", "DnsServer", "SourceRateLimiter", "main"]

COUNTERS = ("queries", "answered", "nxdomain", "refused", "malformed", "truncated", "forwarded", "rate_limited")
"""Keys of :attr:`DnsServer.counters` (``rate_limited`` messages are dropped before parsing, not in ``queries``)."""

DEFAULT_RATE_LIMIT = 200.0
"""Queries per second one source address may send (bursts of twice that); 0 turns the limit off."""

_RCVBUF = 4 * 1024 * 1024
_UDP_READS = 64  # datagrams read per readiness callback; rate-limited ones cost only the read
_UDP_ANSWERS = 1  # queries answered per readiness callback: DHCP waits for at most one answer (~0.2 ms)
_UDP_BUF = 4096  # no query is larger; a longer datagram is cut and then fails to parse as the junk it is
_REPORT_SECONDS = 10.0  # at most one "rate limiting" log line per interval, so a flood cannot flood the log
_LENGTH = struct.Struct("!H")

log_default = logging.getLogger("ztp.dns")

Send = Callable[[bytes], None]


def _parse_forwarder(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = text.strip(), "53"
    try:
        address = str(ipaddress.IPv4Address(host))
        number = int(port)
    except ValueError:
        raise ValueError(f"forwarder {text!r}: expected IPv4[:port]") from None
    if not 0 < number < 65536:
        raise ValueError(f"forwarder {text!r}: port out of range")
    return address, number


def _question_key(message: bytes) -> tuple[tuple[bytes, ...], int, int] | None:
    try:
        record = DNSRecord.parse(message)
    except Exception:
        return None
    if len(record.questions) != 1:
        return None
    q = record.questions[0]
    return tuple(label.lower() for label in q.qname.label), int(q.qtype), int(q.qclass)


@dataclass(slots=True)
class _Pending:
    """A query relayed to a forwarder, waiting for its answer."""

    query: bytes
    client_id: bytes
    key: tuple[tuple[bytes, ...], int, int]
    send: Send
    attempt: int
    timer: asyncio.TimerHandle | None = None


class _ForwardProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._server._forward_answer(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._server.log.debug("dns forwarder socket error: %s", exc)


class DnsServer:
    """Serve ``zone`` on ``port`` of each of ``hosts`` (default: ``host``) over UDP and TCP; optionally forward
    other names to ``forwarders``.

    ``forwarders`` are ``"ip"`` or ``"ip:port"``. ``clock`` gives the ``now`` the zone compares lease
    expiry with (it must be the clock the leases' ``expires_at`` come from).
    """

    def __init__(
        self,
        zone: Zone,
        *,
        host: str = "0.0.0.0",
        hosts: Sequence[str] = (),
        port: int = 53,
        log: logging.Logger | None = None,
        forwarders: list[str] | None = None,
        clock: Callable[[], float] = time.time,
        max_tcp: int = 64,
        tcp_idle_timeout: float = 10.0,
        forward_timeout: float = 2.0,
        max_pending: int = 1024,
        rate_limit: float = DEFAULT_RATE_LIMIT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Only stores the settings (ValueError for a bad forwarder or rate); :meth:`start` opens the sockets.

        ``rate_limit`` is queries/s per source address (bursts of twice that), 0 for no limit; ``monotonic``
        is the limiter's clock.
        """
        self.zone = zone
        self.hosts = tuple(hosts) or (host,)
        self.host = self.hosts[0]
        self.port = port
        self.log = log or log_default
        self.forwarders = [_parse_forwarder(f) for f in forwarders or []]
        self.clock = clock
        self.max_tcp = max_tcp
        self.tcp_idle_timeout = tcp_idle_timeout
        self.forward_timeout = forward_timeout
        self.max_pending = max_pending
        self.limiter = SourceRateLimiter(rate_limit)
        self.monotonic = monotonic
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._udp: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limited_since_report = 0
        self._report_at = float("-inf")
        self._tcp: asyncio.Server | None = None
        self._fwd: asyncio.DatagramTransport | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()
        self._pending: dict[int, _Pending] = {}

    @property
    def address(self) -> tuple[str, int]:
        """The bound UDP (and TCP) address; the real port after :meth:`start` when ``port`` was 0."""
        return self.host, self.port

    async def start(self) -> None:
        """Bind UDP on every host, then TCP on the same port, then the forwarders' socket (if any)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        try:
            for host in self.hosts:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    # A burst of queries (or of junk) must queue rather than be dropped by a default-sized buffer.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
                    sock.bind((host, self.port))
                    sock.setblocking(False)
                except BaseException:
                    sock.close()
                    raise
                self.port = sock.getsockname()[1]  # port 0: the other hosts share the one picked here
                # A plain reader rather than a DatagramProtocol: the transport reads one datagram per loop
                # iteration; this drains rate-limited junk in batches and bounds the answering work.
                self._udp.append(sock)
                loop.add_reader(sock.fileno(), self._udp_readable, sock)
            self._tcp = await asyncio.start_server(
                self._serve_tcp, list(self.hosts), self.port, reuse_address=True, backlog=self.max_tcp
            )
            if self.forwarders:
                fwd, _ = await loop.create_datagram_endpoint(lambda: _ForwardProtocol(self), local_addr=("0.0.0.0", 0))
                self._fwd = fwd
        except BaseException:
            await self.close()
            raise
        self.log.info(
            "dns serving %s on %s port %d udp+tcp%s, %s",
            self.zone.origin,
            ", ".join(self.hosts),
            self.port,
            f", forwarding to {', '.join(f'{h}:{p}' for h, p in self.forwarders)}" if self.forwarders else "",
            f"rate limit {self.limiter.rate:g} q/s per source" if self.limiter.rate > 0 else "no rate limit",
        )

    async def close(self) -> None:
        """Stop listening, drop pending forwards and close every TCP connection; idempotent."""
        for sock in self._udp:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._udp.clear()
        if self._fwd is not None:
            self._fwd.close()
            self._fwd = None
        for pending in self._pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
        self._pending.clear()
        if self._tcp is not None:
            self._tcp.close()
            tasks = list(self._tcp_tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None

    # -- queries ----------------------------------------------------------------------------------------

    def _udp_readable(self, sock: socket.socket) -> None:
        if sock.fileno() < 0:
            return
        handled = 0
        for _ in range(_UDP_READS):
            try:
                data, peer = sock.recvfrom(_UDP_BUF)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ICMP port-unreachable from a client that went away: nothing to do, and no reason to stop.
                self.log.debug("dns udp error: %s", exc)
                return
            if self._admit(peer[0]):
                self._handle(data, peer, functools.partial(self._udp_send, sock, peer), tcp=False)
                handled += 1
                if handled >= _UDP_ANSWERS:
                    return

    def _udp_send(self, sock: socket.socket, peer: tuple[str, int], reply: bytes) -> None:
        if sock.fileno() < 0:
            return
        try:
            sock.sendto(reply, peer)
        except OSError as exc:
            # A full send buffer loses this answer, as the network may; the client retries.
            self.log.debug("dns send to %s:%d failed: %s", peer[0], peer[1], exc)

    def _admit(self, source: str) -> bool:
        """Charge ``source``'s bucket; count, and now and then log, what the limiter drops."""
        now = self.monotonic()
        if self.limiter.allow(source, now):
            return True
        self.counters["rate_limited"] += 1
        self._limited_since_report += 1
        if now >= self._report_at:
            self.log.warning(
                "dns rate limit: %d dropped from sources over %g queries/s (latest %s)",
                self._limited_since_report,
                self.limiter.rate,
                source,
            )
            self._limited_since_report = 0
            self._report_at = now + _REPORT_SECONDS
        return False

    def _handle(self, data: bytes, peer: tuple[str, int], send: Send, *, tcp: bool) -> None:
        self.counters["queries"] += 1
        response = self.zone.respond(data, self.clock(), tcp=tcp)
        if response is None:
            self.counters["malformed"] += 1
            self.log.debug("dns malformed %d bytes from %s:%d dropped", len(data), peer[0], peer[1])
            return
        if response.outside and self._fwd is not None:
            self._forward(data, send)
            return
        counter = {Rcode.NXDOMAIN: "nxdomain", Rcode.REFUSED: "refused", Rcode.FORMERR: "malformed"}
        if response.rcode in counter:
            self.counters[counter[response.rcode]] += 1
        if response.truncated:
            self.counters["truncated"] += 1
        self.counters["answered"] += 1
        self.log.debug(
            "dns %s:%d %s %s -> rcode %d%s",
            peer[0],
            peer[1],
            "tcp" if tcp else "udp",
            response.question,
            response.rcode,
            " TC" if response.truncated else "",
        )
        send(response.data)

    # -- forwarding -------------------------------------------------------------------------------------

    def _forward(self, query: bytes, send: Send) -> None:
        key = _question_key(query)
        if key is None or len(self._pending) >= self.max_pending:
            self._fail(query, send)
            return
        while True:
            fid = secrets.randbits(16)
            if fid not in self._pending:
                break
        pending = _Pending(query=query, client_id=query[:2], key=key, send=send, attempt=0)
        self._pending[fid] = pending
        self.counters["forwarded"] += 1
        self._send_forward(fid, pending)

    def _send_forward(self, fid: int, pending: _Pending) -> None:
        if self._fwd is None:
            return
        target = self.forwarders[pending.attempt % len(self.forwarders)]
        self._fwd.sendto(_LENGTH.pack(fid) + pending.query[2:], target)
        loop = asyncio.get_running_loop()
        pending.timer = loop.call_later(self.forward_timeout, self._forward_timeout, fid)

    def _forward_timeout(self, fid: int) -> None:
        pending = self._pending.get(fid)
        if pending is None:
            return
        pending.attempt += 1
        if pending.attempt < len(self.forwarders):
            self._send_forward(fid, pending)
            return
        del self._pending[fid]
        self.log.info("dns forward of %s timed out on every forwarder", pending.key[0])
        self._fail(pending.query, pending.send)

    def _forward_answer(self, data: bytes, addr: tuple[str, int]) -> None:
        if (addr[0], addr[1]) not in self.forwarders or len(data) < 12:
            return
        (fid,) = _LENGTH.unpack_from(data)
        pending = self._pending.get(fid)
        # Only a response (QR set) to the very question we asked completes a forward (spoofing guard).
        if pending is None or not data[2] & 0x80 or _question_key(data) != pending.key:
            return
        del self._pending[fid]
        if pending.timer is not None:
            pending.timer.cancel()
        self.counters["answered"] += 1
        pending.send(pending.client_id + data[2:])

    def _fail(self, query: bytes, send: Send) -> None:
        reply = error_reply(query, Rcode.SERVFAIL)
        if reply is not None:
            self.counters["answered"] += 1
            send(reply)

    # -- TCP --------------------------------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername") or ("?", 0)
        if task is None or len(self._tcp_tasks) >= self.max_tcp:
            self.log.debug("dns tcp connection from %s refused: %d open", peer, len(self._tcp_tasks))
            writer.close()
            return
        self._tcp_tasks.add(task)

        def send(reply: bytes) -> None:
            if not writer.is_closing():
                writer.write(_LENGTH.pack(len(reply)) + reply)

        try:
            while True:
                try:
                    prefix = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle_timeout)
                    (length,) = _LENGTH.unpack(prefix)
                    message = await asyncio.wait_for(reader.readexactly(length), self.tcp_idle_timeout)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                if not self._admit(peer[0]):
                    continue
                self._handle(message, (peer[0], peer[1]), send, tcp=True)
                await asyncio.wait_for(writer.drain(), self.tcp_idle_timeout)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self._tcp_tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _record_arg(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=ADDRESS")
    return name, value


def _lease_arg(text: str) -> tuple[str, str, float]:
    name, sep, rest = text.partition("=")
    ip, sep2, seconds = rest.partition("@")
    if not sep or not sep2 or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=ADDRESS@SECONDS")
    try:
        return name, ip, float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: SECONDS must be a number") from None


def main(argv: list[str] | None = None) -> int:
    """`python -m ztp.dns.server --zone Z --host ADDR --subnet NET --record NAME=IP ...`: serve one zone."""
    parser = argparse.ArgumentParser(prog="python -m ztp.dns.server", description=main.__doc__)
    parser.add_argument("--zone", required=True, help="forward zone, e.g. lab.test")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--server-name", default="ztp", help="the appliance's own name in the zone")
    parser.add_argument(
        "--server-ip", action="append", default=[], help="address(es) of the server name (default: --host)"
    )
    parser.add_argument("--subnet", action="append", default=[], help="subnet whose PTR zone we serve")
    parser.add_argument(
        "--record", action="append", default=[], type=_record_arg, help="static NAME=IP (repeat for more IPs)"
    )
    parser.add_argument("--lease", action="append", default=[], type=_lease_arg, help="dynamic NAME=IP@SECONDS left")
    parser.add_argument("--ttl", type=int, default=300)
    parser.add_argument("--forwarder", action="append", default=[], help="IP[:PORT] for names outside")
    parser.add_argument("--forward-timeout", type=float, default=2.0)
    parser.add_argument("--max-tcp", type=int, default=64)
    parser.add_argument("--tcp-idle-timeout", type=float, default=10.0)
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=DEFAULT_RATE_LIMIT,
        help="queries/s per source address, bursts of twice that; 0 = no limit (default %(default)g)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose > 1 else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    server_ips = args.server_ip or ([args.host] if args.host != "0.0.0.0" else [])
    records: dict[str, list[str]] = {}
    for name, ip in args.record:
        records.setdefault(name, []).append(ip)
    try:
        zone = Zone(
            args.zone,
            server_name=args.server_name,
            server_ips=server_ips,
            subnets=args.subnet,
            ttl=args.ttl,
            records=records,
        )
        now = time.time()
        for name, ip, seconds in args.lease:
            zone.set_host(name, ip, expires_at=now + seconds)
        server = DnsServer(
            zone,
            host=args.host,
            port=args.port,
            forwarders=args.forwarder,
            max_tcp=args.max_tcp,
            tcp_idle_timeout=args.tcp_idle_timeout,
            forward_timeout=args.forward_timeout,
            rate_limit=args.rate_limit,
        )
    except ValueError as exc:
        parser.error(str(exc))

    async def serve() -> None:
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.close()
        counters = " ".join(f"{k}={v}" for k, v in server.counters.items())
        server.log.info("dns stopped: %s", counters)

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
