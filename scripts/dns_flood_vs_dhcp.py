"""Measure DHCP DORA with perfdhcp, without and then with a concurrent DNS query flood (issue 5).

    sudo .venv/bin/python scripts/dns_flood_vs_dhcp.py [--rate 1000] [--seconds 8] [--dns-rate 3000]

Each run starts a fresh `ztp serve` (DNS on, a /16 with a large pool) in a namespace `srv`, linked directly
(s1 <-> eth0) to a namespace `cli` where perfdhcp runs; for the second run a paced UDP sender in `cli`
also sends DNS queries (names in the zone, NXDOMAINs, PTRs, names outside it) to the appliance. Prints
perfdhcp's DISCOVER-OFFER and REQUEST-ACK statistics for both runs side by side. It measures only: the
numbers depend on the machine (perfdhcp, the sender and the server share its cores).

Everything runs inside namespaces this script creates; nothing touches the host's network.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.appliance import write_config  # noqa: E402
from ztp.lab import Lab, require_root  # noqa: E402

SERVER = "10.60.0.1"

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


def config(tmp: Path) -> Path:
    """The test config with DNS on, the segment widened to a /16 so the pool outlasts the run."""
    cfg = write_config(tmp, dns=True)
    text = cfg.read_text().replace("10.60.0.0/24", "10.60.0.0/16")
    cfg.write_text(text.replace("10.60.0.100-10.60.0.199", "10.60.1.0-10.60.250.255"))
    return cfg


def stats(out: str) -> dict[str, dict[str, str]]:
    """perfdhcp's per-exchange statistics: {"DISCOVER-OFFER": {"sent packets": "8000", ...}, ...}."""
    result: dict[str, dict[str, str]] = {}
    for block in re.split(r"\*+Statistics for: ", out)[1:]:
        exchange = block.split("*", 1)[0].strip()
        fields = dict(re.findall(r"^([a-z][a-z ()]+?): ([^\n]+)$", block, re.M))
        result[exchange] = fields
    return result


def run(rate: int, seconds: int, dns_rate: int) -> dict[str, object]:
    """One measurement: a fresh server, perfdhcp, and a DNS flood alongside when `dns_rate` > 0."""
    with tempfile.TemporaryDirectory(prefix="ztp-dnsflood-") as tmpdir, Lab() as lab:
        tmp = Path(tmpdir)
        cfg = config(tmp)
        srv, cli = lab.ns("srv"), lab.ns("cli")
        lab.link(srv, "s1", cli, "eth0", addr_a=f"{SERVER}/16", addr_b="10.60.0.2/16")
        server = lab.spawn(srv, [sys.executable, "-m", "ztp", "serve", "--config", str(cfg), "--log-level",
                                 "warning"], log=tmp / "serve.log", env={"PYTHONPATH": str(REPO)})
        lab.wait_for(lambda: lab.udp_listening(srv, 67) and lab.udp_listening(srv, 53), 20, "ztp serve listening")
        flood = None
        if dns_rate > 0:
            flood = lab.spawn(cli, [sys.executable, "-c", FLOOD, str(dns_rate), str(seconds + 1), SERVER],
                              log=tmp / "flood.log")
        res = lab.run(cli, ["perfdhcp", "-4", "-r", str(rate), "-R", "20000", "-p", str(seconds), "-l", "eth0",
                            SERVER], timeout=seconds + 60, check=False)
        flood_out = ""
        if flood is not None:
            flood.wait(timeout=seconds + 30)
            lab.stop(flood)
            flood_out = (tmp / "flood.log").read_text().strip()
        lab.stop(server)
        return {"stats": stats(res.stdout), "flood": flood_out, "raw": res.stdout}


def main(argv: list[str] | None = None) -> int:
    """Run the baseline and the flooded measurement; print both."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="perfdhcp exchanges per second (-r)")
    parser.add_argument("--seconds", type=int, default=8, help="perfdhcp test period (-p)")
    parser.add_argument("--dns-rate", type=int, default=3000, help="DNS queries per second during the flood")
    parser.add_argument("--raw", action="store_true", help="also print perfdhcp's full output")
    args = parser.parse_args(argv)
    require_root()
    runs = {"baseline": run(args.rate, args.seconds, 0),
            f"dns flood {args.dns_rate} q/s": run(args.rate, args.seconds, args.dns_rate)}
    keys = ("sent packets", "received packets", "drops", "drops ratio", "min delay", "avg delay", "max delay",
            "std deviation")
    for label, result in runs.items():
        print(f"== {label}" + (f" ({result['flood']})" if result["flood"] else ""))
        stats_by_exchange = result["stats"]
        assert isinstance(stats_by_exchange, dict)
        if not stats_by_exchange:
            print("   perfdhcp printed no statistics:\n" + str(result["raw"]))
        for exchange, fields in stats_by_exchange.items():
            print(f"   {exchange}: " + ", ".join(f"{k} {fields[k]}" for k in keys if k in fields))
        if args.raw:
            print(result["raw"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
