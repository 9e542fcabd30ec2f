"""Issue 10, durability proven under load: `ztp serve` runs under strace in its namespace while perfdhcp
(a relay with many clients) and a real dhclient bind leases. From the trace, every DHCPACK's send must come
after an fsync/fdatasync that started after its REQUEST was received and finished before the send
(RFC 2131 §4.3.2: the binding is on stable storage before the ACK). A lease database that cannot be read
stops the start, naming the file and the reason."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.integration.appliance import ZTP, ApplianceLab, write_config
from ztp.dhcp import packet as p
from ztp.lab import Lab

TRACE = ["strace", "-f", "-ttt", "-T", "-xx", "-s", "2048", "-e",
         "trace=fsync,fdatasync,sendmsg,sendto,recvmsg"]
_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_CALL = re.compile(r"^(fsync|fdatasync|sendmsg|sendto|recvmsg)\(")
_RESUMED = re.compile(r"^<\.\.\. (fsync|fdatasync|sendmsg|sendto|recvmsg) resumed>")
_DURATION = re.compile(r"<(\d+\.\d+)>\s*$")
_IOV = re.compile(r'(?:iov_base=|^sendto\(\d+, )"((?:\\x[0-9a-f]{2})+)"')  # not inet_addr("..")


@dataclass
class Call:
    """One traced system call: when it started and ended, and the DHCP packet it carried (if any)."""

    name: str
    start: float
    end: float
    packet: p.DhcpPacket | None


def parse_trace(text: str) -> list[Call]:
    """strace -f -ttt -T -xx output -> calls in start order (split <unfinished>/<resumed> lines joined)."""
    calls: list[Call] = []
    open_calls: dict[tuple[str, str], tuple[float, str]] = {}
    for raw in text.splitlines():
        m = _LINE.match(raw)
        if m is None:
            continue
        pid, ts, rest = m.group(1), float(m.group(2)), m.group(3)
        resumed = _RESUMED.match(rest)
        if resumed is not None:
            name = resumed.group(1)
            start, head = open_calls.pop((pid, name), (ts, ""))
            body = head + rest
        else:
            call = _CALL.match(rest)
            if call is None:
                continue
            name = call.group(1)
            if rest.endswith("<unfinished ...>"):
                open_calls[(pid, name)] = (ts, rest)
                continue
            start, body = ts, rest
        dur = _DURATION.search(body)
        if dur is None or "= -1" in body:
            continue  # failed (EAGAIN on the non-blocking socket) or never returned
        packet = None
        if name in ("sendmsg", "sendto", "recvmsg"):
            data = _IOV.search(body)
            if data is not None:
                raw_bytes = bytes.fromhex(data.group(1).replace("\\x", ""))
                try:
                    packet = p.parse(raw_bytes)
                except p.MalformedPacket:
                    packet = None
        calls.append(Call(name, start, start + float(dur.group(1)), packet))
    calls.sort(key=lambda c: c.start)
    return calls


def unsynced_acks(calls: list[Call]) -> tuple[int, list[str]]:
    """(ACKs seen, descriptions of ACKs that left without an fsync between their REQUEST and the send)."""
    syncs = [c for c in calls if c.name in ("fsync", "fdatasync")]
    last_request: dict[tuple[int, bytes], float] = {}
    acks = 0
    bad: list[str] = []
    for c in calls:
        pkt = c.packet
        if pkt is None:
            continue
        key = (pkt.xid, pkt.chaddr)
        if c.name == "recvmsg" and pkt.op == p.BOOTREQUEST and pkt.message_type == p.REQUEST:
            last_request[key] = c.start
        elif c.name in ("sendmsg", "sendto") and pkt.op == p.BOOTREPLY and pkt.message_type == p.ACK:
            acks += 1
            received = last_request.get(key)
            if received is None or not any(received < s.start and s.end <= c.start for s in syncs):
                bad.append(f"ACK {pkt.yiaddr} xid={pkt.xid:#x} sent at {c.start:.6f}, REQUEST at {received}")
    return acks, bad


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    for tool in ("strace", "perfdhcp"):
        if not Path(f"/usr/bin/{tool}").exists() and not Path(f"/usr/sbin/{tool}").exists():
            skip_or_fail(f"needs {tool} (scripts/setup-debian.sh)")
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=write_config(tmp_path, dns=False)).build()
    yield app
    if app.proc is not None:
        app.stop()


def test_every_ack_leaves_after_the_fsync_of_its_lease(appliance: ApplianceLab) -> None:
    lab, tmp = appliance.lab, appliance.tmp
    trace = tmp / "serve.strace"
    appliance.proc = lab.spawn(appliance.srv, [*TRACE, "-o", str(trace), *ZTP, "serve", "--config",
                                               str(appliance.config)], log=appliance.log)
    lab.wait_for(lambda: lab.udp_listening(appliance.srv, 67) and lab.udp_listening(appliance.srv, 69), 30,
                 "ztp serve (under strace) listening")
    # perfdhcp acts as a relay at 10.60.0.50 for 60 clients at once: concurrent REQUESTs, grouped commits.
    relay = lab.ns("perf")
    lab.attach(appliance.seg, relay, "eth0", addr="10.60.0.50/24")
    res = lab.run(relay, ["perfdhcp", "-4", "-l", "eth0", "-r", "30", "-R", "60", "-n", "60", "-p", "6",
                          "10.60.0.1"], timeout=60, check=False)
    assert "RECV: 60" in res.stdout or "received packets: " in res.stdout, res.stdout + res.stderr
    env = appliance.dhclient(appliance.client("c1", "02:00:00:00:00:01"), timeout=40)
    assert env["new_ip_address"] == "10.60.0.11"
    appliance.stop()
    acks, bad = unsynced_acks(parse_trace(trace.read_text(errors="replace")))
    assert acks >= 30, f"only {acks} ACKs traced\n{res.stdout}"
    assert not bad, "\n".join(bad[:20])


def test_trace_check_catches_an_ack_before_its_fsync() -> None:
    """The checker itself: an ACK sent before the fdatasync finished is reported."""
    req = p.DhcpPacket(op=p.BOOTREQUEST, xid=7, chaddr=b"\x02" * 6, options={53: bytes((p.REQUEST,))})
    ack = p.DhcpPacket(op=p.BOOTREPLY, xid=7, chaddr=b"\x02" * 6, options={53: bytes((p.ACK,))})
    good = [Call("recvmsg", 1.0, 1.0, req), Call("fdatasync", 1.1, 1.2, None), Call("sendmsg", 1.3, 1.3, ack)]
    early = [Call("recvmsg", 1.0, 1.0, req), Call("fdatasync", 1.1, 1.4, None), Call("sendmsg", 1.3, 1.3, ack)]
    stale = [Call("fdatasync", 0.5, 0.6, None), Call("recvmsg", 1.0, 1.0, req), Call("sendmsg", 1.3, 1.3, ack)]
    assert unsynced_acks(good) == (1, [])
    assert unsynced_acks(early)[1] and unsynced_acks(stale)[1]
    line = ('123 1.500000 sendmsg(7, {msg_name={sa_family=AF_INET}, msg_iov=[{iov_base="'
            + "".join(f"\\x{b:02x}" for b in p.build(ack)) + '", iov_len=300}]}, 0) = 300 <0.000020>')
    parsed = parse_trace(line)
    assert len(parsed) == 1 and parsed[0].packet is not None and parsed[0].packet.message_type == p.ACK


def test_unreadable_lease_database_stops_the_start(lab: Lab, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, dns=False)
    db = tmp_path / "state" / "leases.sqlite3"
    db.parent.mkdir()
    db.write_bytes(b"this is not a database" * 100)  # corrupt (or another program's file)
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=cfg).build()
    for reason in ("file is not a database", "disk I/O error"):
        proc = lab.spawn(app.srv, [*ZTP, "serve", "--config", str(cfg)], log=app.log)
        lab.wait_for(lambda proc=proc: proc.poll() is not None, 30, "ztp serve exits")  # type: ignore[misc]
        log = app.log.read_text()
        assert proc.returncode == 1, log
        assert f"lease database {db} cannot be read: {reason}" in log and "Traceback" not in log, log
        assert not lab.udp_listening(app.srv, 67)
        check = app.ztp("check")
        assert check.returncode != 0 and reason in check.stdout + check.stderr
        if db.is_file():
            db.unlink()
            db.mkdir()  # next: a path that cannot be read as a file at all
