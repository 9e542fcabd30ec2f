"""Instructions per DORA in the DHCP decision path, counted by callgrind: exact and repeatable, where CPU time
on a shared 2-core machine moves by 10 % from one run to the next (issue 14).

    python -m bench.instructions [--compiled DIR] [--direct]

The decision path is what the server does between a datagram and the bytes of its reply: `parse`,
`Chain.handle`, `Ledger.commit` (no store: the lease applied at once) and `build`, for DORAs of new clients
with 1,000 leases in the table, relayed as perfdhcp sends them (`--direct`: broadcast on the server's own
segment). With `--compiled DIR` (a copy built by scripts/compile.py) callgrind counts only inside those four
compiled functions (`--toggle-collect`); for the pure build, which has no C functions to name, it counts the
whole process, the harness included. Either way two runs (500 and 1,500 DORAs) are subtracted, so start-up
and configuration loading cancel out. Needs valgrind; about a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from ipaddress import IPv4Address
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DECISION_PATH = ("CPyDef_packet___parse", "CPyDef_chain___Chain___handle", "CPyDef_ledger___Ledger___commit",
                 "CPyDef_packet___build")
RELAY = IPv4Address("10.64.0.2")
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


def _request(xid: int, chaddr: bytes, relayed: bool, options: list[tuple[int, bytes]]) -> bytes:
    """A BOOTREQUEST built here, not by ztp's codec (whose build() is part of what is counted)."""
    giaddr = RELAY.packed if relayed else bytes(4)
    head = _HEADER.pack(1, 1, 6, 1 if relayed else 0, xid, 0, 0, bytes(4), bytes(4), bytes(4), giaddr,
                        chaddr.ljust(16, b"\0"), b"", b"")
    body = b"".join(bytes((code, len(value))) + value for code, value in options)
    return head + b"\x63\x82\x53\x63" + body + b"\xff"


def child(count: int, relayed: bool) -> None:
    """Decide `count` DORAs (the measured process)."""
    from bench.chain import _PRL, NOW, SERVER, _mac, _setup, _table
    from ztp.config import load_config
    from ztp.dhcp.chain import Chain
    from ztp.dhcp.exchange import Ingress
    from ztp.dhcp.packet import ZERO_IP, build, parse
    from ztp.leases.ledger import Ledger

    if expected := os.environ.get("ZTP_EXPECT_COMPILED"):  # the build _count meant to measure
        import ztp
        assert ztp.build() == ("compiled" if expected == "1" else "pure Python"), ztp.build()
    with tempfile.TemporaryDirectory(prefix="ztp-instr-") as tmp:
        config = load_config(_setup(Path(tmp)))  # read whole at load: the directory can go
    ledger = Ledger(_table(1000))
    chain = Chain(config, ledger)
    ingress = Ingress(ifindex=2, ifname="bench0", server_ip=SERVER, local_ips=frozenset({SERVER}),
                      broadcast=not relayed, peer=RELAY if relayed else ZERO_IP)
    chaddrs = [bytes.fromhex(_mac(3 << 30 | i).replace(":", "")) for i in range(count)]
    discovers = [_request(i, chaddrs[i], relayed, [(53, b"\x01"), (55, _PRL)]) for i in range(count)]

    def decide(raw: bytes) -> bytes:
        proposal = chain.handle(parse(raw), ingress, NOW)
        if proposal.change is not None:
            ledger.commit(proposal.change, lambda error: None)
        assert proposal.reply is not None, proposal.log_format
        return build(proposal.reply)

    for i, raw in enumerate(discovers):
        offer = decide(raw)
        yiaddr = offer[16:20]
        decide(_request(i, chaddrs[i], relayed, [(53, b"\x03"), (50, yiaddr), (54, SERVER.packed), (55, _PRL)]))


def _count(count: int, relayed: bool, compiled: Path | None) -> int:
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    if compiled is not None:
        argv += [f"--toggle-collect={name}" for name in DECISION_PATH]
    argv += [sys.executable, "-m", "bench.instructions", "--child", str(count)]
    if not relayed:
        argv.append("--direct")
    path = [str(compiled)] if compiled is not None else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(ROOT)]),
           "ZTP_EXPECT_COMPILED": "1" if compiled is not None else "0"}
    # Not run from the checkout: `-m` puts the working directory first on sys.path, before the compiled copy.
    res = subprocess.run(argv, cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True, check=False)
    m = re.search(r"Collected : (\d+)", res.stderr)
    if res.returncode != 0 or m is None:
        raise SystemExit(f"valgrind failed ({res.returncode}): {res.stderr[-2000:]}")
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compiled", type=Path, help="a compiled copy (scripts/compile.py DIR); default: pure")
    ap.add_argument("--direct", action="store_true", help="broadcast DORAs on the server's segment, not relayed")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        child(args.child, not args.direct)
        return 0
    if shutil.which("valgrind") is None:
        print("bench.instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    low, high = (_count(n, not args.direct, args.compiled) for n in (500, 1500))
    what = "decision path (parse, Chain.handle, Ledger.commit, build)" if args.compiled else "whole process"
    build = f"compiled ({args.compiled})" if args.compiled else "pure Python"
    print(f"{build}, {'direct' if args.direct else 'relayed'} DORAs: {(high - low) / 1000:,.0f} instructions "
          f"per DORA, {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
