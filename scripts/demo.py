"""`make demo`: a lab of network namespaces, `ztp serve` with the repo's example config, a few switches
emulated by `ztp agent` booting against it, then a small boot storm;
prints what each device got, then tears everything down.

Everything runs inside namespaces this script creates; nothing touches the host's network.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ztp.lab import Lab, LabError, require_root

REPO = Path(__file__).resolve().parents[1]
ZTP = [sys.executable, "-m", "ztp"]
SWITCHES = [("02:00:00:00:00:01", "leaf01"), ("02:00:00:00:00:02", "leaf02"),
            ("02:00:00:00:00:10", "spine01"), ("02:00:00:00:00:99", "(not in inventory)")]
FLEET = 50


def demo_config(tmp: Path) -> Path:
    """The example ztp.yaml, with state in a temporary directory and absolute paths."""
    text = (REPO / "ztp.yaml").read_text()
    text = text.replace("./state", str(tmp / "state")).replace("./templates", str(REPO / "templates"))
    text = text.replace("./inventory.yaml", str(REPO / "inventory.yaml")).replace("./tftpboot", str(REPO / "tftpboot"))
    path = tmp / "ztp.yaml"
    path.write_text(text)
    return path


def boot_with_agent(lab: Lab, ns: str, mac: str, out: Path) -> dict[str, Any]:
    """One emulated switch: `ztp agent` does DHCP, finds the boot server and file, fetches it over TFTP."""
    res = lab.run(ns, [*ZTP, "agent", "--interface", "eth0", "--mac", mac, "--out", str(out), "--json",
                       "--timeout", "30"], timeout=60, check=False)
    try:
        result: dict[str, Any] = json.loads(res.stdout)
    except json.JSONDecodeError:
        return {"status": "failed", "reason": (res.stderr or res.stdout).strip()[-300:]}
    return result


def report(label: str, result: dict[str, Any]) -> int:
    """Print one device's outcome and the first lines of its config; 1 if it failed."""
    if result.get("status") != "provisioned":
        print(f"\n-- {label}: FAILED at {result.get('stage')}: {result.get('reason')}")
        return 1
    timings = result.get("timings", {})
    print(f"\n-- {label}: {result['ip']}/{result['prefixlen']} "
          f"boot={result['boot_server']}:{result['boot_file']} ({result['bytes']} bytes, "
          f"sha256 {str(result['sha256'])[:12]}, total {timings.get('total', 0) * 1000:.0f} ms)")
    for line in Path(result["path"]).read_text().splitlines()[:8]:
        print(f"   | {line}")
    return 0


def boot_through_relay(lab: Lab, srv: str, relay_ns: str, tmp: Path) -> int:
    """A remote site: `ztp relay` between the appliance (10.50.0.0/24) and a switch segment (10.70.0.0/24).

    The switch's MAC is not in the inventory: it is recognised by the relay's option-82 circuit-id
    (`r1-port7`, the port it is plugged into) and becomes leaf07.
    """
    remote = lab.segment("remote")
    lab.attach(remote, relay_ns, "down0", addr="10.70.0.1/24")
    lab.run(srv, ["ip", "route", "add", "10.70.0.0/24", "via", "10.50.0.2"])
    lab.run(relay_ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    relay = lab.spawn(relay_ns, [*ZTP, "relay", "--client-interface", "down0", "--server", "10.50.0.1",
                                 "--circuit-id", "r1-port7"], log=tmp / "relay.log",
                      env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lab.wait_udp_listening(relay_ns, 67)
    ns = lab.ns("remote1")
    mac = "02:00:00:00:07:07"
    lab.attach(remote, ns, "eth0", mac=mac)
    out = tmp / "remote1"
    out.mkdir()
    failed = report(f"remote switch {mac} behind ztp relay (circuit-id r1-port7)",
                    boot_with_agent(lab, ns, mac, out))
    lab.stop(relay)
    for line in (tmp / "relay.log").read_text().splitlines()[-4:]:
        print(f"   relay: {line}")
    return failed


def show_operator_view(lab: Lab, srv: str, config: Path) -> None:
    """The dashboard's address, `ztp status`, and (ZTP_DEMO_SCREENSHOT=FILE) a screenshot of the dashboard."""
    print(f"== dashboard: http://10.60.0.1/ (inside the lab: sudo ip netns exec {srv} curl -s "
          "http://10.60.0.1/api/devices); metrics at /metrics, API described at /api/openapi.json")
    status = subprocess.run([*ZTP, "status", "--config", str(config)], capture_output=True, text=True, check=False)
    print("== ztp status")
    print(status.stdout or status.stderr)
    shot = os.environ.get("ZTP_DEMO_SCREENSHOT")
    if shot:
        lab.run(srv, ["ip", "link", "set", "lo", "up"])
        res = lab.run(srv, [sys.executable, str(REPO / "scripts" / "screenshot.py"), "http://10.60.0.1/",
                            str(Path(shot).resolve()), "1280", "900"], timeout=60, check=False)
        print(f"== dashboard screenshot: {shot}" if res.returncode == 0 else f"screenshot failed: {res.stderr}")


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
        # The link towards the remote site's relay exists before ztp serve starts: TFTP and DNS bind its
        # address (`listen: [10.50.0.1]` in ztp.yaml), which relayed switches reach through option 150.
        relay_ns = lab.ns("relay")
        lab.link(srv, "r1", relay_ns, "up0", addr_a="10.50.0.1/24", addr_b="10.50.0.2/24")
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
            out = tmp / f"sw{i}"
            out.mkdir()
            result = boot_with_agent(lab, ns, mac, out)
            failures += report(f"switch {i} {mac} {name}", result)
        failures += boot_through_relay(lab, srv, relay_ns, tmp)
        print(f"\n== {len(SWITCHES) + 1 - failures}/{len(SWITCHES) + 1} switches provisioned in "
              f"{time.monotonic() - started:.1f}s; lease table:")
        print(subprocess.run([*ZTP, "leases", "--config", str(config)], capture_output=True, text=True).stdout)
        print(f"== a boot storm: {FLEET} more switches through one port of the segment (ztp agent --count)")
        fleet_ns = lab.ns("fleet")
        lab.attach(seg, fleet_ns, "eth0")
        fleet = lab.run(fleet_ns, [*ZTP, "agent", "--interface", "eth0", "--count", str(FLEET), "--concurrency",
                                   "25", "--no-progress", "--out", str(tmp / "fleet"), "--timeout", "60"],
                        timeout=180, check=False)
        print(fleet.stdout)
        if fleet.returncode != 0:
            failures += 1
            print(fleet.stderr[-2000:])
        show_operator_view(lab, srv, config)
        lab.stop(server, sig=signal.SIGTERM)
        print("== appliance log (last lines):")
        for line in log.read_text().splitlines()[-12:]:
            print(f"   {line}")
        print("== tearing down the lab")
        return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
