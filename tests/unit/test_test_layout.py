"""The test tree itself: pytest's default import mode imports test files by basename, so two test files
with one name in different folders stop the whole run at collection ("import file mismatch"), which only
a run over every folder shows (it stopped a CI run twice). Caught here, in the unit run."""

from __future__ import annotations

import collections
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_file_basenames_are_unique_across_folders() -> None:
    seen = collections.defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        seen[path.name].append(str(path.relative_to(TESTS)))
    assert {name: where for name, where in seen.items() if len(where) > 1} == {}
