"""What a server process costs, read from /proc: CPU seconds (with reaped children) and resident memory."""

from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime+stime of `pid` (all threads), of its live child processes (ztp's lease writer), and what its
    reaped children used (tftpd-hpa forks per transfer).

    0.0 when the process is gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode()
    except OSError:
        return 0.0
    # Field 2 (comm) may contain spaces: split after its closing parenthesis; utime is field 14.
    fields = raw[raw.rindex(")") + 2:].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / _TICK + sum(cpu_seconds(child) for child in _children(pid))


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    """The live processes `pid` started, and theirs, and so on."""
    out: list[int] = []
    for child in _children(pid):
        out += [child, *descendants(child)]
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB (0 when unknown)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def udp_counters(snmp_text: str) -> dict[str, int]:
    """The `Udp:` row of /proc/net/snmp (as read inside a namespace) as a dict."""
    rows = [line.split() for line in snmp_text.splitlines() if line.startswith("Udp:")]
    if len(rows) < 2:
        return {}
    return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:], strict=False)}


_CPUACCT = "/sys/fs/cgroup/cpuacct"


class CpuMeter:
    """CPU used by a server and everything it forks, from a cpuacct cgroup of its own (cgroup v1).

    tftpd-hpa forks a child per transfer that is not reaped into the parent's cutime, so /proc of the
    listener alone would show ~0 %. Falls back to :func:`cpu_seconds` when no cpuacct hierarchy exists.
    """

    def __init__(self, pid: int, name: str) -> None:
        """Move `pid`, the processes it has already started and so all their future children into a fresh
        cgroup named after `name`. (A process stays in its cgroup when its parent moves: ztp's lease writer,
        started before the server listens, was left out until 2026-12-04: a quarter to a third of ztp's CPU.)"""
        self.pid = pid
        self._dir: str | None = None
        if os.path.isdir(_CPUACCT):
            path = os.path.join(_CPUACCT, f"ztpbench-{os.getpid()}-{name}-{pid}")
            try:
                os.mkdir(path)
                with open(os.path.join(path, "cgroup.procs"), "w") as fh:
                    fh.write(str(pid))
                self._dir = path
                for child in descendants(pid):
                    try:
                        with open(os.path.join(path, "cgroup.procs"), "w") as fh:
                            fh.write(str(child))
                    except OSError:  # exited in between
                        pass
            except OSError:
                self._remove(path)

    def seconds(self) -> float:
        """CPU seconds used so far (cgroup: including exited children)."""
        if self._dir is None:
            return cpu_seconds(self.pid)
        try:
            with open(os.path.join(self._dir, "cpuacct.usage")) as fh:
                return int(fh.read()) / 1e9
        except OSError:
            return 0.0

    def close(self) -> None:
        """Move what is left back to the root cgroup and remove ours (call after stopping the server)."""
        if self._dir is not None:
            self._remove(self._dir)
            self._dir = None

    @staticmethod
    def _remove(path: str) -> None:
        try:
            with open(os.path.join(path, "cgroup.procs")) as fh:
                pids = fh.read().split()
            for p in pids:
                with open(os.path.join(_CPUACCT, "cgroup.procs"), "w") as out:
                    out.write(p)
        except OSError:
            pass
        try:
            os.rmdir(path)
        except OSError:
            pass


def pin(pid: int, cpus: set[int]) -> None:
    """Bind `pid`, every thread of it and its live descendants to `cpus` (what they start later inherits it).
    Threads and processes that end meanwhile are skipped."""
    for proc in (pid, *descendants(pid)):
        try:
            tasks = [int(t) for t in os.listdir(f"/proc/{proc}/task")]
        except OSError:
            continue
        for task in tasks:
            try:
                os.sched_setaffinity(task, cpus)
            except OSError:
                pass
