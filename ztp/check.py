"""The whole-appliance check shared by `ztp check`, `ztp serve` start-up and SIGHUP reloads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ztp.config import Config, Problem, check_config
from ztp.leases.store import database_path, load_leases
from ztp.leases.table import LeaseTable
from ztp.provision import device_view
from ztp.render import Renderer, RenderError


def validate(path: Path) -> tuple[Config | None, list[Problem]]:
    """Config, inventory, and every device's render: all problems at once, each `file:line: message`."""
    config, problems = check_config(path)
    if config is not None and config.templates.is_dir():
        problems += render_problems(config)
    return config, problems


def render_problems(config: Config) -> list[Problem]:
    """Render every inventory device (and the default template) and report what fails, file:line."""
    table = LeaseTable(load_leases(database_path(config.state_dir)))
    renderer = Renderer(config)
    problems: list[Problem] = []
    sample = next((s.pool_start for s in config.subnets if s.pool_start is not None), None)
    views = [device_view(config, table, device=d, mac=None) for d in config.inventory.devices]
    if config.inventory.default_template:
        views.append(device_view(config, table, device=None, mac="02:00:00:00:00:00"))
    for view in views:
        if view.ip is None and sample is not None:
            # Not leased yet: check the template with a sample pool address.
            view = dataclasses.replace(view, ip=sample, subnet=config.subnet_for(sample))
        try:
            renderer.render(view)
        except RenderError as exc:
            path = Path(exc.file) if exc.line else config.inventory.path
            line = exc.line or (view.device.line if view.device else 0)
            problems.append(Problem(path, line, f"{view.hostname}: {exc.message}"))
    return problems
