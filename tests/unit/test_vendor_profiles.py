"""Vendor profiles: a vendor's real request fingerprint in, the reply's options decoded as its docs describe.

Each test builds the request the way the family sends it (options 55, 60, 61, 77), runs it through the
chain's identification and option handlers and the wire codec, and reads the reply the way that family
reads it (the profile module docstrings cite the documents).
"""

from __future__ import annotations

import json
import textwrap
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ztp.config import Config, load_config
from ztp.devices import boot_target
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Ingress, Reply, Request, client_key
from ztp.dhcp.handlers.assemble import Assemble
from ztp.dhcp.handlers.boot_file import BootFile
from ztp.dhcp.handlers.device import IdentifyDevice
from ztp.dhcp.handlers.layers import LayeredOptions
from ztp.dhcp.handlers.subnet import SelectSubnet
from ztp.dhcp.handlers.vendor import VendorOptions
from ztp.dhcp.packet import DhcpPacket, build, mac_to_chaddr, parse
from ztp.vendors import PROFILES, iosxe_pnp, junos, nxos_poap, onie, profile_named, recognise, serial_of, sonic
from ztp.vendors.profile import (
    BootContext,
    Fingerprint,
    VendorOptionError,
    decode_suboptions,
    decode_vivso,
    encode_suboptions,
    encode_vivso,
    user_class_items,
)

SERVER = IPv4Address("10.60.0.1")
DIRECT = Ingress(ifindex=2, ifname="s1", server_ip=SERVER, local_ips=frozenset({SERVER}), broadcast=True)

ZTP_YAML = """\
templates: ./templates
inventory: ./inventory.yaml
dhcp:
  interfaces: [s1]
  subnets:
    - network: 10.60.0.0/24
      pool: 10.60.0.100-10.60.0.199
      routers: [10.60.0.1]
{http}"""

INVENTORY_YAML = """\
defaults:
  template: base.j2
devices:
  - {hostname: eos1, mac: "02:00:00:00:01:01"}
  - {hostname: sonic1, mac: "02:00:00:00:01:02"}
  - {hostname: cumulus1, mac: "02:00:00:00:01:03"}
  - {hostname: junos1, serial: JN1234567890}
  - {hostname: nxos1, serial: FDO21120U8N}
  - {hostname: pnp1, mac: "02:00:00:00:01:06"}
  - {hostname: onie1, mac: "02:00:00:00:01:07"}
  - {hostname: plain1, mac: "02:00:00:00:01:08"}
  - {hostname: forced1, mac: "02:00:00:00:01:09", vendor: junos}
  - {hostname: own1, mac: "02:00:00:00:01:0a", vendor: eos, options: {67: "mine.cfg"}}
"""


def make_config(tmp_path: Path, *, http: bool = True) -> Config:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "base.j2").write_text("hostname {{ hostname }} vendor {{ vendor }}\n")
    (tmp_path / "ztp.yaml").write_text(ZTP_YAML.format(http="http:\n  port: 8080\n" if http else ""))
    (tmp_path / "inventory.yaml").write_text(INVENTORY_YAML)
    return load_config(tmp_path / "ztp.yaml")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


def discover(mac: str, options: dict[int, bytes]) -> DhcpPacket:
    opts = {53: bytes((p.DISCOVER,)), **options}
    return DhcpPacket(op=p.BOOTREQUEST, xid=0x1234, chaddr=mac_to_chaddr(mac), flags=0x8000, options=opts)


def offer(config: Config, pkt: DhcpPacket) -> DhcpPacket:
    """The OFFER's options as they come off the wire, after the identification and option handlers."""
    pkt = parse(build(pkt))  # the request as the server would receive it
    req = Request(pkt=pkt, ingress=DIRECT, now=0.0, mtype=pkt.message_type, client=client_key(pkt), relay=None,
                  mac=pkt.mac)
    reply = Reply(mtype=p.OFFER, server_id=SERVER, yiaddr=IPv4Address("10.60.0.150"))
    for handler in (SelectSubnet(config), IdentifyDevice(config), LayeredOptions(config), VendorOptions(config),
                    BootFile(config), Assemble()):
        out = handler(req, reply)
        assert isinstance(out, Reply)
        reply = out
    assert reply.packet is not None
    return parse(build(reply.packet))


def test_eos_gets_an_http_url_in_67(config: Config) -> None:
    # EOS ZTP: option 60 starts "Arista"; it fetches the URL in 67 (ztpserver docs).
    got = offer(config, discover("02:00:00:00:01:01", {55: bytes((1, 3, 6, 12, 15, 28, 42, 66, 67)),
                                                      60: b"Arista;DCS-7050SX3-48YC8;01.00;JPE12345678"}))
    assert got.options[67] == b"http://10.60.0.1:8080/configs/eos1.cfg"


def test_sonic_gets_a_ztp_json_url_that_points_at_the_config(config: Config) -> None:
    got = offer(config, discover("02:00:00:00:01:02", {55: bytes((1, 3, 6, 67, 239)), 77: b"SONiC-ZTP"}))
    url = got.options[67].decode()
    assert url == "http://10.60.0.1:8080/configs/sonic1.ztp.json"
    target = boot_target(config.inventory, url.rsplit("/", 1)[1])
    assert target is not None and target.document == sonic.SUFFIX and target.config_name == "sonic1.cfg"
    ctx = BootContext(SERVER, "sonic1.cfg", "sonic1", 8080)
    doc = json.loads(sonic.ztp_json(b"{}", ctx))
    # ztp.md: the configdb-json plugin downloads url.source to url.destination.
    assert doc["ztp"]["configdb-json"]["url"] == {"source": "http://10.60.0.1:8080/configs/sonic1.cfg",
                                                 "destination": "/etc/sonic/config_db.json"}
    # RFC 3004 framing of the user class is recognised as well as dhclient's bare string.
    assert sonic.PROFILE.recognise(Fingerprint(user_class=user_class_items(b"SONiC-ZTP")))


def test_cumulus_gets_a_script_url_in_239(config: Config) -> None:
    got = offer(config, discover("02:00:00:00:01:03", {55: bytes((1, 28, 2, 3, 15, 6, 119, 12, 239))}))
    assert got.options[239] == b"http://10.60.0.1:8080/configs/cumulus1.cfg"
    assert profile_named("cumulus").check(b"#!/bin/bash\n# CUMULUS-AUTOPROVISIONING\n") is None  # type: ignore[union-attr]
    assert "CUMULUS-AUTOPROVISIONING" in (profile_named("cumulus").check(b"#!/bin/bash\n") or "")  # type: ignore[union-attr]


def test_junos_reads_option_43_suboptions_and_150_and_is_known_by_its_serial(config: Config) -> None:
    vendor_class = b"Juniper-ex4300-48t-JN1234567890"
    fp = Fingerprint(vendor_class=vendor_class)
    assert serial_of(fp) == "JN1234567890"
    # Bernat's capture: option 55 in this order; the MAC is not in the inventory, the serial is.
    got = offer(config, discover("02:00:00:00:09:99", {55: bytes((3, 51, 1, 15, 6, 66, 67, 120, 44, 43, 150, 12,
                                                                   7, 42)), 60: vendor_class}))
    sub = decode_suboptions(got.options[43])
    assert sub[junos.TRANSFER_MODE] == b"http"
    assert sub[junos.CONFIG] == b"configs/junos1.cfg"  # fetched as http://<150>:<05>/configs/junos1.cfg
    assert sub[junos.HTTP_PORT] == b"8080"
    assert junos.IMAGE not in sub
    assert IPv4Address(got.options[150]) == SERVER


def test_junos_over_tftp_without_an_http_listener(tmp_path: Path) -> None:
    config = make_config(tmp_path, http=False)
    got = offer(config, discover("02:00:00:00:01:09", {60: b"Juniper-qfx5120-48y-XYZ"}))  # forced1: vendor junos
    sub = decode_suboptions(got.options[43])
    assert sub[junos.TRANSFER_MODE] == b"tftp" and sub[junos.CONFIG] == b"forced1.cfg"


def test_nxos_poap_is_known_by_the_serial_in_option_61_and_gets_its_script(config: Config) -> None:
    got = offer(config, discover("02:00:00:00:09:98", {55: bytes((1, 3, 6, 12, 15, 42, 66, 67, 150)),
                                                      61: b"\x00FDO21120U8N"}))
    # POAP needs a script server (66 or 150) and a script name (67), else "Invalid DHCP OFFER".
    assert got.options[67] == b"nxos1.poap.py"
    assert IPv4Address(got.options[150]) == SERVER and got.options[66] == b"10.60.0.1"
    assert got.options[61] == b"\x00FDO21120U8N"  # echoed (RFC 6842)
    ctx = BootContext(SERVER, "nxos1.cfg", "nxos1", 8080)
    script = nxos_poap.poap_script(b"hostname nxos1\n", ctx)
    assert nxos_poap.verify_script(script)
    assert not nxos_poap.verify_script(script.replace(b"nxos1.cfg", b"nxos2.cfg"))
    settings = nxos_poap.script_settings(script)
    assert settings["SERVER"] == "10.60.0.1" and settings["CONFIG"] == "nxos1.cfg"
    # IOS AutoInstall's type-0 client-id is not a POAP serial.
    assert not nxos_poap.PROFILE.recognise(Fingerprint(client_id=b"\x00cisco-0011.2233.4455-Vl1"))


def test_iosxe_pnp_gets_the_option_43_string(config: Config) -> None:
    got = offer(config, discover("02:00:00:00:01:06", {55: bytes((1, 3, 6, 15, 43, 66, 67, 150)),
                                                      60: b"ciscopnp"}))
    assert got.options[43] == b"5A1N;B2;K4;I10.60.0.1;J8080"
    fields = iosxe_pnp.parse_pnp_string(got.options[43].decode())
    assert fields == {"5": "A1N", "B": "2", "K": "4", "I": "10.60.0.1", "J": "8080"}


def test_onie_gets_exact_installer_urls_in_114_and_125(config: Config) -> None:
    got = offer(config, discover("02:00:00:00:01:07", {
        55: bytes((1, 3, 6, 7, 12, 15, 42, 54, 66, 67, 72, 114, 150)),
        60: b"onie_vendor:x86_64-accton_as7326_56x-r0", 77: b"onie_dhcp_user_class"}))
    url = b"http://10.60.0.1:8080/configs/onie1.cfg"
    assert got.options[114] == url
    assert decode_vivso(got.options[125]) == {onie.ENTERPRISE: {onie.VIVSO_INSTALLER_URL: url}}
    assert IPv4Address(got.options[72]) == SERVER
    assert onie.waterfall("x86_64-accton_as7326_56x-r0")[0] == "onie-installer-x86_64-accton_as7326_56x-r0"
    assert onie.waterfall("x86_64-accton_as7326_56x-r0")[-1] == "onie-installer"


def test_generic_devices_keep_tftp_66_67(config: Config) -> None:
    got = offer(config, discover("02:00:00:00:01:08", {55: bytes((1, 3, 66, 67))}))
    assert got.options[66] == b"10.60.0.1" and got.options[67] == b"plain1.cfg"
    assert got.file.rstrip(b"\0") == b"plain1.cfg"
    assert 43 not in got.options and 239 not in got.options


def test_inventory_vendor_wins_over_option_60_and_device_options_win_over_the_profile(config: Config) -> None:
    forced = offer(config, discover("02:00:00:00:01:09", {60: b"Arista;DCS"}))
    assert 43 in forced.options and not forced.options[67].startswith(b"http")  # junos, as the inventory says
    own = offer(config, discover("02:00:00:00:01:0a", {}))
    assert own.options[67] == b"mine.cfg"  # the device's own option 67 beats its eos profile's URL


def test_http_profiles_send_nothing_without_an_http_listener(tmp_path: Path) -> None:
    config = make_config(tmp_path, http=False)
    got = offer(config, discover("02:00:00:00:01:01", {60: b"Arista;DCS"}))
    assert got.options[67] == b"eos1.cfg"  # generic TFTP names stay; ztp check says eos needs http


def test_recognition_order_and_names() -> None:
    assert recognise(Fingerprint(vendor_class=b"ciscopnp", client_id=b"\x00FDO1")) is iosxe_pnp.PROFILE
    assert recognise(Fingerprint()) is None
    assert recognise(Fingerprint(parameter_list=bytes((67, 239)), user_class=b"SONiC-ZTP")) is sonic.PROFILE
    assert profile_named("nxos_poap") is nxos_poap.PROFILE and profile_named("NXOS-POAP") is nxos_poap.PROFILE
    assert {p.name for p in PROFILES} == {"generic-tftp", "eos", "sonic", "cumulus", "junos", "nxos-poap",
                                         "iosxe-pnp", "onie"}
    for profile in PROFILES:
        assert profile.sources and profile.recognised_by and profile.family


def test_encodings_round_trip_and_refuse_truncation() -> None:
    raw = encode_suboptions({0: b"img.tgz", 1: b"c.cfg", 3: b"http"})
    assert raw[:2] == b"\x00\x07" and decode_suboptions(raw) == {0: b"img.tgz", 1: b"c.cfg", 3: b"http"}
    vivso = encode_vivso(42623, {1: b"http://x/i"})
    assert vivso[:5] == b"\x00\x00\xa6\x7f\x0c" and decode_vivso(vivso) == {42623: {1: b"http://x/i"}}
    for bad in (b"\x01\x05ab", b"\x01"):
        with pytest.raises(VendorOptionError):
            decode_suboptions(bad)
    with pytest.raises(VendorOptionError):
        decode_vivso(vivso[:-1])


def test_inventory_serial_problems(tmp_path: Path) -> None:
    from ztp.config import check_config

    make_config(tmp_path)
    (tmp_path / "inventory.yaml").write_text(textwrap.dedent("""\
        defaults: {template: base.j2, vendor: nope}
        devices:
          - {hostname: a1, serial: SN1}
          - {hostname: a2, serial: sn1}
          - {hostname: a3, client_id: SN9}
          - {hostname: a4, serial: SN9, vendor: junoss}
        """))
    _, problems = check_config(tmp_path / "ztp.yaml")
    text = "\n".join(str(p) for p in problems)
    assert "duplicate serial 'sn1'" in text and "inventory.yaml:4:" in text
    assert "serial 'SN9' is the client_id of a3" in text
    assert "vendor 'nope' is not a profile" in text and "vendor 'junoss' is not a profile" in text
