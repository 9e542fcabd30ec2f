"""ReadSession with a fake clock: negotiation, windows, loss, retries, rollover, peer errors."""

from __future__ import annotations

import os

import pytest

from ztp.tftp.packet import Ack, Data, Error, OptionAck, ReadRequest, build, parse
from ztp.tftp.session import ReadSession, netascii


def ack(block: int) -> bytes:
    return build(Ack(block))


def sent(session: ReadSession) -> list[Data | OptionAck | Error]:
    out = []
    for raw in session.datagrams_to_send():
        pkt = parse(raw)
        assert isinstance(pkt, Data | OptionAck | Error)
        out.append(pkt)
    return out


def blocks(pkts: list[Data | OptionAck | Error]) -> list[int]:
    return [p.block for p in pkts if isinstance(p, Data)]


def run_to_end(session: ReadSession, now: float = 0.0) -> bytes:
    """A perfect client: ACK the last block of every burst; returns the reassembled file."""
    got: dict[int, bytes] = {}
    absolute = 0
    pending = sent(session)
    while pending:
        for pkt in pending:
            if isinstance(pkt, OptionAck):
                session.receive(ack(0), now)
                break
            assert isinstance(pkt, Data)
            absolute += 1
            assert pkt.block == absolute & 0xFFFF
            got[absolute] = pkt.data
        else:
            session.receive(ack(absolute), now)
        pending = sent(session)
    assert session.done
    return b"".join(got[i] for i in sorted(got))


def rrq(**options: str) -> ReadRequest:
    return ReadRequest("f", "octet", dict(options))


def test_plain_transfer() -> None:
    payload = os.urandom(1300)
    s = ReadSession(payload, rrq(), 0.0)
    first = sent(s)
    assert first == [Data(1, payload[:512])]
    assert s.next_deadline() == 1.0
    s.receive(ack(1), 0.1)
    assert sent(s) == [Data(2, payload[512:1024])]
    s.receive(ack(2), 0.2)
    assert sent(s) == [Data(3, payload[1024:])]
    assert not s.done
    s.receive(ack(3), 0.3)
    assert s.done and s.failed is None
    assert s.bytes_sent == 1300
    assert s.next_deadline() is None
    assert sent(s) == []


def test_exact_multiple_needs_final_empty_block() -> None:
    payload = b"x" * 1024
    s = ReadSession(payload, rrq(), 0.0)
    assert blocks(sent(s)) == [1]
    s.receive(ack(1), 0)
    assert blocks(sent(s)) == [2]
    s.receive(ack(2), 0)
    assert sent(s) == [Data(3, b"")]
    assert not s.done
    s.receive(ack(3), 0)
    assert s.done


def test_empty_file_is_one_empty_block() -> None:
    s = ReadSession(b"", rrq(), 0.0)
    assert sent(s) == [Data(1, b"")]
    s.receive(ack(1), 0)
    assert s.done


def test_oack_negotiation_and_ack_zero() -> None:
    payload = os.urandom(3000)
    s = ReadSession(payload, rrq(blksize="1468", tsize="0", timeout="3", windowsize="2", foo="bar"), 0.0)
    assert sent(s) == [OptionAck({"blksize": "1468", "timeout": "3", "tsize": "3000", "windowsize": "2"})]
    assert s.next_deadline() == 3.0
    s.receive(ack(1), 0.1)  # not an ACK of the OACK: ignored
    assert sent(s) == []
    s.receive(ack(0), 0.2)
    assert blocks(pkts := sent(s)) == [1, 2]
    assert [len(p.data) for p in pkts if isinstance(p, Data)] == [1468, 1468]
    s.receive(ack(2), 0.3)
    assert blocks(sent(s)) == [3]
    s.receive(ack(3), 0.4)
    assert s.done and s.bytes_sent == 3000


def test_tsize_zero_reports_real_size() -> None:
    s = ReadSession(b"a" * 2345, rrq(tsize="0"), 0.0)
    assert sent(s) == [OptionAck({"tsize": "2345"})]
    assert run_to_end(ReadSession(b"a" * 2345, rrq(tsize="0"), 0.0)) == b"a" * 2345


def test_tsize_left_out_for_an_empty_file() -> None:
    """curl rejects an OACK saying tsize 0, so an empty file does not acknowledge tsize."""
    s = ReadSession(b"", rrq(tsize="0"), 0.0)
    assert sent(s) == [Data(1, b"")]
    s = ReadSession(b"", rrq(tsize="0", blksize="1468"), 0.0)
    assert sent(s) == [OptionAck({"blksize": "1468"})]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"blksize": "abc"}, {}),
        ({"blksize": "7"}, {}),
        ({"blksize": "-5"}, {}),
        ({"blksize": "99999"}, {"blksize": "65464"}),
        ({"blksize": " 1024 "}, {"blksize": "1024"}),
        ({"timeout": "0"}, {}),
        ({"timeout": "256"}, {}),
        ({"timeout": "1.5"}, {}),
        ({"tsize": "x"}, {}),
        ({"windowsize": "0"}, {}),
        ({"windowsize": "500"}, {"windowsize": "64"}),
        ({"windowsize": "٣"}, {}),  # a non-ASCII digit is not a number on the wire
    ],
)
def test_bad_option_values_are_ignored(options: dict[str, str], expected: dict[str, str]) -> None:
    s = ReadSession(b"abc", rrq(**options), 0.0)
    first = sent(s)
    if expected:
        assert first == [OptionAck(expected)]
    else:
        assert first == [Data(1, b"abc")]  # nothing accepted: no OACK at all (RFC 2347)


def test_blksize_clamped_to_server_max() -> None:
    s = ReadSession(b"x" * 5000, rrq(blksize="65464"), 0.0, max_blksize=1468)
    assert sent(s) == [OptionAck({"blksize": "1468"})]
    assert s.blksize == 1468


def test_windowsize_with_a_lost_block_resends_from_window_start() -> None:
    payload = bytes(range(256)) * 40  # 10240 bytes = 20 blocks of 512 + empty final block
    s = ReadSession(payload, rrq(windowsize="4"), 0.0)
    assert sent(s) == [OptionAck({"windowsize": "4"})]
    s.receive(ack(0), 0.0)
    assert blocks(sent(s)) == [1, 2, 3, 4]
    s.receive(ack(4), 0.1)
    assert blocks(sent(s)) == [5, 6, 7, 8]
    # Block 6 is lost: the client ACKs 5, the last block it holds in order (RFC 7440 §4).
    s.receive(ack(5), 0.2)
    assert blocks(sent(s)) == [6, 7, 8, 9]
    # The late ACK of 5 repeated (the client saw 7 and 8 out of order) changes nothing.
    s.receive(ack(5), 0.25)
    s.receive(ack(5), 0.26)
    assert sent(s) == []
    s.receive(ack(9), 0.3)
    assert blocks(sent(s)) == [10, 11, 12, 13]
    # The whole window lost: the timer resends it from its start.
    s.handle_timer(0.3 + 1.0)
    assert blocks(sent(s)) == [10, 11, 12, 13]
    assert s.retransmits == 1
    s.receive(ack(13), 1.4)
    assert blocks(sent(s)) == [14, 15, 16, 17]
    s.receive(ack(17), 1.5)
    assert blocks(sent(s)) == [18, 19, 20, 21]
    s.receive(ack(21), 1.6)
    assert s.done and s.bytes_sent == len(payload)


def test_window_reassembles_exactly() -> None:
    payload = os.urandom(100_000)
    assert run_to_end(ReadSession(payload, rrq(windowsize="16", blksize="1468"), 0.0)) == payload


def test_timeout_retries_then_failure() -> None:
    s = ReadSession(b"x" * 100, rrq(), 10.0, retries=3)
    assert blocks(sent(s)) == [1]
    s.handle_timer(10.5)  # early: nothing due
    assert sent(s) == []
    for i in range(3):
        deadline = s.next_deadline()
        assert deadline == 10.0 + (i + 1) * 1.0
        s.handle_timer(deadline)
        assert blocks(sent(s)) == [1]
    s.handle_timer(14.0)
    assert s.failed is not None and "timeout" in s.failed and "block 1" in s.failed
    assert sent(s) == [] and s.next_deadline() is None and not s.done
    s.receive(ack(1), 14.1)  # too late: a failed session stays failed
    assert not s.done


def test_progress_resets_the_retry_budget() -> None:
    s = ReadSession(b"x" * 2000, rrq(), 0.0, retries=1)
    sent(s)
    s.handle_timer(1.0)
    assert blocks(sent(s)) == [1]
    s.receive(ack(1), 1.5)
    sent(s)
    s.handle_timer(2.5)
    assert blocks(sent(s)) == [2] and s.failed is None


def test_exponential_backoff() -> None:
    s = ReadSession(b"x", rrq(), 0.0, retries=3, backoff=2.0)
    sent(s)
    assert s.next_deadline() == 1.0
    s.handle_timer(1.0)
    assert s.next_deadline() == 3.0
    s.handle_timer(3.0)
    assert s.next_deadline() == 7.0


def test_oack_timeout_retransmits_oack() -> None:
    s = ReadSession(b"x", rrq(tsize="0"), 0.0, retries=1)
    assert sent(s) == [OptionAck({"tsize": "1"})]
    s.handle_timer(1.0)
    assert sent(s) == [OptionAck({"tsize": "1"})]
    s.handle_timer(2.0)
    assert s.failed is not None and "OACK" in s.failed


def test_duplicate_ack_does_not_retransmit() -> None:
    """Sorcerer's Apprentice: a delayed duplicate ACK must not double the DATA stream."""
    s = ReadSession(b"y" * 3000, rrq(), 0.0)
    sent(s)
    s.receive(ack(1), 0.1)
    assert blocks(sent(s)) == [2]
    for _ in range(5):
        s.receive(ack(1), 0.2)
    assert sent(s) == []
    s.receive(ack(3), 0.3)  # never sent: ignored
    assert sent(s) == []
    assert s.ignored == 6
    s.receive(ack(2), 0.4)
    assert blocks(sent(s)) == [3]


def test_rollover_past_65535_blocks() -> None:
    payload = os.urandom(600_000)  # 75000 blocks of 8 bytes
    s = ReadSession(payload, rrq(blksize="8"), 0.0)
    assert run_to_end(s) == payload
    assert s.acked_blocks == 75_001
    assert s.total_blocks == 75_001


def test_rollover_with_window_crosses_zero() -> None:
    payload = os.urandom(8 * 65_540)
    s = ReadSession(payload, rrq(blksize="8", windowsize="8"), 0.0)
    assert run_to_end(s) == payload


def test_error_from_client_ends_it() -> None:
    s = ReadSession(b"x" * 2000, rrq(), 0.0)
    sent(s)
    s.receive(build(Error(0, "disk full, sorry")), 0.1)
    assert s.failed == "peer sent error 0: disk full, sorry"
    assert s.next_deadline() is None and sent(s) == []


def test_error_8_refusing_our_oack_ends_it() -> None:
    s = ReadSession(b"x", rrq(blksize="1468"), 0.0)
    sent(s)
    s.receive(build(Error(8, "bad options")), 0.1)
    assert s.failed is not None and "error 8" in s.failed


def test_garbage_and_wrong_packets_from_peer_are_ignored() -> None:
    s = ReadSession(b"x" * 600, rrq(), 0.0)
    sent(s)
    for junk in (b"", b"\x00", b"\x00\x09", build(Data(1, b"x")), b"\x00\x01f\x00octet\x00"):
        s.receive(junk, 0.1)
    assert sent(s) == [] and s.failed is None and s.ignored == 5
    s.receive(ack(1), 0.2)
    assert blocks(sent(s)) == [2]


def test_netascii_and_bad_mode() -> None:
    s = ReadSession(b"a\nb\rc", ReadRequest("f", "netascii"), 0.0)
    assert sent(s) == [Data(1, b"a\r\nb\r\0c")]
    assert netascii(b"\r\n") == b"\r\0\r\n"
    bad = ReadSession(b"x", ReadRequest("f", "mail"), 0.0)
    assert bad.failed is not None
    [err] = sent(bad)
    assert isinstance(err, Error) and err.code == 4
    assert bad.next_deadline() is None
