"""The lock-step hot path of ReadSession (issue 14): `prepare_next` builds the next block while the peer is
busy, `take_ack` releases it for exactly the ACK of the block in flight; anything else goes through
`receive` unchanged. Fake clock; the wire result must equal the plain path's byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ztp.tftp.content import FileContent, StaticRoot
from ztp.tftp.packet import Ack, Data, Error, ReadRequest, build, parse
from ztp.tftp.session import GATHER_MIN, ReadSession


def ack(block: int) -> bytes:
    return build(Ack(block))


def rrq(**options: str) -> ReadRequest:
    return ReadRequest("f", "octet", dict(options))


def drive(session: ReadSession, *, fast: bool) -> list[bytes]:
    """A perfect lock-step client; with `fast`, the shell's way (take_ack first, prepare_next after each
    send). Returns every datagram the server put on the wire, in order."""
    wire = list(session.datagrams_to_send())
    if fast:
        session.prepare_next()
    now = 0.0
    while not session.done:
        assert session.failed is None
        pkt = parse(wire[-1])
        answer = ack(0 if not isinstance(pkt, Data) else pkt.block)
        now += 0.001
        reply = session.take_ack(answer, now) if fast else None
        if reply is None:
            session.receive(answer, now)
            wire += session.datagrams_to_send()
        else:
            assert session.datagrams_to_send() == []  # the released block is not queued twice
            # From GATHER_MIN on, a (header, payload view) pair for sendmsg; the wire sees them joined.
            assert isinstance(reply, bytes) == (session.blksize < GATHER_MIN)
            wire.append(reply if isinstance(reply, bytes) else b"".join(reply))
        if fast:
            session.prepare_next()
        if session.done:
            break
    return wire


@pytest.mark.parametrize("options", [{}, {"blksize": "1468", "tsize": "0"}, {"blksize": "8"},
                                     {"blksize": "65464"}])
def test_fast_path_puts_the_same_bytes_on_the_wire(options: dict[str, str]) -> None:
    # blksize 8 over 600 kB: more than 65536 blocks, so the released ACK numbers roll over too.
    payload = os.urandom(600_000 if options.get("blksize") in ("8", "65464") else 5000)
    plain = drive(ReadSession(payload, rrq(**options), 0.0), fast=False)
    fast_session = ReadSession(payload, rrq(**options), 0.0)
    assert drive(fast_session, fast=True) == plain
    assert fast_session.bytes_sent == len(payload) and fast_session.next_deadline() is None


def test_take_ack_releases_only_the_ack_of_the_block_in_flight() -> None:
    payload = os.urandom(3000)
    s = ReadSession(payload, rrq(), 0.0)
    s.datagrams_to_send()
    assert s.take_ack(ack(1), 0.1) is None  # nothing prepared yet: the ACK goes through receive
    s.receive(ack(1), 0.1)
    assert [parse(d) for d in s.datagrams_to_send()] == [Data(2, payload[512:1024])]
    s.prepare_next()
    for stale in (ack(1), ack(3), ack(2) + b"\0", b"", build(Error(0, "x"))):
        assert s.take_ack(stale, 0.2) is None
    assert s.acked_blocks == 1
    reply = s.take_ack(ack(2), 0.2)
    assert reply is not None and parse(reply) == Data(3, payload[1024:1536])
    assert s.acked_blocks == 2 and s.next_deadline() == pytest.approx(1.2)
    assert s.take_ack(ack(2), 0.3) is None  # released once; a duplicate ACK is ignored by receive
    s.receive(ack(2), 0.3)
    assert s.datagrams_to_send() == [] and s.ignored == 1


def test_prepared_block_survives_a_retransmission_and_take_ack_resets_the_backoff() -> None:
    payload = os.urandom(3000)
    s = ReadSession(payload, rrq(), 0.0, backoff=2.0)
    s.datagrams_to_send()
    s.prepare_next()  # block 2 built while block 1 is in flight
    s.handle_timer(1.0)  # ACK 1 lost: block 1 again, not the prepared block 2
    assert [parse(d) for d in s.datagrams_to_send()] == [Data(1, payload[:512])]
    assert s.next_deadline() == pytest.approx(3.0)  # backed off: 1 s x 2
    s.prepare_next()
    reply = s.take_ack(ack(1), 1.5)
    assert reply is not None and parse(reply) == Data(2, payload[512:1024])
    assert s.next_deadline() == pytest.approx(2.5)  # progress: back to the base timeout


def test_no_read_ahead_for_windows_or_before_the_oack_is_acked() -> None:
    payload = os.urandom(10_000)
    windowed = ReadSession(payload, rrq(windowsize="4"), 0.0)
    windowed.datagrams_to_send()
    windowed.receive(ack(0), 0.0)
    assert len(windowed.datagrams_to_send()) == 4
    windowed.prepare_next()
    assert windowed.take_ack(ack(4), 0.1) is None
    oack = ReadSession(payload, rrq(blksize="1024"), 0.0)
    oack.datagrams_to_send()
    oack.prepare_next()
    assert oack.take_ack(ack(0), 0.1) is None and oack.take_ack(ack(1), 0.1) is None


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "image.bin"
    path.write_bytes(os.urandom(200_000))
    path.chmod(0o644)
    return path


@pytest.mark.parametrize("blksize", ["512", "8192"])
def test_streamed_file_through_the_fast_path_arrives_intact(image: Path, blksize: str) -> None:
    content = StaticRoot(image.parent, small_file=1000).get("image.bin", ("10.0.0.1", 1))
    assert isinstance(content, FileContent)
    content.chunk = 20_000  # chunk edges fall inside blocks and between prepared and sent blocks
    s = ReadSession(content, rrq(blksize=blksize), 0.0)
    wire = drive(s, fast=True)
    got = b"".join(p.data for p in map(parse, wire) if isinstance(p, Data))
    assert got == image.read_bytes()
    s.close()


def test_streamed_file_read_ahead_and_a_file_truncated_under_it(image: Path) -> None:
    content = StaticRoot(image.parent, small_file=1000).get("image.bin", ("10.0.0.1", 1))
    assert isinstance(content, FileContent)
    content.chunk = 512  # one block per read, so the truncation is met by the read-ahead itself
    s = ReadSession(content, rrq(), 0.0)
    s.datagrams_to_send()
    s.prepare_next()
    reply = s.take_ack(ack(1), 0.1)
    assert reply is not None and parse(reply) == Data(2, image.read_bytes()[512:1024])
    os.truncate(image, 700)
    s.prepare_next()  # block 3 cannot be read: nothing prepared, no failure yet
    assert s.take_ack(ack(2), 0.2) is None and s.failed is None
    s.receive(ack(2), 0.2)  # the ACK's own read fails the session with ERROR 0
    (err,) = [parse(d) for d in s.datagrams_to_send()]
    assert isinstance(err, Error) and err.code == 0 and s.failed is not None and "read error" in s.failed
    s.close()
    assert content.fd == -1


def test_file_content_reads_within_and_past_the_end(image: Path) -> None:
    fd = os.open(image, os.O_RDONLY)
    content = FileContent(fd, 200_000, chunk=4096)
    data = image.read_bytes()
    assert bytes(content.read(100, 50)) == data[100:150]
    assert bytes(content.read(4000, 200)) == data[4000:4200]  # crosses the chunk: read again
    assert bytes(content.read(199_990, 512)) == data[199_990:]  # short at the end of the file
    assert bytes(content.read(200_000, 512)) == b""  # the empty final block of an exact multiple
    content.close()
    with pytest.raises(OSError):
        content.read(0, 10)
