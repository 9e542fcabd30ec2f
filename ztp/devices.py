"""The device registry's naming rule: which file a device is told to fetch, and which device a requested
file name belongs to. DHCP (options 67 and the `file` field), TFTP, `ztp render` and `ztp check` all ask
here, so the name given out and the name served back can never disagree.

Inventory devices fetch `<hostname>.cfg`; devices the inventory does not list fetch `<mac>.cfg` (12 hex
digits, no separators), rendered from the default template, when there is one. A vendor profile's document
built around that config (ztp.vendors: a POAP script, a SONiC ztp.json) is the same stem with the
document's suffix: `leaf01.poap.py`, `leaf01.ztp.json`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ztp.config import Device, Inventory
from ztp.vendors import DOCUMENT_SUFFIXES

CONFIG_SUFFIX = ".cfg"
_HEX = frozenset("0123456789abcdef")


def device_boot_file(device: Device) -> str:
    """The file an inventory device is told to fetch."""
    return device.hostname + CONFIG_SUFFIX


def unknown_boot_file(mac: str) -> str:
    """The file an unlisted device is told to fetch (rendered from the default template)."""
    return mac.replace(":", "").lower() + CONFIG_SUFFIX


def boot_file_name(inventory: Inventory, device: Device | None, mac: str) -> str | None:
    """The boot file for a request from `mac` matched to `device`; None when there is nothing to fetch."""
    if device is not None:
        return device_boot_file(device)
    if inventory.default_template:
        return unknown_boot_file(mac)
    return None


@dataclass(frozen=True, slots=True)
class BootTarget:
    """Whose config a file name asks for: an inventory device, or an unlisted device's MAC."""

    device: Device | None
    mac: str | None
    document: str = ""
    """'' for the rendered config itself, else the suffix of the profile document asked for."""

    @property
    def config_name(self) -> str:
        """The name of the rendered config this target is (or is built around)."""
        if self.device is not None:
            return device_boot_file(self.device)
        return unknown_boot_file(self.mac or "")


def boot_target(inventory: Inventory, name: str) -> BootTarget | None:
    """The device a (normalised, relative) file name belongs to, or None when it names no device config.

    Host names match case-insensitively (TFTP clients upper-case names); a listed device is served by
    its host name only, never by its MAC, so that one device has one name.
    """
    if "/" in name:
        return None
    lowered = name.lower()
    document = next((s for s in DOCUMENT_SUFFIXES if lowered.endswith(s)), "")
    suffix = document or CONFIG_SUFFIX
    if not lowered.endswith(suffix):
        return None
    stem = lowered[: -len(suffix)]
    device = inventory.by_hostname.get(stem)
    if device is not None:
        return BootTarget(device, device.mac, document)
    if len(stem) == 12 and _HEX.issuperset(stem) and inventory.default_template:
        mac = ":".join(stem[i : i + 2] for i in range(0, 12, 2))
        if mac in inventory.by_mac:
            return None
        return BootTarget(None, mac, document)
    return None
