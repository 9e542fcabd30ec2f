"""Syslog messages: one parser for RFC 5424 and the BSD format of RFC 3164 (pure, no I/O).

RFC 5424 §6: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`` (NILVALUE ``-``).
RFC 3164 §4.1: ``<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG``; §4.3.3: a relay must accept anything, so a
message without a recognisable header still yields its text. Only a missing or invalid PRI (§4.3.3 would
add one; we have no use for a message we cannot even attribute a priority to) raises `SyslogMalformed`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_MESSAGE = 8192  # RFC 5424 §6.1 receivers should take 2048; 8 KiB covers what switches send


class SyslogMalformed(ValueError):
    """Not a syslog message: says what was wrong and at which offset."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    """A decoded message; `version` 1 for RFC 5424, 0 for BSD (RFC 3164)."""

    facility: int
    severity: int
    version: int
    timestamp: str | None
    hostname: str | None
    app: str | None
    procid: str | None
    msgid: str | None
    structured: str | None
    text: str


_PRI = re.compile(rb"<(\d{1,3})>")
_BSD_TIME = re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) ")
_BSD_TAG = re.compile(r"^([!-9;-~]{1,48}?)(\[[^\]]*\])?: ?")


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def _structured(rest: str) -> tuple[str | None, str]:
    """Split RFC 5424 STRUCTURED-DATA (``-`` or ``[..][..]``, §6.3) from MSG."""
    if rest.startswith("-"):
        return None, rest[2:] if rest.startswith("- ") else rest[1:]
    if not rest.startswith("["):
        raise SyslogMalformed("RFC 5424 structured data must be '-' or start with '['", 0)
    i, depth, quoted, escaped = 0, 0, False, False
    while i < len(rest):
        c = rest[i]
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif not quoted and c == "[":
            depth += 1
        elif not quoted and c == "]":
            depth -= 1
            if depth == 0 and (i + 1 == len(rest) or rest[i + 1] != "["):
                return rest[:i + 1], rest[i + 2:]
        i += 1
    raise SyslogMalformed("RFC 5424 structured data is not closed", i)


def parse(datagram: bytes) -> SyslogMessage:
    """Decode one syslog datagram (RFC 5424 if it says version 1, else RFC 3164)."""
    m = _PRI.match(datagram)
    if m is None:
        raise SyslogMalformed("no <PRI> at the start", 0)
    pri = int(m.group(1))
    if pri > 191:  # RFC 5424 §6.2.1: facility 0-23, severity 0-7
        raise SyslogMalformed(f"PRI {pri} is out of range (0-191)", 1)
    facility, severity = divmod(pri, 8)
    body = datagram[m.end():MAX_MESSAGE]
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    text = body.decode("utf-8", errors="replace").rstrip("\r\n\0")
    if text.startswith("1 "):
        parts = text[2:].split(" ", 5)
        if len(parts) < 6:
            raise SyslogMalformed("RFC 5424 header has fewer than 6 fields", m.end())
        ts, host, app5, proc5, msgid, tail = parts
        sd, msg = _structured(tail)
        return SyslogMessage(facility, severity, 1, _nil(ts), _nil(host), _nil(app5), _nil(proc5), _nil(msgid),
                             sd, msg.removeprefix("\ufeff"))
    timestamp: str | None = None
    hostname: str | None = None
    app: str | None = None
    procid: str | None = None
    rest = text
    t = _BSD_TIME.match(rest)
    if t is not None:
        timestamp = t.group(1)
        rest = rest[t.end():]
        host, sep, after = rest.partition(" ")
        if sep and not host.endswith(":"):
            hostname, rest = host, after
    tag = _BSD_TAG.match(rest)
    if tag is not None:
        app = tag.group(1)
        procid = tag.group(2)[1:-1] if tag.group(2) else None
        rest = rest[tag.end():]
    return SyslogMessage(facility, severity, 0, timestamp, hostname, app, procid, None, None, rest)
