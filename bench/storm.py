"""Boot storm: `ztp agent --count N` (N emulated switches on one interface) against ztp and against dnsmasq.

Both servers hand every switch its reserved address and its own config: ztp renders it from the template
at fetch time, dnsmasq serves the same bytes pre-rendered as static files (one ``dhcp-host`` and one
tagged ``dhcp-boot`` line per switch). Every fetched config is checked against the expected sha256.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.procstat import CpuMeter
from bench.servers import SERVER_IF, ZTP, ztp_serve
from bench.workload import MAC_PREFIX, POOL_FIRST, POOL_LAST, SERVER_IP, Workload
from ztp.agent.fleet import percentile
from ztp.lab import Lab, LabError


@dataclass(slots=True)
class StormResult:
    """One server's boot storm."""

    server: str
    devices: int
    concurrency: int
    provisioned: int = 0
    failed: int = 0
    wrong_config: int = 0
    wall_s: float | None = None
    p50_s: float | None = None
    p99_s: float | None = None
    max_s: float | None = None
    served_p50_s: float | None = None
    served_p99_s: float | None = None
    dhcp_retransmits: int = 0
    tftp_retransmits: int = 0
    server_cpu_pct: float = 0.0
    failed_by_stage: dict[str, int] | None = None
    stages: dict[str, dict[str, float]] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def dnsmasq_conf(work: Workload, tmp: Path, devices: int) -> Path:
    """A dnsmasq config serving DHCP (reservations + per-switch boot file) and TFTP from the static root."""
    leases = tmp / "storm-dnsmasq.leases"
    leases.unlink(missing_ok=True)
    lines = [
        "port=0", f"interface={SERVER_IF}", "bind-interfaces", "user=root", "no-ping", "dhcp-authoritative",
        "quiet-dhcp", "dhcp-lease-max=70000", f"dhcp-leasefile={leases}",
        f"dhcp-range={POOL_FIRST},{POOL_LAST},255.255.0.0,1h", f"dhcp-option=option:router,{SERVER_IP}",
        "enable-tftp", f"tftp-root={work.tftp_root}", "tftp-max=1000",
    ]
    for n, sw in enumerate(work.switches[:devices], start=1):
        lines.append(f"dhcp-host={sw.mac},set:d{n},{sw.ip},{sw.hostname}")
        lines.append(f"dhcp-boot=tag:d{n},{sw.boot_file},,{SERVER_IP}")
    conf = tmp / "storm-dnsmasq.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _agent(lab: Lab, dev: str, devices: int, concurrency: int, timeout: float) -> tuple[int, dict[str, Any], str]:
    argv = [*ZTP, "agent", "--interface", "eth0", "--count", str(devices), "--concurrency", str(concurrency),
            "--mac-prefix", MAC_PREFIX, "--json", "--no-progress", "--timeout", str(timeout),
            "--arp-probes", "0", "--seed", "6"]
    res = lab.run(dev, argv, timeout=timeout + 120, check=False)
    try:
        out = json.loads(res.stdout) if res.stdout.strip() else {}
    except json.JSONDecodeError:
        out = {}
    return res.returncode, out, res.stderr


def run_storm(name: str, lab: Lab, srv: str, dev: str, work: Workload, tmp: Path, *, devices: int,
              concurrency: int, timeout: float, log: Callable[[str], None]) -> StormResult:
    """Start `name` ("ztp" or "dnsmasq"), boot `devices` switches at once, stop it; the agent's summary."""
    result = StormResult(server=name, devices=devices, concurrency=concurrency)
    expected = {sw.mac: hashlib.sha256((work.tftp_root / sw.boot_file).read_bytes()).hexdigest()
                for sw in work.switches[:devices]}
    # The agent adds every leased address to its interface: start each storm from a clean one.
    lab.run(dev, ["ip", "addr", "flush", "dev", "eth0"], check=False)
    if name == "ztp":
        proc = ztp_serve(lab, srv, work, tmp / "storm-ztp.log")
    else:
        log_path = tmp / "storm-dnsmasq.log"
        proc = lab.spawn(srv, ["dnsmasq", "-k", f"--conf-file={dnsmasq_conf(work, tmp, devices)}", "--pid-file="],
                         log=log_path)
        lab.wait_for(lambda: proc.poll() is not None or (lab.udp_listening(srv, 67) and lab.udp_listening(srv, 69)),
                     20, "dnsmasq listening")
        if proc.poll() is not None:
            raise LabError(f"dnsmasq exited: {log_path.read_text()[-1000:]}")
    meter = CpuMeter(proc.pid, f"storm-{name}")
    try:
        cpu0, t0 = meter.seconds(), time.monotonic()
        code, out, err = _agent(lab, dev, devices, concurrency, timeout)
        wall = time.monotonic() - t0
        result.server_cpu_pct = round(100.0 * (meter.seconds() - cpu0) / wall, 1)
    except LabError as exc:
        result.error = str(exc)
        return result
    finally:
        lab.stop(proc)
        meter.close()
    if not out:
        result.error = f"agent exited {code} without JSON: {err.strip()[-500:]}"
        return result
    result.provisioned = int(out.get("provisioned", 0))
    result.failed = int(out.get("failed", devices - result.provisioned))
    result.wall_s = out.get("wall_seconds")
    result.failed_by_stage = out.get("failed_by_stage") or {}
    result.stages = out.get("stages")
    total = (out.get("stages") or {}).get("total") or {}
    result.p50_s, result.p99_s, result.max_s = total.get("p50"), total.get("p99"), total.get("max")
    served = [sum(d["timings"].get(k, 0.0) for k in ("discover_offer", "request_ack", "tftp"))
              for d in out.get("devices", []) if d.get("status") == "provisioned"]
    if served:
        result.served_p50_s = round(percentile(served, 50), 4)
        result.served_p99_s = round(percentile(served, 99), 4)
    devs = out.get("devices", [])
    result.dhcp_retransmits = sum(max(0, d.get("discovers", 0) - 1) + max(0, d.get("requests", 0) - 1) for d in devs)
    result.tftp_retransmits = sum(d.get("tftp_retransmits", 0) for d in devs)
    result.wrong_config = sum(1 for d in out.get("devices", [])
                              if d.get("status") == "provisioned" and d.get("sha256") != expected.get(d.get("mac")))
    log(f"  {name:<8} {result.provisioned}/{devices} provisioned, {result.failed} failed, "
        f"{result.wrong_config} wrong configs, wall {result.wall_s}s, p50 {result.p50_s}s p99 {result.p99_s}s, "
        f"server cpu {result.server_cpu_pct}%")
    return result


