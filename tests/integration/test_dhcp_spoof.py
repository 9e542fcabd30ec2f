"""Issue 10: one forged DHCP packet cannot change someone else's lease.

A real dhclient holds a pool address; a second host on the segment sends DECLINEs and RELEASEs for it
(its own MAC, naming our server id, as RFC 2131 Table 5 has them), and DECLINEs for a hundred other
addresses. The victim's lease stays bound, the dhclient renews it at T1 unchanged (before the ownership
rule the address was quarantined or freed, and the renewal NAKed), and the lease table did not grow.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.appliance import DATA, ApplianceLab, write_config
from ztp.lab import Lab, dhclient_argv

pytestmark = pytest.mark.netns

VICTIM = "02:00:00:00:0a:01"
ATTACKER = "02:00:00:00:0a:99"
SERVER = "10.60.0.1"

# Sent from the attacker's namespace: hand-built BOOTREQUESTs unicast to the server's port 67.
FORGE = textwrap.dedent("""\
    import socket, struct, sys
    from ipaddress import IPv4Address
    victim, server = IPv4Address(sys.argv[1]), IPv4Address(sys.argv[2])
    chaddr = bytes.fromhex(sys.argv[3].replace(":", ""))
    def packet(mtype, xid, ciaddr=IPv4Address(0), requested=None):
        head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0, ciaddr.packed, bytes(4),
                           bytes(4), bytes(4), chaddr.ljust(16, b"\\0"), b"", b"")
        opts = bytes((53, 1, mtype, 54, 4)) + server.packed
        if requested is not None:
            opts += bytes((50, 4)) + requested.packed
        return head + b"\\x63\\x82\\x53\\x63" + opts + b"\\xff"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 68))
    sent = 0
    for i in range(3):
        sock.sendto(packet(4, 0x5100 + i, requested=victim), (str(server), 67))  # DECLINE of the victim's
        sock.sendto(packet(7, 0x5200 + i, ciaddr=victim), (str(server), 67))  # RELEASE of the victim's
        sent += 2
    for n in range(100):  # DECLINEs of addresses nobody holds, in and out of the pool
        sock.sendto(packet(4, 0x5300 + n, requested=IPv4Address(int(IPv4Address("10.60.0.0")) + 2 + n)),
                    (str(server), 67))
        sent += 1
    print(sent)
""")


LEASE = 20  # seconds: the victim renews (T1 = 10 s) during the test


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=write_config(tmp_path, lease_time=LEASE)).build()
    app.start()
    yield app
    if app.proc is not None:
        app.stop()


def leases(appliance: ApplianceLab) -> dict[object, dict[str, object]]:
    res = appliance.ztp("leases", "--json")
    assert res.returncode == 0, res.stderr
    return {row["ip"]: row for row in json.loads(res.stdout)}


def reasons(env: Path) -> list[tuple[str, str]]:
    """(reason, new_ip_address) of every run of tests/data/dhclient-script, in order."""
    out: list[tuple[str, str]] = []
    reason = ""
    for line in env.read_text().splitlines() if env.exists() else []:
        key, _, value = line.partition("=")
        if key == "reason":
            reason = value
            out.append((reason, ""))
        elif key == "new_ip_address" and out:
            out[-1] = (reason, value)
    return out


def test_forged_decline_and_release_leave_the_victims_lease_alone(appliance: ApplianceLab) -> None:
    victim = appliance.client("victim", VICTIM)
    env, log = appliance.tmp / "victim.env", appliance.tmp / "victim-dhclient.log"
    argv = dhclient_argv("eth0", lease_file=appliance.tmp / "victim.leases", pid_file=appliance.tmp / "victim.pid",
                         script=DATA / "dhclient-script", conf=DATA / "dhclient.conf", out_file=env)
    dhclient = appliance.lab.spawn(victim, argv, log=log)  # keeps running: renews at T1
    try:
        appliance.lab.wait_for(lambda: any(r == "BOUND" and addr for r, addr in reasons(env)), 25,
                               "the victim bound")
        ip = next(addr for r, addr in reasons(env) if r == "BOUND")
        assert ip.startswith("10.60.0.1")  # a pool address (10.60.0.100-199)
        before = leases(appliance)
        attacker = appliance.client("attacker", ATTACKER)
        appliance.lab.run(attacker, ["ip", "addr", "add", "10.60.0.250/24", "dev", "eth0"])
        script = appliance.tmp / "forge.py"
        script.write_text(FORGE)
        sent = appliance.lab.run(attacker, ["python3", str(script), ip, SERVER, ATTACKER], timeout=30)
        assert sent.stdout.strip() == "106"
        appliance.lab.wait_for(lambda: appliance.log.read_text().count("not a lease of this client; ignored") >= 6,
                               15, "the forged DECLINEs and RELEASEs logged as ignored")
        rows = leases(appliance)
        assert rows[ip]["state"] == "bound" and rows[ip]["mac"] == VICTIM
        assert len(rows) == len(before)  # a hundred DECLINEs added nothing
        appliance.lab.wait_for(lambda: "not a pool address; ignored" in appliance.log.read_text(), 5,
                               "the DECLINE of a foreign address logged")
        # The victim renews at T1 (unicast REQUEST for its address): ACKed, the same address, no NAK.
        # (A record is complete once its address is written: the script writes it after the reason.)
        appliance.lab.wait_for(lambda: any(r == "RENEW" and addr for r, addr in reasons(env)), LEASE,
                               "the victim renewed")
    finally:
        appliance.lab.stop(dhclient)
    seen = reasons(env)
    assert [r for r, _ in seen][:2] == ["BOUND", "RENEW"] and {a for _, a in seen if a} == {ip}, seen
    assert "-> NAK" not in appliance.log.read_text()
