"""The DNS server alone, in a namespace, queried by real ``dig`` (and raw sockets) from another namespace."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ztp.lab import Lab

ROOT = Path(__file__).resolve().parents[2]
SERVER = "10.60.0.1"
BIG = [f"10.60.1.{i}" for i in range(60)]  # ~1 kB of A records: over 512 octets, under 1232


@dataclass
class Env:
    """A server namespace and a client namespace on one veth link."""

    lab: Lab
    srv: str
    cli: str
    tmp: Path


@dataclass
class Running:
    """One ``python -m ztp.dns.server`` process and its log."""

    proc: subprocess.Popen[bytes]
    log: Path


def _start(env: Env, port: int, *args: str, host: str = SERVER, name: str = "dns") -> Running:
    log = env.tmp / f"{name}-{port}.log"
    argv = [sys.executable, "-m", "ztp.dns.server", "--host", host, "--port", str(port), *args]
    proc = env.lab.spawn(env.srv, argv, log=log, env={"PYTHONPATH": str(ROOT)})
    try:
        env.lab.wait_for(
            lambda: proc.poll() is not None or "dns serving" in log.read_text(), 15, f"dns server on {port}"
        )
    except Exception:
        env.lab.stop(proc)
        raise
    assert proc.poll() is None, log.read_text()
    return Running(proc, log)


def _stop(env: Env, running: Running) -> dict[str, int]:
    """Stop the server (SIGTERM) and return the counters it logs on the way out."""
    assert env.lab.stop(running.proc) == 0, running.log.read_text()
    match = re.search(r"dns stopped: (.*)", running.log.read_text())
    assert match, running.log.read_text()
    return {k: int(v) for k, v in (item.split("=") for item in match.group(1).split())}


def dig(env: Env, *args: str, port: int = 53, server: str = SERVER) -> str:
    res = env.lab.run(env.cli, ["dig", f"@{server}", "-p", str(port), "+tries=1", "+time=3", *args], timeout=20)
    return res.stdout


def status(out: str) -> str:
    match = re.search(r"status: (\w+)", out)
    assert match, out
    return match.group(1)


def flags(out: str) -> set[str]:
    match = re.search(r";; flags: ([a-z ]*);", out)
    assert match, out
    return set(match.group(1).split())


def answer_lines(out: str) -> list[list[str]]:
    """The ANSWER SECTION of dig's output as split lines (name, ttl, class, type, data)."""
    section = re.search(r";; ANSWER SECTION:\n(.*?)(?:\n\n|\Z)", out, re.S)
    return [line.split() for line in section.group(1).splitlines()] if section else []


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with Lab() as lab:
        srv, cli = lab.ns("srv"), lab.ns("cli")
        lab.link(srv, "veth0", cli, "veth0", addr_a=f"{SERVER}/24", addr_b="10.60.0.2/24")
        yield Env(lab, srv, cli, tmp_path_factory.mktemp("dns"))


@pytest.fixture(scope="module")
def server(env: Env) -> Iterator[Running]:
    args = ["--zone", "lab.test", "--subnet", "10.60.0.0/24", "--record", "leaf01=10.60.0.11"]
    args += ["--record", "ntp=10.60.0.5", "--lease", "dyn01=10.60.0.120@100"]
    for ip in BIG:
        args += ["--record", f"big={ip}"]
    running = _start(env, 53, *args)
    yield running
    env.lab.stop(running.proc)


def test_a_and_ptr_for_a_record(env: Env, server: Running) -> None:
    out = dig(env, "leaf01.lab.test")
    assert status(out) == "NOERROR" and "aa" in flags(out) and "ra" not in flags(out)
    assert answer_lines(out) == [["leaf01.lab.test.", "300", "IN", "A", "10.60.0.11"]]
    out = dig(env, "-x", "10.60.0.11")
    assert status(out) == "NOERROR" and "aa" in flags(out)
    assert answer_lines(out) == [["11.0.60.10.in-addr.arpa.", "300", "IN", "PTR", "leaf01.lab.test."]]
    assert dig(env, "+short", "LEAF01.Lab.TEST").split() == ["10.60.0.11"]


def test_appliance_name_soa_and_ns(env: Env, server: Running) -> None:
    assert dig(env, "+short", "ztp.lab.test").split() == [SERVER]
    assert dig(env, "+short", "-x", SERVER).split() == ["ztp.lab.test."]
    soa = dig(env, "+short", "lab.test", "SOA").split()
    assert soa[:2] == ["ztp.lab.test.", "hostmaster.lab.test."]
    assert dig(env, "+short", "lab.test", "NS").split() == ["ztp.lab.test."]
    assert dig(env, "+short", "0.60.10.in-addr.arpa", "NS").split() == ["ztp.lab.test."]


def test_nxdomain_inside_zone(env: Env, server: Running) -> None:
    out = dig(env, "nope.lab.test")
    assert status(out) == "NXDOMAIN" and "aa" in flags(out)
    assert re.search(r"AUTHORITY SECTION:\nlab\.test\.\s+30\s+IN\s+SOA\s+ztp\.lab\.test\.", out), out
    assert status(dig(env, "-x", "10.60.0.99")) == "NXDOMAIN"


def test_refused_outside_zone(env: Env, server: Running) -> None:
    for args in (["example.com"], ["-x", "192.0.2.1"], ["lab.test.example.org"]):
        out = dig(env, *args)
        assert status(out) == "REFUSED", out
        assert "aa" not in flags(out) and "ra" not in flags(out)
        assert answer_lines(out) == []


def test_unsupported_type_is_empty_noerror(env: Env, server: Running) -> None:
    out = dig(env, "leaf01.lab.test", "AAAA")
    assert status(out) == "NOERROR" and "aa" in flags(out)
    assert "ANSWER: 0," in out and "AUTHORITY: 1," in out


def test_lease_ttl_never_exceeds_remaining_time(env: Env, server: Running) -> None:
    lines = answer_lines(dig(env, "dyn01.lab.test"))
    assert len(lines) == 1 and lines[0][4] == "10.60.0.120"
    assert 0 < int(lines[0][1]) <= 100
    ptr = answer_lines(dig(env, "-x", "10.60.0.120"))
    assert ptr[0][4] == "dyn01.lab.test." and int(ptr[0][1]) <= 100


def test_tcp_fallback_for_large_answer(env: Env, server: Running) -> None:
    # Without EDNS the 1 kB answer does not fit 512 octets: TC over UDP, then dig retries over TCP.
    out = dig(env, "+noedns", "big.lab.test")
    assert ";; Truncated, retrying in TCP mode." in out
    assert sorted(line[4] for line in answer_lines(out)) == sorted(BIG)
    assert "tc" not in flags(out)
    truncated = dig(env, "+noedns", "+ignore", "big.lab.test")
    assert "tc" in flags(truncated) and answer_lines(truncated) == []
    # The advertised EDNS0 size is honoured: 1232 octets fit in one datagram, 600 do not.
    fits = dig(env, "+bufsize=1232", "+ignore", "big.lab.test")
    assert "tc" not in flags(fits) and len(answer_lines(fits)) == 60
    assert "udp: 1232" in fits
    small = dig(env, "+bufsize=600", "+ignore", "big.lab.test")
    assert "tc" in flags(small)


def test_tcp_several_queries_on_one_connection(env: Env, server: Running) -> None:
    out = dig(env, "+tcp", "+keepopen", "leaf01.lab.test", "ntp.lab.test", "big.lab.test")
    assert "10.60.0.11" in out and "10.60.0.5" in out and len(re.findall(r"big\.lab\.test\.\s+300", out)) == 60


_TCP_PROBE = textwrap.dedent(
    """
    import socket, struct, sys, time
    host, port = sys.argv[1], int(sys.argv[2])
    def conn():
        s = socket.create_connection((host, port), timeout=5)
        return s
    def closed_within(s, seconds):
        s.settimeout(seconds)
        try:
            return s.recv(1) == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
    held = [conn(), conn()]
    time.sleep(0.2)
    extra = conn()
    print("extra_closed", closed_within(extra, 1.0))
    start = time.monotonic()
    print("idle_closed", closed_within(held[0], 5.0), round(time.monotonic() - start, 1))
    held[1].close()
    time.sleep(0.2)
    s = conn()
    q = bytes.fromhex("abcd01000001000000000000066c6561663031036c6162047465737400000100" "01")
    s.sendall(struct.pack("!H", len(q)) + q)
    s.settimeout(5)
    n = struct.unpack("!H", s.recv(2))[0]
    reply = b""
    while len(reply) < n:
        reply += s.recv(n - len(reply))
    print("answered", reply[:2].hex(), reply[-4:].hex())
    """
)


def test_tcp_connection_limit_and_idle_timeout(env: Env) -> None:
    args = ["--zone", "lab.test", "--record", "leaf01=10.60.0.11", "--max-tcp", "2", "--tcp-idle-timeout", "1.5"]
    running = _start(env, 5354, *args)
    try:
        res = env.lab.run(env.cli, [sys.executable, "-c", _TCP_PROBE, SERVER, "5354"], timeout=20)
        out = res.stdout.split("\n")
        assert out[0] == "extra_closed True", res.stdout  # a third connection is closed at once
        idle = out[1].split()
        assert idle[:2] == ["idle_closed", "True"] and 1.0 <= float(idle[2]) <= 3.0, res.stdout
        assert out[2] == "answered abcd 0a3c000b", res.stdout  # a fresh connection is served again
    finally:
        _stop(env, running)


_FLOOD = textwrap.dedent(
    """
    import random, socket, struct, sys, time
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(2024)
    query = bytes.fromhex("abcd01000001000000000000066c6561663031036c6162047465737400000100" "01")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    while sent < count:
        kind = sent % 4
        if kind == 0:  # shorter than a header
            pkt = bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
        elif kind == 1:  # a real query cut short
            pkt = query[: rng.randrange(12, len(query))]
        elif kind == 2:  # random junk with QR set: a "response" nobody asked for
            pkt = bytearray(rng.randrange(256) for _ in range(rng.randrange(12, 600)))
            pkt[2] |= 0x80
            pkt = bytes(pkt)
        else:  # a real query, mutated, posing as a response
            pkt = bytearray(query)
            for _ in range(rng.randint(1, 6)):
                pkt[rng.randrange(len(pkt))] = rng.randrange(256)
            pkt[2] |= 0x80
            pkt = bytes(pkt)
        s.sendto(pkt, (host, port))
        sent += 1
        if sent % 250 == 0:
            time.sleep(0.002)  # bounded pace: this tests parsing, not the kernel's receive queue
    print(sent)
    """
)


def test_malformed_flood_leaves_dns_serving(env: Env) -> None:
    # No rate limit: every one of the 10,000 datagrams (one source) must reach the parser.
    running = _start(env, 5355, "--zone", "lab.test", "--record", "leaf01=10.60.0.11", "--rate-limit", "0")
    try:
        started = time.monotonic()
        res = env.lab.run(env.cli, [sys.executable, "-c", _FLOOD, SERVER, "5355", "10000"], timeout=60)
        assert res.stdout.strip() == "10000"
        assert dig(env, "+short", "leaf01.lab.test", port=5355).split() == ["10.60.0.11"]
        assert dig(env, "+short", "+tcp", "leaf01.lab.test", port=5355).split() == ["10.60.0.11"]
        elapsed = time.monotonic() - started
        assert elapsed < 20, elapsed
    finally:
        counters = _stop(env, running)
    assert running.proc.returncode == 0
    # Every junk datagram was read, counted and dropped without a reply (none is a valid query).
    assert counters["malformed"] >= 9_900, counters
    assert counters["answered"] == 2 and counters["queries"] == counters["malformed"] + 2, counters


_BLAST = textwrap.dedent(
    """
    import socket, sys, time
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    query = bytes.fromhex("abcd01000001000000000000066c6561663031036c6162047465737400000100" "01")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    for _ in range(count):
        s.sendto(query, (host, port))
    replies, end = 0, time.monotonic() + 1.0
    while time.monotonic() < end:
        try:
            s.recv(4096)
            replies += 1
        except BlockingIOError:
            time.sleep(0.005)
    print(replies)
    """
)


def test_rate_limit_per_source(env: Env) -> None:
    # 50 q/s per source, bursts of 100: a blast of 1,000 queries from 10.60.0.2 gets about 100 answers,
    # while another address on the same link is still answered at once.
    running = _start(env, 5357, "--zone", "lab.test", "--record", "leaf01=10.60.0.11", "--rate-limit", "50")
    env.lab.run(env.cli, ["ip", "addr", "replace", "10.60.0.3/24", "dev", "veth0"])
    try:
        res = env.lab.run(env.cli, [sys.executable, "-c", _BLAST, SERVER, "5357", "1000"], timeout=30)
        replies = int(res.stdout.split()[0])
        # The burst, plus what refills while the server works through the queue (well under a second).
        assert 100 <= replies <= 150, res.stdout
        assert dig(env, "+short", "-b", "10.60.0.3", "leaf01.lab.test", port=5357).split() == ["10.60.0.11"]
    finally:
        counters = _stop(env, running)
    assert counters["rate_limited"] == 1000 - replies, counters
    assert counters["queries"] == replies + 1, counters  # dropped before parsing: not counted as queries
    assert "dns rate limit:" in running.log.read_text() and "rate limit 50 q/s per source" in running.log.read_text()


def test_forwarding_when_configured(env: Env) -> None:
    upstream = _start(env, 5300, "--zone", "other.test", "--record", "x=10.99.0.1", host="127.0.0.1", name="up")
    # The first forwarder never answers: the query must fail over to the second within the timeout.
    args = ["--zone", "lab.test", "--record", "leaf01=10.60.0.11", "--forward-timeout", "0.5"]
    args += ["--forwarder", "127.0.0.1:5399", "--forwarder", "127.0.0.1:5300"]
    front = _start(env, 5356, *args, name="front")
    try:
        out = dig(env, "x.other.test", port=5356)
        assert status(out) == "NOERROR" and answer_lines(out)[0][4] == "10.99.0.1", out
        assert status(dig(env, "example.com", port=5356)) == "REFUSED"  # the upstream's own answer, relayed
        assert dig(env, "+short", "leaf01.lab.test", port=5356).split() == ["10.60.0.11"]  # still ours
        _stop(env, upstream)
        out = dig(env, "x.other.test", port=5356)
        assert status(out) == "SERVFAIL", out
    finally:
        env.lab.stop(upstream.proc)
        counters = _stop(env, front)
    assert counters["forwarded"] == 3, counters
