"""Syslog receiver: RFC 3164 / RFC 5424 codec (`message`) and the UDP shell (`server`) that confirms devices."""

from __future__ import annotations
