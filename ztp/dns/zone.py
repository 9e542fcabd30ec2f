"""The appliance's DNS zone: names of devices and static hosts, answered from a pure function of bytes.

:class:`Zone` holds the forward zone (``lab.test``) and the ``in-addr.arpa`` zones of the served subnets
and turns one query datagram into one reply datagram (:meth:`Zone.answer`). It never touches a socket or a
clock: the caller passes ``now``, which caps TTLs at a lease's remaining time. dnslib is used only as the
wire codec (RFC 1035 §4); every policy decision is here:

- authoritative answers (AA) for A, PTR, SOA and NS; RA is always clear (no recursion offered);
- NXDOMAIN, or NODATA for an existing name of another type, with the SOA in authority (RFC 2308 §2);
- REFUSED outside the zones we serve, and for zone transfers;
- EDNS0 (RFC 6891): an OPT is echoed, the requester's UDP size honoured up to :data:`EDNS_UDP_SIZE`;
- UDP replies that do not fit get TC and an empty answer (RFC 1035 §4.2.1, RFC 2181 §9);
- ANY gets one RRset only (RFC 8482), so the zone cannot be used for amplification.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dnslib import (  # type: ignore[import-untyped,unused-ignore]
    EDNS0,
    NS,
    PTR,
    QTYPE,
    RR,
    SOA,
    A,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
)

__all__ = [
    "EDNS_UDP_SIZE",
    "Rcode",
    "Response",
    "Zone",
    "error_reply",
    "sanitize_hostname",
]

Name = tuple[bytes, ...]
"""A domain name as lowercase labels, leftmost first, without the root label."""

CLASSIC_UDP_SIZE = 512
"""Largest UDP reply to a query without EDNS0 (RFC 1035 §4.2.1)."""

EDNS_UDP_SIZE = 1232
"""UDP payload size we advertise and never exceed, whatever a client offers (avoids IP fragmentation;
the 2020 DNS flag day value)."""

MAX_MESSAGE = 65535
"""Largest DNS message at all: the TCP length prefix is 16 bits (RFC 1035 §4.2.2)."""

_MAX_LABEL = 63
_MAX_NAME_WIRE = 255
_IN = 1
_AXFR, _IXFR, _ANY = 252, 251, 255
_OPCODE_QUERY = 0
_IN_ADDR_ARPA: Name = (b"in-addr", b"arpa")
_NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")

# SOA timers other than the minimum: only secondaries use them and we have none, but they must be sane.
_SOA_REFRESH, _SOA_RETRY, _SOA_EXPIRE = 3600, 600, 86400


class Rcode:
    """DNS response codes used here (RFC 1035 §4.1.1; BADVERS is extended, RFC 6891 §9)."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16


@dataclass(frozen=True, slots=True)
class Response:
    """One reply decided by :meth:`Zone.respond`, with what the I/O shell needs for counters and logs."""

    data: bytes
    """The reply datagram (without the TCP length prefix)."""
    rcode: int
    """Full (extended) response code, see :class:`Rcode`."""
    outside: bool
    """The question is an ordinary IN query for a name outside every zone we serve (forwardable)."""
    truncated: bool
    """TC was set because the reply did not fit the UDP size."""
    question: str
    """``name. TYPE`` of the query for logs, or ``""`` when there was no usable question."""


def sanitize_hostname(raw: bytes | str) -> str | None:
    """Turn a client-supplied name (DHCP option 12, RFC 2132 §3.14) into one safe DNS label, or None.

    Only the first label is kept (a client may send a FQDN), ASCII letters are lowercased, every other
    character outside ``a-z0-9-`` becomes ``-`` (runs collapse to one), leading and trailing ``-`` are
    removed and the label is cut to 63 characters (RFC 1035 §2.3.1, RFC 1123 §2.1). A NUL ends the name:
    some clients send it NUL-terminated.
    """
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    text = text.split("\0", 1)[0].split(".", 1)[0]
    out: list[str] = []
    for ch in text:
        # Map by hand: str.lower() would turn e.g. KELVIN SIGN into an ASCII 'k'.
        if "A" <= ch <= "Z":
            ch = chr(ord(ch) + 32)
        if ch not in _HOST_CHARS:
            ch = "-"
        if ch == "-" and out and out[-1] == "-":
            continue
        out.append(ch)
    label = "".join(out).strip("-")[:_MAX_LABEL].rstrip("-")
    return label or None


def error_reply(query: bytes, rcode: int) -> bytes | None:
    """A bare reply to ``query`` with ``rcode`` (e.g. SERVFAIL when forwarding failed); None if unparsable."""
    try:
        request = DNSRecord.parse(query)
    except Exception:
        return None
    return _finish(request, _reply_skeleton(request, rcode=rcode, aa=False), rcode, tcp=True)[0]


def _wire_length(name: Name) -> int:
    return sum(len(label) + 1 for label in name) + 1


def _is_subdomain(name: Name, parent: Name) -> bool:
    return len(name) >= len(parent) and name[len(name) - len(parent) :] == parent


def _parse_name(text: str, origin: Name, *, what: str) -> Name:
    """A configured name, relative to ``origin`` unless it ends with a dot or already ends in ``origin``."""
    raw = text.strip()
    if raw in ("", "@"):
        return origin
    absolute = raw.endswith(".")
    labels = raw.rstrip(".").split(".")
    try:
        name = tuple(label.encode("ascii").lower() for label in labels)
    except UnicodeEncodeError:
        raise ValueError(f"{what} {text!r}: only ASCII letters, digits, '-' and '_' are allowed") from None
    for label in name:
        if not 1 <= len(label) <= _MAX_LABEL:
            raise ValueError(f"{what} {text!r}: each label must be 1-{_MAX_LABEL} characters")
        if not set(label) <= _NAME_CHARS:
            raise ValueError(f"{what} {text!r}: only ASCII letters, digits, '-' and '_' are allowed")
    if not absolute and not _is_subdomain(name, origin):
        name = name + origin
    if _wire_length(name) > _MAX_NAME_WIRE:
        raise ValueError(f"{what} {text!r}: longer than {_MAX_NAME_WIRE} octets")
    if not _is_subdomain(name, origin):
        raise ValueError(f"{what} {text!r} is outside the zone {_text(origin)}")
    return name


def _text(name: Name) -> str:
    return ".".join(label.decode("ascii", "backslashreplace") for label in name) + "."


def _address(text: str, *, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an IPv4 address") from None


def _reverse_name(ip: str) -> Name:
    return tuple(octet.encode() for octet in reversed(ip.split("."))) + _IN_ADDR_ARPA


def _reverse_zones(subnet: str) -> list[Name]:
    """The octet-aligned ``in-addr.arpa`` zones covering ``subnet`` (RFC 1035 §3.5).

    A /20 is 16 /24 zones; a /28 lives in its /24 (RFC 2317 delegation does not apply to the zone's own
    authoritative server).
    """
    try:
        net = ipaddress.IPv4Network(subnet.strip(), strict=False)
    except ValueError:
        raise ValueError(f"subnet {subnet!r} is not an IPv4 network") from None
    if net.prefixlen < 8:
        raise ValueError(f"subnet {subnet!r}: prefix shorter than /8 is not supported for reverse zones")
    aligned = min(24, -(-net.prefixlen // 8) * 8)
    if net.prefixlen > aligned:
        nets: Iterable[ipaddress.IPv4Network] = [net.supernet(new_prefix=aligned)]
    else:
        nets = net.subnets(new_prefix=aligned)
    zones = []
    for sub in nets:
        octets = str(sub.network_address).split(".")[: aligned // 8]
        zones.append(tuple(o.encode() for o in reversed(octets)) + _IN_ADDR_ARPA)
    return zones


def _ancestors(name: Name, apex: Name) -> Iterable[Name]:
    """Proper ancestors of ``name`` strictly below ``apex``: the empty non-terminals it creates."""
    for i in range(1, len(name) - len(apex)):
        yield name[i:]


def _reverse_ancestors(ip: str) -> Iterable[Name]:
    """The partial reverse names above an address (``3.2.1.in-addr.arpa`` ... ``1.in-addr.arpa``)."""
    name = _reverse_name(ip)
    for i in range(1, 4):
        yield name[i:]


def _uncount(counter: Counter[Name], names: Iterable[Name]) -> None:
    """Take one off each of `names`, forgetting those that reach zero (O(1) each, unlike ``+= Counter()``)."""
    for name in names:
        left = counter[name] - 1
        if left > 0:
            counter[name] = left
        else:
            del counter[name]


@dataclass(frozen=True, slots=True)
class _Host:
    ip: str
    expires_at: float | None


class Zone:
    """Forward zone ``origin`` plus the reverse zones of ``subnets``; answers queries from bytes to bytes.

    ``server_name`` (relative to ``origin``) is the zone's NS and SOA MNAME and resolves to
    ``server_ips``. ``records`` are static ``{name: address or [addresses]}``; :meth:`set_host` and
    :meth:`remove_host` maintain device names (leases and reservations). ``negative_ttl`` is the SOA
    minimum, i.e. how long resolvers cache NXDOMAIN (RFC 2308 §5): short, because a name appears as soon
    as its lease is bound.
    """

    def __init__(
        self,
        origin: str,
        *,
        server_name: str,
        server_ips: list[str],
        subnets: list[str],
        ttl: int = 300,
        records: Mapping[str, str | Sequence[str]] | None = None,
        negative_ttl: int = 30,
    ) -> None:
        """Validate everything up front (ValueError naming the bad value) so that answering cannot fail."""
        if not 0 <= ttl <= 0x7FFFFFFF:
            raise ValueError(f"ttl {ttl} out of range (RFC 2181 §8)")
        origin_name = _parse_name(origin.rstrip(".") + ".", (), what="zone")
        if not origin_name:
            raise ValueError("the zone must not be the root")
        self._origin: Name = origin_name
        self._ttl = ttl
        self._negative_ttl = max(0, min(negative_ttl, ttl))
        self._server: Name = _parse_name(server_name, origin_name, what="server name")
        self._static: dict[Name, list[str]] = {}
        self._static_ptr: dict[str, list[Name]] = {}
        self._static_ents: set[Name] = set()
        # Partial reverse names above every address with a name (static or dynamic, live or not yet
        # pruned, like the forward empty non-terminals): a PTR query for one is a lookup, not a walk.
        self._ptr_ents: Counter[Name] = Counter()
        self._add_static(self._server, [_address(ip, what="server address") for ip in server_ips])
        for name_text, value in (records or {}).items():
            name = _parse_name(name_text, origin_name, what="record")
            addrs = [value] if isinstance(value, str) else list(value)
            if not addrs:
                raise ValueError(f"record {name_text!r} has no address")
            self._add_static(name, [_address(a, what=f"record {name_text!r}") for a in addrs])
        self._reverse: list[Name] = []
        for subnet in subnets:
            for zone in _reverse_zones(subnet):
                if zone not in self._reverse:
                    self._reverse.append(zone)
        self._hosts: dict[Name, _Host] = {}
        self._host_ptr: dict[str, dict[Name, None]] = {}
        self._host_ents: Counter[Name] = Counter()
        self._serial = 1

    def _add_static(self, name: Name, addrs: list[str]) -> None:
        current = self._static.setdefault(name, [])
        for ip in addrs:
            if ip not in current:
                current.append(ip)
                self._static_ptr.setdefault(ip, []).append(name)
                self._ptr_ents.update(_reverse_ancestors(ip))
        self._static_ents.update(_ancestors(name, self._origin))

    @property
    def origin(self) -> str:
        """The forward zone's name with its trailing dot, e.g. ``lab.test.``."""
        return _text(self._origin)

    @property
    def server_fqdn(self) -> str:
        """The appliance's own name, e.g. ``ztp.lab.test.`` (the zones' NS)."""
        return _text(self._server)

    @property
    def serial(self) -> int:
        """SOA serial: bumped on every change to the hosts (RFC 1982 arithmetic, wraps at 2**32)."""
        return self._serial

    def hosts(self) -> dict[str, tuple[str, float | None]]:
        """The dynamic names as ``{fqdn: (address, expires_at)}`` (expired ones included until removed)."""
        return {_text(name): (host.ip, host.expires_at) for name, host in self._hosts.items()}

    def set_host(self, name: str, ip: str, expires_at: float | None = None) -> None:
        """Point ``name`` at ``ip`` until ``expires_at`` (forever when None, e.g. a reservation).

        Replaces any previous address of ``name``; ValueError for a bad name or address.
        """
        key = _parse_name(name, self._origin, what="host name")
        if key == self._origin:
            raise ValueError(f"host name {name!r} is the zone apex")
        address = _address(ip, what=f"host {name!r}")
        self._drop_host(key)
        self._hosts[key] = _Host(address, expires_at)
        self._host_ptr.setdefault(address, {})[key] = None
        self._host_ents.update(_ancestors(key, self._origin))
        self._ptr_ents.update(_reverse_ancestors(address))
        self._bump()

    def remove_host(self, name: str) -> None:
        """Forget the dynamic name ``name`` (static records stay); unknown names are ignored."""
        try:
            key = _parse_name(name, self._origin, what="host name")
        except ValueError:
            return
        if self._drop_host(key):
            self._bump()

    def prune(self, now: float) -> list[str]:
        """Remove hosts whose lease has expired at ``now``; return their names (answers already hide them)."""
        gone = [name for name, host in self._hosts.items() if not self._live(host, now)]
        for name in gone:
            self._drop_host(name)
        if gone:
            self._bump()
        return [_text(name) for name in gone]

    def _drop_host(self, key: Name) -> bool:
        host = self._hosts.pop(key, None)
        if host is None:
            return False
        names = self._host_ptr.get(host.ip)
        if names is not None:
            names.pop(key, None)
            if not names:
                del self._host_ptr[host.ip]
        _uncount(self._host_ents, _ancestors(key, self._origin))
        _uncount(self._ptr_ents, _reverse_ancestors(host.ip))
        return True

    def _bump(self) -> None:
        self._serial = self._serial % 0xFFFFFFFF + 1

    @staticmethod
    def _live(host: _Host, now: float) -> bool:
        return host.expires_at is None or host.expires_at > now

    def _host_ttl(self, host: _Host, now: float) -> int:
        if host.expires_at is None:
            return self._ttl
        return max(0, min(self._ttl, int(host.expires_at - now)))

    # -- answering --------------------------------------------------------------------------------------

    def answer(self, query: bytes, now: float, *, tcp: bool = False) -> bytes | None:
        """The reply datagram for ``query`` at time ``now``, or None to drop it (see :meth:`respond`)."""
        response = self.respond(query, now, tcp=tcp)
        return None if response is None else response.data

    def respond(self, query: bytes, now: float, *, tcp: bool = False) -> Response | None:
        """Decide the reply to one query (RFC 1035 §4.1); None for garbage, responses and truncated input.

        UDP replies larger than 512 octets, or than the EDNS0 size offered (capped at
        :data:`EDNS_UDP_SIZE`), are truncated; over TCP only the 64 KiB message limit applies.
        """
        if len(query) < 12:
            return None
        try:
            request = DNSRecord.parse(query)
        except Exception:
            # dnslib raises DNSError for malformed input; anything else would be a dnslib bug, and a
            # query must never take the server down either way.
            return None
        try:
            return self._respond(request, now, tcp=tcp)
        except Exception:
            return None

    def _respond(self, request: DNSRecord, now: float, *, tcp: bool) -> Response | None:
        header = request.header
        if header.qr:
            return None
        opts = [rr for rr in request.ar if rr.rtype == QTYPE.OPT]
        if header.opcode != _OPCODE_QUERY:
            return self._error(request, Rcode.NOTIMP, tcp=tcp)
        if len(request.questions) != 1 or len(opts) > 1:
            return self._error(request, Rcode.FORMERR, tcp=tcp)
        if opts and opts[0].edns_ver != 0:
            return self._error(request, Rcode.BADVERS, tcp=tcp)
        question = request.questions[0]
        qname: Name = tuple(label.lower() for label in question.qname.label)
        if _wire_length(qname) > _MAX_NAME_WIRE:
            return self._error(request, Rcode.FORMERR, tcp=tcp)
        qtype: int = question.qtype
        apex = self._zone_of(qname)
        if question.qclass != _IN or apex is None:
            outside = question.qclass == _IN
            return self._error(request, Rcode.REFUSED, tcp=tcp, outside=outside)
        if qtype in (_AXFR, _IXFR):
            return self._error(request, Rcode.REFUSED, tcp=tcp)
        reply = _reply_skeleton(request, rcode=Rcode.NOERROR, aa=True)
        owner = question.qname
        if qname == apex:
            self._answer_apex(reply, owner, apex, qtype)
        elif apex == self._origin:
            self._answer_forward(reply, owner, qname, qtype, now)
        else:
            self._answer_reverse(reply, owner, qname, qtype, now)
        if not reply.rr and reply.header.rcode in (Rcode.NOERROR, Rcode.NXDOMAIN):
            reply.add_auth(self._soa(apex, negative=True))
        rcode: int = reply.header.rcode
        data, truncated = _finish(request, reply, rcode, tcp=tcp)
        return Response(data, rcode, False, truncated, _describe(question))

    def _error(self, request: DNSRecord, rcode: int, *, tcp: bool, outside: bool = False) -> Response:
        reply = _reply_skeleton(request, rcode=rcode, aa=False)
        data, truncated = _finish(request, reply, rcode, tcp=tcp)
        described = _describe(request.questions[0]) if len(request.questions) == 1 else ""
        return Response(data, rcode, outside, truncated, described)

    def _zone_of(self, qname: Name) -> Name | None:
        if _is_subdomain(qname, self._origin):
            return self._origin
        for zone in self._reverse:
            if _is_subdomain(qname, zone):
                return zone
        return None

    def _answer_apex(self, reply: DNSRecord, owner: DNSLabel, apex: Name, qtype: int) -> None:
        if qtype in (QTYPE.SOA, _ANY):
            reply.add_answer(self._soa(apex, negative=False, owner=owner))
        elif qtype == QTYPE.NS:
            reply.add_answer(RR(owner, QTYPE.NS, ttl=self._ttl, rdata=NS(DNSLabel(self._server))))
            for ip in self._static.get(self._server, []):
                reply.add_ar(RR(DNSLabel(self._server), QTYPE.A, ttl=self._ttl, rdata=A(ip)))
        elif qtype == QTYPE.A and apex == self._origin:
            for ip in self._static.get(apex, []):
                reply.add_answer(RR(owner, QTYPE.A, ttl=self._ttl, rdata=A(ip)))

    def _answer_forward(self, reply: DNSRecord, owner: DNSLabel, qname: Name, qtype: int, now: float) -> None:
        addrs = list(self._static.get(qname, []))
        ttl = self._ttl
        host = self._hosts.get(qname)
        if host is not None and self._live(host, now):
            ttl = min(ttl, self._host_ttl(host, now))
            if host.ip not in addrs:
                addrs.append(host.ip)
        if addrs:
            if qtype in (QTYPE.A, _ANY):
                for ip in addrs:
                    reply.add_answer(RR(owner, QTYPE.A, ttl=ttl, rdata=A(ip)))
        elif qname not in self._static_ents and qname not in self._host_ents:
            reply.header.rcode = Rcode.NXDOMAIN

    def _answer_reverse(self, reply: DNSRecord, owner: DNSLabel, qname: Name, qtype: int, now: float) -> None:
        ip = _address_of_reverse(qname)
        if ip is None:
            # A partial name (e.g. 0.60.10.in-addr.arpa inside a /16 zone) exists only as an empty
            # non-terminal above some address we know (RFC 8020); anything else does not exist.
            if qname not in self._ptr_ents:
                reply.header.rcode = Rcode.NXDOMAIN
            return
        names = self._ptr_names(ip, now)
        if not names:
            reply.header.rcode = Rcode.NXDOMAIN
            return
        if qtype in (QTYPE.PTR, _ANY):
            ttl = min(ttl for _, ttl in names)
            for name, _ in names:
                reply.add_answer(RR(owner, QTYPE.PTR, ttl=ttl, rdata=PTR(DNSLabel(name))))

    def _ptr_names(self, ip: str, now: float) -> list[tuple[Name, int]]:
        names = [(name, self._ttl) for name in self._static_ptr.get(ip, [])]
        for name in self._host_ptr.get(ip, {}):
            host = self._hosts[name]
            if self._live(host, now) and all(name != seen for seen, _ in names):
                names.append((name, self._host_ttl(host, now)))
        return names

    def _soa(self, apex: Name, *, negative: bool, owner: DNSLabel | None = None) -> RR:
        times = (self._serial, _SOA_REFRESH, _SOA_RETRY, _SOA_EXPIRE, self._negative_ttl)
        rdata = SOA(DNSLabel(self._server), DNSLabel((b"hostmaster",) + self._origin), times)
        # RFC 2308 §3: the SOA in a negative answer carries min(SOA TTL, SOA MINIMUM).
        ttl = self._negative_ttl if negative else self._ttl
        return RR(owner if owner is not None else DNSLabel(apex), QTYPE.SOA, ttl=ttl, rdata=rdata)


def _address_of_reverse(qname: Name) -> str | None:
    if len(qname) != 6:
        return None
    octets = []
    for label in reversed(qname[:4]):
        # Canonical decimal only: "010" or "1e1" are not names of any address.
        if not label.isdigit() or len(label) > 3 or (len(label) > 1 and label[:1] == b"0"):
            return None
        if int(label) > 255:
            return None
        octets.append(label.decode())
    return ".".join(octets)


def _describe(question: DNSQuestion) -> str:
    qtype = QTYPE.get(question.qtype, str(question.qtype))
    return f"{question.qname} {qtype}"


def _reply_skeleton(request: DNSRecord, *, rcode: int, aa: bool) -> DNSRecord:
    """Header and question of a reply; unlike dnslib's ``reply()``, no query flag bits leak through."""
    header = request.header
    reply_header = DNSHeader(
        id=header.id, bitmap=0, qr=1, opcode=header.opcode, aa=int(aa), rd=header.rd, ra=0, rcode=rcode & 0xF
    )
    questions = list(request.questions) if len(request.questions) == 1 else []
    return DNSRecord(reply_header, questions=questions)


def _finish(request: DNSRecord, reply: DNSRecord, rcode: int, *, tcp: bool) -> tuple[bytes, bool]:
    """Add the OPT echo (RFC 6891 §6.1.1), pack, and truncate to the transport's limit."""
    opts = [rr for rr in request.ar if rr.rtype == QTYPE.OPT]
    limit = MAX_MESSAGE if tcp else CLASSIC_UDP_SIZE
    if len(opts) == 1:
        opt = opts[0]
        if not tcp:
            limit = max(CLASSIC_UDP_SIZE, min(int(opt.edns_len), EDNS_UDP_SIZE))
        # RFC 3225 §3: the DO bit is copied from the query.
        reply.add_ar(EDNS0(udp_len=EDNS_UDP_SIZE, ext_rcode=rcode >> 4, flags="do" if opt.edns_do else ""))
    data: bytes = reply.pack()
    if len(data) <= limit:
        return data, False
    # RFC 2181 §9: a partial RRset would be cached as complete, so send none and let the client use TCP.
    reply.rr, reply.auth = [], []
    reply.ar = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    reply.header.tc = 1
    truncated: bytes = reply.pack()
    return truncated, True
