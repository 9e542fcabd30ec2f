"""`python -m ztp.tftp --root DIR [--host ADDR] [--port N] ...`: the read-only TFTP server alone
(`ztp.tftp.server.main`). It has a module of its own because the compiled build's `ztp.tftp.server` is an
extension module, which `python -m` cannot run."""

from __future__ import annotations

from ztp.tftp.server import main

raise SystemExit(main())
