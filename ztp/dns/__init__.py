"""DNS for the provisioning network: the zone (:mod:`ztp.dns.zone`) and its asyncio shell.

The shell, :class:`ztp.dns.server.DnsServer`, is imported from :mod:`ztp.dns.server` directly, so that
``python -m ztp.dns.server`` runs without a double import.
"""

from __future__ import annotations

from ztp.dns.zone import Response, Zone, sanitize_hostname

__all__ = ["Response", "Zone", "sanitize_hostname"]
