"""The one HTTP listener (`server`): /healthz, the operator API and dashboard, HTTP boot; routes added per feature."""

from __future__ import annotations
