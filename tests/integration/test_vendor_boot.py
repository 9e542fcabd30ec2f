"""Every vendor profile boots end to end (issue 12): one `ztp agent --profile NAME` per family against
`ztp serve`, on the server's segment and through `ztp relay`, gets its rendered config over the transport
that family uses (HTTP for EOS, SONiC, Cumulus, Junos, IOS-XE PnP, ONIE; TFTP for POAP and generic), read
the vendor's way (option 43 sub-options, the PnP string, 114/125, the POAP script's MD5 line, the ztp.json).

    srv:s1 10.60.0.1/24 ── seg ── <profile>:eth0                      (direct)
    srv:r1 10.50.0.1/24 ── relay:up0 10.50.0.2 | relay:down0 10.70.0.1 ── segr ── r<profile>:eth0 (relayed)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.appliance import REPO, ApplianceLab, write_config
from ztp.agent.fleet import fleet_macs
from ztp.agent.profiles import resolve
from ztp.lab import Lab

AGENT = [sys.executable, "-m", "ztp.agent.cli"]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")

# (profile, hostname, MAC, serial, transport of the final fetch)
DEVICES = [
    ("eos", "eos-leaf1", "02:00:00:00:12:01", None, "http"),
    ("sonic", "sonic-spine1", "02:00:00:00:12:02", None, "http"),
    ("cumulus", "cumulus-leaf1", "02:00:00:00:12:03", "MT2113X09912", "http"),
    ("junos", "junos-leaf1", "02:00:00:00:12:04", "JN11F2A0BAFC", "http"),
    ("nxos-poap", "nxos-spine1", "02:00:00:00:12:05", "FDO21120U8N", "tftp"),
    ("iosxe-pnp", "iosxe-leaf1", "02:00:00:00:12:06", None, "http"),
    ("onie", "onie-sw1", "02:00:00:00:12:07", None, "http"),
    ("generic", "plain-leaf1", "02:00:00:00:12:08", None, "tftp"),
]


def _inventory() -> str:
    """The vendor example inventory without its 10.60.0.0/24 reservations (relayed devices are on 10.70),
    plus a generic device."""
    text = (REPO / "examples" / "vendors" / "inventory.yaml").read_text()
    text = re.sub(r"^    ip: .*\n", "", text, flags=re.MULTILINE)
    return text + ("  - hostname: plain-leaf1\n    mac: 02:00:00:00:12:08\n    template: leaf.j2\n"
                   "    vars: {asn: 65008, loopback: 10.255.2.8, vlans: [10]}\n")


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    config = write_config(tmp_path, dns=False, inventory=_inventory(),
                          config_extra="http:\n  port: 80\nlisten: [10.50.0.1]\n")
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=config).build()
    # The relay: server side 10.50.0.0/24, client side 10.70.0.0/24 (a subnet of the config).
    relay = lab.ns("relay")
    lab.link(relay, "up0", app.srv, "r1", addr_a="10.50.0.2/24", addr_b="10.50.0.1/24")
    lab.run(app.srv, ["ip", "route", "add", "10.70.0.0/24", "via", "10.50.0.2"])
    segr = lab.segment("segr")
    lab.attach(segr, relay, "down0", addr="10.70.0.1/24", mac="02:00:00:00:70:01")
    app.start()
    lab.wait_for(lambda: "http listening" in app.log.read_text(errors="replace"), 10, "http listening")
    bindings = tmp_path / "relay-bindings.json"
    proc = lab.spawn(relay, [sys.executable, "-m", "ztp", "relay", "--server", "10.50.0.1", "--bindings-file",
                             str(bindings), "--client-interface", "down0"], log=tmp_path / "relay.log",
                     env={"PYTHONPATH": str(REPO)})
    lab.wait_for(lambda: bindings.exists() or proc.poll() is not None, 10, "the relay to start")
    assert proc.poll() is None, (tmp_path / "relay.log").read_text()
    app.clients["segr"] = segr
    yield app
    lab.stop(proc)
    if app.proc is not None:
        app.stop()


def run_agent(app: ApplianceLab, ns: str, *args: str, timeout: float = 90) -> tuple[int, dict[str, Any], str]:
    res = subprocess.run(["ip", "netns", "exec", ns, *AGENT, "--interface", "eth0", "--json", "--arp-probes", "0",
                          *args], capture_output=True, text=True, timeout=timeout, env=ENV, check=False)
    out = json.loads(res.stdout) if res.stdout.strip().startswith("{") else {"unparsed": res.stdout}
    return res.returncode, out, res.stderr


@pytest.mark.parametrize("path", ["direct", "relay"])
def test_each_profile_gets_its_config_over_its_transport(appliance: ApplianceLab, path: str) -> None:
    lab = appliance.lab
    failures = []
    for profile, hostname, mac, serial, transport in DEVICES:
        name = ("r" if path == "relay" else "") + profile.replace("-", "")
        ns = lab.ns(name)
        lab.attach(appliance.clients["segr"] if path == "relay" else appliance.seg, ns, "eth0", mac=mac)
        args = ["--profile", profile, "--timeout", "40"] + (["--serial", serial] if serial else [])
        code, res, err = run_agent(appliance, ns, *args)
        expected = appliance.rendered(hostname=hostname)
        if code != 0 or res.get("sha256") != hashlib.sha256(expected).hexdigest() \
                or res.get("transport") != transport or res.get("profile") != resolve(profile).name:
            failures.append(f"{profile}: exit {code} {json.dumps(res)[:600]} {err[-800:]}")
            continue
        assert res["ip"].startswith("10.70.0." if path == "relay" else "10.60.0.")
        if profile == "nxos-poap":
            assert res["verified"] == ["POAP script", "config"] and res["fetched"][0].endswith("nxos-spine1.poap.py")
        if profile == "sonic":
            assert res["verified"] == ["ztp.json", "config_db.json"]
        if profile == "onie":
            assert res["fetched"][0].endswith("/configs/onie-sw1.cfg")
    assert not failures, "\n".join(failures) + "\n" + appliance.log.read_text()[-3000:]
    assert " refused to " not in appliance.log.read_text()  # no device was refused its own config


FAMILY_TEMPLATE = {"eos": "eos/leaf.j2", "sonic": "sonic/leaf.j2", "cumulus": "cumulus/leaf.j2",
                   "junos": "junos/leaf.j2", "nxos-poap": "nxos/leaf.j2", "iosxe-pnp": "iosxe/leaf.j2",
                   "onie": "onie/installer.j2", "generic": "leaf.j2"}
PER_PROFILE = int(os.environ.get("ZTP_VENDOR_FLEET_EACH", "25"))  # 8 profiles x 25 = a fleet of 200


@pytest.fixture
def fleet_appliance(lab: Lab, tmp_path: Path) -> Iterator[tuple[ApplianceLab, str]]:
    """An appliance whose inventory lists every device of a mixed fleet, each with its family's template."""
    mix = [(name, PER_PROFILE) for name in FAMILY_TEMPLATE]
    macs = fleet_macs("02:00:00:aa", PER_PROFILE * len(mix))
    lines = [(REPO / "examples" / "vendors" / "inventory.yaml").read_text().split("devices:")[0] + "devices:"]
    profiles = [name for name, n in mix for _ in range(n)]
    for i, (profile, mac) in enumerate(zip(profiles, macs, strict=True), start=1):
        lines.append(f"  - {{hostname: f{i}-{profile}, mac: '{mac}', template: {FAMILY_TEMPLATE[profile]}, vars: "
                     f"{{asn: {65000 + i}, loopback: 10.254.{i // 250}.{i % 250}, vlans: [10], nos_image: x.bin, "
                     "ztp_server: 10.60.0.1}}")
    config = write_config(tmp_path, dns=False, inventory="\n".join(lines) + "\n", config_extra="http:\n  port: 80\n")
    config.write_text(config.read_text().replace("pool: 10.60.0.100-10.60.0.199", "pool: 10.60.0.20-10.60.0.250"))
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=config).build()
    app.start()
    lab.wait_for(lambda: "http listening" in app.log.read_text(errors="replace"), 10, "http listening")
    yield app, ",".join(f"{name}={n}" for name, n in mix)
    if app.proc is not None:
        app.stop()


def test_a_mixed_fleet_of_every_profile(fleet_appliance: tuple[ApplianceLab, str]) -> None:
    """One agent process boots a fleet mixing all profiles on one interface: zero failures, each family
    over its own transport, each device's bytes its own rendered config."""
    appliance, mix = fleet_appliance
    lab = appliance.lab
    ns = lab.ns("fleet")
    lab.attach(appliance.seg, ns, "eth0")
    code, res, err = run_agent(appliance, ns, "--profile-mix", mix, "--mac-prefix", "02:00:00:aa", "--no-progress",
                               "--timeout", "120", "--concurrency", "50", timeout=300)
    assert code == 0 and res["provisioned"] == res["count"] == PER_PROFILE * 8, \
        json.dumps(res.get("failed_reasons")) + err[-2000:]
    by_profile: dict[str, set[str]] = {}
    for device in res["devices"]:
        by_profile.setdefault(device["profile"], set()).add(device["transport"])
    assert by_profile == {"eos": {"http"}, "sonic": {"http"}, "cumulus": {"http"}, "junos": {"http"},
                          "nxos-poap": {"tftp"}, "iosxe-pnp": {"http"}, "onie": {"http"}, "generic-tftp": {"tftp"}}
    print(f"mixed fleet of {res['count']}: wall {res['wall_seconds']} s, {res['rate_per_second']} devices/s, "
          f"total p95 {res['stages']['total']['p95'] * 1e3:.0f} ms")
