"""Instructions per DORA in the DHCP decision path, counted by callgrind: exact and repeatable, where CPU time
on a shared 2-core machine moves by 10 % from one run to the next (issue 14).

    python -m bench.instructions [--compiled DIR] [--direct]
    sudo .venv/bin/python -m bench.instructions --server [--compiled DIR]
    sudo .venv/bin/python -m bench.instructions --tftp [--compiled DIR]

The decision path is what the server does between a datagram and the bytes of its reply: `parse`,
`Chain.handle`, `Ledger.commit` (no store: the lease applied at once) and `build`, for DORAs of new clients
with 1,000 leases in the table, relayed as perfdhcp sends them (`--direct`: broadcast on the server's own
segment). With `--compiled DIR` (a copy built by scripts/compile.py) callgrind counts only inside those four
compiled functions (`--toggle-collect`); for the pure build, which has no C functions to name, it counts the
whole process, the harness included. Either way two runs (500 and 1,500 DORAs) are subtracted, so start-up
and configuration loading cancel out. Needs valgrind; about a minute.

`--server` counts a whole `ztp serve` instead: everything its event loop's thread runs (uvloop's callbacks:
the DHCP shell, the decision path, the lease writer's pipe, the device timeline, the garbage collector),
not the kernel, the lease writer process or other threads. perfdhcp drives it at 100 DORA/s through a relay
address in namespaces of a lab (root), 500 then 1,500 DORAs; the second run's count minus the first's, per
DORA. At that rate the timeline records every DORA as it comes (in a storm it yields to the packets and
catches up later). About three minutes.

`--tftp` counts the same thread of a `ztp serve` per lock-step TFTP block: curl fetches files of 1,000 and
3,000 blocks of 512 bytes (root, namespaces), the difference per block.
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.workload import Workload
    from ztp.lab import Lab

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


_LOOP_CALLBACK = "__pyx_f_6uvloop_4loop_6Handle__run"  # every callback `ztp serve`'s uvloop runs
_SERVER_RATE = 100  # DORA/s: what a server under callgrind answers without falling behind


def _count_server(count: int, compiled: Path | None, keep: Path | None = None) -> int:
    """Instructions on `ztp serve`'s event loop thread from start to stop, `count` DORAs in between."""
    from bench import dhcp
    from bench.run import _pair
    from bench.workload import SERVER_IP, prepare
    from ztp.lab import Lab

    with tempfile.TemporaryDirectory(prefix="ztp-instr-") as tmp:
        work = prepare(Path(tmp) / "work", devices=50)
        with Lab() as lab:
            srv, cli = _pair(lab, "cli")
            proc, out = _serve_under_callgrind(lab, srv, work, Path(tmp), compiled, 67)
            seconds = count // _SERVER_RATE
            res = lab.run(cli, ["perfdhcp", "-4", "-g", "single", "-l", "eth0", "-r", str(_SERVER_RATE), "-p",
                                str(seconds + 10), "-n", str(count), "-R", "50000", "-W", "1000000", SERVER_IP],
                          timeout=seconds + 120, check=False)
            lab.stop(proc)
        stats = dhcp.parse_perfdhcp(res.stdout)
        acks = int(stats.get("REQUEST-ACK", {}).get("received packets", 0))
        if acks != count:
            raise SystemExit(f"perfdhcp completed {acks} of {count} DORAs: {res.stdout[-1500:]}")
        return _kept(out, keep, str(count))


def _serve_under_callgrind(lab: Lab, srv: str, work: Workload, tmp: Path, compiled: Path | None,
                           port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """`ztp serve` with `work`'s config under callgrind, counting the event loop's callbacks, listening on
    `port`; the process and where callgrind writes."""
    from bench import servers

    out = tmp / "callgrind.out"
    env = {"PYTHONUNBUFFERED": "1"}
    if compiled is not None:
        env["PYTHONPATH"] = str(compiled)
    version = subprocess.run([*servers.ZTP, "--version"], env={**os.environ, **env}, cwd=tmp,
                             capture_output=True, text=True, check=True).stdout
    if ("(compiled)" in version) != (compiled is not None):
        raise SystemExit(f"not the build to measure: {version.strip()}")
    argv = ["valgrind", "--tool=callgrind", f"--toggle-collect={_LOOP_CALLBACK}", f"--callgrind-out-file={out}",
            *servers.ZTP, "serve", "--config", str(work.config), "--log-level", "warning"]
    proc = lab.spawn(srv, argv, log=tmp / "serve.log", env=env)
    lab.wait_for(lambda: proc.poll() is not None or lab.udp_listening(srv, port), 300, "ztp serve under valgrind")
    if proc.poll() is not None:
        raise SystemExit(f"ztp serve exited {proc.returncode}: {(tmp / 'serve.log').read_text()[-2000:]}")
    return proc, out


def _kept(out: Path, keep: Path | None, name: str) -> int:
    """callgrind's total in `out`, the profile copied to `keep` (for callgrind_annotate) when given."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy2(out, keep / f"callgrind.out.{name}")
    return _total(out)


def _total(out: Path) -> int:
    total = re.search(r"^(?:summary|totals): (\d+)", out.read_text(errors="replace"), re.M)
    if total is None:
        raise SystemExit("callgrind wrote no total")
    return int(total.group(1))


def _count_tftp(blocks: int, compiled: Path | None, keep: Path | None = None) -> int:
    """Instructions on `ztp serve`'s event loop thread from start to stop, one file of `blocks` 512-byte blocks
    fetched lock-step by curl in between."""
    from bench.run import _pair
    from bench.workload import SERVER_IP, prepare
    from ztp.lab import Lab

    with tempfile.TemporaryDirectory(prefix="ztp-instr-") as tmp:
        work = prepare(Path(tmp) / "work", devices=5)
        size = 512 * blocks + 100
        (work.tftp_root / "blocks.bin").write_bytes(os.urandom(size))
        with Lab() as lab:
            srv, cli = _pair(lab, "cli")
            proc, out = _serve_under_callgrind(lab, srv, work, Path(tmp), compiled, 69)
            res = lab.run(cli, ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", "--tftp-blksize", "512",
                                f"tftp://{SERVER_IP}/blocks.bin"], timeout=900, check=False)
            lab.stop(proc)
        if res.stdout.strip() != str(size):
            raise SystemExit(f"curl fetched {res.stdout.strip() or 'nothing'} of {size} bytes: {res.stderr[-500:]}")
        return _kept(out, keep, f"tftp.{blocks}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compiled", type=Path, help="a compiled copy (scripts/compile.py DIR); default: pure")
    ap.add_argument("--direct", action="store_true", help="broadcast DORAs on the server's segment, not relayed")
    ap.add_argument("--server", action="store_true", help="a whole ztp serve's event loop thread (root, perfdhcp)")
    ap.add_argument("--tftp", action="store_true", help="ztp serve's event loop thread per 512-byte TFTP block (root)")
    ap.add_argument("--keep", type=Path, help="with --server or --tftp: keep callgrind's profiles in this directory")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        child(args.child, not args.direct)
        return 0
    if shutil.which("valgrind") is None:
        print("bench.instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    if args.tftp:
        low, high = (_count_tftp(n, args.compiled, args.keep) for n in (1000, 3000))
        build = f"compiled ({args.compiled})" if args.compiled else "pure Python"
        print(f"{build}: {(high - low) / 2000:,.0f} instructions per 512-byte TFTP block on ztp serve's event loop "
              "thread")
        return 0
    if args.server:
        low, high = (_count_server(n, args.compiled, args.keep) for n in (500, 1500))
        build = f"compiled ({args.compiled})" if args.compiled else "pure Python"
        print(f"{build}: {(high - low) / 1000:,.0f} instructions per relayed DORA on ztp serve's event loop thread")
        return 0
    low, high = (_count(n, not args.direct, args.compiled) for n in (500, 1500))
    what = "decision path (parse, Chain.handle, Ledger.commit, build)" if args.compiled else "whole process"
    build = f"compiled ({args.compiled})" if args.compiled else "pure Python"
    print(f"{build}, {'direct' if args.direct else 'relayed'} DORAs: {(high - low) / 1000:,.0f} instructions "
          f"per DORA, {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
