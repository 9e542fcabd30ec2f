"""End to end: `ztp serve` in a namespace, real DHCP and TFTP clients from Debian against it."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.integration.appliance import ApplianceLab, write_config
from ztp.commitlog import segments
from ztp.lab import Lab
from ztp.leases.store import database_path


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=write_config(tmp_path)).build()
    app.start()
    yield app
    if app.proc is not None:
        app.stop()


def test_dhclient_gets_lease_boot_options_and_tftp_config(appliance: ApplianceLab) -> None:
    ns = appliance.client("c1", "02:00:00:00:00:01")
    env = appliance.dhclient(ns)
    assert env["new_ip_address"] == "10.60.0.11"  # leaf01's reservation
    assert env["new_subnet_mask"] == "255.255.255.0"
    assert env["new_routers"] == "10.60.0.1"
    assert env["new_host_name"] == "leaf01"
    assert env["new_tftp_server_name"] == "10.60.0.1"  # option 66
    assert env["new_bootfile_name"] == "leaf01.cfg"  # option 67
    assert env["new_next_server"] == "10.60.0.1"  # siaddr
    assert env["new_server_name"] == "10.60.0.1"  # sname
    assert env["new_filename"] == "leaf01.cfg"  # file
    assert env["new_dhcp_renewal_time"] == "1800" and env["new_dhcp_rebinding_time"] == "3150"
    expected = appliance.rendered(hostname="leaf01")
    assert b"hostname leaf01" in expected
    out = appliance.tmp / "tftp-hpa.cfg"
    appliance.lab.run(ns, ["tftp", "-m", "binary", "10.60.0.1", "-c", "get", "leaf01.cfg", str(out)], timeout=20)
    assert out.read_bytes() == expected
    # Lease is in the table with the device's name.
    leases = appliance.ztp("leases", "--json")
    assert '"ip": "10.60.0.11"' in leases.stdout and '"hostname": "leaf01"' in leases.stdout


def test_udhcpc_pool_address_and_boot_options(appliance: ApplianceLab) -> None:
    ns = appliance.client("c2", "02:00:00:00:00:02")
    script = appliance.tmp / "udhcpc.sh"
    out = appliance.tmp / "udhcpc.env"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = bound ] || exit 0\nenv | sort > {out}\n"
                      "ip addr add \"$ip/$mask\" dev \"$interface\"\n")
    script.chmod(0o755)
    appliance.lab.run(ns, ["busybox", "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "2", "-i", "eth0", "-s",
                           str(script), "-O", "66", "-O", "67", "-O", "tftp", "-O", "bootfile"], timeout=40)
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert env["ip"] == "10.60.0.100"  # first pool address
    assert env["siaddr"] == "10.60.0.1"
    assert env["boot_file"] == "leaf02.cfg"  # BOOTP file field
    assert env["sname"] == "10.60.0.1"
    assert env["bootfile"] == "leaf02.cfg"  # option 67
    assert env["tftp"] == "10.60.0.1"  # option 66
    assert env["hostname"] == "leaf02"
    # curl and atftp fetch the same bytes `ztp render` prints.
    expected = appliance.rendered(hostname="leaf02")
    assert b"ip address 10.60.0.100/24" in expected
    curl_out = appliance.tmp / "curl.cfg"
    appliance.lab.run(ns, ["curl", "-sS", "--tftp-blksize", "1468", "-o", str(curl_out),
                           "tftp://10.60.0.1/leaf02.cfg"], timeout=20)
    assert curl_out.read_bytes() == expected
    atftp_out = appliance.tmp / "atftp.cfg"
    appliance.lab.run(ns, ["atftp", "--option", "blksize 1024", "--option", "tsize 0", "-g", "-r", "leaf02.cfg",
                           "-l", str(atftp_out), "10.60.0.1"], timeout=20)
    assert atftp_out.read_bytes() == expected


def test_traversal_and_unknown_file_get_tftp_errors(appliance: ApplianceLab) -> None:
    ns = appliance.client("c3", "02:00:00:00:00:03")
    appliance.dhclient(ns)
    for name in ("../../etc/passwd", "/etc/passwd", "nosuch.cfg"):
        res = appliance.lab.run(ns, ["curl", "-sS", "-o", "/dev/null", f"tftp://10.60.0.1/{name}"], timeout=20,
                                check=False)
        assert res.returncode != 0, name
    # The static root still serves its files.
    res = appliance.lab.run(ns, ["curl", "-sS", "tftp://10.60.0.1/README.txt"], timeout=20)
    assert "ztp static file" in res.stdout


def test_init_reboot_foreign_address_gets_nak(appliance: ApplianceLab) -> None:
    ns = appliance.client("c4", "02:00:00:00:00:44")
    # A lease file from another network: dhclient starts in INIT-REBOOT asking for 192.0.2.50.
    lease_file = appliance.tmp / f"{ns}.leases"
    lease_file.write_text('lease {\n  interface "eth0";\n  fixed-address 192.0.2.50;\n'
                          '  option subnet-mask 255.255.255.0;\n  option dhcp-server-identifier 192.0.2.1;\n'
                          '  renew 4 2037/01/01 00:00:01;\n  rebind 4 2037/01/01 00:00:01;\n'
                          '  expire 4 2037/01/01 00:00:01;\n}\n')
    env = appliance.dhclient(ns)
    assert env["new_ip_address"].startswith("10.60.0.")
    log = appliance.log.read_text()
    assert "REQUEST (init-reboot) for 192.0.2.50: wrong network 10.60.0.0/24 -> NAK" in log


def test_release_then_discover_returns_same_address(appliance: ApplianceLab) -> None:
    ns = appliance.client("c5", "02:00:00:00:00:55")
    first = appliance.dhclient(ns)["new_ip_address"]
    lease_file = appliance.tmp / f"{ns}.leases"
    appliance.lab.run(ns, ["dhclient", "-4", "-r", "-lf", str(lease_file), "-pf", str(appliance.tmp / "r.pid"),
                           "-sf", "/bin/true", "eth0"], timeout=20)
    appliance.lab.wait_for(lambda: f"RELEASE {first}" in appliance.log.read_text(), 10, "RELEASE logged")
    lease_file.unlink()
    appliance.lab.run(ns, ["ip", "addr", "flush", "dev", "eth0"])
    second = appliance.dhclient(ns, tag="again")["new_ip_address"]
    assert second == first


def test_kill_9_between_acks_loses_no_granted_lease(appliance: ApplianceLab) -> None:
    granted = {}
    for i in range(3):
        mac = f"02:00:00:00:01:{i:02x}"
        ns = appliance.client(f"k{i}", mac)
        granted[mac] = appliance.dhclient(ns)["new_ip_address"]
    appliance.stop(signal.SIGKILL)  # its process group: the lease writer process too, as a power cut would
    # `ztp leases` reads the database and, on top, what the commit log holds that the database does not yet.
    rows = appliance.ztp("leases", "--json").stdout
    for mac, ip in granted.items():
        assert f'"mac": "{mac}"' in rows and f'"ip": "{ip}"' in rows
    appliance.start()
    # After the restart the same clients keep their addresses.
    ns = appliance.clients["k1"]
    appliance.lab.run(ns, ["ip", "addr", "flush", "dev", "eth0"])
    assert appliance.dhclient(ns, tag="after")["new_ip_address"] == granted["02:00:00:00:01:01"]
    appliance.stop()
    # Stopped cleanly: every lease is in the database itself, and no commit log is left.
    db = database_path(appliance.tmp / "state")
    with closing(sqlite3.connect(db)) as conn:
        in_database = dict(conn.execute("SELECT mac, ip FROM leases").fetchall())
    assert all(in_database.get(mac) == ip for mac, ip in granted.items()), in_database
    assert segments(db) == []


def test_malformed_packets_do_not_stop_the_server(appliance: ApplianceLab) -> None:
    ns = appliance.client("c6", "02:00:00:00:00:66")
    appliance.lab.run(ns, ["ip", "addr", "add", "10.60.0.250/24", "dev", "eth0"])
    code = (
        "import socket, os\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n"
        "base = bytearray(300); base[0] = 1; base[1] = 1; base[2] = 6; base[236:240] = b'\\x63\\x82\\x53\\x63'\n"
        "for i in range(500):\n"
        "    junk = os.urandom(i % 400)\n"
        "    s.sendto(junk, ('10.60.0.1', 67))\n"
        "    bad = bytes(base[:240]) + bytes([53, 1, 1, 61, 200]) + os.urandom(3)\n"
        "    s.sendto(bad, ('10.60.0.1', 67))\n"
        "    s.sendto(junk, ('10.60.0.1', 69))\n"
        "    s.sendto(b'\\x00\\x01' + junk + b'\\x00octet\\x00blksize\\x00abc\\x00', ('10.60.0.1', 69))\n"
    )
    appliance.lab.run(ns, ["python3", "-c", code], timeout=30)
    appliance.lab.run(ns, ["ip", "addr", "flush", "dev", "eth0"])
    env = appliance.dhclient(ns)
    assert env["new_ip_address"].startswith("10.60.0.1")
    assert appliance.proc is not None and appliance.proc.poll() is None
    appliance.lab.wait_for(lambda: "malformed" in appliance.log.read_text(), 5, "malformed packets logged")


def test_interface_not_served_is_ignored(lab: Lab, tmp_path: Path) -> None:
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=write_config(tmp_path, interfaces="[other0]")).build()
    # other0 must exist (ztp serve refuses a configured interface that does not): a veth beside s1.
    for argv in (["link", "add", "other0", "type", "veth", "peer", "name", "other1"],
                 ["addr", "add", "10.99.0.1/24", "dev", "other0"],
                 ["link", "set", "other0", "up"]):
        lab.run(app.srv, ["ip", *argv], timeout=10)
    app.start()
    ns = app.client("c7", "02:00:00:00:00:77")
    with pytest.raises(Exception, match="bound"):
        app.dhclient(ns, timeout=6)
    assert "OFFER" not in app.log.read_text()
    app.stop()

