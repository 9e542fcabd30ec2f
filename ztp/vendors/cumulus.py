"""cumulus: Cumulus Linux ZTP: a provisioning-script URL in option 239.

Cumulus Linux requests option 239 during DHCP on eth0 and downloads the URL in it with headers naming the
switch (``CUMULUS-SERIAL``, ``CUMULUS-BASE-MAC``, ``CUMULUS-MGMT-MAC``, ``CUMULUS-ARCH``...); it runs the
script only when it contains the string ``CUMULUS-AUTOPROVISIONING``. So 239 is
``http://<us>/configs/<hostname>.cfg`` and the device's template renders that script (``ztp check``
reports a template whose output lacks the marker). The HTTP listener checks the serial header against the
inventory's ``serial:``.

Sources: NVIDIA Cumulus Linux User Guide, "Zero Touch Provisioning - ZTP" (DHCP option 239,
``option cumulus-provision-url code 239 = text``, the CUMULUS-AUTOPROVISIONING flag, the HTTP headers).
The option 60 a Cumulus switch sends is not documented there: it is recognised by asking for 239 without
being SONiC, or by ``vendor: cumulus`` in the inventory.
"""

from __future__ import annotations

from ztp.vendors.profile import PROVISION_URL, TRANSPORT_HTTP, AgentFingerprint, BootContext, Fingerprint, Profile, text

MARKER = b"CUMULUS-AUTOPROVISIONING"


def _recognise(fp: Fingerprint) -> bool:
    return fp.vendor_text.lower().startswith("cumulus") or PROVISION_URL in fp.parameter_list


def _boot_options(ctx: BootContext) -> dict[int, bytes]:
    if ctx.http_port is None:
        return {}
    return {PROVISION_URL: text(ctx.url(ctx.boot_file))}


def _check(rendered: bytes) -> str | None:
    if MARKER not in rendered:
        return "Cumulus Linux runs a ZTP script only if it contains CUMULUS-AUTOPROVISIONING (add it as a comment)"
    return None


PROFILE = Profile(
    name="cumulus",
    family="NVIDIA Cumulus Linux",
    transport=TRANSPORT_HTTP,
    requires_http=True,
    recognise=_recognise,
    boot_options=_boot_options,
    recognised_by="option 55 asks for 239 (not SONiC), or option 60 starting 'cumulus'",
    check=_check,
    agent=AgentFingerprint(parameter_list=(1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42, PROVISION_URL),
                           transport=TRANSPORT_HTTP),
    sources=("NVIDIA Cumulus Linux User Guide: Zero Touch Provisioning - ZTP",),
)
