"""nxos-poap: Cisco NX-OS Power-On Auto Provisioning: a script named in option 67, checked by its MD5 line.

A Nexus switch in POAP mode sends option 61 as type 0 followed by its serial number (so the serial is its
DHCP identity) and needs, in the offer, a script server (option 66 or 150) and a script name (option 67);
an offer without them is refused ("Invalid DHCP OFFER: Missing Script Name"). It downloads the script,
checks it against the ``#md5sum="..."`` line the script carries (the MD5 of the script without that line)
and runs it. ztp gives 67 = ``<hostname>.poap.py``, a script it builds for each device around the rendered
config: it copies ``<hostname>.cfg`` from the address it was fetched from to bootflash, checks the
config's MD5, and schedules it (``copy ... scheduled-config``), as POAP scripts do.

Sources: Cisco Nexus 9000 Series NX-OS Fundamentals Configuration Guide, "Using PowerOn Auto
Provisioning" (DHCP options 66/150 and 67, serial number in the client identifier, script MD5 integrity);
Cisco TAC "Implement and Verify POAP on Nexus 9000" (POAP script integrity, MD5 update); CiscoSE/Cisco-POAP
README (options 150 and 67).
"""

from __future__ import annotations

import re

from ztp.dhcp import options as o
from ztp.vendors.profile import (
    TFTP_SERVER_ADDRESS,
    TRANSPORT_TFTP,
    AgentFingerprint,
    BootContext,
    Document,
    Fingerprint,
    Profile,
    md5_hex,
    text,
)

SUFFIX = ".poap.py"
_SERIAL = re.compile(rb"^\x00([A-Za-z0-9]{6,32})$")
MD5_LINE = re.compile(r'^#md5sum="([0-9a-f]{32})"\n', re.MULTILINE)


def serial_of(fp: Fingerprint) -> str | None:
    """The serial in a POAP client identifier: type 0, then the serial number's characters."""
    match = _SERIAL.match(fp.client_id or b"")
    return match.group(1).decode("ascii") if match else None


def _recognise(fp: Fingerprint) -> bool:
    # IOS AutoInstall also uses type-0 client-ids, but spelled "cisco-<mac>-<if>": not a bare serial.
    return serial_of(fp) is not None and not fp.vendor_text.lower().startswith("ciscopnp")


def _boot_options(ctx: BootContext) -> dict[int, bytes]:
    return {o.BOOTFILE_NAME: text(ctx.document(SUFFIX)), TFTP_SERVER_ADDRESS: ctx.server.packed}


_SCRIPT = '''#!/bin/env python
#md5sum="{md5}"
"""POAP script for {hostname}, built by ztp: fetch its config, check it, schedule it for the reboot."""
import sys

from cli import cli

SERVER = "{server}"
PROTOCOL = "{protocol}"
CONFIG = "{config}"
CONFIG_MD5 = "{config_md5}"
TARGET = "bootflash:poap_replay.cfg"


def main():
    cli("terminal dont-ask")
    cli("copy %s://%s/%s %s vrf management" % (PROTOCOL, SERVER, CONFIG, TARGET))
    got = cli("show file %s md5sum" % TARGET).strip()
    if got != CONFIG_MD5:
        sys.stderr.write("%s: MD5 %s, expected %s\\n" % (CONFIG, got, CONFIG_MD5))
        return 1
    cli("copy %s scheduled-config" % TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def poap_script(rendered: bytes, ctx: BootContext) -> bytes:
    """The device's POAP script, its ``#md5sum`` line the MD5 of the script without that line."""
    body = _SCRIPT.format(md5="{md5}", hostname=ctx.hostname, server=ctx.server, protocol="tftp",
                          config=ctx.boot_file, config_md5=md5_hex(rendered))
    without = "".join(line for line in body.splitlines(keepends=True) if not line.startswith("#md5sum="))
    return body.replace("{md5}", md5_hex(without.encode()), 1).encode()


def verify_script(script: bytes) -> bool:
    """Whether a POAP script's ``#md5sum`` line matches the rest of it (what the switch checks)."""
    textual = script.decode("utf-8", "replace")
    match = MD5_LINE.search(textual)
    if match is None:
        return False
    without = "".join(line for line in textual.splitlines(keepends=True) if not line.startswith("#md5sum="))
    return md5_hex(without.encode()) == match.group(1)


def script_settings(script: bytes) -> dict[str, str]:
    """The ``NAME = "value"`` settings of a ztp POAP script (SERVER, PROTOCOL, CONFIG, CONFIG_MD5)."""
    return dict(re.findall(r'^([A-Z_0-9]+) = "([^"]*)"$', script.decode("utf-8", "replace"), re.MULTILINE))


PROFILE = Profile(
    name="nxos-poap",
    family="Cisco NX-OS (POAP)",
    transport=TRANSPORT_TFTP,
    recognise=_recognise,
    serial=serial_of,
    boot_options=_boot_options,
    recognised_by="option 61 = type 0 + serial number (the serial identifies it)",
    document=Document(SUFFIX, poap_script),
    agent=AgentFingerprint(parameter_list=(1, 3, 6, 12, 15, 42, 66, 67, 150), client_id="\0{serial}"),
    sources=("Cisco Nexus 9000 NX-OS Fundamentals Configuration Guide: Using PowerOn Auto Provisioning",
             "Cisco TAC 226434: Implement and Verify POAP on Nexus 9000", "CiscoSE/Cisco-POAP README"),
)
