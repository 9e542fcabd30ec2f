"""Vendor profiles: how each switch family is recognised and which boot options it gets.

Adding a vendor is adding a module with a `PROFILE` (see `ztp.vendors.profile`) and one line in
`PROFILES` below. Recognition tries the profiles in this order (the most specific fingerprints first);
`generic-tftp` recognises nothing and is what an unrecognised device gets.
"""

from __future__ import annotations

from ztp.vendors import cumulus, eos, generic_tftp, iosxe_pnp, junos, nxos_poap, onie, sonic
from ztp.vendors.profile import Fingerprint, Profile

PROFILES: tuple[Profile, ...] = (
    iosxe_pnp.PROFILE,
    nxos_poap.PROFILE,
    junos.PROFILE,
    eos.PROFILE,
    onie.PROFILE,
    sonic.PROFILE,
    cumulus.PROFILE,
    generic_tftp.PROFILE,
)
GENERIC = generic_tftp.PROFILE
BY_NAME: dict[str, Profile] = {p.name: p for p in PROFILES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
DOCUMENT_SUFFIXES: tuple[str, ...] = tuple(p.document.suffix for p in PROFILES if p.document is not None)


def profile_named(name: str) -> Profile | None:
    """The profile called `name` (``nxos-poap``; ``nxos_poap`` is accepted too), or None."""
    return BY_NAME.get(name.strip().lower().replace("_", "-"))


def recognise(fp: Fingerprint) -> Profile | None:
    """The first profile that recognises a request's fingerprint, or None (generic-tftp applies)."""
    for profile in PROFILES:
        if profile.recognise(fp):
            return profile
    return None


def serial_of(fp: Fingerprint) -> str | None:
    """The serial number a request carries in a vendor's way (POAP option 61, Juniper option 60), or None."""
    for profile in PROFILES:
        serial = profile.serial(fp)
        if serial:
            return serial
    return None
