"""TFTP section: one 32 MiB file at several blksizes (and windowsize 16), and 500 concurrent 8 KiB fetches.

Clients are C programs, the same for every server: curl (``--tftp-blksize``; ``-Z`` for the parallel burst)
and atftp (``--option "windowsize 16"``, RFC 7440). Every 32 MiB download is checked by size and sha256;
a server that does not know windowsize answers without it and the transfer runs lock-step.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.procstat import CpuMeter, pin
from bench.workload import BIG_FILE, BIG_SIZE, SERVER_IP
from ztp.agent.fleet import percentile
from ztp.lab import Lab

MIB = 1024 * 1024


@dataclass(slots=True)
class Fetch:
    """One single-stream download of the 32 MiB file."""

    client: str  # "curl" or "atftp"
    blksize: int
    windowsize: int  # 1 = lock-step (not asked for)
    seconds: float = 0.0
    mib_s: float = 0.0
    ok: bool = False
    server_cpu_pct: float = 0.0
    # Server CPU (user + system, with forked children) per DATA block: on a shared, loaded machine a steadier
    # measure of the server's own cost than MiB/s, which also counts the client and the neighbours.
    server_cpu_us_per_block: float = 0.0
    note: str = ""

    @property
    def key(self) -> str:
        """Column name in the table, e.g. ``b1468`` or ``b1468w16``."""
        return f"b{self.blksize}" + (f"w{self.windowsize}" if self.windowsize > 1 else "")


@dataclass(slots=True)
class Burst:
    """N simultaneous fetches of different ~8 KiB configs from one curl process (-Z)."""

    clients: int
    ok: int = 0
    wall_s: float = 0.0
    p50_s: float | None = None
    p95_s: float | None = None
    max_s: float | None = None
    server_cpu_pct: float = 0.0
    bytes_ok: bool = False
    note: str = ""


@dataclass(slots=True)
class TftpResult:
    """One server's TFTP results."""

    server: str
    fetches: list[Fetch] = field(default_factory=list)
    burst: Burst | None = None
    error: str | None = None

    def mib_s(self, key: str) -> float | None:
        """MiB/s for a column key (None when not measured or failed)."""
        for f in self.fetches:
            if f.key == key and f.ok:
                return f.mib_s
        return None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"server": self.server, "error": self.error, "fetches": [asdict(f) for f in self.fetches],
                "burst": asdict(self.burst) if self.burst else None}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_big(lab: Lab, cli: str, meter: CpuMeter, out: Path, expect_sha: str, *, client: str, blksize: int,
              windowsize: int = 1, timeout: float = 150, client_cpu: int | None = None) -> Fetch:
    """Download the 32 MiB file once; MiB/s from the wall time of the client process, bound to `client_cpu`
    when given."""
    f = Fetch(client=client, blksize=blksize, windowsize=windowsize)
    out.unlink(missing_ok=True)
    pinned = [] if client_cpu is None else ["taskset", "-c", str(client_cpu)]
    if client == "curl":
        argv = ["curl", "-s", "-S", "--tftp-blksize", str(blksize), "-o", str(out),
                f"tftp://{SERVER_IP}/{BIG_FILE}"]
    else:
        argv = ["atftp", "--option", f"blksize {blksize}", "--option", "tsize 0"]
        if windowsize > 1:
            argv += ["--option", f"windowsize {windowsize}"]
        argv += ["-g", "-r", BIG_FILE, "-l", str(out), SERVER_IP]
    cpu0, t0 = meter.seconds(), time.monotonic()
    try:
        res = lab.run(cli, [*pinned, *argv], timeout=timeout, check=False)
        code, err = res.returncode, (res.stderr or res.stdout)[-300:]
    except Exception as exc:  # noqa: BLE001 - a hung client is a failed fetch, not a failed bench
        code, err = -1, str(exc)
    f.seconds = round(time.monotonic() - t0, 3)
    time.sleep(0.2)  # a forking server reaps its child; its CPU then shows in cutime/cstime
    cpu = meter.seconds() - cpu0
    f.server_cpu_pct = round(100.0 * cpu / max(f.seconds, 1e-6), 1)
    f.server_cpu_us_per_block = round(cpu / (BIG_SIZE // blksize + 1) * 1e6, 2)
    size = out.stat().st_size if out.exists() else 0
    if code != 0:
        f.note = f"{client} exited {code}: {err.strip()}"
    elif size != BIG_SIZE or _sha256(out) != expect_sha:
        f.note = f"wrong content: {size} bytes"
    else:
        f.ok = True
        f.mib_s = round(BIG_SIZE / MIB / f.seconds, 2)
    out.unlink(missing_ok=True)
    return f


def burst(lab: Lab, cli: str, meter: CpuMeter, names: list[str], expect_size: Callable[[str], int], *,
          timeout: float = 60) -> Burst:
    """All `names` at once from one curl (-Z, all transfers started immediately; default blksize 512)."""
    b = Burst(clients=len(names))
    argv = ["curl", "-s", "-Z", "--parallel-max", str(len(names)), "--parallel-immediate", "--max-time", "30",
            "-w", "%{time_total} %{size_download} %{exitcode} %{url}\\n"]
    for name in names:
        argv += ["-o", "/dev/null", f"tftp://{SERVER_IP}/{name}"]
    cpu0, t0 = meter.seconds(), time.monotonic()
    try:
        res = lab.run(cli, argv, timeout=timeout, check=False)
        out = res.stdout
    except Exception as exc:  # noqa: BLE001
        out, b.note = "", str(exc)
    b.wall_s = round(time.monotonic() - t0, 3)
    time.sleep(0.2)
    b.server_cpu_pct = round(100.0 * (meter.seconds() - cpu0) / max(b.wall_s, 1e-6), 1)
    times: list[float] = []
    sizes_ok = True
    for line in out.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        t, size, code, url = float(parts[0]), int(parts[1]), int(parts[2]), parts[3]
        if code == 0:
            times.append(t)
            if size != expect_size(url.rsplit("/", 1)[-1]):
                sizes_ok = False
    b.ok = len(times)
    b.bytes_ok = sizes_ok and b.ok == len(names)
    if times:
        b.p50_s = round(percentile(times, 50), 4)
        b.p95_s = round(percentile(times, 95), 4)
        b.max_s = round(max(times), 4)
    if b.ok < len(names) and not b.note:
        b.note = f"{len(names) - b.ok} transfers failed"
    return b


FETCH_PLAN: list[tuple[str, int, int]] = [
    ("curl", 512, 1), ("curl", 1468, 1), ("curl", 65464, 1), ("atftp", 1468, 1), ("atftp", 1468, 16),
]
"""(client, blksize, windowsize) per single-stream fetch; atftp 1468 without and with windowsize 16."""

QUICK_PLAN: list[tuple[str, int, int]] = [
    ("curl", 512, 1), ("curl", 1468, 1), ("curl", 65464, 1), ("atftp", 1468, 1), ("atftp", 1468, 16),
]
"""The same streams as FETCH_PLAN (every blksize issue 14 holds lock-step to), each fetched once."""


@dataclass(slots=True)
class Served:
    """A TFTP server under test: its name, the namespace its client runs in, its CPU meter."""

    name: str
    cli: str
    meter: CpuMeter


def turns(names: list[str], repeats: int) -> list[str]:
    """The order in which the servers are asked for one stream: every server once per repeat, the order reversed
    on every other repeat (ABBA), so a neighbour's burst on a shared machine lands on each server alike."""
    order: list[str] = []
    for r in range(repeats):
        order += names if r % 2 == 0 else names[::-1]
    return order


def typical(fetches: list[Fetch]) -> Fetch:
    """The median good fetch by MiB/s (the lower of the middle two of an even count), else the first.

    Not the fastest: on two cores a lock-step stream is bimodal, a quarter or more faster now and then when the
    scheduler happens to put client and server on one core (2026-12-04 17:21: tftpd-hpa 17.95, 22.96, 18.00
    MiB/s at curl 1468, dnsmasq 17.88, 26.38, 18.40), and the best of a few runs measured that luck."""
    good = sorted((f for f in fetches if f.ok), key=lambda f: f.mib_s)
    return good[(len(good) - 1) // 2] if good else fetches[0]


def cpus_for_streams() -> tuple[set[int], int] | None:
    """(the server's cores, the client's core) for the single streams: the last core for the client, the rest
    for the server, as if on two machines, every server alike; None on a single core."""
    cores = sorted(os.sched_getaffinity(0))
    return (set(cores[:-1]), cores[-1]) if len(cores) > 1 else None


def measure(lab: Lab, served: list[Served], work_dl: Path, expect_sha: str, names: list[str],
            expect_size: Callable[[str], int], *, plan: list[tuple[str, int, int]], repeats: int,
            split: tuple[set[int], int] | None, log: Callable[[str], None]) -> list[TftpResult]:
    """Every server's single-stream fetches, the servers taking turns stream by stream (`turns`; the median
    of `repeats` each, `typical`), then each server's burst. During the single streams each server runs on
    `split`'s cores and its client on its last one (`cpus_for_streams`; None: unbound); the bursts run
    unbound."""
    results = {s.name: TftpResult(server=s.name) for s in served}
    by_name = {s.name: s for s in served}
    everywhere = os.sched_getaffinity(0)
    if split is not None:
        for s in served:
            pin(s.meter.pid, split[0])
    for client, blksize, window in plan:
        tries: dict[str, list[Fetch]] = {s.name: [] for s in served}
        for name in turns(list(by_name), repeats):
            s = by_name[name]
            tries[name].append(fetch_big(lab, s.cli, s.meter, work_dl / f"{name}.bin", expect_sha, client=client,
                                         blksize=blksize, windowsize=window,
                                         client_cpu=None if split is None else split[1]))
        for name, fetches in tries.items():
            f = typical(fetches)
            results[name].fetches.append(f)
            log(f"  {name:<10} {client:<5} blksize {blksize:<5} window {window:<2} "
                f"{f.mib_s:7.2f} MiB/s  cpu {f.server_cpu_pct:5.1f}% {f.server_cpu_us_per_block:6.2f} us/block  "
                f"{'ok' if f.ok else 'FAIL ' + f.note}  (all: {', '.join(f'{t.mib_s:.2f}' for t in fetches)})")
    for s in served:
        pin(s.meter.pid, everywhere)
    for s in served:
        b = results[s.name].burst = burst(lab, s.cli, s.meter, names, expect_size)
        log(f"  {s.name:<10} burst {b.clients}: ok {b.ok}  wall {b.wall_s:.2f}s  p50 {b.p50_s}  p95 {b.p95_s}  "
            f"max {b.max_s}  bytes {'ok' if b.bytes_ok else 'WRONG'} {b.note}")
    return list(results.values())
