"""Relay Agent Information option 82 sub-options (RFC 3046 §2.0): pure codec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ztp.dhcp.packet import MalformedPacket

CIRCUIT_ID: Final = 1
REMOTE_ID: Final = 2
LINK_SELECTION: Final = 5  # RFC 3527
SERVER_ID_OVERRIDE: Final = 11  # RFC 5107


@dataclass(frozen=True, slots=True)
class RelayInfo:
    """Decoded option 82: sub-options in wire order."""

    suboptions: tuple[tuple[int, bytes], ...] = ()

    def get(self, code: int) -> bytes | None:
        """First sub-option with this code."""
        for sub, value in self.suboptions:
            if sub == code:
                return value
        return None

    @property
    def circuit_id(self) -> bytes | None:
        """Sub-option 1: the port the request came in on."""
        return self.get(CIRCUIT_ID)

    @property
    def remote_id(self) -> bytes | None:
        """Sub-option 2: the relay itself (often its MAC)."""
        return self.get(REMOTE_ID)


def parse_relay_info(raw: bytes) -> RelayInfo:
    """Decode option 82's value. Raises MalformedPacket (offsets within the option value)."""
    subs: list[tuple[int, bytes]] = []
    i = 0
    while i < len(raw):
        if i + 1 >= len(raw):
            raise MalformedPacket(f"option 82 sub-option {raw[i]} has no length byte", i)
        code, length = raw[i], raw[i + 1]
        if i + 2 + length > len(raw):
            raise MalformedPacket(f"option 82 sub-option {code} length {length} runs past the end", i)
        subs.append((code, raw[i + 2 : i + 2 + length]))
        i += 2 + length
    return RelayInfo(tuple(subs))


def build_relay_info(info: RelayInfo) -> bytes:
    """Encode option 82's value."""
    out = bytearray()
    for code, value in info.suboptions:
        if len(value) > 255:
            raise ValueError(f"option 82 sub-option {code} is longer than 255 bytes")
        out += bytes((code, len(value))) + value
    return bytes(out)


def printable(raw: bytes) -> str:
    """A circuit-id/remote-id as text when printable ASCII, else hex (how inventories name them)."""
    if raw and all(32 <= b < 127 for b in raw):
        return raw.decode("ascii")
    return raw.hex(":")
