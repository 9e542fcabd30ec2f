"""Reply size fitting (RFC 2131 §2, RFC 2132 §9.3 and §9.10) and the overloaded encoding it relies on."""

from __future__ import annotations

import random
import struct
from ipaddress import IPv4Address

import pytest

from ztp.dhcp import options as o
from ztp.dhcp import packet as p
from ztp.dhcp.fit import ESSENTIAL, Fitted, fit_reply, max_reply_size
from ztp.dhcp.packet import DhcpPacket, Overload, build, mac_to_chaddr, parse

SERVER = IPv4Address("10.60.0.1")
CHADDR = mac_to_chaddr("02:00:00:00:00:01")
# What an ISC dhclient-style switch asks for, plus the bulky options a ZTP profile tends to add.
ASKED = bytes([1, 3, 6, 15, 12, 66, 67, 51, 58, 59, 28, 42, 119, 121, 43, 150])


def _request(asked: bytes = ASKED, max_size: int | None = None, **options: bytes) -> DhcpPacket:
    opts = {o.MESSAGE_TYPE: bytes((p.DISCOVER,)), o.PARAMETER_LIST: asked}
    if max_size is not None:
        opts[o.MAX_MESSAGE_SIZE] = struct.pack("!H", max_size)
    opts.update({int(k[1:]): v for k, v in options.items()})
    return DhcpPacket(op=p.BOOTREQUEST, xid=0x1234, chaddr=CHADDR, options=opts)


def _base_options() -> dict[int, bytes]:
    return {
        o.MESSAGE_TYPE: bytes((p.OFFER,)), o.SERVER_ID: SERVER.packed,
        1: bytes((255, 255, 255, 0)), 3: SERVER.packed, 6: SERVER.packed * 2, 15: b"lab.example.net",
        12: b"leaf-01-rack-17", 66: b"10.60.0.1", 67: b"leaf-01-rack-17.cfg", 51: o.u32(3600),
        58: o.u32(1800), 59: o.u32(3150), 28: IPv4Address("10.60.0.255").packed,
    }


def _big_reply(*, file: bytes = b"leaf-01-rack-17.cfg", sname: bytes = b"10.60.0.1",
               relay82: bytes | None = None) -> DhcpPacket:
    """The shape of issue 9's reply: about 705 bytes once encoded."""
    opts = _base_options()
    opts.update({
        42: SERVER.packed * 4, 119: b"\x03lab\x07example\x03net\x00" * 3, 121: bytes(range(90)),
        43: bytes(range(100, 220)), 150: SERVER.packed, 2: o.u32(0), 26: struct.pack("!H", 1500),
        60: b"ztp-appliance", 252: b"http://10.60.0.1/wpad.dat",
    })
    if relay82 is not None:
        opts[o.RELAY_AGENT_INFO] = relay82
    return DhcpPacket(op=p.BOOTREPLY, xid=0x1234, chaddr=CHADDR, yiaddr=IPv4Address("10.60.0.145"),
                      siaddr=SERVER, sname=sname, file=file, options=opts)


def _areas(data: bytes) -> dict[str, list[tuple[int, bytes]]]:
    """(code, value) of every option instance per area, checking each lies wholly inside its area and every
    area in use ends with END followed only by PAD (RFC 2131 §4.1)."""
    def walk(start: int, end: int) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        i = start
        while True:
            assert i < end, f"area {start}-{end} has no END"
            code = data[i]
            if code == p.OPT_END:
                assert not any(data[i + 1 : end])
                return out
            if code == p.OPT_PAD:
                i += 1
                continue
            length = data[i + 1]
            assert i + 2 + length <= end, f"option {code} at {i} crosses the end of its area ({end})"
            out.append((code, data[i + 2 : i + 2 + length]))
            i += 2 + length

    areas = {"options": walk(p.HEADER_LEN + 4, len(data))}
    flag = _flag(data)
    if flag & 1:
        areas["file"] = walk(108, 236)
    if flag & 2:
        areas["sname"] = walk(44, 108)
    return areas


def _flag(data: bytes) -> int:
    """Option 52's value in the options field, 0 without it."""
    i = p.HEADER_LEN + 4
    while i < len(data) and data[i] != p.OPT_END:
        if data[i] == p.OPT_PAD:
            i += 1
            continue
        if data[i] == o.OVERLOAD:
            return data[i + 2]
        i += 2 + data[i + 1]
    return 0


def _check(fitted: Fitted, reply: DhcpPacket) -> bytes:
    """Properties every fitted reply has; returns its bytes."""
    data = build(fitted.reply)
    assert len(data) == fitted.size
    if fitted.fits:
        assert len(data) <= fitted.limit
    back = parse(data)
    assert back == fitted.reply  # header fields and options, values whole
    for code, value in back.options.items():
        assert value == reply.options[code]  # never cut, never altered
    assert set(back.options) | set(fitted.dropped) == set(reply.options)
    assert not set(back.options) & set(fitted.dropped)
    assert not ESSENTIAL & set(fitted.dropped)
    assert list(fitted.reply.options) == [c for c in reply.options if c in back.options]  # order kept...
    for area in _areas(data).values():  # ...in each area too (parse() reads options, then file, then sname)
        codes = list(dict.fromkeys(code for code, _ in area if code != o.OVERLOAD))  # RFC 3396 instances
        assert codes == [c for c in reply.options if c in codes]
    return data


# --- the limit ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("max_size", "limit"), [
    (None, 548), (576, 548), (300, 548), (0, 548), (577, 549), (1500, 1472), (65535, 65507),
])
def test_max_reply_size_counts_ip_and_udp_headers(max_size: int | None, limit: int) -> None:
    assert max_reply_size(_request(max_size=max_size)) == limit


def test_malformed_option_57_counts_as_absent() -> None:
    assert max_reply_size(_request(o57=b"\x05\xdc\x00")) == 548
    assert max_reply_size(_request(o57=b"\x05")) == 548


# --- fitting -----------------------------------------------------------------------------------------

def test_a_reply_that_fits_is_left_alone() -> None:
    reply = DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=CHADDR, options=_base_options())
    fitted = fit_reply(reply, _request())
    assert fitted.reply is reply and fitted.dropped == () and fitted.fits
    assert fitted.size == len(build(reply)) == 362
    small = DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=CHADDR, options={53: b"\x02", 54: SERVER.packed})
    assert fit_reply(small, _request()).size == len(build(small)) == 300  # padded to BOOTP's minimum


def test_issue_9_reply_fits_576_and_keeps_the_essentials() -> None:
    reply = _big_reply()
    assert len(build(reply)) == 705
    fitted = fit_reply(reply, _request(max_size=576))
    data = _check(fitted, reply)
    assert len(data) <= 548 and fitted.fits
    assert {1, 3, 51, 53, 54, 58, 59, 66, 67} <= set(fitted.reply.options)
    assert fitted.dropped
    assert fitted.reply.overload is None  # file and sname carry the boot file and server name


def test_no_option_57_means_576_too() -> None:
    fitted = fit_reply(_big_reply(), _request())
    assert fitted.limit == 548 and len(build(fitted.reply)) <= 548


def test_option_57_of_1500_allows_the_whole_reply() -> None:
    reply = _big_reply()
    fitted = fit_reply(reply, _request(max_size=1500))
    assert fitted.reply is reply and fitted.dropped == () and fitted.limit == 1472


def test_a_larger_limit_keeps_more() -> None:
    reply = _big_reply()
    small = fit_reply(reply, _request(max_size=576))
    medium = fit_reply(reply, _request(max_size=640))
    assert set(medium.dropped) < set(small.dropped)
    _check(medium, reply)
    assert medium.size <= 612


def test_overload_into_empty_file_keeps_every_option() -> None:
    reply = _big_reply(file=b"")
    del reply.options[252], reply.options[43]  # about 60 bytes too many: file's 127 take them
    fitted = fit_reply(reply, _request(max_size=576))
    data = _check(fitted, reply)
    assert fitted.dropped == () and fitted.fits and len(data) <= 548
    assert fitted.reply.overload is not None and fitted.reply.overload.file and not fitted.reply.overload.sname
    assert parse(data).options == reply.options  # option 52 is consumed by parse
    areas = _areas(data)
    assert _flag(data) == 1
    assert [c for c, _ in areas["options"]][:3] == [53, 54, 52]  # 52 right after 53 and 54


def test_overload_uses_sname_after_file() -> None:
    reply = _big_reply(file=b"", sname=b"")
    del reply.options[252]
    fitted = fit_reply(reply, _request(max_size=576))
    data = _check(fitted, reply)
    assert fitted.dropped == () and len(data) <= 548
    assert _flag(data) == 3
    assert set(_areas(data)) == {"options", "file", "sname"}


def test_overload_never_touches_a_used_file_field() -> None:
    reply = _big_reply(sname=b"")
    fitted = fit_reply(reply, _request(max_size=576))
    data = _check(fitted, reply)
    assert fitted.reply.overload is not None and not fitted.reply.overload.file
    assert parse(data).file == b"leaf-01-rack-17.cfg"
    assert _flag(data) == 2


def test_message_type_server_id_and_option_82_stay_in_the_options_field() -> None:
    relay82 = bytes((1, 2)) + b"d1" + bytes((2, 6)) + bytes(6)
    reply = _big_reply(file=b"", sname=b"", relay82=relay82)
    fitted = fit_reply(reply, _request(max_size=576, o82=relay82))
    areas = _areas(_check(fitted, reply))
    main = [c for c, _ in areas["options"]]
    assert main[:3] == [53, 54, 52] and main[-1] == 82
    assert fitted.reply.options[o.RELAY_AGENT_INFO] == relay82


def test_bootp_replies_are_never_overloaded() -> None:
    reply = _big_reply(file=b"", sname=b"")
    del reply.options[o.MESSAGE_TYPE], reply.options[o.SERVER_ID]
    fitted = fit_reply(reply, _request(max_size=576))
    assert fitted.reply.overload is None and fitted.dropped
    _check(fitted, reply)


# --- what is left out, and in which order ----------------------------------------------------------------

def _sized(code: int, n: int) -> tuple[int, bytes]:
    return code, bytes((code,)) * n


def test_unrequested_go_first_largest_first_then_requested_from_the_end() -> None:
    # room in the options field at 548: 548 - 240 - 1 (END) = 307 bytes of options
    essential = dict([_sized(53, 1), _sized(54, 4), _sized(51, 4), _sized(1, 4), _sized(3, 4)])  # 27 bytes
    asked = bytes([6, 15, 12, 42])
    extra = dict([_sized(6, 40), _sized(15, 40), _sized(12, 40), _sized(42, 40),   # asked: 4 x 42
                  _sized(100, 60), _sized(101, 20), _sized(102, 30)])              # not asked: 62 + 22 + 32
    reply = DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=CHADDR, file=b"f", sname=b"s",
                       options={**essential, **extra})
    # 27 + 168 + 116 = 311: 4 bytes too many; 100 (largest unasked) goes alone, 101 and 102 stay.
    fitted = fit_reply(reply, _request(asked=asked))
    assert fitted.dropped == (100,)
    _check(fitted, reply)
    # 12 grows by 120: the essentials and the four asked-for take 315, so the last asked-for (42) goes too;
    # the 22 bytes left then still carry 101, which is kept.
    reply.options[12] = bytes(160)
    fitted = fit_reply(reply, _request(asked=asked))
    assert fitted.dropped == (100, 102, 42)
    assert 101 in fitted.reply.options
    _check(fitted, reply)


def test_space_a_large_option_cannot_use_still_carries_smaller_ones() -> None:
    essential = dict([_sized(53, 1), _sized(54, 4)])  # 11 bytes
    reply = DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=CHADDR, file=b"f", sname=b"s",
                       options={**essential, **dict([_sized(6, 200), _sized(15, 200), _sized(12, 20)])})
    fitted = fit_reply(reply, _request(asked=bytes([6, 15, 12])))
    assert fitted.dropped == (15,)  # 6 and 12 fit beside the essentials, 15 does not
    _check(fitted, reply)


def test_essentials_alone_too_big_are_sent_anyway() -> None:
    opts = dict([_sized(53, 1), _sized(54, 4), _sized(82, 250), _sized(61, 250), _sized(67, 200),
                 _sized(6, 8), _sized(15, 20)])
    reply = DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=CHADDR, file=b"f", sname=b"s", options=opts)
    fitted = fit_reply(reply, _request())
    assert not fitted.fits and fitted.size > fitted.limit
    assert set(fitted.reply.options) == {53, 54, 82, 61, 67}
    assert fitted.dropped == (15, 6)  # least essential first
    _check(fitted, reply)


def test_long_option_is_kept_whole_in_the_options_field() -> None:
    reply = _big_reply(file=b"", sname=b"")
    reply.options[121] = bytes(300)  # two instances on the wire (RFC 3396)
    fitted = fit_reply(reply, _request(max_size=1000))
    data = _check(fitted, reply)
    assert fitted.reply.options[121] == bytes(300)
    assert [len(value) for code, value in _areas(data)["options"] if code == 121] == [255, 45]


@pytest.mark.parametrize("seed", range(40))
def test_random_replies_fit_whole(seed: int) -> None:
    rng = random.Random(seed)
    codes = rng.sample([c for c in range(1, 255) if c not in (o.OVERLOAD, o.PARAMETER_LIST)], 30)
    opts = {o.MESSAGE_TYPE: bytes((p.ACK,)), o.SERVER_ID: SERVER.packed}
    for code in codes:
        opts.setdefault(code, bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 16, 40, 90, 130]))))
    reply = DhcpPacket(op=p.BOOTREPLY, xid=seed, chaddr=CHADDR, options=opts,
                       file=rng.choice([b"", b"boot.cfg"]), sname=rng.choice([b"", b"ztp"]))
    asked = bytes(rng.sample(codes, 12))
    fitted = fit_reply(reply, _request(asked=asked, max_size=rng.choice([576, 600, 800, 1500])))
    _check(fitted, reply)
    unasked = [c for c in fitted.dropped if c not in asked]
    assert fitted.dropped[: len(unasked)] == tuple(unasked)  # unrequested always before requested


# --- the overloaded codec ---------------------------------------------------------------------------

def test_build_overloaded_layout() -> None:
    pkt = DhcpPacket(op=p.BOOTREPLY, xid=7, chaddr=CHADDR,
                     options={53: b"\x05", 54: SERVER.packed, 12: b"host", 15: b"lab", 82: b"\x01\x01x"},
                     overload=Overload(file=frozenset({12}), sname=frozenset({15})))
    data = build(pkt)
    assert data[108:115] == bytes((12, 4)) + b"host" + b"\xff" and data[115:236] == bytes(121)
    assert data[44:50] == bytes((15, 3)) + b"lab" + b"\xff" and data[50:108] == bytes(58)
    assert data[240:].startswith(bytes((53, 1, 5, 54, 4)) + SERVER.packed + bytes((52, 1, 3, 82, 3)))
    assert len(data) == 300
    assert parse(data) == pkt and parse(data).options == pkt.options


def test_build_overloaded_refuses_a_named_file_or_an_overflow() -> None:
    base = DhcpPacket(op=p.BOOTREPLY, xid=7, chaddr=CHADDR, options={53: b"\x05", 12: bytes(130)},
                      overload=Overload(file=frozenset({12})))
    with pytest.raises(ValueError, match="take 133 bytes of file"):
        build(base)
    base.options[12] = b"host"
    base.file = b"boot.cfg"
    with pytest.raises(ValueError, match="not both"):
        build(base)


def test_overload_naming_absent_options_builds_plainly() -> None:
    pkt = DhcpPacket(op=p.BOOTREPLY, xid=7, chaddr=CHADDR, options={53: b"\x05"},
                     overload=Overload(file=frozenset({12})))
    plain = DhcpPacket(op=p.BOOTREPLY, xid=7, chaddr=CHADDR, options={53: b"\x05"})
    assert build(pkt) == build(plain)


def test_fitting_twice_is_stable() -> None:
    reply = _big_reply(file=b"")
    once = fit_reply(reply, _request(max_size=576))
    twice = fit_reply(once.reply, _request(max_size=576))
    assert build(twice.reply) == build(once.reply) and twice.dropped == ()
