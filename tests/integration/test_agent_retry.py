"""Boot attempts (issue 13's caveat) against a real `ztp serve`, in namespaces: the boot file a device is told
to fetch is missing at its first attempt (the operator has not copied the image yet), then appears. With
`--boot-attempts 3` the device goes back to DISCOVER and provisions on its second attempt; with
`--boot-attempts 1` it fails at TFTP as before.

    srv:s1 10.60.0.1/24 ── seg(br0) ── dev1:eth0, dev3:eth0 (no address until DHCP)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.integration.appliance import REPO, ApplianceLab, write_config
from ztp.lab import Lab

AGENT = [sys.executable, "-m", "ztp.agent.cli"]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
LATE = "late.bin"  # option 67 of both devices: a static file of the TFTP root
INVENTORY = f"""defaults:
  vars: {{ntp_server: 10.60.0.1, syslog_server: 10.60.0.1}}
devices:
  - hostname: once01
    mac: 02:00:00:00:01:01
    template: leaf.j2
    vars: {{asn: 65101, loopback: 10.255.0.101, vlans: [10]}}
    options: {{67: "{LATE}"}}
  - hostname: retry01
    mac: 02:00:00:00:01:03
    template: leaf.j2
    vars: {{asn: 65103, loopback: 10.255.0.103, vlans: [10]}}
    options: {{67: "{LATE}"}}
"""


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> ApplianceLab:
    if not (REPO / "ztp" / "app.py").exists():
        skip_or_fail("ztp serve (ztp/app.py) is not there yet")
    root = tmp_path / "tftpboot"
    root.mkdir()
    root.chmod(0o755)
    cfg = write_config(tmp_path, inventory=INVENTORY, dns=False)
    cfg.write_text(cfg.read_text().replace(f"root: {REPO / 'tftpboot'}", f"root: {root}"))
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=cfg).build()
    app.start()
    return app


def _agent(ns: str, *args: str, stderr: Path) -> subprocess.Popen[bytes]:
    with open(stderr, "wb") as err:
        return subprocess.Popen(["ip", "netns", "exec", ns, *AGENT, "--interface", "eth0", "--json", "--timeout", "30",
                                 "--arp-probes", "1", *args], stdout=subprocess.PIPE, stderr=err, env=ENV)


def _result(proc: subprocess.Popen[bytes]) -> tuple[int, dict[str, Any]]:
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, json.loads(out) if out.strip() else {}


def _inet(lab: Lab, ns: str) -> list[str]:
    res = lab.run(ns, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
    return [line.split()[3] for line in res.stdout.splitlines()]


def test_a_missing_boot_file_fails_one_attempt_and_the_next_attempt_provisions(appliance: ApplianceLab) -> None:
    lab, tmp = appliance.lab, appliance.tmp
    # One attempt: as before, the TFTP refusal ends the run (exit 6) and the device keeps its address.
    once = appliance.client("dev1", "02:00:00:00:01:01")
    code, out = _result(_agent(once, "--boot-attempts", "1", stderr=tmp / "once.err"))
    err = (tmp / "once.err").read_text(errors="replace")
    assert (code, out.get("status"), out.get("stage")) == (6, "failed", "tftp"), f"{out}\n{err}"
    assert out["attempts"] == 1 and out["attempt_failures"] == [] and out["discovers"] == 1, out
    assert LATE in out["reason"]

    # Three attempts: the file appears while the device backs off after its first attempt.
    dev = appliance.client("dev3", "02:00:00:00:01:03")
    log = tmp / "retry.err"
    proc = _agent(dev, "--boot-attempts", "3", "--out", str(tmp / "out"), stderr=log)
    try:
        lab.wait_for(lambda: "boot attempt 1 of 3 ended at tftp" in log.read_text(errors="replace")
                     or proc.poll() is not None, 20, "the first attempt's TFTP failure")
        assert proc.poll() is None, log.read_text(errors="replace")
        payload = os.urandom(20_000)
        part = appliance.tmp / "tftpboot" / f".{LATE}.part"
        part.write_bytes(payload)
        part.chmod(0o644)
        part.rename(part.with_name(LATE))
    finally:
        code, out = _result(proc)
    err = log.read_text(errors="replace")
    assert code == 0 and out.get("status") == "provisioned", f"{out}\n{err[-3000:]}"
    assert out["attempts"] == 2, out
    (first,) = out["attempt_failures"]
    assert first["attempt"] == 1 and first["stage"] == "tftp" and first["exit_code"] == 6, first
    assert LATE in first["reason"] and "10.60.0.1" in first["reason"], first
    assert 1.0 <= first["backoff"] <= 2.0, first
    # Two DHCP exchanges from DISCOVER; the same lease from the same appliance both times.
    assert out["discovers"] == 2 and out["offers"] == 2 and out["requests"] == 2, out
    assert out["ip"].startswith("10.60.0.") and out["boot_file"] == LATE and out["bytes"] == len(payload)
    assert out["sha256"] == hashlib.sha256(payload).hexdigest()
    assert Path(out["path"]).read_bytes() == payload
    # The first attempt's address was taken off before the second added it again: one address, no stale one.
    assert _inet(lab, dev) == [f"{out['ip']}/24"]
    assert err.count(" bound ") == 2, err[-3000:]
    assert "Traceback" not in appliance.log.read_text(errors="replace")
