"""iosxe-pnp: Cisco IOS-XE Network Plug and Play: vendor class ``ciscopnp`` and an option 43 string.

The PnP agent's DHCP discovery sends option 60 ``ciscopnp`` and reads option 43 as an ASCII string of
``;``-separated fields: ``5A1N`` (DHCP type code 5, feature op A1 = active, N = no debug), ``B2`` (the
server is an IPv4 address), ``I<address>``, ``J<port>`` and ``K<transport>`` (4 = HTTP, 5 = HTTPS); the
agent then talks to the PnP server at that address over that transport. ztp gives ``K4`` and its HTTP
port, plus option 150 and 67 for the AutoInstall path IOS-XE falls back to (TFTP of the named config).

ztp's HTTP listener then answers the PnP protocol (`ztp.http.pnp`, messages in `ztp.vendors.pnp_xml`):
HELLO, a WORK-REQUEST answered with a config-upgrade pointing at ``/configs/<hostname>.cfg``, the
WORK-RESPONSE answered with bye; a device it has no work for falls back to AutoInstall (TFTP of
``<hostname>.cfg`` from option 150). The agent profile runs that flow (`ztp.agent.pnp_client`).

Sources: Cisco, "Network Plug and Play Agent Configuration Guide" / "Cisco Open Plug-n-Play Agent
Configuration Guide, Cisco IOS XE" (DHCP discovery, option 43 ``5A1N;B2;K4;I<ip>;J<port>``); research
notes ../shared/research/anchors-features.md (PnP row: consumes ``5A1D;B2;K4;I..;J..``).
"""

from __future__ import annotations

from ztp.vendors.profile import (
    TFTP_SERVER_ADDRESS,
    TRANSPORT_HTTP,
    VENDOR_SPECIFIC,
    AgentFingerprint,
    BootContext,
    Fingerprint,
    Profile,
    text,
)

VENDOR_CLASS = "ciscopnp"


def _recognise(fp: Fingerprint) -> bool:
    return fp.vendor_text.lower() == VENDOR_CLASS


def pnp_string(server: str, port: int, *, https: bool = False) -> str:
    """The option 43 string: type 5, active, no debug; IPv4 server; its address, port and transport."""
    return f"5A1N;B2;K{5 if https else 4};I{server};J{port}"


def parse_pnp_string(value: str) -> dict[str, str]:
    """Option 43's ``;``-separated fields by their letter (``5A1N`` is kept under ``'5'``)."""
    fields: dict[str, str] = {}
    for part in value.strip().split(";"):
        if part:
            fields[part[0]] = part[1:]
    return fields


def _boot_options(ctx: BootContext) -> dict[int, bytes]:
    opts = {TFTP_SERVER_ADDRESS: ctx.server.packed}
    if ctx.http_port is not None:
        opts[VENDOR_SPECIFIC] = text(pnp_string(str(ctx.server), ctx.http_port))
    return opts


PROFILE = Profile(
    name="iosxe-pnp",
    family="Cisco IOS-XE (Plug and Play)",
    transport=TRANSPORT_HTTP,
    recognise=_recognise,
    boot_options=_boot_options,
    recognised_by="option 60 'ciscopnp'",
    agent=AgentFingerprint(parameter_list=(1, 3, 6, 15, 43, 66, 67, 150), vendor_class=VENDOR_CLASS,
                           transport=TRANSPORT_HTTP),
    sources=("Cisco Open Plug-n-Play Agent Configuration Guide (IOS XE): DHCP option 43",),
)
