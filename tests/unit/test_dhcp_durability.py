"""Issue 10, durability proven: the real DhcpServer shell (its datagram path, the ledger, a lease store)
with an injected socket that records what leaves. No ACK may leave before its lease is on disk: a failed
commit sends nothing and leaves memory equal to the disk; a blocked commit holds the ACK until it lands;
and at the instant an ACK is sent, its row is already readable from the database by another connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import sqlite3
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
from ztp.leases.ledger import Ledger
from ztp.leases.store import LeaseWriter, database_path, load_leases
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.net.sockets import IN_PKTINFO, IP_PKTINFO

SERVER = IPv4Address("10.60.0.1")
CLIENT = "02:77:00:00:0d:01"
IFINDEX = 7


class RecordingSocket:
    """Stands in for the server's UDP socket: every datagram sent is parsed and handed to `on_send`."""

    def __init__(self, on_send: Callable[[p.DhcpPacket], None] | None = None) -> None:
        self.sent: list[p.DhcpPacket] = []
        self.on_send = on_send

    def fileno(self) -> int:
        return -1  # ARP injection fails on it: replies go by broadcast, which is fine here

    def _record(self, data: bytes) -> None:
        pkt = p.parse(data)
        if self.on_send is not None:
            self.on_send(pkt)
        self.sent.append(pkt)

    def sendmsg(self, buffers: list[bytes], *args: Any) -> int:
        self._record(b"".join(buffers))
        return 0

    def sendto(self, data: bytes, *args: Any) -> int:
        self._record(data)
        return len(data)

    def types(self) -> list[int | None]:
        return [pkt.message_type for pkt in self.sent]


class FailingStore:
    """A store whose disk is gone: every commit fails."""

    def commit(self, lease: Lease) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_exception(sqlite3.OperationalError("disk I/O error"))
        return fut


class BlockingStore:
    """A store whose fsync takes as long as the test says."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Lease, asyncio.Future[None]]] = []

    def commit(self, lease: Lease) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((lease, fut))
        return fut


def _server(tmp_path: Path, store: Any, sock: RecordingSocket) -> tuple[DhcpServer, LeaseTable]:
    config = dataclasses.replace(make_config(tmp_path), ping_check=False)
    table = LeaseTable()
    ledger = Ledger(table, store)
    server = DhcpServer(Chain(config, ledger), ledger, interfaces=("s1",))
    server._sock = sock  # type: ignore[assignment]
    server._ifaces._cache[IFINDEX] = (time.monotonic() + 3600, "s1", SERVER)  # the interface, as SIOCGIF* says
    return server, table


# A broadcast's IP_PKTINFO: received on IFINDEX, our address SERVER, sent to 255.255.255.255.
BROADCAST_PKTINFO = [(socket.IPPROTO_IP, IP_PKTINFO, IN_PKTINFO.pack(IFINDEX, SERVER.packed, b"\xff\xff\xff\xff"))]


def _receive(server: DhcpServer, pkt: p.DhcpPacket) -> None:
    """One broadcast datagram through the shell's receive path, with its IP_PKTINFO."""
    server._datagram(p.build(pkt), BROADCAST_PKTINFO, ("0.0.0.0", 68))


def _dora_request(server: DhcpServer, sock: RecordingSocket) -> IPv4Address:
    _receive(server, msg(p.DISCOVER, CLIENT, flags=p.BROADCAST_FLAG))
    assert sock.types() == [p.OFFER]
    ip = sock.sent[0].yiaddr
    _receive(server, msg(p.REQUEST, CLIENT, requested=str(ip), server_id=str(SERVER), flags=p.BROADCAST_FLAG))
    return ip


def test_failed_commit_sends_no_ack_and_memory_stays_as_the_disk(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        sock = RecordingSocket()
        server, table = _server(tmp_path, FailingStore(), sock)
        with caplog.at_level(logging.ERROR, logger="ztp.dhcp"):
            ip = _dora_request(server, sock)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        assert sock.types() == [p.OFFER]  # no ACK, and no NAK either: nothing rather than a lie
        assert server.counters["commit_failed"] == 1
        row = table.at(ip)
        assert row.state == LeaseState.OFFERED  # the binding was not applied: memory is what the disk has
        assert server.ledger.commit_failures == 1
        line = next(r.getMessage() for r in caplog.records if "NOT written" in r.getMessage())
        assert line.startswith(CLIENT) and str(ip) in line and "disk I/O error" in line and "no reply sent" in line

    asyncio.run(run())


def test_blocked_commit_holds_the_ack_until_the_row_is_durable(tmp_path: Path) -> None:
    async def run() -> None:
        sock = RecordingSocket()
        store = BlockingStore()
        server, table = _server(tmp_path, store, sock)
        ip = _dora_request(server, sock)
        for _ in range(5):
            await asyncio.sleep(0)
        assert sock.types() == [p.OFFER] and len(store.waiting) == 1
        assert table.at(ip).state == LeaseState.OFFERED  # not bound in memory either
        # Another client meanwhile cannot be given the address being written.
        _receive(server, msg(p.DISCOVER, "02:77:00:00:0d:02", flags=p.BROADCAST_FLAG))
        assert sock.sent[-1].yiaddr != ip
        lease, fut = store.waiting[0]
        assert lease.ip == ip and lease.state == LeaseState.BOUND
        fut.set_result(None)
        await asyncio.sleep(0)
        assert sock.types()[-1] == p.ACK and sock.sent[-1].yiaddr == ip
        assert table.at(ip).state == LeaseState.BOUND

    asyncio.run(run())


def test_every_ack_finds_its_row_on_disk_when_it_leaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real SQLite store: at each ACK's send its row is durable (another reader finds it: the database and
    the commit log); while the lease writer is gone no ACK leaves and memory keeps agreeing with the disk."""
    from ztp.leases.store import sqlite as store
    monkeypatch.setattr(store, "RESPAWN_AFTER", 3600.0)  # a dead writer stays dead for this test
    db = database_path(tmp_path / "state")

    def on_disk(pkt: p.DhcpPacket) -> None:
        if pkt.message_type == p.ACK:
            rows = {lease.ip: lease for lease in load_leases(db)}
            assert pkt.yiaddr in rows and rows[pkt.yiaddr].state == LeaseState.BOUND, "ACK before its fsync"

    async def run() -> None:
        sock = RecordingSocket(on_disk)
        writer = LeaseWriter(db)
        writer.start(asyncio.get_running_loop())
        server, table = _server(tmp_path, writer, sock)
        try:
            for n in range(20):
                mac = f"02:77:00:00:0e:{n:02x}"
                _receive(server, msg(p.DISCOVER, mac, xid=n, flags=p.BROADCAST_FLAG))
                offer = sock.sent[-1]
                _receive(server, msg(p.REQUEST, mac, xid=n, requested=str(offer.yiaddr), server_id=str(SERVER),
                                     flags=p.BROADCAST_FLAG))
            await _until(lambda: sock.types().count(p.ACK) == 20)
            # The writer process is gone (killed): the next commit fails, no ACK, and memory follows the disk.
            assert writer._proc is not None
            writer._proc.kill()
            writer._proc.wait()
            ip = _dora_request_for(server, sock, "02:77:00:00:0f:01")
            await _until(lambda: server.counters["commit_failed"] == 1)
            assert sock.types().count(p.ACK) == 20
            assert table.at(ip).state == LeaseState.OFFERED
            bound = {lease.ip for lease in table.leases() if lease.state == LeaseState.BOUND}
            assert bound == {lease.ip for lease in load_leases(db) if lease.state == LeaseState.BOUND}
            assert len(bound) == 20
        finally:
            writer.close()

    asyncio.run(run())


def _dora_request_for(server: DhcpServer, sock: RecordingSocket, mac: str) -> IPv4Address:
    _receive(server, msg(p.DISCOVER, mac, xid=99, flags=p.BROADCAST_FLAG))
    ip = sock.sent[-1].yiaddr
    _receive(server, msg(p.REQUEST, mac, xid=99, requested=str(ip), server_id=str(SERVER), flags=p.BROADCAST_FLAG))
    return ip


async def _until(done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_unreadable_lease_database_is_an_error_naming_file_and_reason(tmp_path: Path) -> None:
    db = tmp_path / "leases.sqlite3"
    assert load_leases(db) == []  # no database yet: empty
    sqlite3.connect(db).close()
    assert load_leases(db) == []  # created, never written: empty
    db.write_bytes(b"garbage" * 200)
    with pytest.raises(OSError, match=f"lease database {db} cannot be read: file is not a database"):
        load_leases(db)
    db.unlink()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE leases (ip, client, mac, state, expires, updated, hostname)")
        conn.execute("INSERT INTO leases VALUES ('10.60.0.300', 'c', 'c', 'bound', 1, 1, NULL)")
    with pytest.raises(OSError, match="10.60.0.300"):
        load_leases(db)


class QueuedSocket(RecordingSocket):
    """A socket with datagrams waiting to be read (each with its IP_PKTINFO), as after a storm's burst."""

    def __init__(self, waiting: list[bytes]) -> None:
        super().__init__()
        self.waiting = list(waiting)

    def recvmsg(self, bufsize: int,
                ancbufsize: int) -> tuple[bytes, list[tuple[int, int, bytes]], int, tuple[str, int]]:
        if not self.waiting:
            raise BlockingIOError
        return self.waiting.pop(0), BROADCAST_PKTINFO, 0, ("0.0.0.0", 68)


def test_a_wake_up_reads_a_bounded_burst_then_lets_the_loop_run_other_work(tmp_path: Path) -> None:
    """Issue 14: the lease writer's acknowledgements (which release the ACKs) wait for the DHCP reader to
    give the loop back, so one wake-up reads at most `_BURST` datagrams and leaves the rest queued."""
    from ztp.dhcp.server import _BURST

    async def run() -> None:
        total = 2 * _BURST + 5
        sock = QueuedSocket([p.build(msg(p.DISCOVER, f"02:77:00:00:0e:{n:02x}", flags=p.BROADCAST_FLAG))
                             for n in range(total)])
        server, _ = _server(tmp_path, BlockingStore(), sock)
        server._readable()
        assert len(sock.sent) == _BURST and len(sock.waiting) == total - _BURST  # OFFERs need no commit
        server._readable()
        assert len(sock.sent) == 2 * _BURST
        server._readable()  # the rest, then the socket is empty: it returns instead of blocking
        assert len(sock.sent) == total and not sock.waiting and sock.types() == [p.OFFER] * total
        assert server.counters["received"] == total

    asyncio.run(run())
