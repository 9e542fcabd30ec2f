"""HTTP boot next to TFTP on the same `ztp serve` (issue 12): 500 simultaneous config fetches (wall time,
p50/p95) and the 32 MiB image over HTTP vs TFTP windowsize 16.

    sudo .venv/bin/python -m bench.http_boot [--burst 500] [--repeats 3] [--out FILE.json]

Same workload and namespaces as `make bench` (bench.workload, ztp.lab): one server namespace running
`ztp serve` with `http:` on port 80, one client namespace. Clients are C programs for both protocols: curl
(``-Z`` for the burst: HTTP ``/configs/<name>.cfg`` vs ``tftp://.../<name>.cfg``, blksize 512 by default)
and, for the image, curl over HTTP vs atftp with windowsize 16 (RFC 7440). Every download is checked.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import servers, tftp
from bench.procstat import CpuMeter
from bench.workload import BIG_FILE, BIG_SIZE, CLIENT_IP, PREFIX, SERVER_IP, prepare
from ztp.agent.fleet import percentile
from ztp.lab import Lab, require_root


def http_burst(lab: Lab, cli: str, meter: CpuMeter, names: list[str], size: int) -> tftp.Burst:
    """All `names` at once over HTTP from one curl (-Z, all transfers started immediately)."""
    b = tftp.Burst(clients=len(names))
    argv = ["curl", "-s", "-Z", "--parallel-max", str(len(names)), "--parallel-immediate", "--max-time", "30",
            "-w", "%{time_total} %{size_download} %{http_code} %{url}\\n"]
    for name in names:
        argv += ["-o", "/dev/null", f"http://{SERVER_IP}/configs/{name}"]
    cpu0, t0 = meter.seconds(), time.monotonic()
    out = lab.run(cli, argv, timeout=60, check=False).stdout
    b.wall_s = round(time.monotonic() - t0, 3)
    time.sleep(0.2)
    b.server_cpu_pct = round(100.0 * (meter.seconds() - cpu0) / max(b.wall_s, 1e-6), 1)
    times = []
    sizes_ok = True
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] == "200":
            times.append(float(parts[0]))
            sizes_ok &= abs(int(parts[1]) - size) < 64  # configs differ by a few bytes between devices
    b.ok = len(times)
    b.bytes_ok = sizes_ok and b.ok == len(names)
    if times:
        b.p50_s, b.p95_s, b.max_s = (round(percentile(times, 50), 4), round(percentile(times, 95), 4),
                                     round(max(times), 4))
    return b


def http_big(lab: Lab, cli: str, meter: CpuMeter, out: Path, expect_sha: str) -> tftp.Fetch:
    """The 32 MiB file once over HTTP (`/files/...`, streamed by pread on the server)."""
    f = tftp.Fetch(client="curl-http", blksize=0, windowsize=1)
    out.unlink(missing_ok=True)
    cpu0, t0 = meter.seconds(), time.monotonic()
    res = lab.run(cli, ["curl", "-s", "-S", "-o", str(out), f"http://{SERVER_IP}/files/{BIG_FILE}"], timeout=150,
                  check=False)
    f.seconds = round(time.monotonic() - t0, 3)
    time.sleep(0.2)
    f.server_cpu_pct = round(100.0 * (meter.seconds() - cpu0) / max(f.seconds, 1e-6), 1)
    if res.returncode == 0 and out.stat().st_size == BIG_SIZE and tftp._sha256(out) == expect_sha:
        f.ok, f.mib_s = True, round(BIG_SIZE / tftp.MIB / f.seconds, 2)
    else:
        f.note = f"curl exited {res.returncode}: {res.stderr[-200:]}"
    out.unlink(missing_ok=True)
    return f


def run(burst_n: int, repeats: int) -> dict[str, Any]:
    """Measure; returns the JSON-ready results."""
    with tempfile.TemporaryDirectory(prefix="ztp-bench-http-") as tmpdir, Lab() as lab:
        tmp = Path(tmpdir)
        work = prepare(tmp / "work", devices=burst_n)
        work.config.write_text(work.config.read_text() + "http:\n  port: 80\n")
        srv, cli = lab.ns("srv"), lab.ns("cli")
        lab.link(srv, servers.SERVER_IF, cli, "eth0", addr_a=f"{SERVER_IP}/{PREFIX}", addr_b=f"{CLIENT_IP}/{PREFIX}")
        proc = servers.ztp_serve(lab, srv, work, tmp / "ztp.log")
        try:
            lab.wait_for(lambda: "0.0.0.0:80" in lab.run(srv, ["ss", "-tln"]).stdout or
                         f"{SERVER_IP}:80" in lab.run(srv, ["ss", "-tln"]).stdout, 10, "http listening")
            meter = CpuMeter(proc.pid, "ztp-http")
            names = [f"{sw.hostname}.cfg" for sw in work.switches[:burst_n]]
            results: dict[str, Any] = {"burst": burst_n, "http_burst": [], "tftp_burst": [], "http_big": [],
                                       "tftp_big_w16": []}
            for _ in range(repeats):
                results["http_burst"].append(asdict(http_burst(lab, cli, meter, names, work.config_bytes)))
                results["tftp_burst"].append(asdict(tftp.burst(lab, cli, meter, names,
                                                               lambda n: work.config_bytes)))
                results["http_big"].append(asdict(http_big(lab, cli, meter, tmp / "big.http", work.big_sha256)))
                results["tftp_big_w16"].append(asdict(tftp.fetch_big(lab, cli, meter, tmp / "big.tftp",
                                                                     work.big_sha256, client="atftp",
                                                                     blksize=1468, windowsize=16)))
            meter.close()
        finally:
            lab.stop(proc)
    return results


def summary(results: dict[str, Any]) -> str:
    """One Markdown table: best of the repeats (noise only ever slows a run down)."""
    def best(rows: list[dict[str, Any]], key: str, low: bool = True) -> dict[str, Any]:
        good = [r for r in rows if r.get(key) is not None] or rows
        return sorted(good, key=lambda r: r.get(key) or 0, reverse=not low)[0]

    hb, tb = best(results["http_burst"], "wall_s"), best(results["tftp_burst"], "wall_s")
    hg, tg = best(results["http_big"], "mib_s", low=False), best(results["tftp_big_w16"], "mib_s", low=False)
    n = results["burst"]
    return "\n".join([
        "| measurement | HTTP | TFTP |", "|---|---|---|",
        f"| {n} simultaneous config fetches: ok | {hb['ok']}/{n} | {tb['ok']}/{n} |",
        f"| wall time (s) | {hb['wall_s']} | {tb['wall_s']} |",
        f"| per-fetch p50 / p95 (s) | {hb['p50_s']} / {hb['p95_s']} | {tb['p50_s']} / {tb['p95_s']} |",
        f"| server CPU during the burst | {hb['server_cpu_pct']} % | {tb['server_cpu_pct']} % |",
        f"| 32 MiB image (MiB/s; TFTP = atftp blksize 1468 windowsize 16) | {hg['mib_s']} | {tg['mib_s']} |",
        f"| server CPU during the image | {hg['server_cpu_pct']} % | {tg['server_cpu_pct']} % |",
    ])


def main(argv: list[str] | None = None) -> int:
    """Run the HTTP-vs-TFTP measurement and print its table."""
    parser = argparse.ArgumentParser(prog="python -m bench.http_boot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    require_root()
    results = run(args.burst, args.repeats)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
