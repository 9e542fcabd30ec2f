"""The syslog codec: RFC 5424 and RFC 3164 messages as real senders write them."""

from __future__ import annotations

import pytest

from ztp.syslog.message import SyslogMalformed, parse


def test_rfc5424_example_with_structured_data() -> None:
    # RFC 5424 §6.5 example 3
    raw = (b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 '
           b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] \xef\xbb\xbfAn application event')
    m = parse(raw)
    assert (m.facility, m.severity, m.version) == (20, 5, 1)
    assert (m.hostname, m.app, m.procid, m.msgid) == ("mymachine.example.com", "evntslog", None, "ID47")
    assert m.structured == '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
    assert m.text == "An application event"


def test_rfc5424_as_util_linux_logger_sends_it() -> None:
    # `logger -n 10.60.0.1 -P 514 -d --rfc5424 hello` (util-linux 2.38)
    raw = (b'<13>1 2026-12-02T13:20:01.123456+00:00 leaf01 root 4242 - [timeQuality tzKnown="1" '
           b'isSynced="0"] ztp config applied')
    m = parse(raw)
    assert (m.facility, m.severity, m.hostname, m.app, m.procid) == (1, 5, "leaf01", "root", "4242")
    assert m.text == "ztp config applied"


def test_rfc5424_nil_structured_data_and_empty_message() -> None:
    m = parse(b"<34>1 - - - - - -")
    assert (m.facility, m.severity, m.timestamp, m.hostname, m.structured, m.text) == (4, 2, None, None, None, "")


def test_rfc3164_with_host_and_tag() -> None:
    # RFC 3164 §5.4 example 1
    m = parse(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8")
    assert (m.version, m.timestamp, m.hostname, m.app) == (0, "Oct 11 22:14:15", "mymachine", "su")
    assert m.text == "'su root' failed for lonvick on /dev/pts/8"


def test_rfc3164_as_logger_rfc3164_sends_it() -> None:
    m = parse(b"<13>Dec  2 13:20:01 leaf01 root[99]: config applied\n")
    assert (m.hostname, m.app, m.procid, m.text) == ("leaf01", "root", "99", "config applied")


def test_rfc3164_without_header_keeps_the_text() -> None:
    m = parse(b"<189>%SYS-5-CONFIG_I: Configured from console by vty0")
    assert (m.facility, m.severity, m.hostname) == (23, 5, None)
    assert m.text.endswith("Configured from console by vty0")


@pytest.mark.parametrize(("raw", "where"), [(b"no pri", 0), (b"<999>x", 1), (b"<13>1 a b c", 4),
                                            (b"<13>1 - - - - - [open", 0)])
def test_malformed(raw: bytes, where: int) -> None:
    with pytest.raises(SyslogMalformed):
        parse(raw)
