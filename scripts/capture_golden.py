#!/usr/bin/env python3
"""Record the golden DHCP captures in tests/data/dhcp/ from real peers, inside network namespaces.

Run as root from the repository root: ``.venv/bin/python scripts/capture_golden.py``. Everything runs in
namespaces made by :class:`ztp.lab.Lab` (torn down afterwards, even on error); nothing touches the host's
network. Topology::

    cli  eth0 (02:00:00:00:00:01) ---- s1 10.60.0.1/24  srv  (dnsmasq on s1; tcpdump on s1 and r1)
    cli2 eth0 (02:00:00:00:00:07) ---- d1 10.70.0.1/24  rly  u1 10.50.0.2/24 ---- r1 10.50.0.1/24 srv
                                       (ISC dhcrelay -a: option 82, giaddr 10.70.0.1)

Captured with tcpdump (-w pcap), then each chosen frame's UDP payload is written as NAME.hex (one line of
lowercase hex) and NAME.txt (tshark's independent decode of the same frame, plus how it was made):

- dhclient_discover / dhclient_request: ISC dhclient (tests/data/dhclient.conf, so option 55 lists 66/67)
- dnsmasq_offer: dnsmasq's OFFER to that dhclient, with --dhcp-boot=leaf01.cfg,,10.60.0.1
- udhcpc_discover: busybox udhcpc with a hostname (option 12) and its default client-id (option 61)
- dhcrelay_discover: a udhcpc DISCOVER as ISC dhcrelay forwards it: giaddr set, option 82 appended
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ztp.lab import Lab, dhclient_argv, require_root  # noqa: E402

DATA = ROOT / "tests" / "data"
OUT = DATA / "dhcp"
CLIENT_MAC = "02:00:00:00:00:01"
RELAYED_MAC = "02:00:00:00:00:07"

_LINKTYPE_ETHERNET = 1


def pcap_udp_payloads(path: Path) -> Iterator[tuple[int, int, int, bytes]]:
    """(frame number, source port, destination port, UDP payload) of each IPv4/UDP frame of a pcap file."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    if linktype != _LINKTYPE_ETHERNET:
        raise SystemExit(f"{path}: link type {linktype}, expected Ethernet")
    off, number = 24, 0
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack_from(endian + "IIII", data, off)
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        number += 1
        if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            continue
        total = struct.unpack_from("!H", ip, 2)[0]
        udp = ip[ihl:total]
        sport, dport, ulen = struct.unpack_from("!HHH", udp, 0)
        yield number, sport, dport, bytes(udp[8:ulen])


def dhcp_type(payload: bytes) -> int | None:
    """Option 53 of a DHCP payload, found by a plain TLV walk (independent of ztp's codec)."""
    i = 240
    while i + 1 < len(payload):
        code = payload[i]
        if code == 0:
            i += 1
            continue
        if code == 255:
            return None
        length = payload[i + 1]
        if code == 53 and length == 1:
            return payload[i + 2]
        i += 2 + length
    return None


def chaddr(payload: bytes) -> str:
    """The 6-byte hardware address of a BOOTP payload, colon-separated."""
    return payload[28:34].hex(":")


def find(pcap: Path, want: Callable[[int, int, bytes], bool]) -> tuple[int, bytes] | None:
    """First frame whose (sport, dport, payload) satisfies `want`."""
    for number, sport, dport, payload in pcap_udp_payloads(pcap):
        if want(sport, dport, payload):
            return number, payload
    return None


def save(name: str, pcap: Path, number: int, payload: bytes, how: str) -> None:
    """Write NAME.hex and NAME.txt (tshark -V of the frame) into tests/data/dhcp/."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.hex").write_text(payload.hex() + "\n")
    tshark = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", f"frame.number == {number}", "-O", "dhcp"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    decode = tshark.stdout if tshark.returncode == 0 else f"(tshark failed: {tshark.stderr.strip()})\n"
    # Keep only the DHCP layer: frame/IP lines carry capture timestamps that change on every run.
    start = decode.find("Dynamic Host Configuration Protocol")
    text = decode[start:] if start >= 0 else decode
    (OUT / f"{name}.txt").write_text(
        f"# {name}.hex: {len(payload)}-byte UDP payload, {how}\n"
        f"# recorded by scripts/capture_golden.py; decode below by tshark (independent of ztp)\n\n{text}"
    )
    print(f"{name}: {len(payload)} bytes (frame {number} of {pcap.name})")


def wait_found(lab: Lab, pcap: Path, want: Callable[[int, int, bytes], bool], what: str,
               timeout: float = 20) -> tuple[int, bytes]:
    """Poll the growing pcap (tcpdump -U writes each packet at once) until `want` matches."""
    found: list[tuple[int, bytes]] = []

    def check() -> bool:
        hit = find(pcap, want) if pcap.exists() else None
        if hit is not None:
            found.append(hit)
        return hit is not None

    lab.wait_for(check, timeout, what, interval=0.2)
    return found[0]


def capture(tmp: Path) -> None:
    """Build the lab, run the peers, save the five captures."""
    with Lab() as lab:
        srv, cli, cli2, rly = lab.ns("srv"), lab.ns("cli"), lab.ns("cli2"), lab.ns("rly")
        lab.link(srv, "s1", cli, "eth0", addr_a="10.60.0.1/24", mac_b=CLIENT_MAC)
        lab.link(srv, "r1", rly, "u1", addr_a="10.50.0.1/24", addr_b="10.50.0.2/24")
        lab.link(rly, "d1", cli2, "eth0", addr_a="10.70.0.1/24", mac_b=RELAYED_MAC)
        direct, relayed = tmp / "s1.pcap", tmp / "r1.pcap"
        dumps = [lab.spawn(srv, ["tcpdump", "-n", "-U", "-i", ifname, "-s", "0", "-w", str(pcap),
                                 "udp port 67 or udp port 68"], log=tmp / f"tcpdump-{ifname}.log")
                 for ifname, pcap in (("s1", direct), ("r1", relayed))]
        lab.wait_for(lambda: direct.exists() and relayed.exists(), 10, "tcpdump started")
        time.sleep(0.5)  # the pcap header is written before the capture is armed

        lab.spawn(srv, ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--pid-file=",
                        "--bind-interfaces", "--no-ping", "--log-dhcp",
                        "--dhcp-range=10.60.0.100,10.60.0.150,255.255.255.0",
                        f"--dhcp-leasefile={tmp / 'dnsmasq.leases'}", "--interface=s1",
                        "--dhcp-boot=leaf01.cfg,,10.60.0.1"], log=tmp / "dnsmasq.log")
        lab.wait_udp_listening(srv, 67)

        # 1. ISC dhclient: DISCOVER, dnsmasq's OFFER, REQUEST.
        out = tmp / "dhclient.env"
        proc = lab.spawn(cli, dhclient_argv("eth0", lease_file=tmp / "dhclient.leases",
                                            pid_file=tmp / "dhclient.pid", script=DATA / "dhclient-script",
                                            conf=DATA / "dhclient.conf", out_file=out),
                         log=tmp / "dhclient.log")
        lab.wait_for(lambda: out.exists() and "new_ip_address=" in out.read_text(), 20, "dhclient BOUND")
        lab.stop(proc)

        # 2. busybox udhcpc (a second exchange from the same port; distinguished by xid and option 12).
        lab.run(cli, ["busybox", "udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "1", "-i", "eth0",
                      "-s", "/bin/true", "-x", "hostname:udhcpc-sw1"], timeout=20)

        # 3. ISC dhcrelay forwarding a udhcpc DISCOVER with option 82 (nobody answers on r1).
        relay = lab.spawn(rly, ["dhcrelay", "-d", "-4", "-a", "--no-pid", "-i", "d1", "-i", "u1",
                                "10.50.0.1"], log=tmp / "dhcrelay.log")
        time.sleep(1.0)  # dhcrelay has no readiness signal; it binds 67 on all interfaces
        lab.wait_udp_listening(rly, 67)
        lab.run(cli2, ["busybox", "udhcpc", "-f", "-q", "-n", "-t", "2", "-T", "1", "-i", "eth0",
                       "-s", "/bin/true"], timeout=20, check=False)
        relayed_hit = wait_found(lab, relayed, lambda s, d, pl: d == 67 and pl[24:28] != b"\0\0\0\0"
                                 and dhcp_type(pl) == 1, "relayed DISCOVER")
        lab.stop(relay)
        for dump in dumps:
            lab.stop(dump)

        def from_client(mtype: int, *, option12: bytes | None = None, absent12: bool = False
                        ) -> Callable[[int, int, bytes], bool]:
            def want(sport: int, dport: int, pl: bytes) -> bool:
                if dport != 67 or chaddr(pl) != CLIENT_MAC or dhcp_type(pl) != mtype:
                    return False
                has = option12 is not None and (b"\x0c" + bytes((len(option12),)) + option12) in pl[240:]
                return has if option12 is not None else (not absent12 or b"udhcpc-sw1" not in pl)
            return want

        hits = {
            "dhclient_discover": (find(direct, from_client(1, absent12=True)), "ISC dhclient 4.4 DISCOVER"),
            "dhclient_request": (find(direct, from_client(3, absent12=True)),
                                 "ISC dhclient 4.4 REQUEST (SELECTING, answers dnsmasq's OFFER)"),
            "dnsmasq_offer": (find(direct, lambda s, d, pl: s == 67 and dhcp_type(pl) == 2),
                              "dnsmasq OFFER to dhclient, --dhcp-boot=leaf01.cfg,,10.60.0.1"),
            "udhcpc_discover": (find(direct, from_client(1, option12=b"udhcpc-sw1")),
                                "busybox udhcpc DISCOVER, -x hostname:udhcpc-sw1"),
            "dhcrelay_discover": (relayed_hit, "udhcpc DISCOVER relayed by ISC dhcrelay -a from d1 "
                                               "(10.70.0.1) to 10.50.0.1"),
        }
        for name, (hit, how) in hits.items():
            if hit is None:
                raise SystemExit(f"no {name} in the capture; see the logs in {tmp}")
            save(name, relayed if name == "dhcrelay_discover" else direct, hit[0], hit[1], how)


def main() -> int:
    """Record the captures (root only)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (pcaps, logs)")
    args = parser.parse_args()
    require_root()
    for tool in ("tcpdump", "tshark", "dnsmasq", "dhclient", "dhcrelay", "busybox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/setup-debian.sh installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="ztp-golden-"))
    try:
        capture(tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
