"""Per-device configs from Jinja2 templates: sandboxed, StrictUndefined, all-or-nothing.

Templates are read and compiled once, when a configuration is loaded (:class:`TemplateSet`); a render never
reads the disk, so what is served is always what was validated, until the next successful reload.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ztp.config import Config, Device, Problem, Subnet
from ztp.frozen import FrozenDict, FrozenList, freeze

MAX_TEMPLATE_BYTES = 4 << 20
"""Larger files are refused: templates are held in memory, and a boot image belongs in ``tftp.root``."""


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
    # The vendor profile its DHCP fingerprint was recognised as (kept with its lease), or None.
    vendor: str | None = None

    @property
    def hostname(self) -> str:
        """Inventory hostname, or a name derived from the MAC for unlisted devices."""
        if self.device is not None:
            return self.device.hostname
        return "device-" + self.mac.replace(":", "")


def _skipped(name: str) -> bool:
    """Editor leftovers (dot files, ``file~`` backups) are not templates."""
    return name.startswith(".") or name.endswith("~")


class _SnapshotLoader(jinja2.BaseLoader):
    """Serves template sources read at load time, under their real file names (for error positions)."""

    def __init__(self, root: Path, sources: Mapping[str, str]) -> None:
        self._root = root
        self._sources = sources

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str | None, Callable[[], bool] | None]:
        name = "/".join(split_template_path(template))  # refuses '..' as FileSystemLoader does
        source = self._sources.get(name)
        if source is None:
            raise jinja2.TemplateNotFound(template)
        # Always up to date: a compiled template is never checked against the disk again.
        return source, str(self._root / name), lambda: True

    def list_templates(self) -> list[str]:
        return sorted(self._sources)


class TemplateSet:
    """Every template file under one directory, read and compiled once, in an immutable sandbox.

    ``problems`` lists the files that cannot be read or compiled (file, line, what to fix); rendering one of
    them raises that problem as a RenderError. Nothing here reads the disk after construction.
    """

    def __init__(self, root: Path, sources: Mapping[str, str], unreadable: Mapping[str, Problem] | None = None
                 ) -> None:
        self.root = root
        self._sources = dict(sources)
        # ImmutableSandboxedEnvironment: no attribute escapes (SandboxedEnvironment), and no method that
        # changes a list, dict or set (append, update, pop...): a template cannot alter the inventory or the
        # variables the next render sees.
        self.env = ImmutableSandboxedEnvironment(
            loader=_SnapshotLoader(root, self._sources),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
            auto_reload=False,
            cache_size=-1,  # every template stays compiled; none is ever evicted and recompiled
        )
        self.broken: dict[str, Problem] = dict(unreadable or {})
        for name in sorted(self._sources):
            try:
                self.env.get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                self.broken[name] = Problem(Path(exc.filename or root / name), exc.lineno or 0,
                                            f"syntax error: {exc.message}")
        self.problems: tuple[Problem, ...] = tuple(self.broken[name] for name in sorted(self.broken))

    @classmethod
    def load(cls, root: Path) -> TemplateSet:
        """Read every file under `root` (subdirectories too; dot files and ``~`` backups skipped) and compile it."""
        sources: dict[str, str] = {}
        unreadable: dict[str, Problem] = {}
        seen: set[tuple[int, int]] = set()

        def walk_error(exc: OSError) -> None:
            where = Path(exc.filename) if exc.filename else root
            unreadable[where.relative_to(root).as_posix() if where != root else "."] = \
                Problem(where, 0, f"cannot read the templates directory: {exc.strerror}")

        for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:  # a symlink loop
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
            for filename in sorted(filenames):
                if _skipped(filename):
                    continue
                path = Path(dirpath) / filename
                name = path.relative_to(root).as_posix()
                try:
                    if path.stat().st_size > MAX_TEMPLATE_BYTES:
                        unreadable[name] = Problem(path, 0, f"larger than {MAX_TEMPLATE_BYTES >> 20} MiB: not a "
                                                            "template (static files belong in tftp.root)")
                        continue
                    data = path.read_bytes()
                except OSError as exc:
                    unreadable[name] = Problem(path, 0, f"cannot read the template: {exc.strerror}")
                    continue
                try:
                    sources[name] = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    line = data[: exc.start].count(b"\n") + 1
                    unreadable[name] = Problem(path, line, f"not UTF-8 text (byte {exc.start}); save it as UTF-8 "
                                                           "or move it out of the templates directory")
        return cls(root, sources, unreadable)

    @property
    def names(self) -> list[str]:
        """The templates that compiled, as inventory ``template:`` values name them."""
        return sorted(set(self._sources) - set(self.broken))


class Renderer:
    """Renders device configs from one snapshot: a config (with its inventory) and the templates of that load.

    Give it the TemplateSet validated with `config`; without one it reads the templates directory now, once.
    Template edits on disk take effect only through a new Renderer (a new snapshot, e.g. on SIGHUP).
    """

    def __init__(self, config: Config, templates: TemplateSet | None = None) -> None:
        self._config = config
        self.templates = templates if templates is not None else TemplateSet.load(config.templates)
        self._env = self.templates.env

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
            "routers": FrozenList(str(r) for r in subnet.routers) if subnet else FrozenList(),
            "dns_servers": FrozenList(str(d) for d in subnet.dns_servers) if subnet else FrozenList(),
            "domain": (subnet.domain if subnet and subnet.domain else
                       (self._config.dns.zone if self._config.dns else None)),
            "client_hostname": view.client_hostname,
            "known": view.device is not None,
        }
        if view.device is not None:
            fields.update(circuit_id=view.device.circuit_id, remote_id=view.device.remote_id,
                          client_id=view.device.client_id, serial=view.device.serial)
        # Templates branch on the vendor profile, chosen as the DHCP reply's was (ztp.vendors.boot.choose_profile):
        # the device's `vendor:`, else what its fingerprint was recognised as (kept in its lease), else
        # defaults.vendor.
        fields["vendor"] = view.device.vendor if view.device is not None and view.device.vendor else \
            (view.vendor or inv.default_vendor or "generic-tftp")
        # A None field would print as "None" in a config; leave it undefined so StrictUndefined names it.
        fields = {k: v for k, v in fields.items() if v is not None}
        merged: dict[str, Any] = dict(inv.default_vars)
        if view.device is not None:
            merged.update(view.device.vars)
        # Read-only all the way down (loaded vars are frozen already, so this copies only the top level): a
        # template must not be able to change what the next device's render sees.
        frozen_vars: FrozenDict = freeze(merged)
        context = {**fields, **frozen_vars}
        context["device"] = FrozenDict(context)
        context["vars"] = frozen_vars
        return context

    def render(self, view: DeviceView) -> bytes:
        """The full config for one device, or RenderError; never a partial result."""
        name = self.template_for(view)
        if name is None:
            raise RenderError(str(self._config.inventory.path), 0,
                              f"no template for {view.hostname} ({view.mac}) and no defaults.template")
        broken = self.templates.broken.get(name)
        if broken is not None:
            raise RenderError(str(broken.path), broken.line, broken.message)
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
        except SecurityError as exc:
            file, line = self._template_position(exc, name)
            raise RenderError(file, line, f"SecurityError: {exc} (templates may read their variables, not change "
                                          "them or reach Python internals)") from None
        except Exception as exc:  # noqa: BLE001 - any template runtime error must become a clean refusal
            file, line = self._template_position(exc, name)
            raise RenderError(file, line, f"{type(exc).__name__}: {exc}") from None
        return text.encode("utf-8")

    def _template_position(self, exc: BaseException, name: str) -> tuple[str, int]:
        root = str(self.templates.root)
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename.startswith(root) and frame.lineno is not None:
                return frame.filename, frame.lineno
        return str(Path(root) / name), 0
