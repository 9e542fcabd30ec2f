"""The build `pip install .` installs (issue 14), end to end: the integration suite once more, with `ztp` and
every `python -m ztp...` the tests start importing a compiled copy (setup.py's HOT modules by mypyc), as the
unit tests do in tests/unit/test_compiled.py. The unit tests alone missed what only real runs showed: on
uvloop, `remove_reader` returns None where typeshed says bool, a compiled caller checks it, and every
`ztp serve` shutdown failed with a TypeError (exit status 1, the lease writer's final checkpoint skipped)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.compiled import compile_into

ROOT = Path(__file__).resolve().parents[2]
SKIP = {"ztp", "tests", ".git", ".venv", "state", "build", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def test_the_integration_suite_passes_on_the_compiled_build(tmp_path: Path) -> None:
    build = tmp_path / "compiled"
    compile_into(build)
    # A checkout whose `ztp` is the compiled copy: the tests find their data beside them (copied), the servers
    # they start import `ztp` from the working directory or from PYTHONPATH=<this checkout>.
    tree = tmp_path / "checkout"
    tree.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in SKIP and not entry.name.endswith(".egg-info"):
            (tree / entry.name).symlink_to(entry)
    (tree / "ztp").symlink_to(build / "ztp")
    for shared in build.glob("*__mypyc*.so"):  # mypyc's runtime for every compiled module
        (tree / shared.name).symlink_to(shared)
    shutil.copytree(ROOT / "tests", tree / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integration",
                             "--ignore", "tests/integration/test_compiled_build.py"],
                            cwd=tree, env={**os.environ, "ZTP_EXPECT_COMPILED": "1"}, capture_output=True, text=True,
                            timeout=2400)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = result.stdout.splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
