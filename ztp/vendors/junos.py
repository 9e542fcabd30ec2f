"""junos: Juniper Junos / Junos OS Evolved ZTP: option 43 sub-options plus the file server in 150.

A Juniper switch at factory defaults sends option 60 ``Juniper-<model>-<serial>`` and reads option 43 as
encapsulated sub-options (RFC 2132 §8.4): 00 image file name, 01 config file name, 02 image file type
(``symlink``), 03 transfer mode (``http``, ``ftp``, ``tftp``), 04 alternate image file name, 05 HTTP port.
Files are fetched from the server in option 150 (else 66), by the transfer mode: with HTTP the config
name is a path on that server, so ztp sends ``configs/<hostname>.cfg``; with TFTP just the boot-file name.
The image is sent only when the device's vars name one (``junos_image``, a file under tftp.root).

Sources: Juniper TechLibrary, "Zero Touch Provisioning DHCP Options" (Junos OS and Junos OS Evolved:
option 43 sub-options 00-05, option 150/66); Vincent Bernat, "Zero-Touch Provisioning for Juniper" (a
captured request: option 60, option 55 order, the vendor option space).
"""

from __future__ import annotations

from ztp.vendors.profile import (
    CONFIG_PATH,
    TFTP_SERVER_ADDRESS,
    TRANSPORT_HTTP,
    TRANSPORT_TFTP,
    VENDOR_SPECIFIC,
    AgentFingerprint,
    BootContext,
    Fingerprint,
    Profile,
    encode_suboptions,
    text,
)

PREFIX = "Juniper-"
IMAGE, CONFIG, IMAGE_TYPE, TRANSFER_MODE, ALT_IMAGE, HTTP_PORT = 0, 1, 2, 3, 4, 5


def _recognise(fp: Fingerprint) -> bool:
    return fp.vendor_text.startswith(PREFIX)


def serial_of(fp: Fingerprint) -> str | None:
    """The serial at the end of ``Juniper-<model>-<serial>`` (the model itself may contain '-')."""
    rest = fp.vendor_text[len(PREFIX):] if _recognise(fp) else ""
    model, sep, serial = rest.rpartition("-")
    return serial if sep and model and serial else None


def _boot_options(ctx: BootContext) -> dict[int, bytes]:
    sub: dict[int, bytes] = {}
    if ctx.http_port is not None:
        sub[TRANSFER_MODE] = b"http"
        sub[CONFIG] = text(f"{CONFIG_PATH}/{ctx.boot_file}")
        if ctx.http_port != 80:
            sub[HTTP_PORT] = text(str(ctx.http_port))
    else:
        sub[TRANSFER_MODE] = b"tftp"
        sub[CONFIG] = text(ctx.boot_file)
    image = ctx.vars.get("junos_image")
    if isinstance(image, str) and image:
        sub[IMAGE] = text(image)
        sub[IMAGE_TYPE] = b"symlink"
    return {VENDOR_SPECIFIC: encode_suboptions(sub), TFTP_SERVER_ADDRESS: ctx.server.packed}


PROFILE = Profile(
    name="junos",
    family="Juniper Junos",
    transport=TRANSPORT_HTTP,
    recognise=_recognise,
    serial=serial_of,
    boot_options=_boot_options,
    recognised_by="option 60 'Juniper-<model>-<serial>' (serial taken from it)",
    agent=AgentFingerprint(parameter_list=(3, 51, 1, 15, 6, 66, 67, 120, 44, 43, 150, 12, 7, 42),
                           vendor_class="Juniper-{model}-{serial}", model="ex4300-48t", transport=TRANSPORT_HTTP),
    sources=("Juniper TechLibrary: Zero Touch Provisioning DHCP Options (Junos OS, Junos OS Evolved)",
             "vincent.bernat.ch/en/blog/2020-dhcp-ztp-juniper"),
)
_ = TRANSPORT_TFTP  # Junos falls back to TFTP when ztp serve has no HTTP listener
