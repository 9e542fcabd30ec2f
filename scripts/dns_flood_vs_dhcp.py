"""Measure DHCP DORA with perfdhcp, without and then with a concurrent DNS query flood (issue 5).

    sudo .venv/bin/python scripts/dns_flood_vs_dhcp.py [--rate 1000] [--seconds 8] [--dns-rate 3000]
                                                        [--repeat 3] [--rate-limit Q]

Each run starts a fresh `ztp serve` (DNS on, a /16 with a large pool) in a namespace `srv`, linked directly
(s1 <-> eth0) to a namespace `cli` where perfdhcp runs; for the second run a paced UDP sender in `cli`
also sends DNS queries (names in the zone, NXDOMAINs, PTRs, names outside it) to the appliance from one
address. In both runs a well-behaved DNS client on a second address of `cli` asks 20 questions per second
and reports how many were answered and how fast. Prints perfdhcp's DISCOVER-OFFER and REQUEST-ACK
statistics, the server's CPU time and both DNS clients' results; `--repeat` alternates baseline and
flood runs. `--rate-limit` sets `dns.rate_limit` (omit it to keep the default, e.g. to measure an older
tree whose config has no such key). It measures only: the numbers depend on the machine. By default the
server is pinned to CPU 0 and perfdhcp and both DNS clients to CPU 1 (`--no-pin` to let them float), so
that the flood's sender, which would be another machine on a real network, cannot take the server's CPU:
what is measured is what the flood costs the server itself.

Everything runs inside namespaces this script creates; nothing touches the host's network.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.appliance import write_config  # noqa: E402
from ztp.lab import Lab, require_root  # noqa: E402

SERVER = "10.60.0.1"
CLIENT = "10.60.0.2"  # perfdhcp and the flood
PROBE = "10.60.0.3"  # the well-behaved DNS client

# Paced sender: a mix of the queries an operator's tools and devices make, at `rate` per second for
# `seconds`; counts the replies it reads back. Prints "sent N replies M".
FLOOD = r"""
import random, socket, struct, sys, time
rate, seconds, server = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
random.seed(1)

def query(name, qtype):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", random.getrandbits(16), 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)

names = [("leaf01.lab.test", 1), ("ztp.lab.test", 1), ("11.0.60.10.in-addr.arpa", 12), ("example.com", 1)]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
sent = replies = 0
start = time.monotonic()
total = int(rate * seconds)
while sent < total:
    name, qtype = names[sent % len(names)] if sent % 5 else (f"nx{sent}.lab.test", 1)
    s.sendto(query(name, qtype), (server, 53))
    sent += 1
    while True:
        try:
            s.recv(4096)
            replies += 1
        except BlockingIOError:
            break
    delay = start + sent / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
end = time.monotonic() + 1
while time.monotonic() < end:
    try:
        s.recv(4096)
        replies += 1
    except BlockingIOError:
        time.sleep(0.01)
print(f"sent {sent} replies {replies} in {time.monotonic() - start - 1:.1f}s")
"""

# A polite DNS client from its own address: 20 questions/s, each waited for (up to 1 s) before the next
# is due. Prints "answered N/M, max latency X ms".
PROBE_CLIENT = r"""
import socket, struct, sys, time
seconds, server, source = float(sys.argv[1]), sys.argv[2], sys.argv[3]
q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\x06leaf01\x03lab\x04test\x00\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((source, 0))
s.settimeout(1.0)
sent = answered = 0
worst = 0.0
start = time.monotonic()
while time.monotonic() - start < seconds:
    t0 = time.monotonic()
    s.sendto(q, (server, 53))
    sent += 1
    try:
        while s.recv(4096)[:2] != q[:2]:
            pass
        answered += 1
        worst = max(worst, time.monotonic() - t0)
    except TimeoutError:
        pass
    time.sleep(max(0.0, start + sent / 20 - time.monotonic()))
print(f"answered {answered}/{sent}, max latency {worst * 1000:.1f} ms")
"""


def config(tmp: Path, rate_limit: float | None) -> Path:
    """The test config with DNS on, the segment widened to a /16 so the pool outlasts the run."""
    extra = "" if rate_limit is None else f"  rate_limit: {rate_limit:g}\n"
    cfg = write_config(tmp, dns=True, config_extra=extra)
    text = cfg.read_text().replace("10.60.0.0/24", "10.60.0.0/16")
    cfg.write_text(text.replace("10.60.0.100-10.60.0.199", "10.60.1.0-10.60.250.255"))
    return cfg


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stats(out: str) -> dict[str, dict[str, str]]:
    """perfdhcp's per-exchange statistics: {"DISCOVER-OFFER": {"sent packets": "8000", ...}, ...}."""
    result: dict[str, dict[str, str]] = {}
    for block in re.split(r"\*+Statistics for: ", out)[1:]:
        exchange = block.split("*", 1)[0].strip()
        fields = dict(re.findall(r"^([a-z][a-z ()]+?): ([^\n]+)$", block, re.M))
        result[exchange] = fields
    return result


def run(rate: int, seconds: int, dns_rate: int, rate_limit: float | None, pin: bool) -> dict[str, object]:
    """One measurement: a fresh server, perfdhcp, and a DNS flood alongside when `dns_rate` > 0."""
    server_cpu, peer_cpu = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if pin else ([], [])
    with tempfile.TemporaryDirectory(prefix="ztp-dnsflood-") as tmpdir, Lab() as lab:
        tmp = Path(tmpdir)
        cfg = config(tmp, rate_limit)
        srv, cli = lab.ns("srv"), lab.ns("cli")
        lab.link(srv, "s1", cli, "eth0", addr_a=f"{SERVER}/16", addr_b=f"{CLIENT}/16")
        lab.run(cli, ["ip", "addr", "add", f"{PROBE}/16", "dev", "eth0"])
        serve = [sys.executable, "-m", "ztp", "serve", "--config", str(cfg), "--log-level", "warning"]
        server = lab.spawn(srv, [*server_cpu, *serve], log=tmp / "serve.log", env={"PYTHONPATH": str(REPO)})
        lab.wait_for(lambda: lab.udp_listening(srv, 67) and lab.udp_listening(srv, 53), 20, "ztp serve listening")
        # `ip netns exec` and taskset exec the program, so the spawned pid is the server's own.
        cpu_before = cpu_seconds(server.pid)
        probe = lab.spawn(cli, [*peer_cpu, sys.executable, "-c", PROBE_CLIENT, str(seconds), SERVER, PROBE],
                          log=tmp / "probe.log")
        flood = None
        if dns_rate > 0:
            flood_argv = [sys.executable, "-c", FLOOD, str(dns_rate), str(seconds + 1), SERVER]
            flood = lab.spawn(cli, [*peer_cpu, *flood_argv], log=tmp / "flood.log")
        perfdhcp = ["perfdhcp", "-4", "-r", str(rate), "-R", "20000", "-p", str(seconds), "-l", "eth0", SERVER]
        res = lab.run(cli, [*peer_cpu, *perfdhcp], timeout=seconds + 60, check=False)
        cpu = cpu_seconds(server.pid) - cpu_before
        flood_out = ""
        if flood is not None:
            flood.wait(timeout=seconds + 30)
            lab.stop(flood)
            flood_out = (tmp / "flood.log").read_text().strip()
        probe.wait(timeout=seconds + 30)
        lab.stop(probe)
        lab.stop(server)
        return {"stats": stats(res.stdout), "flood": flood_out, "raw": res.stdout, "cpu": cpu,
                "probe": (tmp / "probe.log").read_text().strip()}


def main(argv: list[str] | None = None) -> int:
    """Run the baseline and the flooded measurement; print both."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="perfdhcp exchanges per second (-r)")
    parser.add_argument("--seconds", type=int, default=8, help="perfdhcp test period (-p)")
    parser.add_argument("--dns-rate", type=int, default=3000, help="DNS queries per second during the flood")
    parser.add_argument("--repeat", type=int, default=1, help="baseline/flood pairs, alternated")
    parser.add_argument("--rate-limit", type=float, default=None,
                        help="dns.rate_limit for the server (queries/s per source; 0 = off); default: unset")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin the server to CPU 0 and the peers to CPU 1")
    parser.add_argument("--raw", action="store_true", help="also print perfdhcp's full output")
    args = parser.parse_args(argv)
    require_root()
    keys = ("sent packets", "received packets", "drops", "drops ratio", "min delay", "avg delay", "max delay",
            "std deviation")
    limit = "" if args.rate_limit is None else f", dns.rate_limit {args.rate_limit:g}"
    for i in range(args.repeat):
        for label, dns_rate in (("baseline", 0), (f"dns flood {args.dns_rate} q/s", args.dns_rate)):
            result = run(args.rate, args.seconds, dns_rate, args.rate_limit, args.pin)
            print(f"== [{i + 1}/{args.repeat}] {label}{limit}: server cpu {result['cpu']:.2f} s"
                  + (f"; flood {result['flood']}" if result["flood"] else "") + f"; probe {result['probe']}")
            stats_by_exchange = result["stats"]
            assert isinstance(stats_by_exchange, dict)
            if not stats_by_exchange:
                print("   perfdhcp printed no statistics:\n" + str(result["raw"]))
            for exchange, fields in stats_by_exchange.items():
                print(f"   {exchange}: " + ", ".join(f"{k} {fields[k]}" for k in keys if k in fields))
            if args.raw:
                print(result["raw"])
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
