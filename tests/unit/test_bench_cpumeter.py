"""make bench's CpuMeter counts what a server's processes use, including those it started before the meter
was set up (ztp's lease writer): real processes in a cpuacct cgroup, root only."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.procstat import _CPUACCT, CpuMeter, descendants
from tests.conftest import skip_or_fail

_BURN = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n"
# A parent that starts a child and waits: the child burns CPU once told to (a line on its stdin).
_CHILD = "import sys\nsys.stdin.readline()\n" + _BURN
_PARENT = (f"import subprocess, sys\nchild = subprocess.Popen([sys.executable, '-c', {_CHILD!r}], stdin=sys.stdin)\n"
           "print(child.pid, flush=True)\nchild.wait()\n")


def test_the_meter_counts_a_child_started_before_it() -> None:
    if os.geteuid() != 0 or not os.path.isdir(_CPUACCT):
        skip_or_fail("needs root and a cgroup v1 cpuacct hierarchy (make bench's CPU meter)")
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    meter = None
    try:
        assert parent.stdout is not None and parent.stdin is not None
        child = int(parent.stdout.readline())
        assert child in descendants(parent.pid)
        meter = CpuMeter(parent.pid, "test")
        before = meter.seconds()
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.wait(timeout=30) == 0
        # The parent itself only waited: the 0.6 s are the child's, started before the meter.
        assert meter.seconds() - before >= 0.5
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if meter is not None:
            meter.close()


def test_descendants_of_a_process_without_children_is_empty() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not os.path.exists(f"/proc/{proc.pid}/task/{proc.pid}/children"):
            time.sleep(0.05)
        assert descendants(proc.pid) == []
        assert proc.pid in descendants(os.getpid())
    finally:
        proc.kill()
        proc.wait()
