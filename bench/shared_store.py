"""DORA/s with the lease store on PostgreSQL (issue 13) next to SQLite.

Relayed (perfdhcp as a relay, unicast, 50,000 clients, as in bench/dhcp.py): one appliance on SQLite, one on
PostgreSQL, and two appliances sharing one PostgreSQL and one pool with disjoint clients (each driven by its
own perfdhcp at half the rate: they race for every address in the same order, and perfdhcp never retries a
lost one). On one segment (perfdhcp broadcasting, as devices do): one appliance on PostgreSQL, and two that
both answer every DISCOVER. A rate passes when under 1 % of DISCOVERs end without an ACK. PostgreSQL is a
throwaway cluster on a unix socket (tests/pgcluster.py), fsync on, synchronous_commit on. Then the boot
storm (`ztp agent --count N`, the workload's switches with their reserved addresses and pre-rendered
configs, as bench/storm.py) on one segment against one appliance on PostgreSQL and against two.

    sudo .venv/bin/python -m bench.shared_store [--seconds 5] [--rates 500,1000,2000] [--storm 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import servers
from bench.dhcp import CLIENT_IF, CLIENTS, RateRun, _fill, parse_perfdhcp
from bench.workload import CLIENT_IP, PREFIX, SERVER_IP, Workload, prepare
from tests.pgcluster import PgCluster, postgres_bin
from ztp.lab import Lab


def _pg_config(work: Workload, dsn: str, name: str) -> Path:
    text = work.config.read_text().replace(f"state_dir: {work.state_dir}",
                                           f"state_dir: {work.state_dir}-{name}\nstate:\n  backend: postgresql\n"
                                           f"  dsn: \"{dsn}\"")
    path = work.root / f"ztp-pg-{name}.yaml"
    path.write_text(text)
    return path


def _perfdhcp(lab: Lab, cli: str, rate: int, seconds: float, base_mac: str, target: str) -> subprocess.Popen[str]:
    argv = ["ip", "netns", "exec", cli, "perfdhcp", "-4", "-g", "single", "-l", CLIENT_IF, "-r", str(rate),
            "-p", str(int(seconds)), "-n", str(int(rate * seconds)), "-R", str(CLIENTS), "-W", "1000000",
            "-b", f"mac={base_mac}", target]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def measure(lab: Lab, pairs: list[tuple[str, str]], configs: list[Path], rate: int, seconds: float,
            tmp: Path, *, target: str = SERVER_IP) -> RateRun:
    """Start one `ztp serve` per (server ns, client ns) pair and drive each client ns at rate/(client
    namespaces) (one perfdhcp per distinct client ns), then stop them."""
    procs = []
    total = RateRun(rate=rate, seconds=seconds)
    try:
        for (srv, _), cfg in zip(pairs, configs, strict=True):
            proc = lab.spawn(srv, [*servers.ZTP, "serve", "--config", str(cfg), "--log-level", "warning"],
                             log=tmp / f"{srv}.log", env={"PYTHONUNBUFFERED": "1"})
            procs.append(proc)
            lab.wait_for(lambda p=proc, n=srv: p.poll() is not None or lab.udp_listening(n, 67), 30, "ztp serve")
        time.sleep(0.3)
        clients = list(dict.fromkeys(cli for _, cli in pairs))
        drivers = [_perfdhcp(lab, cli, rate // len(clients), seconds, f"02:{i:02x}:00:00:00:00", target)
                   for i, cli in enumerate(clients, start=1)]
        for driver in drivers:
            out, _ = driver.communicate(timeout=seconds + 60)
            run = RateRun(rate=rate // len(clients), seconds=seconds)
            _fill(run, parse_perfdhcp(out))
            total.discovers += run.discovers
            total.acks += run.acks
        if total.discovers:
            total.fail_pct = round(100.0 * (total.discovers - total.acks) / total.discovers, 3)
        total.dora_s = round(total.acks / seconds, 1)
    finally:
        for proc in procs:
            lab.stop(proc)
    return total


def storm(work: Workload, cluster: PgCluster, tmp: Path, devices: int,
          log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """The boot storm (`ztp agent --count devices`, as bench/storm.py) on one segment against one appliance
    on PostgreSQL and against two sharing one PostgreSQL: one row per layout (provisioned, wall time, devices
    per second, addresses granted twice, configs not the expected bytes: the workload's pre-rendered ones)."""
    from bench.storm import _agent
    from ztp.lab import ensure_neighbour_capacity
    from ztp.leases.store.postgres import upgrade

    ensure_neighbour_capacity(4 * devices)
    expected = {sw.mac: sw.boot_file for sw in work.switches[:devices]}
    rows: list[dict[str, Any]] = []
    with Lab() as lab:
        seg, dev = lab.segment("seg"), lab.ns("dev")
        lab.attach(seg, dev, "eth0")
        sa, sb = lab.ns("srvsa"), lab.ns("srvsb")
        lab.attach(seg, sa, servers.SERVER_IF, addr=f"{SERVER_IP}/{PREFIX}")
        lab.attach(seg, sb, servers.SERVER_IF, addr="10.60.0.3/16")
        for label, nss in (("boot storm: ztp, PostgreSQL", [sa]), ("boot storm: 2 x ztp, one PostgreSQL", [sa, sb])):
            dsn = cluster.database()
            upgrade(dsn)
            procs = []
            lab.run(dev, ["ip", "addr", "flush", "dev", "eth0"], check=False)
            row: dict[str, Any] = {"layout": label, "devices": devices}
            try:
                for ns, name in zip(nss, "ab", strict=False):
                    cfg = _pg_config(work, dsn, f"storm-{name}")
                    proc = lab.spawn(ns, [*servers.ZTP, "serve", "--config", str(cfg), "--log-level", "warning"],
                                     log=tmp / f"storm-{name}.log", env={"PYTHONUNBUFFERED": "1"})
                    procs.append(proc)
                    lab.wait_for(lambda p=proc, n=ns: p.poll() is not None or (lab.udp_listening(n, 67) and
                                                                                lab.udp_listening(n, 69)),
                                 30, "ztp serve")
                time.sleep(0.3)
                code, out, err = _agent(lab, dev, devices, 200, 60)
            finally:
                for proc in procs:
                    lab.stop(proc)
            if not out:
                row["error"] = f"agent exited {code} without JSON: {err.strip()[-300:]}"
            else:
                done = [d for d in out.get("devices", []) if d.get("status") == "provisioned"]
                ips = [d["ip"] for d in done]
                sha = {mac: hashlib.sha256((work.tftp_root / name).read_bytes()).hexdigest()
                       for mac, name in expected.items()}
                row.update(provisioned=len(done), failed=int(out.get("failed", 0)), wall_s=out.get("wall_seconds"),
                           per_s=out.get("rate_per_second"), granted_twice=len(ips) - len(set(ips)),
                           wrong_config=sum(1 for d in done if d.get("sha256") != sha.get(d["mac"])),
                           servers=len({d.get("server_id") for d in done}))
            log(f"  {label:<52} {row}")
            rows.append(row)
    return rows


QUICK_RATES = [500, 1000, 1500]
STORM_DEVICES, QUICK_STORM_DEVICES = 1000, 300
RATES = [500, 1000, 1500, 2000, 3000]


def run(rates: list[int], seconds: float, log: Callable[[str], None] = print,
        storm_devices: int = 0) -> list[dict[str, Any]] | str:
    """Every layout swept over `rates` (each stops at its first failing rate): one dict per layout with the
    highest rate passed and each run, then with `storm_devices` one per boot-storm layout (:func:`storm`); or
    why it could not run (no PostgreSQL, no perfdhcp)."""
    bindir = postgres_bin()
    if bindir is None:
        return "needs PostgreSQL (apt-get install postgresql)"
    if shutil.which("perfdhcp") is None:
        return "needs perfdhcp (kea-admin / isc-kea-perfdhcp)"
    tmp = Path(tempfile.mkdtemp(prefix="ztpbench-pg-"))
    work = prepare(tmp / "work", devices=max(50, storm_devices))
    cluster = PgCluster(bindir)
    cluster.start()
    rows: dict[str, list[RateRun]] = {}
    try:
        with Lab() as lab:
            def pair(tag: str) -> tuple[str, str]:
                srv, cli = lab.ns(f"srv{tag}"), lab.ns(f"cli{tag}")
                lab.link(srv, servers.SERVER_IF, cli, "eth0", addr_a=f"{SERVER_IP}/{PREFIX}",
                         addr_b=f"{CLIENT_IP}/{PREFIX}")
                return srv, cli

            one, two = pair("a"), pair("b")
            seg, cli = lab.segment("seg"), lab.ns("clis")
            lab.attach(seg, cli, "eth0", addr=f"{CLIENT_IP}/{PREFIX}")
            sa, sb = lab.ns("srvsa"), lab.ns("srvsb")
            lab.attach(seg, sa, servers.SERVER_IF, addr=f"{SERVER_IP}/{PREFIX}")
            lab.attach(seg, sb, servers.SERVER_IF, addr="10.60.0.3/16")
            layouts = {"relayed: ztp, SQLite": [one], "relayed: ztp, PostgreSQL": [one],
                       "relayed: 2 x ztp, one PostgreSQL, disjoint clients": [one, two],
                       "one segment: ztp, PostgreSQL": [(sa, cli)],
                       "one segment: 2 x ztp, one PostgreSQL": [(sa, cli), (sb, cli)]}
            for name, pairs in layouts.items():
                rows[name] = []
                for rate in rates:
                    if "SQLite" in name:
                        work.reset_state()
                        configs = [work.config]
                    else:
                        from ztp.leases.store.postgres import upgrade

                        dsn = cluster.database()
                        upgrade(dsn)
                        configs = [_pg_config(work, dsn, n) for n in ("a", "b")[:len(pairs)]]
                    target = "all" if name.startswith("one segment") else SERVER_IP
                    result = measure(lab, pairs, configs, rate, seconds, tmp, target=target)
                    rows[name].append(result)
                    log(f"  {name:<52} {rate:>6}/s  acks {result.acks:>7}  fail {result.fail_pct:6.2f}%  "
                        f"{'ok' if result.fail_pct < 1.0 else 'FAIL'}")
                    if result.fail_pct >= 1.0:
                        break
        storms = storm(work, cluster, tmp, storm_devices, log) if storm_devices else []
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out: list[dict[str, Any]] = []
    for name, runs in rows.items():
        passed = [r.rate for r in runs if r.fail_pct < 1.0]
        out.append({"layout": name, "max_dora_s": max(passed) if passed else None, "seconds": seconds,
                    "runs": [{"rate": r.rate, "acks": r.acks, "fail_pct": r.fail_pct} for r in runs]})
    return out + storms


def summary(rows: list[dict[str, Any]] | str) -> str:
    """The Markdown table of `run`'s result (make bench's shared-store section)."""
    if isinstance(rows, str):
        return f"**Shared lease store**: not measured: {rows}"
    storms = [row for row in rows if "devices" in row]
    rows = [row for row in rows if "runs" in row]
    tried = sorted({r["rate"] for row in rows for r in row["runs"]})
    lines = ["**Shared lease store** (perfdhcp, highest rate with under 1 % of exchanges lost, of "
             + ", ".join(map(str, tried)) + " DORA/s)", "", "| lease store | max DORA/s passed |", "|---|---|"]
    lines += [f"| {row['layout']} | {row['max_dora_s'] or '-'} |" for row in rows]
    if storms:
        lines += ["", f"**Boot storm against the shared store** (`ztp agent --count {storms[0]['devices']}`, one "
                  "segment, each switch its reserved address and own config)", "",
                  "| layout | provisioned | wall s | devices/s | appliances granting | "
                  "granted twice | wrong configs |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['layout']} | {r.get('provisioned', '-')}/{r['devices']} | {r.get('wall_s', '-')} | "
                  f"{r.get('per_s', '-')} | {r.get('servers', '-')} | {r.get('granted_twice', '-')} | "
                  f"{r.get('wrong_config', r.get('error', '-'))} |" for r in storms]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the layouts and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--storm", type=int, default=STORM_DEVICES, help="boot-storm devices (0: none)")
    args = parser.parse_args(argv)
    rows = run([int(r) for r in args.rates.split(",")], args.seconds, log=lambda text: print(text, flush=True),
               storm_devices=args.storm)
    print("\n" + summary(rows))
    return 1 if isinstance(rows, str) else 0


if __name__ == "__main__":
    sys.exit(main())
