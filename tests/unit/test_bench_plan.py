"""make bench's DHCP section: which sweeps run in which order, and how a row with two sweeps is reported."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import dhcp, report, tftp
from bench.run import RATIO_ROWS, sweep_order
from ztp.lab import LabError

NAMES = ["ztp", "ztp-info", "ztp-compiled", "ztp-compiled-info", "ztp-ping", "kea", "dnsmasq"]


def test_ratio_rows_are_swept_twice_in_abba_order_then_the_rest_once() -> None:
    assert sweep_order(NAMES, RATIO_ROWS, 2) == ["ztp", "ztp-info", "ztp-compiled", "ztp-compiled-info", "kea",
                                                 "kea", "ztp-compiled-info", "ztp-compiled", "ztp-info", "ztp",
                                                 "ztp-ping", "dnsmasq"]
    assert sweep_order(NAMES, RATIO_ROWS, 1) == ["ztp", "ztp-info", "ztp-compiled", "ztp-compiled-info", "kea",
                                                 "ztp-ping", "dnsmasq"]


def _run(rate: int) -> dict[str, object]:
    return {"rate": rate, "dora_s": float(rate), "do_avg_ms": 1.0, "ra_avg_ms": 2.0, "do_max_ms": 3.0,
            "ra_max_ms": 4.0, "server_cpu_pct": 50.0, "do_p99_ms": 1.5, "ra_p99_ms": 2.5}


def test_the_table_shows_the_better_sweep_and_both_maxima() -> None:
    doc = {"date": "2026-12-03", "machine": {"cpu": "x", "cores": 2, "mem_gib": 1, "kernel": "k", "python": "3"},
           "settings": {"dhcp": {"seconds": 10.0, "clients": 50000}},
           "dhcp": [{"server": "ztp", "label": "ztp", "max_sustainable_dora_s": 6500, "sweeps_max": [6000, 6500],
                     "at_max": _run(6500), "at_80": _run(5200), "sweeps_at_80": [_run(4800), _run(5200)]},
                    {"server": "dnsmasq", "label": "dnsmasq", "max_sustainable_dora_s": 275, "sweeps_max": [275],
                     "at_max": _run(275), "at_80": None}]}
    text = report.table(doc)
    assert "| ztp | 6,500 (6,000 / 6,500) |" in text
    assert "| dnsmasq | 275 |" in text
    assert "p99 D-O / R-A at 80 % of each sweep's max (ms): ztp 1.50 / 2.50 (4,800/s), 1.50 / 2.50 (5,200/s)." in text


def test_paired_cpu_alternates_the_set_ups_and_compares_their_cost_per_dora(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    cpu = {"warning": 40.0, "info": 44.0}  # % of a core at 2,000/s; proportional to the rate

    def once(lab: object, srv: str, cli: str, server_ip: str, start: Callable[[Path], str], tmp: Path, rate: int,
             seconds: float, *, phase: str) -> dhcp.RateRun:
        level = start(tmp)
        calls.append((level, rate))
        return dhcp.RateRun(rate=rate, seconds=seconds, phase=phase, discovers=rate * 10, acks=rate * 10,
                            fail_pct=0.0, dora_s=float(rate), server_cpu_pct=cpu[level] * rate / 2000)

    monkeypatch.setattr(dhcp, "perfdhcp_once", once)
    starters = {"ztp": lambda t: "warning", "ztp-info": lambda t: "info"}
    got = dhcp.paired_cpu(None, "srv", "cli", "10.0.0.1", starters, Path("/nonexistent"),  # type: ignore[arg-type]
                          rates=[2000, 4000], seconds=10.0, rounds=2, log=lambda s: None)
    assert calls == [("warning", 2000), ("info", 2000), ("info", 2000), ("warning", 2000),
                     ("warning", 4000), ("info", 4000), ("info", 4000), ("warning", 4000)]
    assert got["cpu_ms_per_dora"] == {"ztp": 0.2, "ztp-info": 0.22} and got["ratio"] == 1.1
    assert len(got["runs"]["ztp"]) == 4
    doc = {"date": "2026-12-03", "machine": {"cpu": "x", "cores": 2, "mem_gib": 1, "kernel": "k", "python": "3"},
           "settings": {"dhcp": {"seconds": 10.0, "clients": 50000}},
           "dhcp": [{"server": "ztp", "label": "ztp", "max_sustainable_dora_s": 6500, "sweeps_max": [6500],
                     "at_max": _run(6500), "at_80": _run(5200)}], "dhcp_info_cpu": got}
    assert "CPU per DORA 0.200 ms at warning, 0.220 ms at info (+10.0 %)" in report.table(doc)
    assert report.ratios(doc)["DHCP ztp CPU per DORA at warning / at info (paired runs)"] == "0.91x"


def test_a_paired_run_whose_server_does_not_start_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    def once(lab: object, srv: str, cli: str, server_ip: str, start: Callable[[Path], str], tmp: Path, rate: int,
             seconds: float, *, phase: str) -> dhcp.RateRun:
        if start(tmp) == "info":
            raise LabError("timed out after 30s waiting for ztp serve listening")
        return dhcp.RateRun(rate=rate, seconds=seconds, phase=phase, dora_s=float(rate), server_cpu_pct=40.0)

    monkeypatch.setattr(dhcp, "perfdhcp_once", once)
    starters = {"ztp": lambda t: "warning", "ztp-info": lambda t: "info"}
    got = dhcp.paired_cpu(None, "srv", "cli", "10.0.0.1", starters, Path("/nonexistent"),  # type: ignore[arg-type]
                          rates=[2000], seconds=10.0, rounds=2, log=lambda s: None)
    assert got["cpu_ms_per_dora"] == {"ztp": 0.2, "ztp-info": None} and got["ratio"] is None
    assert got["errors"] == ["ztp-info at 2000/s: timed out after 30s waiting for ztp serve listening"] * 2


def test_tftp_servers_take_turns_in_abba_order_and_the_median_good_fetch_counts() -> None:
    from bench import tftp

    assert tftp.turns(["ztp", "tftpd-hpa", "dnsmasq"], 3) == ["ztp", "tftpd-hpa", "dnsmasq", "dnsmasq", "tftpd-hpa",
                                                               "ztp", "ztp", "tftpd-hpa", "dnsmasq"]
    slow = tftp.Fetch("curl", 1468, 1, mib_s=17.95, ok=True)
    lucky = tftp.Fetch("curl", 1468, 1, mib_s=22.96, ok=True)  # client and server on one core, now and then
    mid = tftp.Fetch("curl", 1468, 1, mib_s=18.0, ok=True)
    broken = tftp.Fetch("curl", 1468, 1, mib_s=99.0, ok=False)
    assert tftp.typical([slow, lucky, broken, mid]) is mid
    assert tftp.typical([slow, lucky, broken]) is slow  # an even count: the lower middle
    assert tftp.typical([broken]) is broken


def test_tftp_single_streams_put_server_and_client_on_different_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tftp.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert tftp.cpus_for_streams() == ({0, 1, 2}, 3)
    monkeypatch.setattr(tftp.os, "sched_getaffinity", lambda pid: {5})
    assert tftp.cpus_for_streams() is None


def test_pin_binds_every_thread_and_what_they_start() -> None:
    import subprocess
    import sys

    from bench import procstat

    cores = sorted(os.sched_getaffinity(0))
    # A process with a second thread and a child: every task of both ends up on the one core asked for.
    script = ("import subprocess, sys, threading, time; threading.Thread(target=time.sleep, args=(30,), daemon=True)"
              ".start(); c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
              "print(c.pid, flush=True); time.sleep(30)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        procstat.pin(proc.pid, {cores[0]})
        tasks = [int(t) for p in (proc.pid, child) for t in os.listdir(f"/proc/{p}/task")]
        assert len(tasks) >= 3
        assert all(os.sched_getaffinity(t) == {cores[0]} for t in tasks)
        procstat.pin(proc.pid, set(cores))
        assert all(os.sched_getaffinity(t) == set(cores) for t in tasks)
    finally:
        if child:
            os.kill(child, 9)
        proc.kill()
        proc.wait()


def test_a_rate_passes_only_when_perfdhcp_offered_it() -> None:
    def run(sent: int, acks: int) -> dhcp.RateRun:
        r = dhcp.RateRun(rate=11000, seconds=10.0, discovers=sent, acks=acks)
        r.fail_pct = round(100.0 * (sent - acks) / sent, 3)
        return r

    assert run(110_000, 109_900).ok
    assert run(109_999, 109_999).ok  # perfdhcp often sends one fewer than -n (79,999 of 80,000)
    # Every DISCOVER answered, but perfdhcp sent only 94.8 % of them: 11,000/s was not tested.
    short = run(104_250, 104_000)
    assert short.short_pct == 5.227 and short.fail_pct < 1.0 and not short.ok
    assert not run(110_000, 108_000).ok
    assert dhcp.RateRun(rate=0, seconds=10.0).short_pct == 0.0 and not dhcp.RateRun(rate=0, seconds=10.0).ok


# Kea's option names in bench/servers.py, by code (Kea 2.2's standard DHCPv4 option definitions).
_KEA_CODES = {"routers": 3, "broadcast-address": 28, "domain-name": 15, "domain-name-servers": 6,
              "tftp-server-name": 66, "boot-file-name": 67}


def test_kea_is_configured_to_answer_perfdhcp_as_ztp_does(tmp_path: Path) -> None:
    """The bench compares like with like: Kea sends the options ztp sends a device it does not know (perfdhcp's
    clients), sname and file included, so perfdhcp parses replies of the same size from both."""
    from ipaddress import IPv4Address

    from bench import servers
    from bench.workload import SERVER_IP, prepare
    from ztp.config import load_config
    from ztp.dhcp import packet as p
    from ztp.dhcp.chain import Chain
    from ztp.dhcp.exchange import Ingress
    from ztp.leases.ledger import Ledger
    from ztp.leases.table import LeaseTable

    work = prepare(tmp_path / "work", devices=5)
    server = IPv4Address(SERVER_IP)
    chain = Chain(load_config(work.config), Ledger(LeaseTable()))
    ingress = Ingress(ifindex=2, ifname="s1", server_ip=server, local_ips=frozenset({server}),
                      peer=IPv4Address("10.60.0.2"))
    # perfdhcp -4 as a relay: DISCOVER with its parameter request list and a client identifier.
    discover = p.DhcpPacket(op=p.BOOTREQUEST, xid=1, chaddr=bytes.fromhex("000c01020304"), hops=1,
                            giaddr=IPv4Address("10.60.0.2"),
                            options={53: bytes((p.DISCOVER,)), 55: bytes((1, 28, 2, 3, 15, 6, 12)),
                                     61: bytes.fromhex("01000c01020304")})
    offer = chain.handle(discover, ingress, 1_000_000.0).reply
    assert offer is not None
    # Always there in Kea's replies: message type, subnet mask, lease time, server id, client id; T1 and T2
    # with calculate-tee-times.
    kea = {53, 1, 51, 54, 61, 58, 59} | {_KEA_CODES[o["name"]] for o in servers.KEA_OPTIONS}
    assert set(offer.options) == kea
    assert offer.sname == SERVER_IP.encode() and len(offer.file) == len("000000000000.cfg")


def test_the_report_shows_kea_against_ztp_compiled_per_dora() -> None:
    doc = {"date": "2026-12-04", "machine": {"cpu": "x", "cores": 2, "mem_gib": 1, "kernel": "k", "python": "3"},
           "settings": {"dhcp": {"seconds": 10.0, "clients": 50000}},
           "dhcp": [{"server": "kea", "label": "Kea", "max_sustainable_dora_s": 8000, "sweeps_max": [8000],
                     "at_max": _run(8000), "at_80": _run(6400)}],
           "dhcp_kea_cpu": {"rates": [2000, 4000], "rounds": 2, "cpu_ms_per_dora": {"ztp-compiled": 0.1, "kea": 0.08}}}
    assert "CPU per DORA 0.100 ms ztp compiled (its lease writer process included), 0.080 ms Kea (Kea / ztp 0.80x)" \
        in report.table(doc)
    assert report.ratios(doc)["DHCP CPU per DORA kea / ztp compiled (paired runs)"] == "0.80x"


def test_the_compiled_tftp_row_gets_lock_step_ratios_of_its_own() -> None:
    def served(server: str, mib_s: float) -> dict[str, object]:
        return {"server": server, "label": server, "fetches": [
            {"client": client, "blksize": blksize, "windowsize": window, "ok": True, "mib_s": mib_s * window}
            for client, blksize, window in tftp.FETCH_PLAN]}

    doc = {"tftp": [served("ztp", 9.0), served("ztp-compiled", 11.0), served("tftpd-hpa", 10.0)]}
    got = report.ratios(doc)
    assert got["TFTP curl 512 ztp/tftpd-hpa"] == "0.90x" and got["TFTP curl 512 ztp compiled/tftpd-hpa"] == "1.10x"
    assert got["TFTP atftp 1468 ztp compiled/tftpd-hpa"] == "1.10x"
    assert not any("w16 ztp compiled" in k for k in got)  # windowsize has its own ratio, the pure build's
