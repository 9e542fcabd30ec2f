"""The operator API (`routes`), Prometheus metrics (`metrics`) and the dashboard's static files (`static/`)."""

from __future__ import annotations
