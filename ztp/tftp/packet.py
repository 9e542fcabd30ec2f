"""TFTP wire codec (RFC 1350 §5, RFC 2347 §2 options, OACK): pure functions over bytes.

`parse` turns one datagram into a frozen dataclass and raises `TftpMalformed` (with the offset) for
anything that is not a well-formed packet. `build` is its inverse. Filenames are decoded as UTF-8 with
``surrogateescape`` so any byte sequence round-trips and non-ASCII names never crash the server.
Option names are case-insensitive (RFC 2347 §2) and are lower-cased here; option *values* stay strings,
because deciding that ``blksize=abc`` is unusable (and ignoring it) is negotiation, not parsing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

RRQ: Final = 1
WRQ: Final = 2
DATA: Final = 3
ACK: Final = 4
ERROR: Final = 5
OACK: Final = 6

# RFC 1350 §5 error codes, plus RFC 2347 §2 code 8 (option negotiation refused).
ERR_UNDEFINED: Final = 0
ERR_NOT_FOUND: Final = 1
ERR_ACCESS: Final = 2
ERR_DISK_FULL: Final = 3
ERR_ILLEGAL_OP: Final = 4
ERR_UNKNOWN_TID: Final = 5
ERR_EXISTS: Final = 6
ERR_NO_USER: Final = 7
ERR_OPTIONS: Final = 8

_HEADER = struct.Struct("!HH")
_OPCODE = struct.Struct("!H")


class TftpMalformed(ValueError):
    """A datagram that is not a valid TFTP packet; the message names the problem and its byte offset."""


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """RRQ (RFC 1350 §5): filename, transfer mode (lower-cased) and RFC 2347 options (names lower-cased)."""

    filename: str
    mode: str = "octet"
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """WRQ (RFC 1350 §5); parsed only so the server can refuse it clearly."""

    filename: str
    mode: str = "octet"
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Data:
    """DATA (RFC 1350 §5): 16-bit block number and up to blksize bytes of payload."""

    block: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Ack:
    """ACK (RFC 1350 §5); block 0 acknowledges an OACK (RFC 2347 §2)."""

    block: int


@dataclass(frozen=True, slots=True)
class Error:
    """ERROR (RFC 1350 §5): an error code and a human-readable message."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class OptionAck:
    """OACK (RFC 2347 §2): the options the server accepted, with their negotiated values."""

    options: dict[str, str]


Packet = ReadRequest | WriteRequest | Data | Ack | Error | OptionAck


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _strings(data: bytes, start: int) -> list[tuple[int, bytes]]:
    """Split NUL-terminated strings from `start`; each item is (offset, raw bytes)."""
    out: list[tuple[int, bytes]] = []
    pos = start
    end = len(data)
    while pos < end:
        nul = data.find(b"\0", pos)
        if nul < 0:
            raise TftpMalformed(f"string at offset {pos} is not NUL-terminated")
        out.append((pos, data[pos:nul]))
        pos = nul + 1
    return out


def _options(items: list[tuple[int, bytes]]) -> dict[str, str]:
    # Some firmware pads requests with extra NULs; trailing empty strings carry no option.
    while items and not items[-1][1]:
        items.pop()
    if len(items) % 2:
        off, raw = items[-1]
        raise TftpMalformed(f"option {raw[:32]!r} at offset {off} has no value")
    options: dict[str, str] = {}
    for i in range(0, len(items), 2):
        name = _decode(items[i][1]).lower()
        # RFC 2347 does not define duplicates; the first occurrence wins so a later one cannot override.
        options.setdefault(name, _decode(items[i + 1][1]))
    return options


def _parse_request(data: bytes, opcode: int) -> ReadRequest | WriteRequest:
    items = _strings(data, 2)
    if len(items) < 2:
        raise TftpMalformed(f"request needs filename and mode, got {len(items)} string(s) ending at offset "
                            f"{len(data)}")
    (name_off, name), (mode_off, mode) = items[0], items[1]
    if not name:
        raise TftpMalformed(f"empty filename at offset {name_off}")
    if not mode:
        raise TftpMalformed(f"empty mode at offset {mode_off}")
    cls = ReadRequest if opcode == RRQ else WriteRequest
    return cls(_decode(name), mode.decode("latin-1").lower(), _options(items[2:]))


def parse(data: bytes) -> Packet:
    """Decode one TFTP datagram (RFC 1350 §5, RFC 2347 §2); raise `TftpMalformed` if it is not valid."""
    if len(data) < 2:
        raise TftpMalformed(f"datagram of {len(data)} byte(s) is shorter than the 2-byte opcode at offset 0")
    (opcode,) = _OPCODE.unpack_from(data, 0)
    if opcode in (RRQ, WRQ):
        return _parse_request(data, opcode)
    if opcode in (DATA, ACK, ERROR) and len(data) < 4:
        raise TftpMalformed(f"opcode {opcode} needs a 2-byte field at offset 2, "
                            f"datagram has {len(data)} bytes")
    if opcode == DATA:
        return Data(_HEADER.unpack_from(data, 0)[1], data[4:])
    if opcode == ACK:
        # Trailing bytes after the block number are tolerated: some clients pad small datagrams.
        return Ack(_HEADER.unpack_from(data, 0)[1])
    if opcode == ERROR:
        code = _HEADER.unpack_from(data, 0)[1]
        raw = data[4:]
        nul = raw.find(b"\0")
        # A missing terminator is tolerated: the error ends the transfer either way, keep the text.
        message = (raw if nul < 0 else raw[:nul]).decode("utf-8", "replace")
        return Error(code, message)
    if opcode == OACK:
        return OptionAck(_options(_strings(data, 2)))
    raise TftpMalformed(f"unknown opcode {opcode} at offset 0")


def build(pkt: Packet) -> bytes:
    """Encode a packet dataclass into its wire form (RFC 1350 §5, RFC 2347 §2)."""
    if isinstance(pkt, Data):
        return _HEADER.pack(DATA, pkt.block & 0xFFFF) + pkt.data
    if isinstance(pkt, Ack):
        return _HEADER.pack(ACK, pkt.block & 0xFFFF)
    if isinstance(pkt, Error):
        return error_datagram(pkt.code, pkt.message)
    if isinstance(pkt, OptionAck):
        return _OPCODE.pack(OACK) + _pack_options(pkt.options)
    if isinstance(pkt, ReadRequest | WriteRequest):
        opcode = RRQ if isinstance(pkt, ReadRequest) else WRQ
        return (_OPCODE.pack(opcode) + _encode(pkt.filename) + b"\0" + pkt.mode.encode("latin-1") + b"\0"
                + _pack_options(pkt.options))
    raise TypeError(f"not a TFTP packet: {pkt!r}")


def _pack_options(options: dict[str, str]) -> bytes:
    return b"".join(_encode(k) + b"\0" + _encode(v) + b"\0" for k, v in options.items())


def data_datagram(block: int, payload: bytes | memoryview) -> bytes:
    """DATA datagram for the hot send path, without building a dataclass (RFC 1350 §5)."""
    return _HEADER.pack(DATA, block & 0xFFFF) + payload


def ack_datagram(block: int) -> bytes:
    """ACK datagram (RFC 1350 §5) of `block` modulo 65536, without building a dataclass."""
    return _HEADER.pack(ACK, block & 0xFFFF)


def error_datagram(code: int, message: str) -> bytes:
    """ERROR datagram (RFC 1350 §5) for refusals; the message is UTF-8 and NUL-terminated."""
    text = message.replace("\0", " ").encode("utf-8", "replace")
    return _HEADER.pack(ERROR, code & 0xFFFF) + text + b"\0"
