"""DNS in `ztp serve` end to end: names follow DHCP leases, queried with real `dig` inside namespaces.

Topology (tests/integration/appliance.py): srv:s1 10.60.0.1/24 -- seg -- clients. The subnet config has
no `dns_servers` or `domain`, so option 6 and option 15 come from the DNS defaults (the appliance's
address, the zone).
"""

from __future__ import annotations

import ast
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.appliance import DATA, REPO, ApplianceLab, parse_env, write_config
from ztp.lab import Lab, dhclient_argv

SERVER = "10.60.0.1"
PROBE_IP = "10.60.0.250"  # a static address outside the pool, for a namespace that only asks questions
BIG = [f"10.60.1.{i}" for i in range(60)]  # ~1 kB of A records: more than a 512-octet UDP answer holds
AGENT = [sys.executable, "-m", "ztp.agent.cli"]

INVENTORY = (REPO / "inventory.yaml").read_text() + """\
  - hostname: leaf09
    mac: 02:00:00:00:00:09
    template: leaf.j2
    vars: {asn: 65009, loopback: 10.255.0.9, vlans: [10]}
    options: {66: ztp.lab.test}     # the boot server by name: resolved through option 6
"""
DNS_EXTRA = "  records:\n    ntp: 10.60.0.5\n    big: [" + ", ".join(BIG) + "]\n"


@dataclass(frozen=True)
class Answer:
    """What one `dig` printed: the status and the answer section as (name, ttl, type, value)."""

    status: str
    flags: frozenset[str]
    records: list[tuple[str, int, str, str]]

    def values(self, rtype: str) -> list[str]:
        """The values of the answer records of type `rtype`."""
        return [value for _, _, t, value in self.records if t == rtype]

    def ttl(self) -> int:
        """The (single) TTL of the answer's records."""
        ttls = {ttl for _, ttl, _, _ in self.records}
        assert len(ttls) == 1, self.records
        return ttls.pop()


def dig(lab: Lab, ns: str, name: str, rtype: str = "A", *opts: str) -> Answer:
    """`dig @SERVER name rtype` inside `ns` (one try, no search list) and its parsed output."""
    res = lab.run(ns, ["dig", f"@{SERVER}", "+tries=1", "+time=2", "+nocookie", "+noall", "+comments",
                       "+answer", *opts, name, rtype], timeout=15, check=False)
    status = re.search(r"status: (\w+)", res.stdout)
    assert status, f"no reply to {name} {rtype}: {res.stdout} {res.stderr}"
    flags = re.search(r";; flags: ([a-z ]*);", res.stdout)
    records = []
    for line in res.stdout.splitlines():
        if line and not line.startswith(";"):
            owner, ttl, _cls, rt, value = line.split(None, 4)
            records.append((owner, int(ttl), rt, value))
    return Answer(status.group(1), frozenset(flags.group(1).split()) if flags else frozenset(), records)


def reverse(ip: str) -> str:
    """The in-addr.arpa name of `ip` (RFC 1035 §3.5)."""
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


def seed_lease(tmp: Path, *, ip: str, mac: str, hostname: str, expires: float) -> None:
    """A bound lease on disk before `ztp serve` starts, as after a restart."""
    from ztp.leases.store import database_path

    path = database_path(tmp / "state")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS leases (ip TEXT PRIMARY KEY, client TEXT NOT NULL, "
                     "mac TEXT NOT NULL, state TEXT NOT NULL, expires REAL NOT NULL, updated REAL NOT NULL, "
                     "hostname TEXT)")
        conn.execute("INSERT INTO leases VALUES (?, ?, ?, 'bound', ?, ?, ?)",
                     (ip, mac, mac, expires, time.time(), hostname))
    conn.close()


def config(tmp: Path, *, lease_time: int = 3600, dns_extra: str = "") -> Path:
    """The example config with DNS on, static records, and option 6/15 left to the DNS defaults."""
    cfg = write_config(tmp, inventory=INVENTORY, lease_time=lease_time, config_extra=DNS_EXTRA + dns_extra)
    text = cfg.read_text()
    for line in ("      dns_servers: [10.60.0.1]\n", "      domain: lab.test\n"):
        assert line in text
        text = text.replace(line, "")
    cfg.write_text(text)
    return cfg


def make_appliance(lab: Lab, tmp: Path, *, lease_time: int = 3600, dns_extra: str = "") -> ApplianceLab:
    """A started appliance with DNS on (plus `dns_extra` lines in its dns: section)."""
    app = ApplianceLab(lab=lab, tmp=tmp, config=config(tmp, lease_time=lease_time, dns_extra=dns_extra)).build()
    app.start()
    lab.wait_for(lambda: lab.udp_listening(app.srv, 53), 10, "dns listening")
    return app


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    app = make_appliance(lab, tmp_path)
    yield app
    if app.proc is not None:
        app.stop()


def probe(app: ApplianceLab) -> str:
    """A namespace on the segment with a static address, to ask questions from."""
    if "probe" in app.clients:
        return app.clients["probe"]
    ns = app.client("probe", "02:00:00:00:0f:fe")
    app.lab.run(ns, ["ip", "addr", "add", f"{PROBE_IP}/24", "dev", "eth0"])
    return ns


def release(app: ApplianceLab, ns: str, ip: str) -> None:
    """`dhclient -r` with the lease file of the bound run: a DHCPRELEASE for `ip`."""
    app.lab.run(ns, ["dhclient", "-4", "-r", "-lf", str(app.tmp / f"{ns}.leases"), "-pf",
                     str(app.tmp / f"{ns}-r.pid"), "-sf", "/bin/true", "eth0"], timeout=20)
    app.lab.wait_for(lambda: f"RELEASE {ip}" in app.log.read_text(), 10, "RELEASE logged")


def lease(app: ApplianceLab, ns: str, *, conf: Path = DATA / "dhclient.conf") -> dict[str, str]:
    """Run ISC dhclient once in `ns` until bound; return the variables its script saw.

    Waits for dhclient's own "bound to" line, which it prints only after the script has finished (the
    script's first line alone would mean it may still be writing, or be killed mid-way by the stop).
    """
    out, log = app.tmp / f"dhclient-{ns}.env", app.tmp / f"dhclient-{ns}.log"
    argv = dhclient_argv("eth0", lease_file=app.tmp / f"{ns}.leases", pid_file=app.tmp / f"{ns}.pid",
                         script=DATA / "dhclient-script", conf=conf, out_file=out)
    proc = app.lab.spawn(ns, argv, log=log)
    try:
        app.lab.wait_for(lambda: log.exists() and "bound to " in log.read_text(), 25, f"dhclient in {ns} bound")
    finally:
        app.lab.stop(proc)
    return parse_env(out.read_text())


def host_name_conf(tmp: Path, name: str) -> Path:
    """tests/data/dhclient.conf plus `send host-name` (option 12, RFC 2132 §3.14)."""
    conf = tmp / f"dhclient-{name}.conf"
    conf.write_text((REPO / "tests" / "data" / "dhclient.conf").read_text() + f'send host-name "{name}";\n')
    return conf


def test_reserved_device_and_appliance_resolve_right_after_start(appliance: ApplianceLab) -> None:
    lab, ns = appliance.lab, probe(appliance)
    a = dig(lab, ns, "leaf01.lab.test")
    assert a.status == "NOERROR" and a.values("A") == ["10.60.0.11"] and "aa" in a.flags
    assert "ra" not in a.flags  # no recursion offered
    ptr = dig(lab, ns, reverse("10.60.0.11"), "PTR")
    assert ptr.status == "NOERROR" and ptr.values("PTR") == ["leaf01.lab.test."]
    assert dig(lab, ns, "spine01.lab.test").values("A") == ["10.60.0.21"]
    # The appliance's own name is the address it serves the segment on; static records are there too.
    assert dig(lab, ns, "ztp.lab.test").values("A") == [SERVER]
    assert dig(lab, ns, reverse(SERVER), "PTR").values("PTR") == ["ztp.lab.test."]
    assert dig(lab, ns, "ntp.lab.test").values("A") == ["10.60.0.5"]
    soa = dig(lab, ns, "lab.test", "SOA")
    assert soa.status == "NOERROR" and soa.values("SOA")[0].startswith("ztp.lab.test. hostmaster.lab.test.")
    assert dig(lab, ns, "lab.test", "NS").values("NS") == ["ztp.lab.test."]
    # leaf02 has no reservation and no lease yet: no name.
    assert dig(lab, ns, "leaf02.lab.test").status == "NXDOMAIN"


def test_leased_names_follow_the_lease_and_option_12(appliance: ApplianceLab) -> None:
    lab = appliance.lab
    ns = appliance.client("leaf02", "02:00:00:00:00:02")
    env = lease(appliance, ns)
    ip = env["new_ip_address"]
    assert ip.startswith("10.60.0.1") and ip != "10.60.0.11"
    # Option 6 and 15 default to the appliance and the zone when DNS is on.
    assert env["new_domain_name_servers"] == SERVER and env["new_domain_name"] == "lab.test"
    lease_time = int(env["new_dhcp_lease_time"])
    a = dig(lab, ns, "leaf02.lab.test")
    assert a.status == "NOERROR" and a.values("A") == [ip]
    assert 0 < a.ttl() <= min(300, lease_time)
    ptr = dig(lab, ns, reverse(ip), "PTR")
    assert ptr.values("PTR") == ["leaf02.lab.test."] and ptr.ttl() <= lease_time

    # An unlisted device's option 12 becomes its name, sanitised to one DNS label.
    sw = appliance.client("swx", "02:00:00:00:0a:01")
    sw_ip = lease(appliance, sw, conf=host_name_conf(appliance.tmp, "Sw_X.example.org"))["new_ip_address"]
    assert dig(lab, sw, "sw-x.lab.test").values("A") == [sw_ip]
    assert dig(lab, sw, reverse(sw_ip), "PTR").values("PTR") == ["sw-x.lab.test."]

    # A device claiming an inventory name (or the appliance's, or a static record's) does not get it.
    for i, claimed in enumerate(("leaf01", "leaf03", "ztp", "ntp")):
        ns_i = appliance.client(f"imp{i}", f"02:00:00:00:0b:0{i}")
        imp_ip = lease(appliance, ns_i, conf=host_name_conf(appliance.tmp, claimed))["new_ip_address"]
        assert dig(lab, ns_i, reverse(imp_ip), "PTR").status == "NXDOMAIN", claimed
    pinned = {"leaf01": ["10.60.0.11"], "ztp": [SERVER], "ntp": ["10.60.0.5"]}
    for name, addrs in pinned.items():
        assert dig(lab, sw, f"{name}.lab.test").values("A") == addrs
    assert dig(lab, sw, "leaf03.lab.test").status == "NXDOMAIN"
    rows = json.loads(appliance.ztp("leases", "--json").stdout)
    assert {r["hostname"] for r in rows if r["ip"] == sw_ip} == {"sw-x"}


def test_name_gone_after_release(appliance: ApplianceLab) -> None:
    lab = appliance.lab
    ns = appliance.client("leaf02", "02:00:00:00:00:02")
    ip = lease(appliance, ns)["new_ip_address"]
    assert dig(lab, ns, "leaf02.lab.test").values("A") == [ip]
    release(appliance, ns, ip)
    watcher = probe(appliance)
    gone = dig(lab, watcher, "leaf02.lab.test")
    assert gone.status == "NXDOMAIN" and not gone.records
    assert dig(lab, watcher, reverse(ip), "PTR").status == "NXDOMAIN"
    # The reservation's name is static: leaf01 releasing its lease keeps leaf01.lab.test.
    l1 = appliance.client("leaf01", "02:00:00:00:00:01")
    assert lease(appliance, l1)["new_ip_address"] == "10.60.0.11"
    release(appliance, l1, "10.60.0.11")
    assert dig(lab, watcher, "leaf01.lab.test").values("A") == ["10.60.0.11"]


def test_nxdomain_inside_refused_outside_and_tcp_fallback(appliance: ApplianceLab) -> None:
    lab, ns = appliance.lab, probe(appliance)
    nx = dig(lab, ns, "nosuch.lab.test")
    assert nx.status == "NXDOMAIN" and "aa" in nx.flags
    assert dig(lab, ns, reverse("10.60.0.77"), "PTR").status == "NXDOMAIN"
    for outside in ("example.com", "lab.test.example.com", "com"):
        assert dig(lab, ns, outside).status == "REFUSED", outside
    assert dig(lab, ns, reverse("192.0.2.1"), "PTR").status == "REFUSED"  # not a served subnet
    # A type we do not serve: empty NOERROR (NODATA), not NXDOMAIN.
    nodata = dig(lab, ns, "leaf01.lab.test", "AAAA")
    assert nodata.status == "NOERROR" and not nodata.records
    # Over UDP the big RRset does not fit (TC, empty); dig retries over TCP and gets all of it.
    udp = dig(lab, ns, "big.lab.test", "A", "+ignore", "+noedns")
    assert "tc" in udp.flags and not udp.records
    full = dig(lab, ns, "big.lab.test", "A", "+noedns")
    assert sorted(full.values("A")) == sorted(BIG)
    assert dig(lab, ns, "leaf01.lab.test", "A", "+tcp").values("A") == ["10.60.0.11"]


def test_ttl_capped_by_lease_and_name_expires(lab: Lab, tmp_path: Path) -> None:
    # A lease on disk that ends 4 s from now (the shortest lease we grant is 60 s, too slow to wait out):
    # its name is served with a TTL no longer than what is left, then hidden, then swept from the zone.
    seed_lease(tmp_path, ip="10.60.0.150", mac="02:00:00:00:0c:01", hostname="shortlived",
               expires=time.time() + 4)
    app = make_appliance(lab, tmp_path, lease_time=60)
    ns = probe(app)
    short = dig(lab, ns, "shortlived.lab.test")
    assert short.values("A") == ["10.60.0.150"] and short.ttl() < 4

    c = app.client("leaf02", "02:00:00:00:00:02")
    env = lease(app, c)
    assert env["new_dhcp_lease_time"] == "60"
    first = dig(lab, ns, "leaf02.lab.test").ttl()
    assert 0 < first <= 60
    app.lab.wait_for(lambda: dig(lab, ns, "leaf02.lab.test").ttl() < first, 4, "TTL counting down")
    # The lease's end hides the name at once; the sweep then drops it from the zone.
    app.lab.wait_for(lambda: dig(lab, ns, "shortlived.lab.test").status == "NXDOMAIN", 10, "expired name gone")
    assert dig(lab, ns, reverse("10.60.0.150"), "PTR").status == "NXDOMAIN"
    app.lab.wait_for(lambda: "dns shortlived.lab.test. removed" in app.log.read_text(), 10, "sweep logged")
    app.stop()


def test_option_66_name_resolved_through_option_6_and_provisioned(appliance: ApplianceLab) -> None:
    ns = appliance.client("leaf09", "02:00:00:00:00:09")
    out = appliance.tmp / "agent-out"
    res = subprocess.run(["ip", "netns", "exec", ns, *AGENT, "--interface", "eth0", "--mac", "02:00:00:00:00:09",
                          "--json", "--out", str(out), "--timeout", "30"], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)), check=False)
    assert res.returncode == 0, f"agent exited {res.returncode}: {res.stdout}\n{res.stderr}"
    result: dict[str, Any] = json.loads(res.stdout)
    assert result["options"]["66"] == "ztp.lab.test"
    assert result["boot_server_source"] == "option66" and result["boot_server"] == SERVER
    # The log is written in batches off the packet path (up to 50 ms late): wait for the line.
    logged = rf"dns {result['ip']}:\d+ udp ztp\.lab\.test\. A -> rcode 0"
    appliance.lab.wait_for(lambda: re.search(logged, appliance.log.read_text()) is not None, 5, "dns query logged")
    expected = appliance.rendered(hostname="leaf09")
    assert b"hostname leaf09" in expected
    assert (out / "leaf09.cfg").read_bytes() == expected
    assert dig(appliance.lab, ns, "leaf09.lab.test").values("A") == [result["ip"]]


FLOOD = r"""
import os, random, socket, struct, sys, time
random.seed(5)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
header = lambda qd, flags=0x0100: struct.pack("!HHHHHH", random.getrandbits(16), flags, qd, 0, 0, 0)
kinds = [
    lambda: os.urandom(random.randrange(12)),                                   # shorter than a header
    lambda: header(1) + b"\x07example",                                         # name cut short
    lambda: header(1) + b"\xc0\x0c\x00\x01\x00\x01",                            # pointer to itself
    lambda: header(1) + b"\x3f" + b"a" * 20,                                    # label beyond the end
    lambda: header(1, 0x8180) + b"\x04leaf\x03lab\x04test\x00\x00\x01\x00\x01",  # a response, not a query
    lambda: header(3) + b"\x00\x00\x01\x00\x01",                                # 3 questions promised, 1 sent
]
start = time.monotonic()
for i in range(10000):
    s.sendto(kinds[i % len(kinds)](), ("10.60.0.1", 53))
    if i % 100 == 99:  # bounded pace: about 10,000 packets/s
        time.sleep(max(0.0, start + (i + 1) / 10000 - time.monotonic()))
"""


def dns_counters(app: ApplianceLab) -> dict[str, int]:
    """Stop the appliance and return the DNS counters it logs on the way out."""
    assert app.stop() == 0, app.log.read_text()[-2000:]
    match = re.search(r"dns counters (\{.*\})", app.log.read_text())
    assert match, app.log.read_text()[-2000:]
    counters: dict[str, int] = ast.literal_eval(match.group(1))
    return counters


def test_ten_thousand_malformed_packets_leave_dns_and_dhcp_serving(lab: Lab, tmp_path: Path) -> None:
    # The rate limit is off so that every one of the 10,000 junk datagrams (one source) reaches the parser.
    appliance = make_appliance(lab, tmp_path, dns_extra="  rate_limit: 0\n")
    ns = probe(appliance)
    lab.run(ns, ["python3", "-c", FLOOD], timeout=60)
    lab.wait_for(lambda: appliance.log.read_text().count("dns malformed") >= 9_000, 20, "malformed counted")
    assert appliance.proc is not None and appliance.proc.poll() is None
    assert dig(lab, ns, "leaf01.lab.test").values("A") == ["10.60.0.11"]
    c = appliance.client("after", "02:00:00:00:0d:01")
    env = lease(appliance, c)
    assert env["new_ip_address"].startswith("10.60.0.1")
    assert dig(lab, c, "nosuch.lab.test").status == "NXDOMAIN"
    counters = dns_counters(appliance)
    assert counters["malformed"] >= 9_900 and "rate_limited" not in counters, counters


# Valid queries from one source at about 3,000/s until SIGTERM (at most 30 s); prints "sent N replies M".
QUERY_FLOOD = r"""
import signal, socket, struct, sys, time
query = struct.pack("!HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0) + b"\x06leaf01\x03lab\x04test\x00\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
sent = replies = 0
start = time.monotonic()
while not stop and time.monotonic() - start < 30:
    for _ in range(30):
        s.sendto(query, ("10.60.0.1", 53))
        sent += 1
    while True:
        try:
            s.recv(4096)
            replies += 1
        except BlockingIOError:
            break
    time.sleep(max(0.0, start + sent / 3000 - time.monotonic()))
print(f"sent {sent} replies {replies} in {time.monotonic() - start:.1f}s", flush=True)
"""


def test_query_flood_from_one_source_is_rate_limited_and_others_are_served(lab: Lab, tmp_path: Path) -> None:
    # Default limit (200 q/s per source, bursts of 400): the flooder gets about that many answers, while a
    # device gets its lease and its own answers during the flood.
    appliance = make_appliance(lab, tmp_path)
    flooder = probe(appliance)
    out = appliance.tmp / "flood.out"
    flood = lab.spawn(flooder, ["python3", "-c", QUERY_FLOOD], log=out)
    started = time.monotonic()
    try:
        lab.wait_for(lambda: "dns rate limit:" in appliance.log.read_text(), 10, "rate limiting logged")
        c = appliance.client("during", "02:00:00:00:0d:02")
        env = lease(appliance, c)
        assert env["new_ip_address"].startswith("10.60.0.1")
        assert dig(lab, c, "leaf01.lab.test").values("A") == ["10.60.0.11"]
        assert dig(lab, c, "nosuch.lab.test").status == "NXDOMAIN"
        assert flood.poll() is None, out.read_text()  # the flood was on all along
    finally:
        lab.stop(flood)
    elapsed = time.monotonic() - started
    sent, replies = (int(n) for n in re.findall(r"sent (\d+) replies (\d+)", out.read_text())[0])
    assert sent >= 1000 * elapsed, out.read_text()  # a real flood, even on a busy machine
    assert replies <= 400 + 200 * (elapsed + 1), out.read_text()
    counters = dns_counters(appliance)
    assert counters["rate_limited"] >= sent - replies - 50, (counters, sent, replies)
    assert counters["rate_limited"] + counters["queries"] >= sent, (counters, sent)
