"""Fitting a reply into the size its client accepts (RFC 2131 §2, RFC 2132 §9.3 and §9.10): pure.

The last step of the reply policy: it never changes what an option says, it only decides which whole options
travel, and where (the options field, or the `file` / `sname` fields by option overload).

The limit counts the whole IP datagram, as ISC dhcpd does: option 57 minus 28 (IP 20 + UDP 8) for the DHCP
message, never less than 576 - 28 = 548 (RFC 2131 §2: every client accepts a 576-byte datagram; RFC 2132
§9.10: 576 is option 57's minimum). Larger values are honoured up to option 57's own ceiling, 65535; ISC
dhcpd caps them at 1500 because of its fixed buffers (a "TODO" in common/options.c), and Kea neither reads
option 57 nor emits option 52 (checked at isc-projects/kea d179a1e), so there is no common practice to
follow beyond what the client declared. Whether the datagram then fits the interface MTU is the I/O
shell's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Final

from ztp.dhcp import options as o
from ztp.dhcp import packet as p
from ztp.dhcp.packet import DhcpPacket, Overload

IP_UDP_OVERHEAD: Final = 28  # IPv4 header without options (20) + UDP header (8)
MIN_DATAGRAM: Final = 576  # RFC 2131 §2, RFC 2132 §9.10
MAX_DATAGRAM: Final = 65535  # option 57 is 16 bits
OPTIONS_START: Final = p.HEADER_LEN + len(p.MAGIC_COOKIE)  # 240: where the options field begins

#: Never left out: what makes the reply a DHCP reply (53, 54, 52), the lease (51, 58, 59), the minimal
#: network configuration (1, 3), what must be echoed (61: RFC 6842 §3; 82: RFC 3046 §2.2) and the boot
#: file a ZTP device is here for (66, 67).
ESSENTIAL: Final = frozenset({
    o.MESSAGE_TYPE, o.SERVER_ID, o.OVERLOAD, o.LEASE_TIME, o.RENEWAL_TIME, o.REBINDING_TIME, o.SUBNET_MASK,
    o.ROUTERS, o.CLIENT_ID, o.RELAY_AGENT_INFO, o.TFTP_SERVER_NAME, o.BOOTFILE_NAME,
})

# Kept in the options field even when others are moved out: clients look for the message type and server
# id before they honour option 52, and relays look for option 82 only there (ISC dhcrelay does).
_MAIN_ONLY: Final = frozenset({o.MESSAGE_TYPE, o.SERVER_ID, o.RELAY_AGENT_INFO, o.OVERLOAD})
_OVERLOAD_LEN: Final = 3  # option 52 itself: code, length, value
_FILE_ROOM: Final = p.FILE_LEN - 1  # each overloaded field ends with END (RFC 2131 §4.1)
_SNAME_ROOM: Final = p.SNAME_LEN - 1


# Not frozen only because one is built per reply: a frozen dataclass's __init__ costs about 4x a plain one
# (see DhcpPacket). Never mutated. __init__ spelled out for the compiled build (see DhcpPacket).
@dataclass(slots=True, init=False)
class Fitted:
    """A reply fitted to its limit: what to send, which option codes were left out (least essential first),
    its size as build() will emit it, and the limit it was fitted to (RFC 2132 §9.10)."""

    reply: DhcpPacket
    dropped: tuple[int, ...]
    size: int
    limit: int

    def __init__(self, reply: DhcpPacket, dropped: tuple[int, ...], size: int, limit: int) -> None:
        self.reply = reply
        self.dropped = dropped
        self.size = size
        self.limit = limit

    @property
    def fits(self) -> bool:
        """False only when the essential options alone exceed the limit (they are sent all the same)."""
        return self.size <= self.limit


def max_reply_size(request: DhcpPacket) -> int:
    """Largest DHCP message (UDP payload) the client accepts: option 57 minus IP and UDP headers, at least
    548 (RFC 2131 §2, RFC 2132 §9.10). A malformed option 57 (not 2 bytes) counts as absent."""
    raw = request.options.get(o.MAX_MESSAGE_SIZE)
    datagram = MIN_DATAGRAM
    if raw is not None and len(raw) == 2:
        datagram = min(max(MIN_DATAGRAM, (raw[0] << 8) | raw[1]), MAX_DATAGRAM)
    return datagram - IP_UDP_OVERHEAD


def _tlv_len(value: bytes) -> int:
    """Bytes encode_options() spends on one option: values over 255 become several instances (RFC 3396)."""
    n = len(value)
    return n + 2 if n <= 255 else n + 2 * -(-n // 255)


def fit_reply(reply: DhcpPacket, request: DhcpPacket) -> Fitted:
    """Make `reply` fit what `request`'s client accepts (max_reply_size): unchanged when it fits; else whole
    options move to the unused `file`, then `sname` fields (RFC 2132 §9.3); else the least essential are
    left out: first those option 55 did not ask for, largest first, then the asked-for from the end of
    option 55 backwards. ESSENTIAL options are never left out, even if they alone do not fit (then
    `fits` is False). Option order is kept within each field; no option is ever cut."""
    limit = max_reply_size(request)
    opts = reply.options
    # Summed in C, as this runs for every reply: exact unless some value exceeds 255 bytes (several instances,
    # RFC 3396), which only a total over 255 allows, or the map holds PAD or END (never encoded).
    total = sum(map(len, opts.values()))
    used = total + 2 * len(opts)
    if (total > 255 and max(map(len, opts.values())) > 255) or p.OPT_PAD in opts or p.OPT_END in opts:
        used = sum(_tlv_len(value) for code, value in opts.items() if code != p.OPT_PAD and code != p.OPT_END)
    if reply.bootp and not opts:
        size = p.HEADER_LEN
    else:
        size = OPTIONS_START + used + 1  # + END
    if size <= limit:
        plain = reply if reply.overload is None else replace(reply, overload=None)
        return Fitted(plain, (), max(size, p.MIN_REPLY_LEN), limit)
    # BOOTP clients (no option 53) do not know option 52; a configured 52 would clash with ours.
    can_overload = reply.message_type is not None and o.OVERLOAD not in opts
    shape = tuple((code, _tlv_len(value)) for code, value in opts.items()
                  if code != p.OPT_PAD and code != p.OPT_END)
    plan = _plan(shape, limit - OPTIONS_START - 1, can_overload and not reply.file,
                 can_overload and not reply.sname, request.options.get(o.PARAMETER_LIST, b""))
    overload = Overload(file=plan.file, sname=plan.sname) if plan.file or plan.sname else None
    kept = {code: value for code, value in opts.items() if code in plan.kept}
    fitted = replace(reply, options=kept, overload=overload)
    return Fitted(fitted, plan.dropped, max(OPTIONS_START + plan.main + 1, p.MIN_REPLY_LEN), limit)


@dataclass(frozen=True, slots=True)
class _Plan:
    kept: frozenset[int]
    file: frozenset[int]
    sname: frozenset[int]
    dropped: tuple[int, ...]
    main: int  # bytes of the options field before END, option 52 included


# Only sizes decide, never values: replies to one kind of device have one shape, so the search below runs
# once per shape and limit rather than once per packet (bounded against odd ones).
@lru_cache(maxsize=1024)
def _plan(shape: tuple[tuple[int, int], ...], room: int, file_free: bool, sname_free: bool,
          requested: bytes) -> _Plan:
    """Which options to keep and where, for TLV sizes `shape` and `room` bytes of options field."""
    sizes = dict(shape)
    essential = [code for code in sizes if code in ESSENTIAL]
    # Keep order, most wanted first: what option 55 asks for in its order, then the rest smallest first.
    wanted: dict[int, None] = {}
    for code in requested:
        if code in sizes and code not in ESSENTIAL:
            wanted[code] = None
    position = {code: i for i, code in enumerate(sizes)}
    rest = sorted((code for code in sizes if code not in ESSENTIAL and code not in wanted),
                  key=lambda code: (sizes[code], position[code]))
    candidates = [*wanted, *rest]

    kept = essential
    placement = _pack(kept, sizes, room, file_free, sname_free)
    if placement is None:  # the essentials alone are too big: send them, over the limit, and nothing else
        dropped = candidates
    else:
        # Greedy by importance: each option that still fits beside the more important ones stays, so space
        # one large option could not use still carries smaller, less important ones.
        dropped = []
        for code in candidates:
            trial = _pack([*kept, code], sizes, room, file_free, sname_free)
            if trial is None:
                dropped.append(code)
            else:
                kept, placement = [*kept, code], trial
    if placement is None:
        placement = _pack(kept, sizes, room, file_free, sname_free, force=True)
        assert placement is not None
    main, in_file, in_sname = placement
    return _Plan(kept=frozenset(kept), file=frozenset(in_file), sname=frozenset(in_sname),
                 dropped=tuple(reversed(dropped)), main=main)


def _pack(codes: Sequence[int], sizes: dict[int, int], room: int, file_free: bool, sname_free: bool,
          *, force: bool = False) -> tuple[int, list[int], list[int]] | None:
    """Place whole options: (bytes used in the options field, codes for file, codes for sname), or None if
    they do not fit. With `force`, what fits nowhere stays in the options field, over `room`."""
    total = sum(sizes[code] for code in codes)
    if total <= room or not (file_free or sname_free):
        return (total, [], []) if total <= room or force else None
    # First fit, largest first, options field before file before sname (sname only when file is full):
    # the options field's own first, then the essential, so those stay where every client looks.
    order = sorted(codes, key=lambda code: (code not in _MAIN_ONLY, code not in ESSENTIAL, -sizes[code]))
    free = [room - _OVERLOAD_LEN, _FILE_ROOM if file_free else -1, _SNAME_ROOM if sname_free else -1]
    areas: tuple[list[int], list[int], list[int]] = ([], [], [])
    for code in order:
        size = sizes[code]
        reachable = 1 if code in _MAIN_ONLY else 3
        for area in range(reachable):
            if size <= free[area]:
                free[area] -= size
                areas[area].append(code)
                break
        else:
            if not force:
                return None
            free[0] -= size
            areas[0].append(code)
    main = room - _OVERLOAD_LEN - free[0]
    if not areas[1] and not areas[2]:
        return main, [], []  # nothing moved after all (forced): no option 52
    return main + _OVERLOAD_LEN, areas[1], areas[2]
