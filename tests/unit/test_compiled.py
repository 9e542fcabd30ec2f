"""The compiled build (issue 14): setup.py's HOT modules compiled by mypyc from the same source pass the
unit tests, as the pure-Python build (every other test) does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.compiled import compile_into

ROOT = Path(__file__).resolve().parents[2]


def test_the_compiled_build_passes_the_unit_tests(tmp_path: Path) -> None:
    build = tmp_path / "compiled"
    modules = compile_into(build)
    assert "ztp.dhcp.chain" in modules and "ztp.dhcp.handlers.assemble" in modules
    env = {**os.environ, "PYTHONPATH": str(build)}
    # What the compiled copy imports is the extension, not the source beside it.
    loaded = subprocess.run([sys.executable, "-c", f"import importlib; print('\\n'.join(importlib.import_module(m)"
                             f".__file__ for m in {modules!r}))"], cwd=tmp_path, env=env, check=True,
                            capture_output=True, text=True).stdout.split()
    assert len(loaded) == len(modules) and all(path.startswith(str(build)) and path.endswith(".so")
                                               for path in loaded), loaded
    # The unit tests, from the checkout, importing ztp from the compiled copy (pytest puts its `pythonpath`
    # before the current directory).
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                             "-o", f"pythonpath={build}", "--ignore", str(Path(__file__)), "tests/unit"],
                            cwd=ROOT, env={**os.environ, "ZTP_EXPECT_COMPILED": "1"}, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
