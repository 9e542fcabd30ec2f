"""match_device's indexes (Inventory.client_id_index, relay_index) find what a walk over devices finds."""

from __future__ import annotations

import itertools
from pathlib import Path

from ztp.config import Device, Inventory
from ztp.dhcp.relayinfo import CIRCUIT_ID, REMOTE_ID, RelayInfo, printable
from ztp.inventory import Identity, match_device


def _device(hostname: str, *, mac: str | None = None, client_id: str | None = None,
            circuit_id: str | None = None, remote_id: str | None = None) -> Device:
    return Device(hostname=hostname, mac=mac, client_id=client_id, circuit_id=circuit_id, remote_id=remote_id,
                  ip=None, template=None, vars={}, options={}, line=1)


def _inventory(*devices: Device) -> Inventory:
    return Inventory(path=Path("inventory.yaml"), default_template=None, default_vars={}, default_options={},
                     devices=devices, by_mac={d.mac: d for d in devices if d.mac})


def _walk(inventory: Inventory, identity: Identity) -> Device | None:
    """The reference: a linear walk, first listed device wins (the semantics before the indexes)."""
    device = inventory.by_mac.get(identity.mac)
    if device is not None:
        return device
    if identity.client_id:
        raw = identity.client_id
        spellings = {raw.hex(), raw.hex(":")}
        if raw[:1] in (b"\x00", b"\x01"):
            spellings |= {raw[1:].hex(), raw[1:].hex(":")}
        try:
            spellings |= {raw.decode("ascii"), raw.decode("ascii").lstrip("\x00")}
        except UnicodeDecodeError:
            pass
        for d in inventory.devices:
            if d.client_id and d.client_id.lower() in {s.lower() for s in spellings}:
                return d
    if identity.relay is not None:
        circuit, remote = identity.relay.circuit_id, identity.relay.remote_id
        ctext = printable(circuit) if circuit is not None else None
        rtext = printable(remote) if remote is not None else None
        for d in inventory.devices:
            if d.circuit_id is None and d.remote_id is None:
                continue
            if d.circuit_id is not None and d.circuit_id != ctext:
                continue
            if d.remote_id is not None and d.remote_id != rtext:
                continue
            return d
    return None


def _relay(circuit: bytes | None, remote: bytes | None) -> RelayInfo:
    subs = [(CIRCUIT_ID, circuit)] if circuit is not None else []
    subs += [(REMOTE_ID, remote)] if remote is not None else []
    return RelayInfo(tuple((code, value) for code, value in subs))


def test_client_id_spellings_hit_the_index() -> None:
    serial = _device("serial", client_id="FOC1234X")
    hexed = _device("hexed", client_id="01:02:aa:bb:cc:dd:ee")
    inv = _inventory(serial, hexed)
    assert match_device(inv, Identity(mac="02:00:00:00:00:99", client_id=b"\x00FOC1234X")) is serial
    assert match_device(inv, Identity(mac="02:00:00:00:00:99", client_id=b"foc1234x")) is serial
    unlisted = "02:00:00:00:00:99"
    assert match_device(inv, Identity(mac=unlisted, client_id=bytes.fromhex("0102aabbccddee"))) is hexed
    assert match_device(inv, Identity(mac=unlisted, client_id=b"\x01\x02\xaa\xbb\xcc\xdd\xee")) is hexed
    assert match_device(inv, Identity(mac="02:00:00:00:00:99", client_id=b"\x01\x02")) is None


def test_first_listed_device_wins_when_several_spellings_match() -> None:
    # b"\x00abc" is both the hex "616263" (without its type byte) and the text "abc".
    by_text = _device("by-text", client_id="abc")
    by_hex = _device("by-hex", client_id="616263")
    ident = Identity(mac="02:00:00:00:00:99", client_id=b"\x00abc")
    assert match_device(_inventory(by_text, by_hex), ident) is by_text
    assert match_device(_inventory(by_hex, by_text), ident) is by_hex


def test_relay_ids_match_like_a_walk_in_every_combination() -> None:
    values: list[str | None] = [None, "Eth1/1", "Eth1/2"]
    remotes: list[str | None] = [None, "leaf-a", "02:00:00:00:00:01"]
    devices = [_device(f"d{i}", circuit_id=c, remote_id=r)
               for i, (c, r) in enumerate(itertools.product(values, remotes)) if (c, r) != (None, None)]
    wire_circuits: list[bytes | None] = [None, b"Eth1/1", b"Eth1/2", b"Eth9/9"]
    wire_remotes: list[bytes | None] = [None, b"leaf-a", b"\x02\x00\x00\x00\x00\x01", b"other"]
    # Every ordering of a few overlapping devices: which one is listed first decides the match.
    for chosen in itertools.permutations(devices[:4] + devices[-2:], 4):
        inv = _inventory(*chosen)
        for circuit, remote in itertools.product(wire_circuits, wire_remotes):
            ident = Identity(mac="02:00:00:00:00:99", relay=_relay(circuit, remote))
            assert match_device(inv, ident) is _walk(inv, ident), (chosen, circuit, remote)


def test_mac_then_client_id_then_relay() -> None:
    by_mac = _device("by-mac", mac="02:00:00:00:00:01")
    by_cid = _device("by-cid", client_id="SER1")
    by_port = _device("by-port", circuit_id="Eth1/1")
    inv = _inventory(by_port, by_cid, by_mac)
    relay = _relay(b"Eth1/1", None)
    assert match_device(inv, Identity(mac="02:00:00:00:00:01", client_id=b"SER1", relay=relay)) is by_mac
    assert match_device(inv, Identity(mac="02:00:00:00:00:02", client_id=b"SER1", relay=relay)) is by_cid
    assert match_device(inv, Identity(mac="02:00:00:00:00:02", client_id=b"SER2", relay=relay)) is by_port
    assert match_device(inv, Identity(mac="02:00:00:00:00:02", client_id=b"SER2")) is None


def test_empty_inventory_has_empty_indexes() -> None:
    inv = _inventory()
    assert inv.client_id_index == {} and inv.relay_index == {}
    ident = Identity(mac="02:00:00:00:00:02", client_id=b"x", relay=_relay(b"a", b"b"))
    assert match_device(inv, ident) is None
