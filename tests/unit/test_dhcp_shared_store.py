"""Two appliances' real DhcpServer shells (datagram path, chain, ledger, cache) on one real PostgreSQL, with
sockets that record what leaves: when both offered one address to two clients who then REQUEST it at once,
the database lets one binding through and refuses the other, whose appliance sends nothing, learns the
winner, NAKs the client's retry and offers it another address (issue 13)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from test_dhcp_chain import make_config, msg

from ztp.dhcp import packet as p
from ztp.dhcp.chain import Chain
from ztp.dhcp.server import DhcpServer
from ztp.leases.store import ledger_for, merge_remote, read_through
from ztp.leases.store.postgres import PostgresStore, read_rows, upgrade
from ztp.leases.table import LeaseTable
from ztp.net.sockets import IN_PKTINFO, IP_PKTINFO

IFINDEX = 7


class RecordingSocket:
    """Stands in for a server's UDP socket: what it sends, parsed."""

    def __init__(self) -> None:
        self.sent: list[p.DhcpPacket] = []

    def fileno(self) -> int:
        return -1  # no ARP injection: replies go by broadcast

    def sendmsg(self, buffers: list[bytes], *args: Any) -> int:
        self.sent.append(p.parse(b"".join(buffers)))
        return 0

    def sendto(self, data: bytes, *args: Any) -> int:
        self.sent.append(p.parse(data))
        return len(data)


@dataclasses.dataclass
class Appliance:
    """One appliance's shell, cache and store, wired as ztp.app wires them."""

    address: IPv4Address
    server: DhcpServer
    table: LeaseTable
    store: PostgresStore
    sock: RecordingSocket

    def receive(self, pkt: p.DhcpPacket) -> None:
        """A broadcast datagram on s1, as IP_PKTINFO reports it."""
        anc = [(socket.IPPROTO_IP, IP_PKTINFO, IN_PKTINFO.pack(IFINDEX, self.address.packed, b"\xff\xff\xff\xff"))]
        self.server._datagram(p.build(pkt), anc, ("0.0.0.0", 68))

    def replies(self, mac: str) -> list[tuple[int | None, IPv4Address]]:
        return [(r.message_type, r.yiaddr) for r in self.sent_to(mac)]

    def sent_to(self, mac: str) -> list[p.DhcpPacket]:
        return [r for r in self.sock.sent if r.mac == mac]


def _appliance(config: Any, dsn: str, address: str) -> Appliance:
    store = PostgresStore(dsn)
    table = LeaseTable(store.load())
    ledger = ledger_for(table, store)  # as ztp.app builds it: a SharedLedger
    server = DhcpServer(Chain(config, ledger), ledger, interfaces=("s1",))
    sock = RecordingSocket()
    server._sock = sock  # type: ignore[assignment]
    server._ifaces._cache[IFINDEX] = (time.monotonic() + 3600, "s1", IPv4Address(address))
    server.read_through = read_through(store, ledger)
    store.start(asyncio.get_running_loop(), lambda rows: merge_remote(ledger, rows))
    return Appliance(IPv4Address(address), server, table, store, sock)


async def _until(done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_the_second_appliance_to_commit_an_address_sends_nothing_then_offers_another(
        tmp_path: Path, pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    upgrade(pg_dsn)
    config = dataclasses.replace(make_config(tmp_path), ping_check=False)
    c1, c2 = "02:77:00:00:13:01", "02:77:00:00:13:02"

    rows: set[tuple[str, str]] = set()

    async def run() -> None:
        a = _appliance(config, pg_dsn, "10.60.0.1")
        b = _appliance(config, pg_dsn, "10.60.0.2")
        try:
            # Each hears only one DISCOVER (two segments, or a lost datagram): both offer the first free address.
            a.receive(msg(p.DISCOVER, c1, xid=1, flags=p.BROADCAST_FLAG))
            b.receive(msg(p.DISCOVER, c2, xid=2, flags=p.BROADCAST_FLAG))
            await _until(lambda: bool(a.replies(c1)) and bool(b.replies(c2)))
            (_, x), (_, y) = a.replies(c1)[0], b.replies(c2)[0]
            assert x == y  # the same address offered to two clients: caches cannot know each other's offers
            # Both clients REQUEST at once: both commits are in flight, the database lets exactly one through.
            with caplog.at_level(logging.WARNING, logger="ztp.dhcp"):
                a.receive(msg(p.REQUEST, c1, xid=1, requested=str(x), server_id="10.60.0.1",
                              flags=p.BROADCAST_FLAG))
                b.receive(msg(p.REQUEST, c2, xid=2, requested=str(x), server_id="10.60.0.2",
                              flags=p.BROADCAST_FLAG))
                await _until(lambda: a.server.counters["commit_failed"] + b.server.counters["commit_failed"] == 1
                             and (a.replies(c1)[-1] == (p.ACK, x) or b.replies(c2)[-1] == (p.ACK, x)))
            (win, wc), (lose, lc) = ((a, c1), (b, c2)) if a.replies(c1)[-1] == (p.ACK, x) else ((b, c2), (a, c1))
            assert lose.server.counters["commit_failed"] == 1 and lose.replies(lc) == [(p.OFFER, x)]  # no ACK
            line = next(r for r in caplog.records if "NOT written" in r.getMessage())
            assert line.levelno == logging.WARNING and lc in line.getMessage() and wc in line.getMessage()
            assert lose.table.at(x).client == wc  # the winner is in the loser's cache: x is not offered again
            # The client retries its REQUEST: NAKed (its offer is gone); it starts over and gets another address.
            server_id = str(lose.address)
            lose.receive(msg(p.REQUEST, lc, xid=2, requested=str(x), server_id=server_id, flags=p.BROADCAST_FLAG))
            await _until(lambda: lose.replies(lc)[-1][0] == p.NAK)
            lose.receive(msg(p.DISCOVER, lc, xid=3, flags=p.BROADCAST_FLAG))
            await _until(lambda: lose.replies(lc)[-1][0] == p.OFFER)
            z = lose.replies(lc)[-1][1]
            assert z != x
            lose.receive(msg(p.REQUEST, lc, xid=3, requested=str(z), server_id=server_id, flags=p.BROADCAST_FLAG))
            await _until(lambda: lose.replies(lc)[-1] == (p.ACK, z))
            # And the winner knows the loser's binding (LISTEN/NOTIFY): it would not offer z to anyone else.
            await _until(lambda: win.table.at(z) is not None and win.table.at(z).client == lc)
            rows.update({(str(x), wc), (str(z), lc)})
        finally:
            a.store.close()
            b.store.close()
        assert {(str(r.ip), r.client) for r in read_rows(pg_dsn)} == rows

    asyncio.run(run())
