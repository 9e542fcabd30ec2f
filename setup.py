"""ztp's build. Pure Python by default; with ``ZTP_COMPILE=1`` the DHCP server's per-packet path is also
compiled by mypyc from the same typed source (issue 14): the .py files ship either way, and Python imports
a compiled module in preference to its source. Without ZTP_COMPILE the build is the pure one and needs no
compiler; with it, a build that cannot compile fails instead of quietly installing the pure one.

    pip install . mypy types-PyYAML setuptools wheel   # the dependencies (mypyc type-checks against them)
    ZTP_COMPILE=1 pip install --no-build-isolation --force-reinstall --no-deps .   # gcc, Python headers

(`--no-build-isolation`: mypyc comes from the environment's mypy; the project metadata is in pyproject.toml.)
`scripts/compile.py DIR` builds a compiled copy of the package into DIR for the tests and `make bench`.
"""

from __future__ import annotations

import os
from glob import glob

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
# What runs on the event loop for every DHCP packet: the codec, the handler chain and its handlers, the lease
# ledger and table, the rate limiters, the server's shell, the lease writer's loop side (with its frames),
# the boot file name, the interface table and the timeline recorder's classification. Everything else stays
# interpreted (a class a test patches cannot be compiled: its methods are read-only).
HOT = sorted([
    "ztp/bounded.py", "ztp/ratelimit.py",
    "ztp/dhcp/chain.py", "ztp/dhcp/exchange.py", "ztp/dhcp/fit.py", "ztp/dhcp/options.py", "ztp/dhcp/packet.py",
    "ztp/dhcp/relayinfo.py", "ztp/dhcp/reply.py", "ztp/dhcp/server.py",
    "ztp/leases/ledger.py", "ztp/leases/table.py", "ztp/leases/store/sqlite.py", "ztp/frames.py",
    "ztp/devices.py", "ztp/net/sockets.py",
    "ztp/timeline/recorder.py", "ztp/timeline/sources.py",
    *(os.path.relpath(path, HERE) for path in glob(os.path.join(HERE, "ztp/dhcp/handlers/*.py"))
      if not path.endswith("__init__.py")),
])


def ext_modules() -> list[object]:
    if os.environ.get("ZTP_COMPILE") != "1":
        return []
    from mypyc.build import mypycify  # an explicit request that cannot be met fails the build, loudly

    return mypycify(HOT, opt_level="3")


if __name__ == "__main__":
    setup(ext_modules=ext_modules())
