"""One read transfer as a sans-I/O state machine (RFC 1350, RFC 2347/2348/2349, RFC 7440).

The session is fed datagrams from its peer and the current time, and is asked for the datagrams to send
and its next deadline; it never touches a socket or the clock. Blocks are numbered internally from 1
without bound and put on the wire modulo 65536 (rollover to 0, as tftp-hpa, curl and atftp expect).

Lock-step has a hot path for the I/O layer: `prepare_next` builds the next DATA while the peer is busy
with the last one, and `take_ack` releases it for exactly the ACK of the block in flight; every other
datagram goes through `receive`, and the bytes on the wire are the same either way.

Retransmission is driven only by the timer: a duplicate ACK is ignored, so a delayed ACK can never
double the traffic (the Sorcerer's Apprentice bug, RFC 1123 §4.2.3.1). With a window (RFC 7440 §4) the
client ACKs the last in-order block it holds, and the server resends the window from the block after it.

Cost is bounded whatever the peer asks: a `timeout` option above `max_timeout` is left out of the OACK
(RFC 2349 §2 lets the server only echo the value or decline it), each retransmission timeout is capped at
`max_timeout`, and a session that has not moved for `stall_limit` seconds fails, so a stalled transfer
ends within about a minute however many retries and whatever backoff are configured.
"""

from __future__ import annotations

from typing import Final

from ztp.tftp.content import Content, FileContent
from ztp.tftp.packet import (
    ACK,
    DATA,
    ERR_ILLEGAL_OP,
    ERR_UNDEFINED,
    Ack,
    Error,
    OptionAck,
    ReadRequest,
    TftpMalformed,
    build,
    data_datagram,
    error_datagram,
    parse,
)

MIN_BLKSIZE: Final = 8  # RFC 2348 §2
MAX_BLKSIZE: Final = 65464  # RFC 2348 §2
DEFAULT_BLKSIZE: Final = 512  # RFC 1350 §2
MAX_WINDOW: Final = 65535  # RFC 7440 §3
MAX_TIMEOUT: Final = 10.0  # seconds: the largest `timeout` option granted and the ceiling of every backoff step
STALL_LIMIT: Final = 60.0  # seconds without progress after which a session is abandoned
GATHER_MIN: Final = 4096  # blksize from which a prepared block is (header, payload) for sendmsg, not one copy

Gathered = tuple[bytes, memoryview]
"""A DATA datagram as its 4-byte header and a view of its payload, for a gathering send (``sendmsg``)."""


def _int_option(value: str) -> int | None:
    """A decimal option value, or None for anything RFC 2347 §2 says to ignore (not an error)."""
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        return None
    return int(value)


def netascii(data: bytes) -> bytes:
    """RFC 1350 §5 / RFC 764 netascii: LF -> CR LF, bare CR -> CR NUL."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


class ReadSession:
    """One RRQ transfer: option negotiation, windowed DATA, ACK tracking, timer-driven retransmission.

    Finishes as `done` when the final (short or empty) block is acknowledged, or `failed` (a reason) after
    `retries` timeouts in a row, `stall_limit` seconds without progress, an ERROR from the peer or a read
    error of a `FileContent`. `data` is the whole content or a `FileContent` read block by block; `close`
    releases it.
    """

    def __init__(
        self,
        data: Content,
        request: ReadRequest,
        now: float,
        *,
        max_blksize: int = MAX_BLKSIZE,
        default_timeout: float = 1.0,
        retries: int = 5,
        max_window: int = 64,
        backoff: float = 1.0,
        max_timeout: float = MAX_TIMEOUT,
        stall_limit: float = STALL_LIMIT,
    ) -> None:
        self.request = request
        self._failed: str | None = None
        self._done = False
        self.retransmits = 0
        self.ignored = 0  # datagrams from the peer that did not move the transfer
        self.accepted: dict[str, str] = {}  # the options granted in the OACK
        self.started = now
        self.finished: float | None = None
        self._out: list[bytes] = []
        self._retries = max(0, retries)
        self._backoff = max(1.0, backoff)
        self._tries = 0
        self._max_timeout = max(1.0, max_timeout)
        self._stall_limit = max(self._max_timeout, stall_limit)
        self._progress_at = now  # the last time the peer moved the transfer on
        self._file: FileContent | None = None

        if isinstance(data, FileContent):
            self._file = data
            if request.mode != "octet":
                # netascii changes the size, so tsize and block offsets would need the whole file first;
                # streamed (large) files are binary images in practice.
                self._fail(f"mode {request.mode!r} for a streamed file", ERR_ILLEGAL_OP,
                           f"mode {request.mode!r} not supported for files this large; use octet")
            self._data = memoryview(b"")
            self.size = data.size if self.failed is None else 0  # mypy: _failed narrowed
        else:
            if request.mode == "netascii":
                data = netascii(data)
            elif request.mode != "octet":
                # RFC 1350 §5 mail mode is obsolete; anything else is not a mode.
                self._fail(f"unsupported mode {request.mode!r}", ERR_ILLEGAL_OP,
                           f"mode {request.mode!r} not supported")
                data = b""
            self._data = memoryview(data)
            self.size = len(data)

        self.blksize = DEFAULT_BLKSIZE
        self.windowsize = 1
        self.timeout = min(default_timeout, self._max_timeout)
        self._negotiate(request.options, max(MIN_BLKSIZE, min(max_blksize, MAX_BLKSIZE)),
                        max(1, min(max_window, MAX_WINDOW)))

        # Every transfer ends with a block shorter than blksize, possibly empty (RFC 1350 §6).
        self.total_blocks = self.size // self.blksize + 1
        self._acked = 0  # highest block (absolute) the peer has acknowledged
        self._sent = 0  # highest block (absolute) put on the wire so far
        self._oack_pending = bool(self.accepted)
        # Lock-step read-ahead (`prepare_next`): the DATA datagram of block `_held_block`, built while the
        # peer was still working on the previous one, and the exact ACK datagram that releases it
        # (`take_ack`), so that ACK is answered with one comparison: no parse, read or copy.
        self._held: bytes | Gathered = b""
        self._held_block = 0
        self._release: bytes | None = None
        self._deadline: float | None = None
        self._rto = self.timeout  # the current retransmission timeout, backed off per try
        if self.failed is None:
            self._transmit(now)

    # -- negotiation --------------------------------------------------------------------------------------

    def _negotiate(self, options: dict[str, str], max_blksize: int, max_window: int) -> None:
        """RFC 2347 §2: grant what we understand; an unknown option or unusable value is just left out."""
        if "blksize" in options:  # RFC 2348 §2: the server may answer with a smaller value
            value = _int_option(options["blksize"])
            if value is not None and value >= MIN_BLKSIZE:
                self.blksize = min(value, max_blksize)
                self.accepted["blksize"] = str(self.blksize)
        if "timeout" in options:  # RFC 2349 §2: must be echoed unchanged, or left out
            value = _int_option(options["timeout"])
            # Values the RFC allows (up to 255 s) but that would let one peer pin a session for minutes are
            # declined by leaving the option out: the client then keeps its own default timeout.
            if value is not None and 1 <= value <= min(255, self._max_timeout):
                self.timeout = float(value)
                self.accepted["timeout"] = str(value)
        if "tsize" in options:  # RFC 2349 §4: a reader sends 0, the server replies with the size
            value = _int_option(options["tsize"])
            # curl (lib/tftp.c) aborts on "tsize 0" in an OACK, so an empty file leaves the option out,
            # which RFC 2347 §2 allows; the client then just sees the empty final block.
            if value is not None and self.size > 0:
                self.accepted["tsize"] = str(self.size)
        if "windowsize" in options:  # RFC 7440 §3: the server may answer with a smaller value
            value = _int_option(options["windowsize"])
            if value is not None and value >= 1:
                self.windowsize = min(value, max_window)
                self.accepted["windowsize"] = str(self.windowsize)

    # -- driving ------------------------------------------------------------------------------------------

    def receive(self, datagram: bytes, now: float) -> None:
        """Feed one datagram from the peer's TID (the I/O layer keeps other TIDs away, RFC 1350 §4)."""
        if self._done or self._failed is not None:
            return
        if len(datagram) == 4 and datagram[:2] == b"\0\4":  # the hot path: a bare ACK
            self._on_ack((datagram[2] << 8) | datagram[3], now)
            return
        try:
            pkt = parse(datagram)
        except TftpMalformed:
            # A garbled datagram from the right TID should not kill a transfer the timer can still save.
            self.ignored += 1
            return
        if isinstance(pkt, Ack):
            self._on_ack(pkt.block, now)
        elif isinstance(pkt, Error):
            self._fail(f"peer sent error {pkt.code}: {pkt.message}")
        else:
            self.ignored += 1

    def _on_ack(self, wire_block: int, now: float) -> None:
        if self._oack_pending:
            if wire_block != 0:  # RFC 2347 §2: the OACK is answered by ACK 0, anything else is stale
                self.ignored += 1
                return
            self._oack_pending = False
            self._tries = 0
            self._rto = self.timeout
            self._progress_at = now
            self._transmit(now)
            return
        # Map the 16-bit number onto the blocks in flight; the window is far smaller than 65536, so the
        # match is unique across rollover.
        acked = self._acked
        block = acked + ((wire_block - acked) & 0xFFFF)
        if block <= acked or block > self._sent:
            self.ignored += 1  # duplicate or stale: never retransmit on it (Sorcerer's Apprentice)
            return
        self._acked = block
        self._progress_at = now
        if self._tries:
            self._tries = 0
            self._rto = self.timeout
        if block >= self.total_blocks:
            self._done = True
            self.finished = now
            self._deadline = None
            self._held, self._held_block, self._release = b"", 0, None
            return
        self._transmit(now)

    def _transmit(self, now: float) -> None:
        """(Re)send what the peer is missing: the OACK, or the window after the last ACKed block."""
        self._release = None  # what it releases is re-established by prepare_next
        if self._oack_pending:
            self._out.append(build(OptionAck(self.accepted)))
        elif self.windowsize == 1:  # lock-step, the common case: one block, no range object
            block = self._acked + 1
            if block == self._held_block:
                held = self._held
                datagram = held if isinstance(held, bytes) else b"".join(held)
            else:
                datagram = self._datagram(block)
                if not datagram:
                    return  # the read failed: the session has failed
            self._out.append(datagram)
            if block > self._sent:
                self._sent = block
        elif not self._transmit_window():
            return
        # Never wait past the stall limit: a peer that stopped answering costs at most that long.
        # (Conditional expression, not min(): this runs once per block.)
        deadline = now + self._rto
        ceiling = self._progress_at + self._stall_limit
        self._deadline = deadline if deadline < ceiling else ceiling

    def _datagram(self, block: int) -> bytes:
        """The DATA datagram of `block` (absolute, 1-based); b"" after failing the session on a read error."""
        bs = self.blksize
        off = (block - 1) * bs
        if self._file is None:
            return data_datagram(block, self._data[off:off + bs])
        try:
            return data_datagram(block, self._file.read(off, bs))
        except OSError as exc:
            self._fail(f"read error: {exc}", ERR_UNDEFINED, "read error")
            return b""

    def prepare_next(self) -> None:
        """Lock-step read-ahead: build the block the next ACK will ask for, while the peer is busy with the
        one just sent, so `take_ack` can answer that ACK with no parse, read or copy on the round trip.
        Optional; call it once the datagrams to send have been sent. A no-op for windows, before the OACK
        is ACKed, at the end, and after a read error (the ACK then goes through `receive`, which reads
        again and fails the session if the error persists)."""
        block = self._sent + 1
        if (block != self._acked + 2 or self.windowsize != 1 or self._oack_pending or block > self.total_blocks
                or self._done or self._failed is not None):
            return
        if block != self._held_block:
            bs = self.blksize
            off = (block - 1) * bs
            try:
                payload = self._data[off:off + bs] if self._file is None else self._file.read(off, bs)
            except OSError:
                return
            # The header inline (not data_datagram): this runs once per block; int.to_bytes, which the
            # compiled build calls natively, where a struct method is a generic call. Large blocks stay a
            # view of the content (bytes, immutable) next to their header: a gathering send copies them
            # once, in the kernel, instead of once here and once there (measured: the copy of a 64 KiB
            # block was most of the user-space work per block at blksize 65464).
            head = (DATA << 16 | block & 0xFFFF).to_bytes(4, "big")
            self._held = head + payload if bs < GATHER_MIN else (head, payload)
            self._held_block = block
        self._release = (ACK << 16 | (block - 1) & 0xFFFF).to_bytes(4, "big")

    def take_ack(self, datagram: bytes, now: float) -> bytes | Gathered | None:
        """The lock-step hot path: when `datagram` is exactly the ACK of the block in flight and
        `prepare_next` has built the next block, the session moves on and returns that DATA datagram to
        send (it is not queued in `datagrams_to_send`): bytes, or from blksize `GATHER_MIN` on a
        (header, payload) pair to send with one gathering ``sendmsg``. Otherwise nothing changes and the
        result is None: feed the datagram to `receive`."""
        if datagram != self._release:
            return None
        self._release = None
        block = self._held_block
        self._acked = block - 1
        self._sent = block
        self._progress_at = now
        if self._tries:
            self._tries = 0
            self._rto = self.timeout
        deadline = now + self._rto
        ceiling = now + self._stall_limit
        self._deadline = deadline if deadline < ceiling else ceiling
        return self._held

    def _transmit_window(self) -> bool:
        """Queue the window after the last ACKed block (one read per window from a file); False if the
        read failed (the session has failed)."""
        acked = self._acked
        bs = self.blksize
        last = acked + self.windowsize
        if last > self.total_blocks:
            last = self.total_blocks
        if self._file is not None:
            try:
                chunk = self._file.read(acked * bs, (last - acked) * bs)
            except OSError as exc:
                self._fail(f"read error: {exc}", ERR_UNDEFINED, "read error")
                return False
            base = acked * bs
        else:
            chunk = self._data
            base = 0
        out = self._out
        off = acked * bs - base
        for block in range(acked + 1, last + 1):
            out.append(data_datagram(block, chunk[off:off + bs]))
            off += bs
        if last > self._sent:
            self._sent = last
        return True

    def datagrams_to_send(self) -> list[bytes]:
        """The datagrams queued since the last call, in order; the queue is emptied."""
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        """When `handle_timer` should next be called, or None once the session has ended."""
        return self._deadline  # cleared when the session ends

    def handle_timer(self, now: float) -> None:
        """Retransmit if the deadline has passed, or fail after `retries` consecutive timeouts."""
        if self._deadline is None or now < self._deadline or self.done or self.failed is not None:
            return
        stalled = now - self._progress_at >= self._stall_limit
        if self._tries >= self._retries or stalled:
            waiting = "ACK of OACK" if self._oack_pending else f"ACK of block {self._acked + 1}"
            why = f" ({now - self._progress_at:.0f} s without progress)" if stalled else ""
            self._fail(f"timeout waiting for {waiting} after {self._tries} retransmission(s){why}")
            return
        self._tries += 1
        self.retransmits += 1
        self._rto = min(self.timeout * (self._backoff ** self._tries), self._max_timeout)
        self._transmit(now)

    def close(self) -> None:
        """Release the content (a streamed file's descriptor); the session sends nothing more."""
        if self._file is not None:
            self._file.close()
        self._held, self._held_block, self._release = b"", 0, None
        if not self._done and self._failed is None:
            self._failed = "closed"
        self._deadline = None

    def _fail(self, reason: str, code: int | None = None, message: str = "") -> None:
        self._failed = reason
        self._deadline = None
        self._release = None
        if code is not None:
            self._out.append(error_datagram(code, message))

    @property
    def done(self) -> bool:
        """True once the final block has been acknowledged."""
        return self._done

    @property
    def failed(self) -> str | None:
        """Why the transfer was abandoned (timeout, peer ERROR, bad mode), or None."""
        return self._failed

    @property
    def bytes_sent(self) -> int:
        """Payload bytes the peer has acknowledged."""
        if self._done:
            return self.size
        sent = self._acked * self.blksize
        return sent if sent < self.size else self.size

    @property
    def acked_blocks(self) -> int:
        """Blocks acknowledged so far (absolute count, not the 16-bit wire number)."""
        return self._acked
