"""How `ztp agent --profile NAME` boots like a vendor's switch: its request fingerprint, and how it reads the
reply and fetches its config.

The fingerprint (options 55, 60, 61, 77) comes from the profile's `AgentFingerprint` (ztp.vendors). Reading the
ACK is pure (`plan(profile, ack, ...)` -> the fetches to try, in order, and how to check each result); the
device's I/O shell (`ztp.agent.device`) runs the plan over TFTP or HTTP. Each family reads its options its own
way, as its profile module documents:

* eos: option 67 is a URL, fetched over HTTP;
* sonic: option 67 names a ztp.json over HTTP; its configdb-json ``url.source`` is the config;
* cumulus: option 239 is a script URL, fetched with the CUMULUS-* headers; the script must carry the marker;
* junos: option 43 sub-options (config file, transfer mode, HTTP port) against the server in 150, else 66;
* nxos-poap: the script named in 67 over TFTP from 66/150; its ``#md5sum`` line checked; the config it names
  fetched and checked against the script's CONFIG_MD5;
* iosxe-pnp: option 43's ``I``/``J``/``K`` fields name the PnP server, port and transport: HELLO,
  WORK-REQUEST with the UDI serial, the config-upgrade's copy source, WORK-RESPONSE (`ztp.agent.pnp_client`);
  without work, AutoInstall: TFTP of the config in 67 from 150/66;
* onie: exact URLs (125 VIVSO installer URL, 114, 150 + 67, 66 + 67), then the HTTP waterfall of default
  installer names at 72's, 66's or the DHCP server's address, then the TFTP waterfall; the installer must
  start with ``#!``;
* generic (generic-tftp): 66/150/siaddr + 67/file over TFTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from urllib.parse import urlsplit

from ztp.agent import pnp_client
from ztp.dhcp import options as opt
from ztp.dhcp.packet import ZERO_IP, DhcpPacket
from ztp.vendors import cumulus, iosxe_pnp, junos, nxos_poap, onie, profile_named
from ztp.vendors.profile import (
    DEFAULT_URL,
    PROVISION_URL,
    TFTP_SERVER_ADDRESS,
    TRANSPORT_HTTP,
    TRANSPORT_TFTP,
    VENDOR_SPECIFIC,
    VI_VENDOR_SPECIFIC,
    WWW_SERVER,
    Profile,
    VendorOptionError,
    decode_suboptions,
    decode_vivso,
    md5_hex,
)

AGENT_NAMES = {"generic": "generic-tftp"}
"""`--profile` spellings that differ from the profile's name."""


TRANSPORT_PNP = "pnp"
"""A Fetch that runs Cisco PnP against the server (`ztp.agent.pnp_client`); its name is the server's base URL
and its headers carry the UDI."""


class PlanError(Exception):
    """The ACK does not carry what this family needs to find its config."""


@dataclass(frozen=True, slots=True)
class Fetch:
    """One transfer to try: TFTP (server, file) or HTTP (url)."""

    transport: str
    server: str
    name: str
    """TFTP file name, or the full HTTP URL."""
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        """The fetch as a URL (for reports)."""
        if self.transport == TRANSPORT_PNP:
            return f"{self.name}/pnp/"
        return self.name if self.transport == TRANSPORT_HTTP else f"tftp://{self.server}/{self.name}"


Verify = Callable[[bytes], str | None]
"""Checks fetched bytes the way the family would: None when acceptable, else why not."""


def _accept(data: bytes) -> str | None:
    return None


@dataclass(slots=True)
class Plan:
    """Fetches to try in order (the first that succeeds wins), the check of the result, and a follow-up that
    turns a fetched document into the next plan (a POAP script -> its config, a ztp.json -> config_db)."""

    fetches: list[Fetch]
    verify: Verify = _accept
    follow: Callable[[bytes], Plan] | None = None
    what: str = "config"
    notes: list[str] = field(default_factory=list)


def resolve(name: str) -> Profile:
    """The vendor profile for a `--profile` value (``generic`` is generic-tftp); ValueError if unknown."""
    profile = profile_named(AGENT_NAMES.get(name, name))
    if profile is None:
        raise ValueError(f"unknown profile {name!r}")
    return profile


def default_serial(mac: str) -> str:
    """A serial number for an emulated device without one: ``ZTP`` + its MAC's hex digits, upper case."""
    return "ZTP" + mac.replace(":", "").upper()


def fingerprint_options(profile: Profile, *, serial: str, mac: str) -> tuple[str | None, bytes | None,
                                                                             bytes | None, tuple[int, ...]]:
    """(option 60 text, option 61 bytes, option 77 bytes, option 55 codes) the family sends."""
    fp = profile.agent
    fields = {"serial": serial, "model": fp.model, "platform": fp.model, "mac": mac}
    vendor_class = fp.vendor_class.format(**fields) if fp.vendor_class else None
    client_id = fp.client_id.format(**fields).encode("latin-1") if fp.client_id else None
    return vendor_class, client_id, fp.user_class, fp.parameter_list


def _text(raw: bytes | None) -> str:
    return (raw or b"").split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def _ip(raw: bytes | None) -> str | None:
    return str(IPv4Address(raw[:4])) if raw is not None and len(raw) >= 4 else None


def _tftp_server(ack: DhcpPacket) -> str | None:
    """The TFTP server as most families read it: 150, else 66, else siaddr."""
    return (_ip(ack.options.get(TFTP_SERVER_ADDRESS)) or _text(ack.options.get(opt.TFTP_SERVER_NAME)) or
            (str(ack.siaddr) if ack.siaddr != ZERO_IP else None))


def _server_id(ack: DhcpPacket) -> str | None:
    return _ip(ack.options.get(opt.SERVER_ID))


def _http_url(raw: bytes | None, option: int) -> str:
    url = _text(raw)
    if not url.startswith(("http://", "https://")):
        raise PlanError(f"option {option} is {url!r}, not an HTTP URL")
    return url


def _boot_file(ack: DhcpPacket) -> str | None:
    return _text(ack.options.get(opt.BOOTFILE_NAME)) or _text(ack.file) or None


def _http_host(host: str, port: int) -> str:
    return host if port == 80 else f"{host}:{port}"


def plan(profile: Profile, ack: DhcpPacket, *, serial: str, mac: str) -> Plan:
    """What a device of `profile` fetches after this ACK, read the way that family reads its options."""
    name = profile.name
    o = ack.options
    if name == "eos":
        return Plan([Fetch(TRANSPORT_HTTP, "", _http_url(o.get(opt.BOOTFILE_NAME), 67))])
    if name == "sonic":
        def configdb(doc: bytes) -> Plan:
            source = json.loads(doc)["ztp"]["configdb-json"]["url"]["source"]
            return Plan([Fetch(TRANSPORT_HTTP, "", source)], verify=_json, what="config_db.json")
        return Plan([Fetch(TRANSPORT_HTTP, "", _http_url(o.get(opt.BOOTFILE_NAME), 67))], verify=_ztp_json,
                    follow=configdb, what="ztp.json")
    if name == "cumulus":
        headers = (("CUMULUS-SERIAL", serial), ("CUMULUS-BASE-MAC", mac), ("CUMULUS-MGMT-MAC", mac),
                   ("CUMULUS-ARCH", "x86_64"))
        return Plan([Fetch(TRANSPORT_HTTP, "", _http_url(o.get(PROVISION_URL), PROVISION_URL), headers)],
                    verify=lambda d: cumulus.PROFILE.check(d), what="ZTP script")
    if name == "junos":
        try:
            sub = decode_suboptions(o.get(VENDOR_SPECIFIC, b""))
        except VendorOptionError as exc:
            raise PlanError(f"option 43: {exc}") from None
        config = sub.get(junos.CONFIG)
        junos_server = _ip(o.get(TFTP_SERVER_ADDRESS)) or _text(o.get(opt.TFTP_SERVER_NAME))
        if not config or not junos_server:
            raise PlanError("option 43 names no config file (sub-option 1) or there is no server in 150/66")
        mode = sub.get(junos.TRANSFER_MODE, b"tftp").decode()
        if mode == "http":
            port = int(sub.get(junos.HTTP_PORT, b"80"))
            url = f"http://{_http_host(junos_server, port)}/{config.decode().lstrip('/')}"
            return Plan([Fetch(TRANSPORT_HTTP, junos_server, url)])
        return Plan([Fetch(TRANSPORT_TFTP, junos_server, config.decode())])
    if name == "nxos-poap":
        script, server = _boot_file(ack), _tftp_server(ack)
        if not script or not server:
            raise PlanError("Invalid DHCP OFFER: missing script name (67) or script server (66/150)")

        def config_of(body: bytes) -> Plan:
            settings = nxos_poap.script_settings(body)
            md5 = settings.get("CONFIG_MD5", "")
            return Plan([Fetch(settings.get("PROTOCOL", "tftp"), settings["SERVER"], settings["CONFIG"])],
                        verify=lambda d: None if md5_hex(d) == md5 else "config MD5 differs from the "
                        "script's CONFIG_MD5", what="config")
        return Plan([Fetch(TRANSPORT_TFTP, server, script)],
                    verify=lambda d: None if nxos_poap.verify_script(d) else "POAP script MD5 line does not match",
                    follow=config_of, what="POAP script")
    if name == "iosxe-pnp":
        fields = iosxe_pnp.parse_pnp_string(_text(o.get(VENDOR_SPECIFIC)))
        file = _boot_file(ack)
        if "I" not in fields or not file:
            raise PlanError("option 43 has no PnP server (I field) or option 67 no config name")
        scheme = "https" if fields.get("K") == "5" else "http"
        port = int(fields.get("J") or (443 if scheme == "https" else 80))
        udi = f"PID:{profile.agent.model or pnp_client.DEFAULT_PID},VID:V01,SN:{serial}"
        fetches = [Fetch(TRANSPORT_PNP, fields["I"], f"{scheme}://{_http_host(fields['I'], port)}", (("udi", udi),))]
        autoinstall = _tftp_server(ack)
        if autoinstall:  # IOS-XE falls back to AutoInstall: TFTP of the named config from 150 / 66
            fetches.append(Fetch(TRANSPORT_TFTP, autoinstall, file))
        return Plan(fetches)
    if name == "onie":
        return _onie_plan(ack, platform=profile.agent.model)
    tftp_server, boot = _tftp_server(ack), _boot_file(ack)
    if not tftp_server or not boot:
        raise PlanError("no boot file (67/file) or boot server (66/150/siaddr)")
    return Plan([Fetch(TRANSPORT_TFTP, tftp_server, boot)])


def _json(data: bytes) -> str | None:
    try:
        json.loads(data)
    except ValueError as exc:
        return f"not JSON: {exc}"
    return None


def _ztp_json(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
        doc["ztp"]["configdb-json"]["url"]["source"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"not a ZTP JSON with a configdb-json url.source ({exc})"
    return None


def _onie_plan(ack: DhcpPacket, *, platform: str) -> Plan:
    """ONIE's discovery order: exact URLs from DHCP, then the HTTP waterfall, then the TFTP waterfall."""
    o = ack.options
    fetches: list[Fetch] = []

    def add(url: str) -> None:
        if url.startswith(("http://", "https://")):
            fetches.append(Fetch(TRANSPORT_HTTP, urlsplit(url).hostname or "", url))
        elif url.startswith("tftp://"):
            parts = urlsplit(url)
            fetches.append(Fetch(TRANSPORT_TFTP, parts.hostname or "", parts.path.lstrip("/")))

    raw125 = o.get(VI_VENDOR_SPECIFIC)
    if raw125:
        try:
            installer = decode_vivso(raw125).get(onie.ENTERPRISE, {}).get(onie.VIVSO_INSTALLER_URL)
        except VendorOptionError:
            installer = None
        if installer:
            add(installer.decode())
    if o.get(DEFAULT_URL):
        add(_text(o.get(DEFAULT_URL)))
    file = _text(o.get(opt.BOOTFILE_NAME))
    for server in (_ip(o.get(TFTP_SERVER_ADDRESS)), _text(o.get(opt.TFTP_SERVER_NAME))):
        if file and server:
            add(file if "://" in file else f"tftp://{server}/{file}")
    names = onie.waterfall(platform)
    hosts = [h for h in (_ip(o.get(WWW_SERVER)), _text(o.get(opt.TFTP_SERVER_NAME)), _server_id(ack)) if h]
    for host in dict.fromkeys(hosts):
        for default in names:
            add(f"http://{host}/{default}")
    tftp = _text(o.get(opt.TFTP_SERVER_NAME)) or (str(ack.siaddr) if ack.siaddr != ZERO_IP else "")
    if tftp:
        for default in names:
            add(f"tftp://{tftp}/{default}")
    if not fetches:
        raise PlanError("no installer URL and no server to walk the waterfall on")
    return Plan(fetches, verify=lambda d: onie.PROFILE.check(d), what="installer")


def parse_mix(text: str) -> list[tuple[str, int]]:
    """``eos=10,junos=5`` -> [("eos", 10), ("junos", 5)]; ValueError naming what is wrong."""
    out: list[tuple[str, int]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, count = part.partition("=")
        if not sep or not re.fullmatch(r"\d+", count.strip()):
            raise ValueError(f"{part!r}: write NAME=COUNT, e.g. eos=10")
        resolve(name.strip())
        out.append((name.strip(), int(count)))
    if not out:
        raise ValueError("empty profile mix")
    return out
