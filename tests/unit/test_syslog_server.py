"""The syslog receiver's logic without sockets: attribution by source, only awaited devices parsed."""

from __future__ import annotations

from ipaddress import IPv4Address

from ztp.syslog.server import SyslogServer


def test_attribution_and_what_is_delivered() -> None:
    got: list[tuple[str, str, str, float]] = []
    owners = {IPv4Address("10.60.0.11"): "leaf01", IPv4Address("10.60.0.12"): "leaf02"}
    server = SyslogServer(owners.get, lambda *a: got.append(a), wanted=lambda key: key == "leaf01",
                          clock=lambda: 42.0)
    server.datagram(b"<13>Dec  2 13:20:01 leaf01 root: config applied", "10.60.0.11")
    server.datagram(b"<13>1 - leaf02 app - - - hello", "10.60.0.12")  # confirmed already: not parsed
    server.datagram(b"<13>hi", "10.9.9.9")  # nobody's address
    server.datagram(b"garbage", "10.60.0.11")
    server.datagram(b"<13>x", "not-an-address")
    assert got == [("leaf01", "10.60.0.11", "config applied", 42.0)]
    assert dict(server.counters) == {"received": 5, "attributed": 1, "not_awaited": 1, "unknown_sender": 2,
                                     "malformed": 1}
