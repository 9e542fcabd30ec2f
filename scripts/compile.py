"""Build a compiled copy of ztp into DIR (setup.py's HOT modules by mypyc, the rest as source):

    .venv/bin/python scripts/compile.py DIR    # then PYTHONPATH=DIR python -m ztp ...

For the tests of the compiled build (tests/unit/test_compiled.py) and `make bench`'s compiled row, without
touching the source tree: an editable install's compiled modules would shadow every later edit of their
source.
"""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compile_into(dest: Path) -> list[str]:
    """Copy the package and setup.py into `dest` and compile the HOT modules there; the modules compiled."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "ztp", dest / "ztp", ignore=shutil.ignore_patterns("__pycache__", "*.so"),
                    dirs_exist_ok=True)
    shutil.copy2(ROOT / "setup.py", dest / "setup.py")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest, check=True,
                   env={**os.environ, "ZTP_COMPILE": "1"}, stdout=subprocess.DEVNULL)
    hot: list[str] = runpy.run_path(str(dest / "setup.py"), run_name="ztp_setup")["HOT"]
    return [path[:-3].replace("/", ".") for path in hot]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    modules = compile_into(Path(sys.argv[1]).resolve())
    print(f"compiled {len(modules)} modules into {sys.argv[1]}")
