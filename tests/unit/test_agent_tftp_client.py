"""The agent's sans-I/O TFTP read client with a fake clock: options, windowsize, loss, tsize, errors."""

from __future__ import annotations

from tests.conftest import FakeClock
from ztp.agent.tftp_client import TftpOptions, TftpReadClient, TransferState
from ztp.tftp.packet import (
    ERR_NOT_FOUND,
    ERR_OPTIONS,
    Ack,
    Data,
    Error,
    OptionAck,
    ReadRequest,
    build,
    error_datagram,
    parse,
)

TID = 40000


def out(client: TftpReadClient) -> list[tuple[object, int]]:
    return [(parse(o.payload), o.port) for o in client.datagrams_to_send()]


def blocks(payload: bytes, size: int) -> list[bytes]:
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    if len(payload) % size == 0:
        chunks.append(b"")
    return chunks


def test_rrq_asks_for_blksize_tsize_windowsize(fake_clock: FakeClock) -> None:
    c = TftpReadClient("leaf01.cfg", TftpOptions(blksize=1468, windowsize=4))
    c.start(fake_clock.now)
    ((rrq, port),) = out(c)
    assert port == 69
    assert rrq == ReadRequest("leaf01.cfg", "octet", {"blksize": "1468", "tsize": "0", "windowsize": "4"})


def test_oack_then_windowed_transfer_acks_each_window(fake_clock: FakeClock) -> None:
    payload = bytes(range(256)) * 20  # 5120 bytes, blksize 1000 -> 6 blocks (last 120 bytes)
    c = TftpReadClient("f", TftpOptions(blksize=1468, windowsize=4))
    c.start(fake_clock.now)
    out(c)
    c.receive(build(OptionAck({"blksize": "1000", "tsize": str(len(payload)), "windowsize": "4"})), TID,
              fake_clock.now)
    assert out(c) == [(Ack(0), TID)]
    assert (c.blksize, c.windowsize, c.tsize) == (1000, 4, len(payload))
    acks = []
    for i, chunk in enumerate(blocks(payload, 1000), start=1):
        c.receive(build(Data(i, chunk)), TID, fake_clock.now)
        acks += out(c)
    assert acks == [(Ack(4), TID), (Ack(6), TID)]
    assert c.done and c.data == payload


def test_server_ignoring_options_gets_512_lockstep(fake_clock: FakeClock) -> None:
    payload = b"x" * 1024  # exactly two blocks: an empty third block ends it (RFC 1350 §6)
    c = TftpReadClient("f")
    c.start(fake_clock.now)
    out(c)
    acks = []
    for i, chunk in enumerate(blocks(payload, 512), start=1):
        c.receive(build(Data(i, chunk)), TID, fake_clock.now)
        acks += out(c)
    assert acks == [(Ack(1), TID), (Ack(2), TID), (Ack(3), TID)]
    assert c.done and c.data == payload and c.tsize is None


def test_lost_rrq_retransmitted_then_gives_up(fake_clock: FakeClock) -> None:
    c = TftpReadClient("f", TftpOptions(timeout=1.0, retries=3))
    c.start(fake_clock.now)
    out(c)
    for _ in range(3):
        fake_clock.advance(1.0)
        c.handle_timer(fake_clock.now)
        ((pkt, port),) = out(c)
        assert isinstance(pkt, ReadRequest) and port == 69
    fake_clock.advance(1.0)
    c.handle_timer(fake_clock.now)
    assert c.state is TransferState.FAILED and c.failure is not None and "timed out" in c.failure.reason


def test_lost_data_in_window_acks_last_in_order_block(fake_clock: FakeClock) -> None:
    payload = b"y" * 3500  # 4 blocks of 1000 (last 500)
    c = TftpReadClient("f", TftpOptions(blksize=1000, windowsize=4, timeout=1.0))
    c.start(fake_clock.now)
    out(c)
    c.receive(build(OptionAck({"blksize": "1000", "windowsize": "4"})), TID, fake_clock.now)
    out(c)
    chunks = blocks(payload, 1000)
    c.receive(build(Data(1, chunks[0])), TID, fake_clock.now)
    # block 2 is lost; block 3 arrives out of order: RFC 7440 §4, ACK the last in-order block.
    c.receive(build(Data(3, chunks[2])), TID, fake_clock.now)
    assert out(c) == [(Ack(1), TID)]
    for i in (2, 3, 4):
        c.receive(build(Data(i, chunks[i - 1])), TID, fake_clock.now)
    assert out(c) == [(Ack(4), TID)]
    assert c.done and c.data == payload


def test_silence_mid_transfer_reacks_last_block(fake_clock: FakeClock) -> None:
    c = TftpReadClient("f", TftpOptions(blksize=None, windowsize=None, tsize=False, timeout=2.0))
    c.start(fake_clock.now)
    out(c)
    c.receive(build(Data(1, b"a" * 512)), TID, fake_clock.now)
    assert out(c) == [(Ack(1), TID)]
    fake_clock.advance(2.0)
    c.handle_timer(fake_clock.now)
    assert out(c) == [(Ack(1), TID)]
    assert c.retransmits == 1
    c.receive(build(Data(1, b"a" * 512)), TID, fake_clock.now)  # duplicate: ACK again, keep once
    assert out(c) == [(Ack(1), TID)]
    c.receive(build(Data(2, b"end")), TID, fake_clock.now)
    assert c.done and c.data == b"a" * 512 + b"end"


def test_tsize_mismatch_fails(fake_clock: FakeClock) -> None:
    c = TftpReadClient("f")
    c.start(fake_clock.now)
    out(c)
    c.receive(build(OptionAck({"tsize": "10"})), TID, fake_clock.now)
    out(c)
    c.receive(build(Data(1, b"short")), TID, fake_clock.now)
    assert c.state is TransferState.FAILED and c.failure is not None and "tsize" in c.failure.reason


def test_more_than_tsize_aborts(fake_clock: FakeClock) -> None:
    c = TftpReadClient("f", TftpOptions(blksize=None, windowsize=None))
    c.start(fake_clock.now)
    out(c)
    c.receive(build(OptionAck({"tsize": "100"})), TID, fake_clock.now)
    out(c)
    c.receive(build(Data(1, b"z" * 512)), TID, fake_clock.now)
    assert c.state is TransferState.FAILED
    ((err, port),) = out(c)
    assert isinstance(err, Error) and port == TID


def test_server_error_fails_with_code(fake_clock: FakeClock) -> None:
    c = TftpReadClient("nope")
    c.start(fake_clock.now)
    out(c)
    c.receive(error_datagram(ERR_NOT_FOUND, "File not found"), TID, fake_clock.now)
    assert c.failure is not None and c.failure.code == ERR_NOT_FOUND and "File not found" in c.failure.reason


def test_option_refusal_retries_without_options(fake_clock: FakeClock) -> None:
    c = TftpReadClient("f")
    c.start(fake_clock.now)
    out(c)
    c.receive(error_datagram(ERR_OPTIONS, "no options"), TID, fake_clock.now)
    ((rrq, port),) = out(c)
    assert rrq == ReadRequest("f", "octet", {}) and port == 69
    c.receive(build(Data(1, b"ok")), TID + 1, fake_clock.now)
    assert c.done and c.data == b"ok"


def test_oack_with_larger_blksize_than_asked_is_rejected(fake_clock: FakeClock) -> None:
    c = TftpReadClient("f", TftpOptions(blksize=512))
    c.start(fake_clock.now)
    out(c)
    c.receive(build(OptionAck({"blksize": "9000"})), TID, fake_clock.now)
    ((err, _),) = out(c)
    assert isinstance(err, Error) and err.code == ERR_OPTIONS and c.state is TransferState.FAILED


def test_foreign_tid_gets_error_5_and_transfer_continues(fake_clock: FakeClock) -> None:
    c = TftpReadClient("f", TftpOptions(blksize=None, windowsize=None, tsize=False))
    c.start(fake_clock.now)
    out(c)
    c.receive(build(Data(1, b"a" * 512)), TID, fake_clock.now)
    out(c)
    c.receive(build(Data(2, b"intruder")), TID + 7, fake_clock.now)
    ((err, port),) = out(c)
    assert isinstance(err, Error) and err.code == 5 and port == TID + 7
    c.receive(build(Data(2, b"!")), TID, fake_clock.now)
    assert c.done and c.data == b"a" * 512 + b"!"


def test_block_number_rolls_over(fake_clock: FakeClock) -> None:
    c = TftpReadClient("f", TftpOptions(blksize=8, windowsize=None, tsize=False, max_size=10**7))
    c.start(fake_clock.now)
    out(c)
    c.receive(build(OptionAck({"blksize": "8"})), TID, fake_clock.now)
    out(c)
    n = 65536 + 3
    for i in range(1, n + 1):
        c.receive(build(Data(i & 0xFFFF, b"12345678")), TID, fake_clock.now)
    c.datagrams_to_send()
    c.receive(build(Data((n + 1) & 0xFFFF, b"")), TID, fake_clock.now)
    assert c.done and len(c.data) == 8 * n
