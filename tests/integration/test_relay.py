"""The DHCP relay in namespaces with real peers: dnsmasq and ISC dhclient; `ztp serve` and ISC dhcrelay.

Topology (every address lives only inside the lab's namespaces)::

    cli/probe --[segA br0]-- down0 10.70.0.1 [relay] up0 10.50.0.2 ---- eth0 10.50.0.1 [srv]
    cli2      --[segB br0]-- down1 10.71.0.1 /                      (routes to 10.70/24 and 10.71/24 via .2)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from ztp.dhcp.options import RELAY_AGENT_INFO
from ztp.dhcp.packet import (
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    DISCOVER,
    OFFER,
    DhcpPacket,
    MalformedPacket,
    build,
    mac_to_chaddr,
    parse,
)
from ztp.dhcp.relayinfo import parse_relay_info
from ztp.lab import Lab, dhclient_argv

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SEG_A = IPv4Network("10.70.0.0/24")
SEG_B = IPv4Network("10.71.0.0/24")
SERVER = "10.50.0.1"
RELAY_UP = "10.50.0.2"


@dataclass
class Topology:
    """The namespaces of one test and the files its processes write."""

    lab: Lab
    tmp: Path
    srv: str
    relay: str
    seg_a: str
    seg_b: str
    clients: dict[str, str] = field(default_factory=dict)
    relay_proc: subprocess.Popen[bytes] | None = None

    @property
    def bindings_file(self) -> Path:
        return self.tmp / "relay-bindings.json"

    def client(self, name: str, segment: str, mac: str, addr: str | None = None) -> str:
        """A client namespace with `eth0` on `segment` (optionally addressed)."""
        ns = self.lab.ns(name)
        self.lab.attach(segment, ns, "eth0", mac=mac, addr=addr)
        self.clients[name] = ns
        if addr is not None:
            # A fresh veth drops what it is given until the kernel's linkwatch activates it (up to ~1 s
            # under load); hand-sent single datagrams must wait for a working path to the relay.
            gateway = "10.70.0.1" if segment == self.seg_a else "10.71.0.1"
            self.lab.wait_for(lambda: self.lab.ping(ns, gateway, timeout=1), 10, f"{name} reaching {gateway}")
        return ns

    def start_relay(self, *extra: str, interfaces: tuple[str, ...] = ("down0",)) -> subprocess.Popen[bytes]:
        """Our relay in the relay namespace, relaying to the server namespace; waits until it is serving."""
        argv = [sys.executable, "-m", "ztp", "relay", "--server", SERVER,
                "--bindings-file", str(self.bindings_file), "--verbose"]
        for ifname in interfaces:
            argv += ["--client-interface", ifname]
        argv += list(extra)
        self.relay_proc = self.lab.spawn(self.relay, argv, log=self.tmp / "relay.log",
                                         env={"PYTHONPATH": str(REPO)})
        self.lab.wait_for(lambda: self.bindings_file.exists() or self.relay_proc.poll() is not None, 10,
                          "the relay to start")
        assert self.relay_proc.poll() is None, self.relay_log()
        return self.relay_proc

    def relay_log(self) -> str:
        path = self.tmp / "relay.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def snapshot(self) -> dict[str, dict[str, int] | list[dict[str, object]]]:
        """The relay's bindings file: {"bindings": [...], "counters": {...}}."""
        data: dict[str, dict[str, int] | list[dict[str, object]]] = json.loads(self.bindings_file.read_text())
        return data

    def counters(self) -> dict[str, int]:
        counters = self.snapshot()["counters"]
        assert isinstance(counters, dict)
        return counters

    def wait_counter(self, name: str, at_least: int = 1, timeout: float = 5) -> None:
        self.lab.wait_for(lambda: self.counters().get(name, 0) >= at_least, timeout,
                          f"relay counter {name} >= {at_least}; log:\n{self.relay_log()}")

    def dnsmasq(self) -> subprocess.Popen[bytes]:
        """dnsmasq in the server namespace answering relayed requests for both client subnets."""
        argv = [
            "dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null", "--pid-file=",
            "--interface=eth0", "--bind-interfaces", "--dhcp-authoritative", "--log-dhcp", "--no-ping",
            # A range on a subnet dnsmasq is not attached to serves requests relayed with giaddr in it.
            "--dhcp-range=10.70.0.100,10.70.0.150,255.255.255.0,1h",
            "--dhcp-range=10.71.0.100,10.71.0.150,255.255.255.0,1h",
            f"--dhcp-leasefile={self.tmp / 'dnsmasq.leases'}",
        ]
        proc = self.lab.spawn(self.srv, argv, log=self.tmp / "dnsmasq.log")
        self.lab.wait_udp_listening(self.srv, 67, timeout=10)
        return proc

    def dhclient(self, ns: str, tag: str, timeout: float = 20) -> dict[str, str]:
        """Run ISC dhclient in `ns` until bound; return the variables its script recorded."""
        out = self.tmp / f"dhclient-{tag}.env"
        argv = dhclient_argv(
            "eth0", lease_file=self.tmp / f"dhclient-{tag}.leases", pid_file=self.tmp / f"dhclient-{tag}.pid",
            script=DATA / "dhclient-script", conf=DATA / "dhclient.conf", out_file=out,
        )
        proc = self.lab.spawn(ns, argv, log=self.tmp / f"dhclient-{tag}.log")

        log = self.tmp / f"dhclient-{tag}.log"

        def bound() -> bool:
            # dhclient logs "bound to" only after its script has finished writing `out`.
            return log.exists() and "bound to" in log.read_text(errors="replace")

        try:
            self.lab.wait_for(bound, timeout, f"dhclient {tag} to bind; relay log:\n{self.relay_log()}")
        finally:
            self.lab.stop(proc)
        assert "reason=BOUND" in out.read_text()
        return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


@pytest.fixture
def topo(lab: Lab, tmp_path: Path) -> Iterator[Topology]:
    srv, relay = lab.ns("srv"), lab.ns("relay")
    lab.link(relay, "up0", srv, "eth0", addr_a=f"{RELAY_UP}/24", addr_b=f"{SERVER}/24")
    for net in (SEG_A, SEG_B):
        lab.run(srv, ["ip", "route", "add", str(net), "via", RELAY_UP])
    seg_a, seg_b = lab.segment("sega"), lab.segment("segb")
    lab.attach(seg_a, relay, "down0", addr="10.70.0.1/24", mac="02:00:00:00:70:01")
    lab.attach(seg_b, relay, "down1", addr="10.71.0.1/24", mac="02:00:00:00:71:01")
    yield Topology(lab, tmp_path, srv, relay, seg_a, seg_b)


# -- packets sent by hand from a client namespace ---------------------------------------------------

_SENDER = textwrap.dedent("""
    import socket, sys
    payload, dest, port, sport = bytes.fromhex(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    s.bind(("", sport))
    s.sendto(payload, (dest, port))
""")


def send_raw(lab: Lab, ns: str, pkt: DhcpPacket, dest: str, port: int, sport: int) -> None:
    """Send one hand-built DHCP message from `ns`'s eth0."""
    lab.run(ns, [sys.executable, "-c", _SENDER, build(pkt).hex(), dest, str(port), str(sport)], timeout=10)


def discover(mac: str, xid: int, **fields: object) -> DhcpPacket:
    return DhcpPacket(op=BOOTREQUEST, xid=xid, chaddr=mac_to_chaddr(mac), flags=BROADCAST_FLAG,
                      options={53: bytes([DISCOVER]), 55: bytes([1, 3])}, **fields)  # type: ignore[arg-type]


def read_pcap(path: Path) -> list[DhcpPacket]:
    """DHCP messages in a tcpdump capture (Ethernet link type)."""
    raw = path.read_bytes()
    assert len(raw) >= 24 and struct.unpack_from("<I", raw, 20)[0] == 1, "expected an Ethernet pcap"
    out: list[DhcpPacket] = []
    i = 24
    while i + 16 <= len(raw):
        incl = struct.unpack_from("<I", raw, i + 8)[0]
        frame = raw[i + 16 : i + 16 + incl]
        i += 16 + incl
        if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00" or frame[14 + 9] != 17:
            continue
        ihl = (frame[14] & 0x0F) * 4
        try:
            out.append(parse(frame[14 + ihl + 8 :]))
        except MalformedPacket:
            continue
    return out


def capture(topo: Topology, ns: str, ifname: str, tag: str) -> tuple[subprocess.Popen[bytes], Path]:
    """tcpdump of DHCP on `ns:ifname`; returns once it is listening."""
    pcap, log = topo.tmp / f"{tag}.pcap", topo.tmp / f"{tag}.tcpdump.log"
    proc = topo.lab.spawn(ns, ["tcpdump", "-i", ifname, "-n", "-U", "--immediate-mode", "-Z", "root",
                               "-w", str(pcap),
                               "udp port 67 or udp port 68"], log=log)
    topo.lab.wait_for(lambda: log.exists() and "listening on" in log.read_text(), 10, f"tcpdump {tag}")
    return proc, pcap


# -- (a) our relay in front of dnsmasq --------------------------------------------------------------


def test_dhclient_gets_address_through_our_relay_from_dnsmasq(topo: Topology) -> None:
    topo.dnsmasq()
    cli = topo.client("cli", topo.seg_a, "02:00:00:00:aa:01")
    topo.start_relay()
    env = topo.dhclient(cli, "a")
    ip = IPv4Address(env["new_ip_address"])
    assert ip in SEG_A and IPv4Address("10.70.0.100") <= ip <= IPv4Address("10.70.0.150")
    assert env["new_subnet_mask"] == "255.255.255.0"
    assert f"inet {ip}/24" in topo.lab.run(cli, ["ip", "-4", "-o", "addr", "show", "eth0"]).stdout
    # The relay saw the whole exchange and learnt the binding from the ACK.
    topo.wait_counter("relayed_request", 2)
    snap = topo.snapshot()
    bindings = snap["bindings"]
    assert isinstance(bindings, list)
    seen = [(b["mac"], b["ip"], b["interface"]) for b in bindings]
    assert seen == [("02:00:00:00:aa:01", str(ip), "down0")]
    log = topo.relay_log()
    assert "02:00:00:00:aa:01 DISCOVER" in log and "02:00:00:00:aa:01 ACK" in log
    # SIGUSR1 prints the same table as one JSON line.
    assert topo.relay_proc is not None
    topo.relay_proc.send_signal(signal.SIGUSR1)
    dump = '{"bindings": [{"mac": "02:00:00:00:aa:01"'
    topo.lab.wait_for(lambda: dump in topo.relay_log(), 5, "SIGUSR1 dump")
    # Clean exit on SIGTERM.
    assert topo.lab.stop(topo.relay_proc) == 0


# -- (b) two client segments behind one relay --------------------------------------------------------


def test_two_segments_get_addresses_from_their_own_subnets(topo: Topology) -> None:
    topo.dnsmasq()
    cli_a = topo.client("cla", topo.seg_a, "02:00:00:00:aa:0a")
    cli_b = topo.client("clb", topo.seg_b, "02:00:00:00:bb:0b")
    # The second interface named by its network, as containers (unstable interface names) would.
    topo.start_relay(interfaces=("down0", str(SEG_B)))
    env_a = topo.dhclient(cli_a, "a")
    env_b = topo.dhclient(cli_b, "b")
    assert IPv4Address(env_a["new_ip_address"]) in SEG_A
    assert IPv4Address(env_b["new_ip_address"]) in SEG_B
    bindings = topo.snapshot()["bindings"]
    assert isinstance(bindings, list)
    assert {(b["mac"], b["interface"]) for b in bindings} == {
        ("02:00:00:00:aa:0a", "down0"), ("02:00:00:00:bb:0b", "down1"),
    }


# -- (c) hops limit -------------------------------------------------------------------------------


def test_request_over_the_hops_limit_is_dropped(topo: Topology) -> None:
    topo.dnsmasq()
    probe = topo.client("probe", topo.seg_a, "02:00:00:00:aa:50", addr="10.70.0.50/24")
    topo.start_relay()  # default threshold: 4 (RFC 1542 §4.1.1)
    topo.lab.run(probe, [sys.executable, "-c", _SENDER.replace("bytes.fromhex(sys.argv[1])", "b'junk'"),
                         "", "10.70.0.1", "67", "68"], timeout=10)
    topo.wait_counter("drop_malformed")  # counted, and the relay goes on relaying
    send_raw(topo.lab, probe, discover("02:00:00:00:ee:16", 0x16, hops=16), "255.255.255.255", 67, 68)
    topo.wait_counter("drop_hops")
    # A control request with room left is relayed, and dnsmasq only ever heard of that one.
    send_raw(topo.lab, probe, discover("02:00:00:00:ee:03", 0x03, hops=3), "255.255.255.255", 67, 68)
    topo.wait_counter("relayed_reply")  # dnsmasq's OFFER, broadcast back as the flag asked
    counters = topo.counters()
    assert counters["drop_hops"] == 1 and counters["relayed_request"] == 1
    assert "02:00:00:00:ee:03 OFFER xid=0x00000003 yiaddr=10.70.0." in topo.relay_log()
    assert "-> down0 broadcast" in topo.relay_log()
    assert "02:00:00:00:ee:16 dropped DISCOVER" in topo.relay_log()
    assert "hops 16 exceeds the limit 4" in topo.relay_log()
    topo.lab.wait_for(lambda: "02:00:00:00:ee:03" in (topo.tmp / "dnsmasq.log").read_text(), 5, "dnsmasq log")
    assert "02:00:00:00:ee:16" not in (topo.tmp / "dnsmasq.log").read_text()


def test_bad_interface_is_a_clear_error(topo: Topology) -> None:
    argv = [sys.executable, "-m", "ztp", "relay", "--server", SERVER, "--client-interface", "nope0"]
    res = topo.lab.run(topo.relay, argv, check=False, timeout=20)
    assert res.returncode == 2 and "no interface 'nope0'" in res.stderr
    argv[-1] = "up0"
    argv += ["--trusted-interface", "down0"]
    res = topo.lab.run(topo.relay, argv, check=False, timeout=20)
    assert res.returncode == 2 and "--trusted-interface down0 is not a --client-interface" in res.stderr


# -- (d) rogue server guard --------------------------------------------------------------------------


def test_server_messages_on_the_client_side_are_dropped_and_counted(topo: Topology) -> None:
    rogue = topo.client("rogue", topo.seg_a, "02:00:00:00:aa:66", addr="10.70.0.66/24")
    topo.start_relay()
    offer = DhcpPacket(op=BOOTREPLY, xid=0x666, chaddr=mac_to_chaddr("02:00:00:00:aa:01"),
                       yiaddr=IPv4Address("10.70.0.200"), giaddr=IPv4Address("10.70.0.1"),
                       options={53: bytes([OFFER]), 54: IPv4Address("10.70.0.66").packed})
    # A forged reply aimed at the relay itself (it would otherwise be relayed to the client)...
    send_raw(topo.lab, rogue, offer, "10.70.0.1", 67, 67)
    # ...and a rogue server's broadcast OFFER to clients.
    send_raw(topo.lab, rogue, offer, "255.255.255.255", 68, 67)
    topo.wait_counter("drop_rogue_server", 2)
    counters = topo.counters()
    assert counters.get("relayed_reply", 0) == 0
    assert "from server 10.70.0.66 on client interface down0" in topo.relay_log()


# -- (e) option 82 inserted upstream, stripped before delivery ---------------------------------------


def test_option82_reaches_the_server_and_never_the_client(topo: Topology) -> None:
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is required (Debian package tcpdump)")
    topo.dnsmasq()
    cli = topo.client("cli", topo.seg_a, "02:00:00:00:aa:82")
    up_proc, up_pcap = capture(topo, topo.srv, "eth0", "server-side")
    down_proc, down_pcap = capture(topo, cli, "eth0", "client-side")
    topo.start_relay("--circuit-id", "rack7:{interface}")
    topo.dhclient(cli, "e")
    topo.wait_counter("option82_stripped", 2)
    # DISCOVER, OFFER, REQUEST, ACK on each side (-U writes each packet as it is captured).
    for pcap in (up_pcap, down_pcap):
        topo.lab.wait_for(lambda pcap=pcap: len(read_pcap(pcap)) >= 4, 5, f"4 packets in {pcap.name}")
    topo.lab.stop(up_proc, signal.SIGINT)
    topo.lab.stop(down_proc, signal.SIGINT)

    upstream = read_pcap(up_pcap)
    requests = [p for p in upstream if p.op == BOOTREQUEST]
    replies = [p for p in upstream if p.op == BOOTREPLY]
    assert requests and replies
    for pkt in requests:
        info = parse_relay_info(pkt.options[RELAY_AGENT_INFO])
        assert info.circuit_id == b"rack7:down0"
        assert info.remote_id == bytes.fromhex("020000007001")  # the relay's MAC on down0
        assert pkt.giaddr == IPv4Address("10.70.0.1") and pkt.hops == 1
    assert all(RELAY_AGENT_INFO in p.options for p in replies), "dnsmasq echoes option 82 (RFC 3046 §2.2)"

    downstream = read_pcap(down_pcap)
    delivered = [p for p in downstream if p.op == BOOTREPLY]
    assert {p.message_type for p in delivered} >= {2, 5}  # OFFER and ACK reached the client
    assert all(RELAY_AGENT_INFO not in p.options for p in delivered)


# -- (f) our relay and ISC dhcrelay in front of `ztp serve` -------------------------------------------


def _ztp_serve_argv() -> list[str]:
    try:
        import ztp.cli  # noqa: F401
    except ImportError:
        pytest.fail("ztp.cli is missing: `ztp serve` (issue 2) is needed for this test")
    return [sys.executable, "-m", "ztp"]


def _write_ztp_config(tmp: Path) -> Path:
    """A config like issue 2's example with the relayed subnets; leaf02 and leaf03 are known by circuit-id
    (leaf02 behind our relay with `--circuit-id sw9:{interface}`, leaf03 behind ISC dhcrelay, whose
    circuit-id is the interface name)."""
    (tmp / "templates").mkdir()
    (tmp / "tftpboot").mkdir()
    (tmp / "templates" / "default.j2").write_text("hostname {{ hostname }}\n")
    (tmp / "templates" / "leaf.j2").write_text("hostname {{ hostname }}\nip {{ ip }}\n")
    (tmp / "inventory.yaml").write_text(textwrap.dedent("""\
        defaults:
          template: default.j2
        devices:
          - hostname: leaf02
            circuit_id: "sw9:down0"
            template: leaf.j2
          - hostname: leaf03
            circuit_id: "down1"
            template: leaf.j2
    """))
    cfg = tmp / "ztp.yaml"
    cfg.write_text(textwrap.dedent("""\
        state_dir: ./state
        templates: ./templates
        inventory: ./inventory.yaml
        dhcp:
          interfaces: [eth0]
          lease_time: 3600
          subnets:
            - network: 10.50.0.0/24
              pool: 10.50.0.100-10.50.0.199
            - network: 10.70.0.0/24
              pool: 10.70.0.100-10.70.0.199
              routers: [10.70.0.1]
            - network: 10.71.0.0/24
              pool: 10.71.0.100-10.71.0.199
              routers: [10.71.0.1]
        tftp:
          root: ./tftpboot
    """))
    return cfg


def _start_ztp_serve(topo: Topology) -> subprocess.Popen[bytes]:
    argv = _ztp_serve_argv() + ["serve", "--config", str(_write_ztp_config(topo.tmp))]
    proc = topo.lab.spawn(topo.srv, argv, log=topo.tmp / "ztp-serve.log", env={"PYTHONPATH": str(REPO)})
    topo.lab.wait_for(lambda: topo.lab.udp_listening(topo.srv, 67) or proc.poll() is not None, 15,
                      "ztp serve on port 67")
    assert proc.poll() is None, (topo.tmp / "ztp-serve.log").read_text(errors="replace")
    return proc


def test_our_relay_in_front_of_ztp_serve_circuit_id_identifies_the_device(topo: Topology) -> None:
    _start_ztp_serve(topo)
    cli = topo.client("cli", topo.seg_a, "02:00:00:00:aa:f2")  # a MAC the inventory does not know
    topo.start_relay("--circuit-id", "sw9:{interface}")
    env = topo.dhclient(cli, "f")
    assert IPv4Address(env["new_ip_address"]) in SEG_A
    # The inventory matched the port, not the MAC: leaf02's boot file and hostname.
    assert env.get("new_bootfile_name", env.get("new_filename")) == "leaf02.cfg"
    assert env.get("new_host_name") == "leaf02"
    counters = topo.counters()
    assert counters["option82_stripped"] >= 2  # ztp serve echoed option 82 and the relay removed it
    # Cross-subnet provisioning: the device fetches its rendered config over TFTP through the relay host.
    topo.lab.run(topo.relay, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    topo.lab.run(cli, ["ip", "route", "add", "default", "via", env["new_routers"]])
    fetched = topo.lab.run(cli, ["curl", "-sS", "--max-time", "10", f"tftp://{SERVER}/leaf02.cfg"]).stdout
    rendered = subprocess.run(
        _ztp_serve_argv() + ["render", "--config", str(topo.tmp / "ztp.yaml"), "--hostname", "leaf02"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout
    assert fetched == rendered
    assert f"ip {env['new_ip_address']}" in fetched


def test_isc_dhcrelay_in_front_of_ztp_serve(topo: Topology) -> None:
    if shutil.which("dhcrelay") is None:
        pytest.fail("dhcrelay is required (Debian package isc-dhcp-relay)")
    _start_ztp_serve(topo)
    cli = topo.client("cli", topo.seg_b, "02:00:00:00:bb:d1")
    # -a: insert option 82 (circuit-id = interface name); -id/-iu: downstream and upstream interfaces.
    argv = ["dhcrelay", "-d", "-4", "-a", "--no-pid", "-id", "down1", "-iu", "up0", SERVER]
    topo.lab.spawn(topo.relay, argv, log=topo.tmp / "dhcrelay.log")
    topo.lab.wait_udp_listening(topo.relay, 67, timeout=10)
    env = topo.dhclient(cli, "isc")
    ip = IPv4Address(env["new_ip_address"])
    assert ip in SEG_B and IPv4Address("10.71.0.100") <= ip <= IPv4Address("10.71.0.199")
    # dhcrelay -a put circuit-id "down1" in option 82; the appliance matched it to leaf03.
    assert env.get("new_host_name") == "leaf03"
    assert env.get("new_bootfile_name") == "leaf03.cfg"


def test_our_agent_is_provisioned_through_our_relay_from_dnsmasq(topo: Topology) -> None:
    # dnsmasq (DHCP + its own TFTP) is a server we did not write; our agent boots through our relay.
    tftp_root = topo.tmp / "tftp"
    tftp_root.mkdir()
    config = b"hostname remote-sw\n" + bytes(range(256)) * 40
    (tftp_root / "remote.cfg").write_bytes(config)
    argv = [
        "dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null", "--pid-file=",
        "--interface=eth0", "--bind-interfaces", "--dhcp-authoritative", "--log-dhcp", "--no-ping",
        "--dhcp-range=10.70.0.100,10.70.0.150,255.255.255.0,1h", "--dhcp-option=3,10.70.0.1",
        f"--dhcp-leasefile={topo.tmp / 'dnsmasq.leases'}",
        "--enable-tftp", f"--tftp-root={tftp_root}", f"--dhcp-boot=remote.cfg,,{SERVER}",
    ]
    topo.lab.spawn(topo.srv, argv, log=topo.tmp / "dnsmasq.log")
    topo.lab.wait_udp_listening(topo.srv, 67, timeout=10)
    topo.lab.run(topo.relay, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    cli = topo.client("agent", topo.seg_a, "02:00:00:00:aa:07")
    topo.start_relay()
    out = topo.tmp / "agent-out"
    res = topo.lab.run(cli, [sys.executable, "-m", "ztp", "agent", "--interface", "eth0", "--json", "--out",
                             str(out), "--timeout", "40"], timeout=60, check=False,
                       )
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{topo.relay_log()}"
    result = json.loads(res.stdout)
    assert IPv4Address(result["ip"]) in SEG_A
    assert result["boot_server"] == SERVER and result["boot_file"] == "remote.cfg"
    assert (out / "remote.cfg").read_bytes() == config
    topo.wait_counter("relayed_reply", 2)
