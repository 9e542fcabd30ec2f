"""The build (issue 14): a wheel compiles the DHCP hot path, an editable install stays pure, and a machine
that cannot compile still gets a working pure package, with a warning (never a half-built one)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import ztp

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    """This environment without a ZTP_COMPILE of the caller's, plus `extra`."""
    return {**{key: value for key, value in os.environ.items() if key != "ZTP_COMPILE"}, **extra}


def _backend_requires(env: dict[str, str], hook: str) -> str:
    code = f"import ztp_backend; print(ztp_backend.{hook}())"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT / "buildsys")},
                          check=True, capture_output=True, text=True).stdout


def test_a_wheel_build_gets_mypy_and_the_dependencies_to_type_check_against() -> None:
    requires = _backend_requires(_env(), "compile_requires")
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "mypy>=" in requires and "types-PyYAML" in requires
    assert all(repr(dependency) in requires for dependency in dependencies), requires
    assert _backend_requires(_env(ZTP_COMPILE="0"), "compile_requires").strip() == "[]"
    assert "mypy" not in _backend_requires(_env(), "get_requires_for_build_editable")


def test_the_development_install_is_the_pure_build() -> None:
    """`make`'s venv is an editable install: compiled modules beside their sources would shadow every edit."""
    if os.environ.get("ZTP_EXPECT_COMPILED") == "1":
        assert ztp.build() == "compiled"
    else:
        assert ztp.build() == "pure Python"
        assert not list((ROOT / "ztp").rglob("*.so"))


SETUP = """
import os, runpy, sys
from setuptools import Extension, setup
ztp_setup = runpy.run_path({setup!r}, run_name="ztp_setup")
setup(name="probe", ext_modules=[Extension("probe", ["probe.c"])],
      cmdclass={{"build_ext": ztp_setup["OptionalBuildExt"]}}, script_args=["-q", "build_ext", "--inplace"])
print("built:", sorted(name for name in os.listdir(".") if name.endswith(".so")))
"""


@pytest.mark.parametrize("compiler", ["cc", "false"])
def test_a_failing_c_compiler_leaves_a_pure_build_with_a_warning(tmp_path: Path, compiler: str) -> None:
    (tmp_path / "probe.c").write_text('#include <Python.h>\nstatic struct PyModuleDef m = {PyModuleDef_HEAD_INIT, '
                                      '"probe"};\nPyMODINIT_FUNC PyInit_probe(void) { return PyModule_Create(&m); }\n')
    (tmp_path / "build_probe.py").write_text(SETUP.format(setup=str(ROOT / "setup.py")))
    result = subprocess.run([sys.executable, "build_probe.py"], cwd=tmp_path, env=_env(CC=compiler),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if compiler == "cc":
        assert "built: ['probe." in result.stdout and "WARNING" not in result.stderr
    else:
        assert "built: []" in result.stdout, result.stdout
        assert "ztp build: WARNING: the C compiler failed" in result.stderr and "pure-Python" in result.stderr
        # Asked for explicitly, the compiled build fails instead.
        forced = subprocess.run([sys.executable, "build_probe.py"], cwd=tmp_path,
                                env=_env(CC=compiler, ZTP_COMPILE="1"), capture_output=True, text=True,
                                timeout=120)
        assert forced.returncode != 0 and "WARNING" not in forced.stderr


def test_without_mypyc_the_build_is_pure_with_a_warning() -> None:
    code = ("import runpy, sys; sys.modules['mypyc.build'] = None; sys.argv = ['setup.py', 'bdist_wheel'];"
            "print(runpy.run_path('setup.py', run_name='ztp_setup')['ext_modules']())")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
    assert "ztp build: WARNING: mypyc could not compile" in result.stderr
    forced = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(ZTP_COMPILE="1"), capture_output=True,
                            text=True)
    assert forced.returncode != 0 and "ModuleNotFoundError" in forced.stderr and "WARNING" not in forced.stderr
