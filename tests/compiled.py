"""The compiled build for the tests that run a suite against it (tests/unit/test_compiled.py,
tests/integration/test_compiled_build.py): scripts/compile.py, which is a script, not a package."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compile_into(dest: Path) -> list[str]:
    """Compile setup.py's HOT modules into a copy of the package in `dest`; the modules compiled."""
    script = runpy.run_path(str(ROOT / "scripts" / "compile.py"), run_name="ztp_compile")
    modules: list[str] = script["compile_into"](dest)
    return modules
