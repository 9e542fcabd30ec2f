"""Fleet bookkeeping: MAC numbering, nearest-rank percentiles and the run summary."""

from __future__ import annotations

import pytest

from ztp.agent.device import DeviceResult
from ztp.agent.fleet import fleet_macs, percentile, summarize


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted input
    assert [percentile(values, q) for q in (0, 1, 50, 95, 99, 100)] == [1.0, 1.0, 50.0, 95.0, 99.0, 100.0]
    assert percentile([3.0], 99) == 3.0
    # Nearest rank never interpolates: p50 of four values is the second.
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 51) == 3.0


def test_fleet_macs_are_numbered_after_the_prefix() -> None:
    assert fleet_macs("02:5a:54", 3) == ["02:5a:54:00:00:01", "02:5a:54:00:00:02", "02:5a:54:00:00:03"]
    assert fleet_macs("02-00-00-00-01", 1, start=255) == ["02:00:00:00:01:ff"]
    assert fleet_macs("02:00", 2, start=255) == ["02:00:00:00:00:ff", "02:00:00:00:01:00"]
    with pytest.raises(ValueError, match="room for only 255 devices"):
        fleet_macs("02:00:00:00:01", 256)
    with pytest.raises(ValueError, match="1 to 5 bytes"):
        fleet_macs("02:00:00:00:00:01", 1)


def ok(mac: str, **timings: float) -> DeviceResult:
    return DeviceResult(mac=mac, status="provisioned", exit_code=0, timings=timings)


def test_summary_counts_failures_by_stage_and_groups_reasons() -> None:
    results = [ok(f"m{i}", configure=i / 1000, total=1 + i / 100) for i in range(1, 101)]
    results.append(DeviceResult(mac="x1", stage="discover", reason="no offer in 60s (16 DISCOVERs sent)",
                                timings={"total": 60.0}))
    results.append(DeviceResult(mac="x2", stage="discover", reason="no offer in 60s (17 DISCOVERs sent)"))
    results.append(DeviceResult(mac="x3", stage="tftp", reason="a.cfg from 10.60.0.1: timeout"))
    summary = summarize(results, wall=2.0)
    assert (summary.count, summary.provisioned) == (103, 100)
    assert summary.failed_by_stage == {"discover": 2, "tftp": 1}
    assert summary.failed_reasons == {"no offer in ##s (## DISCOVERs sent)": 2,
                                      "a.cfg from ##.##.#.#: timeout": 1}
    # Only provisioned devices count towards latencies (the failed one's 60 s total is left out).
    assert summary.stages["configure"] == {"n": 100.0, "p50": 0.05, "p95": 0.095, "p99": 0.099, "max": 0.1}
    assert summary.stages["total"]["max"] == 2.0
    assert "tftp" not in summary.stages
    out = summary.to_json(with_devices=False)
    assert (out["failed"], out["rate_per_second"]) == (3, 50.0)
    table = summary.table()
    assert "failed at discover     2" in table
    assert "configure" in table and "50.0" in table
