"""Issue 10: conflict detection end to end. A namespace host squats on the first pool address (configured
statically, answering ping like any host); real ISC dhclients get other addresses, the squatter's address
is never offered, and the conflict is logged with the squatter's MAC and kept in the lease database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.appliance import ApplianceLab, write_config
from ztp.lab import Lab

SQUATTER_MAC = "02:5e:00:00:00:01"
SQUATTED = "10.60.0.100"  # the pool's first address: the one a new client is offered first


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=write_config(tmp_path, dns=False)).build()
    app.start()
    yield app
    if app.proc is not None:
        app.stop()


def test_squatted_pool_address_is_never_offered(appliance: ApplianceLab) -> None:
    lab = appliance.lab
    squatter = lab.ns("squat")
    lab.attach(appliance.seg, squatter, "eth0", addr=f"{SQUATTED}/24", mac=SQUATTER_MAC)
    offered: list[str] = []
    for n in range(3):
        ns = appliance.client(f"c{n}", f"02:77:00:00:00:{n:02x}")  # not in the inventory: pool addresses
        env = appliance.dhclient(ns)
        offered.append(env["new_ip_address"])
    assert SQUATTED not in offered
    assert offered[0] == "10.60.0.101"  # the next free address, right after the squatted one
    assert len(set(offered)) == 3
    log = appliance.log.read_text()
    assert f"address {SQUATTED} is in use (it answered a ping, from {SQUATTER_MAC})" in log, log[-3000:]
    assert f"OFFER {SQUATTED}" not in log
    # The conflict is a committed row: it survives a restart and keeps the address out of the pool.
    appliance.stop()
    db = appliance.tmp / "state" / "leases.sqlite3"
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT client, mac, state FROM leases WHERE ip = ?", (SQUATTED,)).fetchone()
    assert row == ("conflict", SQUATTER_MAC, "declined")
    appliance.start()
    ns = appliance.client("late", "02:77:00:00:00:99")
    assert appliance.dhclient(ns)["new_ip_address"] not in (SQUATTED, *offered)
    assert f"OFFER {SQUATTED}" not in appliance.log.read_text()


def test_a_free_address_is_offered_after_the_probe_times_out(appliance: ApplianceLab) -> None:
    ns = appliance.client("c1", "02:77:00:00:01:01")
    env = appliance.dhclient(ns)
    assert env["new_ip_address"] == SQUATTED  # nobody there: the first pool address
    log = appliance.log.read_text()
    assert f"probing {SQUATTED} before offering it" in log
    assert "is in use" not in log
