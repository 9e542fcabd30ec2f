"""BOOTP/DHCP message codec (RFC 951, RFC 2131 §2, RFC 2132, RFC 3396): pure functions over bytes."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import Final

from ztp.bounded import make_room
from ztp.ipkey import ip_key

BOOTREQUEST: Final = 1
BOOTREPLY: Final = 2

DISCOVER: Final = 1
OFFER: Final = 2
REQUEST: Final = 3
DECLINE: Final = 4
ACK: Final = 5
NAK: Final = 6
RELEASE: Final = 7
INFORM: Final = 8

MESSAGE_TYPE_NAMES: Final = {
    DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE",
    ACK: "ACK", NAK: "NAK", RELEASE: "RELEASE", INFORM: "INFORM",
}

OPT_PAD: Final = 0
OPT_END: Final = 255
OPT_OVERLOAD: Final = 52
OPT_MESSAGE_TYPE: Final = 53
_OPT_SERVER_ID: Final = 54

MAGIC_COOKIE: Final = b"\x63\x82\x53\x63"
BROADCAST_FLAG: Final = 0x8000
ZERO_IP: Final = IPv4Address(0)

# The four address fields (ciaddr, yiaddr, siaddr, giaddr) as integers: what IPv4Address holds.
_HEADER = struct.Struct("!BBBBIHHIIII16s64s128s")
HEADER_LEN: Final = _HEADER.size  # 236
MIN_REPLY_LEN: Final = 300  # RFC 1542 §2.1: relays may drop shorter BOOTP messages
SNAME_LEN: Final = 64
FILE_LEN: Final = 128
OVERLOAD_FILE: Final = 1
OVERLOAD_SNAME: Final = 2


class MalformedPacket(ValueError):
    """A datagram that is not a well-formed BOOTP/DHCP message; says what was wrong and at which offset."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} at offset {offset}")
        self.reason = reason
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Overload:
    """Which options build() carries in the `file` and `sname` fields instead of the options field
    (RFC 2132 §9.3 option overload). Each option named here goes whole into that field (RFC 2131 §4.1)."""

    file: frozenset[int] = frozenset()
    sname: frozenset[int] = frozenset()


# Not frozen, unlike the other codec types: one is built for every datagram and every reply, and a frozen
# dataclass's __init__ (object.__setattr__ per field, 16 fields) costs about 4x a plain one. Treat packets as
# values all the same: nothing mutates one; with_options()/dataclasses.replace() make changed copies.
# __init__ is spelled out (init=False): compiled (setup.py's HOT build, mypyc) it stores the fields directly
# instead of calling the interpreted __init__ dataclasses generates (callgrind: 8,000 -> 330 instructions).
@dataclass(slots=True, init=False)
class DhcpPacket:
    """One BOOTP/DHCP message. `options` keeps wire order; repeated options are already concatenated."""

    op: int
    xid: int
    chaddr: bytes
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = ZERO_IP
    yiaddr: IPv4Address = ZERO_IP
    siaddr: IPv4Address = ZERO_IP
    giaddr: IPv4Address = ZERO_IP
    sname: bytes = b""
    file: bytes = b""
    options: dict[int, bytes] = field(default_factory=dict)
    bootp: bool = False  # no magic cookie / no options at all: a plain RFC 951 BOOTP message
    # Wire layout only, not content: where build() puts options (ztp.dhcp.fit decides it). parse() never sets
    # it, as it merges file and sname options into `options`; left out of == so parse(build(x)) == x holds.
    overload: Overload | None = field(default=None, compare=False)

    def __init__(self, op: int, xid: int, chaddr: bytes, htype: int = 1, hlen: int = 6, hops: int = 0,
                 secs: int = 0, flags: int = 0, ciaddr: IPv4Address = ZERO_IP, yiaddr: IPv4Address = ZERO_IP,
                 siaddr: IPv4Address = ZERO_IP, giaddr: IPv4Address = ZERO_IP, sname: bytes = b"", file: bytes = b"",
                 options: dict[int, bytes] | None = None, bootp: bool = False,
                 overload: Overload | None = None) -> None:
        self.op = op
        self.xid = xid
        self.chaddr = chaddr
        self.htype = htype
        self.hlen = hlen
        self.hops = hops
        self.secs = secs
        self.flags = flags
        self.ciaddr = ciaddr
        self.yiaddr = yiaddr
        self.siaddr = siaddr
        self.giaddr = giaddr
        self.sname = sname
        self.file = file
        self.options = {} if options is None else options
        self.bootp = bootp
        self.overload = overload

    @property
    def mac(self) -> str:
        """Hardware address as lowercase colon-separated hex (the device key)."""
        return self.chaddr[: min(self.hlen, 16)].hex(":")

    @property
    def message_type(self) -> int | None:
        """Option 53, or None for BOOTP."""
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value and len(value) == 1 else None

    @property
    def broadcast(self) -> bool:
        """The client asked for broadcast replies (RFC 2131 §4.1)."""
        return bool(self.flags & BROADCAST_FLAG)

    def option_ip(self, code: int) -> IPv4Address | None:
        """An option carrying exactly one IPv4 address, or None."""
        value = self.options.get(code)
        return _address(int.from_bytes(value, "big")) if value is not None and len(value) == 4 else None

    def with_options(self, options: dict[int, bytes]) -> DhcpPacket:
        """A copy with another option map."""
        return replace(self, options=options)


def _cstring(raw: bytes) -> bytes:
    # sname and file are empty (all NUL) in nearly every request: no split for those.
    return b"" if not raw or raw[0] == 0 else raw.split(b"\0", 1)[0]


def _parse_options(data: bytes, start: int, end: int, into: dict[int, bytes]) -> None:
    """Walk one TLV area; repeated codes are concatenated (RFC 3396 §5)."""
    i = start
    while i < end:
        code = data[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            return
        if i + 1 >= end:
            raise MalformedPacket(f"option {code} has no length byte", i)
        length = data[i + 1]
        if i + 2 + length > end:
            raise MalformedPacket(f"option {code} length {length} runs past the end", i)
        value = data[i + 2 : i + 2 + length]
        previous = into.get(code)
        into[code] = value if previous is None else previous + value
        i += 2 + length
    # A missing END is tolerated: many ROMs omit it and the data is otherwise well formed.


_ADDRESSES: Final[dict[int, IPv4Address]] = {}
_ADDRESSES_MAX: Final = 1024


def _address(value: int) -> IPv4Address:
    # Building an IPv4Address costs more than the rest of the header: most of a request's four address
    # fields are zero, and giaddr is one of a few relays, so share the objects, by the integer (bounded for
    # ciaddr's variety: the oldest go first). An lru_cache keyed by the 4 bytes took 1,100 instructions a
    # field, compiled (a key tuple, the bytes' hash, the recency list; issue 14).
    if value == 0:
        return ZERO_IP
    address = _ADDRESSES.get(value)
    if address is None:
        make_room(_ADDRESSES, _ADDRESSES_MAX)
        address = _ADDRESSES[value] = IPv4Address(value)
    return address


def parse(data: bytes) -> DhcpPacket:
    """Decode a BOOTP/DHCP datagram. Raises MalformedPacket."""
    if len(data) < HEADER_LEN:
        raise MalformedPacket(f"{len(data)} bytes is shorter than the {HEADER_LEN}-byte BOOTP header", 0)
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
     file) = _HEADER.unpack_from(data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedPacket(f"op {op} is neither BOOTREQUEST nor BOOTREPLY", 0)
    if hlen > 16:
        raise MalformedPacket(f"hlen {hlen} exceeds the 16-byte chaddr", 2)
    options: dict[int, bytes] = {}
    bootp = True
    # RFC 951 clients may leave the 64-byte vend area zeroed: that is BOOTP without options, not an error.
    if len(data) >= HEADER_LEN + 4 and data[HEADER_LEN : HEADER_LEN + 4] != bytes(4):
        if data[HEADER_LEN : HEADER_LEN + 4] != MAGIC_COOKIE:
            raise MalformedPacket("bad magic cookie", HEADER_LEN)
        bootp = False
        _parse_options(data, HEADER_LEN + 4, len(data), options)
        overload = options.get(OPT_OVERLOAD)
        if overload:
            # RFC 2132 §9.3: file is read before sname.
            if overload[0] & 1:
                _parse_options(data, 108, 236, options)
                file = b""
            if overload[0] & 2:
                _parse_options(data, 44, 108, options)
                sname = b""
            options.pop(OPT_OVERLOAD, None)
    return DhcpPacket(
        op=op, htype=htype, hlen=hlen, hops=hops, xid=xid, secs=secs, flags=flags,
        ciaddr=_address(ciaddr), yiaddr=_address(yiaddr), siaddr=_address(siaddr),
        giaddr=_address(giaddr), chaddr=chaddr, sname=_cstring(sname), file=_cstring(file),
        options=options, bootp=bootp,
    )


def _tlv_head(code: int, length: int) -> bytes:
    """The two bytes before an option's value, made once: a row of 256 per option code in use."""
    row = _TLV_HEADS[code]
    if row is None:
        row = _TLV_HEADS[code] = [bytes((code, n)) for n in range(256)]
    return row[length]


_TLV_HEADS: Final[list[list[bytes] | None]] = [None] * 256
_END: Final = bytes((OPT_END,))


def encode_options(options: dict[int, bytes]) -> bytes:
    """TLV-encode options in the given order; values over 255 bytes are split (RFC 3396 §5), END appended."""
    # One join of remembered heads and the values: appending each code and length to a bytearray was a
    # method call per byte in the compiled build (7 % of a DORA's decision-path instructions, callgrind).
    parts: list[bytes] = []
    for code, value in options.items():
        if code == OPT_PAD or code == OPT_END:
            continue
        if len(value) <= 255:
            parts.append(_tlv_head(code, len(value)))
            parts.append(value)
            continue
        for i in range(0, len(value), 255):
            chunk = value[i : i + 255]
            parts.append(_tlv_head(code, len(chunk)))
            parts.append(chunk)
    parts.append(_END)
    return b"".join(parts)


def build(pkt: DhcpPacket, *, min_size: int = MIN_REPLY_LEN) -> bytes:
    """Encode a message, padded with zeros to `min_size` bytes; with `pkt.overload`, see _build_overloaded."""
    if pkt.overload is not None:
        return _build_overloaded(pkt, pkt.overload, min_size)
    if len(pkt.sname) > 63 or len(pkt.file) > 127:
        raise ValueError("sname must fit 63 bytes and file 127 bytes (NUL-terminated)")
    head = _HEADER.pack(
        pkt.op, pkt.htype, pkt.hlen, pkt.hops, pkt.xid, pkt.secs, pkt.flags,
        ip_key(pkt.ciaddr), ip_key(pkt.yiaddr), ip_key(pkt.siaddr), ip_key(pkt.giaddr),
        pkt.chaddr.ljust(16, b"\0")[:16], pkt.sname, pkt.file,
    )
    body = head if pkt.bootp and not pkt.options else head + MAGIC_COOKIE + encode_options(pkt.options)
    if len(body) < min_size:
        body += bytes(min_size - len(body))
    return body


def _build_overloaded(pkt: DhcpPacket, overload: Overload, min_size: int) -> bytes:
    """RFC 2132 §9.3, RFC 2131 §4.1: the options `overload` names go whole into `file` / `sname`, each area
    starting at its first octet, ended by END and padded with PAD; option 52 says which areas are used.
    Raises ValueError if an area is also asked to carry a name or its options do not fit it."""
    main: dict[int, bytes] = {}
    in_file: dict[int, bytes] = {}
    in_sname: dict[int, bytes] = {}
    for code, value in pkt.options.items():
        if code in overload.file:
            in_file[code] = value
        elif code in overload.sname:
            in_sname[code] = value
        else:
            main[code] = value
    flag = (OVERLOAD_FILE if in_file else 0) | (OVERLOAD_SNAME if in_sname else 0)
    if not flag:
        return build(replace(pkt, overload=None), min_size=min_size)
    if OPT_OVERLOAD in main:
        raise ValueError("option 52 is derived from `overload`; it must not also be in `options`")
    if (in_file and pkt.file) or (in_sname and pkt.sname):
        raise ValueError("file and sname can carry a name or options, not both")
    # 52 goes right after the leading 53 and 54, so the options field reads as it does without overload.
    ordered: dict[int, bytes] = {}
    for code, value in main.items():
        if OPT_OVERLOAD not in ordered and code != OPT_MESSAGE_TYPE and code != _OPT_SERVER_ID:
            ordered[OPT_OVERLOAD] = bytes((flag,))
        ordered[code] = value
    if OPT_OVERLOAD not in ordered:
        ordered[OPT_OVERLOAD] = bytes((flag,))
    file_area = encode_options(in_file) if in_file else pkt.file
    sname_area = encode_options(in_sname) if in_sname else pkt.sname
    if len(file_area) > FILE_LEN or len(sname_area) > SNAME_LEN:
        raise ValueError(f"overloaded options take {len(file_area)} bytes of file ({FILE_LEN}) and "
                         f"{len(sname_area)} of sname ({SNAME_LEN})")
    if len(pkt.sname) > 63 or len(pkt.file) > 127:
        raise ValueError("sname must fit 63 bytes and file 127 bytes (NUL-terminated)")
    head = _HEADER.pack(
        pkt.op, pkt.htype, pkt.hlen, pkt.hops, pkt.xid, pkt.secs, pkt.flags,
        ip_key(pkt.ciaddr), ip_key(pkt.yiaddr), ip_key(pkt.siaddr), ip_key(pkt.giaddr),
        pkt.chaddr.ljust(16, b"\0")[:16], sname_area, file_area,  # struct pads with zeros: PAD options
    )
    body = head + MAGIC_COOKIE + encode_options(ordered)
    if len(body) < min_size:
        body += bytes(min_size - len(body))
    return body


def mac_to_chaddr(mac: str) -> bytes:
    """'02:00:00:00:00:01' (or with '-' or no separators) to 16-byte chaddr."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", "").replace(".", ""))
    return raw.ljust(16, b"\0")
