"""py-spy on `ztp serve` under perfdhcp load: where the event loop's time goes.

py-spy attaches by pid (the pid namespace is shared with the lab's network namespaces) and samples only
stacks holding the GIL (``--gil``): one core's worth of Python work is the limit of a single-process
server, so that is the time to spend well. :func:`hot_spots` splits the samples between the event loop
and the lease-writer thread and ranks the event loop's functions by self and inclusive share.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PY_SPY = Path(sys.executable).with_name("py-spy")


def py_spy() -> str | None:
    """The py-spy executable (the venv's, else one on PATH), or None."""
    if PY_SPY.exists():
        return str(PY_SPY)
    return shutil.which("py-spy")


def start(pid: int, out: Path, seconds: float, *, rate: int = 250) -> subprocess.Popen[bytes] | None:
    """Sample `pid` for `seconds` into `out` (collapsed stacks, one line per distinct stack)."""
    exe = py_spy()
    if exe is None:
        return None
    argv = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
            "--format", "raw", "--nolineno", "--gil", "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass(frozen=True, slots=True)
class HotSpot:
    """A function's share of the samples: alone at the top of the stack (self) and anywhere in it (total)."""

    function: str
    self_pct: float
    total_pct: float


@dataclass(slots=True)
class Profile:
    """The summary of one py-spy recording."""

    rate: int
    samples: int
    threads: dict[str, float]
    by_self: list[HotSpot]
    by_total: list[HotSpot]
    raw: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"rate": self.rate, "samples": self.samples, "threads": self.threads, "raw": self.raw,
                "by_self": [asdict(h) for h in self.by_self], "by_total": [asdict(h) for h in self.by_total]}


WRITER_FRAME = "LeaseWriter._run"


def hot_spots(collapsed: Path, *, rate: int, top: int = 15) -> Profile:
    """Top event-loop functions (self and inclusive %) from py-spy's raw output, and each thread's share.

    Percentages are of all GIL-holding samples, so the event loop's functions and the writer's share add
    up to 100 %.
    """
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        if any(f.startswith(WRITER_FRAME) for f in frames):
            threads["lease-writer"] += count
            continue
        threads["event loop"] += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            total_counts[frame] += count

    loop_samples = threads["event loop"]
    # Frames on (nearly: 90 %) every event-loop stack (main, asyncio's run loop) say nothing about where time goes.
    frame_of_all = {fn for fn, n in total_counts.items() if n >= 0.9 * loop_samples}
    for fn in frame_of_all:
        del total_counts[fn]

    def spots(counter: Counter[str]) -> list[HotSpot]:
        return [HotSpot(fn, round(100 * self_counts[fn] / samples, 1),
                        round(100 * total_counts.get(fn, loop_samples) / samples, 1))
                for fn, _ in counter.most_common(top)]

    shares = {k: round(100 * v / samples, 1) for k, v in threads.items()} if samples else {}
    return Profile(rate=rate, samples=samples, threads=shares, by_self=spots(self_counts) if samples else [],
                   by_total=spots(total_counts) if samples else [], raw=str(collapsed))
