"""onie: ONIE (Open Network Install Environment) on bare-metal switches: an installer URL, or a waterfall.

ONIE's DHCP request carries option 60 ``onie_vendor:<platform>``, option 77 ``onie_dhcp_user_class`` and
asks (option 55) for 1, 3, 6, 7, 12, 15, 42, 54, 66, 67, 72, 114 and 150. Exact installer URLs come, in
order, from option 125 (VIVSO, ONIE's enterprise number, sub-option 1 "installer URL"), 114 (default-url),
150 + 67 and 66 + 67; without one it walks a waterfall of default installer names
(``onie-installer-<platform>``, ``onie-installer-<arch>``, ``onie-installer``...) over HTTP at option 72's,
66's or the DHCP server's address, then over TFTP. An ONIE installer is any executable (usually a shell
script with a payload), so ztp hands out the device's rendered template, which must start with ``#!``,
as the exact URL ``http://<us>/configs/<hostname>.cfg`` in 114 and 125, and our address in 72.

Sources: opencomputeproject/onie design-spec "Image Discovery and Execution" (DHCP request options,
VIVSO sub-options, exact and partial URLs, the waterfall); ONIE's IANA enterprise number is 42623
(older releases used 40310).
"""

from __future__ import annotations

from ztp.vendors.profile import (
    DEFAULT_URL,
    TFTP_SERVER_ADDRESS,
    TRANSPORT_HTTP,
    VI_VENDOR_SPECIFIC,
    WWW_SERVER,
    AgentFingerprint,
    BootContext,
    Fingerprint,
    Profile,
    encode_vivso,
    text,
)

ENTERPRISE = 42623
VIVSO_INSTALLER_URL = 1
USER_CLASS = b"onie_dhcp_user_class"
VENDOR_PREFIX = "onie_vendor:"


def _recognise(fp: Fingerprint) -> bool:
    return fp.vendor_text.startswith(VENDOR_PREFIX) or USER_CLASS in fp.user_classes


def _boot_options(ctx: BootContext) -> dict[int, bytes]:
    if ctx.http_port is None:
        return {TFTP_SERVER_ADDRESS: ctx.server.packed}  # 150 + 67: an exact TFTP URL
    url = text(ctx.url(ctx.boot_file))
    return {DEFAULT_URL: url, VI_VENDOR_SPECIFIC: encode_vivso(ENTERPRISE, {VIVSO_INSTALLER_URL: url}),
            WWW_SERVER: ctx.server.packed}


def _check(rendered: bytes) -> str | None:
    if not rendered.startswith(b"#!"):
        return "ONIE executes what it downloads: the installer must start with '#!' (e.g. #!/bin/sh)"
    return None


def waterfall(platform: str) -> list[str]:
    """ONIE's default installer names for `platform` (``<arch>-<vendor>_<machine>-r<rev>``), most specific
    first, as ONIE tries them at the root of an HTTP or TFTP server."""
    names = [f"onie-installer-{platform}"]
    arch, _, rest = platform.partition("-")
    machine = rest.rpartition("-r")[0] if "-r" in rest else rest
    vendor = machine.partition("_")[0]
    for candidate in (f"onie-installer-{arch}-{machine}", f"onie-installer-{machine}",
                      f"onie-installer-{arch}-{vendor}", f"onie-installer-{arch}", "onie-installer"):
        if candidate not in names and candidate != "onie-installer-":
            names.append(candidate)
    return names


PROFILE = Profile(
    name="onie",
    family="ONIE (bare-metal installer)",
    transport=TRANSPORT_HTTP,
    recognise=_recognise,
    boot_options=_boot_options,
    recognised_by="option 60 'onie_vendor:<platform>' or option 77 'onie_dhcp_user_class'",
    check=_check,
    agent=AgentFingerprint(parameter_list=(1, 3, 6, 7, 12, 15, 42, 54, 66, 67, 72, 114, 150),
                           vendor_class=VENDOR_PREFIX + "{platform}", user_class=USER_CLASS,
                           model="x86_64-accton_as7326_56x-r0", transport=TRANSPORT_HTTP),
    sources=("opencomputeproject/onie design-spec: Image Discovery and Execution",),
)
