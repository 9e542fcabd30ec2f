"""sonic: SONiC ZTP: option 67 names a ``ztp.json`` over HTTP, which points at the rendered config_db.json.

The SONiC ZTP service requests option 67 (the "ZTP JSON" URL) and 239 (a provisioning-script URL) and
sends user class ``SONiC-ZTP``. It downloads the JSON and runs its sections' plugins in order; the
``configdb-json`` plugin downloads ``url.source`` to ``url.destination`` and loads it. So 67 is
``http://<us>/configs/<hostname>.ztp.json``, a document ztp builds around the device's rendered config
(``/configs/<hostname>.cfg``, which must be config_db JSON: ``ztp check`` says so when it is not).

Sources: sonic-net/SONiC doc/ztp/ztp.md (ZTP JSON, option 67 and 239, the configdb-json plugin's
``url.source``/``url.destination``); sonic-net/sonic-ztp. User class ``SONiC-ZTP``: as matched by
SONiC provisioning servers (option 77); SONiC does not send option 61 (sonic-buildimage#14832).
"""

from __future__ import annotations

import json

from ztp.dhcp import options as o
from ztp.vendors.profile import (
    PROVISION_URL,
    TRANSPORT_HTTP,
    AgentFingerprint,
    BootContext,
    Document,
    Fingerprint,
    Profile,
    text,
)

USER_CLASS = b"SONiC-ZTP"
SUFFIX = ".ztp.json"


def _recognise(fp: Fingerprint) -> bool:
    return USER_CLASS in fp.user_classes or fp.vendor_text.startswith("SONiC")


def _boot_options(ctx: BootContext) -> dict[int, bytes]:
    if ctx.http_port is None:
        return {}
    return {o.BOOTFILE_NAME: text(ctx.url(ctx.document(SUFFIX)))}


def ztp_json(rendered: bytes, ctx: BootContext) -> bytes:
    """The ZTP JSON: one configdb-json section that downloads the rendered config (ztp.md §3.3)."""
    doc = {"ztp": {"configdb-json": {"url": {"source": ctx.url(ctx.boot_file),
                                             "destination": "/etc/sonic/config_db.json"}}}}
    return (json.dumps(doc, indent=2) + "\n").encode()


def _check(rendered: bytes) -> str | None:
    try:
        json.loads(rendered)
    except ValueError as exc:
        return f"SONiC loads the config as config_db.json, but it is not JSON ({exc})"
    return None


PROFILE = Profile(
    name="sonic",
    family="SONiC",
    transport=TRANSPORT_HTTP,
    requires_http=True,
    recognise=_recognise,
    boot_options=_boot_options,
    recognised_by="option 77 'SONiC-ZTP' (or option 60 starting 'SONiC')",
    document=Document(SUFFIX, ztp_json),
    check=_check,
    agent=AgentFingerprint(parameter_list=(1, 3, 6, 12, 15, 28, 42, 66, 67, PROVISION_URL),
                           user_class=USER_CLASS, transport=TRANSPORT_HTTP),
    sources=("sonic-net/SONiC doc/ztp/ztp.md", "sonic-net/sonic-ztp"),
)
