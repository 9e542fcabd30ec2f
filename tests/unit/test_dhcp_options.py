"""Typed option encoding for `options:` maps (RFC 2132 value types) and `hex:` values, plus decoding."""

from __future__ import annotations

import pytest

from ztp.dhcp.options import OPTION_TYPES, OptionValueError, decode_value, encode_value, u32


@pytest.mark.parametrize(
    ("code", "value", "wire"),
    [
        (1, "255.255.255.0", bytes((255, 255, 255, 0))),  # ip
        (3, ["10.60.0.1", "10.60.0.2"], bytes((10, 60, 0, 1, 10, 60, 0, 2))),  # ips
        (6, "10.60.0.1", bytes((10, 60, 0, 1))),  # ips: a single address is accepted
        (150, ["10.50.0.1"], bytes((10, 50, 0, 1))),  # RFC 5859 TFTP server address
        (2, -3600, b"\xff\xff\xf1\xf0"),  # i32 time offset
        (13, 65535, b"\xff\xff"),  # u16
        (23, 64, b"\x40"),  # u8 default TTL
        (51, 86400, b"\x00\x01\x51\x80"),  # u32
        (19, True, b"\x01"),  # bool
        (19, False, b"\x00"),
        (12, "leaf01", b"leaf01"),  # str
        (66, "10.60.0.1", b"10.60.0.1"),  # str, even when it looks like an address
        (67, 42, b"42"),  # str accepts a YAML integer
        (43, "abc", b"abc"),  # bytes: UTF-8 of a string
        (43, b"\x01\x02", b"\x01\x02"),
        (224, "site-local text", b"site-local text"),  # untyped code: a string is its UTF-8
    ],
)
def test_typed_values(code: int, value: object, wire: bytes) -> None:
    assert encode_value(code, value) == wire


@pytest.mark.parametrize(
    ("code", "text", "wire"),
    [
        (43, "hex:01037a7470", b"\x01\x03ztp"),  # the README's example
        (224, "hex:01:03:7a", b"\x01\x03z"),
        (1, "hex:ffffff00", b"\xff\xff\xff\x00"),  # hex overrides the type for any code
        (12, "hex:", b""),
        (125, "hex:DE AD be ef", b"\xde\xad\xbe\xef"),
    ],
)
def test_hex_values_for_any_code(code: int, text: str, wire: bytes) -> None:
    assert encode_value(code, text) == wire


@pytest.mark.parametrize(
    ("code", "value", "needle"),
    [
        (0, "x", "outside 1-254"),
        (255, "x", "outside 1-254"),
        (43, "hex:0g", "not valid hex"),
        (43, "hex:abc", "not valid hex"),  # odd number of digits
        (1, "10.60.0.256", "not an IPv4 address"),
        (1, "leaf01", "not an IPv4 address"),
        (3, ["10.60.0.1", "nope"], "not an IPv4 address"),
        (3, [], "at least one address"),
        (19, 1, "true or false"),
        (19, "yes", "true or false"),
        (51, "3600", "integer"),
        (51, True, "integer"),  # a YAML boolean is not a number
        (51, -1, "out of range"),
        (51, 2**32, "out of range"),
        (13, 65536, "out of range"),
        (23, 256, "out of range"),
        (2, 2**31, "out of range"),
        (12, "", "must not be empty"),
        (12, ["a"], "takes a string"),
        (43, 5, "string or 'hex:...'"),
        (224, 5, "no known type"),
    ],
)
def test_bad_values_name_the_problem(code: int, value: object, needle: str) -> None:
    with pytest.raises(OptionValueError) as info:
        encode_value(code, value)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_option_types_cover_the_options_ztp_sends() -> None:
    for code in (1, 3, 6, 12, 15, 28, 42, 43, 50, 51, 53, 54, 55, 58, 59, 60, 61, 66, 67, 82, 150):
        assert code in OPTION_TYPES


@pytest.mark.parametrize(
    ("code", "raw", "value"),
    [
        (1, bytes((255, 255, 255, 0)), "255.255.255.0"),
        (3, bytes((10, 0, 0, 1, 10, 0, 0, 2)), ["10.0.0.1", "10.0.0.2"]),
        (51, u32(3600), 3600),
        (53, b"\x05", 5),
        (19, b"\x01", True),
        (12, b"leaf01\x00", "leaf01"),  # NUL-terminated as dnsmasq sends it
        (55, bytes((1, 3, 6)), [1, 3, 6]),
        (61, b"\x01\x02\x00", "hex:010200"),
        (1, b"\x01\x02", "hex:0102"),  # wrong length for the type: shown raw
        (3, b"\x01\x02\x03", "hex:010203"),
        (51, b"\x01", "hex:01"),
        (12, b"\xff\xfe", "hex:fffe"),  # not UTF-8
        (224, b"abc", "hex:616263"),
    ],
)
def test_decode_value(code: int, raw: bytes, value: object) -> None:
    assert decode_value(code, raw) == value


def test_u32() -> None:
    assert u32(0xDEADBEEF) == b"\xde\xad\xbe\xef"
