"""Misbehaving device peers for the operator-view tests, run inside a device namespace.

    python peers.py discover MAC            send one DISCOVER from MAC and never REQUEST
    python peers.py tftp-stall SERVER FILE N  fetch FILE with blksize 8, ACK N blocks, then go silent
"""

from __future__ import annotations

import socket
import struct
import sys

from ztp.dhcp import options as o
from ztp.dhcp import packet as p


def discover(mac: str) -> None:
    """One broadcast DISCOVER from port 68 (the OFFER is ignored: a device that never REQUESTs)."""
    pkt = p.DhcpPacket(op=p.BOOTREQUEST, xid=0x11AA22BB, chaddr=p.mac_to_chaddr(mac), flags=0x8000,
                       options={o.MESSAGE_TYPE: bytes((p.DISCOVER,))})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
        sock.bind(("0.0.0.0", 68))
        sock.sendto(p.build(pkt), ("255.255.255.255", 67))


def tftp_stall(server: str, filename: str, acks: int) -> None:
    """RRQ with blksize 8 (RFC 2348's minimum), ACK the OACK and `acks` blocks, then stop answering."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"\x00\x01" + filename.encode() + b"\x00octet\x00blksize\x008\x00", (server, 69))
        data, peer = sock.recvfrom(2048)
        assert data[:2] == b"\x00\x06", f"expected an OACK, got {data[:4]!r}"
        sock.sendto(struct.pack("!HH", 4, 0), peer)
        got = 0
        while got < acks:
            data, peer = sock.recvfrom(2048)
            opcode, block = struct.unpack("!HH", data[:4])
            assert opcode == 3, f"expected DATA, got {data!r}"
            if block == got + 1:
                got = block
                if got < acks:
                    sock.sendto(struct.pack("!HH", 4, block), peer)
        # Block `acks` is received and never acknowledged: the server must time out waiting for its ACK.


if __name__ == "__main__":
    if sys.argv[1] == "discover":
        discover(sys.argv[2])
    elif sys.argv[1] == "tftp-stall":
        tftp_stall(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown peer {sys.argv[1]!r}")
