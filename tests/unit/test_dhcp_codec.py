"""DHCP codec: golden captures of real peers (tests/data/dhcp, scripts/capture_golden.py), malformed input."""

from __future__ import annotations

import random
import struct
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ztp.dhcp import packet as p
from ztp.dhcp.packet import DhcpPacket, MalformedPacket, build, encode_options, mac_to_chaddr, parse
from ztp.dhcp.relayinfo import RelayInfo, build_relay_info, parse_relay_info, printable

CAPTURES = Path(__file__).resolve().parent.parent / "data" / "dhcp"
GOLDEN = ["dhclient_discover", "dhclient_request", "dnsmasq_offer", "udhcpc_discover", "dhcrelay_discover"]


def golden(name: str) -> bytes:
    return bytes.fromhex((CAPTURES / f"{name}.hex").read_text().strip())


# --- golden captures --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", GOLDEN)
def test_every_capture_has_a_readable_dump(name: str) -> None:
    dump = (CAPTURES / f"{name}.txt").read_text()
    assert "Dynamic Host Configuration Protocol" in dump
    assert len(golden(name)) == 300


def test_dhclient_discover() -> None:
    pkt = parse(golden("dhclient_discover"))
    assert pkt.op == p.BOOTREQUEST and not pkt.bootp
    assert pkt.xid == 0x8572E22C
    assert pkt.mac == "02:00:00:00:00:01"
    assert pkt.chaddr == mac_to_chaddr("02:00:00:00:00:01")
    assert (pkt.htype, pkt.hlen, pkt.hops, pkt.flags) == (1, 6, 0, 0)
    assert pkt.ciaddr == pkt.yiaddr == pkt.siaddr == pkt.giaddr == p.ZERO_IP
    assert pkt.message_type == p.DISCOVER
    # tests/data/dhclient.conf's request statement, in that order (ISC dhclient adds nothing).
    assert list(pkt.options[55]) == [1, 3, 6, 15, 12, 66, 67, 51, 58, 59]
    assert list(pkt.options) == [53, 55]
    assert not pkt.broadcast


def test_dhclient_request_selecting() -> None:
    pkt = parse(golden("dhclient_request"))
    assert pkt.xid == 0x8572E22C  # same exchange as the DISCOVER
    assert pkt.message_type == p.REQUEST
    assert pkt.option_ip(54) == IPv4Address("10.60.0.1")
    assert pkt.option_ip(50) == IPv4Address("10.60.0.145")
    assert pkt.ciaddr == p.ZERO_IP
    assert list(pkt.options) == [53, 54, 50, 55]


def test_dnsmasq_offer_boot_fields() -> None:
    pkt = parse(golden("dnsmasq_offer"))
    offer_to = parse(golden("dhclient_discover"))
    assert pkt.op == p.BOOTREPLY
    assert pkt.xid == offer_to.xid and pkt.chaddr == offer_to.chaddr
    assert pkt.message_type == p.OFFER
    assert pkt.yiaddr == IPv4Address("10.60.0.145")
    assert pkt.siaddr == IPv4Address("10.60.0.1")  # --dhcp-boot=...,,10.60.0.1
    # dhclient asked for 67, so dnsmasq moved the boot file out of the BOOTP field into the option.
    # dnsmasq NUL-terminates option 67 (some ROMs need it); tshark shows "leaf01.cfg".
    assert pkt.options[67] == b"leaf01.cfg\0"
    assert pkt.file == b"" and pkt.sname == b""
    assert 66 not in pkt.options  # no server name given to --dhcp-boot
    assert pkt.option_ip(54) == IPv4Address("10.60.0.1")
    assert struct.unpack("!I", pkt.options[51])[0] == 3600
    assert struct.unpack("!I", pkt.options[58])[0] == 1800
    assert struct.unpack("!I", pkt.options[59])[0] == 3150
    assert pkt.options[1] == IPv4Address("255.255.255.0").packed
    assert list(pkt.options)[:2] == [53, 54]


def test_udhcpc_discover() -> None:
    pkt = parse(golden("udhcpc_discover"))
    assert pkt.xid == 0x18F5262C
    assert pkt.mac == "02:00:00:00:00:01"
    assert pkt.message_type == p.DISCOVER
    assert pkt.options[12] == b"udhcpc-sw1"
    assert pkt.options[61] == b"\x01" + bytes.fromhex("020000000001")  # RFC 2132 §9.14: type 1 + MAC
    assert pkt.options[57] == struct.pack("!H", 576)
    assert pkt.options[60] == b"udhcp 1.35.0"
    assert list(pkt.options[55]) == [1, 3, 6, 12, 15, 28, 42]


def test_dhcrelay_discover_option82() -> None:
    pkt = parse(golden("dhcrelay_discover"))
    assert pkt.xid == 0x000B4643
    assert pkt.mac == "02:00:00:00:00:07"
    assert pkt.giaddr == IPv4Address("10.70.0.1")
    assert pkt.hops == 1
    assert pkt.message_type == p.DISCOVER
    assert list(pkt.options)[-1] == 82  # RFC 3046 §2.1: the relay appends it last
    info = parse_relay_info(pkt.options[82])
    assert info.suboptions == ((1, b"d1"),)  # ISC dhcrelay: circuit-id = the receiving interface name
    assert info.circuit_id == b"d1" and info.remote_id is None
    assert printable(info.circuit_id) == "d1"
    assert build_relay_info(info) == pkt.options[82]


@pytest.mark.parametrize("name", GOLDEN)
def test_round_trip_preserves_every_field(name: str) -> None:
    raw = golden(name)
    first = parse(raw)
    again = parse(build(first))
    assert again == first
    # Option order survives too (dict equality ignores it).
    assert list(again.options) == list(first.options)


@pytest.mark.parametrize("name", GOLDEN)
def test_build_reproduces_the_capture_byte_for_byte(name: str) -> None:
    # All five are 300-byte, single-instance options, END then zero padding: exactly what build() emits.
    assert build(parse(golden(name))) == golden(name)


# --- malformed input --------------------------------------------------------------------------------

def _request(**kw: object) -> bytes:
    base = DhcpPacket(op=p.BOOTREQUEST, xid=0x1234, chaddr=mac_to_chaddr("02:00:00:00:00:09"),
                      options={53: bytes((p.DISCOVER,))})
    return build(replace(base, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 100, 235])
def test_shorter_than_header(size: int) -> None:
    with pytest.raises(MalformedPacket) as info:
        parse(golden("dhclient_discover")[:size])
    assert info.value.offset == 0 and "shorter" in info.value.reason


def test_bad_magic_cookie() -> None:
    raw = bytearray(golden("dhclient_discover"))
    raw[236:240] = b"\x63\x82\x53\x00"
    with pytest.raises(MalformedPacket) as info:
        parse(bytes(raw))
    assert info.value.offset == 236 and "cookie" in info.value.reason


def test_option_overruns_the_datagram() -> None:
    raw = golden("dhclient_discover")[:240] + bytes((53, 1, 1, 55, 10, 1, 2, 3))
    with pytest.raises(MalformedPacket) as info:
        parse(raw)
    assert info.value.offset == 243 and "55" in info.value.reason


def test_option_without_length_byte() -> None:
    raw = golden("dhclient_discover")[:240] + bytes((53, 1, 1, 12))
    with pytest.raises(MalformedPacket) as info:
        parse(raw)
    assert info.value.offset == 243


def test_hlen_over_16() -> None:
    raw = bytearray(golden("dhclient_discover"))
    raw[2] = 17
    with pytest.raises(MalformedPacket) as info:
        parse(bytes(raw))
    assert info.value.offset == 2 and "hlen" in info.value.reason


@pytest.mark.parametrize("op", [0, 3, 255])
def test_unknown_op(op: int) -> None:
    raw = bytearray(golden("dhclient_discover"))
    raw[0] = op
    with pytest.raises(MalformedPacket) as info:
        parse(bytes(raw))
    assert info.value.offset == 0 and f"op {op}" in info.value.reason


def test_malformed_is_a_value_error_with_where() -> None:
    exc = MalformedPacket("bad thing", 42)
    assert isinstance(exc, ValueError)
    assert str(exc) == "bad thing at offset 42"


def test_missing_end_is_tolerated() -> None:
    raw = golden("dhclient_discover")[:240] + bytes((53, 1, 1))
    assert parse(raw).message_type == p.DISCOVER


def test_pad_options_are_skipped_and_data_after_end_ignored() -> None:
    raw = golden("dhclient_discover")[:240] + bytes((0, 0, 53, 1, 3, 0, 255, 12, 200))
    pkt = parse(raw)
    assert pkt.options == {53: b"\x03"}


def test_plain_bootp_without_cookie() -> None:
    raw = golden("dhclient_discover")[:236]
    pkt = parse(raw)
    assert pkt.bootp and pkt.options == {} and pkt.message_type is None
    rebuilt = build(pkt)
    assert len(rebuilt) == 300 and rebuilt[236:240] == bytes(4)  # no cookie added
    assert parse(rebuilt) == pkt


def test_rfc951_bootp_with_zeroed_vend_area_is_not_malformed() -> None:
    # A 300-byte RFC 951 BOOTREQUEST whose 64-byte vend field is all zeros (no RFC 1497 cookie).
    raw = golden("dhclient_discover")[:236] + bytes(64)
    pkt = parse(raw)
    assert pkt.bootp and pkt.options == {} and pkt.mac == "02:00:00:00:00:01"


def test_cstring_fields_stop_at_nul() -> None:
    raw = bytearray(_request(sname=b"srv", file=b"boot.bin"))
    raw[44 + 4 : 44 + 10] = b"\0junk\0"[:6]
    raw[108 + 9 : 108 + 13] = b"xyz\0"
    pkt = parse(bytes(raw))
    assert pkt.sname == b"srv" and pkt.file == b"boot.bin"
    raw[44:108] = b"no terminator".ljust(64, b"x")
    raw[108:236] = bytes(128)
    pkt = parse(bytes(raw))
    assert pkt.sname == b"no terminator".ljust(64, b"x") and pkt.file == b""
    raw[44:108] = b"\0after a leading nul".ljust(64, b"\0")
    assert parse(bytes(raw)).sname == b""


def test_mac_uses_only_hlen_bytes() -> None:
    pkt = parse(_request(hlen=4))
    assert pkt.mac == "02:00:00:00"


def test_message_type_needs_exactly_one_byte() -> None:
    pkt = parse(_request(options={53: b"\x01\x01"}))
    assert pkt.message_type is None
    assert parse(_request(options={53: b""})).message_type is None


def test_option_ip_requires_four_bytes() -> None:
    pkt = parse(_request(options={53: b"\x01", 50: b"\x0a\x00\x00", 54: IPv4Address("10.0.0.1").packed}))
    assert pkt.option_ip(50) is None
    assert pkt.option_ip(54) == IPv4Address("10.0.0.1")
    assert pkt.option_ip(99) is None


# --- RFC 3396 long options, RFC 2132 §9.3 overload, padding --------------------------------------

def test_long_option_is_split_and_concatenated_back() -> None:
    value = bytes(range(256)) * 2 + b"tail"  # 516 bytes -> 255 + 255 + 6
    encoded = encode_options({53: b"\x05", 43: value, 61: b"\x01abc"})
    assert encoded[:3] == bytes((53, 1, 5))
    assert encoded[3:5] == bytes((43, 255))
    assert encoded[3 + 257 : 3 + 259] == bytes((43, 255))
    assert encoded[3 + 514 : 3 + 516] == bytes((43, 6))
    assert encoded[-1] == 255
    pkt = parse(_request(options={53: b"\x05", 43: value, 61: b"\x01abc"}))
    assert pkt.options[43] == value
    assert list(pkt.options) == [53, 43, 61]


def test_repeated_option_instances_are_concatenated_in_order() -> None:
    # RFC 3396 §5: split instances need not be adjacent.
    raw = golden("dhclient_discover")[:240] + bytes((12, 2)) + b"ab" + bytes((53, 1, 1, 12, 3)) + b"cde\xff"
    assert parse(raw).options[12] == b"abcde"


def test_empty_option_is_encoded_with_zero_length() -> None:
    assert encode_options({80: b""}) == bytes((80, 0, 255))
    assert parse(_request(options={53: b"\x01", 80: b""})).options[80] == b""


def test_pad_and_end_codes_are_never_encoded_as_options() -> None:
    assert encode_options({0: b"x", 255: b"y", 53: b"\x01"}) == bytes((53, 1, 1, 255))


def test_encoding_matches_a_byte_by_byte_tlv_encoder() -> None:
    """Every code and length (RFC 3396 splits included), in the given order, against the plainest encoder."""

    def plain(options: dict[int, bytes]) -> bytes:
        out = bytearray()
        for code, value in options.items():
            if code in (0, 255):
                continue
            chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [b""]
            for chunk in chunks:
                out += bytes((code, len(chunk))) + chunk
        return bytes(out + b"\xff")

    rng = random.Random(3396)
    for _ in range(400):
        options = {rng.randrange(256): rng.randbytes(rng.choice([0, 1, 4, rng.randrange(256), rng.randrange(900)]))
                   for _ in range(rng.randrange(1, 20))}
        assert encode_options(options) == plain(options)
    assert encode_options({}) == b"\xff"


def _with_overload(flag: int, file_opts: bytes, sname_opts: bytes) -> bytes:
    raw = bytearray(build(DhcpPacket(op=p.BOOTREQUEST, xid=7, chaddr=mac_to_chaddr("02:00:00:00:00:09"),
                                     options={53: b"\x01", 52: bytes((flag,)), 12: b"main"})))
    raw[108 : 108 + len(file_opts)] = file_opts
    raw[44 : 44 + len(sname_opts)] = sname_opts
    return bytes(raw)


def test_overload_file_and_sname_carry_options() -> None:
    file_area = bytes((67, 4)) + b"boot" + bytes((12, 4)) + b"-ext" + b"\xff"
    sname_area = bytes((66, 3)) + b"srv" + b"\xff"
    pkt = parse(_with_overload(3, file_area, sname_area))
    assert pkt.options[67] == b"boot"
    assert pkt.options[66] == b"srv"
    # RFC 3396: options area first, then file, then sname; 52 itself is consumed.
    assert pkt.options[12] == b"main-ext"
    assert 52 not in pkt.options
    assert pkt.file == b"" and pkt.sname == b""


def test_overload_file_only_keeps_sname() -> None:
    raw = bytearray(_with_overload(1, bytes((67, 4)) + b"boot\xff", b""))
    raw[44:48] = b"name"
    pkt = parse(bytes(raw))
    assert pkt.options[67] == b"boot"
    assert pkt.sname == b"name" and pkt.file == b""


def test_overload_sname_only_keeps_file() -> None:
    raw = bytearray(_with_overload(2, b"", bytes((66, 3)) + b"srv\xff"))
    raw[108:112] = b"f.cf"
    pkt = parse(bytes(raw))
    assert pkt.options[66] == b"srv" and pkt.file == b"f.cf" and pkt.sname == b""


def test_overload_area_overrun_is_malformed() -> None:
    sname_area = bytes(62) + bytes((66, 10))  # starts 2 bytes before the end of sname
    with pytest.raises(MalformedPacket) as info:
        parse(_with_overload(2, b"", sname_area))
    assert info.value.offset == 44 + 62


@pytest.mark.parametrize("opts", [{53: b"\x02"}, {}])
def test_replies_are_padded_to_300(opts: dict[int, bytes]) -> None:
    pkt = DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=mac_to_chaddr("02:00:00:00:00:01"), options=opts)
    raw = build(pkt)
    assert len(raw) == p.MIN_REPLY_LEN == 300
    assert raw[236:240] == p.MAGIC_COOKIE
    assert raw[240:].rstrip(b"\0").endswith(b"\xff")


def test_large_message_is_not_truncated_and_min_size_is_tunable() -> None:
    pkt = DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=mac_to_chaddr("02:00:00:00:00:01"),
                     options={53: b"\x05", 43: bytes(400)})
    raw = build(pkt)
    assert len(raw) == 240 + 3 + 2 + 255 + 2 + 145 + 1
    assert len(build(pkt, min_size=1000)) == 1000
    assert len(build(DhcpPacket(op=1, xid=1, chaddr=b""), min_size=0)) == 241


def test_build_rejects_oversized_sname_and_file() -> None:
    chaddr = mac_to_chaddr("02:00:00:00:00:01")
    build(DhcpPacket(op=2, xid=1, chaddr=chaddr, sname=b"s" * 63, file=b"f" * 127))
    with pytest.raises(ValueError):
        build(DhcpPacket(op=2, xid=1, chaddr=chaddr, sname=b"s" * 64))
    with pytest.raises(ValueError):
        build(DhcpPacket(op=2, xid=1, chaddr=chaddr, file=b"f" * 128))


def test_broadcast_flag_and_header_fields_round_trip() -> None:
    pkt = DhcpPacket(op=p.BOOTREQUEST, xid=0xFFFFFFFF, chaddr=mac_to_chaddr("aa-bb-cc-dd-ee-ff"), hops=3,
                     secs=65535, flags=p.BROADCAST_FLAG, ciaddr=IPv4Address("10.60.0.5"),
                     yiaddr=IPv4Address("10.60.0.6"), siaddr=IPv4Address("10.60.0.7"),
                     giaddr=IPv4Address("10.70.0.1"), sname=b"server", file=b"dir/boot.cfg",
                     options={53: b"\x03", 61: b"\x01\xaa\xbb\xcc\xdd\xee\xff"})
    again = parse(build(pkt))
    assert again == pkt
    assert again.broadcast and again.mac == "aa:bb:cc:dd:ee:ff"


@pytest.mark.parametrize("spelling", ["02:00:00:00:00:0a", "02-00-00-00-00-0A", "0200.0000.000a",
                                      "02000000000a"])
def test_mac_to_chaddr_spellings(spelling: str) -> None:
    assert mac_to_chaddr(spelling) == bytes.fromhex("02000000000a") + bytes(10)


# --- option 82 codec ------------------------------------------------------------------------------

def test_relay_info_round_trip_and_lookups() -> None:
    info = RelayInfo(((1, b"r1-port7"), (2, b"\x02\x00\x00\x00\x00\xaa"), (1, b"second")))
    raw = build_relay_info(info)
    assert parse_relay_info(raw) == info
    assert info.circuit_id == b"r1-port7"  # the first one wins
    assert printable(info.remote_id or b"") == "02:00:00:00:00:aa"
    assert parse_relay_info(b"") == RelayInfo(())


@pytest.mark.parametrize(("raw", "offset"), [(b"\x01", 0), (b"\x01\x05abc", 0), (b"\x01\x01a\x02\x03xy", 3)])
def test_relay_info_malformed(raw: bytes, offset: int) -> None:
    with pytest.raises(MalformedPacket) as info:
        parse_relay_info(raw)
    assert info.value.offset == offset


def test_relay_info_suboption_too_long() -> None:
    with pytest.raises(ValueError):
        build_relay_info(RelayInfo(((1, bytes(256)),)))


def test_address_fields_are_shared_objects_from_a_bounded_table() -> None:
    # parse builds each nonzero address once (a relay's giaddr arrives with every request) and forgets them all
    # when the table is full; 0.0.0.0 is the one ZERO_IP.
    def request(giaddr: str, ciaddr: str = "0.0.0.0") -> DhcpPacket:
        return DhcpPacket(op=p.BOOTREQUEST, xid=1, chaddr=p.mac_to_chaddr("02:00:00:00:00:01"),
                          giaddr=IPv4Address(giaddr), ciaddr=IPv4Address(ciaddr), options={53: b"\x01"})

    a, b = parse(build(request("10.64.0.2"))), parse(build(request("10.64.0.2", "10.70.0.9")))
    assert a.giaddr == IPv4Address("10.64.0.2") and a.giaddr is b.giaddr and a.ciaddr is p.ZERO_IP
    assert b.ciaddr == IPv4Address("10.70.0.9") and b.yiaddr is p.ZERO_IP and b.siaddr is p.ZERO_IP
    for n in range(p._ADDRESSES_MAX + 10):
        ciaddr = IPv4Address(0x0B000000 + n)
        assert parse(build(request("10.64.0.2", str(ciaddr)))).ciaddr == ciaddr
    assert len(p._ADDRESSES) <= p._ADDRESSES_MAX
    assert parse(build(request("255.255.255.255"))).giaddr == IPv4Address("255.255.255.255")
