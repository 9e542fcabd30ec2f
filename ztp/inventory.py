"""Which inventory device is asking: pure matching on what a DHCP request carries."""

from __future__ import annotations

from dataclasses import dataclass

from ztp.config import Device, Inventory
from ztp.dhcp.relayinfo import RelayInfo, printable


@dataclass(frozen=True, slots=True)
class Identity:
    """What a request says about the device: its MAC, client-id and the relay's port/relay ids."""

    mac: str
    client_id: bytes | None = None
    relay: RelayInfo | None = None


def _client_id_matches(wanted: str, raw: bytes) -> bool:
    # Inventories write a client-id as text (a serial number) or as hex; RFC 2132 §9.14 ids often start
    # with a type byte (0 for text, 1 for Ethernet), which people leave out.
    candidates = {raw.hex(), raw.hex(":")}
    if raw[:1] in (b"\x00", b"\x01"):
        candidates |= {raw[1:].hex(), raw[1:].hex(":")}
    try:
        text = raw.decode("ascii")
        candidates |= {text, text.lstrip("\x00")}
    except UnicodeDecodeError:
        pass
    return wanted.lower() in {c.lower() for c in candidates}


def match_device(inventory: Inventory, identity: Identity) -> Device | None:
    """The inventory device for a request: by MAC, then client-id, then relay circuit-id/remote-id."""
    device = inventory.by_mac.get(identity.mac)
    if device is not None:
        return device
    if identity.client_id:
        for candidate in inventory.devices:
            if candidate.client_id and _client_id_matches(candidate.client_id, identity.client_id):
                return candidate
    if identity.relay is not None:
        circuit = identity.relay.circuit_id
        remote = identity.relay.remote_id
        circuit_text = printable(circuit) if circuit is not None else None
        remote_text = printable(remote) if remote is not None else None
        for candidate in inventory.devices:
            if candidate.circuit_id is None and candidate.remote_id is None:
                continue
            if candidate.circuit_id is not None and candidate.circuit_id != circuit_text:
                continue
            if candidate.remote_id is not None and candidate.remote_id != remote_text:
                continue
            return candidate
    return None


def unknown_boot_file(mac: str) -> str:
    """The file name an unlisted device is told to fetch (rendered from the default template)."""
    return mac.replace(":", "") + ".cfg"
