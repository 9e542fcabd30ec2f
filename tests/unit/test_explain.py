"""`ztp explain` on the example configuration: match, subnet and why, address rule, option layers, bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

from ztp.config import load_config
from ztp.dhcp import packet as p
from ztp.explain import explain, render_text
from ztp.leases.table import Lease, LeaseState

REPO = Path(__file__).resolve().parents[2]
CONFIG = load_config(REPO / "ztp.yaml")


def test_reserved_device_with_a_device_option() -> None:
    x = explain(CONFIG, [], hostname="leaf01", now=1000.0)
    assert (x.key, x.matched_by) == ("leaf01", "mac 02:00:00:00:00:01")
    assert x.subnet == "10.60.0.0/24" and x.subnet_reason == "interface s1"
    assert (x.address, x.address_rule) == ("10.60.0.11", "reservation (inventory ip)")
    assert (x.boot_file, x.template) == ("leaf01.cfg", "leaf.j2")
    layers = {o["code"]: o["layer"] for o in x.options}
    assert layers[43] == "device" and layers[3] == "subnet (network)" and layers[67] == "boot file"
    assert layers[51] == "lease time" and layers[12] == "inventory hostname"
    reply = p.parse(bytes.fromhex(x.reply_hex))  # the exact bytes, decodable
    assert reply.yiaddr == IPv4Address("10.60.0.11") and reply.message_type == p.OFFER
    text = render_text(x)
    assert "address      10.60.0.11  (reservation (inventory ip))" in text
    assert "[device]" in text and "0000  0201" in text


def test_relay_port_device_is_explained_behind_a_relay() -> None:
    x = explain(CONFIG, [], hostname="leaf07", now=1000.0)
    assert x.matched_by == "relay circuit_id 'r1-port7' remote_id None"
    assert x.subnet == "10.70.0.0/24" and x.subnet_reason == "giaddr 10.70.0.1"
    layers = {o["code"]: o["layer"] for o in x.options}
    assert layers[150] == "subnet"


def test_unknown_mac_gets_the_pool_or_its_lease() -> None:
    x = explain(CONFIG, [], mac="02-00-00-00-00-99", now=1000.0)
    assert x.device is None and x.matched_by == "not in the inventory: defaults"
    assert x.address_rule == "first free address of the pool 10.60.0.100-10.60.0.199"
    assert x.boot_file == "020000000099.cfg" and x.template == "default.j2"
    held = Lease(IPv4Address("10.60.0.150"), "02:00:00:00:00:99", "02:00:00:00:00:99", LeaseState.BOUND,
                 expires=5000.0, updated=900.0)
    again = explain(CONFIG, [held], mac="02:00:00:00:00:99", now=1000.0)
    assert (again.address, again.address_rule) == ("10.60.0.150", "the client's bound lease")


def test_cli_json(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "ztp", "explain", "--config", str(REPO / "ztp.yaml"), "--hostname",
                          "spine01", "--json"], capture_output=True, text=True, timeout=60, check=True, cwd=REPO)
    data = json.loads(res.stdout)
    assert data["address"] == "10.60.0.21" and data["boot_file"] == "spine01.cfg"
