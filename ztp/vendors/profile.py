"""What a vendor profile is: how a switch family is recognised and which boot options it is given.

A profile is data plus a few small functions, with no I/O:

* `recognise(fingerprint)`: whether a DHCP request (options 60, 61, 77, 124) comes from this family;
* `boot_options(ctx)`: the options that family reads to find its config (URL or file name in 67, 43
  sub-options, 114, 125, 150, 239...), encoded for the wire;
* `serial(fingerprint)`: the serial number the family puts in its request, when it does;
* `document`: a file the family fetches *instead of* the rendered config, built around it (a POAP script
  with its checksum line, a SONiC ``ztp.json``), served under ``<hostname><suffix>``;
* `check(rendered)`: what the family expects of its rendered config (``ztp check`` reports a miss);
* `agent`: how ``ztp agent --profile NAME`` imitates the family's request (options 55, 60, 61, 77).

The encodings shared by several families live here: RFC 2132 §8.4 encapsulated sub-options (option 43)
and RFC 3925 §4 vendor-identifying vendor-specific options (option 125).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

# Option codes the profiles use that the core option table does not name.
VENDOR_SPECIFIC = 43  # RFC 2132 §8.4
WWW_SERVER = 72  # RFC 2132 §8.9
USER_CLASS = 77  # RFC 3004
DEFAULT_URL = 114  # ONIE reads it as its installer URL (it was assigned as "default-url")
VI_VENDOR_CLASS = 124  # RFC 3925 §3
VI_VENDOR_SPECIFIC = 125  # RFC 3925 §4
TFTP_SERVER_ADDRESS = 150  # RFC 5859
PROVISION_URL = 239  # site-specific range (RFC 3942): Cumulus' and SONiC's provisioning-script URL

TRANSPORT_HTTP = "http"
TRANSPORT_TFTP = "tftp"
CONFIG_PATH = "configs"
"""HTTP path prefix of rendered configs and profile documents: ``/configs/<bootfile>``."""


class VendorOptionError(ValueError):
    """A vendor option whose bytes do not follow its encapsulation."""


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What a DHCP request says about its sender's family: options 60, 61, 77 and 124, as received."""

    vendor_class: bytes | None = None
    client_id: bytes | None = None
    user_class: bytes | None = None
    vi_vendor_class: bytes | None = None
    parameter_list: bytes = b""

    @property
    def vendor_text(self) -> str:
        """Option 60 as text ('' when absent or not ASCII)."""
        if not self.vendor_class:
            return ""
        try:
            return self.vendor_class.decode("ascii")
        except UnicodeDecodeError:
            return ""

    @property
    def user_classes(self) -> tuple[bytes, ...]:
        """Option 77 as RFC 3004 §2 length-prefixed items, or the whole value as one item (dhclient's form)."""
        raw = self.user_class or b""
        items: list[bytes] = []
        i = 0
        while i < len(raw):
            n = raw[i]
            if n == 0 or i + 1 + n > len(raw):
                return (raw,)  # not RFC 3004 framing: a bare string
            items.append(raw[i + 1 : i + 1 + n])
            i += 1 + n
        return tuple(items) if items else ((raw,) if raw else ())


@dataclass(frozen=True, slots=True)
class BootContext:
    """What a profile needs to name a device's boot: our address, the file, and where HTTP listens."""

    server: IPv4Address
    """The appliance address the device reached (the reply's server identifier)."""
    boot_file: str
    """The device's boot-file name (ztp.devices), e.g. ``leaf01.cfg``."""
    hostname: str
    http_port: int | None
    """Port of the HTTP listener; None when `ztp serve` has no ``http:`` section."""
    vars: Mapping[str, Any] = field(default_factory=dict)
    """The device's template variables (defaults.vars under its own vars): images, installer names."""

    def url(self, name: str, *, server: str | None = None) -> str:
        """The HTTP URL of ``/configs/<name>`` on this appliance (port left out when it is 80)."""
        return http_url(server or str(self.server), self.http_port or 80, f"{CONFIG_PATH}/{name}")

    def document(self, suffix: str) -> str:
        """The name of this device's profile document (``leaf01.ztp.json``)."""
        return self.hostname + suffix


def http_url(host: str, port: int, path: str) -> str:
    """``http://host[:port]/path`` (RFC 7230 §2.7.1: port 80 is the default and left out)."""
    netloc = host if port == 80 else f"{host}:{port}"
    return f"http://{netloc}/{path.lstrip('/')}"


@dataclass(frozen=True, slots=True)
class AgentFingerprint:
    """How `ztp agent --profile` imitates a family's DHCP request.

    `vendor_class` and `client_id` are templates over ``{serial}``, ``{model}``, ``{platform}``;
    `client_id` ``None`` sends no option 61. `parameter_list` is option 55 in the family's order.
    """

    parameter_list: tuple[int, ...]
    vendor_class: str | None = None
    client_id: str | None = None  # "\0{serial}" for POAP's type-0 serial
    user_class: bytes | None = None
    model: str = ""
    transport: str = TRANSPORT_TFTP


@dataclass(frozen=True, slots=True)
class Document:
    """A file the family fetches instead of its rendered config, built around it: ``<hostname><suffix>``."""

    suffix: str
    build: Callable[[bytes, BootContext], bytes]
    """(rendered config, context with the server address the fetch reached) -> document bytes."""


def _no_serial(fp: Fingerprint) -> str | None:
    return None


def _no_check(rendered: bytes) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Profile:
    """One switch family's zero-touch boot: recognition, boot options, serial, expected files."""

    name: str
    family: str
    transport: str
    recognise: Callable[[Fingerprint], bool]
    boot_options: Callable[[BootContext], dict[int, bytes]]
    agent: AgentFingerprint
    recognised_by: str
    """How the family is recognised, for people (README table, `ztp explain`)."""
    serial: Callable[[Fingerprint], str | None] = _no_serial
    requires_http: bool = False
    """True when the family has no TFTP way to its config (ztp check wants an ``http:`` section)."""
    document: Document | None = None
    check: Callable[[bytes], str | None] = _no_check
    sources: tuple[str, ...] = ()


# --- encodings shared by several families -------------------------------------------------------------

def encode_suboptions(items: Mapping[int, bytes]) -> bytes:
    """RFC 2132 §8.4 encapsulated vendor options: code, length, value for each, in code order, no END."""
    out = bytearray()
    for code in sorted(items):
        value = items[code]
        if not 0 <= code <= 254 or len(value) > 255:
            raise VendorOptionError(f"sub-option {code} cannot be encoded ({len(value)} bytes)")
        out += bytes((code, len(value))) + value
    return bytes(out)


def decode_suboptions(raw: bytes) -> dict[int, bytes]:
    """The sub-options of an RFC 2132 §8.4 encapsulation (code 255 ends it; code 0 is a sub-option in
    Juniper's space, not padding, so it is read as one)."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(raw):
        code = raw[i]
        if code == 255:
            break
        if i + 2 > len(raw) or i + 2 + raw[i + 1] > len(raw):
            raise VendorOptionError(f"sub-option {code} at offset {i} runs past the end of the option")
        n = raw[i + 1]
        out[code] = raw[i + 2 : i + 2 + n]
        i += 2 + n
    return out


def encode_vivso(enterprise: int, items: Mapping[int, bytes]) -> bytes:
    """RFC 3925 §4 option 125 data for one enterprise: number, data length, then its sub-options."""
    data = encode_suboptions(items)
    if len(data) > 255:
        raise VendorOptionError(f"enterprise {enterprise}: {len(data)} bytes of sub-options (255 at most)")
    return struct.pack("!IB", enterprise, len(data)) + data


def decode_vivso(raw: bytes) -> dict[int, dict[int, bytes]]:
    """RFC 3925 §4: enterprise number -> its sub-options."""
    out: dict[int, dict[int, bytes]] = {}
    i = 0
    while i < len(raw):
        if i + 5 > len(raw):
            raise VendorOptionError(f"option 125: truncated enterprise header at offset {i}")
        enterprise, n = struct.unpack_from("!IB", raw, i)
        if i + 5 + n > len(raw):
            raise VendorOptionError(f"option 125: enterprise {enterprise} data runs past the end")
        out[enterprise] = decode_suboptions(raw[i + 5 : i + 5 + n])
        i += 5 + n
    return out


def encode_vivco(enterprise: int, items: list[bytes]) -> bytes:
    """RFC 3925 §3 option 124 data for one enterprise: number, data length, length-prefixed class items."""
    data = b"".join(bytes((len(item),)) + item for item in items)
    return struct.pack("!IB", enterprise, len(data)) + data


def user_class_items(*items: bytes) -> bytes:
    """RFC 3004 §2 option 77: each user class as a length octet and its bytes."""
    return b"".join(bytes((len(item),)) + item for item in items)


def text(value: str) -> bytes:
    """An NVT ASCII option value (RFC 2132 §2: no trailing NUL)."""
    return value.encode("ascii")


def md5_hex(data: bytes) -> str:
    """Hex MD5 of `data`: the integrity line POAP checks (an integrity check, not a security one)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
