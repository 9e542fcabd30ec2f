"""The whole-appliance check shared by `ztp check`, `ztp serve` start-up and SIGHUP reloads."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from ztp.config import Config, Device, Problem, check_config
from ztp.dns.names import zone_problems
from ztp.leases.store import database_path, load_leases
from ztp.leases.table import LeaseTable
from ztp.net.sockets import interface_ipv4
from ztp.privilege import PrivilegeError, lookup_user
from ztp.provision import device_view
from ztp.render import Renderer, RenderError, TemplateSet
from ztp.snapshot import Snapshot
from ztp.vendors import profile_named
from ztp.vendors.boot import configured_profile, http_port


def validate(path: Path, *, here: bool = False) -> tuple[Snapshot | None, list[Problem]]:
    """Load a snapshot (config, inventory, every template) and list all its problems, each `file:line: message`.

    The one validation: `ztp check` prints its problems, `ztp serve` refuses to start on any, and a SIGHUP
    reload swaps the snapshot in only when there are none. Config and inventory, templates that do not read
    or compile, the DNS zone, then every device's render. `here`: also the interfaces of `dhcp.interfaces`
    on this host (:func:`missing_interfaces`). The snapshot is None only when ztp.yaml itself is unusable.
    """
    config, problems = check_config(path)
    if config is None:
        return None, problems
    if config.templates.is_dir():  # else check_config said so
        templates = TemplateSet.load(config.templates)
    else:
        templates = TemplateSet(config.templates, {})
    problems += templates.problems
    problems += zone_problems(config)
    if config.templates.is_dir():
        problems += render_problems(config, templates)
    if here:
        problems += missing_interfaces(config)
        problems += missing_user(config)
    return Snapshot(config, templates), problems


def render_problems(config: Config, templates: TemplateSet | None = None) -> list[Problem]:
    """Render every inventory device (and the default template) and report what fails, file:line.

    A template that does not compile is reported once by its TemplateSet, not again for each device using it.
    """
    problems: list[Problem] = []
    try:
        table = LeaseTable(load_leases(database_path(config.state_dir)))
    except OSError as exc:  # ztp serve would refuse to start on it too
        problems.append(Problem(config.path, config.line("state_dir"), str(exc)))
        table = LeaseTable()
    renderer = Renderer(config, templates)
    reported = {(str(p.path), p.line, p.message) for p in renderer.templates.problems}
    sample = next((s.pool_start for s in config.subnets if s.pool_start is not None), None)
    views = [device_view(config, table, device=d, mac=None) for d in config.inventory.devices]
    if config.inventory.default_template:
        views.append(device_view(config, table, device=None, mac="02:00:00:00:00:00"))
    for view in views:
        if view.ip is None and sample is not None:
            # Not leased yet: check the template with a sample pool address.
            view = dataclasses.replace(view, ip=sample, subnet=config.subnet_for(sample))
        try:
            rendered = renderer.render(view)
        except RenderError as exc:
            if (exc.file, exc.line, exc.message) in reported:
                continue
            path = Path(exc.file) if exc.line else config.inventory.path
            line = exc.line or (view.device.line if view.device else 0)
            problems.append(Problem(path, line, f"{view.hostname}: {exc.message}"))
            continue
        problems += vendor_problems(config, view.device, rendered)
    return problems


def vendor_problems(config: Config, device: Device | None, rendered: bytes) -> list[Problem]:
    """What a device's vendor profile expects and does not get: an HTTP listener, the file's shape."""
    profile = configured_profile(config.inventory, device)
    if profile is None and device is None and config.inventory.default_vendor:
        profile = profile_named(config.inventory.default_vendor)
    if profile is None:
        return []
    where = config.inventory.path
    line = device.line if device is not None else config.line()
    name = device.hostname if device is not None else "unlisted devices"
    problems: list[Problem] = []
    if profile.requires_http and http_port(config) is None:
        problems.append(Problem(config.path, 1, f"{name} boots as {profile.name}, which fetches over HTTP: add an "
                                                "'http:' section (port) so ztp can serve it"))
    complaint = profile.check(rendered)
    if complaint:
        problems.append(Problem(where, line, f"{name} ({profile.name}): {complaint}"))
    return problems


def missing_user(config: Config) -> list[Problem]:
    """`user:` when this host has no such user (`ztp check --here`; `ztp serve` refuses to start then)."""
    if config.user is None:
        return []
    try:
        lookup_user(config.user)
    except PrivilegeError as exc:
        return [Problem(config.path, config.line("user"), str(exc))]
    return []


def missing_interfaces(config: Config) -> list[Problem]:
    """`dhcp.interfaces` entries that this host does not have, or that have no IPv4 address, at their line.

    Only meaningful on the machine that will run `ztp serve` (`ztp check --here`, and serve's start-up).
    """
    problems: list[Problem] = []
    for i, name in enumerate(config.interfaces):
        line = config.line("dhcp", "interfaces", i)
        try:
            socket.if_nametoindex(name)
        except (OSError, ValueError):
            problems.append(Problem(config.path, line, f"dhcp.interfaces: {name!r} does not exist on this host "
                                                       "(`ip -br link` lists the interfaces)"))
            continue
        if interface_ipv4(name) is None:
            problems.append(Problem(config.path, line, f"dhcp.interfaces: {name} has no IPv4 address; ztp "
                                                       "answers from it: give it one in a configured subnet"))
    return problems
