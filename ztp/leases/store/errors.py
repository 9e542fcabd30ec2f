"""The lease database's errors, apart from `ztp.leases.store.sqlite`: a compiled module (setup.py's HOT)
cannot define a subclass of a built-in exception."""

from __future__ import annotations


class LeaseDatabaseError(OSError):
    """The lease database exists but cannot be read. Starting with an empty table instead would hand out
    again every address it holds (duplicate addresses on the network), so `ztp serve` stops."""


class LeaseWriterError(OSError):
    """The writer process is gone (it exited or could not start): the commits it held are not durable."""
