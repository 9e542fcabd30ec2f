"""One load of the configuration: ztp.yaml, its inventory and every template, validated together.

`ztp serve` serves from one Snapshot at a time: a SIGHUP builds and validates a new one off the event loop
and swaps it in whole, or logs its problems and keeps the old one whole. Nothing in it is read from disk
again (templates are compiled at load) and nothing in it changes after it is built (inventory values are
read-only, see ztp.frozen).
"""

from __future__ import annotations

from dataclasses import dataclass

from ztp.config import Config
from ztp.render import Renderer, TemplateSet


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Config (with its inventory) and the templates compiled from the same load."""

    config: Config
    templates: TemplateSet

    def renderer(self) -> Renderer:
        """A renderer over exactly this snapshot."""
        return Renderer(self.config, self.templates)
