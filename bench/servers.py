"""Starting the servers under test inside a lab namespace: ztp serve, Kea dhcp4, dnsmasq, tftpd-hpa.

Each returns the Popen of `ip netns exec ... PROGRAM`; `ip netns exec` execs the program in place, so its
pid is the server's own (what /proc accounting and py-spy need).
"""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import ip_network
from pathlib import Path

from bench.workload import NETWORK, POOL_FIRST, POOL_LAST, SERVER_IP, Workload
from ztp.lab import Lab, LabError

SERVER_IF = "s1"
ZTP = [str(Path(sys.executable).with_name("ztp"))]


def _started(lab: Lab, proc: subprocess.Popen[bytes], ns: str, port: int, log: Path, what: str) -> None:
    lab.wait_for(lambda: proc.poll() is not None or lab.udp_listening(ns, port), 30, f"{what} listening")
    if proc.poll() is not None:
        raise LabError(f"{what} exited {proc.returncode}: {log.read_text()[-2000:]}")


def ztp_serve(lab: Lab, ns: str, work: Workload, log: Path, *, fresh: bool = True,
              config: Path | None = None, log_level: str = "warning",
              pythonpath: Path | None = None) -> subprocess.Popen[bytes]:
    """`ztp serve` with the workload's config (durable leases: SQLite WAL + fsync before every ACK), or
    with `config` (e.g. ztp-ping.yaml: the same with dhcp.ping_check on), logging at `log_level`; importing
    ztp from `pythonpath` when given (the compiled build of scripts/compile.py)."""
    if fresh:
        work.reset_state()
    env = {"PYTHONUNBUFFERED": "1"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    proc = lab.spawn(ns, [*ZTP, "serve", "--config", str(config or work.config), "--log-level", log_level], log=log,
                     env=env)
    _started(lab, proc, ns, 67, log, "ztp serve")
    lab.wait_for(lambda: proc.poll() is not None or lab.udp_listening(ns, 69), 10, "ztp tftp listening")
    return proc


# What ztp answers a device it does not know (bench/workload.py's subnet; the boot file is named after the
# MAC, as long as ztp's): Kea is configured to send the same options, so that both servers do the same work
# and perfdhcp, which parses every option of every reply on the same two cores, pays the same per reply.
# Until 2026-12-04 Kea sent 6 options against ztp's 13 plus sname and file, and perfdhcp, saturated, fell
# behind ztp's replies only (its socket dropping them): part of ztp's gap was the client's.
KEA_OPTIONS = [
    {"name": "routers", "data": SERVER_IP},
    {"name": "broadcast-address", "data": str(ip_network(NETWORK).broadcast_address)},
    {"name": "domain-name", "data": "lab.test"},
    {"name": "domain-name-servers", "data": SERVER_IP},
    # Not in perfdhcp's parameter request list; ztp sends them to every device it provisions.
    {"name": "tftp-server-name", "data": SERVER_IP, "always-send": True},
    {"name": "boot-file-name", "data": "000000000000.cfg", "always-send": True},
]


def kea(lab: Lab, ns: str, tmp: Path, log: Path) -> subprocess.Popen[bytes]:
    """Kea dhcp4 2.2, memfile with persist=true (a CSV append per lease), single-threaded (its default),
    answering with the options ztp sends (KEA_OPTIONS, T1/T2, sname and file)."""
    leases = tmp / "kea-leases4.csv"
    leases.unlink(missing_ok=True)
    dhcp4 = {
        "interfaces-config": {"interfaces": [SERVER_IF], "dhcp-socket-type": "udp"},
        "lease-database": {"type": "memfile", "persist": True, "name": str(leases), "lfc-interval": 0},
        "valid-lifetime": 3600,
        "calculate-tee-times": True,  # options 58 and 59, as ztp sends them
        "subnet4": [{"id": 1, "subnet": NETWORK, "pools": [{"pool": f"{POOL_FIRST} - {POOL_LAST}"}],
                     "server-hostname": SERVER_IP, "boot-file-name": "000000000000.cfg",
                     "option-data": KEA_OPTIONS}],
        "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "WARN"}],
    }
    conf = tmp / "kea-dhcp4.json"
    conf.write_text(json.dumps({"Dhcp4": dhcp4}, indent=1))
    env = {"KEA_PIDFILE_DIR": str(tmp), "KEA_LOCKFILE_DIR": str(tmp), "KEA_LOGGER_DESTINATION": "stdout"}
    proc = lab.spawn(ns, ["kea-dhcp4", "-c", str(conf)], log=log, env=env)
    _started(lab, proc, ns, 67, log, "kea-dhcp4")
    return proc


def dnsmasq_dhcp(lab: Lab, ns: str, tmp: Path, log: Path, *, extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """dnsmasq DHCP: no ICMP check before offers, lease-max raised above the pool, lease file on disk."""
    leases = tmp / "dnsmasq.leases"
    leases.unlink(missing_ok=True)
    argv = ["dnsmasq", "-k", "--conf-file=/dev/null", "--port=0", "--user=root", "--pid-file=",
            f"--interface={SERVER_IF}", "--bind-interfaces", "--no-ping", "--dhcp-authoritative",
            "--quiet-dhcp", "--dhcp-lease-max=70000", f"--dhcp-leasefile={leases}",
            f"--dhcp-range={POOL_FIRST},{POOL_LAST},255.255.0.0,1h", *extra]
    proc = lab.spawn(ns, argv, log=log)
    _started(lab, proc, ns, 67, log, "dnsmasq")
    return proc


def dnsmasq_tftp(lab: Lab, ns: str, root: Path, log: Path) -> subprocess.Popen[bytes]:
    """dnsmasq as a TFTP server only (single process); tftp-max raised so 500 transfers may run at once."""
    argv = ["dnsmasq", "-k", "--conf-file=/dev/null", "--port=0", "--user=root", "--pid-file=",
            f"--interface={SERVER_IF}", "--bind-interfaces", "--enable-tftp", f"--tftp-root={root}",
            "--tftp-max=1000"]
    proc = lab.spawn(ns, argv, log=log)
    _started(lab, proc, ns, 69, log, "dnsmasq tftp")
    return proc


def tftpd_hpa(lab: Lab, ns: str, root: Path, log: Path) -> subprocess.Popen[bytes]:
    """tftpd-hpa in the foreground (-L), forking one child per transfer."""
    proc = lab.spawn(ns, ["in.tftpd", "-L", "-u", "root", "-s", str(root), "-a", f"{SERVER_IP}:69"], log=log)
    _started(lab, proc, ns, 69, log, "tftpd-hpa")
    return proc
