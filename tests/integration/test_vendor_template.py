"""Templates branch on the vendor the device turned out to be (issue 12): an unlisted Arista (`ztp agent
--profile eos`, recognised by its option 60) booting against a default template that branches on `vendor`
fetches the EOS branch over HTTP, byte for byte what `ztp render --mac` prints from the lease database.

    srv:s1 10.60.0.1/24 ── seg ── eos:eth0 (an unlisted MAC)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.appliance import REPO, ApplianceLab, write_config
from ztp.lab import Lab

AGENT = [sys.executable, "-m", "ztp.agent.cli"]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
MAC = "02:00:00:00:12:a1"
TEMPLATE = """\
hostname {{ hostname }}
{% if vendor == "eos" %}! EOS branch
management api http-commands
   no shutdown
{% else %}# generic branch ({{ vendor }})
{% endif %}"""


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "default.j2").write_text(TEMPLATE)
    config = write_config(tmp_path, dns=False, inventory="defaults:\n  template: default.j2\ndevices: []\n",
                          config_extra="http:\n  port: 80\n")
    config.write_text(config.read_text().replace(f"templates: {REPO / 'templates'}", f"templates: {templates}"))
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=config).build()
    app.start()
    lab.wait_for(lambda: "http listening" in app.log.read_text(errors="replace"), 10, "http listening")
    yield app
    if app.proc is not None:
        app.stop()


def test_an_unlisted_arista_gets_the_eos_branch_of_the_default_template(appliance: ApplianceLab) -> None:
    lab = appliance.lab
    ns = lab.ns("eos")
    lab.attach(appliance.seg, ns, "eth0", mac=MAC)
    res = subprocess.run(["ip", "netns", "exec", ns, *AGENT, "--interface", "eth0", "--json", "--arp-probes", "0",
                          "--profile", "eos", "--timeout", "40"], capture_output=True, text=True, timeout=90,
                         env=ENV, check=False)
    assert res.returncode == 0, res.stdout + res.stderr + appliance.log.read_text()[-3000:]
    out = json.loads(res.stdout)
    assert out["transport"] == "http" and out["profile"] == "eos", out
    assert out["fetched"][-1].endswith(f"/configs/{MAC.replace(':', '')}.cfg"), out
    expected = appliance.rendered(mac=MAC)  # from the lease database, in another process
    assert b"! EOS branch" in expected and b"generic branch" not in expected, expected
    assert out["sha256"] == hashlib.sha256(expected).hexdigest(), (out, expected)
