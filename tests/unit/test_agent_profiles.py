"""`ztp agent --profile`: the request each profile sends is recognised as that family by the server, and the
agent reads the server's reply the family's way (what it fetches, over which transport, how it checks it)."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from test_vendor_profiles import discover, make_config, offer

from ztp.agent.profiles import PlanError, default_serial, fingerprint_options, parse_mix, plan, resolve
from ztp.dhcp.packet import DhcpPacket
from ztp.vendors import nxos_poap, recognise
from ztp.vendors.profile import BootContext, Fingerprint

MAC = {"eos": "02:00:00:00:01:01", "sonic": "02:00:00:00:01:02", "cumulus": "02:00:00:00:01:03",
       "junos": "02:00:00:00:09:01", "nxos-poap": "02:00:00:00:09:02", "iosxe-pnp": "02:00:00:00:01:06",
       "onie": "02:00:00:00:01:07", "generic": "02:00:00:00:01:08"}
SERIAL = {"junos": "JN1234567890", "nxos-poap": "FDO21120U8N"}


def agent_offer(tmp_path: Path, name: str, *, http: bool = True) -> tuple[DhcpPacket, str]:
    profile = resolve(name)
    serial = SERIAL.get(name, default_serial(MAC[name]))
    vendor_class, client_id, user_class, prl = fingerprint_options(profile, serial=serial, mac=MAC[name])
    options = {55: bytes(prl)}
    if vendor_class:
        options[60] = vendor_class.encode()
    if client_id:
        options[61] = client_id
    if user_class:
        options[77] = user_class
    fp = Fingerprint(vendor_class=options.get(60), client_id=options.get(61), user_class=options.get(77),
                     parameter_list=options[55])
    assert (recognise(fp) or resolve("generic")) is profile  # the server sees the family the agent imitates
    return offer(make_config(tmp_path, http=http), discover(MAC[name], options)), serial


@pytest.mark.parametrize(("name", "transport", "url"), [
    ("eos", "http", "http://10.60.0.1:8080/configs/eos1.cfg"),
    ("sonic", "http", "http://10.60.0.1:8080/configs/sonic1.ztp.json"),
    ("cumulus", "http", "http://10.60.0.1:8080/configs/cumulus1.cfg"),
    ("junos", "http", "http://10.60.0.1:8080/configs/junos1.cfg"),
    ("nxos-poap", "tftp", "tftp://10.60.0.1/nxos1.poap.py"),
    ("iosxe-pnp", "pnp", "http://10.60.0.1:8080/pnp/"),
    ("onie", "http", "http://10.60.0.1:8080/configs/onie1.cfg"),
    ("generic", "tftp", "tftp://10.60.0.1/plain1.cfg"),
])
def test_agent_reads_the_reply_its_familys_way(tmp_path: Path, name: str, transport: str, url: str) -> None:
    ack, serial = agent_offer(tmp_path, name)
    step = plan(resolve(name), ack, serial=serial, mac=MAC[name])
    first = step.fetches[0]
    assert (first.transport, first.url) == (transport, url)
    if name == "cumulus":
        assert ("CUMULUS-SERIAL", serial) in first.headers
        assert step.verify(b"#!/bin/bash\n") is not None and step.verify(b"# CUMULUS-AUTOPROVISIONING\n") is None
    if name == "onie":
        assert step.verify(b"hostname x\n") is not None  # ONIE runs only executables
        # exact URLs first (125, then 114), then the HTTP waterfall, then TFTP
        assert [f.transport for f in step.fetches][:2] == ["http", "http"] and step.fetches[-1].transport == "tftp"
    if name == "iosxe-pnp":  # PnP with the device's UDI, then AutoInstall (TFTP of 67 from 150)
        assert dict(first.headers)["udi"].endswith(f",SN:{serial}")
        assert step.fetches[1].url == "tftp://10.60.0.1/pnp1.cfg"


def test_poap_follows_its_script_to_the_config(tmp_path: Path) -> None:
    ack, serial = agent_offer(tmp_path, "nxos-poap")
    step = plan(resolve("nxos-poap"), ack, serial=serial, mac=MAC["nxos-poap"])
    ctx = BootContext(IPv4Address("10.60.0.1"), "nxos1.cfg", "nxos1", None)
    script = nxos_poap.poap_script(b"hostname nxos1\n", ctx)
    assert step.verify(script) is None and step.verify(script + b"# tampered\n") is not None
    assert step.follow is not None
    config = step.follow(script)
    assert config.fetches[0].url == "tftp://10.60.0.1/nxos1.cfg"
    assert config.verify(b"hostname nxos1\n") is None and config.verify(b"hostname evil\n") is not None


def test_sonic_follows_the_ztp_json(tmp_path: Path) -> None:
    ack, serial = agent_offer(tmp_path, "sonic")
    step = plan(resolve("sonic"), ack, serial=serial, mac=MAC["sonic"])
    doc = json.dumps({"ztp": {"configdb-json": {"url": {"source": "http://10.60.0.1:8080/configs/sonic1.cfg"}}}})
    assert step.verify(doc.encode()) is None and step.verify(b"{}") is not None
    assert step.follow is not None
    assert step.follow(doc.encode()).fetches[0].url == "http://10.60.0.1:8080/configs/sonic1.cfg"


def test_junos_over_tftp_and_missing_options(tmp_path: Path) -> None:
    ack, serial = agent_offer(tmp_path, "junos", http=False)
    assert plan(resolve("junos"), ack, serial=serial, mac=MAC["junos"]).fetches[0].url == \
        "tftp://10.60.0.1/junos1.cfg"
    (tmp_path / "b").mkdir()
    ack, serial = agent_offer(tmp_path / "b", "eos", http=False)  # no HTTP listener: 67 is a file name
    with pytest.raises(PlanError, match="not an HTTP URL"):
        plan(resolve("eos"), ack, serial=serial, mac=MAC["eos"])


def test_profile_mix_parsing() -> None:
    assert parse_mix("eos=10, junos=5,generic=1") == [("eos", 10), ("junos", 5), ("generic", 1)]
    for bad in ("eos", "eos=x", "nope=3", ""):
        with pytest.raises(ValueError):
            parse_mix(bad)
    assert resolve("generic").name == "generic-tftp" and resolve("nxos-poap").agent.client_id == "\0{serial}"
