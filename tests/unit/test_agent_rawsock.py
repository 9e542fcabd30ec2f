"""The agent's link-layer framing: Ethernet/IPv4/UDP build with checksums (RFC 791, 768, 1071), ARP probe and
announcement (RFC 5227 §2.1.1, §2.3), and frame parsing with errors that say where."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from ztp.agent.rawsock import (
    BROADCAST_MAC,
    ETH_P_ARP,
    ETH_P_IP,
    ZERO_MAC,
    ArpFrame,
    FrameError,
    UdpFrame,
    build_arp_announcement,
    build_arp_probe,
    build_udp_frame,
    inet_checksum,
    mac_bytes,
    parse_frame,
)

MAC = bytes.fromhex("025a54000001")
SERVER_MAC = bytes.fromhex("02000000ff01")
ZERO = IPv4Address("0.0.0.0")
BCAST = IPv4Address("255.255.255.255")
ADDR = IPv4Address("10.60.1.5")


def test_checksum_rfc1071_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum (ones' complement) to ddf2.
    assert inet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2


def test_checksum_pads_odd_length_and_folds_carries() -> None:
    assert inet_checksum(b"\x01") == inet_checksum(b"\x01\x00") == 0xFEFF
    assert inet_checksum(b"\xff\xff\x00\x01") == 0xFFFE  # ffff + 0001 = 1_0000 -> fold -> 0001


def test_udp_frame_layout_and_checksums_verify() -> None:
    payload = b"\x01\x01\x06\x00hello dhcp"
    frame = build_udp_frame(MAC, BROADCAST_MAC, ZERO, BCAST, 68, 67, payload)
    assert frame[:14] == BROADCAST_MAC + MAC + b"\x08\x00"
    ip = frame[14:34]
    version_ihl, tos, total, ident, frag, ttl, proto = struct.unpack("!BBHHHBB", ip[:10])
    assert (version_ihl, tos, total, ident, frag, ttl, proto) == (0x45, 0x10, 20 + 8 + len(payload), 0, 0, 64, 17)
    assert ip[12:16] == ZERO.packed and ip[16:20] == BCAST.packed
    assert inet_checksum(ip) == 0  # a correct header sums to all ones
    udp = frame[34:]
    assert struct.unpack("!HHH", udp[:6]) == (68, 67, 8 + len(payload))
    pseudo = ZERO.packed + BCAST.packed + struct.pack("!BBH", 0, 17, len(udp))
    assert inet_checksum(pseudo + udp) == 0
    assert udp[8:] == payload


def test_udp_checksum_of_zero_is_sent_as_all_ones() -> None:
    # RFC 768: a computed checksum of 0 is transmitted as ffff (0 means "no checksum").
    probe = build_udp_frame(MAC, BROADCAST_MAC, ZERO, BCAST, 68, 67, b"\0\0")
    first = struct.unpack("!H", probe[40:42])[0]
    frame = build_udp_frame(MAC, BROADCAST_MAC, ZERO, BCAST, 68, 67, first.to_bytes(2, "big"))
    assert frame[40:42] == b"\xff\xff"


def test_udp_frame_round_trips_and_ethernet_padding_is_ignored() -> None:
    frame = build_udp_frame(SERVER_MAC, MAC, IPv4Address("10.60.0.1"), ADDR, 67, 68, b"offer")
    parsed = parse_frame(frame + bytes(20))  # short frames are padded to 60 bytes on the wire
    assert parsed == UdpFrame(SERVER_MAC, MAC, IPv4Address("10.60.0.1"), ADDR, 67, 68, b"offer")


# RFC 5227 §2.1.1 probe from 02:5a:54:00:00:01 for 10.60.1.5, as tshark shows it: "Who has 10.60.1.5? Tell
# 0.0.0.0".
ARP_PROBE = bytes.fromhex(
    "ffffffffffff" "025a54000001" "0806"
    "0001" "0800" "06" "04" "0001"
    "025a54000001" "00000000"
    "000000000000" "0a3c0105"
)


def test_arp_probe_golden() -> None:
    assert build_arp_probe(MAC, ADDR) == ARP_PROBE
    assert parse_frame(ARP_PROBE) == ArpFrame(1, MAC, ZERO, ZERO_MAC, ADDR)


def test_arp_announcement_has_sender_and_target_both_the_address() -> None:
    frame = build_arp_announcement(MAC, ADDR)
    assert frame[:14] == BROADCAST_MAC + MAC + ETH_P_ARP.to_bytes(2, "big")
    assert parse_frame(frame) == ArpFrame(1, MAC, ADDR, ZERO_MAC, ADDR)


def test_arp_reply_parses() -> None:
    reply = (MAC + SERVER_MAC + b"\x08\x06" + bytes.fromhex("0001080006040002") + SERVER_MAC + ADDR.packed
             + MAC + ZERO.packed + bytes(18))
    assert parse_frame(reply) == ArpFrame(2, SERVER_MAC, ADDR, MAC, ZERO)


def test_other_protocols_are_not_errors() -> None:
    udp = bytearray(build_udp_frame(MAC, BROADCAST_MAC, ZERO, BCAST, 68, 67, b"x"))
    ipv6 = bytes(udp[:12]) + b"\x86\xdd" + bytes(udp[14:])
    tcp = bytes(udp[:23]) + b"\x06" + bytes(udp[24:])
    fragment = bytes(udp[:20]) + b"\x00\x10" + bytes(udp[22:])
    arp_ipv6 = ARP_PROBE[:16] + b"\x86\xdd" + ARP_PROBE[18:]
    for frame in (ipv6, tcp, fragment, arp_ipv6):
        assert parse_frame(frame) is None


@pytest.mark.parametrize("frame, where", [
    (b"\x00" * 13, "13-byte frame is shorter than an Ethernet header at offset 0"),
    (ARP_PROBE[:30], "ARP packet truncated at offset 30"),
    (BROADCAST_MAC + MAC + ETH_P_IP.to_bytes(2, "big") + bytes(10), "IPv4 header truncated at offset 14"),
    (BROADCAST_MAC + MAC + ETH_P_IP.to_bytes(2, "big") + b"\x65" + bytes(27), r"version/IHL 0x65\) at offset 14"),
])
def test_malformed_frames_say_where(frame: bytes, where: str) -> None:
    with pytest.raises(FrameError, match=where):
        parse_frame(frame)


def test_udp_length_beyond_ip_packet_is_an_error() -> None:
    frame = bytearray(build_udp_frame(MAC, BROADCAST_MAC, ZERO, BCAST, 68, 67, b"abcd"))
    frame[38:40] = (8 + 50).to_bytes(2, "big")
    with pytest.raises(FrameError, match="UDP length 58 does not fit the IP packet at offset 38"):
        parse_frame(bytes(frame))


def test_mac_bytes() -> None:
    assert mac_bytes("02:5A:54:00:00:01") == mac_bytes("02-5a-54-00-00-01") == MAC
    with pytest.raises(ValueError, match="not a 6-byte MAC"):
        mac_bytes("02:5a:54")
