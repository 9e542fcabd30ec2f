"""Per-device configs from Jinja2 templates: sandboxed, StrictUndefined, all-or-nothing."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from ztp.config import Config, Device, Subnet


class RenderError(Exception):
    """A template that cannot be rendered for a device; names the template file and line."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class DeviceView:
    """Everything known about one device at render time."""

    mac: str
    device: Device | None
    ip: IPv4Address | None
    subnet: Subnet | None
    client_hostname: str | None = None

    @property
    def hostname(self) -> str:
        """Inventory hostname, or a name derived from the MAC for unlisted devices."""
        if self.device is not None:
            return self.device.hostname
        return "device-" + self.mac.replace(":", "")


class Renderer:
    """Renders device configs; templates are read from disk on each render so edits apply at once."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(config.templates)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
            auto_reload=True,
        )

    def template_for(self, view: DeviceView) -> str | None:
        """The template name a device renders with: its own, else the inventory default."""
        if view.device is not None and view.device.template:
            return view.device.template
        return self._config.inventory.default_template

    def context(self, view: DeviceView) -> dict[str, Any]:
        """The names a template sees: device fields, then defaults.vars and the device's vars over them."""
        inv = self._config.inventory
        subnet = view.subnet
        fields: dict[str, Any] = {
            "hostname": view.hostname,
            "mac": view.mac,
            "ip": str(view.ip) if view.ip else None,
            "prefixlen": subnet.network.prefixlen if subnet else None,
            "netmask": str(subnet.network.netmask) if subnet else None,
            "network": str(subnet.network) if subnet else None,
            "gateway": str(subnet.routers[0]) if subnet and subnet.routers else None,
            "routers": [str(r) for r in subnet.routers] if subnet else [],
            "dns_servers": [str(d) for d in subnet.dns_servers] if subnet else [],
            "domain": (subnet.domain if subnet and subnet.domain else
                       (self._config.dns.zone if self._config.dns else None)),
            "client_hostname": view.client_hostname,
            "known": view.device is not None,
        }
        if view.device is not None:
            fields.update(circuit_id=view.device.circuit_id, remote_id=view.device.remote_id,
                          client_id=view.device.client_id)
        # A None field would print as "None" in a config; leave it undefined so StrictUndefined names it.
        fields = {k: v for k, v in fields.items() if v is not None}
        merged: dict[str, Any] = dict(inv.default_vars)
        if view.device is not None:
            merged.update(view.device.vars)
        context = {**fields, **merged}
        context["device"] = dict(context)
        context["vars"] = merged
        return context

    def render(self, view: DeviceView) -> bytes:
        """The full config for one device, or RenderError; never a partial result."""
        name = self.template_for(view)
        if name is None:
            raise RenderError(str(self._config.inventory.path), 0,
                              f"no template for {view.hostname} ({view.mac}) and no defaults.template")
        try:
            template = self._env.get_template(name)
            text = template.render(self.context(view))
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(exc.filename or name, exc.lineno, f"syntax error: {exc.message}") from None
        except jinja2.TemplateNotFound as exc:
            raise RenderError(str(self._config.inventory.path),
                              (view.device.template_line or view.device.line) if view.device else 0,
                              f"template {exc.name!r} not found in {self._config.templates}") from None
        except jinja2.UndefinedError as exc:
            file, line = self._template_position(exc, name)
            raise RenderError(file, line, str(exc.message)) from None
        except Exception as exc:  # noqa: BLE001 - any template runtime error must become a clean refusal
            file, line = self._template_position(exc, name)
            raise RenderError(file, line, f"{type(exc).__name__}: {exc}") from None
        return text.encode("utf-8")

    def _template_position(self, exc: BaseException, name: str) -> tuple[str, int]:
        root = str(self._config.templates)
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename.startswith(root) and frame.lineno is not None:
                return frame.filename, frame.lineno
        return str(Path(root) / name), 0
