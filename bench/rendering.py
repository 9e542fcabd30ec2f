"""Rendering and memory: configs/s for the 48-port template, and ztp serve's RSS holding 50,000 leases."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bench.procstat import rss_kib
from bench.servers import ztp_serve
from bench.workload import POOL_FIRST, Workload
from ztp.config import load_config
from ztp.lab import Lab
from ztp.leases.store import LeaseWriter, database_path
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.provision import device_view
from ztp.render import Renderer


@dataclass(slots=True)
class RenderResult:
    """How fast ztp renders the 48-port config, in this (benchmark) process, one core."""

    configs_per_s: float
    ms_per_config: float
    bytes_per_config: int
    rendered: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(slots=True)
class MemoryResult:
    """ztp serve's resident memory with an empty database and with `leases` rows loaded."""

    leases: int
    rss_empty_mib: float
    rss_loaded_mib: float
    bytes_per_lease: float
    load_s: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def render_rate(work: Workload, *, seconds: float) -> RenderResult:
    """Render the inventory's switches round-robin for about `seconds` (template cache warm, as in serve)."""
    config = load_config(work.config)
    renderer = Renderer(config)
    table = LeaseTable()
    views = [device_view(config, table, device=d, mac=None) for d in config.inventory.devices]
    size = len(renderer.render(views[0]))
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for view in views[:100]:
            renderer.render(view)
        n += min(100, len(views))
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    return RenderResult(configs_per_s=round(n / elapsed, 1), ms_per_config=round(1000 * elapsed / n, 3),
                        bytes_per_config=size, rendered=n, seconds=round(elapsed, 2))


def write_leases(state_dir: Path, count: int) -> None:
    """`count` bound leases in ztp's database (what a hall of that many booted devices leaves behind)."""
    now = time.time()
    first = int(IPv4Address(POOL_FIRST))
    leases = []
    for i in range(count):
        mac = (0x02AA00000000 + i).to_bytes(6, "big").hex(":")
        leases.append(Lease(ip=IPv4Address(first + i), client=mac, mac=mac, state=LeaseState.BOUND,
                            expires=now + 86400, updated=now, hostname=None))
    writer = LeaseWriter(database_path(state_dir))
    try:
        writer.write_all(leases)
    finally:
        writer.close()


def serve_rss(lab: Lab, srv: str, work: Workload, tmp: Path, *, leases: int,
              log: Callable[[str], None]) -> MemoryResult:
    """VmRSS of `ztp serve` after start-up, first with an empty database, then with `leases` rows."""
    proc = ztp_serve(lab, srv, work, tmp / "rss-empty.log")
    time.sleep(1.0)
    empty = rss_kib(proc.pid)
    lab.stop(proc)
    work.reset_state()
    write_leases(work.state_dir, leases)
    t0 = time.monotonic()
    proc = ztp_serve(lab, srv, work, tmp / "rss-loaded.log", fresh=False)
    load_s = time.monotonic() - t0
    time.sleep(1.0)
    loaded = rss_kib(proc.pid)
    lab.stop(proc)
    work.reset_state()
    result = MemoryResult(leases=leases, rss_empty_mib=round(empty / 1024, 1), rss_loaded_mib=round(loaded / 1024, 1),
                          bytes_per_lease=round((loaded - empty) * 1024 / leases, 1), load_s=round(load_s, 2))
    log(f"  ztp serve RSS: empty {result.rss_empty_mib} MiB, {leases} leases {result.rss_loaded_mib} MiB "
        f"({result.bytes_per_lease} B/lease), start-up with them {result.load_s}s")
    return result
