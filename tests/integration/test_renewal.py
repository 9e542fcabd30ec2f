"""Lease renewal at T1 (RFC 2131 §4.4.5) through relays and on the appliance's own segment (issue 9).

A client behind a relay renews by unicasting its REQUEST (giaddr 0, ciaddr set) straight to the server
identifier: it reaches the appliance on its upstream interface, not through the relay. The appliance must
pick the subnet from ciaddr there (RFC 2131 §4.3.2; RFC 3527 link-selection and giaddr still win) and
answer by unicast to ciaddr, or the client falls back to a broadcast REBIND at T2 every time.

Leases are 20 s (T1 10 s, T2 17.5 s): two renewals take about 20 s after the first ACK. The appliance
side is captured with tcpdump and decoded with tshark, a decoder we did not write.

Topology (every address exists only inside the lab's namespaces)::

    direct --[seg]-- s1 10.60.0.1 [srv] r1 10.50.0.1 ---- up0 10.50.0.2 [relay] down0 10.70.0.1 --[sega]-- client
                         route 10.70.0.0/24 via .2            ip_forward=1       route 10.50.0.0/24 via 10.70.0.1
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from tests.integration.appliance import DATA, REPO, ApplianceLab
from ztp.dhcp.packet import BOOTREQUEST, BROADCAST_FLAG, DhcpPacket, build, mac_to_chaddr, parse
from ztp.lab import Lab, dhclient_argv

pytestmark = pytest.mark.netns

LEASE = 20  # seconds: T1 = 10 s, T2 = 17.5 s
SERVER = "10.50.0.1"  # the appliance's upstream address: the server id relayed clients see
RELAY_UP = "10.50.0.2"
RELAY_DOWN = "10.70.0.1"
DIRECT_SERVER = "10.60.0.1"
RELAYED_NET = IPv4Network("10.70.0.0/24")
UPSTREAM_NET = IPv4Network("10.50.0.0/24")
ZERO = "0.0.0.0"
BROADCAST = "255.255.255.255"
ENV = {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}

REQUEST, ACK, NAK = 3, 5, 6
NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}


def _need(*programs: str) -> None:
    for prog in programs:
        if shutil.which(prog) is None:
            pytest.fail(f"{prog} is required (installed by `make setup`)")


def write_config(tmp: Path, *, interfaces: str, options: str = "{}") -> Path:
    """Three subnets: the direct segment, the upstream link (served only when r1 is in `interfaces`) and the
    relayed segment; unlisted devices get `<mac>.cfg` so the agent has a file to fetch."""
    (tmp / "templates").mkdir()
    (tmp / "tftpboot").mkdir()
    (tmp / "templates" / "default.j2").write_text("hostname {{ hostname }}\n")
    (tmp / "inventory.yaml").write_text("defaults:\n  template: default.j2\ndevices: []\n")
    cfg = tmp / "ztp.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        state_dir: {tmp / 'state'}
        templates: {tmp / 'templates'}
        inventory: {tmp / 'inventory.yaml'}
        dhcp:
          interfaces: {interfaces}
          lease_time: {LEASE}
          options: {options}
          subnets:
            - network: 10.60.0.0/24
              pool: 10.60.0.100-10.60.0.199
              routers: [10.60.0.1]
            - network: 10.50.0.0/24
              pool: 10.50.0.100-10.50.0.199
            - network: 10.70.0.0/24
              pool: 10.70.0.100-10.70.0.199
              routers: [10.70.0.1]
        tftp:
          root: {tmp / 'tftpboot'}
    """))
    return cfg


# -- what the capture saw -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One DHCP message in a capture, as tshark decoded it."""

    t: float
    src: str
    dst: str
    ip_len: int
    mtype: int
    xid: str
    ciaddr: str
    yiaddr: str
    giaddr: str
    options: frozenset[int]

    def __str__(self) -> str:
        return (f"+{self.t:6.2f}s {NAMES.get(self.mtype, self.mtype):8} {self.src} -> {self.dst} xid={self.xid} "
                f"ciaddr={self.ciaddr} yiaddr={self.yiaddr} giaddr={self.giaddr}")


_FIELDS = ("frame.time_relative", "ip.src", "ip.dst", "ip.len", "dhcp.option.dhcp", "dhcp.id", "dhcp.ip.client",
           "dhcp.ip.your", "dhcp.ip.relay", "dhcp.option.type")


def decode(pcap: Path) -> list[Seen]:
    """The DHCP messages of a tcpdump capture, decoded by tshark."""
    argv = ["tshark", "-n", "-r", str(pcap), "-Y", "dhcp", "-T", "fields", "-E", "separator=|",
            "-E", "occurrence=a", "-E", "aggregator=,"]
    for name in _FIELDS:
        argv += ["-e", name]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, f"tshark failed: {res.stderr}"
    out: list[Seen] = []
    for line in res.stdout.splitlines():
        t, src, dst, ip_len, mtype, xid, ciaddr, yiaddr, giaddr, types = line.split("|")
        if not mtype:
            continue  # BOOTP without option 53
        out.append(Seen(float(t), src, dst, int(ip_len), int(mtype), xid, ciaddr, yiaddr, giaddr,
                        frozenset(int(c) for c in types.split(",") if c)))
    return out


def story(seen: list[Seen]) -> str:
    """The capture as lines for an assertion message."""
    return "\n".join(f"  {s}" for s in seen) or "  (nothing captured)"


def renewal_problems(seen: list[Seen], client: str, server: str, *, renewals: int = 2,
                     ack_ciaddr: bool = True, client_id: bool = False) -> list[str]:
    """What is wrong with the client's renewals in an appliance-side capture (empty: all good).

    Good means: at least `renewals` unicast RENEWING REQUESTs (client -> server id, ciaddr set, giaddr 0),
    each answered within 2 s by an ACK unicast to ciaddr for the same address (carrying ciaddr when
    `ack_ciaddr`, option 61 when `client_id`); no NAK; no REBIND (a REQUEST with ciaddr set that came by
    broadcast or through a relay, other than a relay's copy of a unicast renewal: ISC dhcrelay also relays
    unicast requests it sees passing through). ISC dhclient keeps one xid for its whole run, so messages
    are paired by xid and time.
    """
    problems: list[str] = []
    renewing = [s for s in seen if s.mtype == REQUEST and s.src == client and s.dst == server
                and s.ciaddr == client and s.giaddr == ZERO]
    acks = [s for s in seen if s.mtype == ACK and s.dst == client and s.giaddr == ZERO and s.yiaddr == client]

    def answer(req: Seen) -> Seen | None:
        return next((a for a in acks if a.xid == req.xid and req.t <= a.t <= req.t + 2), None)

    answered = [(req, ack) for req in renewing if (ack := answer(req)) is not None]
    if len(answered) < renewals:
        problems.append(f"{len(answered)} unicast RENEWING REQUEST(s) from {client} to {server} ACKed by "
                        f"unicast to {client} ({len(renewing)} sent), wanted at least {renewals}")
    unanswered = [req for req in renewing if answer(req) is None]
    if unanswered:
        problems.append("renewal(s) not ACKed by unicast: " + "; ".join(map(str, unanswered)))
    if ack_ciaddr:
        bad = [ack for _, ack in answered if ack.ciaddr != client]
        if bad:
            problems.append(f"ACK(s) to RENEWING without ciaddr {client}: " + "; ".join(map(str, bad)))
    if client_id:
        bad = [ack for ack in acks if 61 not in ack.options]
        if bad:
            problems.append("ACK(s) without the client's option 61: " + "; ".join(map(str, bad)))
    naks = [s for s in seen if s.mtype == NAK]
    if naks:
        problems.append("NAK(s): " + "; ".join(map(str, naks)))

    def relayed_copy(req: Seen) -> bool:
        return any(r.xid == req.xid and abs(r.t - req.t) < 0.5 for r in renewing)

    rebinds = [s for s in seen if s.mtype == REQUEST and s.ciaddr == client
               and (s.dst == BROADCAST or (s.giaddr != ZERO and not relayed_copy(s)))]
    if rebinds:
        problems.append("REBIND(s): " + "; ".join(map(str, rebinds)))
    return problems


# -- the lab --------------------------------------------------------------------------------------------


def records(env_file: Path) -> list[dict[str, str]]:
    """Every finished run of tests/data/dhclient-script, in order: {"reason": ..., "new_ip_address": ...}.
    A record still being written (no "end" line yet) is left out: CI once read a RENEW without its address."""
    if not env_file.exists():
        return []
    out: list[dict[str, str]] = []
    for line in env_file.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "reason":
            out.append({})
        if out:
            out[-1][key] = value
    return [r for r in out if "end" in r]


@dataclass
class RenewalLab:
    """`ztp serve` with a direct segment and a relayed one, and the helpers to keep a lease on either."""

    app: ApplianceLab
    relay: str
    sega: str

    @property
    def lab(self) -> Lab:
        return self.app.lab

    @property
    def tmp(self) -> Path:
        return self.app.tmp

    def serve(self, *, interfaces: str, options: str = "{}") -> None:
        """Write the config with these `dhcp.interfaces` and global options, and start `ztp serve`."""
        write_config(self.tmp, interfaces=interfaces, options=options)
        self.app.start()

    def serve_log(self) -> str:
        return self.app.log.read_text(errors="replace") if self.app.log.exists() else ""

    def relayed_client(self, name: str, mac: str) -> str:
        """A namespace with eth0 (no address) on the relayed segment."""
        ns = self.lab.ns(name)
        self.lab.attach(self.sega, ns, "eth0", mac=mac)
        return ns

    def route_to_appliance(self, ns: str) -> None:
        """Keep `10.50.0.0/24 via 10.70.0.1` in `ns`, the router a real access network would have.

        tests/data/dhclient-script flushes and re-adds the address on every BOUND and RENEW, and the kernel
        drops an interface's routes with its last address, so the route is put back whenever it is gone.
        """
        loop = f"while :; do ip route replace {UPSTREAM_NET} via {RELAY_DOWN} dev eth0 2>/dev/null; sleep 0.2; done"
        self.lab.spawn(ns, ["sh", "-c", loop])

    def dhcrelay(self) -> None:
        """ISC dhcrelay from down0 to the appliance."""
        self.lab.spawn(self.relay, ["dhcrelay", "-d", "-4", "--no-pid", "-id", "down0", "-iu", "up0", SERVER],
                       log=self.tmp / "dhcrelay.log")
        self.lab.wait_udp_listening(self.relay, 67, timeout=10)

    def ztp_relay(self) -> None:
        """`ztp relay` from down0 to the appliance; waits until it serves."""
        bindings = self.tmp / "relay-bindings.json"
        proc = self.lab.spawn(self.relay, [sys.executable, "-m", "ztp", "relay", "--client-interface", "down0",
                                           "--server", SERVER, "--bindings-file", str(bindings), "--verbose"],
                              log=self.tmp / "relay.log", env=ENV)
        self.lab.wait_for(lambda: bindings.exists() or proc.poll() is not None, 15, "ztp relay to start")
        assert proc.poll() is None, (self.tmp / "relay.log").read_text(errors="replace")

    def capture(self, ifname: str, tag: str) -> tuple[subprocess.Popen[bytes], Path]:
        """tcpdump of DHCP on the appliance's `ifname`; returns once it listens."""
        pcap, log = self.tmp / f"{tag}.pcap", self.tmp / f"{tag}.tcpdump.log"
        proc = self.lab.spawn(self.app.srv, ["tcpdump", "-i", ifname, "-n", "-U", "--immediate-mode", "-Z", "root",
                                             "-w", str(pcap), "udp port 67 or udp port 68"], log=log)
        self.lab.wait_for(lambda: log.exists() and "listening on" in log.read_text(), 10, f"tcpdump on {ifname}")
        return proc, pcap

    def dhclient_keeps_lease(self, ns: str, tag: str, *, renewals: int = 2) -> list[dict[str, str]]:
        """Run ISC dhclient in `ns` until it has renewed `renewals` times or done anything else than BOUND
        then RENEW (REBIND, EXPIRE, a new BOUND...), at most about two leases; return its script's records."""
        env = self.tmp / f"dhclient-{tag}.env"
        log = self.tmp / f"dhclient-{tag}.log"
        argv = dhclient_argv("eth0", lease_file=self.tmp / f"dhclient-{tag}.leases",
                             pid_file=self.tmp / f"dhclient-{tag}.pid", script=DATA / "dhclient-script",
                             conf=DATA / "dhclient.conf", out_file=env)
        proc = self.lab.spawn(ns, argv, log=log)
        try:
            self.lab.wait_for(lambda: any(r.get("reason") == "BOUND" for r in records(env)), 25,
                              f"dhclient {tag} to bind; its log:\n{log.read_text(errors='replace')}")

            def settled() -> bool:
                reasons = [r.get("reason") for r in records(env)]
                return (reasons.count("RENEW") >= renewals or reasons.count("BOUND") > 1
                        or any(r not in ("BOUND", "RENEW") for r in reasons))

            deadline = time.monotonic() + 2 * LEASE
            while not settled() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            self.lab.stop(proc)
        return records(env)


@pytest.fixture
def rlab(lab: Lab, tmp_path: Path) -> Iterator[RenewalLab]:
    """The topology of this module, the server not started yet (see RenewalLab.serve)."""
    _need("dhclient", "tcpdump", "tshark")
    app = ApplianceLab(lab, tmp_path, tmp_path / "ztp.yaml").build()
    relay = lab.ns("relay")
    lab.link(app.srv, "r1", relay, "up0", addr_a=f"{SERVER}/24", addr_b=f"{RELAY_UP}/24")
    lab.run(app.srv, ["ip", "route", "add", str(RELAYED_NET), "via", RELAY_UP])
    lab.run(relay, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    sega = lab.segment("sega")
    lab.attach(sega, relay, "down0", addr=f"{RELAY_DOWN}/24", mac="02:00:00:00:70:01")
    yield RenewalLab(app, relay, sega)


def _assert_kept(rl: RenewalLab, recs: list[dict[str, str]], seen: list[Seen], problems: list[str]) -> str:
    """The client bound once, renewed at least twice, never rebound, and kept its address; returns it."""
    reasons = [r.get("reason") for r in recs]
    addresses = {r.get("new_ip_address") for r in recs}
    detail = (f"\ndhclient-script reasons: {reasons}\nappliance-side capture:\n{story(seen)}\n"
              f"ztp serve log (dhcp):\n" + "\n".join(line for line in rl.serve_log().splitlines() if " dhcp " in line))
    assert reasons[:1] == ["BOUND"] and reasons.count("RENEW") >= 2, \
        f"dhclient did not renew twice at T1{detail}"
    assert set(reasons) == {"BOUND", "RENEW"}, f"dhclient did more than BOUND then RENEW{detail}"
    assert len(addresses) == 1, f"the address changed: {addresses}{detail}"
    assert not problems, "\n".join(problems) + detail
    return addresses.pop() or ""


# -- 1. ISC dhclient behind ISC dhcrelay ----------------------------------------------------------------


def test_dhclient_behind_isc_dhcrelay_renews_at_t1(rlab: RenewalLab) -> None:
    """dhcp.interfaces names the upstream r1 too (the appliance also serves 10.50.0.0/24): before issue 9
    the unicast renewal got "wrong network" NAKs there, the subnet being chosen by the ingress interface.

    dhcrelay also relays the unicast REQUEST it forwards (its packet filter sees every port-67 datagram on
    down0), so the appliance gets a second, relayed copy; that one was ACKed through the relay, which hid
    the NAK from the client. The capture shows both."""
    _need("dhcrelay")
    rlab.serve(interfaces="[s1, r1]")
    cap, pcap = rlab.capture("r1", "appliance-r1")
    rlab.dhcrelay()
    cli = rlab.relayed_client("cli", "02:00:00:00:70:a1")
    rlab.route_to_appliance(cli)
    recs = rlab.dhclient_keeps_lease(cli, "isc")
    rlab.lab.stop(cap)
    seen = decode(pcap)
    client = recs[0].get("new_ip_address", "") if recs else ""
    assert client and IPv4Address(client) in RELAYED_NET, f"no relayed lease: {recs}\n{story(seen)}"
    _assert_kept(rlab, recs, seen, renewal_problems(seen, client, SERVER))


# -- 2. ISC dhclient behind `ztp relay` ------------------------------------------------------------------


def test_dhclient_behind_ztp_relay_renews_at_t1(rlab: RenewalLab) -> None:
    """dhcp.interfaces is the direct segment only: before issue 9 the unicast renewal arriving on r1 was
    ignored, and the client rebound by broadcast at T2."""
    rlab.serve(interfaces="[s1]")
    cap, pcap = rlab.capture("r1", "appliance-r1")
    rlab.ztp_relay()
    cli = rlab.relayed_client("cli", "02:00:00:00:70:a2")
    rlab.route_to_appliance(cli)
    recs = rlab.dhclient_keeps_lease(cli, "ztp")
    rlab.lab.stop(cap)
    seen = decode(pcap)
    client = recs[0].get("new_ip_address", "") if recs else ""
    assert client and IPv4Address(client) in RELAYED_NET, f"no relayed lease: {recs}\n{story(seen)}"
    _assert_kept(rlab, recs, seen, renewal_problems(seen, client, SERVER))


# -- 3. ISC dhclient on the appliance's own segment -------------------------------------------------------


def test_direct_dhclient_renews_at_t1(rlab: RenewalLab) -> None:
    """The control: a client on the appliance's own segment renews by unicast on a served interface."""
    rlab.serve(interfaces="[s1]")
    cap, pcap = rlab.capture("s1", "appliance-s1")
    cli = rlab.app.client("cli", "02:00:00:00:60:a3")
    recs = rlab.dhclient_keeps_lease(cli, "direct")
    rlab.lab.stop(cap)
    seen = decode(pcap)
    client = recs[0].get("new_ip_address", "") if recs else ""
    assert client and IPv4Address(client) in IPv4Network("10.60.0.0/24"), f"no lease: {recs}\n{story(seen)}"
    _assert_kept(rlab, recs, seen, renewal_problems(seen, client, DIRECT_SERVER))


# -- 4. `ztp agent --stay` behind `ztp relay` -------------------------------------------------------------


def test_agent_behind_ztp_relay_renews_at_t1(rlab: RenewalLab) -> None:
    """The agent provisions (TFTP from 10.50.0.1 through the relay host), then keeps its lease. r1 is in
    dhcp.interfaces so that TFTP listens there on every version of the config: before issue 9 the unicast
    renewal got a "wrong network" NAK on r1 (broadcast there, never seen by the device), which rebound at T2."""
    rlab.serve(interfaces="[s1, r1]")
    cap, pcap = rlab.capture("r1", "appliance-r1")
    rlab.ztp_relay()
    dev = rlab.relayed_client("dev", "02:00:00:00:70:a4")
    # --stay 24: renewals fall at T1 = 10 s after the first ACK and 10 s after the first renewal's ACK.
    argv = ["ip", "netns", "exec", dev, sys.executable, "-m", "ztp", "agent", "--interface", "eth0", "--json",
            "--out", str(rlab.tmp / "agent-out"), "--timeout", "20", "--stay", "24", "--client-id", "renewal-a4",
            "--arp-probes", "1", "--verbose"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=75, check=False, env={**os.environ, **ENV})
    rlab.lab.stop(cap)
    seen = decode(pcap)
    detail = f"\nagent stderr:\n{res.stderr}\nappliance-side capture:\n{story(seen)}"
    assert res.returncode == 0 and res.stdout.strip(), f"agent exited {res.returncode}: {res.stdout}{detail}"
    out = json.loads(res.stdout)
    client = out["ip"]
    assert IPv4Address(client) in RELAYED_NET and out["boot_server"] == SERVER, f"{out}{detail}"
    assert out["renewals"] >= 2 and out["rebinds"] == 0 and out["naks"] == 0, \
        f"renewals={out['renewals']} rebinds={out['rebinds']} naks={out['naks']}{detail}"
    problems = renewal_problems(seen, client, SERVER, client_id=True)
    assert not problems, "\n".join(problems) + detail


# -- 5. a 576-byte maximum message size ---------------------------------------------------------------------

_EXCHANGE = textwrap.dedent("""
    import select, socket, sys, time
    payload, budget = bytes.fromhex(sys.argv[1]), float(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    s.bind(("", 68))
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        s.sendto(payload, ("255.255.255.255", 67))
        until = min(deadline, time.monotonic() + 2)
        while (left := until - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            data = s.recv(65535)
            if len(data) > 8 and data[0] == 2 and data[4:8] == payload[4:8]:
                print(data.hex())
                sys.exit(0)
    sys.exit("no reply")
""")

# Requested: the usual ZTP set plus every configured option below (about 800 bytes of them).
_PRL = bytes([1, 3, 6, 12, 15, 28, 42, 43, 44, 51, 54, 58, 59, 66, 67, 72, 119, 121, 125, 150, 224, 225])
_BIG_OPTIONS = ("{42: [10.60.0.1, 10.60.0.2, 10.60.0.3, 10.60.0.4, 10.60.0.5, 10.60.0.6, 10.60.0.7, 10.60.0.8], "
                f"43: 'hex:{'ab' * 200}', 125: 'hex:{'cd' * 150}', 224: '{'x' * 200}', 225: '{'y' * 120}'}}")
MUST_KEEP = {1, 3, 51, 53, 54, 66, 67}


def test_replies_fit_a_576_byte_max_message_size(rlab: RenewalLab) -> None:
    """RFC 2132 §9.10: a client that says 576 gets OFFER and ACK of at most 576 bytes (IP datagram) that still
    carry what it needs to boot: mask, router, lease time, type, server id, boot server and file."""
    rlab.serve(interfaces="[s1]", options=_BIG_OPTIONS)
    mac = "02:00:00:00:60:57"
    cli = rlab.app.client("small", mac)
    rlab.lab.add_addr(cli, "eth0", "10.60.0.57/24")  # outside the pool; only so the socket can send
    rlab.lab.wait_for(lambda: rlab.lab.ping(cli, DIRECT_SERVER, timeout=1), 10, "the client reaching the server")
    base = {57: (576).to_bytes(2, "big"), 55: _PRL}

    def exchange(pkt: DhcpPacket) -> DhcpPacket:
        res = rlab.lab.run(cli, [sys.executable, "-c", _EXCHANGE, build(pkt).hex(), "10"], timeout=20, check=False)
        assert res.returncode == 0, f"{res.stderr}\n{rlab.serve_log()}"
        raw = bytes.fromhex(res.stdout.strip())
        reply = parse(raw)
        assert len(raw) + 28 <= 576, (f"{NAMES[reply.message_type or 0]} is {len(raw) + 28} bytes as an IP "
                                      f"datagram, over the client's 576 (options {sorted(reply.options)})")
        missing = MUST_KEEP - set(reply.options)
        assert not missing, f"{NAMES[reply.message_type or 0]} lacks options {sorted(missing)}: {sorted(reply.options)}"
        return reply

    request = DhcpPacket(op=BOOTREQUEST, xid=0x576, chaddr=mac_to_chaddr(mac), flags=BROADCAST_FLAG,
                         options={53: bytes([1]), **base})
    offer = exchange(request)
    assert offer.message_type == 2
    assert offer.options[66].rstrip(b"\0") == DIRECT_SERVER.encode()
    assert offer.options[67].rstrip(b"\0") == b"020000006057.cfg"
    ack = exchange(DhcpPacket(op=BOOTREQUEST, xid=0x577, chaddr=mac_to_chaddr(mac), flags=BROADCAST_FLAG,
                              options={53: bytes([3]), 50: offer.yiaddr.packed, 54: offer.options[54], **base}))
    assert ack.message_type == 5 and ack.yiaddr == offer.yiaddr
    assert int.from_bytes(ack.options[51], "big") == LEASE
