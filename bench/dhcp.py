"""DHCP section: perfdhcp DORA at stepped rates, then bisection, against each server (fresh database each run).

perfdhcp runs as a relay (unicast to the server with giaddr = its own address), as in the peer baseline:
``perfdhcp -4 -g single -l eth0 -r RATE -p SECONDS -n RATE*SECONDS -R 50000 -W 1000000 SERVER``. A run
passes when fewer than 1 % of the DISCOVERs sent end without an ACK ("incomplete exchanges").
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.procstat import CpuMeter, udp_counters
from ztp.lab import Lab, LabError

CLIENT_IF = "eth0"
CLIENTS = 50_000
PASS_FAIL_PCT = 1.0

ServerStarter = Callable[[Path], "subprocess.Popen[bytes]"]


@dataclass(slots=True)
class RateRun:
    """One perfdhcp invocation at one target rate."""

    rate: int
    seconds: float
    discovers: int = 0
    offers: int = 0
    requests: int = 0
    acks: int = 0
    fail_pct: float = 100.0
    dora_s: float = 0.0
    do_avg_ms: float | None = None
    do_max_ms: float | None = None
    ra_avg_ms: float | None = None
    ra_max_ms: float | None = None
    do_p99_ms: float | None = None  # from perfdhcp's per-exchange timers (-x t)
    ra_p99_ms: float | None = None
    server_cpu_pct: float = 0.0
    rcvbuf_errors: int = 0
    phase: str = "grid"
    note: str = ""

    @property
    def short_pct(self) -> float:
        """How far perfdhcp fell short of the DISCOVERs it was asked to send (`-n`), in percent."""
        asked = int(self.rate * self.seconds)
        return round(100.0 * max(asked - self.discovers, 0) / asked, 3) if asked else 0.0

    @property
    def ok(self) -> bool:
        """Fewer than 1 % of exchanges incomplete, at the rate asked for: a run in which perfdhcp could not
        send 99 % of its DISCOVERs (a client starved of CPU on the shared machine, or held back) did not test
        that rate, whatever it got back. Until 2026-12-04 such runs passed: ztp's compiled rows then claimed
        rates perfdhcp had offered only 94-97 % of."""
        return self.discovers > 0 and self.fail_pct < PASS_FAIL_PCT and self.short_pct < PASS_FAIL_PCT


@dataclass(slots=True)
class DhcpResult:
    """A server's sweep: every run, and the highest rate that passed below the lowest that failed."""

    server: str
    runs: list[RateRun] = field(default_factory=list)
    max_rate: int = 0
    error: str | None = None
    at_80: RateRun | None = None  # one run at 80 % of max_rate: the latency a loaded (not saturated) server gives

    def at_max(self) -> RateRun | None:
        """The passing run at the max sustainable rate (its latency and CPU are what the table shows)."""
        best = [r for r in self.runs if r.ok and r.rate == self.max_rate]
        return best[-1] if best else None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        best = self.at_max()
        return {"server": self.server, "max_sustainable_dora_s": self.max_rate, "error": self.error,
                "at_max": asdict(best) if best else None, "at_80": asdict(self.at_80) if self.at_80 else None,
                "runs": [asdict(r) for r in self.runs]}


_SECTION = re.compile(r"\*\*\*Statistics for: (\S+)\*\*\*")
_TIMERS = re.compile(r"\*\*\*Timestamps for packets: (\S+)\*\*\*")
_SENT_RECEIVED = re.compile(r"sent / received: ([0-9.]+) / ([0-9.]+)")


def _sections(text: str, header: re.Pattern[str]) -> dict[str, list[str]]:
    """perfdhcp's output split into the sections whose `***...***` header line matches `header` (its group 1
    names the exchange); every other `***` line ends a section."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        m = header.search(line)
        if m:
            current = out.setdefault(m.group(1), [])
        elif line.startswith("***"):
            current = None
        elif current is not None:
            current.append(line)
    return out


def parse_timers(text: str) -> dict[str, list[float]]:
    """perfdhcp -x t: every successful exchange's delay in ms, per exchange ("DISCOVER-OFFER", "REQUEST-ACK")."""
    return {name: [(float(m.group(2)) - float(m.group(1))) * 1000
                   for m in map(_SENT_RECEIVED.match, lines) if m]
            for name, lines in _sections(text, _TIMERS).items()}


def percentile(values: list[float], q: float) -> float | None:
    """The `q` quantile (0..1, nearest rank) of `values`; None when empty."""
    if not values:
        return None
    ranked = sorted(values)
    return ranked[min(len(ranked), max(1, math.ceil(q * len(ranked)))) - 1]


def parse_perfdhcp(text: str) -> dict[str, dict[str, float]]:
    """perfdhcp's per-exchange statistics: {"DISCOVER-OFFER": {"sent packets": .., "avg delay": ..}, ...}."""
    out: dict[str, dict[str, float]] = {}
    for name, lines in _sections(text, _SECTION).items():
        current = out[name] = {}
        for line in lines:
            key, colon, value = line.partition(":")
            num = re.match(r"\s*(-?[0-9.]+)", value) if colon else None
            if num:
                try:
                    current[key.strip()] = float(num.group(1))
                except ValueError:
                    pass
    return out


def _fill(run: RateRun, stats: dict[str, dict[str, float]]) -> None:
    do = stats.get("DISCOVER-OFFER", {})
    ra = stats.get("REQUEST-ACK", {})
    run.discovers = int(do.get("sent packets", 0))
    run.offers = int(do.get("received packets", 0))
    run.requests = int(ra.get("sent packets", 0))
    run.acks = int(ra.get("received packets", 0))
    if run.discovers:
        run.fail_pct = round(100.0 * (run.discovers - run.acks) / run.discovers, 3)
    run.dora_s = round(run.acks / run.seconds, 1)
    run.do_avg_ms, run.do_max_ms = do.get("avg delay"), do.get("max delay")
    run.ra_avg_ms, run.ra_max_ms = ra.get("avg delay"), ra.get("max delay")


def _fill_timers(run: RateRun, timers: dict[str, list[float]]) -> None:
    do, ra = percentile(timers.get("DISCOVER-OFFER", []), 0.99), percentile(timers.get("REQUEST-ACK", []), 0.99)
    run.do_p99_ms = round(do, 3) if do is not None else None
    run.ra_p99_ms = round(ra, 3) if ra is not None else None


def _rcvbuf_errors(lab: Lab, ns: str) -> int:
    res = lab.run(ns, ["cat", "/proc/net/snmp"], timeout=5, check=False)
    return udp_counters(res.stdout).get("RcvbufErrors", 0)


def perfdhcp_once(lab: Lab, srv: str, cli: str, server_ip: str, start: ServerStarter, tmp: Path, rate: int,
                  seconds: float, *, phase: str, on_running: Callable[[int], None] | None = None) -> RateRun:
    """Start the server (fresh), drive it at `rate` DORA/s for `seconds`, stop it; measure server CPU."""
    run = RateRun(rate=rate, seconds=seconds, phase=phase)
    proc = start(tmp)
    meter = CpuMeter(proc.pid, "dhcp")
    try:
        time.sleep(0.3)  # let start-up work (imports, database open) finish before the CPU baseline
        errs0 = _rcvbuf_errors(lab, srv)
        cpu0, t0 = meter.seconds(), time.monotonic()
        argv = ["perfdhcp", "-4", "-g", "single", "-l", CLIENT_IF, "-r", str(rate), "-p", str(int(seconds)),
                "-n", str(int(rate * seconds)), "-R", str(CLIENTS), "-W", "1000000", "-x", "t", server_ip]
        if on_running is not None:
            on_running(proc.pid)
        res = lab.run(cli, argv, timeout=seconds + 30, check=False)
        cpu1, t1 = meter.seconds(), time.monotonic()
        run.server_cpu_pct = round(100.0 * (cpu1 - cpu0) / (t1 - t0), 1)
        run.rcvbuf_errors = _rcvbuf_errors(lab, srv) - errs0
        stats = parse_perfdhcp(res.stdout)
        if not stats:
            run.note = f"perfdhcp exited {res.returncode}: {(res.stderr or res.stdout)[-300:]}"
        _fill(run, stats)
        _fill_timers(run, parse_timers(res.stdout))
        if proc.poll() is not None:
            run.note = f"server exited {proc.returncode} during the run"
            run.fail_pct = 100.0
    finally:
        lab.stop(proc)
        meter.close()
    return run


def sweep(name: str, lab: Lab, srv: str, cli: str, server_ip: str, start: ServerStarter, tmp: Path, *,
          grid: list[int], seconds: float, bisect_steps: int, log: Callable[[str], None],
          deadline: float) -> DhcpResult:
    """Stepped rates until the first failure (a near miss is retried once), then bisection between.

    If the lowest grid rate already fails, rates are halved (down to 25/s) to find any passing one.
    `deadline` (monotonic) bounds the whole sweep: no new run starts after it.
    """
    result = DhcpResult(server=name)

    def measure(rate: int, phase: str) -> RateRun:
        run = perfdhcp_once(lab, srv, cli, server_ip, start, tmp, rate, seconds, phase=phase)
        result.runs.append(run)
        log(f"  {name:<8} {rate:>6}/s  acks {run.acks:>7}  fail {run.fail_pct:6.2f}%  short {run.short_pct:5.2f}%  "
            f"cpu {run.server_cpu_pct:5.1f}%  {'ok' if run.ok else 'FAIL'} {run.note}")
        return run

    def passes(rate: int, phase: str) -> bool:
        run = measure(rate, phase)
        if not run.ok and max(run.fail_pct, run.short_pct) < 5.0 and time.monotonic() < deadline:
            # Within a few percent of passing: on 2 shared cores that is as likely a scheduling burst
            # as the server's limit, so it gets a second chance.
            run = measure(rate, phase + "-retry")
        return run.ok

    best, worst = 0, None
    for rate in grid:
        if time.monotonic() > deadline:
            break
        if passes(rate, "grid"):
            best = rate
        else:
            worst = rate
            break
    if best == 0 and worst is not None:
        rate = worst // 2
        while rate >= 25 and time.monotonic() < deadline:
            if passes(rate, "down"):
                best = rate
                break
            worst = rate
            rate //= 2
    if worst is not None and best:
        for _ in range(bisect_steps):
            if time.monotonic() > deadline or worst - best <= max(25, best // 20):
                break
            mid = (best + worst) // 2
            mid -= mid % 25
            if mid <= best:
                break
            if passes(mid, "bisect"):
                best = mid
            else:
                worst = mid
    result.max_rate = best
    if best:  # one more run even past the deadline: a row without its p99 is not comparable
        rate = best * 4 // 5
        result.at_80 = perfdhcp_once(lab, srv, cli, server_ip, start, tmp, rate, seconds, phase="at-80")
        log(f"  {name:<8} {rate:>6}/s (80 % of max)  p99 D-O {result.at_80.do_p99_ms} ms  "
            f"R-A {result.at_80.ra_p99_ms} ms")
    return result


def cpu_per_dora_ms(run: RateRun) -> float | None:
    """Server CPU milliseconds per completed DORA in one run (None when nothing completed)."""
    return 10 * run.server_cpu_pct / run.dora_s if run.dora_s else None


def paired_cpu(lab: Lab, srv: str, cli: str, server_ip: str, starters: dict[str, ServerStarter], tmp: Path, *,
               rates: list[int], seconds: float, rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    """CPU per DORA of two set-ups of one server at the same fixed rates, run alternately (at each rate A B,
    then B A, ...): what the second costs over the first, per DORA.

    A max rate moves with the machine (on this 2-core VM the same build's max swung from 7,500 to 5,750 DORA/s
    within ten minutes), so the ratio of two maxima measured minutes apart says more about the minutes than
    about the builds; CPU per DORA of interleaved runs at a rate both sustain does not drift that way, and
    when the server is CPU-bound its rate scales with its inverse. Every run is kept; the summary is each
    set-up's mean over all its runs and `ratio`, first over second (> 1: the second costs more per DORA).
    """
    names = list(starters)
    runs: dict[str, list[RateRun]] = {name: [] for name in names}
    errors: list[str] = []
    for rate in rates:
        for rnd in range(rounds):
            for name in names if rnd % 2 == 0 else names[::-1]:
                try:
                    run = perfdhcp_once(lab, srv, cli, server_ip, starters[name], tmp, rate, seconds, phase="paired")
                except LabError as exc:  # e.g. a server that did not start: this run is missing, the rest go on
                    log(f"  {name:<8} {rate:>6}/s  not run: {exc}")
                    errors.append(f"{name} at {rate}/s: {exc}")
                    continue
                runs[name].append(run)
                log(f"  {name:<8} {rate:>6}/s  acks {run.acks:>7}  fail {run.fail_pct:6.2f}%  "
                    f"cpu {run.server_cpu_pct:5.1f}%  {_fmt_ms(cpu_per_dora_ms(run))} ms/DORA")
    means: dict[str, float | None] = {}
    for name, done in runs.items():
        costs = [c for c in map(cpu_per_dora_ms, done) if c is not None]
        means[name] = round(sum(costs) / len(costs), 4) if costs else None
    first, second = (means[name] for name in names[:2])
    return {"rates": rates, "rounds": rounds, "seconds": seconds, "order": names,
            "cpu_ms_per_dora": means, "ratio": round(second / first, 3) if first and second else None,
            "errors": errors, "runs": {name: [asdict(r) for r in done] for name, done in runs.items()}}


def _fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
