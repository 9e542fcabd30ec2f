"""Frames: the unit of the pipe between `ztp serve` and its lease writer process (`ztp.rowwriter`), and of
the records of the commit log (`ztp.commitlog`). A frame is a 4-byte big-endian length, then a `marshal`
body (sans-I/O: encoding and decoding only)."""

from __future__ import annotations

import marshal
import struct
from typing import Any

_LENGTH = struct.Struct("!I")


def frame(obj: Any) -> bytes:
    """`obj` as one frame: length, then its marshal encoding."""
    body = marshal.dumps(obj)
    return _LENGTH.pack(len(body)) + body


class FrameReader:
    """Frames out of a byte stream read in arbitrary pieces (no I/O)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add `data`; every frame now complete, decoded, in order."""
        buffer = self._buffer
        buffer += data
        out: list[Any] = []
        start = 0
        while len(buffer) - start >= 4:
            (size,) = _LENGTH.unpack_from(buffer, start)
            if len(buffer) - start - 4 < size:
                break
            out.append(marshal.loads(bytes(buffer[start + 4:start + 4 + size])))
            start += 4 + size
        if start:
            del buffer[:start]
        return out

    @property
    def partial(self) -> bool:
        """Whether part of a frame is still to come."""
        return bool(self._buffer)

    @property
    def buffered(self) -> int:
        """How many bytes of a frame not yet whole it holds."""
        return len(self._buffer)
