"""TFTP codec: golden bytes for each packet type and every malformed shape we know of."""

from __future__ import annotations

import pytest

from ztp.tftp.packet import (
    Ack,
    Data,
    Error,
    OptionAck,
    ReadRequest,
    TftpMalformed,
    WriteRequest,
    build,
    error_datagram,
    parse,
)

# RRQ as curl 7.88 sends it: "leaf01.cfg", octet, tsize 0, blksize 1468, timeout 6.
RRQ_CURL = bytes.fromhex(
    "0001" "6c65616630312e63666700" "6f6374657400"
    "7473697a650030 00" "626c6b73697a6500 3134363800" "74696d656f75740036 00".replace(" ", "")
)


def test_rrq_with_options_golden() -> None:
    pkt = parse(RRQ_CURL)
    assert pkt == ReadRequest("leaf01.cfg", "octet", {"tsize": "0", "blksize": "1468", "timeout": "6"})
    assert build(pkt) == RRQ_CURL


def test_rrq_mode_and_option_names_are_case_insensitive() -> None:
    pkt = parse(b"\x00\x01f\x00OCTET\x00BlkSize\x001024\x00WINDOWSIZE\x004\x00")
    assert isinstance(pkt, ReadRequest)
    assert pkt.mode == "octet"
    assert pkt.options == {"blksize": "1024", "windowsize": "4"}


def test_rrq_duplicate_option_first_wins_and_trailing_padding_ignored() -> None:
    pkt = parse(b"\x00\x01f\x00octet\x00blksize\x00512\x00blksize\x0065464\x00\x00\x00")
    assert isinstance(pkt, ReadRequest)
    assert pkt.options == {"blksize": "512"}


def test_rrq_bad_option_value_is_kept_as_text_not_an_error() -> None:
    pkt = parse(b"\x00\x01f\x00octet\x00blksize\x00abc\x00")
    assert isinstance(pkt, ReadRequest)
    assert pkt.options == {"blksize": "abc"}


def test_non_ascii_filename_round_trips() -> None:
    raw = b"\x00\x01\xff\xfe.cfg\x00octet\x00"
    pkt = parse(raw)
    assert isinstance(pkt, ReadRequest)
    assert pkt.filename == "\udcff\udcfe.cfg"
    assert build(pkt) == raw
    utf8 = parse("\x00\x01café.cfg\x00octet\x00".encode())
    assert isinstance(utf8, ReadRequest) and utf8.filename == "café.cfg"


def test_wrq() -> None:
    assert parse(b"\x00\x02up.bin\x00octet\x00") == WriteRequest("up.bin", "octet", {})


def test_oack_golden() -> None:
    raw = b"\x00\x06blksize\x001468\x00tsize\x002345\x00"
    assert build(OptionAck({"blksize": "1468", "tsize": "2345"})) == raw
    assert parse(raw) == OptionAck({"blksize": "1468", "tsize": "2345"})


def test_data_golden() -> None:
    assert build(Data(1, b"hello")) == bytes.fromhex("00030001") + b"hello"
    assert parse(bytes.fromhex("0003ffff")) == Data(65535, b"")
    assert build(Data(65536, b"")) == bytes.fromhex("00030000")  # rollover on the wire


def test_ack_golden_and_padding_tolerated() -> None:
    assert build(Ack(258)) == bytes.fromhex("00040102")
    assert parse(bytes.fromhex("00040102")) == Ack(258)
    assert parse(bytes.fromhex("0004010200000000")) == Ack(258)


def test_error_golden() -> None:
    raw = b"\x00\x05\x00\x01file not found\x00"
    assert error_datagram(1, "file not found") == raw
    assert build(Error(1, "file not found")) == raw
    assert parse(raw) == Error(1, "file not found")
    assert parse(b"\x00\x05\x00\x00no terminator") == Error(0, "no terminator")
    assert error_datagram(0, "a\0b").endswith(b"a b\x00")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "offset 0"),
        (b"\x00", "offset 0"),
        (b"\x00\x07abc", "unknown opcode 7"),
        (b"\xff\xff", "unknown opcode 65535"),
        (b"\x00\x01leaf.cfg", "not NUL-terminated"),
        (b"\x00\x01leaf.cfg\x00octet", "offset 11"),
        (b"\x00\x01leaf.cfg\x00", "filename and mode"),
        (b"\x00\x01\x00octet\x00", "empty filename at offset 2"),
        (b"\x00\x01f\x00\x00", "empty mode"),
        (b"\x00\x01f\x00octet\x00blksize\x00", "has no value"),
        (b"\x00\x03\x00", "offset 2"),
        (b"\x00\x04\x01", "offset 2"),
        (b"\x00\x05", "offset 2"),
        (b"\x00\x06blksize", "not NUL-terminated"),
    ],
)
def test_malformed(raw: bytes, fragment: str) -> None:
    with pytest.raises(TftpMalformed, match=fragment):
        parse(raw)


def test_malformed_is_a_value_error() -> None:
    assert issubclass(TftpMalformed, ValueError)


def test_random_garbage_only_raises_tftp_malformed() -> None:
    import random

    rng = random.Random(1350)
    seeds = [RRQ_CURL, b"\x00\x06blksize\x001468\x00", b"\x00\x05\x00\x01x\x00", b"\x00\x04\x00\x01"]
    for _ in range(5000):
        buf = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            if buf:
                buf[rng.randrange(len(buf))] = rng.randrange(256)
        if rng.random() < 0.3:
            del buf[rng.randrange(len(buf) + 1):]
        try:
            parse(bytes(buf))
        except TftpMalformed:
            pass
