"""Read-only containers for inventory values: what a template is handed cannot change the inventory.

They print, compare and serialise exactly like ``dict`` and ``list`` (so a rendered config does not change),
but every method that would change them raises ``TypeError``. The template sandboxes also refuse those
methods; this is the second wall, for code that does not go through a sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__} is read-only: inventory values cannot be changed")


class FrozenDict(dict[str, Any]):
    """A ``dict`` whose contents cannot change."""

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        # copy/pickle would otherwise rebuild the dict item by item through __setitem__.
        return (type(self), (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self


class FrozenList(list[Any]):
    """A ``list`` whose contents cannot change."""

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = remove = pop = clear = sort = reverse = _refuse

    def __reduce__(self) -> tuple[type[FrozenList], tuple[list[Any]]]:
        return (type(self), (list(self),))

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenList:
        return self



_LEAVES = frozenset({str, int, float, bool, bytes, type(None), FrozenDict, FrozenList, frozenset})


def freeze(value: Any) -> Any:
    """``value`` with every dict, list and set in it (at any depth) replaced by a read-only copy."""
    if type(value) in _LEAVES:  # the common case, and per render: keep it to one lookup
        return value
    if isinstance(value, Mapping):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return FrozenList(freeze(v) for v in value)
    if isinstance(value, tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, set):
        return frozenset(freeze(v) for v in value)
    return value


def freeze_mapping(value: Mapping[str, Any]) -> FrozenDict:
    """A read-only deep copy of a mapping (inventory ``vars``)."""
    frozen: FrozenDict = freeze(value)
    return frozen
