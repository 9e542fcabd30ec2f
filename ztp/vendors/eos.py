"""eos: Arista EOS Zero Touch Provisioning: an HTTP URL in option 67.

EOS in ZTP mode sends a DHCP request with a vendor class starting ``Arista`` and fetches the file named
by option 67, which may be a URL; a file that starts with ``#!`` is run as a script, anything else is
saved as the startup-config and the switch reboots into it. So the profile puts
``http://<us>/configs/<hostname>.cfg`` in 67: the rendered config itself (or a bootstrap script, if the
template renders one).

Sources: arista-eosplus/ztpserver docs (install/config: ISC dhcpd class matching
``substring(option vendor-class-identifier, 0, 6) = "Arista"`` with ``option bootfile-name
"http://<server>:<port>/bootstrap"``); Arista EOS User Manual, "Zero Touch Provisioning". Only the
``Arista`` prefix of option 60 is documented; the agent sends ``Arista;<model>`` after it.
"""

from __future__ import annotations

from ztp.dhcp import options as o
from ztp.vendors.profile import TRANSPORT_HTTP, AgentFingerprint, BootContext, Fingerprint, Profile, text


def _recognise(fp: Fingerprint) -> bool:
    return fp.vendor_text.startswith("Arista")


def _boot_options(ctx: BootContext) -> dict[int, bytes]:
    if ctx.http_port is None:
        return {}
    return {o.BOOTFILE_NAME: text(ctx.url(ctx.boot_file))}


PROFILE = Profile(
    name="eos",
    family="Arista EOS",
    transport=TRANSPORT_HTTP,
    requires_http=True,
    recognise=_recognise,
    boot_options=_boot_options,
    recognised_by="option 60 starts with 'Arista'",
    agent=AgentFingerprint(parameter_list=(1, 3, 6, 12, 15, 28, 42, 66, 67), vendor_class="Arista;{model}",
                           model="DCS-7050SX3-48YC8", transport=TRANSPORT_HTTP),
    sources=("arista-eosplus/ztpserver docs: DHCP class on vendor-class 'Arista', bootfile-name URL",
             "Arista EOS User Manual: Zero Touch Provisioning"),
)
