"""Read-only TFTP: codec (`packet`), sans-I/O transfer (`session`), `content` providers, asyncio `server`.

The server is imported from `ztp.tftp.server` (not re-exported); `python -m ztp.tftp` runs it alone.
"""

from __future__ import annotations

from ztp.tftp.content import ChainedContent, ContentProvider, StaticRoot, TftpRefusal
from ztp.tftp.packet import TftpMalformed
from ztp.tftp.session import ReadSession

__all__ = [
    "ChainedContent",
    "ContentProvider",
    "ReadSession",
    "StaticRoot",
    "TftpMalformed",
    "TftpRefusal",
]
