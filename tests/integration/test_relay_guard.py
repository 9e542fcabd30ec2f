"""Issue 10, who may relay: ISC dhcrelay in front of `ztp serve`. With `dhcp.relays` naming another relay its
requests are refused (logged with the relay's address, counted); after a SIGHUP that lists it (its upstream
address and its giaddr) a real dhclient behind it gets an address. A hand-forged relayed DISCOVER whose
giaddr lies in no configured subnet is refused while `dhcp.relays` is unset."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tests.integration.test_relay import (
    RELAY_UP,
    SEG_A,
    SEG_B,
    SERVER,
    Topology,
    _start_ztp_serve,
    discover,
    send_raw,
)
from ztp.lab import Lab, LabError


@pytest.fixture
def topo(lab: Lab, tmp_path: Path) -> Iterator[Topology]:
    """test_relay's topology: srv (10.50.0.1) - relay (10.50.0.2; 10.70.0.1 and 10.71.0.1 downstream)."""
    srv, relay = lab.ns("srv"), lab.ns("relay")
    lab.link(relay, "up0", srv, "eth0", addr_a=f"{RELAY_UP}/24", addr_b=f"{SERVER}/24")
    for net in (SEG_A, SEG_B):
        lab.run(srv, ["ip", "route", "add", str(net), "via", RELAY_UP])
    seg_a, seg_b = lab.segment("sega"), lab.segment("segb")
    lab.attach(seg_a, relay, "down0", addr="10.70.0.1/24", mac="02:00:00:00:70:01")
    lab.attach(seg_b, relay, "down1", addr="10.71.0.1/24", mac="02:00:00:00:71:01")
    yield Topology(lab, tmp_path, srv, relay, seg_a, seg_b)


def _set_relays(topo: Topology, relays: str) -> None:
    cfg = topo.tmp / "ztp.yaml"
    text = cfg.read_text()
    if "  relays:" in text:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("  relays:")) + "\n"
    cfg.write_text(text.replace("  lease_time: 3600\n", f"  lease_time: 3600\n  relays: {relays}\n"))


def _log(topo: Topology) -> str:
    return (topo.tmp / "ztp-serve.log").read_text(errors="replace")


def test_only_listed_relays_are_served(topo: Topology) -> None:
    if shutil.which("dhcrelay") is None:
        pytest.fail("dhcrelay is required (Debian package isc-dhcp-relay)")
    proc = _start_ztp_serve(topo)
    _set_relays(topo, "[10.50.0.9, 10.71.0.0/24]")  # another relay's address: ours is not listed
    proc.send_signal(signal.SIGHUP)
    topo.lab.wait_for(lambda: "reloaded:" in _log(topo), 20, "reload")
    cli = topo.client("cli", topo.seg_b, "02:00:00:00:bb:e1")
    argv = ["dhcrelay", "-d", "-4", "--no-pid", "-id", "down1", "-iu", "up0", SERVER]
    topo.lab.spawn(topo.relay, argv, log=topo.tmp / "dhcrelay.log")
    topo.lab.wait_udp_listening(topo.relay, 67, timeout=10)
    with pytest.raises(LabError):
        topo.dhclient(cli, "refused", timeout=6)
    assert f"relayed by {RELAY_UP} (giaddr 10.71.0.1): not in dhcp.relays; ignored" in _log(topo)
    # The relay is listed now (its upstream address; its giaddr is in 10.71.0.0/24): served at once.
    _set_relays(topo, f"[{RELAY_UP}, 10.71.0.0/24]")
    proc.send_signal(signal.SIGHUP)
    topo.lab.wait_for(lambda: _log(topo).count("reloaded:") == 2, 20, "second reload")
    env = topo.dhclient(cli, "served")
    assert IPv4Address(env["new_ip_address"]) in SEG_B
    topo.lab.stop(proc)
    stopped = next(line for line in _log(topo).splitlines() if "dhcp counters" in line)
    assert "'relay_refused'" in stopped, stopped


def test_forged_giaddr_outside_every_subnet_is_refused(topo: Topology) -> None:
    proc = _start_ztp_serve(topo)
    sender = topo.client("forger", topo.seg_a, "02:00:00:00:aa:e9", addr="10.70.0.77/24")
    topo.lab.run(sender, ["ip", "route", "add", "10.50.0.0/24", "via", "10.70.0.1"])
    topo.lab.run(topo.relay, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    forged = discover("02:00:00:00:aa:ea", 0x5151, giaddr=IPv4Address("192.0.2.1"), hops=1)
    topo.lab.wait_for(lambda: (send_raw(topo.lab, sender, forged, SERVER, 67, 67) is None
                               and "giaddr 192.0.2.1" in _log(topo)), 10, "the forged DISCOVER to arrive")
    assert "giaddr in no configured subnet (and dhcp.relays unset); ignored" in _log(topo)
    topo.lab.stop(proc)
    assert "'relay_refused'" in next(line for line in _log(topo).splitlines() if "dhcp counters" in line)
