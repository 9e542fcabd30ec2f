"""The one HTTP listener of `ztp serve`: bound to the provisioning network only, /healthz, token on writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.appliance import ApplianceLab, write_config
from ztp.lab import Lab

TOKEN = "lab-token-0123456789abcdef"


def tcp_listening(lab: Lab, ns: str, port: int) -> list[str]:
    """Local addresses of the TCP sockets listening on `port` in `ns` (`ss -tln`)."""
    res = lab.run(ns, ["ss", "-H", "-t", "-l", "-n"], timeout=5, check=False)
    return [cols[3].rsplit(":", 1)[0] for cols in (line.split() for line in res.stdout.splitlines())
            if len(cols) >= 4 and cols[3].rsplit(":", 1)[-1] == str(port)]


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    config = write_config(tmp_path, dns=False, config_extra=f"http:\n  token: {TOKEN}\n")
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=config).build()
    app.start()
    lab.wait_for(lambda: bool(tcp_listening(lab, app.srv, 80)), 10, "http listening")
    yield app
    if app.proc is not None:
        app.stop()


def test_http_binds_the_provisioning_address_and_answers_healthz(appliance: ApplianceLab) -> None:
    lab = appliance.lab
    assert tcp_listening(lab, appliance.srv, 80) == ["10.60.0.1"]  # dhcp.interfaces [s1], never 0.0.0.0
    ns = lab.ns("peer")
    lab.attach(appliance.seg, ns, "eth0", addr="10.60.0.250/24")
    res = lab.run(ns, ["curl", "-sS", "--max-time", "5", "http://10.60.0.1/healthz"])
    assert res.stdout == "ok\n"
    assert appliance.proc is not None
    code = appliance.stop()
    assert code == 0
    assert "http listening on 10.60.0.1 port 80" in appliance.log.read_text()
