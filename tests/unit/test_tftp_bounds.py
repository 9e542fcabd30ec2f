"""Bounded TFTP cost with a fake clock: the timeout option cap, a stall ceiling, sessions per peer and in
total, and large static files streamed block by block instead of read whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ztp.tftp.admission import SessionQuota
from ztp.tftp.content import FileContent, StaticRoot
from ztp.tftp.packet import Ack, Data, Error, OptionAck, ReadRequest, build, parse
from ztp.tftp.session import MAX_TIMEOUT, STALL_LIMIT, ReadSession


def rrq(mode: str = "octet", **options: str) -> ReadRequest:
    return ReadRequest("f", mode, dict(options))


def sent(session: ReadSession) -> list[Data | OptionAck | Error]:
    out = []
    for raw in session.datagrams_to_send():
        pkt = parse(raw)
        assert isinstance(pkt, Data | OptionAck | Error)
        out.append(pkt)
    return out


def fetch(session: ReadSession) -> bytes:
    """A perfect client ACKing every burst's last block."""
    got = b""
    block = 0
    pending = sent(session)
    while pending:
        for pkt in pending:
            if isinstance(pkt, OptionAck):
                session.receive(build(Ack(0)), 0.0)
                break
            assert isinstance(pkt, Data)
            block += 1
            got += pkt.data
        else:
            session.receive(build(Ack(block)), 0.0)
        pending = sent(session)
    assert session.done, session.failed
    return got


def stall(session: ReadSession) -> float:
    """Never answer: drive the timer until the session gives up; returns when it did."""
    now = 0.0
    while (deadline := session.next_deadline()) is not None:
        assert deadline > now
        now = deadline
        session.handle_timer(now)
        session.datagrams_to_send()
    assert session.failed is not None
    return now


# --- the timeout option and retransmission ceiling -------------------------------------------------------

@pytest.mark.parametrize(("asked", "granted"), [("1", "1"), ("3", "3"), ("10", "10"), ("11", None),
                                                ("255", None), ("0", None), ("abc", None)])
def test_timeout_option_above_the_cap_is_left_out(asked: str, granted: str | None) -> None:
    # RFC 2349 §2: the server echoes the value or declines it; it may not answer with a smaller one.
    s = ReadSession(b"x" * 100, rrq(timeout=asked, tsize="0"), 0.0)
    (oack,) = sent(s)
    assert isinstance(oack, OptionAck)
    assert oack.options.get("timeout") == granted
    assert s.timeout == (float(granted) if granted else 1.0)
    assert s.next_deadline() == s.timeout


def test_retransmission_timeout_never_exceeds_the_cap() -> None:
    s = ReadSession(b"x", rrq(), 0.0, default_timeout=4.0, retries=50, backoff=2.0)
    sent(s)
    last, gaps = 0.0, []
    while (deadline := s.next_deadline()) is not None:
        gaps.append(deadline - last)
        last = deadline
        s.handle_timer(deadline)
        sent(s)
    assert max(gaps) <= MAX_TIMEOUT
    assert gaps[:3] == [4.0, 8.0, 10.0]


def test_stalled_session_ends_within_the_stall_limit_whatever_retries_and_backoff() -> None:
    for retries, backoff, timeout in [(1000, 1.0, 1.0), (1000, 2.0, 1.0), (7, 3.0, 10.0), (5, 1.0, 10.0)]:
        s = ReadSession(b"x" * 5000, rrq(timeout=str(int(timeout))), 0.0, retries=retries, backoff=backoff)
        ended = stall(s)
        assert ended <= STALL_LIMIT, (retries, backoff, ended)
        assert "timeout" in (s.failed or "")


def test_default_session_of_a_silent_peer_ends_in_seconds() -> None:
    assert stall(ReadSession(b"x", rrq(), 0.0)) == 6.0  # 1 s, then 5 retries of 1 s


def test_progress_resets_the_stall_clock() -> None:
    s = ReadSession(b"x" * 512 * 200, rrq(), 0.0, retries=1000, stall_limit=30.0)
    sent(s)
    now = 0.0
    for block in range(1, 100):  # a slow but live peer: one ACK every 20 s (the data is retransmitted)
        for _ in range(20):
            now += 1.0
            s.handle_timer(now)
            sent(s)
        s.receive(build(Ack(block)), now)
        sent(s)
        assert s.failed is None
    assert stall(s) > 0


# --- streamed static files -------------------------------------------------------------------------------

@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "image.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    path.chmod(0o644)
    return path


def test_large_static_file_is_streamed_not_read_whole(big: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    static = StaticRoot(big.parent, small_file=1024 * 1024)
    content = static.get("image.bin", ("10.0.0.1", 1))
    assert isinstance(content, FileContent) and content.size == big.stat().st_size
    reads: list[int] = []
    real = os.pread

    def spy(fd: int, n: int, off: int) -> bytes:
        reads.append(n)
        return real(fd, n, off)

    monkeypatch.setattr(os, "pread", spy)
    s = ReadSession(content, rrq(blksize="1468"), 0.0)
    assert isinstance(sent(s)[0], OptionAck) and reads == []  # nothing read before the OACK is ACKed
    s.receive(build(Ack(0)), 0.0)
    first = sent(s)
    assert isinstance(first[0], Data) and first[0].data == big.read_bytes()[:1468]
    assert sum(reads) <= content.chunk  # one chunk read ahead, not the file
    s.receive(build(Ack(1)), 0.0)  # the next block comes from the chunk already read
    assert len(reads) == 1 and len(sent(s)) == 1
    s.close()
    assert content.fd == -1


@pytest.mark.parametrize("options", [{}, {"blksize": "1468", "windowsize": "16", "tsize": "0"},
                                     {"blksize": "65464", "windowsize": "64"}, {"blksize": "8"}])
def test_streamed_file_arrives_intact(big: Path, options: dict[str, str]) -> None:
    if options.get("blksize") == "8":  # 400k blocks of 8 bytes take long; a smaller file proves the same
        big.write_bytes(os.urandom(300_000))
    content = StaticRoot(big.parent, small_file=1000).get("image.bin", ("10.0.0.1", 1))
    assert isinstance(content, FileContent)
    s = ReadSession(content, rrq(**options), 0.0)
    if "tsize" in options:
        assert s.accepted["tsize"] == str(big.stat().st_size)
    assert fetch(s) == big.read_bytes()


def test_small_static_files_stay_cached_bytes(big: Path) -> None:
    small = big.parent / "small.cfg"
    small.write_bytes(b"hostname x\n")
    small.chmod(0o644)
    static = StaticRoot(big.parent)
    first = static.get("small.cfg", ("10.0.0.1", 1))
    assert first == b"hostname x\n" and static.get("small.cfg", ("10.0.0.1", 1)) is first


def test_file_truncated_during_transfer_fails_the_session(big: Path) -> None:
    content = StaticRoot(big.parent, small_file=1000).get("image.bin", ("10.0.0.1", 1))
    assert isinstance(content, FileContent)
    content.chunk = 512  # no read-ahead, so the truncation is seen at the next block
    s = ReadSession(content, rrq(), 0.0)
    sent(s)
    os.truncate(big, 600)
    s.receive(build(Ack(1)), 0.0)
    s.receive(build(Ack(2)), 0.0)
    out = sent(s)
    assert s.failed is not None and "read error" in s.failed
    assert isinstance(out[-1], Error) and out[-1].code == 0
    s.close()


def test_netascii_is_refused_for_streamed_files(big: Path) -> None:
    content = StaticRoot(big.parent, small_file=1000).get("image.bin", ("10.0.0.1", 1))
    assert isinstance(content, FileContent)
    s = ReadSession(content, rrq("netascii"), 0.0)
    (err,) = sent(s)
    assert isinstance(err, Error) and err.code == 4 and "octet" in err.message
    s.close()
    assert content.fd == -1


# --- sessions per peer and in total ----------------------------------------------------------------------

def test_quota_per_peer() -> None:
    quota = SessionQuota(total=100, per_peer=3)
    assert [quota.admit("10.0.0.9") for _ in range(3)] == [None, None, None]
    why = quota.admit("10.0.0.9")
    assert why is not None and "10.0.0.9" in why and "max_sessions_per_peer" in why
    assert quota.admit("10.0.0.10") is None  # another peer is not affected
    quota.release("10.0.0.9")
    assert quota.admit("10.0.0.9") is None
    assert quota.of("10.0.0.9") == 3 and quota.active == 4


def test_quota_in_total() -> None:
    quota = SessionQuota(total=5, per_peer=8)
    for i in range(5):
        assert quota.admit(f"10.0.0.{i}") is None
    why = quota.admit("10.0.0.99")
    assert why is not None and "max_sessions" in why
    quota.release("10.0.0.3")
    assert quota.admit("10.0.0.99") is None


def test_quota_release_of_unknown_peer_is_harmless() -> None:
    quota = SessionQuota(total=2, per_peer=1)
    quota.release("10.0.0.1")
    assert quota.active == 0 and quota.admit("10.0.0.1") is None
    quota.release("10.0.0.1")
    quota.release("10.0.0.1")
    assert quota.active == 0 and quota.of("10.0.0.1") == 0


def test_quota_resize_keeps_running_sessions() -> None:
    quota = SessionQuota(total=10, per_peer=4)
    for _ in range(4):
        quota.admit("10.0.0.1")
    quota.resize(10, 2)
    assert quota.admit("10.0.0.1") is not None and quota.of("10.0.0.1") == 4
    for _ in range(3):
        quota.release("10.0.0.1")
    assert quota.admit("10.0.0.1") is None
    with pytest.raises(ValueError):
        quota.resize(0, 1)
    with pytest.raises(ValueError):
        SessionQuota(total=1, per_peer=0)


# --- repeated refusals are logged once per interval ------------------------------------------------------

def test_repeat_gate_logs_first_then_once_per_interval_with_the_count() -> None:
    from ztp.tftp.throttle import RepeatGate

    now = [0.0]
    gate = RepeatGate(lambda: now[0], interval=10.0)
    assert gate.admit(("10.0.0.9", "leaf01.cfg")) == 0
    assert [gate.admit(("10.0.0.9", "leaf01.cfg")) for _ in range(500)] == [None] * 500
    assert gate.admit(("10.0.0.9", "leaf02.cfg")) == 0  # another file, or another peer, is another key
    now[0] = 10.0
    assert gate.admit(("10.0.0.9", "leaf01.cfg")) == 500
    assert gate.admit(("10.0.0.9", "leaf01.cfg")) is None


def test_repeat_gate_memory_is_bounded() -> None:
    from ztp.tftp.throttle import RepeatGate

    gate = RepeatGate(lambda: 0.0, max_keys=3)
    for i in range(100):
        assert gate.admit(i) == 0
    assert len(gate._keys) == 3
