"""Read-only TFTP server: the asyncio shell around `ReadSession` (RFC 1350 §4 TIDs, RFC 2347-2349, 7440).

One listening socket per configured address (``hosts``; the provisioning network's addresses, never the
wildcard unless asked for) receives requests with ``IP_PKTINFO`` so each transfer can reply from the
address the client talked to. Every transfer gets its own ephemeral UDP socket (a new TID, RFC 1350 §4), bound to
that address and connected to the client's TID, read with ``add_reader`` and sent on directly; there is no
thread per session and a single lazily re-armed timer per session, so thousands of concurrent transfers
cost one epoll set.

Malformed datagrams to the listener are counted, logged at debug level and dropped without a reply: an
ERROR would make the server a reflector for spoofed garbage, and a real client never sends one. WRQ is
answered with ERROR 2 "read-only server"; requests beyond ``max_sessions`` in total or
``max_sessions_per_peer`` from one address with ERROR 0 "server busy" (counted as ``busy``, logged at
most once per ``_BUSY_REPORT_SECONDS`` so a flood cannot flood the log).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import errno
import ipaddress
import logging
import resource
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from ztp.loopfd import unwatch
from ztp.net.sockets import IN_PKTINFO, IP_PKTINFO, parse_pktinfo, pktinfo_cmsg
from ztp.tftp.admission import DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_PEER, SessionQuota
from ztp.tftp.content import ContentProvider, StaticRoot, TftpRefusal, close_content
from ztp.tftp.packet import (
    ERR_ACCESS,
    ERR_UNDEFINED,
    ReadRequest,
    TftpMalformed,
    WriteRequest,
    error_datagram,
    parse,
)
from ztp.tftp.session import MAX_BLKSIZE, MAX_TIMEOUT, STALL_LIMIT, ReadSession
from ztp.tftp.throttle import RepeatGate

IPV6_PKTINFO = 50  # Linux <linux/in6.h>
_IN6_PKTINFO = struct.Struct("=16sI")  # ipi6_addr, ipi6_ifindex
_LISTEN_RCVBUF = 4 * 1024 * 1024
_DRAIN_LIMIT = 256  # datagrams read per readiness event, so one busy socket cannot starve the loop
# ACK and ERROR are small; anything longer is truncated garbage anyway. 479 keeps recv's bytes object (33
# bytes of header) within CPython's small-object allocator (512 bytes): one ACK per block in lock-step, and
# a 2 KiB buffer went through malloc and a realloc for each (measured: ~1,000 instructions per block).
_SESSION_RECV = 479
_BUSY_REPORT_SECONDS = 10.0  # at most one "server busy" log line per interval

log_default = logging.getLogger("ztp.tftp")


@dataclass(frozen=True, slots=True)
class TransferNote:
    """What `TftpServer.on_transfer` hears: a transfer started, finished, failed or was refused (timeline)."""

    kind: str  # "started", "finished", "failed", "refused"
    peer: str
    filename: str
    size: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    options: tuple[tuple[str, str], ...] = ()  # accepted blksize, windowsize, ...
    retransmits: int = 0
    reason: str = ""  # failed: the session's reason; refused: the refusal's message
    code: int = 0  # refused: the TFTP error code sent


def _printable(name: str) -> str:
    return name if name.isprintable() and " " not in name else ascii(name)


class _Transfer:
    """One RRQ on its own connected socket: moves datagrams and timer events between the loop and a session.

    The socket is ``connect()``ed to the client's TID, as tftpd-hpa does: the kernel keeps the route,
    ``send``/``recv`` skip address handling and the per-datagram TID check, and only the peer's datagrams
    reach the socket. A datagram from any other TID is answered by the kernel with ICMP port unreachable
    instead of the ERROR 5 that RFC 1350 §4 says "should" be sent; both tell the stray sender it has the
    wrong port, and the transfer is not disturbed.
    Keeping ERROR 5 would need a second, unconnected socket on the same port: an extra descriptor per
    transfer, and the SO_REUSEADDR it needs would let any local process bind that port too.

    The hot path, one ACK in and the next DATA out, runs inside the reader callback: one ``recv`` per
    readiness event (the loop is level-triggered, so a second queued datagram just fires again), the
    session's reply sent at once, and the deque and writer callback used only when the send buffer is full.
    In lock-step the reply is the block `ReadSession.prepare_next` built after the previous send, released
    by `ReadSession.take_ack` for exactly the expected ACK: between ``recv`` and ``send`` there is one bytes
    comparison, no parse, read or copy (issue 14; large blocks go out with a gathering ``sendmsg``).
    """

    __slots__ = ("server", "sock", "session", "peer", "filename", "prefix", "_pending", "_timer",
                 "_timer_at", "_writer", "_closed", "_recv", "_send", "_sendmsg", "_loop")

    def __init__(self, server: TftpServer, sock: socket.socket, session: ReadSession,
                 peer: tuple[str, int], filename: str, prefix: str) -> None:
        self.server = server
        self.sock = sock
        self.session = session
        self.peer = peer
        self.filename = filename
        self.prefix = prefix
        self._loop = server._loop
        self._recv = sock.recv
        self._send = sock.send
        self._sendmsg = sock.sendmsg
        self._pending: collections.deque[bytes] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._writer = False
        self._closed = False

    def start(self) -> None:
        self._loop.add_reader(self.sock.fileno(), self._on_readable)
        self._pump()

    def _on_readable(self) -> None:
        try:
            data = self._recv(_SESSION_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # e.g. ECONNREFUSED from an ICMP error; the timer decides the session's fate
        session = self.session
        now = self._loop.time()
        # Lock-step, the common case: the ACK the session expects releases the DATA it has built already.
        reply = session.take_ack(data, now)
        if reply is None:
            session.receive(data, now)
            out = session.datagrams_to_send()
            if len(out) != 1 or self._pending:
                if out:
                    self._send_all(out)
                self._rearm()
                return
            reply = out[0]
        try:
            if isinstance(reply, bytes):
                self._send(reply)
            else:
                self._sendmsg(reply)
        except (BlockingIOError, InterruptedError):
            self._pending.append(reply if isinstance(reply, bytes) else b"".join(reply))
            self._want_writable()
        except OSError as exc:
            self.server.log.debug("%stftp send to %s:%d failed: %s", self.prefix, *self.peer, exc)
        # The DATA is on its way: build the next one while the peer handles this one, off the round trip.
        session.prepare_next()
        deadline = session.next_deadline()
        if deadline is None or self._timer is None or self._timer_at > deadline:
            self._arm(deadline)  # else the common case: the armed timer still covers the new deadline

    def _rearm(self) -> None:
        deadline = self.session.next_deadline()
        if deadline is not None and self._timer is not None and self._timer_at <= deadline:
            return  # the armed timer still covers it
        self._arm(deadline)

    def _on_timer(self) -> None:
        self._timer = None
        self.session.handle_timer(self._loop.time())
        self._pump()

    def _pump(self) -> None:
        """Send what the session queued, then re-arm the timer or finish."""
        self._send_all(self.session.datagrams_to_send())
        self.session.prepare_next()
        self._arm(self.session.next_deadline())

    def _send_all(self, out: list[bytes]) -> None:
        if self._pending:  # the send buffer was full: keep the order, the writer callback drains it
            self._pending.extend(out)
            return
        send = self._send
        for i, datagram in enumerate(out):
            try:
                send(datagram)
            except (BlockingIOError, InterruptedError):
                self._pending.extend(out[i:])
                self._want_writable()
                return
            except OSError as exc:
                # An ICMP error from the peer or similar: this datagram is lost, the timer resends.
                self.server.log.debug("%stftp send to %s:%d failed: %s", self.prefix, *self.peer, exc)

    def _arm(self, deadline: float | None) -> None:
        """Re-arm the timer for `deadline`, or finish the transfer once the session has ended."""
        if self._closed:
            return
        if deadline is None:
            if not self._pending:
                self.server._finish(self)
            return
        # Lazy timer: progress only pushes the deadline later, so a handle armed for an earlier time just
        # fires, finds nothing due and re-arms; that is one timer event per timeout period, not per block.
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _want_writable(self) -> None:
        if not self._writer:
            self._writer = True
            self._loop.add_writer(self.sock.fileno(), self._on_writable)

    def _on_writable(self) -> None:
        pending = self._pending
        send = self._send
        while pending:
            try:
                send(pending[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.server.log.debug("%stftp send to %s:%d failed: %s", self.prefix, *self.peer, exc)
            pending.popleft()
        self._writer = False
        unwatch(self._loop, self.sock.fileno(), reader=False, writer=True)
        if self.session.next_deadline() is None:
            self.server._finish(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        fd = self.sock.fileno()
        if fd >= 0:
            unwatch(loop, fd, writer=self._writer)
        self.sock.close()
        self.session.close()


class TftpServer:
    """Read-only TFTP server on one event loop; content comes from a `ContentProvider`."""

    _loop: asyncio.AbstractEventLoop  # the running loop, captured by start()

    def __init__(
        self,
        content: ContentProvider,
        *,
        host: str = "0.0.0.0",
        hosts: Sequence[str] = (),
        port: int = 69,
        log: logging.Logger | None = None,
        describe_peer: Callable[[str], str] | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_sessions_per_peer: int = DEFAULT_MAX_SESSIONS_PER_PEER,
        max_blksize: int = MAX_BLKSIZE,
        max_window: int = 64,
        timeout: float = 1.0,
        retries: int = 5,
        max_timeout: float = MAX_TIMEOUT,
        stall_limit: float = STALL_LIMIT,
    ) -> None:
        """`hosts` (one listener each, all on `port`) replaces `host` when given."""
        self.content = content
        self.hosts = tuple(hosts) or (host,)
        self.host = self.hosts[0]
        self.port = port
        self.log = log or log_default
        self.describe_peer = describe_peer
        self.quota = SessionQuota(max_sessions, max_sessions_per_peer)
        self.max_blksize = max_blksize
        self.max_window = max_window
        self.timeout = timeout
        self.retries = retries
        self.max_timeout = max_timeout
        self.stall_limit = stall_limit
        self.on_complete: Callable[[str, str, int], None] | None = None
        self.on_transfer: Callable[[TransferNote], None] | None = None  # once per transfer: start and end
        self.counters: dict[str, int] = dict.fromkeys(
            ("rrq", "wrq_refused", "completed", "failed", "malformed", "refused", "active", "busy",
             "internal_error", "duplicate_rrq", "stray", "bytes_sent", "retransmits"), 0)
        self._listeners: list[tuple[socket.socket, str]] = []  # (socket, the address it is bound to)
        self._transfers: dict[tuple[str, int], _Transfer] = {}
        self._busy_since_report = 0
        self._busy_report_at = float("-inf")
        self._refusal_log = RepeatGate(time.monotonic)  # a refused request repeated in a loop logs once per 10 s

    @property
    def max_sessions(self) -> int:
        """The cap on transfers running at once, from every peer together."""
        return self.quota.total

    @property
    def address(self) -> tuple[str, int]:
        """The first listener's bound (host, port); useful with port=0."""
        return self.addresses[0]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every listener's bound (host, port)."""
        if not self._listeners:
            raise RuntimeError("server not started")
        return [(name[0], name[1]) for name in (sock.getsockname() for sock, _ in self._listeners)]

    async def start(self) -> None:
        """Bind one listener per address (SO_REUSEADDR, large SO_RCVBUF, packet info) and start serving."""
        self._loop = asyncio.get_running_loop()
        self._raise_fd_limit()
        try:
            for host in self.hosts:
                sock = self._listen(host)
                self._listeners.append((sock, host))
                self._loop.add_reader(sock.fileno(), self._on_request, sock, host)
        except BaseException:
            await self.close()
            raise
        for address in self.addresses:
            self.log.info("tftp listening on %s:%d (read-only)", *address)

    def _listen(self, host: str) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _LISTEN_RCVBUF)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.setblocking(False)
            sock.bind((host, self.port))
        except BaseException:
            sock.close()
            raise
        if self.port == 0:  # the remaining listeners share the port the kernel picked for the first
            self.port = sock.getsockname()[1]
        return sock

    def _raise_fd_limit(self) -> None:
        """Every session holds a socket and possibly an open file (a streamed static file): lift the soft
        RLIMIT_NOFILE (often 1024) towards twice max_sessions."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 2 * self.max_sessions + 256
        if soft != resource.RLIM_INFINITY and soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(want, hard)
            if new > soft:
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
                self.log.debug("tftp: raised the open-file limit from %d to %d", soft, new)

    async def close(self) -> None:
        """Stop the listeners and abandon every transfer in progress."""
        for sock, _ in self._listeners:
            unwatch(self._loop, sock.fileno())
            sock.close()
        self._listeners.clear()
        for transfer in list(self._transfers.values()):
            self._drop(transfer)
        self.counters["active"] = 0

    # -- listener -----------------------------------------------------------------------------------------

    def _on_request(self, sock: socket.socket, host: str) -> None:
        if sock.fileno() < 0:
            return
        info = _IN6_PKTINFO if sock.family == socket.AF_INET6 else IN_PKTINFO
        cmsg_size = socket.CMSG_SPACE(info.size)
        for _ in range(_DRAIN_LIMIT):
            try:
                data, ancdata, _flags, addr = sock.recvmsg(65535, cmsg_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.log.debug("tftp listener recv: %s", exc)
                continue
            peer = (addr[0], addr[1])
            local, ifindex = self._local_address(ancdata, host)
            try:
                self._on_datagram(data, peer, local, ifindex, sock)
            except Exception:  # one request must never take the listener down
                self.counters["internal_error"] += 1
                self.log.exception("tftp: unexpected error handling a request from %s:%d", *peer)

    def _local_address(self, ancdata: list[tuple[int, int, bytes]], host: str) -> tuple[str, int]:
        for level, kind, raw in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and (info := parse_pktinfo([(level, kind, raw)])):
                ifindex, spec_dst, _dst = info
                # spec_dst is the local address routing would use: the unicast destination itself, or the
                # interface address when the request came to a broadcast address.
                return str(spec_dst), ifindex
            if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(raw) >= _IN6_PKTINFO.size:
                dst, ifindex = _IN6_PKTINFO.unpack_from(raw)
                return socket.inet_ntop(socket.AF_INET6, dst), ifindex
        return host, 0

    def _prefix(self, peer: tuple[str, int]) -> str:
        if self.describe_peer is not None:
            try:
                return f"{self.describe_peer(peer[0])} "
            except Exception:
                self.log.exception("tftp: describe_peer(%r) failed", peer[0])
        return f"{peer[0]}:{peer[1]} "

    def _on_datagram(self, data: bytes, peer: tuple[str, int], local: str, ifindex: int,
                     sock: socket.socket) -> None:
        try:
            pkt = parse(data)
        except TftpMalformed as exc:
            self.counters["malformed"] += 1
            self.log.debug("tftp: dropped malformed datagram from %s:%d: %s", peer[0], peer[1], exc)
            return
        if isinstance(pkt, WriteRequest):
            self.counters["wrq_refused"] += 1
            self.log.info("%stftp WRQ %s -> refused (read-only server)", self._prefix(peer),
                          _printable(pkt.filename))
            self._reply(error_datagram(ERR_ACCESS, "read-only server"), peer, local, ifindex, sock)
            return
        if not isinstance(pkt, ReadRequest):
            self.counters["stray"] += 1  # DATA/ACK/ERROR/OACK belong on a session port
            self.log.debug("tftp: dropped stray %s from %s:%d on the listener", type(pkt).__name__, *peer)
            return
        self.counters["rrq"] += 1
        existing = self._transfers.get(peer)
        if existing is not None and existing.filename == pkt.filename:
            # The client retransmitted its RRQ before our first reply reached it; that session answers.
            self.counters["duplicate_rrq"] += 1
            return
        self._start_transfer(pkt, peer, local, ifindex, sock)

    def _start_transfer(self, req: ReadRequest, peer: tuple[str, int], local: str, ifindex: int,
                        listener: socket.socket) -> None:
        old = self._transfers.get(peer)
        if old is not None:  # same client port asking for another file: the old transfer is abandoned
            self._drop(old)
        busy = self.quota.admit(peer[0])
        if busy is not None:
            self._busy(peer, req.filename, busy)
            self._reply(error_datagram(ERR_UNDEFINED, "server busy"), peer, local, ifindex, listener)
            return
        transfer = None
        try:
            transfer = self._open_transfer(req, peer, local, ifindex, listener)
        finally:
            if transfer is None:  # refused or failed before it started: give the slot back
                self.quota.release(peer[0])
        if transfer is not None:
            transfer.start()  # from here the slot is given back when the transfer ends (_finish, _drop)

    def _open_transfer(self, req: ReadRequest, peer: tuple[str, int], local: str, ifindex: int,
                       listener: socket.socket) -> _Transfer | None:
        """Content, session and socket for an admitted RRQ, registered but not started; None if refused."""
        prefix = self._prefix(peer)
        name = _printable(req.filename)
        try:
            content = self.content.get(req.filename, peer)
        except TftpRefusal as refusal:
            self.counters["refused"] += 1
            held = self._refusal_log.admit((peer[0], req.filename))
            if held is not None:
                self.log.info("%stftp RRQ %s -> refused: %s (error %d)%s", prefix, name, refusal.message,
                              refusal.code, f" ({held} more refused since the last report)" if held else "")
            self._reply(error_datagram(refusal.code, refusal.message), peer, local, ifindex, listener)
            if self.on_transfer is not None:
                self.on_transfer(TransferNote("refused", peer[0], req.filename, reason=refusal.message,
                                              code=refusal.code))
            return None
        except Exception:
            self.counters["internal_error"] += 1
            self.log.exception("%stftp RRQ %s -> internal error in content provider", prefix, name)
            self._reply(error_datagram(ERR_UNDEFINED, "internal error"), peer, local, ifindex, listener)
            return None
        try:
            sock = self._session_socket(local, ifindex, peer)
        except OSError as exc:
            close_content(content)
            self.counters["busy"] += 1
            self.log.warning("%stftp RRQ %s -> cannot open a session socket: %s", prefix, name, exc)
            self._reply(error_datagram(ERR_UNDEFINED, "server busy"), peer, local, ifindex, listener)
            return None
        session = ReadSession(content, req, self._loop.time(), max_blksize=self.max_blksize,
                              default_timeout=self.timeout, retries=self.retries, max_window=self.max_window,
                              max_timeout=self.max_timeout, stall_limit=self.stall_limit)
        self._tune_sndbuf(sock, session)
        transfer = _Transfer(self, sock, session, peer, req.filename, prefix)
        opts = " ".join(f"{k}={v}" for k, v in req.options.items())
        self.log.info("%stftp RRQ %s %s%s", prefix, name, req.mode, f" {opts}" if opts else "")
        self._transfers[peer] = transfer
        self.counters["active"] = len(self._transfers)
        if self.on_transfer is not None:
            self.on_transfer(TransferNote("started", peer[0], req.filename, size=session.size,
                                          options=tuple(session.accepted.items())))
        return transfer

    def _busy(self, peer: tuple[str, int], filename: str, why: str) -> None:
        """Count a request refused for lack of capacity; log it, at most once per interval."""
        self.counters["busy"] += 1
        self._busy_since_report += 1
        now = self._loop.time()
        if now >= self._busy_report_at:
            self.log.warning("%stftp RRQ %s -> server busy: %s (%d refused as busy since the last report)",
                             self._prefix(peer), _printable(filename), why, self._busy_since_report)
            self._busy_since_report = 0
            self._busy_report_at = now + _BUSY_REPORT_SECONDS

    def _drop(self, transfer: _Transfer) -> None:
        """Abandon a transfer that has not ended: forget it, give its slot back, close it."""
        if self._transfers.get(transfer.peer) is transfer:
            del self._transfers[transfer.peer]
            self.quota.release(transfer.peer[0])
        transfer.close()
        self.counters["active"] = len(self._transfers)

    def _session_socket(self, local: str, ifindex: int, peer: tuple[str, int]) -> socket.socket:
        """A new TID (RFC 1350 §4): an ephemeral port on the address the client talked to, connected to it."""
        family = socket.AF_INET6 if ":" in local else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if family == socket.AF_INET6:
                scope = ifindex if ipaddress.IPv6Address(local).is_link_local else 0
                sock.bind((local, 0, 0, scope))
                peer_scope = ifindex if ipaddress.IPv6Address(peer[0]).is_link_local else 0
                sock.connect((peer[0], peer[1], 0, peer_scope))
            else:
                sock.bind((local, 0))
                sock.connect(peer)
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def _tune_sndbuf(sock: socket.socket, session: ReadSession) -> None:
        # A full window must fit in the send buffer or it stalls on EAGAIN; the default (~208 KiB) is
        # plenty for blksize 1468 x 64 but not for large blocks.
        need = 2 * session.windowsize * (session.blksize + 64)
        if need > 200_000:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, min(need, 8 * 1024 * 1024))
            except OSError:
                pass

    def _reply(self, datagram: bytes, peer: tuple[str, int], local: str, ifindex: int,
               sock: socket.socket) -> None:
        """Send a one-off ERROR from the listener, sourced from the address the client talked to."""
        if sock.fileno() < 0:
            return
        host = sock.getsockname()[0]
        # A listener bound to one address sends from it anyway; only a wildcard one needs telling.
        wildcard = host in ("", "0.0.0.0", "::")
        ancillary: list[tuple[int, int, bytes]] = []
        if wildcard and sock.family == socket.AF_INET and local != host:
            ancillary += pktinfo_cmsg(0, IPv4Address(local))
        elif wildcard and sock.family == socket.AF_INET6 and local != host:
            spec = socket.inet_pton(socket.AF_INET6, local)
            ancillary.append((socket.IPPROTO_IPV6, IPV6_PKTINFO, _IN6_PKTINFO.pack(spec, ifindex)))
        try:
            sock.sendmsg([datagram], ancillary, 0, peer)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.log.debug("tftp: reply to %s:%d failed: %s", peer[0], peer[1], exc)

    def _finish(self, transfer: _Transfer) -> None:
        if self._transfers.get(transfer.peer) is transfer:
            del self._transfers[transfer.peer]
            self.quota.release(transfer.peer[0])
        transfer.close()
        self.counters["active"] = len(self._transfers)
        session = transfer.session
        elapsed_ms = ((session.finished or self._loop.time()) - session.started) * 1000
        opts = " ".join(f"{k}={v}" for k, v in session.accepted.items())
        what = f"{transfer.prefix}tftp RRQ {_printable(transfer.filename)}{' ' + opts if opts else ''}"
        self.counters["bytes_sent"] += session.bytes_sent
        self.counters["retransmits"] += session.retransmits
        if self.on_transfer is not None:
            self.on_transfer(TransferNote("finished" if session.done else "failed", transfer.peer[0],
                                          transfer.filename, size=session.size, bytes_sent=session.bytes_sent,
                                          seconds=elapsed_ms / 1000, options=tuple(session.accepted.items()),
                                          retransmits=session.retransmits, reason=session.failed or ""))
        if session.done:
            self.counters["completed"] += 1
            extra = f", {session.retransmits} retransmit(s)" if session.retransmits else ""
            self.log.info("%s -> sent %d bytes in %.0f ms%s", what, session.size, elapsed_ms, extra)
            if self.on_complete is not None:
                try:
                    self.on_complete(transfer.peer[0], transfer.filename, session.size)
                except Exception:
                    self.log.exception("tftp: on_complete hook failed")
        else:
            self.counters["failed"] += 1
            self.log.warning("%s -> failed after %d of %d bytes in %.0f ms: %s", what, session.bytes_sent,
                             session.size, elapsed_ms, session.failed)


def main(argv: list[str] | None = None) -> int:
    """`python -m ztp.tftp --root DIR --host ADDR --port N`: serve a directory read-only."""
    parser = argparse.ArgumentParser(prog="python -m ztp.tftp", description=main.__doc__)
    parser.add_argument("--root", type=Path, required=True, help="directory to serve")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=69)
    parser.add_argument("--max-blksize", type=int, default=MAX_BLKSIZE)
    parser.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS)
    parser.add_argument("--max-sessions-per-peer", type=int, default=DEFAULT_MAX_SESSIONS_PER_PEER)
    parser.add_argument("--timeout", type=float, default=1.0, help="default retransmit timeout (s)")
    parser.add_argument("--retries", type=int, default=5)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    async def serve() -> None:
        server = TftpServer(StaticRoot(args.root), host=args.host, port=args.port,
                            max_blksize=args.max_blksize, max_sessions=args.max_sessions,
                            max_sessions_per_peer=args.max_sessions_per_peer,
                            timeout=args.timeout, retries=args.retries)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"listening {server.address[0]}:{server.address[1]}", file=sys.stderr, flush=True)
        await stop.wait()
        await server.close()
        print(f"counters {server.counters}", file=sys.stderr, flush=True)

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
