"""Which inventory device is asking: pure matching on what a DHCP request carries."""

from __future__ import annotations

from dataclasses import dataclass

from ztp.config import Device, Inventory
from ztp.dhcp.relayinfo import RelayInfo, printable


@dataclass(frozen=True, slots=True)
class Identity:
    """What a request says about the device: its MAC, client-id, serial number and the relay's ids."""

    mac: str
    client_id: bytes | None = None
    relay: RelayInfo | None = None
    serial: str | None = None  # as a vendor sends it: POAP option 61, Juniper option 60, HTTP headers


def _client_id_spellings(raw: bytes) -> set[str]:
    """Every way an inventory may write the received client-id, lowercased (the index keys are too)."""
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
    return {c.lower() for c in candidates}


def match_device(inventory: Inventory, identity: Identity) -> Device | None:
    """The inventory device for a request: by MAC, then client-id, then serial, then relay circuit/remote-id.

    When several devices could match by client-id (or by relay ids), the first listed wins.
    """
    device = inventory.by_mac.get(identity.mac)
    if device is not None:
        return device
    if identity.client_id and inventory.client_id_index:
        index = inventory.client_id_index
        hits = [index[s] for s in _client_id_spellings(identity.client_id) if s in index]
        if hits:
            return min(hits, key=lambda hit: hit[0])[1]
    if identity.serial and inventory.by_serial:
        device = inventory.by_serial.get(identity.serial.lower())
        if device is not None:
            return device
    if identity.relay is not None and inventory.relay_index:
        circuit = identity.relay.circuit_id
        remote = identity.relay.remote_id
        circuit_text = printable(circuit) if circuit is not None else None
        remote_text = printable(remote) if remote is not None else None
        # A device's listed ids must all equal the request's; an id it leaves out matches anything. So the
        # request can only match these keys (a device listing neither id is not in the index).
        keys = ((circuit_text, remote_text), (circuit_text, None), (None, remote_text))
        relay_hits = [inventory.relay_index[k] for k in keys if k in inventory.relay_index]
        if relay_hits:
            return min(relay_hits, key=lambda hit: hit[0])[1]
    return None


def unknown_boot_file(mac: str) -> str:
    """The file name an unlisted device is told to fetch (rendered from the default template)."""
    return mac.replace(":", "") + ".cfg"
