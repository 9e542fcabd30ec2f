"""Where a datagram arrived (the DHCP shell's Ingress) is worked out once per interface, relay or source and
remembered for a few seconds (issue 14): the same arrival gives the same answer, a change of dhcp.interfaces
applies to the next datagram, and an interface's new address is seen once the remembered arrival expires."""

from __future__ import annotations

import socket
import time
from ipaddress import IPv4Address
from pathlib import Path

from test_dhcp_chain import msg
from test_dhcp_durability import BROADCAST_PKTINFO, CLIENT, IFINDEX, SERVER, RecordingSocket, _server

from ztp.dhcp import packet as p
from ztp.net.sockets import IN_PKTINFO, IP_PKTINFO

RELAY = IPv4Address("10.64.0.2")
# A relayed datagram's IP_PKTINFO: sent by the relay to SERVER, received on IFINDEX.
RELAYED_PKTINFO = [(socket.IPPROTO_IP, IP_PKTINFO, IN_PKTINFO.pack(IFINDEX, SERVER.packed, SERVER.packed))]


def _expire(server: object) -> None:
    remembered = server._ingresses  # type: ignore[attr-defined]
    for key, (_, ingress) in list(remembered.items()):
        remembered[key] = (time.monotonic() - 1, ingress)


def test_an_arrival_is_worked_out_once_and_shared(tmp_path: Path) -> None:
    server, _ = _server(tmp_path, None, RecordingSocket())
    discover = msg(p.DISCOVER, CLIENT)
    first = server._ingress(discover, BROADCAST_PKTINFO, "0.0.0.0")
    assert first is not None and first.broadcast and first.server_ip == SERVER and first.ifname == "s1"
    assert server._ingress(msg(p.DISCOVER, "02:77:00:00:0d:02"), BROADCAST_PKTINFO, "0.0.0.0") is first
    relayed = msg(p.DISCOVER, CLIENT, giaddr=str(RELAY))
    via = server._ingress(relayed, RELAYED_PKTINFO, str(RELAY))
    assert via is not None and via is not first and not via.broadcast and via.peer == RELAY
    assert server._ingress(relayed, RELAYED_PKTINFO, str(RELAY)) is via


def test_a_new_interface_list_applies_to_the_next_datagram(tmp_path: Path) -> None:
    sock = RecordingSocket()
    server, _ = _server(tmp_path, None, sock)
    assert server._ingress(msg(p.DISCOVER, CLIENT), BROADCAST_PKTINFO, "0.0.0.0") is not None
    server.interfaces = frozenset({"other0"})  # a reload that stops serving s1
    assert server._ingress(msg(p.DISCOVER, CLIENT), BROADCAST_PKTINFO, "0.0.0.0") is None
    assert server.counters["ignored_interface"] == 1
    server._datagram(p.build(msg(p.DISCOVER, CLIENT)), BROADCAST_PKTINFO, ("0.0.0.0", 68))
    assert sock.sent == [] and server.counters["ignored_interface"] == 2  # refusals are not remembered


def test_an_interfaces_new_address_is_seen_once_the_arrival_expires(tmp_path: Path) -> None:
    server, _ = _server(tmp_path, None, RecordingSocket())
    before = server._ingress(msg(p.DISCOVER, CLIENT), BROADCAST_PKTINFO, "0.0.0.0")
    assert before is not None and before.server_ip == SERVER
    moved = IPv4Address("10.60.0.2")
    server._ifaces._cache[IFINDEX] = (time.monotonic() + 3600, "s1", moved)  # the interface was renumbered
    assert server._ingress(msg(p.DISCOVER, CLIENT), BROADCAST_PKTINFO, "0.0.0.0") is before  # still remembered
    _expire(server)
    after = server._ingress(msg(p.DISCOVER, CLIENT), BROADCAST_PKTINFO, "0.0.0.0")
    assert after is not None and after.server_ip == moved
