"""Where TFTP bytes come from: a provider maps (path, peer) to bytes or a `TftpRefusal`.

Static files and rendered device configs are two providers of the same interface; `ChainedContent`
composes them in a visible order (the first provider that knows the path wins).
"""

from __future__ import annotations

import os
import stat
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

from ztp.tftp.packet import ERR_ACCESS, ERR_NOT_FOUND, ERR_UNDEFINED


class TftpRefusal(Exception):
    """A request the server declines, with the RFC 1350 §5 error code sent to the client."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"TFTP error {self.code}: {self.message}"


class ContentProvider(Protocol):
    """Returns the bytes for `path` as requested by `peer`, or raises `TftpRefusal`."""

    def get(self, path: str, peer: tuple[str, int]) -> bytes:
        """The whole file content for this peer."""
        ...


class StaticRoot:
    """Read-only files under `root`; refuses anything that would leave it.

    Refused with code 2 (access violation): absolute paths, ``..`` components, NUL bytes, symlinks that
    resolve outside the root, directories and non-regular files. Missing files are code 1. Recently read
    files are cached by (inode, size, mtime) up to `cache_bytes` in total, so a thousand devices fetching
    the same boot image share one copy in memory (each session holds a reference, not a copy) and a
    changed file is re-read.
    """

    def __init__(self, root: Path, *, cache_bytes: int = 256 * 1024 * 1024) -> None:
        self.root = Path(root).resolve()
        self._cache: OrderedDict[tuple[int, int, int, int], bytes] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0

    def resolve(self, path: str) -> Path:
        """The file `path` names under the root, or `TftpRefusal` saying why it may not be served."""
        if "\0" in path:
            raise TftpRefusal(ERR_ACCESS, "NUL byte in filename")
        if not path:
            raise TftpRefusal(ERR_NOT_FOUND, "empty filename")
        if path.startswith("/"):
            raise TftpRefusal(ERR_ACCESS, "absolute paths are not allowed")
        if ".." in path.split("/"):
            raise TftpRefusal(ERR_ACCESS, "'..' is not allowed in paths")
        try:
            target = (self.root / path).resolve(strict=True)
        except FileNotFoundError:
            raise TftpRefusal(ERR_NOT_FOUND, "file not found") from None
        except (OSError, RuntimeError):
            # RuntimeError: symlink loop; other OSErrors (ENOTDIR, ENAMETOOLONG, EACCES) are not-found too.
            raise TftpRefusal(ERR_NOT_FOUND, "file not found") from None
        if not target.is_relative_to(self.root):
            raise TftpRefusal(ERR_ACCESS, "path leaves the TFTP root")
        return target

    def get(self, path: str, peer: tuple[str, int]) -> bytes:
        """Content of the regular file `path` under the root (see class docstring for refusals)."""
        target = self.resolve(path)
        try:
            # O_NONBLOCK: opening a FIFO planted in the root must not block the event loop.
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except PermissionError:
            raise TftpRefusal(ERR_ACCESS, "permission denied") from None
        except IsADirectoryError:
            raise TftpRefusal(ERR_ACCESS, "is a directory") from None
        except FileNotFoundError:
            raise TftpRefusal(ERR_NOT_FOUND, "file not found") from None
        except OSError as exc:
            raise TftpRefusal(ERR_UNDEFINED, f"cannot open: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise TftpRefusal(ERR_ACCESS, "is a directory")
            if not stat.S_ISREG(st.st_mode):
                raise TftpRefusal(ERR_ACCESS, "not a regular file")
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            with os.fdopen(fd, "rb", closefd=False) as fh:
                content = fh.read()
        except OSError as exc:
            raise TftpRefusal(ERR_UNDEFINED, f"read error: {exc.strerror}") from None
        finally:
            os.close(fd)
        self._remember(key, content)
        return content

    def _remember(self, key: tuple[int, int, int, int], content: bytes) -> None:
        if len(content) > self._cache_bytes:
            return
        self._cache[key] = content
        self._cached += len(content)
        while self._cached > self._cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached -= len(old)


class ChainedContent:
    """Tries providers in order; the first that does not refuse with code 1 (not found) answers."""

    def __init__(self, *providers: ContentProvider) -> None:
        self.providers = providers

    def get(self, path: str, peer: tuple[str, int]) -> bytes:
        """Content from the first provider that knows `path`; other refusals stop the chain."""
        last = TftpRefusal(ERR_NOT_FOUND, "file not found")
        for provider in self.providers:
            try:
                return provider.get(path, peer)
            except TftpRefusal as refusal:
                if refusal.code != ERR_NOT_FOUND:
                    raise
                last = refusal
        raise last
