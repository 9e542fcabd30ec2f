"""generic-tftp: what ztp always did: option 66 (our address) and 67 (``<hostname>.cfg``), fetched over TFTP.

The fallback for every request no other profile recognises. It adds nothing itself: the BootFile handler
(`ztp.dhcp.handlers.boot_file`) sets 66, 67, siaddr and the BOOTP ``file`` field (RFC 2132 §9.4, §9.5;
RFC 2131 §2), which is what dhclient, U-Boot, PXE ROMs and most switches' AutoInstall read.
"""

from __future__ import annotations

from ztp.vendors.profile import TRANSPORT_TFTP, AgentFingerprint, BootContext, Fingerprint, Profile


def _never(fp: Fingerprint) -> bool:
    return False


def _boot_options(ctx: BootContext) -> dict[int, bytes]:
    return {}  # BootFile's 66/67 are this profile's boot options


PROFILE = Profile(
    name="generic-tftp",
    family="Generic (TFTP)",
    transport=TRANSPORT_TFTP,
    recognise=_never,
    boot_options=_boot_options,
    recognised_by="anything no other profile recognises",
    agent=AgentFingerprint(parameter_list=(1, 3, 6, 12, 15, 28, 42, 66, 67)),
    sources=("RFC 2132 §9.4-9.5 (options 66, 67)", "RFC 2131 §2 (siaddr, file)"),
)
