"""A fleet of emulated devices booting at once (a boot storm) through one interface.

All devices share one asyncio loop, one AF_PACKET socket (demultiplexed by chaddr) and one
:class:`~ztp.agent.device.InterfaceConfigurator`; `concurrency` bounds how many are mid-flow at a time.
Progress goes to stderr; the summary is a table (or JSON) with per-stage p50/p95/p99/max.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ztp.agent.device import STAGES, AgentOptions, Device, DeviceResult, DeviceSpec, InterfaceConfigurator
from ztp.agent.rawsock import PacketLink

DEFAULT_MAC_PREFIX = "02:5a:54"  # locally administered (RFC 7042 §2.1), "ZT"


def fleet_macs(prefix: str, count: int, start: int = 1) -> list[str]:
    """`count` distinct MACs: `prefix` (1-5 bytes) followed by the device number, big-endian."""
    head = bytes.fromhex(prefix.replace(":", "").replace("-", ""))
    if not 1 <= len(head) <= 5:
        raise ValueError(f"MAC prefix {prefix!r} must be 1 to 5 bytes")
    width = 6 - len(head)
    if start + count - 1 >= 256**width:
        raise ValueError(f"MAC prefix {prefix!r} leaves room for only {256**width - 1} devices")
    return [(head + (start + i).to_bytes(width, "big")).hex(":") for i in range(count)]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of non-empty `values`."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(slots=True)
class FleetSummary:
    """Outcome of a fleet run: counts, failures by stage, and per-stage latency percentiles (seconds)."""

    count: int
    provisioned: int
    failed_by_stage: dict[str, int]
    failed_reasons: dict[str, int]
    stages: dict[str, dict[str, float]]
    wall_seconds: float
    devices: list[DeviceResult] = field(default_factory=list)

    def to_json(self, *, with_devices: bool = True) -> dict[str, Any]:
        """JSON-ready dict; `devices` lists every device's result."""
        out: dict[str, Any] = {
            "count": self.count,
            "provisioned": self.provisioned,
            "failed": self.count - self.provisioned,
            "failed_by_stage": self.failed_by_stage,
            "failed_reasons": self.failed_reasons,
            "stages": self.stages,
            "wall_seconds": round(self.wall_seconds, 3),
            "rate_per_second": round(self.provisioned / self.wall_seconds, 1) if self.wall_seconds else None,
        }
        if with_devices:
            out["devices"] = [d.to_json() for d in self.devices]
        return out

    def table(self) -> str:
        """Human-readable summary table."""
        lines = [
            f"devices {self.count}  provisioned {self.provisioned}  failed {self.count - self.provisioned}  "
            f"wall {self.wall_seconds:.2f}s  ({self.provisioned / self.wall_seconds if self.wall_seconds else 0:.1f}"
            f" devices/s)",
        ]
        for stage, n in sorted(self.failed_by_stage.items()):
            lines.append(f"  failed at {stage:<12} {n}")
        for reason, n in sorted(self.failed_reasons.items(), key=lambda kv: -kv[1])[:5]:
            lines.append(f"    {n} x {reason}")
        lines.append(f"{'stage':<16}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        for stage, st in self.stages.items():
            lines.append(f"{stage:<16}{int(st['n']):>6}{st['p50'] * 1e3:>10.1f}{st['p95'] * 1e3:>10.1f}"
                         f"{st['p99'] * 1e3:>10.1f}{st['max'] * 1e3:>10.1f}")
        return "\n".join(lines)


def summarize(results: Sequence[DeviceResult], wall: float) -> FleetSummary:
    """Aggregate device results into a :class:`FleetSummary`."""
    stages: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        values = [r.timings[stage] for r in results if r.provisioned and stage in r.timings]
        if values:
            stages[stage] = {"n": float(len(values)), "p50": percentile(values, 50),
                             "p95": percentile(values, 95), "p99": percentile(values, 99), "max": max(values)}
    failed = [r for r in results if not r.provisioned]
    by_stage = Counter(r.stage or "unknown" for r in failed)
    reasons = Counter(_reason_class(r.reason or "") for r in failed)
    return FleetSummary(count=len(results), provisioned=len(results) - len(failed),
                        failed_by_stage=dict(by_stage), failed_reasons=dict(reasons),
                        stages=stages, wall_seconds=wall, devices=list(results))


def _reason_class(reason: str) -> str:
    # Strip the per-device numbers so identical failures group together.
    return "".join("#" if c.isdigit() else c for c in reason)[:100]


class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal, a line every few s otherwise)."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        """Track `total` devices."""
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.done = 0
        self.failed = 0
        self.active = 0
        self._tty = self.stream.isatty()
        self._last = 0.0
        self._start = time.monotonic()

    def update(self, *, force: bool = False) -> None:
        """Redraw if due."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self._tty else 5.0):
            return
        self._last = now
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        text = (f"[{bar}] {self.done}/{self.total} ok={self.done - self.failed} failed={self.failed} "
                f"active={self.active} {now - self._start:.1f}s")
        if self._tty:
            self.stream.write("\r" + text + ("\n" if force else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


async def run_fleet(specs: Sequence[DeviceSpec], opts: AgentOptions, *, concurrency: int,
                    link: PacketLink, host: InterfaceConfigurator, stop: asyncio.Event | None = None,
                    progress: Progress | None = None, seed: int | None = None,
                    on_result: Callable[[DeviceResult], None] | None = None) -> FleetSummary:
    """Boot every device in `specs`, at most `concurrency` at a time; returns the summary."""
    stop = stop or asyncio.Event()
    rng = random.Random(seed)
    sem = asyncio.Semaphore(max(1, concurrency))
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(spec: DeviceSpec) -> DeviceResult:
        async with sem:
            if progress:
                progress.active += 1
            device = Device(spec, link, host, opts, random.Random(rng.getrandbits(64)))
            try:
                res = await device.run(stop)
            finally:
                if progress:
                    progress.active -= 1
        if progress:
            progress.done += 1
            progress.failed += not res.provisioned
            progress.update()
        if on_result:
            on_result(res)
        return res

    results = await asyncio.gather(*(one(s) for s in specs))
    if progress:
        progress.update(force=True)
    return summarize(results, loop.time() - start)
