"""make bench's DHCP section: which sweeps run in which order, and how a row with two sweeps is reported."""

from __future__ import annotations

from bench import report
from bench.run import RATIO_ROWS, sweep_order

NAMES = ["ztp", "ztp-info", "ztp-compiled", "ztp-ping", "kea", "dnsmasq"]


def test_ratio_rows_are_swept_twice_in_abba_order_then_the_rest_once() -> None:
    assert sweep_order(NAMES, RATIO_ROWS, 2) == ["ztp", "ztp-info", "ztp-compiled", "kea",
                                                 "kea", "ztp-compiled", "ztp-info", "ztp", "ztp-ping", "dnsmasq"]
    assert sweep_order(NAMES, RATIO_ROWS, 1) == ["ztp", "ztp-info", "ztp-compiled", "kea", "ztp-ping", "dnsmasq"]


def _run(rate: int) -> dict[str, object]:
    return {"rate": rate, "dora_s": float(rate), "do_avg_ms": 1.0, "ra_avg_ms": 2.0, "do_max_ms": 3.0,
            "ra_max_ms": 4.0, "server_cpu_pct": 50.0, "do_p99_ms": 1.5, "ra_p99_ms": 2.5}


def test_the_table_shows_the_better_sweep_and_both_maxima() -> None:
    doc = {"date": "2026-12-03", "machine": {"cpu": "x", "cores": 2, "mem_gib": 1, "kernel": "k", "python": "3"},
           "settings": {"dhcp": {"seconds": 10.0, "clients": 50000}},
           "dhcp": [{"server": "ztp", "label": "ztp", "max_sustainable_dora_s": 6500, "sweeps_max": [6000, 6500],
                     "at_max": _run(6500), "at_80": _run(5200)},
                    {"server": "dnsmasq", "label": "dnsmasq", "max_sustainable_dora_s": 275, "sweeps_max": [275],
                     "at_max": _run(275), "at_80": None}]}
    text = report.table(doc)
    assert "| ztp | 6,500 (6,000 / 6,500) |" in text
    assert "| dnsmasq | 275 |" in text
