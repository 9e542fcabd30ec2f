"""`make demo`: a lab of network namespaces, `ztp serve` with the repo's example config, a few emulated
switches booting against it; prints what each device got, then tears everything down.

Everything runs inside namespaces this script creates; nothing touches the host's network.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ztp.lab import Lab, LabError, dhclient_argv, require_root

REPO = Path(__file__).resolve().parents[1]
ZTP = [sys.executable, "-m", "ztp"]
SWITCHES = [("02:00:00:00:00:01", "leaf01"), ("02:00:00:00:00:02", "leaf02"),
            ("02:00:00:00:00:10", "spine01"), ("02:00:00:00:00:99", "(not in inventory)")]


def demo_config(tmp: Path) -> Path:
    """The example ztp.yaml, with state in a temporary directory and absolute paths."""
    text = (REPO / "ztp.yaml").read_text()
    text = text.replace("./state", str(tmp / "state")).replace("./templates", str(REPO / "templates"))
    text = text.replace("./inventory.yaml", str(REPO / "inventory.yaml")).replace("./tftpboot", str(REPO / "tftpboot"))
    path = tmp / "ztp.yaml"
    path.write_text(text)
    return path


def boot_with_dhclient(lab: Lab, ns: str, tmp: Path) -> dict[str, str]:
    """DHCP with ISC dhclient (contained script), then fetch the boot file with tftp-hpa."""
    out = tmp / f"{ns}.env"
    proc = lab.spawn(ns, dhclient_argv("eth0", lease_file=tmp / f"{ns}.leases", pid_file=tmp / f"{ns}.pid",
                                       script=REPO / "tests/data/dhclient-script",
                                       conf=REPO / "tests/data/dhclient.conf", out_file=out),
                     log=tmp / f"{ns}.dhclient.log")
    try:
        lab.wait_for(lambda: out.exists() and "reason=BOUND" in out.read_text(), 30, f"{ns} bound")
    finally:
        lab.stop(proc)
    env: dict[str, str] = {}
    for line in out.read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    server, boot = env.get("new_tftp_server_name") or env.get("new_next_server", ""), env.get("new_bootfile_name", "")
    cfg = tmp / f"{ns}.cfg"
    if boot:
        lab.run(ns, ["tftp", "-m", "binary", server, "-c", "get", boot, str(cfg)], timeout=20)
    env["config"] = cfg.read_text() if cfg.exists() else ""
    return env


def main() -> int:
    try:
        require_root()
    except LabError as exc:
        print(f"make demo: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="ztp-demo-") as tmpdir, Lab() as lab:
        tmp = Path(tmpdir)
        config = demo_config(tmp)
        print(f"== ztp demo: lab {lab.prefix}-*, appliance 10.60.0.1 on segment 'seg', config {REPO / 'ztp.yaml'}")
        srv = lab.ns("srv")
        seg = lab.segment("seg")
        lab.attach(seg, srv, "s1", addr="10.60.0.1/24")
        log = tmp / "serve.log"
        server = lab.spawn(srv, [*ZTP, "serve", "--config", str(config)], log=log,
                           env=dict(os.environ, PYTHONUNBUFFERED="1"))
        lab.wait_for(lambda: lab.udp_listening(srv, 67) or server.poll() is not None, 20, "ztp serve listening")
        if server.poll() is not None:
            print(log.read_text(), file=sys.stderr)
            return 1
        started = time.monotonic()
        failures = 0
        for i, (mac, name) in enumerate(SWITCHES, 1):
            ns = lab.ns(f"sw{i}")
            lab.attach(seg, ns, "eth0", mac=mac)
            try:
                env = boot_with_dhclient(lab, ns, tmp)
            except LabError as exc:
                failures += 1
                print(f"\n-- switch {i} {mac} {name}: FAILED ({exc})")
                continue
            print(f"\n-- switch {i} {mac} {name}: {env.get('new_ip_address')} "
                  f"hostname={env.get('new_host_name', '-')} boot={env.get('new_tftp_server_name')}:"
                  f"{env.get('new_bootfile_name')} ({len(env['config'])} bytes)")
            for line in env["config"].splitlines()[:8]:
                print(f"   | {line}")
        print(f"\n== {len(SWITCHES) - failures}/{len(SWITCHES)} switches provisioned in "
              f"{time.monotonic() - started:.1f}s; lease table:")
        print(subprocess.run([*ZTP, "leases", "--config", str(config)], capture_output=True, text=True).stdout)
        lab.stop(server, sig=signal.SIGTERM)
        print("== appliance log (last lines):")
        for line in log.read_text().splitlines()[-12:]:
            print(f"   {line}")
        print("== tearing down the lab")
        return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
