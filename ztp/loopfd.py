"""Taking a file descriptor off the event loop, for the compiled build as much as the interpreted one.

typeshed declares `remove_reader` and `remove_writer` as returning bool; uvloop's return None. A module
compiled by mypyc checks what a typed call returns, even when the caller ignores it, so calling them on a
typed loop raised TypeError under uvloop: when a full lease pipe drained, and at every shutdown (the DHCP
server's close, then the lease writer's, whose final checkpoint it skipped). The loop is untyped here.
"""

from __future__ import annotations

from typing import Any


def unwatch(loop: Any, fd: int, *, reader: bool = True, writer: bool = False) -> None:
    """Remove the loop's reader callback of `fd` (unless `reader` is False) and its writer callback (when
    `writer`)."""
    if reader:
        loop.remove_reader(fd)
    if writer:
        loop.remove_writer(fd)
