"""The device agent (`python -m ztp.agent.cli`, later `ztp agent`) against real servers, in namespaces.

Servers we did not write (dnsmasq with its TFTP; Kea dhcp4 with tftpd-hpa) and `ztp serve`. Topology:
srv:s1 10.60.0.1/24 -- seg(br0) -- dev:eth0 (no address until the agent binds).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.integration.appliance import REPO, ApplianceLab
from ztp.lab import Lab, ensure_neighbour_capacity

AGENT = [sys.executable, "-m", "ztp.agent.cli"]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")


def _need(*programs: str) -> None:
    for prog in programs:
        if shutil.which(prog) is None:
            skip_or_fail(f"{prog} is not installed")


@dataclass
class Segment:
    """A server namespace and a device namespace on one bridge segment."""

    lab: Lab
    tmp: Path
    srv: str
    seg: str
    dev: str

    def agent(self, *args: str, timeout: float = 60, ns: str | None = None) -> tuple[int, dict[str, Any], str]:
        """Run the agent with --json in the device namespace; return (exit code, result, stderr)."""
        res = subprocess.run(["ip", "netns", "exec", ns or self.dev, *AGENT, "--interface", "eth0", "--json",
                              *args], capture_output=True, text=True, timeout=timeout, env=ENV, check=False)
        try:
            out = json.loads(res.stdout) if res.stdout.strip() else {}
        except json.JSONDecodeError:
            out = {"unparsed": res.stdout}
        return res.returncode, out, res.stderr


@pytest.fixture
def segment(lab: Lab, tmp_path: Path) -> Segment:
    srv, seg, dev = lab.ns("srv"), lab.segment("seg"), lab.ns("dev")
    lab.attach(seg, srv, "s1", addr="10.60.0.1/24")
    lab.attach(seg, dev, "eth0")
    return Segment(lab, tmp_path, srv, seg, dev)


def _tftp_root(tmp: Path, size: int = 50_000) -> tuple[Path, bytes]:
    root = tmp / "tftpboot"
    root.mkdir()
    root.chmod(0o755)
    payload = os.urandom(size)
    (root / "leaf.cfg").write_bytes(payload)
    (root / "leaf.cfg").chmod(0o644)
    return root, payload


def _dnsmasq(s: Segment, root: Path, *extra: str) -> subprocess.Popen[bytes]:
    _need("dnsmasq")
    argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--user=root", "--pid-file=",
            "--interface=s1", "--bind-interfaces", f"--dhcp-leasefile={s.tmp / 'dnsmasq.leases'}",
            "--enable-tftp", f"--tftp-root={root}", "--log-dhcp", *extra]
    if not any(a.startswith("--port") for a in extra):
        argv.append("--port=0")
    proc = s.lab.spawn(s.srv, argv, log=s.tmp / "dnsmasq.log")
    s.lab.wait_udp_listening(s.srv, 67)
    return proc


def _assert_provisioned(code: int, out: dict[str, Any], err: str, payload: bytes) -> None:
    assert code == 0, f"agent exited {code}: {out}\n{err}"
    assert out["status"] == "provisioned"
    assert out["bytes"] == len(payload)
    assert Path(out["path"]).read_bytes() == payload


def test_dnsmasq_siaddr_and_file(segment: Segment) -> None:
    root, payload = _tftp_root(segment.tmp)
    _dnsmasq(segment, root, "--no-ping", "--dhcp-range=10.60.0.100,10.60.0.199,255.255.255.0,1h",
             "--dhcp-boot=leaf.cfg,,10.60.0.1")
    code, out, err = segment.agent("--out", str(segment.tmp / "out"), "--timeout", "20",
                                   "--hostname", "sw1", "--vendor-class", "ztp-agent")
    _assert_provisioned(code, out, err, payload)
    assert out["boot_server_source"] == "siaddr" and out["boot_server"] == "10.60.0.1"
    assert out["boot_file"] == "leaf.cfg"
    assert out["server_id"] == "10.60.0.1" and out["lease_time"] == 3600
    assert out["tftp_options"]["tsize"] == str(len(payload))
    assert set(out["timings"]) >= {"discover_offer", "request_ack", "tftp", "total"}
    # BOUND configured the address and the default route on the device's interface.
    addrs = segment.lab.run(segment.dev, ["ip", "-4", "-o", "addr", "show", "eth0"]).stdout
    assert f"{out['ip']}/24" in addrs
    assert "default via 10.60.0.1" in segment.lab.run(segment.dev, ["ip", "route"]).stdout
    log = (segment.tmp / "dnsmasq.log").read_text()
    assert "sw1" in log and "ztp-agent" in log  # options 12 and 60 reached the server


def test_dnsmasq_option66_hostname_resolved_via_option6(segment: Segment) -> None:
    root, payload = _tftp_root(segment.tmp, 3000)
    _dnsmasq(segment, root, "--no-ping", "--port=53", "--no-resolv", "--no-hosts",
             "--host-record=boot.lab.test,10.60.0.1", "--dhcp-range=10.60.0.100,10.60.0.199,255.255.255.0,1h",
             "--dhcp-option=6,10.60.0.1", "--dhcp-option=66,boot.lab.test", "--dhcp-option=67,leaf.cfg")
    code, out, err = segment.agent("--out", str(segment.tmp / "out"), "--timeout", "20", "--mac",
                                   "02:00:00:00:aa:01")
    _assert_provisioned(code, out, err, payload)
    assert out["mac"] == "02:00:00:00:aa:01"
    assert out["boot_server_source"] == "option66" and out["boot_server"] == "10.60.0.1"
    assert out["options"]["66"] == "boot.lab.test"


def test_dnsmasq_without_boot_file_exits_5(segment: Segment) -> None:
    root, _ = _tftp_root(segment.tmp, 10)
    _dnsmasq(segment, root, "--no-ping", "--dhcp-range=10.60.0.100,10.60.0.199,255.255.255.0,1h")
    code, out, _ = segment.agent("--timeout", "10")
    assert code == 5 and out["stage"] == "boot" and out["ip"]


def test_no_server_exits_3(segment: Segment) -> None:
    code, out, _ = segment.agent("--timeout", "5")
    assert code == 3 and out["stage"] == "discover" and out["discovers"] >= 2


def test_dnsmasq_fleet_of_50(segment: Segment) -> None:
    root, payload = _tftp_root(segment.tmp, 5000)
    _dnsmasq(segment, root, "--no-ping", "--dhcp-range=10.60.0.50,10.60.0.250,255.255.255.0,1h",
             "--dhcp-boot=leaf.cfg,,10.60.0.1", "--dhcp-lease-max=1000")
    t0 = time.monotonic()
    code, out, err = segment.agent("--count", "50", "--concurrency", "50", "--out", str(segment.tmp / "out"),
                                   "--timeout", "30", "--mac-prefix", "02:aa:00", timeout=90)
    assert code == 0, f"{out.get('failed_reasons')}\n{err[-2000:]}"
    assert out["provisioned"] == 50 and out["failed"] == 0
    ips = {d["ip"] for d in out["devices"]}
    macs = {d["mac"] for d in out["devices"]}
    assert len(ips) == 50 and len(macs) == 50
    assert all(d["sha256"] == out["devices"][0]["sha256"] and d["bytes"] == len(payload) for d in out["devices"])
    for stage in ("discover_offer", "request_ack", "tftp", "total"):
        assert out["stages"][stage]["n"] == 50 and out["stages"][stage]["p99"] <= out["stages"][stage]["max"]
    assert time.monotonic() - t0 < 60


# -- Kea + tftpd-hpa --------------------------------------------------------------------------------------


def _kea(s: Segment, *, pool: str, valid: int = 3600, renew: int | None = None,
         rebind: int | None = None) -> subprocess.Popen[bytes]:
    _need("kea-dhcp4")
    subnet: dict[str, Any] = {
        "id": 1, "subnet": "10.60.0.0/24", "pools": [{"pool": pool}],
        "option-data": [{"name": "routers", "data": "10.60.0.1"},
                        {"name": "tftp-server-name", "data": "10.60.0.1"},
                        {"name": "boot-file-name", "data": "leaf.cfg"}],
    }
    dhcp4: dict[str, Any] = {
        "interfaces-config": {"interfaces": ["s1"]},
        "lease-database": {"type": "memfile", "persist": True, "name": str(s.tmp / "kea-leases4.csv"),
                           "lfc-interval": 0},
        "valid-lifetime": valid,
        "subnet4": [subnet],
        "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "INFO"}],
    }
    if renew is not None:
        dhcp4["renew-timer"] = renew
    if rebind is not None:
        dhcp4["rebind-timer"] = rebind
    conf = s.tmp / "kea-dhcp4.json"
    conf.write_text(json.dumps({"Dhcp4": dhcp4}, indent=1))
    env = {"KEA_PIDFILE_DIR": str(s.tmp), "KEA_LOCKFILE_DIR": str(s.tmp), "KEA_LOGGER_DESTINATION": "stdout"}
    proc = s.lab.spawn(s.srv, ["kea-dhcp4", "-c", str(conf)], log=s.tmp / "kea.log", env=env)
    s.lab.wait_for(lambda: "DHCP4_STARTED" in (s.tmp / "kea.log").read_text() or proc.poll() is not None, 15,
                   "kea-dhcp4 started")
    assert proc.poll() is None, (s.tmp / "kea.log").read_text()
    return proc


def _tftpd_hpa(s: Segment, root: Path) -> subprocess.Popen[bytes]:
    _need("in.tftpd")
    proc = s.lab.spawn(s.srv, ["in.tftpd", "-L", "-u", "root", "-s", str(root), "-a", "10.60.0.1:69"],
                       log=s.tmp / "tftpd.log")
    s.lab.wait_udp_listening(s.srv, 69)
    return proc


def test_kea_with_tftpd_hpa(segment: Segment) -> None:
    root, payload = _tftp_root(segment.tmp, 100_000)
    _kea(segment, pool="10.60.0.100 - 10.60.0.110")
    _tftpd_hpa(segment, root)
    code, out, err = segment.agent("--out", str(segment.tmp / "out"), "--timeout", "20", "--client-id", "SN123")
    _assert_provisioned(code, out, err, payload)
    assert out["boot_server_source"] == "option66" and out["options"]["67"] == "leaf.cfg"
    assert out["ip"].startswith("10.60.0.1")
    # tftpd-hpa accepts windowsize? Either way the negotiated blksize is what we asked for.
    assert out["tftp_options"]["blksize"] == "1468"
    leases = (segment.tmp / "kea-leases4.csv").read_text()
    assert out["ip"] in leases


def test_conflict_sends_decline_and_gets_another_address(segment: Segment) -> None:
    """Another host already owns the first pool address (answers ARP): DECLINE, then a different one."""
    root, payload = _tftp_root(segment.tmp, 1000)
    squatter = segment.lab.ns("squat")
    segment.lab.attach(segment.seg, squatter, "eth0", addr="10.60.0.100/24")
    _kea(segment, pool="10.60.0.100 - 10.60.0.110")
    _tftpd_hpa(segment, root)
    code, out, err = segment.agent("--out", str(segment.tmp / "out"), "--timeout", "30", "--decline-wait", "1")
    _assert_provisioned(code, out, err, payload)
    assert out["declines"] == 1 and out["declined"] == ["10.60.0.100"]
    assert out["ip"] != "10.60.0.100"
    assert "DHCP4_DECLINE_LEASE" in (segment.tmp / "kea.log").read_text()


def test_stay_renews_at_t1_and_rebinds_at_t2(segment: Segment) -> None:
    """Short Kea lease; once a unicast renewal worked, unicast to the server is cut so T2's broadcast rebinds."""
    _need("nft")
    root, _ = _tftp_root(segment.tmp, 1000)
    _kea(segment, pool="10.60.0.100 - 10.60.0.110", valid=16, renew=3, rebind=7)
    _tftpd_hpa(segment, root)
    log = segment.tmp / "agent.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(["ip", "netns", "exec", segment.dev, *AGENT, "--interface", "eth0", "--json",
                                 "--stay", "30", "--release", "--arp-probes", "1"],
                                stdout=subprocess.PIPE, stderr=fh, env=ENV)
    try:
        segment.lab.wait_for(lambda: "renewed" in log.read_text(), 15, "a renewal at T1")
        # Drop unicast DHCP to the server as it leaves the device (netdev egress sees AF_PACKET frames too).
        segment.lab.run(segment.dev, ["nft", "-f", "-"], input=(
            "table netdev cut {\n chain out {\n  type filter hook egress device \"eth0\" priority 0;\n"
            "  ip daddr 10.60.0.1 udp dport 67 drop\n }\n}\n"))
        segment.lab.wait_for(lambda: "rebound" in log.read_text(), 20, "a rebinding at T2")
        segment.lab.run(segment.dev, ["nft", "delete", "table", "netdev", "cut"])  # let the RELEASE through
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = json.loads(stdout)
    assert proc.returncode == 0, log.read_text()
    assert out["renewals"] >= 1 and out["rebinds"] >= 1 and out["released"]
    assert "DHCP4_RELEASE" in (segment.tmp / "kea.log").read_text()
    # --release removed the address again.
    addrs = segment.lab.run(segment.dev, ["ip", "-4", "-o", "addr", "show", "eth0"]).stdout
    assert out["ip"] not in addrs


# -- ztp serve --------------------------------------------------------------------------------------------


def _serve_config(tmp: Path) -> Path:
    """The example config with a /21 pool (2,043 addresses) big enough for a 1,000-device fleet."""
    inv = tmp / "inventory.yaml"
    inv.write_text((REPO / "inventory.yaml").read_text())
    cfg = tmp / "ztp.yaml"
    cfg.write_text(f"""state_dir: {tmp / 'state'}
templates: {REPO / 'templates'}
inventory: {inv}
dhcp:
  interfaces: [s1]
  lease_time: 3600
  subnets:
    - network: 10.60.0.0/21
      pool: 10.60.1.0-10.60.7.250
      routers: [10.60.0.1]
      dns_servers: [10.60.0.1]
      domain: lab.test
tftp:
  root: {REPO / 'tftpboot'}
""")
    return cfg


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> ApplianceLab:
    if not (REPO / "ztp" / "app.py").exists():
        skip_or_fail("ztp serve (ztp/app.py) is not there yet")
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=_serve_config(tmp_path))
    app.srv = lab.ns("srv")
    app.seg = lab.segment("seg")
    lab.attach(app.seg, app.srv, "s1", addr="10.60.0.1/21")
    app.start()
    return app


def _run_agent(app: ApplianceLab, ns: str, *args: str, timeout: float = 60) -> tuple[int, dict[str, Any], str]:
    res = subprocess.run(["ip", "netns", "exec", ns, *AGENT, "--interface", "eth0", "--json", *args],
                         capture_output=True, text=True, timeout=timeout, env=ENV, check=False)
    return res.returncode, (json.loads(res.stdout) if res.stdout.strip() else {}), res.stderr


def test_ztp_serve_one_device_gets_its_rendered_config(appliance: ApplianceLab) -> None:
    ns = appliance.client("dev", "02:00:00:00:00:01")  # leaf01 in the inventory, reserved 10.60.0.11
    code, out, err = _run_agent(appliance, ns, "--out", str(appliance.tmp / "out"), "--timeout", "20")
    assert code == 0, f"{out}\n{err}"
    assert out["ip"] == "10.60.0.11" and out["boot_file"] == "leaf01.cfg"
    assert out["options"]["12"] == "leaf01"
    assert Path(out["path"]).read_bytes() == appliance.rendered(mac="02:00:00:00:00:01")
    assert out["sha256"] and out["bytes"] == len(appliance.rendered(mac="02:00:00:00:00:01"))


def test_ztp_serve_fleet_of_200(appliance: ApplianceLab) -> None:
    ns = appliance.client("dev", "02:00:00:00:ff:ff")
    code, out, err = _run_agent(appliance, ns, "--count", "200", "--concurrency", "100", "--mac-prefix",
                                "02:5a:00", "--out", str(appliance.tmp / "out"), "--timeout", "60",
                                "--arp-probes", "1", timeout=180)
    assert code == 0, f"{out.get('failed_reasons')} {out.get('failed_by_stage')}\n{err[-3000:]}"
    assert out["provisioned"] == 200
    assert len({d["ip"] for d in out["devices"]}) == 200
    # Spot-check that fetched configs equal `ztp render` for a few devices.
    for dev in out["devices"][:: 50]:
        assert Path(dev["path"]).read_bytes() == appliance.rendered(mac=dev["mac"]), dev["mac"]


def test_ztp_serve_boot_storm_of_1000(appliance: ApplianceLab) -> None:
    # Issue 3: at least 1,000 devices in one run on this 2-core machine, none failing.
    ensure_neighbour_capacity(16384)
    ns = appliance.client("dev", "02:00:00:00:ff:fe")
    code, out, err = _run_agent(appliance, ns, "--count", "1000", "--concurrency", "200", "--mac-prefix",
                                "02:5b:00", "--out", str(appliance.tmp / "out"), "--timeout", "120",
                                "--arp-probes", "1", timeout=300)
    assert code == 0, f"{out.get('failed_reasons')} {out.get('failed_by_stage')}\n{err[-3000:]}"
    assert out["provisioned"] == 1000 and out["failed"] == 0
    assert len({d["ip"] for d in out["devices"]}) == 1000
    for dev in out["devices"][:: 250]:
        assert Path(dev["path"]).read_bytes() == appliance.rendered(mac=dev["mac"]), dev["mac"]
    leases = json.loads(appliance.ztp("leases", "--json").stdout)
    assert sum(1 for x in leases if x["state"] == "bound") >= 1000
