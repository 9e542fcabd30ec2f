"""One device's vendor boot: which profile applies, its boot options, and its documents.

Shared by the DHCP handler (`ztp.dhcp.handlers.vendor`), the content providers (TFTP and HTTP build a POAP
script or a SONiC ztp.json around the rendered config) and `ztp explain`.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Any

from ztp.config import Config, Device, Inventory
from ztp.vendors import BY_NAME, GENERIC, PROFILES, recognise
from ztp.vendors.profile import BootContext, Fingerprint, Profile

DOCUMENTS = {p.document.suffix: p.document for p in PROFILES if p.document is not None}


def http_port(config: Config) -> int | None:
    """The HTTP listener's port, or None when `ztp serve` has no ``http:`` section."""
    http = getattr(config, "http", None)
    port = getattr(http, "port", None)
    return port if isinstance(port, int) else None


def configured_profile(inventory: Inventory, device: Device | None) -> Profile | None:
    """The profile the inventory names for a device (its own `vendor:`), or None."""
    if device is not None and device.vendor:
        return BY_NAME.get(device.vendor)
    return None


def choose_profile(inventory: Inventory, device: Device | None, fp: Fingerprint | None) -> Profile:
    """The device's own `vendor:`, else what its request's fingerprint says, else `defaults.vendor`,
    else generic-tftp."""
    profile = configured_profile(inventory, device)
    if profile is not None:
        return profile
    if fp is not None:
        profile = recognise(fp)
        if profile is not None:
            return profile
    if inventory.default_vendor:
        return BY_NAME.get(inventory.default_vendor, GENERIC)
    return GENERIC


def template_vendor(inventory: Inventory, device: Device | None) -> str:
    """The `vendor` a template sees: the device's `vendor:`, else `defaults.vendor`, else generic-tftp."""
    if device is not None and device.vendor:
        return device.vendor
    return inventory.default_vendor or GENERIC.name


def device_vars(inventory: Inventory, device: Device | None) -> Mapping[str, Any]:
    """defaults.vars under the device's vars (what templates see), for profiles that read image names."""
    merged: dict[str, Any] = dict(inventory.default_vars)
    if device is not None:
        merged.update(device.vars)
    return merged


def boot_context(config: Config, device: Device | None, server: IPv4Address, boot_file: str) -> BootContext:
    """The BootContext of one device reached at `server`."""
    stem = boot_file.rsplit(".", 1)[0]
    return BootContext(server=server, boot_file=boot_file, hostname=stem, http_port=http_port(config),
                       vars=device_vars(config.inventory, device))


def build_document(config: Config, suffix: str, rendered: bytes, device: Device | None, boot_file: str,
                   server: IPv4Address) -> bytes:
    """The profile document `suffix` (``.poap.py``, ``.ztp.json``) for a device, around its rendered config."""
    return DOCUMENTS[suffix].build(rendered, boot_context(config, device, server, boot_file))


def describe_option(code: int, value: bytes) -> str | None:
    """A vendor option decoded for people (`ztp explain`): 43 sub-options or PnP string, 125 VIVSO, the URLs
    in 114 and 239; None for options the generic decoder reads well enough."""
    from ztp.vendors.profile import (
        DEFAULT_URL,
        PROVISION_URL,
        VENDOR_SPECIFIC,
        VI_VENDOR_SPECIFIC,
        VendorOptionError,
        decode_suboptions,
        decode_vivso,
    )

    def shown(raw: bytes) -> str:
        text = raw.decode("ascii", "replace")
        return repr(text) if text.isprintable() else "hex:" + raw.hex()

    if code in (DEFAULT_URL, PROVISION_URL) and value.isascii():
        return value.decode("ascii")
    try:
        if code == VENDOR_SPECIFIC:
            if value[:2] == b"5A":  # a Cisco PnP string is ASCII; sub-options start with a code byte < 0x20
                return f"PnP string {value.decode('ascii', 'replace')!r}"
            subs = decode_suboptions(value)
            return "sub-options " + ", ".join(f"{c}={shown(v)}" for c, v in subs.items())
        if code == VI_VENDOR_SPECIFIC:
            return "; ".join(f"enterprise {e}: " + ", ".join(f"{c}={shown(v)}" for c, v in subs.items())
                             for e, subs in decode_vivso(value).items())
    except VendorOptionError as exc:
        return f"hex:{value.hex()} ({exc})"
    return None
