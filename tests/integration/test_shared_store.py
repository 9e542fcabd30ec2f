"""Two `ztp serve` sharing one PostgreSQL (issue 13), with real clients, in namespaces: on one segment, and
behind `ztp relay` forwarding to both (topology further down).

    srv-a:s1 10.60.0.1/21 ─┐
    srv-b:s1 10.60.0.2/21 ─┼─ seg(br0) ─ dev / fleet (no address until DHCP)

Both appliances answer; the database decides who gets an address. Clients: `ztp agent` (a fleet, and
`--stay`) and ISC dhclient. PostgreSQL is the session's throwaway
cluster on a unix socket (tests/pgcluster.py): nothing listens on an interface of the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import skip_or_fail
from tests.integration.appliance import DATA, REPO
from ztp.lab import Lab, dhclient_argv, ensure_neighbour_capacity
from ztp.leases.store.postgres import SCHEMA_VERSION

ZTP = [sys.executable, "-m", "ztp"]
ENV = {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
SERVERS = {"a": "10.60.0.1", "b": "10.60.0.2"}


def _config(tmp: Path, name: str, dsn: str, *, lease_time: int, ping_check: bool, extra: str = "") -> Path:
    """One appliance's config: its own state_dir and interface address, the shared inventory, templates,
    pools and database."""
    inv = tmp / "inventory.yaml"
    if not inv.exists():
        inv.write_text((REPO / "inventory.yaml").read_text())
    cfg = tmp / f"ztp-{name}.yaml"
    cfg.write_text(f"""state_dir: {tmp / f'state-{name}'}
state:
  backend: postgresql
  dsn: "{dsn}"
templates: {REPO / 'templates'}
inventory: {inv}
dhcp:
  interfaces: [s1]
  lease_time: {lease_time}
  ping_check: {str(ping_check).lower()}
  subnets:
    - network: 10.60.0.0/21
      pool: 10.60.1.0-10.60.7.250
      routers: [10.60.0.1]
      dns_servers: [10.60.0.1]
      domain: lab.test
tftp:
  root: {REPO / 'tftpboot'}
{extra}""")
    return cfg


@dataclass
class Pair:
    """Two appliances on one segment and one database."""

    lab: Lab
    tmp: Path
    dsn: str
    seg: str = ""
    ns: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    configs: dict[str, Path] = field(default_factory=dict)
    extra: str = ""  # more config sections for both appliances (dns:, http:)

    def log(self, name: str) -> Path:
        return self.tmp / f"serve-{name}.log"

    def start(self, lease_time: int = 3600, *, notify: bool = True, ping_check: bool = True) -> None:
        self.seg = self.lab.segment("seg")
        for name, addr in SERVERS.items():
            self.ns[name] = self.lab.ns(f"srv{name}")
            self.lab.attach(self.seg, self.ns[name], "s1", addr=f"{addr}/21")
            self.configs[name] = _config(self.tmp, name, self.dsn, lease_time=lease_time, ping_check=ping_check,
                                         extra=self.extra)
        up = subprocess.run([*ZTP, "db", "upgrade", "--config", str(self.configs["a"])], capture_output=True,
                            text=True, timeout=60, check=False, env={**os.environ, **ENV})
        assert up.returncode == 0 and f"schema version 0 -> {SCHEMA_VERSION}" in up.stdout, up.stdout + up.stderr
        if not notify:
            with psycopg.connect(self.dsn) as conn:
                conn.execute("ALTER TABLE leases DISABLE TRIGGER leases_notify")
        for name in SERVERS:
            self.procs[name] = self.lab.spawn(self.ns[name], [*ZTP, "serve", "--config", str(self.configs[name]),
                                                              "--log-level", "debug"], log=self.log(name), env=ENV)
        for name in SERVERS:
            proc, ns = self.procs[name], self.ns[name]
            self.lab.wait_for(lambda p=proc, n=ns: (self.lab.udp_listening(n, 67) and self.lab.udp_listening(n, 69))
                              or p.poll() is not None, 30, f"ztp serve {name} listening")
            assert proc.poll() is None, self.log(name).read_text()

    def kill(self, name: str) -> None:
        """SIGKILL one appliance by the PID we started (a crash: nothing is flushed or released)."""
        self.lab.stop(self.procs.pop(name), sig=signal.SIGKILL)

    def rows(self) -> list[tuple[str, str, str]]:
        """(client, ip, state) of every lease row in the shared database."""
        with psycopg.connect(self.dsn) as conn:
            return [(c, ip, s) for c, ip, s in conn.execute("SELECT client, host(ip), state FROM leases")]


@pytest.fixture
def pair(lab: Lab, tmp_path: Path, pg_dsn: str) -> Pair:
    return Pair(lab=lab, tmp=tmp_path, dsn=pg_dsn)


def _agent(lab: Lab, ns: str, *args: str, timeout: float) -> tuple[int, dict[str, Any], str]:
    res = subprocess.run(["ip", "netns", "exec", ns, *ZTP, "agent", "--interface", "eth0", "--json", *args],
                         capture_output=True, text=True, timeout=timeout, check=False, env={**os.environ, **ENV})
    try:
        out = json.loads(res.stdout) if res.stdout.strip() else {}
    except json.JSONDecodeError:
        out = {"unparsed": res.stdout}
    return res.returncode, out, res.stderr


def test_two_appliances_give_a_fleet_no_address_twice(pair: Pair) -> None:
    """Both appliances answer every DISCOVER from their own caches; when they offered one address to two
    clients, the second commit loses in the database, that appliance sends no ACK, and the client is NAKed
    on its retry and starts over: every device ends with its own address."""
    pair.start()
    fleet = pair.lab.ns("fleet")
    pair.lab.attach(pair.seg, fleet, "eth0")
    count = 1000  # a hall's boot storm; measured: ~15 s, ~70 devices/s, a few dozen lost races resolved
    ensure_neighbour_capacity(4096)
    code, out, err = _agent(pair.lab, fleet, "--count", str(count), "--concurrency", "200", "--mac-prefix",
                            "02:5a:00", "--out", str(pair.tmp / "out"), "--timeout", "60", "--no-progress",
                            timeout=240)
    assert code == 0, f"{out.get('failed_reasons')}\n{err[-3000:]}"
    assert out["provisioned"] == count and out["failed"] == 0
    devices = out["devices"]
    ips = Counter(d["ip"] for d in devices)
    assert len(ips) == count, f"granted twice: {[ip for ip, n in ips.items() if n > 1]}"
    served = Counter(d["server_id"] for d in devices)
    print(f"\n{count} devices through two appliances: {out['wall_seconds']} s, {out['rate_per_second']}/s, "
          f"by server {dict(served)}")
    assert set(served) == set(SERVERS.values()), served  # both appliances granted leases
    # The database agrees with the agents, device by device, and holds one row per address.
    rows = pair.rows()
    bound = {ip: client for client, ip, state in rows if state == "bound"}
    assert len(bound) == count
    by_mac = {d["mac"]: d["ip"] for d in devices}
    assert {bound[ip] for ip in by_mac.values()} == set(bound.values())
    # Each appliance knows the other's leases (its cache): both logs show ACKs, neither refused a config.
    for name in SERVERS:
        text = pair.log(name).read_text(errors="replace")
        assert "-> ACK" in text and "Traceback" not in text, text[-3000:]


def test_a_client_keeps_its_address_when_its_appliance_dies(pair: Pair) -> None:
    """Short lease (T1 = 10 s, T2 = 17.5 s): the appliance that granted it is killed; renewals unicast to it
    time out, the broadcast REBINDING reaches the survivor, which ACKs the same address from the shared
    lease."""
    pair.start(lease_time=20)
    dev = pair.lab.ns("dev")
    mac = "02:5a:01:00:00:01"
    pair.lab.attach(pair.seg, dev, "eth0", mac=mac)
    log = pair.tmp / "agent.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(["ip", "netns", "exec", dev, *ZTP, "agent", "--interface", "eth0", "--json",
                                 "--out", str(pair.tmp / "out"), "--timeout", "30", "--stay", "45",
                                 "--arp-probes", "1"],
                                stdout=subprocess.PIPE, stderr=fh, env={**os.environ, **ENV})
    try:
        # Provisioned (its config fetched from the appliance that granted the lease), then keeping the lease.
        pair.lab.wait_for(lambda: " provisioned: " in log.read_text(errors="replace"), 40, "the agent provisioned")
        bound = re.search(r" bound ([\d.]+)/\d+ server ([\d.]+)", log.read_text())
        assert bound is not None, log.read_text()
        ip, server = bound.group(1), bound.group(2)
        granted_by = next(n for n, a in SERVERS.items() if a == server)
        survivor = next(n for n in SERVERS if n != granted_by)
        # The survivor's cache has the binding before the crash (LISTEN/NOTIFY), not only in the database.
        pair.kill(granted_by)
        pair.lab.wait_for(lambda: "rebound" in log.read_text(errors="replace"), 40, "a rebinding to the survivor")
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = json.loads(stdout)
    assert out["ip"] == ip and out["rebinds"] >= 1 and out["naks"] == 0, out
    assert out["server_id"] == SERVERS[survivor], out
    text = pair.log(survivor).read_text(errors="replace")
    assert re.search(rf"{mac} dhcp REQUEST \(rebinding\) -> ACK {re.escape(ip)}\b", text), text[-3000:]
    assert [s for _, i, s in pair.rows() if i == ip] == ["bound"]


@pytest.mark.parametrize("learns_by", ["notify", "read-through"])
def test_a_client_that_moves_to_the_other_appliance_keeps_its_address_and_config(pair: Pair, learns_by: str) -> None:
    """ISC dhclient binds 10.60.1.50 (it asks for it: option 50) through appliance a while b does not hear
    DHCP at all (nft drops it in b's namespace). b learns the binding from the database: by LISTEN/NOTIFY,
    or, with notifications switched off (the trigger disabled; no refresh within the test), only by reading
    the client's key through on its cache miss. Then a stops, and the device boots again with `ztp agent`
    (a DISCOVER without option 50: nothing to go on but its MAC): b gives it 10.60.1.50, not the first free
    address, and a byte-identical config."""
    if shutil.which("dhclient") is None or shutil.which("nft") is None:
        skip_or_fail("dhclient (isc-dhcp-client) and nft (nftables) are needed")
    pair.start(notify=learns_by == "notify")
    deaf = "table inet deaf {\n chain in {\n  type filter hook input priority 0;\n  udp dport 67 drop\n }\n}\n"
    pair.lab.run(pair.ns["b"], ["nft", "-f", "-"], input=deaf)
    dev = pair.lab.ns("dev")
    mac, ip = "02:5a:02:00:00:01", "10.60.1.50"
    pair.lab.attach(pair.seg, dev, "eth0", mac=mac)
    conf = pair.tmp / "dhclient-request.conf"
    conf.write_text((DATA / "dhclient.conf").read_text() + f"send dhcp-requested-address {ip};\n")
    log = pair.tmp / "dhclient.log"
    proc = pair.lab.spawn(dev, dhclient_argv("eth0", lease_file=pair.tmp / "dhclient.leases",
                                             pid_file=pair.tmp / "dhclient.pid", script=DATA / "dhclient-script",
                                             conf=conf, out_file=pair.tmp / "dhclient.env"), log=log)
    try:
        pair.lab.wait_for(lambda: "bound to" in log.read_text(errors="replace"), 30, "dhclient bound")
    finally:
        pair.lab.stop(proc)  # SIGTERM: no DHCPRELEASE, the lease stays bound
    assert f"DHCPACK of {ip} from {SERVERS['a']}" in log.read_text(), log.read_text()
    learned = f"{mac} lease {ip} bound"
    if learns_by == "notify":
        pair.lab.wait_for(lambda: learned in pair.log("b").read_text(errors="replace"), 10,
                          f"appliance b hearing of {ip}")
    pair.lab.run(pair.ns["b"], ["nft", "delete", "table", "inet", "deaf"])
    assert f"{mac} dhcp" not in pair.log("b").read_text(errors="replace")  # b never heard the client
    pair.lab.stop(pair.procs.pop("a"))  # SIGTERM, by PID
    pair.lab.run(dev, ["ip", "addr", "flush", "dev", "eth0"])  # a device that forgot everything
    code, out, err = _agent(pair.lab, dev, "--out", str(pair.tmp / "out"), "--timeout", "30", "--arp-probes", "0",
                            timeout=60)
    assert code == 0 and out["status"] == "provisioned", f"{out}\n{err}"
    assert out["server_id"] == SERVERS["b"] and out["ip"] == ip, out
    text = pair.log("b").read_text(errors="replace")
    assert re.search(rf"{mac} dhcp DISCOVER -> OFFER {re.escape(ip)}\b", text), text[-3000:]
    assert learned in text
    # Same inventory and templates on both: what it fetched is what `ztp render` prints on either appliance.
    for name in SERVERS:
        res = subprocess.run([*ZTP, "render", "--config", str(pair.configs[name]), "--mac", mac], capture_output=True,
                             timeout=60, check=True, env={**os.environ, **ENV})
        assert hashlib.sha256(res.stdout).hexdigest() == out["sha256"]


def test_isc_dhclient_rebinds_to_the_survivor_and_keeps_its_address(pair: Pair) -> None:
    """The same failure with a client we did not write: ISC dhclient, lease 20 s (T1 10 s, T2 17.5 s).

    dhclient 4.4 retransmits its unicast renewal with a backoff that, for so short a lease, can step over
    T2 to the lease's end: then it starts over with a DISCOVER (no option 50). Either way the survivor
    must give it the same address: it knows the binding from the shared store."""
    if shutil.which("dhclient") is None:
        skip_or_fail("dhclient is not installed (isc-dhcp-client)")
    pair.start(lease_time=20)
    dev = pair.lab.ns("dev")
    mac = "02:5a:03:00:00:01"
    pair.lab.attach(pair.seg, dev, "eth0", mac=mac)
    log = pair.tmp / "dhclient.log"
    argv = dhclient_argv("eth0", lease_file=pair.tmp / "dhclient.leases", pid_file=pair.tmp / "dhclient.pid",
                         script=DATA / "dhclient-script", conf=DATA / "dhclient.conf",
                         out_file=pair.tmp / "dhclient.env")
    proc = pair.lab.spawn(dev, argv, log=log)
    try:
        pair.lab.wait_for(lambda: "bound to" in log.read_text(errors="replace"), 30, "dhclient bound")
        ack = re.search(r"DHCPACK of ([\d.]+) from ([\d.]+)", log.read_text())
        assert ack is not None, log.read_text()
        ip, server = ack.group(1), ack.group(2)
        granted_by = next(n for n, a in SERVERS.items() if a == server)
        survivor = SERVERS[next(n for n in SERVERS if n != granted_by)]
        pair.kill(granted_by)
        pair.lab.wait_for(lambda: f"DHCPACK of {ip} from {survivor}" in log.read_text(errors="replace"), 40,
                          f"dhclient rebinding to {survivor}")
    finally:
        pair.lab.stop(proc)
    text = log.read_text(errors="replace")
    after = text.split(f"DHCPACK of {ip} from {server}", 1)[1]
    assert "DHCPNAK" not in text and "DHCPOFFER of" not in after.replace(f"DHCPOFFER of {ip} from", ""), text
    assert [s for _, i, s in pair.rows() if i == ip] == ["bound"]


def test_either_appliance_shows_a_devices_timeline_and_resolves_its_name(pair: Pair) -> None:
    """Device timelines and DNS names come from the shared store too: leaf02 (in the inventory, no
    reservation) is provisioned by appliance a while b hears no DHCP at all (nft drops it in b's namespace).
    b's API shows the device's whole story from a's events (offer, bound, TFTP delivered) and b's state
    machine follows it to delivered; `ztp status` with b's config lists it; b's DNS answers leaf02.lab.test
    (dig) with the address a bound; and b recorded none of a's lease changes a second time."""
    for prog in ("nft", "curl", "dig"):
        if shutil.which(prog) is None:
            skip_or_fail(f"{prog} is not installed (nftables, curl, bind9-dnsutils)")
    pair.extra = "dns:\n  zone: lab.test\nhttp:\n  token: shared-timeline-token-0123456789\n"
    pair.start()
    lab = pair.lab
    for name in SERVERS:
        lab.wait_for(lambda n=name: lab.udp_listening(pair.ns[n], 53) and
                     "http listening" in pair.log(n).read_text(errors="replace"), 15, f"dns and http on {name}")
    deaf = "table inet deaf {\n chain in {\n  type filter hook input priority 0;\n  udp dport 67 drop\n }\n}\n"
    lab.run(pair.ns["b"], ["nft", "-f", "-"], input=deaf)
    dev = lab.ns("dev")
    mac = "02:00:00:00:00:02"  # leaf02
    lab.attach(pair.seg, dev, "eth0", mac=mac)
    code, out, err = _agent(lab, dev, "--out", str(pair.tmp / "out"), "--timeout", "30", "--arp-probes", "0",
                            timeout=60)
    assert code == 0 and out["status"] == "provisioned", f"{out}\n{err}"
    assert out["server_id"] == SERVERS["a"], out
    ip = out["ip"]

    def b_api(path: str) -> Any:
        res = lab.run(pair.ns["b"], ["curl", "-sS", "--max-time", "10", f"http://{SERVERS['b']}{path}"])
        return json.loads(res.stdout)

    # b learns a's events within its poll interval (1 s): its state machine, not only its store.
    lab.wait_for(lambda: b_api("/api/devices/leaf02").get("state") == "delivered", 15, "b: leaf02 delivered")
    kinds = [e["kind"] for e in b_api("/api/devices/leaf02/timeline")["events"]]
    for kind in ("offer", "bound", "rendered", "transfer-started", "transfer-finished"):
        assert kind in kinds, kinds
    assert kinds.index("offer") < kinds.index("bound") < kinds.index("transfer-finished"), kinds
    assert f"{mac} dhcp" not in pair.log("b").read_text(errors="replace")  # b never heard the device

    res = lab.run(dev, ["dig", f"@{SERVERS['b']}", "+tries=1", "+time=2", "+short", "leaf02.lab.test", "A"],
                  timeout=15)
    assert res.stdout.split() == [ip], res.stdout + res.stderr

    res = subprocess.run([*ZTP, "status", "--json", "--config", str(pair.configs["b"])], capture_output=True,
                         text=True, timeout=60, check=False, env={**os.environ, **ENV})
    assert res.returncode == 0, res.stderr
    status = {d["key"]: d for d in json.loads(res.stdout)["devices"]}
    assert status["leaf02"]["state"] == "delivered" and status["leaf02"]["ip"] == ip, status
    with psycopg.connect(pair.dsn) as conn:
        bound = conn.execute("SELECT count(*) FROM timeline WHERE key = 'leaf02' AND kind = 'bound'").fetchone()
    assert bound is not None and bound[0] == 1  # b merged a's row (DNS) without recording it again


# -- behind a relay that forwards to both -------------------------------------------------------------------
#
#   srv-a:s1 10.50.0.1/24 ─┐                                   ┌─ fleet / dev (10.70.0.0/24 by DHCP,
#   srv-b:s1 10.50.0.2/24 ─┼─ up(br0) ─ relay:up0 10.50.0.254   │   default route via 10.70.0.1)
#   route 10.70.0.0/24 via .254         relay:down0 10.70.0.1 ─ down(br0)
#                                       ip_forward=1, `ztp relay --server A --server B`

RELAYED = {"a": "10.50.0.1", "b": "10.50.0.2"}


def _relayed_config(tmp: Path, name: str, dsn: str, *, lease_time: int, relay: str = "10.70.0.1",
                    network: str = "10.70.0.0/24", pool: str = "10.70.0.100-10.70.0.250") -> Path:
    """Appliance `name`'s config: the shared PostgreSQL, listening on its upstream address, serving the
    access segment behind the relay at `relay` (`network`, `pool`)."""
    inv = tmp / "inventory.yaml"
    if not inv.exists():
        inv.write_text((REPO / "inventory.yaml").read_text())
    cfg = tmp / f"ztp-{name}.yaml"
    cfg.write_text(f"""state_dir: {tmp / f'state-{name}'}
state:
  backend: postgresql
  dsn: "{dsn}"
templates: {REPO / 'templates'}
inventory: {inv}
listen: [{RELAYED[name]}]
dhcp:
  interfaces: [s1]
  lease_time: {lease_time}
  relays: [10.50.0.254, {relay}]
  subnets:
    - network: 10.50.0.0/24
    - network: 10.60.0.0/24         # the inventory's reservations (not on this lab's wires)
    - network: {network}
      pool: {pool}
      routers: [{relay}]
tftp:
  root: {REPO / 'tftpboot'}
""")
    return cfg


@pytest.fixture(params=["ztp relay", "dhcrelay"])
def relayed(request: pytest.FixtureRequest, lab: Lab, tmp_path: Path, pg_dsn: str) -> tuple[Pair, str, str]:
    """Both appliances on an upstream segment behind a relay forwarding to both, `ztp relay` or ISC dhcrelay
    (`dhcrelay -id down0 -iu up0 A B`); (pair, access segment, which relay)."""
    pair = Pair(lab=lab, tmp=tmp_path, dsn=pg_dsn)
    up = lab.segment("up")
    relay = lab.ns("relay")
    lab.attach(up, relay, "up0", addr="10.50.0.254/24")
    lab.run(relay, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    down = lab.segment("down")
    lab.attach(down, relay, "down0", addr="10.70.0.1/24")
    for name, addr in RELAYED.items():
        pair.ns[name] = lab.ns(f"srv{name}")
        lab.attach(up, pair.ns[name], "s1", addr=f"{addr}/24")
        lab.run(pair.ns[name], ["ip", "route", "add", "10.70.0.0/24", "via", "10.50.0.254"])
    pair.seg = down
    if request.param == "dhcrelay":
        if shutil.which("dhcrelay") is None:
            skip_or_fail("dhcrelay is not installed (isc-dhcp-relay)")
        proc = lab.spawn(relay, ["dhcrelay", "-d", "-4", "--no-pid", "-id", "down0", "-iu", "up0", RELAYED["a"],
                                 RELAYED["b"]], log=tmp_path / "relay.log")
        lab.wait_for(lambda: lab.udp_listening(relay, 67) or proc.poll() is not None, 15, "dhcrelay to start")
        assert proc.poll() is None, (tmp_path / "relay.log").read_text(errors="replace")
        return pair, down, request.param
    bindings = tmp_path / "relay-bindings.json"
    proc = lab.spawn(relay, [*ZTP, "relay", "--client-interface", "down0", "--server", RELAYED["a"], "--server",
                             RELAYED["b"], "--bindings-file", str(bindings)], log=tmp_path / "relay.log", env=ENV)
    lab.wait_for(lambda: bindings.exists() or proc.poll() is not None, 15, "ztp relay to start")
    assert proc.poll() is None, (tmp_path / "relay.log").read_text(errors="replace")
    return pair, down, request.param


def _serve_relayed(pair: Pair, lease_time: int) -> None:
    for name in RELAYED:
        pair.configs[name] = _relayed_config(pair.tmp, name, pair.dsn, lease_time=lease_time)
    up = subprocess.run([*ZTP, "db", "upgrade", "--config", str(pair.configs["a"])], capture_output=True, text=True,
                        timeout=60, check=False, env={**os.environ, **ENV})
    assert up.returncode == 0, up.stdout + up.stderr
    for name in RELAYED:
        pair.procs[name] = pair.lab.spawn(pair.ns[name], [*ZTP, "serve", "--config", str(pair.configs[name]),
                                                          "--log-level", "debug"], log=pair.log(name), env=ENV)
    for name in RELAYED:
        proc, ns = pair.procs[name], pair.ns[name]
        pair.lab.wait_for(lambda p=proc, n=ns: (pair.lab.udp_listening(n, 67) and pair.lab.udp_listening(n, 69))
                          or p.poll() is not None, 30, f"ztp serve {name} listening")
        assert proc.poll() is None, pair.log(name).read_text()


def test_behind_a_relay_to_both_no_address_twice_and_the_survivor_keeps_a_client(
        relayed: tuple[Pair, str, str]) -> None:
    """A fleet through the relay gets no address twice from the two appliances; then a device keeping its
    lease (T1 10 s, T2 17.5 s) loses the appliance that granted it (SIGKILL). Behind `ztp relay` its unicast
    renewals, routed through the relay host, go unanswered, its broadcast REBINDING is relayed to both, and
    the survivor ACKs the same address. ISC dhcrelay reads its interface with a packet filter and so also
    picks up the unicast renewal crossing the relay host and relays it to both: there the survivor ACKs
    the renewal itself, at T1. Either way: the same address, no NAK, from the survivor."""
    pair, down, relay = relayed
    _serve_relayed(pair, lease_time=20)
    fleet = pair.lab.ns("fleet")
    pair.lab.attach(down, fleet, "eth0")
    count = 100
    code, out, err = _agent(pair.lab, fleet, "--count", str(count), "--concurrency", "50", "--mac-prefix", "02:5b:00",
                            "--out", str(pair.tmp / "out"), "--timeout", "60", "--no-progress", timeout=180)
    assert code == 0, f"{out.get('failed_reasons')}\n{err[-3000:]}"
    assert out["provisioned"] == count and len({d["ip"] for d in out["devices"]}) == count
    assert {d["server_id"] for d in out["devices"]} == set(RELAYED.values())

    dev = pair.lab.ns("dev")
    mac = "02:5b:01:00:00:01"
    pair.lab.attach(down, dev, "eth0", mac=mac)
    log = pair.tmp / "agent.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(["ip", "netns", "exec", dev, *ZTP, "agent", "--interface", "eth0", "--json",
                                 "--out", str(pair.tmp / "out-dev"), "--timeout", "30", "--stay", "45",
                                 "--arp-probes", "1"],
                                stdout=subprocess.PIPE, stderr=fh, env={**os.environ, **ENV})
    try:
        # Provisioned (its config fetched from the appliance that granted the lease), then keeping the lease.
        pair.lab.wait_for(lambda: " provisioned: " in log.read_text(errors="replace"), 40, "the agent provisioned")
        bound = re.search(r" bound ([\d.]+)/\d+ server ([\d.]+)", log.read_text())
        assert bound is not None, log.read_text()
        ip, server = bound.group(1), bound.group(2)
        granted_by = next(n for n, a in RELAYED.items() if a == server)
        survivor = next(n for n in RELAYED if n != granted_by)
        pair.kill(granted_by)
        killed_at = len(log.read_text(errors="replace"))
        moved = " rebound " if relay == "ztp relay" else " renewed "
        pair.lab.wait_for(lambda: moved in log.read_text(errors="replace")[killed_at:], 40,
                          f"{moved.strip()} by the survivor")
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads(stdout)
    assert result["ip"] == ip and result["naks"] == 0, result
    assert result["rebinds"] >= 1 or relay == "dhcrelay", result
    assert result["server_id"] == RELAYED[survivor], result
    text = pair.log(survivor).read_text(errors="replace")
    # Relayed, the appliance labels a REQUEST with ciaddr "renewing" whether the client broadcast it or not.
    assert re.search(rf"{mac} dhcp REQUEST \((rebinding|renewing)\) -> ACK {re.escape(ip)} .* via 10\.70\.0\.1",
                     text), text[-3000:]


# -- a boot storm behind a relay that forwards to both ------------------------------------------------------
#
# The topology above with a /20 behind the relay (relay:down0 10.72.0.1/20), so that two storms of 1,000
# devices each fit in one pool.

STORM = 1000
STORM_RELAY = "10.72.0.1"


@pytest.fixture(params=["ztp relay", "dhcrelay"])
def storm(request: pytest.FixtureRequest, lab: Lab, tmp_path: Path, pg_dsn: str) -> tuple[Pair, str]:
    """Both appliances serving (PostgreSQL) behind `ztp relay` or ISC dhcrelay forwarding to both, a /20 on
    the access side; (pair, the fleet's namespace)."""
    pair = Pair(lab=lab, tmp=tmp_path, dsn=pg_dsn)
    up = lab.segment("up")
    relay = lab.ns("relay")
    lab.attach(up, relay, "up0", addr="10.50.0.254/24")
    lab.run(relay, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    down = lab.segment("down")
    lab.attach(down, relay, "down0", addr=f"{STORM_RELAY}/20")
    for name, addr in RELAYED.items():
        pair.ns[name] = lab.ns(f"srv{name}")
        lab.attach(up, pair.ns[name], "s1", addr=f"{addr}/24")
        lab.run(pair.ns[name], ["ip", "route", "add", "10.72.0.0/20", "via", "10.50.0.254"])
    pair.seg = down
    ensure_neighbour_capacity(8192)  # the relay's namespace holds a neighbour per device
    log = tmp_path / "relay.log"
    if request.param == "dhcrelay":
        if shutil.which("dhcrelay") is None:
            skip_or_fail("dhcrelay is not installed (isc-dhcp-relay)")
        proc = lab.spawn(relay, ["dhcrelay", "-d", "-4", "--no-pid", "-id", "down0", "-iu", "up0", RELAYED["a"],
                                 RELAYED["b"]], log=log)
        lab.wait_for(lambda: lab.udp_listening(relay, 67) or proc.poll() is not None, 15, "dhcrelay to start")
    else:
        bindings = tmp_path / "relay-bindings.json"
        proc = lab.spawn(relay, [*ZTP, "relay", "--client-interface", "down0", "--server", RELAYED["a"], "--server",
                                 RELAYED["b"], "--bindings-file", str(bindings)], log=log, env=ENV)
        lab.wait_for(lambda: bindings.exists() or proc.poll() is not None, 15, "ztp relay to start")
    assert proc.poll() is None, log.read_text(errors="replace")
    for name in RELAYED:
        pair.configs[name] = _relayed_config(tmp_path, name, pg_dsn, lease_time=3600, relay=STORM_RELAY,
                                             network="10.72.0.0/20", pool="10.72.1.0-10.72.15.250")
    up_ = subprocess.run([*ZTP, "db", "upgrade", "--config", str(pair.configs["a"])], capture_output=True,
                         text=True, timeout=60, check=False, env={**os.environ, **ENV})
    assert up_.returncode == 0, up_.stdout + up_.stderr
    for name in RELAYED:
        pair.procs[name] = lab.spawn(pair.ns[name], [*ZTP, "serve", "--config", str(pair.configs[name])],
                                     log=pair.log(name), env=ENV)
    for name in RELAYED:
        p, ns = pair.procs[name], pair.ns[name]
        lab.wait_for(lambda p=p, n=ns: (lab.udp_listening(n, 67) and lab.udp_listening(n, 69)) or p.poll() is not None,
                     30, f"ztp serve {name} listening")
        assert p.poll() is None, pair.log(name).read_text()
    fleet = lab.ns("fleet")
    lab.attach(down, fleet, "eth0")
    return pair, fleet


def _storm_argv(fleet: str, prefix: str, out: Path, timeout: int = 120) -> list[str]:
    return ["ip", "netns", "exec", fleet, *ZTP, "agent", "--interface", "eth0", "--json", "--count", str(STORM),
            "--concurrency", "200", "--mac-prefix", prefix, "--out", str(out), "--timeout", str(timeout),
            "--no-progress"]


def _check_storm(pair: Pair, out: dict[str, Any], err: str, prefix: str) -> list[dict[str, Any]]:
    """Every device provisioned, no address granted twice (the agents' results and the database agree),
    a sample of configs byte-identical to `ztp render`; the devices."""
    assert out.get("provisioned") == STORM and out.get("failed") == 0, f"{out.get('failed_reasons')}\n{err[-3000:]}"
    devices: list[dict[str, Any]] = out["devices"]
    ips = Counter(d["ip"] for d in devices)
    assert len(ips) == STORM, f"granted twice: {[ip for ip, n in ips.items() if n > 1]}"
    with psycopg.connect(pair.dsn) as conn:
        rows = [(str(m), str(ip)) for m, ip in conn.execute(
            "SELECT mac, host(ip) FROM leases WHERE state = 'bound' AND mac LIKE %s", (f"{prefix}%",))]
        twice = conn.execute("SELECT host(ip) FROM leases GROUP BY ip HAVING count(*) > 1").fetchall()
    assert not twice, twice
    assert len(rows) == STORM and len({ip for _, ip in rows}) == STORM, len(rows)
    assert dict(rows) == {d["mac"]: d["ip"] for d in devices}, "the database and the agents disagree"
    # A sample (every 40th: 25 devices) is exactly what `ztp render` prints on either appliance.
    for i, dev in enumerate(devices[:: 40]):
        cfg = pair.configs["ab"[i % 2]]
        res = subprocess.run([*ZTP, "render", "--config", str(cfg), "--mac", dev["mac"]], capture_output=True,
                             timeout=60, check=True, env={**os.environ, **ENV})
        assert Path(dev["path"]).read_bytes() == res.stdout, dev["mac"]
        assert hashlib.sha256(res.stdout).hexdigest() == dev["sha256"], dev["mac"]
    return devices


def test_boot_storm_of_1000_behind_a_relay_to_both(storm: tuple[Pair, str]) -> None:
    """1,000 `ztp agent` devices boot at once behind a relay forwarding every request to both appliances:
    every one provisioned, both appliances grant, no address twice."""
    pair, fleet = storm
    res = subprocess.run(_storm_argv(fleet, "02:5c:00", pair.tmp / "out"), capture_output=True, text=True,
                         timeout=240, check=False, env={**os.environ, **ENV})
    out = json.loads(res.stdout) if res.stdout.strip() else {}
    devices = _check_storm(pair, out, res.stderr, "02:5c:00")
    served = Counter(d["server_id"] for d in devices)
    print(f"\n{STORM} devices relayed to two appliances: {out['wall_seconds']} s, {out['rate_per_second']}/s, "
          f"by server {dict(served)}")
    assert set(served) == set(RELAYED.values()), served
    for name in RELAYED:
        assert "Traceback" not in pair.log(name).read_text(errors="replace")


def test_boot_storm_survives_an_appliance_killed_in_the_middle(storm: tuple[Pair, str]) -> None:
    """A storm of 1,000 behind the relay; once a third of it is bound in the database appliance a is
    killed (SIGKILL, by PID). Devices whose exchange was with a at that moment (its OFFER taken, or its
    TFTP transfer under way) fail that boot attempt (no ACK for 10 s, or the TFTP timeout) and, like a
    switch's ZTP loop (`ztp agent --boot-attempts`, default 3), forget the address and DISCOVER again: the
    survivor provisions them. So every device provisions in that storm, after the kill through b only.
    Then the whole fleet boots again: every device provisions through the survivor, keeping its address,
    and no address is granted twice."""
    pair, fleet = storm
    prefix = "02:5d:00"
    log = pair.tmp / "storm.err"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(_storm_argv(fleet, prefix, pair.tmp / "out", timeout=60), stdout=subprocess.PIPE,
                                stderr=fh, env={**os.environ, **ENV})
    try:
        def bound() -> int:
            with psycopg.connect(pair.dsn) as conn:
                row = conn.execute("SELECT count(*) FROM leases WHERE state = 'bound'").fetchone()
            return int(row[0]) if row else 0

        pair.lab.wait_for(lambda: bound() >= STORM // 3 or proc.poll() is not None, 120, "a third of the storm bound")
        assert proc.poll() is None, "the storm ended before the kill"
        pair.kill("a")
        after_kill = bound()
        stdout, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    first = json.loads(stdout) if stdout.strip() else {}
    err = log.read_text(errors="replace")
    assert first.get("count") == STORM, err[-3000:]
    done = [d for d in first["devices"] if d.get("status") == "provisioned"]
    served = Counter(d["server_id"] for d in done)
    assert served[RELAYED["a"]] <= after_kill < STORM, served  # after the kill only b can serve
    assert len({d["ip"] for d in done}) == len(done)
    failed = [line for line in err.splitlines() if " failed at " in line]
    assert len(done) == STORM and not failed, f"{first.get('failed_reasons')}\n{failed[:10]}"
    # Every earlier attempt ended on a (its OFFER never ACKed, or its TFTP), and the next one went to b.
    retried = [d for d in done if d["attempts"] > 1]
    for dev in retried:
        assert dev["server_id"] == RELAYED["b"], dev
        for f in dev["attempt_failures"]:
            assert (f["stage"] == "tftp" and f"from {RELAYED['a']}:" in f["reason"]
                    or f["stage"] == "request" and f"by {RELAYED['a']} but no ACK" in f["reason"]), dev
    print(f"\n{STORM} devices, appliance a killed at {after_kill} bound: {first['wall_seconds']} s, "
          f"{len(done)} provisioned {dict(served)}, {len(retried)} on a later attempt "
          f"{dict(Counter(f['stage'] for d in retried for f in d['attempt_failures']))}")

    res = subprocess.run(_storm_argv(fleet, prefix, pair.tmp / "out2"), capture_output=True, text=True,
                         timeout=240, check=False, env={**os.environ, **ENV})
    again = json.loads(res.stdout) if res.stdout.strip() else {}
    devices = _check_storm(pair, again, res.stderr, prefix)
    assert {d["server_id"] for d in devices} == {RELAYED["b"]}
    now = {d["mac"]: d["ip"] for d in devices}
    assert all(now[d["mac"]] == d["ip"] for d in done), "a device provisioned before changed address"
    print(f"the fleet again through b: {again['wall_seconds']} s")
