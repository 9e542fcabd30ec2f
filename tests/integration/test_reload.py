"""`ztp serve` reloads its configuration and inventory on SIGHUP, keeping leases; a broken one is refused."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.appliance import REPO, ApplianceLab, write_config
from ztp.lab import Lab
from ztp.leases.store import database_path, load_leases

BASE_INVENTORY = (REPO / "inventory.yaml").read_text()
LEAF09 = """\
  - hostname: leaf09
    mac: 02:00:00:00:00:09
    ip: 10.60.0.19
    template: leaf.j2
    vars: {asn: 65009, loopback: 10.255.0.9, vlans: [10, 90]}
"""
REFUSED = "still serving the previous configuration"


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=write_config(tmp_path, inventory=BASE_INVENTORY)).build()
    app.start()
    yield app
    if app.proc is not None:
        app.stop()


def hangup(app: ApplianceLab, marker: str) -> str:
    """Send SIGHUP and wait for one more log line containing `marker`; the log text."""
    assert app.proc is not None
    seen = app.log.read_text().count(marker)
    app.proc.send_signal(signal.SIGHUP)
    app.lab.wait_for(lambda: app.log.read_text().count(marker) > seen, 15, f"{marker!r} after SIGHUP")
    assert app.proc.poll() is None
    return app.log.read_text()


def stored_leases(app: ApplianceLab) -> set[tuple[str, str, str]]:
    """(ip, mac, state) of every lease on disk (`ztp leases` would refuse the broken inventory)."""
    return {(str(x.ip), x.mac, str(x.state)) for x in load_leases(database_path(app.tmp / "state"))}


def test_sighup_adds_a_device(appliance: ApplianceLab) -> None:
    ns = appliance.client("c9", "02:00:00:00:00:09")
    before = appliance.dhclient(ns)
    assert before["new_bootfile_name"] == "020000000009.cfg"  # not in the inventory yet: the default
    assert before["new_ip_address"] == "10.60.0.100"
    (appliance.tmp / "inventory.yaml").write_text(BASE_INVENTORY + LEAF09)

    log = hangup(appliance, "reloaded: ")
    assert "reloaded: 2 subnets, 6 devices" in log

    after = appliance.dhclient(ns, tag="-reloaded")  # a fresh lease file: DISCOVER from scratch
    assert after["new_ip_address"] == "10.60.0.19"  # the new reservation
    assert after["new_host_name"] == "leaf09"
    assert after["new_bootfile_name"] == "leaf09.cfg" and after["new_filename"] == "leaf09.cfg"
    expected = appliance.rendered(hostname="leaf09")
    assert b"hostname leaf09" in expected and b"65009" in expected
    out = appliance.tmp / "leaf09-tftp.cfg"
    appliance.lab.run(ns, ["tftp", "-m", "binary", "10.60.0.1", "-c", "get", "leaf09.cfg", str(out)], timeout=20)
    assert out.read_bytes() == expected
    curl_out = appliance.tmp / "leaf09-curl.cfg"
    appliance.lab.run(ns, ["curl", "-sS", "-o", str(curl_out), "tftp://10.60.0.1/leaf09.cfg"], timeout=20)
    assert curl_out.read_bytes() == expected
    # The new reservation's DNS name exists now.
    dig = appliance.lab.run(ns, ["dig", "+short", "+time=2", "+tries=2", "@10.60.0.1", "leaf09.lab.test"],
                            timeout=20)
    assert dig.stdout.split() == ["10.60.0.19"]


def test_broken_reload_keeps_serving_the_old_config(appliance: ApplianceLab) -> None:
    inventory = appliance.tmp / "inventory.yaml"
    leaf = appliance.client("c1", "02:00:00:00:00:01")
    other = appliance.client("c2", "02:00:00:00:00:42")
    assert appliance.dhclient(leaf)["new_ip_address"] == "10.60.0.11"
    assert appliance.dhclient(other)["new_ip_address"] == "10.60.0.100"
    expected = appliance.rendered(hostname="leaf01")
    leases_before = stored_leases(appliance)

    # A YAML error, then an unknown template: each is logged as file:line and refused.
    inventory.write_text(BASE_INVENTORY + "  - hostname: [leaf09\n")
    log = hangup(appliance, REFUSED)
    assert re.search(rf"ERROR +{re.escape(str(inventory))}:\d+: ", log), log
    broken = BASE_INVENTORY + LEAF09.replace("leaf.j2", "nosuch.j2")
    inventory.write_text(broken)
    log = hangup(appliance, REFUSED)
    line = broken.splitlines().index("    template: nosuch.j2") + 1
    assert re.search(rf"ERROR +{re.escape(str(inventory))}:{line}: leaf09: template 'nosuch.j2' not found", log), log
    assert "reloaded:" not in log

    # Still serving the old configuration: the same addresses, the old boot files, the old bytes.
    again = appliance.dhclient(other, tag="-after")
    assert again["new_ip_address"] == "10.60.0.100"  # the lease it held before the reloads
    assert again["new_bootfile_name"] == "020000000042.cfg"
    assert appliance.dhclient(leaf, tag="-after")["new_bootfile_name"] == "leaf01.cfg"
    out = appliance.tmp / "leaf01.cfg"
    appliance.lab.run(leaf, ["curl", "-sS", "-o", str(out), "tftp://10.60.0.1/leaf01.cfg"], timeout=20)
    assert out.read_bytes() == expected
    leases_after = stored_leases(appliance)
    assert leases_before <= leases_after and len(leases_before) == 2
