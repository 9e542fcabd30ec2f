"""The DNS server's per-source token bucket, driven by a fake clock (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ztp.bounded import make_room
from ztp.config import ConfigError, load_config
from ztp.dns.server import DEFAULT_RATE_LIMIT, SourceRateLimiter


def admitted(limiter: SourceRateLimiter, source: str, now: float, n: int) -> int:
    """How many of `n` messages from `source` at `now` the limiter lets through."""
    return sum(limiter.allow(source, now) for _ in range(n))


def test_burst_of_twice_the_rate_then_the_rate() -> None:
    limiter = SourceRateLimiter(200)
    assert limiter.burst == 400
    assert admitted(limiter, "10.60.0.2", 0.0, 1000) == 400
    # Refill is continuous: 10 ms at 200/s is two tokens, a second is 200.
    assert admitted(limiter, "10.60.0.2", 0.01, 10) == 2
    assert admitted(limiter, "10.60.0.2", 1.01, 1000) == 200


def test_sustained_flood_gets_exactly_the_rate() -> None:
    limiter = SourceRateLimiter(100)
    t, passed = 0.0, 0
    for _ in range(10 * 3000):  # 3,000 q/s for 10 s
        passed += limiter.allow("10.60.0.2", t)
        t += 1 / 3000
    assert passed == pytest.approx(200 + 100 * 10, abs=2)


def test_sources_are_independent() -> None:
    limiter = SourceRateLimiter(10)
    assert admitted(limiter, "10.60.0.2", 0.0, 100) == 20
    assert not limiter.allow("10.60.0.2", 0.0)
    assert admitted(limiter, "10.60.0.3", 0.0, 5) == 5


def test_bucket_never_holds_more_than_the_burst() -> None:
    limiter = SourceRateLimiter(10, burst=3)
    assert admitted(limiter, "a", 0.0, 10) == 3
    assert admitted(limiter, "a", 3600.0, 10) == 3


def test_clock_stepping_back_does_not_drain_a_bucket() -> None:
    limiter = SourceRateLimiter(10)
    assert admitted(limiter, "a", 100.0, 5) == 5
    assert admitted(limiter, "a", 50.0, 100) == 15  # what was left, no more and no less


def test_zero_rate_admits_everything_and_keeps_no_state() -> None:
    limiter = SourceRateLimiter(0)
    assert admitted(limiter, "a", 0.0, 100_000) == 100_000
    assert len(limiter) == 0


def test_table_is_bounded_and_forgets_the_least_recently_seen() -> None:
    limiter = SourceRateLimiter(1, burst=1, max_sources=3)
    for source in ("a", "b", "c"):
        assert limiter.allow(source, 0.0)
    assert not limiter.allow("a", 0.0)  # "a" is now the most recently seen; "b" the least
    assert limiter.allow("d", 0.0)
    assert len(limiter) == 3
    assert limiter.allow("b", 0.0)  # forgotten, so back with a full bucket
    assert not limiter.allow("a", 0.0) and not limiter.allow("d", 0.0)  # still remembered, still empty
    # A spoofed flood from many addresses keeps the table at its bound.
    for i in range(10_000):
        limiter.allow(f"10.0.{i // 256}.{i % 256}", 1.0)
    assert len(limiter) == 3


@pytest.mark.parametrize(("rate", "burst", "max_sources"), [(-1, None, 10), (10, 0.5, 10), (10, None, 0)])
def test_bad_settings_are_refused(rate: float, burst: float | None, max_sources: int) -> None:
    with pytest.raises(ValueError):
        SourceRateLimiter(rate, burst, max_sources=max_sources)


def test_default_rate() -> None:
    assert DEFAULT_RATE_LIMIT == 200


def _config(tmp_path: Path, dns: str) -> Path:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "inventory.yaml").write_text("devices: []\n")
    (tmp_path / "ztp.yaml").write_text("templates: ./templates\ninventory: ./inventory.yaml\n" + dns)
    return tmp_path / "ztp.yaml"


def test_config_key_defaults_to_200_and_0_turns_it_off(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "dns:\n  zone: lab.test\n"))
    assert config.dns is not None and config.dns.rate_limit == DEFAULT_RATE_LIMIT
    config = load_config(_config(tmp_path, "dns:\n  zone: lab.test\n  rate_limit: 0\n"))
    assert config.dns is not None and config.dns.rate_limit == 0


def test_config_refuses_a_negative_rate_limit(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, "dns:\n  zone: lab.test\n  rate_limit: -5\n"))
    assert "dns.rate_limit" in str(info.value) and ":5:" in str(info.value)


def test_a_full_table_makes_room_in_batches_of_its_least_recently_seen() -> None:
    table = {key: key for key in range(64)}
    table[0] = table.pop(0)  # seen again: now the most recent
    make_room(table, 64)
    assert len(table) == 60  # a sixteenth forgotten at once (the front walk is paid once per 4 inserts)
    assert list(table)[:2] == [5, 6] and 0 in table  # 1-4 were the least recently seen
    make_room(table, 64)
    assert len(table) == 60  # not full: nothing forgotten
    small = {"a": 1, "b": 2}
    make_room(small, 2)
    assert small == {"b": 2}
    make_room(small, 1)
    assert small == {}
