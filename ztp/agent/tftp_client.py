"""Sans-I/O TFTP read client (RFC 1350, RFC 2347/2348/2349 options, RFC 7440 windowsize).

Fed ``(datagram, source port, now)``; returns datagrams to send (with the port to send them to) and its
next deadline. The first reply fixes the server's transfer ID (RFC 1350 §4); datagrams from any other
port get ERROR 5 and are otherwise ignored. Options are asked for in the RRQ and used only as far as the
server's OACK accepts them (RFC 2347 §2); a server that ignores options gets plain 512-byte lock-step.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from ztp.tftp.packet import (
    ERR_OPTIONS,
    ERR_UNKNOWN_TID,
    Ack,
    Data,
    Error,
    OptionAck,
    ReadRequest,
    TftpMalformed,
    build,
    error_datagram,
    parse,
)

TFTP_PORT = 69
DEFAULT_BLKSIZE = 512  # RFC 1350 §2: without an accepted blksize option
MAX_FILE_SIZE = 256 * 1024 * 1024


class TransferState(enum.Enum):
    """Where a read transfer stands."""

    REQUESTING = "requesting"
    TRANSFERRING = "transferring"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class TftpOptions:
    """What the client asks for and how patient it is (seconds)."""

    blksize: int | None = 1468  # RFC 2348: fills a 1500-byte Ethernet MTU (1500 - 20 IP - 8 UDP - 4 TFTP)
    windowsize: int | None = 8  # RFC 7440
    tsize: bool = True  # RFC 2349
    timeout: float = 1.0
    retries: int = 5
    max_size: int = MAX_FILE_SIZE


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One datagram for the server: to `port` (69 for the request, the server's TID afterwards)."""

    payload: bytes
    port: int


class TftpFailure(Exception):
    """Why a transfer failed: a TFTP ERROR from the server, a timeout, or a protocol violation."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class TftpReadClient:
    """One RRQ transfer; drive with start/receive/handle_timer, drain datagrams_to_send()."""

    def __init__(self, filename: str, options: TftpOptions | None = None) -> None:
        """Prepare a read of `filename` in octet mode."""
        self.filename = filename
        self.options = options or TftpOptions()
        self.state = TransferState.REQUESTING
        self.server_port: int | None = None
        self.blksize = DEFAULT_BLKSIZE
        self.windowsize = 1
        self.tsize: int | None = None
        self.negotiated: dict[str, str] = {}
        self.failure: TftpFailure | None = None
        self.retransmits = 0
        self._chunks: list[bytes] = []
        self._size = 0
        self._last_block = 0  # last in-order block received (16-bit, wraps to 0 after 65535)
        self._in_window = 0
        self._last_sent: Outgoing | None = None
        self._tries = 0
        self._timer: float | None = None
        self._out: deque[Outgoing] = deque()
        self._with_options = True

    # -- public API ------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True when the whole file arrived (and matched tsize when the server announced one)."""
        return self.state is TransferState.DONE

    @property
    def finished(self) -> bool:
        """True when the transfer is over, either way."""
        return self.state in (TransferState.DONE, TransferState.FAILED)

    @property
    def data(self) -> bytes:
        """The bytes received so far."""
        return b"".join(self._chunks)

    def start(self, now: float) -> None:
        """Send the RRQ (RFC 1350 §5, with RFC 2347 options)."""
        self._send(Outgoing(build(self._request()), TFTP_PORT), now)

    def get_timer(self) -> float | None:
        """Absolute time of the next retransmission check, or None when finished."""
        return self._timer

    def datagrams_to_send(self) -> list[Outgoing]:
        """Datagrams produced since the last call."""
        out = list(self._out)
        self._out.clear()
        return out

    def receive(self, datagram: bytes, port: int, now: float) -> None:
        """Feed one datagram that came from the server's address, source UDP port `port`."""
        if self.finished:
            return
        if self.server_port is not None and port != self.server_port:
            # RFC 1350 §4: a packet from a foreign TID gets ERROR 5 and does not disturb the transfer.
            self._out.append(Outgoing(error_datagram(ERR_UNKNOWN_TID, "unknown transfer ID"), port))
            return
        try:
            pkt = parse(datagram)
        except TftpMalformed:
            return
        if isinstance(pkt, Error):
            if (pkt.code == ERR_OPTIONS and self._with_options and self.server_port is None
                    and self._has_options()):
                # RFC 2347 §2: a server refusing the options may be asked again without them.
                self._with_options = False
                self._tries = 0
                self._send(Outgoing(build(self._request()), TFTP_PORT), now)
                return
            self._fail(TftpFailure(f"server error {pkt.code}: {pkt.message}", pkt.code))
            return
        if isinstance(pkt, OptionAck):
            if self.server_port is not None or self.state is not TransferState.REQUESTING:
                return  # a duplicate OACK; our ACK 0 is retransmitted by the timer if needed
            self.server_port = port
            if not self._accept_oack(pkt.options, port):
                return
            self.state = TransferState.TRANSFERRING
            self._tries = 0
            self._send(Outgoing(build(Ack(0)), port), now)
            return
        if isinstance(pkt, Data):
            if self.server_port is None:
                self.server_port = port
                # RFC 2347 §2: DATA instead of an OACK means the server ignored every option.
                self.blksize, self.windowsize, self.tsize = DEFAULT_BLKSIZE, 1, None
                self.state = TransferState.TRANSFERRING
            self._on_data(pkt, port, now)

    def handle_timer(self, now: float) -> None:
        """Retransmit the last datagram after `timeout` of silence; fail after `retries` (RFC 1350 §2)."""
        if self._timer is None or now < self._timer or self.finished:
            return
        if self._tries >= self.options.retries or self._last_sent is None:
            self._fail(TftpFailure(f"timed out after {self._tries} retransmissions"))
            return
        self._tries += 1
        self.retransmits += 1
        self._in_window = 0
        if self.state is TransferState.TRANSFERRING and self.server_port is not None:
            # RFC 7440 §4: on a timeout the receiver acknowledges the last block it got in order.
            self._last_sent = Outgoing(build(Ack(self._last_block)), self.server_port)
        self._out.append(self._last_sent)
        self._timer = now + self.options.timeout

    # -- internals -------------------------------------------------------------------------------------

    def _has_options(self) -> bool:
        o = self.options
        return o.blksize is not None or o.windowsize is not None or o.tsize

    def _request(self) -> ReadRequest:
        opts: dict[str, str] = {}
        if self._with_options:
            o = self.options
            if o.blksize is not None:
                opts["blksize"] = str(o.blksize)
            if o.tsize:
                opts["tsize"] = "0"
            if o.windowsize is not None and o.windowsize > 1:
                opts["windowsize"] = str(o.windowsize)
        return ReadRequest(self.filename, "octet", opts)

    def _accept_oack(self, options: dict[str, str], port: int) -> bool:
        asked = self._request().options
        for name, value in options.items():
            if name not in asked:
                return self._abort(port, f"server acknowledged option {name!r} we did not ask for")
            try:
                number = int(value)
            except ValueError:
                return self._abort(port, f"option {name}={value!r} is not a number")
            if name == "blksize":
                if not 8 <= number <= int(asked["blksize"]):  # RFC 2348: 8..what we asked
                    return self._abort(port, f"blksize {number} outside 8..{asked['blksize']}")
                self.blksize = number
            elif name == "windowsize":
                if not 1 <= number <= int(asked["windowsize"]):  # RFC 7440 §3
                    return self._abort(port, f"windowsize {number} outside 1..{asked['windowsize']}")
                self.windowsize = number
            elif name == "tsize":
                if number < 0:
                    return self._abort(port, f"tsize {number} is negative")
                if number > self.options.max_size:
                    return self._abort(port, f"tsize {number} exceeds the {self.options.max_size}-byte limit")
                self.tsize = number
            self.negotiated[name] = value
        return True

    def _abort(self, port: int, reason: str) -> bool:
        # RFC 2347 §2: the client rejects an unacceptable OACK with ERROR 8.
        self._out.append(Outgoing(error_datagram(ERR_OPTIONS, reason), port))
        self._fail(TftpFailure(reason, ERR_OPTIONS))
        return False

    def _on_data(self, pkt: Data, port: int, now: float) -> None:
        expected = (self._last_block + 1) & 0xFFFF
        if pkt.block != expected:
            if self.windowsize == 1 and pkt.block == self._last_block:
                # Our ACK was lost: acknowledge again (answering a duplicate DATA is safe, RFC 1350 §2).
                self._send(Outgoing(build(Ack(self._last_block)), port), now)
            elif self.windowsize > 1 and self._in_window:
                # RFC 7440 §4: a gap in the window; ACK the last in-order block so the sender restarts there.
                self._in_window = 0
                self._send(Outgoing(build(Ack(self._last_block)), port), now)
            return
        if len(pkt.data) > self.blksize:
            self._abort_transfer(port, f"block {pkt.block} has {len(pkt.data)} bytes, blksize is {self.blksize}")
            return
        self._chunks.append(pkt.data)
        self._size += len(pkt.data)
        self._last_block = pkt.block
        self._tries = 0
        if self._size > self.options.max_size or (self.tsize is not None and self._size > self.tsize):
            self._abort_transfer(port, f"more than {self.tsize or self.options.max_size} bytes received")
            return
        last = len(pkt.data) < self.blksize
        self._in_window += 1
        if last or self._in_window >= self.windowsize:
            self._in_window = 0
            self._send(Outgoing(build(Ack(pkt.block)), port), now)
        else:
            self._timer = now + self.options.timeout
        if last:
            if self.tsize is not None and self._size != self.tsize:
                self._fail(TftpFailure(f"received {self._size} bytes but tsize announced {self.tsize}"))
                return
            self.state = TransferState.DONE
            self._timer = None

    def _abort_transfer(self, port: int, reason: str) -> None:
        self._out.append(Outgoing(error_datagram(0, reason), port))
        self._fail(TftpFailure(reason))

    def _send(self, out: Outgoing, now: float) -> None:
        self._out.append(out)
        self._last_sent = out
        self._timer = now + self.options.timeout

    def _fail(self, failure: TftpFailure) -> None:
        self.failure = failure
        self.state = TransferState.FAILED
        self._timer = None
