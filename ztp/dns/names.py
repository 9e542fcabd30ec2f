"""The zone a configuration defines (origin, server name, static records, reservations) and its problems.

`ztp check`, `ztp serve` start-up and SIGHUP reloads validate the zone with :func:`zone_problems`; the
appliance builds the zone it serves with :func:`build_zone` from the same settings, so a zone that passed
the check cannot fail to build (the appliance's own addresses, added at start, are interface addresses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address

from ztp.config import Config, DnsSettings, Problem
from ztp.dns.zone import Zone

_SAMPLE_ADDRESS = "192.0.2.1"
"""Stands in for a record's address while its name is checked (RFC 5737 documentation address)."""


def _static_zone(dns: DnsSettings, server_ips: Sequence[str], subnets: Sequence[str],
                 records: Mapping[str, Sequence[str]]) -> Zone:
    return Zone(dns.zone, server_name=dns.server_name, server_ips=list(server_ips), subnets=list(subnets),
                ttl=dns.ttl, records=dict(records))


def build_zone(config: Config, server_ips: Sequence[str]) -> Zone:
    """The zone of `config` with its static names and reservations; ValueError for anything invalid."""
    dns = config.dns
    if dns is None:
        raise ValueError("dns is not configured")
    zone = _static_zone(dns, server_ips, [str(s.network) for s in config.subnets], dns.records)
    for device in config.inventory.devices:
        if device.ip is not None:
            zone.set_host(device.hostname, str(device.ip))
    return zone


def _is_ipv4(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True


def zone_problems(config: Config) -> list[Problem]:
    """Everything :func:`build_zone` would refuse, each at its line in ztp.yaml or the inventory."""
    dns = config.dns
    if dns is None:
        return []
    try:
        _static_zone(dns, [], [], {})
    except ValueError as exc:
        # The origin, the server name and the TTL are what is left: say which key is wrong.
        text = str(exc)
        key = "server_name" if text.startswith("server name") else "ttl" if text.startswith("ttl") else "zone"
        return [Problem(config.path, config.line("dns", key), f"dns.{key}: {text}")]
    problems: list[Problem] = []
    records: dict[str, Sequence[str]] = {}
    for subnet in config.subnets:
        try:
            _static_zone(dns, [], [str(subnet.network)], {})
        except ValueError as exc:
            problems.append(Problem(config.path, subnet.line, f"dns (reverse zone of {subnet.network}): {exc}"))
    for name, addrs in dns.records.items():
        # Bad addresses are reported by the config loader already: check the name (and that there is one).
        checked = records[name] = addrs if all(_is_ipv4(a) for a in addrs) else [_SAMPLE_ADDRESS]
        try:
            _static_zone(dns, [], [], {name: checked})
        except ValueError as exc:
            problems.append(Problem(config.path, config.line("dns", "records", name), f"dns.records.{name}: {exc}"))
    if problems:
        return problems
    zone = _static_zone(dns, [], [str(s.network) for s in config.subnets], records)
    for device in config.inventory.devices:
        if device.ip is not None:
            try:
                zone.set_host(device.hostname, str(device.ip))
            except ValueError as exc:
                problems.append(Problem(config.inventory.path, device.line, f"{device.hostname}: dns: {exc}"))
    return problems
