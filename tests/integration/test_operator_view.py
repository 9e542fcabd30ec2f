"""Operator view end to end: `ztp serve` with http: and syslog:, real devices failing at each stage.

Six devices on one segment, each a real peer in its own namespace:
    leaf01  ztp agent, then a syslog line (`logger`)        -> confirmed (syslog)
    leaf02  ztp agent --confirm                             -> confirmed (API, token)
    leaf03  one DISCOVER, never a REQUEST                   -> failed at offered
    leaf04  ISC dhclient: leases, never fetches its config  -> failed at bound
    leaf05  dhclient, then a TFTP client that stops ACKing  -> failed at fetching, "timed out at block 37"
    leaf06  ztp agent on the segment; inventory names a relay port -> flagged miscabled
    leaf08  (second test) behind `ztp relay` on port r1-port9; inventory says r1-port8 -> flagged miscabled
The API (curl from the server namespace) shows each state and reason; `ztp status` prints the same table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.integration.appliance import REPO, ApplianceLab, write_config
from ztp.lab import Lab

TOKEN = "operator-token-0123456789"
PEERS = str(Path(__file__).with_name("peers.py"))
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
INVENTORY = """\
defaults:
  template: default.j2
  vars: {ntp_server: 10.60.0.1, syslog_server: 10.60.0.1}
devices:
""" + "".join(f"""  - hostname: leaf0{i}
    mac: 02:00:00:00:00:0{i}
    template: leaf.j2
    vars: {{asn: 6500{i}, loopback: 10.255.0.{i}, vlans: [10, 20]}}
""" for i in range(1, 6)) + """  - hostname: leaf06
    mac: 02:00:00:00:00:06
    circuit_id: r1-port6
    template: leaf.j2
    vars: {asn: 65006, loopback: 10.255.0.6, vlans: [10]}
  - hostname: leaf08
    mac: 02:00:00:00:00:08
    circuit_id: r1-port8
    template: leaf.j2
    vars: {asn: 65008, loopback: 10.255.0.8, vlans: [10]}
"""
EXTRA = f"""http:
  token: {TOKEN}
syslog:
  port: 514
timeline:
  offer_timeout: 3
  fetch_timeout: 4
"""


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    for prog in ("curl", "logger", "dhclient", "/usr/bin/chromium", "/usr/bin/chromedriver"):
        if shutil.which(prog) is None:
            skip_or_fail(f"{prog} is not installed")
    config = write_config(tmp_path, dns=False, inventory=INVENTORY, config_extra=EXTRA)
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=config).build()
    app.start()
    lab.wait_for(lambda: "http listening" in app.log.read_text(), 10, "http listening")
    yield app
    if app.proc is not None:
        app.stop()


def api(app: ApplianceLab, path: str, *, method: str = "GET", token: str | None = None) -> tuple[int, Any]:
    argv = ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", "-X", method]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    res = app.lab.run(app.srv, [*argv, f"http://10.60.0.1{path}"])
    body, _, code = res.stdout.rpartition("\n")
    try:
        return int(code), json.loads(body) if body.strip() else None
    except json.JSONDecodeError:
        return int(code), body


def device(app: ApplianceLab, key: str) -> dict[str, Any]:
    code, body = api(app, f"/api/devices/{key}")
    assert code == 200, body
    assert isinstance(body, dict)
    return body


def wait_state(app: ApplianceLab, key: str, state: str, timeout: float = 30) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal seen
        seen = device(app, key)
        return seen.get("state") == state

    try:
        app.lab.wait_for(reached, timeout, f"{key} {state}", interval=0.3)
    except Exception as exc:
        raise AssertionError(f"{key}: {seen}") from exc
    return seen


def agent(app: ApplianceLab, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "ztp", "agent", "--interface", "eth0",
                           "--timeout", "30", *args], capture_output=True, text=True, timeout=60, env=ENV,
                          check=False)


def test_each_stage_and_its_reason(appliance: ApplianceLab) -> None:
    app, lab = appliance, appliance.lab
    ns = {i: app.client(f"d{i}", f"02:00:00:00:00:0{i}") for i in range(1, 7)}

    # leaf01: provisioned by the agent, confirmed by its first syslog line.
    res = agent(app, ns[1])
    assert res.returncode == 0, res.stderr
    wait_state(app, "leaf01", "delivered")
    lab.run(ns[1], ["logger", "-n", "10.60.0.1", "-P", "514", "-d", "--rfc3164", "-t", "ztp", "config applied"])
    leaf01 = wait_state(app, "leaf01", "confirmed")
    assert leaf01["mac"] == "02:00:00:00:00:01" and leaf01["ip"]

    # leaf02: a scripted device confirming through the API with the token.
    res = agent(app, ns[2], "--confirm", "--token", TOKEN)
    assert res.returncode == 0, res.stderr
    assert "confirm -> confirmed" in res.stderr
    wait_state(app, "leaf02", "confirmed")

    # leaf03: DISCOVER, OFFER, and silence.
    lab.run(ns[3], [sys.executable, PEERS, "discover", "02:00:00:00:00:03"])
    leaf03 = wait_state(app, "leaf03", "failed", timeout=15)
    assert leaf03["failed_stage"] == "offered"
    assert "never requested: another DHCP server on the segment" in leaf03["reason"]

    # leaf04: a lease, and no config fetch.
    env = app.dhclient(ns[4])
    assert env["new_bootfile_name"] == "leaf04.cfg"
    leaf04 = wait_state(app, "leaf04", "failed", timeout=15)
    assert leaf04["failed_stage"] == "bound" and "check option 66/67" in leaf04["reason"]

    # leaf05: a lease, then a TFTP client that stops acknowledging at block 37.
    app.dhclient(ns[5])
    lab.run(ns[5], [sys.executable, PEERS, "tftp-stall", "10.60.0.1", "leaf05.cfg", "37"])
    leaf05 = wait_state(app, "leaf05", "failed", timeout=30)
    assert leaf05["failed_stage"] == "fetching"
    assert "TFTP leaf05.cfg timed out at block 37" in leaf05["reason"], leaf05

    # leaf06: on the segment, while the inventory expects it behind relay port r1-port6.
    res = agent(app, ns[6])
    assert res.returncode == 0, res.stderr
    leaf06 = wait_state(app, "leaf06", "delivered")
    assert leaf06["miscabled"] == {"expected": "circuit-id 'r1-port6'", "actual": "no relay port (direct segment)"}

    code, listing = api(app, "/api/devices")
    assert code == 200
    assert listing["counts"] == {"seen": 0, "offered": 0, "bound": 0, "fetching": 0, "delivered": 1,
                                 "confirmed": 2, "failed": 3}
    code, timeline = api(app, "/api/devices/leaf01/timeline")
    kinds = [e["kind"] for e in timeline["events"]]
    for kind in ("offer", "bound", "rendered", "transfer-started", "transfer-finished", "syslog",
                 "confirmed"):
        assert kind in kinds, kinds
    rendered = next(e for e in timeline["events"] if e["kind"] == "rendered")
    assert rendered["detail"]["template"] == "leaf.j2" and len(rendered["detail"]["sha256"]) == 64

    # Writes need the token; reads do not.
    assert api(app, "/api/devices/leaf04/confirm", method="POST")[0] == 401
    assert api(app, "/api/devices/leaf04/confirm", method="POST", token="wrong-token-0123456789")[0] == 403
    code, metrics = api(app, "/metrics")
    assert code == 200 and 'ztp_devices{state="confirmed"} 2.0' in metrics
    assert 'ztp_dhcp_messages_total{outcome="offer",type="discover"}' in metrics
    assert "ztp_render_duration_seconds_count" in metrics and "ztp_tftp_transfers_total" in metrics
    code, spec = api(app, "/api/openapi.json")
    assert code == 200 and "/api/devices/{key}/confirm" in spec["paths"]
    code, why = api(app, "/api/explain?hostname=leaf01")
    assert code == 200 and why["device"] == "leaf01" and why["boot_file"] == "leaf01.cfg"

    # The dashboard with every state, as an artefact of the test (tmp dir): the README's screenshot.
    lab.run(app.srv, ["ip", "link", "set", "lo", "up"])
    shot = app.tmp / "dashboard.png"
    lab.run(app.srv, [sys.executable, str(REPO / "scripts" / "screenshot.py"), "http://10.60.0.1/", str(shot),
                      "1200", "1000"], timeout=90)
    assert shot.stat().st_size > 5000

    # The history survives a restart, and `ztp status` prints the same states.
    assert app.stop() == 0
    app.start()
    lab.wait_for(lambda: "http listening" in app.log.read_text(), 10, "http listening again")
    assert device(app, "leaf02")["state"] == "confirmed"
    assert device(app, "leaf05")["reason"] == leaf05["reason"]
    status = app.ztp("status")
    assert status.returncode == 0, status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines()[2:] if line.strip()}
    assert " confirmed " in lines["leaf01"] and " failed " in lines["leaf03"] and "at offered" in lines["leaf03"]
    assert "delivered 1  confirmed 2  failed 3" in status.stdout


def test_miscabled_behind_a_relay(appliance: ApplianceLab) -> None:
    """A device known by MAC, relayed from another switch port than its inventory entry names."""
    app, lab = appliance, appliance.lab
    relay_ns = lab.ns("relay")
    lab.link(app.srv, "r1", relay_ns, "up0", addr_a="10.50.0.1/24", addr_b="10.50.0.2/24")
    remote = lab.segment("remote")
    lab.attach(remote, relay_ns, "down0", addr="10.70.0.1/24")
    lab.run(app.srv, ["ip", "route", "add", "10.70.0.0/24", "via", "10.50.0.2"])
    lab.spawn(relay_ns, [sys.executable, "-m", "ztp", "relay", "--client-interface", "down0", "--server",
                         "10.50.0.1", "--circuit-id", "r1-port9"], log=app.tmp / "relay.log", env=ENV)
    lab.wait_udp_listening(relay_ns, 67)
    dev = lab.ns("d8")
    lab.attach(remote, dev, "eth0", mac="02:00:00:00:00:08")
    lab.run(dev, [sys.executable, PEERS, "discover", "02:00:00:00:00:08"])
    leaf08 = wait_state(app, "leaf08", "offered", timeout=15)
    assert leaf08["miscabled"]["expected"] == "circuit-id 'r1-port8'"
    assert leaf08["miscabled"]["actual"].startswith("circuit-id 'r1-port9' remote-id "), leaf08
    assert leaf08["reason"].startswith("miscabled: inventory expects circuit-id 'r1-port8', the device is on "
                                       "circuit-id 'r1-port9'")
    code, timeline = api(app, "/api/devices/leaf08/timeline")
    assert [e["kind"] for e in timeline["events"]][:2] == ["miscabled", "offer"]
    assert timeline["events"][1]["detail"]["giaddr"] == "10.70.0.1"
