"""DORA/s with the lease store on PostgreSQL (issue 13) next to SQLite.

Relayed (perfdhcp as a relay, unicast, 50,000 clients, as in bench/dhcp.py): one appliance on SQLite, one on
PostgreSQL, and two appliances sharing one PostgreSQL and one pool with disjoint clients (each driven by its
own perfdhcp at half the rate: they race for every address in the same order, and perfdhcp never retries a
lost one). On one segment (perfdhcp broadcasting, as devices do): one appliance on PostgreSQL, and two that
both answer every DISCOVER. A rate passes when under 1 % of DISCOVERs end without an ACK. PostgreSQL is a
throwaway cluster on a unix socket (tests/pgcluster.py), fsync on, synchronous_commit on.

    sudo .venv/bin/python -m bench.shared_store [--seconds 5] [--rates 500,1000,2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    """Run the three rows and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="500,1000,1500,2000,3000")
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    bindir = postgres_bin()
    if bindir is None:
        print("bench.shared_store: needs PostgreSQL (apt-get install postgresql)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="ztpbench-pg-"))
    work = prepare(tmp / "work", devices=50)
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
                    run = measure(lab, pairs, configs, rate, args.seconds, tmp, target=target)
                    rows[name].append(run)
                    print(f"{name:<52} {rate:>6}/s  acks {run.acks:>7}  fail {run.fail_pct:6.2f}%  "
                          f"{'ok' if run.fail_pct < 1.0 else 'FAIL'}", flush=True)
                    if run.fail_pct >= 1.0:
                        break
    finally:
        cluster.stop()
    print("\n| lease store | max DORA/s passed (of " + ", ".join(map(str, rates)) + ") |\n|---|---|")
    for name, runs in rows.items():
        passed = [r.rate for r in runs if r.fail_pct < 1.0]
        print(f"| {name} | {max(passed) if passed else '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
