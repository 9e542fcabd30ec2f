"""Only the right device gets its config (issue 10), end to end: `ztp serve` in a namespace, a device that
holds its reservation and a second host on the same segment, fetching with tftp-hpa, curl and atftp.

Also: absolute paths refused, a flood of `timeout=255` requests bounded by the per-peer cap while a real
device still gets its config, TFTP and DNS bound only to the provisioning addresses, and `ztp serve`
refusing an interface that does not exist.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.appliance import REPO, ZTP, ApplianceLab, write_config
from ztp.lab import Lab

SERVER = "10.60.0.1"


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=write_config(tmp_path, dns=True)).build()
    app.start()
    yield app
    if app.proc is not None:
        app.stop()


def _device_and_stranger(app: ApplianceLab) -> tuple[str, str]:
    """leaf01 (holding its reservation 10.60.0.11 through dhclient) and a host given 10.60.0.50 by hand."""
    device = app.client("dev", "02:00:00:00:00:01")
    env = app.dhclient(device)
    assert env["new_ip_address"] == "10.60.0.11"
    stranger = app.client("other", "02:00:00:00:00:66")
    app.lab.add_addr(stranger, "eth0", "10.60.0.50/24")
    return device, stranger


def _py(app: ApplianceLab, ns: str, source: str, timeout: float = 60) -> str:
    script = app.tmp / f"client_{abs(hash(source)) % 10**8}.py"
    script.write_text(textwrap.dedent(source))
    return app.lab.run(ns, ["env", f"PYTHONPATH={REPO}", sys.executable, str(script)], timeout=timeout).stdout


def _raw_rrq(app: ApplianceLab, ns: str, names: list[str]) -> list[list[object]]:
    """Send one RRQ per name from `ns`; return [opcode, error code, message] of each first reply."""
    got: list[list[object]] = json.loads(_py(app, ns, f"""
        import json, socket
        res = []
        for name in {names!r}:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(3)
            s.sendto(b"\\x00\\x01" + name.encode() + b"\\x00octet\\x00", ("{SERVER}", 69))
            data, _ = s.recvfrom(2000)
            res.append([int.from_bytes(data[:2], "big"), int.from_bytes(data[2:4], "big"),
                        data[4:-1].decode(errors="replace")])
            if data[:2] == b"\\x00\\x03":  # a transfer started: end it politely
                s.sendto(b"\\x00\\x05\\x00\\x00done\\x00", _)
        print(json.dumps(res))
    """).strip().splitlines()[-1])
    return got



def _logged(appliance: ApplianceLab, *needles: str, timeout: float = 5) -> str:
    """The serve log once every needle is in it: ztp serve writes its log from a thread in batches
    (ztp.logwriter, up to 50 ms after the event), so a line may land just after the client has its answer."""
    appliance.lab.wait_for(lambda: all(n in appliance.log.read_text() for n in needles), timeout,
                           f"{needles} in the serve log")
    return appliance.log.read_text()

def test_only_the_lease_holder_gets_its_config(appliance: ApplianceLab) -> None:
    device, stranger = _device_and_stranger(appliance)
    expected = appliance.rendered(hostname="leaf01")
    work = appliance.tmp

    # The device itself, with each client.
    appliance.lab.run(device, ["tftp", "-m", "binary", SERVER, "-c", "get", "leaf01.cfg", str(work / "hpa.cfg")],
                      timeout=20)
    appliance.lab.run(device, ["curl", "-sS", "--max-time", "10", "-o", str(work / "curl.cfg"),
                               f"tftp://{SERVER}/leaf01.cfg"], timeout=20)
    appliance.lab.run(device, ["atftp", "--option", "blksize 1024", "-g", "-r", "leaf01.cfg", "-l",
                               str(work / "atftp.cfg"), SERVER], timeout=20)
    for name in ("hpa.cfg", "curl.cfg", "atftp.cfg"):
        assert (work / name).read_bytes() == expected, name

    # The second host on the segment: ERROR 2 with each client, and nothing written.
    res = appliance.lab.run(stranger, ["tftp", "-m", "binary", SERVER, "-c", "get", "leaf01.cfg",
                                       str(work / "x-hpa.cfg")], timeout=20, check=False)
    assert "Error code 2" in res.stdout + res.stderr
    res = appliance.lab.run(stranger, ["curl", "-sS", "--max-time", "10", "-o", str(work / "x-curl.cfg"),
                                       f"tftp://{SERVER}/leaf01.cfg"], timeout=20, check=False)
    assert res.returncode == 69, res.stderr  # CURLE_TFTP_PERM: how curl reports TFTP ERROR 2
    res = appliance.lab.run(stranger, ["atftp", "-g", "-r", "leaf01.cfg", "-l", str(work / "x-atftp.cfg"),
                                       SERVER], timeout=20, check=False)
    assert res.returncode != 0 and "only the device holding its address" in res.stdout + res.stderr
    for name in ("x-hpa.cfg", "x-curl.cfg", "x-atftp.cfg"):
        assert not (work / name).exists() or (work / name).stat().st_size == 0, name

    # The exact code on the wire; the device may not fetch another device's config either.
    assert [r[:2] for r in _raw_rrq(appliance, stranger, ["leaf01.cfg", "leaf02.cfg"])] == [[5, 2], [5, 2]]
    assert [r[:2] for r in _raw_rrq(appliance, device, ["leaf02.cfg"])] == [[5, 2]]
    # Public static files stay readable by everyone.
    res = appliance.lab.run(stranger, ["curl", "-sS", "--max-time", "10", f"tftp://{SERVER}/README.txt"], timeout=20)
    assert "ztp static file" in res.stdout

    log = _logged(appliance, "tftp leaf01.cfg refused to 10.60.0.50", "refused to 10.60.0.11")
    assert "tftp leaf01.cfg refused to 10.60.0.50" in log and "02:00:00:00:00:01" in log
    assert "refused to 10.60.0.11" in log  # leaf02.cfg asked for by leaf01


def test_absolute_paths_are_refused(appliance: ApplianceLab) -> None:
    device, _ = _device_and_stranger(appliance)
    got = _raw_rrq(appliance, device, ["/leaf01.cfg", "//leaf01.cfg", "../leaf01.cfg", "/README.txt",
                                       "leaf01.cfg"])
    assert [r[:2] for r in got[:4]] == [[5, 2]] * 4
    assert "absolute" in str(got[0][2]) and "'..'" in str(got[2][2])
    assert got[4][0] == 3  # the plain name is served: DATA


def test_timeout_255_flood_does_not_stop_a_real_fetch(appliance: ApplianceLab) -> None:
    device, stranger = _device_and_stranger(appliance)
    # 300 RRQs from as many ports, asking for a 255 s timeout and never ACKing: without caps each would hold
    # a session (and its retransmissions) for 255 s x retries.
    got = json.loads(_py(appliance, stranger, f"""
        import json, select, socket, time
        socks = []
        for i in range(300):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"\\x00\\x01README.txt\\x00octet\\x00timeout\\x00255\\x00tsize\\x000\\x00", ("{SERVER}", 69))
            socks.append(s)
        oacks, busy, other, timeouts = 0, 0, 0, 0
        pending = set(socks)
        deadline = time.monotonic() + 5
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(list(pending), [], [], 0.5)
            for s in ready:
                data = s.recv(2000)
                pending.discard(s)
                if data[:2] == b"\\x00\\x06":
                    oacks += 1
                    timeouts += b"timeout" in data
                elif data[:4] == b"\\x00\\x05\\x00\\x00" and b"server busy" in data:
                    busy += 1
                else:
                    other += 1
        print(json.dumps({{"oack": oacks, "busy": busy, "other": other, "timeout_granted": timeouts,
                          "silent": len(pending)}}))
    """).strip().splitlines()[-1])
    assert got == {"oack": 8, "busy": 292, "other": 0, "timeout_granted": 0, "silent": 0}

    # Meanwhile the device fetches its config as usual.
    out = appliance.tmp / "during-flood.cfg"
    appliance.lab.run(device, ["tftp", "-m", "binary", SERVER, "-c", "get", "leaf01.cfg", str(out)], timeout=20)
    assert out.read_bytes() == appliance.rendered(hostname="leaf01")
    log = _logged(appliance, "server busy", "max_sessions_per_peer 8")
    assert "server busy" in log and "max_sessions_per_peer 8" in log
    assert log.count("server busy") < 10  # logged at most once per interval, not once per request


def test_tftp_and_dns_listen_only_on_the_provisioning_addresses(appliance: ApplianceLab) -> None:
    res = appliance.lab.run(appliance.srv, ["ss", "-H", "-u", "-t", "-l", "-n"], timeout=5)
    local = {line.split()[4] for line in res.stdout.splitlines() if len(line.split()) >= 5}
    assert {f"{SERVER}:69", f"{SERVER}:53"} <= local
    assert not {"0.0.0.0:69", "0.0.0.0:53", "*:69", "*:53"} & local, local


def test_listen_adds_an_address_for_relayed_subnets(lab: Lab, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, config_extra="listen: [10.50.0.1]\n")
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=cfg).build()
    lab.add_addr(app.srv, "s1", "10.50.0.1/24")  # stands in for the relay-facing interface
    app.start()
    try:
        res = lab.run(app.srv, ["ss", "-H", "-u", "-l", "-n"], timeout=5)
        local = {line.split()[3] for line in res.stdout.splitlines() if len(line.split()) >= 4}
        assert {f"{SERVER}:69", "10.50.0.1:69", f"{SERVER}:53", "10.50.0.1:53"} <= local
        # A transfer asked of the second address is answered from it (curl and tftp-hpa insist on that).
        host = app.client("far", "02:00:00:00:00:67")
        lab.add_addr(host, "eth0", "10.50.0.9/24")
        res = lab.run(host, ["curl", "-sS", "--max-time", "10", "tftp://10.50.0.1/README.txt"], timeout=20)
        assert "ztp static file" in res.stdout
        out = tmp_path / "hpa-far.txt"
        lab.run(host, ["tftp", "-m", "binary", "10.50.0.1", "-c", "get", "README.txt", str(out)], timeout=20)
        assert b"ztp static file" in out.read_bytes()
    finally:
        app.stop()


def test_serve_refuses_a_missing_interface(lab: Lab, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, interfaces="[s1, nosuch0]")
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=cfg).build()
    log = tmp_path / "serve.log"
    proc = lab.spawn(app.srv, [*ZTP, "serve", "--config", str(cfg)], log=log,
                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lab.wait_for(lambda: proc.poll() is not None, 20, "ztp serve exiting")
    text = log.read_text()
    assert proc.returncode == 1, text
    assert "'nosuch0' does not exist" in text and "interfaces here: lo, s1" in text
    assert not lab.udp_listening(app.srv, 69)


def test_private_and_unreadable_static_files(lab: Lab, tmp_path: Path) -> None:
    root = tmp_path / "tftpboot"
    (root / "secret").mkdir(parents=True)
    files = {"README.txt": b"public\n", "secret/creds.txt": b"user admin secret\n", "mode600.bin": b"x\n",
             "image.bin": os.urandom(3 * 1024 * 1024 + 77)}  # over 1 MiB: streamed block by block
    for name, data in files.items():
        (root / name).write_bytes(data)
        (root / name).chmod(0o600 if name == "mode600.bin" else 0o644)
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(f"  root: {REPO / 'tftpboot'}\n",
                                           f"  root: {root}\n  private: [\"secret/*\"]\n"))
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=cfg).build()
    app.start()
    try:
        device, stranger = _device_and_stranger(app)
        codes = {ns: [r[:2] for r in _raw_rrq(app, ns, ["README.txt", "secret/creds.txt", "mode600.bin"])]
                 for ns in (device, stranger)}
        assert codes[device] == [[3, 1], [3, 1], [5, 2]]  # DATA block 1, DATA block 1, ERROR 2
        assert codes[stranger] == [[3, 1], [5, 2], [5, 2]]
        res = lab.run(device, ["curl", "-sS", "--max-time", "10", f"tftp://{SERVER}/secret/creds.txt"], timeout=20)
        assert res.stdout.encode() == files["secret/creds.txt"]
        # The large file, streamed, arrives intact with lock-step and windowed clients alike.
        lab.run(stranger, ["curl", "-sS", "--max-time", "30", "--tftp-blksize", "1468", "-o",
                           str(tmp_path / "img-curl"), f"tftp://{SERVER}/image.bin"], timeout=40)
        lab.run(stranger, ["atftp", "--option", "blksize 1468", "--option", "tsize 0", "--option", "windowsize 16",
                           "-g", "-r", "image.bin", "-l", str(tmp_path / "img-atftp"), SERVER], timeout=40)
        assert (tmp_path / "img-curl").read_bytes() == files["image.bin"]
        assert (tmp_path / "img-atftp").read_bytes() == files["image.bin"]
    finally:
        app.stop()


def test_a_host_behind_a_router_is_refused_too(appliance: ApplianceLab) -> None:
    # The relayed side (10.70.0.0/24) reaches the appliance through a router, as a relay's segment does:
    # a host there holding no lease gets ERROR 2 for leaf01's and leaf07's (the relayed device's) config,
    # while public static files still come through.
    device, _ = _device_and_stranger(appliance)
    lab = appliance.lab
    router = lab.ns("rtr")
    lab.attach(appliance.seg, router, "s1", addr="10.60.0.254/24")
    far = lab.ns("far")
    lab.link(router, "down0", far, "eth0", addr_a="10.70.0.1/24", addr_b="10.70.0.50/24")
    lab.run(router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    lab.run(far, ["ip", "route", "add", "default", "via", "10.70.0.1"])
    lab.run(appliance.srv, ["ip", "route", "add", "10.70.0.0/24", "via", "10.60.0.254"])
    got = _raw_rrq(appliance, far, ["leaf01.cfg", "leaf07.cfg", "README.txt"])
    assert [r[:2] for r in got[:2]] == [[5, 2], [5, 2]] and got[2][0] == 3
    res = lab.run(far, ["curl", "-sS", "--max-time", "10", "-o", str(appliance.tmp / "far.cfg"),
                        f"tftp://{SERVER}/leaf01.cfg"], timeout=20, check=False)
    assert res.returncode == 69, res.stderr
    assert "tftp leaf01.cfg refused to 10.70.0.50" in _logged(appliance, "tftp leaf01.cfg refused to 10.70.0.50")
    # The device itself still gets its own.
    assert [r[0] for r in _raw_rrq(appliance, device, ["leaf01.cfg"])] == [3]
