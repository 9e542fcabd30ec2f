"""Cisco PnP end to end (issue 12): `ztp agent --profile iosxe-pnp` says HELLO, sends its WORK-REQUEST with
its UDI serial, fetches the config-upgrade's copy source and reports success to `ztp serve`; asked again it
gets no work and falls back to AutoInstall (TFTP). curl from another host: an unknown serial gets a bye,
the known serial's config URL is refused (403, it holds no lease of that device), its report on that
device is ignored, malformed XML gets 400.

    srv:s1 10.60.0.1/24 ── seg ── pnp:eth0 (DHCP) / other:eth0 10.60.0.50 (static, no lease)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.appliance import REPO, ApplianceLab, write_config
from tests.integration.test_vendor_boot import run_agent
from ztp.lab import Lab

SERIAL = "FCW2231L0AB"
SERVER = "10.60.0.1"
DEVICE = f"""  - hostname: iosxe-leaf1
    mac: 02:00:00:00:12:06
    ip: 10.60.0.36
    serial: {SERIAL}
    vendor: iosxe-pnp
    template: iosxe/leaf.j2
    vars: {{asn: 65006, loopback: 10.255.2.6}}
"""


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    head = (REPO / "examples" / "vendors" / "inventory.yaml").read_text().split("devices:")[0]
    config = write_config(tmp_path, dns=False, inventory=head + "devices:\n" + DEVICE,
                          config_extra="http:\n  port: 80\n")
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=config).build()
    app.start()
    lab.wait_for(lambda: "http listening" in app.log.read_text(errors="replace"), 10, "http listening")
    yield app
    if app.proc is not None:
        app.stop()


def post(app: ApplianceLab, ns: str, path: str, body: bytes) -> tuple[int, bytes]:
    """(status, body) of one curl POST of an XML body from `ns`."""
    sent, got = app.tmp / "post.xml", app.tmp / "reply.xml"
    sent.write_bytes(body)
    res = app.lab.run(ns, ["curl", "-sS", "--max-time", "20", "-o", str(got), "-w", "%{http_code}", "-X", "POST",
                           "-H", "Content-Type: application/xml", "--data-binary", f"@{sent}",
                           f"http://{SERVER}{path}"], timeout=30)
    return int(res.stdout.strip()), got.read_bytes()


def work_request(serial: str) -> bytes:
    return (f'<pnp xmlns="urn:cisco:pnp" version="1.0" udi="PID:C9300-24P,VID:V01,SN:{serial}">'
            '<info xmlns="urn:cisco:pnp:work-info" correlator="CiscoPnP-1.0-42-1"><deviceId>'
            f'<udi>PID:C9300-24P,VID:V01,SN:{serial}</udi><hostname>Switch</hostname>'
            '<authRequired>false</authRequired></deviceId></info></pnp>').encode()


def test_pnp_agent_gets_its_config_then_no_more_work(appliance: ApplianceLab) -> None:
    lab = appliance.lab
    ns = lab.ns("pnp")
    lab.attach(appliance.seg, ns, "eth0", mac="02:00:00:00:12:06")
    expected = hashlib.sha256(appliance.rendered(hostname="iosxe-leaf1")).hexdigest()
    code, res, err = run_agent(appliance, ns, "--profile", "iosxe-pnp", "--serial", SERIAL, "--timeout", "30")
    assert code == 0 and res["sha256"] == expected, f"{res} {err[-1500:]}"
    assert res["transport"] == "http" and res["boot_file"] == f"http://{SERVER}:80/configs/iosxe-leaf1.cfg"
    assert [u.rsplit("/", 1)[1] for u in res["fetched"]] == ["", "WORK-REQUEST", "iosxe-leaf1.cfg", "WORK-RESPONSE"]
    lab.wait_for(lambda: "pnp config-upgrade of iosxe-leaf1.cfg succeeded" in appliance.log.read_text(), 5,
                 "the work-response logged")
    log = appliance.log.read_text()
    assert re.search(rf"iosxe-leaf1 pnp work-request from 10\.60\.0\.\d+ \(PID:C9300-24P,VID:V01,SN:{SERIAL}, "
                     r"by serial\): config-upgrade", log), log[-3000:]
    # The device timeline: the HTTP delivery, then the device's own report confirms it.
    def timeline() -> list[dict[str, object]]:
        res = lab.run(ns, ["curl", "-sS", "--max-time", "20", f"http://{SERVER}/api/devices/iosxe-leaf1/timeline"],
                      timeout=30)
        return list(json.loads(res.stdout)["events"])
    lab.wait_for(lambda: any(e["kind"] == "confirmed" for e in timeline()), 10, "confirmed on the timeline")
    kinds = [e["kind"] for e in timeline()]
    assert "transfer-finished" in kinds and kinds.index("transfer-finished") < kinds.index("confirmed"), kinds
    assert any("PnP config-upgrade of iosxe-leaf1.cfg succeeded" in str(e["text"]) for e in timeline())
    # Done: a second boot gets a bye and falls back to AutoInstall (TFTP of option 67 from option 150).
    code, res, err = run_agent(appliance, ns, "--profile", "iosxe-pnp", "--serial", SERIAL, "--timeout", "30")
    assert code == 0 and res["sha256"] == expected and res["transport"] == "tftp", f"{res} {err[-1500:]}"
    lab.wait_for(lambda: "config already applied: no work" in appliance.log.read_text(), 5, "no-work line")


def test_strangers_get_no_work_and_no_config(appliance: ApplianceLab) -> None:
    other = appliance.client("other", "02:00:00:00:00:66")
    appliance.lab.add_addr(other, "eth0", "10.60.0.50/24")
    status, body = post(appliance, other, "/pnp/WORK-REQUEST", work_request("NOSUCH1"))
    assert status == 200 and b"<bye />" in body and b"config-upgrade" not in body
    # The known serial from a host that holds none of its addresses: told where the config is (the UDI is
    # all PnP identifies a device by), but the config route's lease-holder rule refuses the fetch.
    status, body = post(appliance, other, "/pnp/WORK-REQUEST", work_request(SERIAL))
    assert status == 200 and b"<location>http://10.60.0.1:80/configs/iosxe-leaf1.cfg</location>" in body
    res = appliance.lab.run(other, ["curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}",
                                    f"http://{SERVER}/configs/iosxe-leaf1.cfg"], timeout=30)
    assert res.stdout.strip() == "403"
    # Nor can it report on that device (a success would end the device's PnP).
    status, body = post(appliance, other, "/pnp/WORK-RESPONSE", (
        f'<pnp xmlns="urn:cisco:pnp" version="1.0" udi="PID:C9300-24P,VID:V01,SN:{SERIAL}"><response '
        'xmlns="urn:cisco:pnp:config-upgrade" correlator="CiscoPnP-1.0-42-1" success="1"/></pnp>').encode())
    assert status == 200 and b"<bye />" in body
    appliance.lab.wait_for(lambda: "iosxe-leaf1 pnp work-response for iosxe-leaf1.cfg from 10.60.0.50" in
                           appliance.log.read_text(), 5, "the ignored report logged")
    assert "succeeded" not in appliance.log.read_text()
    status, body = post(appliance, other, "/pnp/WORK-REQUEST", b"<pnp xmlns='urn:cisco:pnp'><info>")
    assert status == 400 and b"not well-formed" in body
    status, body = post(appliance, other, "/pnp/WORK-REQUEST",
                        b"<!DOCTYPE pnp [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><pnp>&x;</pnp>")
    assert status == 400 and b"DOCTYPE" in body and b"root:" not in body
    res = appliance.lab.run(other, ["curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}",
                                    f"http://{SERVER}/pnp/HELLO"], timeout=30)
    assert res.stdout.strip() == "200"
    appliance.lab.wait_for(lambda: "pnp work-request from 10.60.0.50 refused (400)" in appliance.log.read_text(), 5,
                           "the 400 logged")
    assert "unknown device" in appliance.log.read_text()
