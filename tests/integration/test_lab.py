"""The lab harness itself: links, segments, teardown, and real DHCP peers confined to namespaces."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
from pathlib import Path

import pytest

from ztp.lab import Lab, LabError, dhclient_argv, netns_list

DATA = Path(__file__).resolve().parent.parent / "data"


def _addrs(lab: Lab, ns: str, ifname: str) -> list[str]:
    out = lab.run(ns, ["ip", "-4", "-o", "addr", "show", "dev", ifname]).stdout
    return re.findall(r"inet (\S+)", out)


def _host_has_addr(addr: str) -> bool:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    return f"inet {addr}/" in out


def _dnsmasq(lab: Lab, ns: str, ifname: str, tmp_path: Path, *boot: str) -> subprocess.Popen[bytes]:
    argv = [
        "dnsmasq",
        "--no-daemon",
        "--port=0",  # DHCP only, no DNS
        "--conf-file=/dev/null",
        "--pid-file=",
        f"--interface={ifname}",
        "--bind-interfaces",
        "--dhcp-authoritative",
        "--log-dhcp",
        "--no-ping",  # skip the ICMP probe before offering: it costs ~3 s per new client
        "--dhcp-range=10.60.0.100,10.60.0.150,255.255.255.0,1h",
        f"--dhcp-leasefile={tmp_path / 'dnsmasq.leases'}",
        *boot,
    ]
    proc = lab.spawn(ns, argv, log=tmp_path / "dnsmasq.log")
    lab.wait_udp_listening(ns, 67, timeout=10)
    return proc


def test_linked_namespaces_ping(lab: Lab) -> None:
    a, b = lab.ns("a"), lab.ns("b")
    lab.link(a, "eth0", b, "eth0", addr_a="10.60.0.1/24", addr_b="10.60.0.2/24", mac_b="02:00:00:00:60:02")
    assert lab.ping(a, "10.60.0.2")
    assert lab.ping(b, "10.60.0.1")
    link = lab.run(b, ["ip", "-o", "link", "show", "eth0"]).stdout
    assert "02:00:00:00:60:02" in link
    # Nothing leaked into the host namespace.
    assert not _host_has_addr("10.60.0.1")


def test_segment_joins_attached_namespaces(lab: Lab) -> None:
    seg = lab.segment("sw")
    h1, h2 = lab.ns("h1"), lab.ns("h2")
    lab.attach(seg, h1, "eth0", addr="10.70.0.1/24")
    port = lab.attach(seg, h2, "eth0", addr="10.70.0.2/24")
    assert port == "p2"
    assert lab.ping(h1, "10.70.0.2")
    assert lab.ping(h2, "10.70.0.1")
    bridged = lab.run(seg, ["ip", "-o", "link", "show", "master", "br0"]).stdout
    assert "p1" in bridged and "p2" in bridged


def test_cleanup_on_error_kills_processes_and_deletes_namespaces(require_netns: None) -> None:
    lab = Lab()
    with pytest.raises(RuntimeError, match="boom"), lab:
        ns = lab.ns("a")
        lab.ns("b")
        tracked = lab.spawn(ns, ["sleep", "1000"])
        # A process outside every tracked group: only `ip netns pids` can find it.
        lab.run(ns, ["sh", "-c", "setsid -f sleep 1001 >/dev/null 2>&1"])
        escaped = [int(p) for p in lab.run(ns, ["ip", "netns", "pids", ns]).stdout.split()]
        escaped = [p for p in escaped if p != tracked.pid]
        assert escaped, "the setsid'd sleep should be visible in the namespace"
        assert all(n in netns_list() for n in lab.namespaces)
        raise RuntimeError("boom")
    assert tracked.poll() is not None
    for pid in escaped:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not [n for n in netns_list() if n.startswith(f"{lab.prefix}-")]
    lab.cleanup()  # idempotent


def test_stop_returns_exit_status(lab: Lab) -> None:
    ns = lab.ns("a")
    proc = lab.spawn(ns, ["sleep", "1000"])
    assert lab.stop(proc) == -signal.SIGTERM
    stubborn = lab.spawn(ns, ["sh", "-c", "trap '' TERM; sleep 1000"])
    lab.wait_for(lambda: bool(lab.run(ns, ["pgrep", "-x", "sleep"], check=False).stdout), 5, "sleep started")
    assert lab.stop(stubborn, timeout=0.3) == -signal.SIGKILL


def test_stale_namespaces_with_same_prefix_are_removed(require_netns: None) -> None:
    prefix = "zs" + secrets.token_hex(2)
    stale = f"{prefix}-old"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    squatter = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "1000"], start_new_session=True)
    try:
        with Lab(prefix=prefix) as lab:
            assert stale not in netns_list()
            assert squatter.wait(timeout=5) is not None
            assert lab.ns("old") == stale  # the name is usable again
    finally:
        if squatter.poll() is None:
            os.killpg(squatter.pid, signal.SIGKILL)
            squatter.wait()
        subprocess.run(["ip", "netns", "del", stale], check=False, capture_output=True)
    assert stale not in netns_list()


def test_run_and_wait_errors_are_lab_errors(lab: Lab) -> None:
    ns = lab.ns("a")
    with pytest.raises(LabError, match="exited 3"):
        lab.run(ns, ["sh", "-c", "exit 3"])
    assert lab.run(ns, ["cat"], input="hi").stdout == "hi"
    with pytest.raises(LabError, match="timed out"):
        lab.run(ns, ["sleep", "5"], timeout=0.2)
    with pytest.raises(LabError, match="the impossible"):
        lab.wait_for(lambda: False, 0.1, "the impossible")
    with pytest.raises(LabError, match="bad interface name"):
        lab.link(ns, "a-name-longer-than-15", ns, "x")


def test_udhcpc_gets_lease_from_dnsmasq_inside_namespaces(lab: Lab, tmp_path: Path) -> None:
    srv, cli = lab.ns("srv"), lab.ns("cli")
    lab.link(srv, "eth0", cli, "eth0", addr_a="10.60.0.1/24", mac_b="02:00:00:00:60:64")
    dnsmasq = _dnsmasq(lab, srv, "eth0", tmp_path, "--dhcp-boot=boot.bin,tftp-srv,10.60.0.1")
    assert dnsmasq.pid in [int(p) for p in lab.run(srv, ["ip", "netns", "pids", srv]).stdout.split()]

    script = tmp_path / "udhcpc.sh"
    env_out = tmp_path / "udhcpc.env"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        '  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;\n'
        '  bound|renew) ip -4 addr flush dev "$interface"\n'
        '    ip -4 addr add "$ip/$mask" dev "$interface"\n'
        f'    env | sort > "{env_out}" ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    res = lab.run(
        cli,
        ["busybox", "udhcpc", "-f", "-q", "-n", "-i", "eth0", "-s", str(script), "-t", "5", "-T", "1"],
        timeout=20,
    )
    assert res.returncode == 0
    (addr,) = _addrs(lab, cli, "eth0")
    assert re.fullmatch(r"10\.60\.0\.1(\d\d|50)/24", addr), addr
    env = env_out.read_text()
    assert f"ip={addr.split('/')[0]}" in env
    assert "boot_file=boot.bin" in env and "siaddr=10.60.0.1" in env
    assert not _host_has_addr(addr.split("/")[0])
    assert "02:00:00:00:60:64" in (tmp_path / "dnsmasq.leases").read_text()


def test_dhclient_with_contained_script_gets_lease(lab: Lab, tmp_path: Path) -> None:
    srv, cli = lab.ns("srv"), lab.ns("cli")
    lab.link(srv, "eth0", cli, "eth0", addr_a="10.60.0.1/24")
    # dnsmasq moves --dhcp-boot's file/sname into options 67/66 when the client asks for them (our
    # dhclient.conf does), and then BOOTP file/sname stay empty; siaddr still carries the server.
    _dnsmasq(lab, srv, "eth0", tmp_path, "--dhcp-boot=boot.bin,tftp-srv,10.60.0.1")
    out = tmp_path / "dhclient.env"
    resolv_before = Path("/etc/resolv.conf").read_bytes()
    argv = dhclient_argv(
        "eth0",
        lease_file=tmp_path / "dhclient.leases",
        pid_file=tmp_path / "dhclient.pid",
        script=DATA / "dhclient-script",
        conf=DATA / "dhclient.conf",
        out_file=out,
    )
    proc = lab.spawn(cli, argv, log=tmp_path / "dhclient.log")
    lab.wait_for(lambda: out.exists() and "new_ip_address=" in out.read_text(), 15, "dhclient BOUND")
    assert proc.poll() is None  # -d keeps it in the foreground, tracked
    fields = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert fields["reason"] == "BOUND"
    assert fields["new_subnet_mask"] == "255.255.255.0"
    assert fields["new_tftp_server_name"] == "tftp-srv"
    assert fields["new_bootfile_name"] == "boot.bin"
    assert fields["new_next_server"] == "10.60.0.1"
    assert fields["new_dhcp_lease_time"] == "3600"
    assert _addrs(lab, cli, "eth0") == [f"{fields['new_ip_address']}/24"]
    assert Path("/etc/resolv.conf").read_bytes() == resolv_before
