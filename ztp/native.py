"""`mypyc_attr` for the classes of setup.py's compiled (HOT) modules: mypy's runtime helper where it is
installed (the compiled build), a decorator that changes nothing where it is not (pure Python)."""

from __future__ import annotations

from typing import Any

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # pure Python: the decorator means nothing
    def mypyc_attr(*attrs: str, **kwattrs: object) -> Any:  # type: ignore[misc]
        return lambda cls: cls

__all__ = ["mypyc_attr"]
