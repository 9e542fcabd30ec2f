"""DHCP option codes and their value types (RFC 2132, RFC 3046, RFC 4702...): typed encode and decode."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import Final, Literal

SUBNET_MASK: Final = 1
ROUTERS: Final = 3
DNS_SERVERS: Final = 6
HOST_NAME: Final = 12
DOMAIN_NAME: Final = 15
BROADCAST_ADDRESS: Final = 28
NTP_SERVERS: Final = 42
VENDOR_SPECIFIC: Final = 43
REQUESTED_IP: Final = 50
LEASE_TIME: Final = 51
OVERLOAD: Final = 52
MESSAGE_TYPE: Final = 53
SERVER_ID: Final = 54
PARAMETER_LIST: Final = 55
MESSAGE: Final = 56
MAX_MESSAGE_SIZE: Final = 57
RENEWAL_TIME: Final = 58
REBINDING_TIME: Final = 59
VENDOR_CLASS: Final = 60
CLIENT_ID: Final = 61
TFTP_SERVER_NAME: Final = 66
BOOTFILE_NAME: Final = 67
RELAY_AGENT_INFO: Final = 82
TFTP_SERVER_ADDRESS: Final = 150  # RFC 5859

OptionType = Literal["ip", "ips", "u8", "u16", "u32", "i32", "bool", "str", "bytes"]

#: Value types by code: RFC 2132 §3-9 plus the few later options ZTP devices use.
OPTION_TYPES: Final[dict[int, OptionType]] = {
    1: "ip", 2: "i32", 3: "ips", 4: "ips", 5: "ips", 6: "ips", 7: "ips", 8: "ips", 9: "ips", 10: "ips",
    11: "ips", 12: "str", 13: "u16", 14: "str", 15: "str", 16: "ip", 17: "str", 18: "str", 19: "bool",
    20: "bool", 22: "u16", 23: "u8", 24: "u32", 26: "u16", 27: "bool", 28: "ip", 29: "bool", 30: "bool",
    31: "bool", 32: "ip", 34: "bool", 35: "u32", 36: "bool", 37: "u8", 38: "u32", 39: "bool", 40: "str",
    41: "ips", 42: "ips", 43: "bytes", 44: "ips", 45: "ips", 46: "u8", 47: "str", 48: "ips", 49: "ips",
    50: "ip", 51: "u32", 53: "u8", 54: "ip", 55: "bytes", 56: "str", 57: "u16", 58: "u32", 59: "u32",
    60: "str", 61: "bytes", 64: "str", 65: "ips", 66: "str", 67: "str", 68: "ips", 69: "ips", 70: "ips",
    71: "ips", 72: "ips", 73: "ips", 74: "ips", 75: "ips", 76: "ips", 82: "bytes", 119: "bytes",
    121: "bytes", 150: "ips",
}

OPTION_NAMES: Final[dict[int, str]] = {
    1: "subnet_mask", 3: "routers", 6: "dns_servers", 12: "hostname", 15: "domain_name", 28: "broadcast",
    42: "ntp_servers", 43: "vendor_specific", 50: "requested_ip", 51: "lease_time", 53: "message_type",
    54: "server_id", 55: "parameter_list", 56: "message", 57: "max_message_size", 58: "renewal_time",
    59: "rebinding_time", 60: "vendor_class", 61: "client_id", 66: "tftp_server_name",
    67: "bootfile_name", 82: "relay_agent_info", 150: "tftp_server_address",
}


class OptionValueError(ValueError):
    """A configured option value that does not fit its code's type."""


OptionValue = str | int | bool | list[str] | list[int] | list[str | int] | bytes


def _ip(value: object) -> bytes:
    try:
        return IPv4Address(str(value)).packed
    except ValueError as exc:
        raise OptionValueError(f"{value!r} is not an IPv4 address") from exc


def encode_value(code: int, value: object) -> bytes:
    """Encode a configured value for option `code`: typed by OPTION_TYPES, or `hex:...` for any code."""
    if not 1 <= code <= 254:
        raise OptionValueError(f"option code {code} is outside 1-254")
    if isinstance(value, str) and value.startswith("hex:"):
        digits = value[4:].replace(":", "").replace(" ", "")
        try:
            return bytes.fromhex(digits)
        except ValueError as exc:
            raise OptionValueError(f"{value!r} is not valid hex") from exc
    if isinstance(value, bytes):
        return value
    kind = OPTION_TYPES.get(code)
    if kind is None:
        if isinstance(value, str):
            return value.encode()
        raise OptionValueError(f"option {code} has no known type: give a string or 'hex:...'")
    if kind == "ip":
        return _ip(value)
    if kind == "ips":
        items: Iterable[object] = value if isinstance(value, list) else [value]
        out = b"".join(_ip(v) for v in items)
        if not out:
            raise OptionValueError(f"option {code} needs at least one address")
        return out
    if kind == "bool":
        if not isinstance(value, bool):
            raise OptionValueError(f"option {code} takes true or false, not {value!r}")
        return b"\x01" if value else b"\x00"
    if kind in ("u8", "u16", "u32", "i32"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionValueError(f"option {code} takes an integer, not {value!r}")
        fmt = {"u8": "!B", "u16": "!H", "u32": "!I", "i32": "!i"}[kind]
        try:
            return struct.pack(fmt, value)
        except struct.error as exc:
            raise OptionValueError(f"{value} is out of range for option {code} ({kind})") from exc
    if kind == "str":
        if not isinstance(value, str | int):
            raise OptionValueError(f"option {code} takes a string, not {value!r}")
        raw = str(value).encode()
        if not raw:
            raise OptionValueError(f"option {code} must not be empty")
        return raw
    # "bytes": free-form; accept a string as its UTF-8 bytes.
    if isinstance(value, str):
        return value.encode()
    raise OptionValueError(f"option {code} takes a string or 'hex:...', not {value!r}")


def decode_value(code: int, raw: bytes) -> object:
    """Best-effort readable value of a received option (for logs, JSON and the agent's report)."""
    kind = OPTION_TYPES.get(code, "bytes")
    try:
        if kind == "ip" and len(raw) == 4:
            return str(IPv4Address(raw))
        if kind == "ips" and raw and len(raw) % 4 == 0:
            return [str(IPv4Address(raw[i : i + 4])) for i in range(0, len(raw), 4)]
        if kind in ("u8", "u16", "u32", "i32"):
            fmt = {"u8": "!B", "u16": "!H", "u32": "!I", "i32": "!i"}[kind]
            if len(raw) == struct.calcsize(fmt):
                return struct.unpack(fmt, raw)[0]
        if kind == "bool" and len(raw) == 1:
            return bool(raw[0])
        if kind == "str":
            return raw.rstrip(b"\0").decode("utf-8")
    except (UnicodeDecodeError, ValueError):
        pass
    if code == PARAMETER_LIST:
        return list(raw)
    return "hex:" + raw.hex()


def u32(value: int) -> bytes:
    """Four-byte network-order unsigned integer."""
    return struct.pack("!I", value)
