"""ztp's build backend: setuptools' own, plus what the compiled build needs (issue 14).

A wheel (`pip install .`, `pip wheel .`, scripts/build-wheels.sh for the containers) compiles setup.py's HOT
modules with mypyc, unless ZTP_COMPILE=0. mypyc type-checks the whole package before it compiles, so the
isolated build environment gets mypy, the type stubs and ztp's own runtime dependencies (read from
pyproject.toml, not listed twice). An editable install (`pip install -e .`, the development venv of `make`)
stays pure: compiled modules beside their sources would shadow every later edit.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  (build_sdist, prepare_metadata_for_build_wheel, ...)

ROOT = Path(__file__).resolve().parents[1]
COMPILER = ["mypy>=1.10", "types-PyYAML"]


def compile_requires() -> list[str]:
    """What a wheel's build environment needs beyond setuptools: nothing for a pure build (ZTP_COMPILE=0)."""
    if os.environ.get("ZTP_COMPILE") == "0":
        return []
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [*COMPILER, *project["dependencies"]]


@contextmanager
def _pure() -> Iterator[None]:
    before = os.environ.get("ZTP_COMPILE")
    os.environ["ZTP_COMPILE"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["ZTP_COMPILE"]
        else:
            os.environ["ZTP_COMPILE"] = before


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return [*build_meta.get_requires_for_build_wheel(config_settings), *compile_requires()]


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    with _pure():
        return build_meta.get_requires_for_build_editable(config_settings)


def prepare_metadata_for_build_editable(metadata_directory: str,
                                        config_settings: dict[str, Any] | None = None) -> str:
    with _pure():
        return build_meta.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_editable(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                   metadata_directory: str | None = None) -> str:
    with _pure():
        return build_meta.build_editable(wheel_directory, config_settings, metadata_directory)
