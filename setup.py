"""ztp's build. A wheel (`pip install .`, and the containers' wheel from scripts/build-wheels.sh) has the DHCP
server's per-packet path compiled by mypyc from the same typed source (issue 14); the .py files ship either
way, and Python imports a compiled module in preference to its source. buildsys/ztp_backend.py gives the
isolated build what mypyc needs (mypy, the stubs, ztp's dependencies) and keeps editable installs pure.

    ZTP_COMPILE unset   compile if it can; if mypyc or the C compiler fails, warn and build the pure package
    ZTP_COMPILE=1       compile, or fail the build (never quietly the slow one)
    ZTP_COMPILE=0       pure Python: no compiler, no mypy

`scripts/compile.py DIR` builds a compiled copy of the package into DIR for the tests and `make bench`.
"""

from __future__ import annotations

import os
import sys
from glob import glob
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import BaseError, CCompilerError

HERE = os.path.dirname(os.path.abspath(__file__))
# What runs on the event loop for every DHCP packet: the codec, the handler chain and its handlers, the lease
# ledger and table, the rate limiters, the server's shell, the lease writer's loop side (with its frames),
# the boot file name, the interface table, the timeline recorder's classification and its state machine.
# Everything else stays interpreted (a class a test patches cannot be compiled: its methods are read-only).
HOT = sorted([
    "ztp/bounded.py", "ztp/ratelimit.py", "ztp/ipkey.py",
    "ztp/dhcp/chain.py", "ztp/dhcp/exchange.py", "ztp/dhcp/fit.py", "ztp/dhcp/options.py", "ztp/dhcp/packet.py",
    "ztp/dhcp/relayinfo.py", "ztp/dhcp/reply.py", "ztp/dhcp/server.py",
    "ztp/leases/ledger.py", "ztp/leases/table.py", "ztp/leases/store/sqlite.py", "ztp/frames.py",
    "ztp/devices.py", "ztp/net/sockets.py",
    "ztp/tftp/content.py", "ztp/tftp/packet.py", "ztp/tftp/session.py", "ztp/tftp/server.py",
    "ztp/timeline/machine.py", "ztp/timeline/recorder.py", "ztp/timeline/sources.py",
    *(os.path.relpath(path, HERE) for path in glob(os.path.join(HERE, "ztp/dhcp/handlers/*.py"))
      if not path.endswith("__init__.py")),
])


def warn(message: str) -> None:
    print(f"ztp build: WARNING: {message}; building the pure-Python package (same behaviour, slower DHCP)",
          file=sys.stderr)


def ext_modules() -> list[Any]:
    mode = os.environ.get("ZTP_COMPILE", "")
    if mode == "0" or sys.argv[1:2] in (["egg_info"], ["dist_info"], ["sdist"]):
        return []  # pure, or only the metadata (which the compiled modules do not change): mypyc once per build
    try:
        from mypyc.build import mypycify

        return mypycify(HOT, opt_level="3")
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error
        if mode == "1":
            raise  # an explicit request that cannot be met fails the build, loudly
        warn(f"mypyc could not compile {len(HOT)} modules ({type(exc).__name__}: {exc})")
        return []


class OptionalBuildExt(build_ext):
    """Compile the extensions; unless ZTP_COMPILE=1, a C compiler that fails leaves the package pure. A
    half-built set is removed: a module's compiled shim without mypyc's shared library would not import, and
    Python does not fall back to the .py beside it."""

    def run(self) -> None:
        try:
            super().run()
        except (CCompilerError, BaseError, OSError) as exc:
            if os.environ.get("ZTP_COMPILE") == "1":
                raise
            for ext in self.extensions:
                path = self.get_ext_fullpath(ext.name)  # in the source tree when --inplace
                if os.path.exists(path):
                    os.remove(path)
            self.extensions = []
            warn(f"the C compiler failed ({type(exc).__name__}: {exc})")


if __name__ == "__main__":
    setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
