"""Shared pytest fixtures: the namespace lab, the root/CI policy for netns tests, and a fake clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgcluster import PgCluster, postgres_bin
from ztp.lab import Lab

DATA_DIR = Path(__file__).parent / "data"


def pytest_sessionstart(session: pytest.Session) -> None:
    """tests/unit/test_compiled.py runs the unit tests over the compiled build: make sure they import it."""
    if os.environ.get("ZTP_EXPECT_COMPILED") == "1":
        import ztp
        import ztp.dhcp.chain

        assert ztp.build() == "compiled", f"expected the compiled build, imported {ztp.dhcp.chain.__file__}"


def under_ci() -> bool:
    """True when CI=true: then nothing may be skipped, missing prerequisites fail the test instead."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason`` locally; fail with it under CI, where every test must run."""
    if under_ci():
        pytest.fail(f"{reason} (CI=true: not skipping)", pytrace=False)
    pytest.skip(reason)


def _check_netns() -> None:
    if os.geteuid() != 0:
        skip_or_fail("needs root for network namespaces: run with sudo")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Enforce the netns policy for every test marked ``netns`` before its fixtures run."""
    if item.get_closest_marker("netns") is not None:
        _check_netns()


@pytest.fixture
def require_netns() -> None:
    """Skip (or fail under CI) unless network namespaces can be made, i.e. we are root."""
    _check_netns()


@pytest.fixture
def lab(require_netns: None) -> Iterator[Lab]:
    """A fresh :class:`ztp.lab.Lab` for one test; torn down afterwards whatever the test did."""
    with Lab() as the_lab:
        yield the_lab


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster for the session (unix socket only), stopped by PID at the end."""
    bindir = postgres_bin()
    if bindir is None:
        skip_or_fail("needs PostgreSQL: apt-get install postgresql (scripts/setup-debian.sh)")
    assert bindir is not None
    cluster = PgCluster(bindir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_dsn(pg_cluster: PgCluster) -> str:
    """The DSN of a fresh, empty database on the session's cluster."""
    return pg_cluster.database()


@pytest.fixture
def data_dir() -> Path:
    """The tests/data directory (dhclient-script, dhclient.conf, captures)."""
    return DATA_DIR


class FakeClock:
    """A clock that only moves when told: feed ``clock.now`` to sans-I/O state machines."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        """Move forward ``seconds`` (must not be negative) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self.now += seconds
        return self.now

    def __call__(self) -> float:
        """Current time, so the clock can stand in for ``time.monotonic``."""
        return self.now


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`FakeClock` starting at t=1000.0 s."""
    return FakeClock()
