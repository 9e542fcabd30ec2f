"""Where TFTP bytes come from: a provider maps (path, peer) to content or a `TftpRefusal`.

Static files and rendered device configs are two providers of the same interface; `ChainedContent`
composes them in a visible order (the first provider that knows the path wins). Requested paths are
normalised by `normalise_path`, the one place that decides which spellings are refused (absolute paths,
``..``, NUL bytes), for every provider alike.

Content is either `bytes` (rendered configs, small static files) or a `FileContent` that is read block by
block as the transfer goes, so a large boot image never sits whole in memory or blocks the event loop.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterable
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


def normalise_path(path: str) -> str:
    """The canonical relative form of a requested path, or `TftpRefusal` saying why it is not acceptable.

    Absolute paths (``/leaf01.cfg``, ``//x``), ``..`` components and NUL bytes are refused with code 2
    (access violation), an empty name with code 1; empty and ``.`` components are dropped
    (``./cfg//leaf01.cfg`` is ``cfg/leaf01.cfg``), and a name that is nothing else is ``.``.
    """
    if "\0" in path:
        raise TftpRefusal(ERR_ACCESS, "NUL byte in filename")
    if not path:
        raise TftpRefusal(ERR_NOT_FOUND, "empty filename")
    if path.startswith("/"):
        raise TftpRefusal(ERR_ACCESS, "absolute paths are not allowed")
    parts = path.split("/")
    if ".." in parts:
        raise TftpRefusal(ERR_ACCESS, "'..' is not allowed in paths")
    return "/".join(p for p in parts if p and p != ".") or "."


class FileContent:
    """An open regular file served by offset reads (``pread``) as the transfer asks for blocks.

    Reads are made in chunks of at least `chunk` bytes and the last chunk is kept, so lock-step transfers
    with small blocks cost one system call per chunk rather than one per block. The descriptor pins the
    inode: replacing the file mid-transfer does not mix two versions; truncating it fails the read.
    """

    __slots__ = ("fd", "size", "chunk", "_buf", "_buf_at", "_buf_end")

    def __init__(self, fd: int, size: int, *, chunk: int = 256 * 1024) -> None:
        self.fd = fd
        self.size = size
        self.chunk = chunk
        self._buf = memoryview(b"")  # the last chunk read, covering [_buf_at, _buf_end) of the file
        self._buf_at = 0
        self._buf_end = 0

    def read(self, offset: int, length: int) -> memoryview:
        """`length` bytes at `offset` (fewer only at the end of the file); OSError if the file shrank."""
        # Called once per block in lock-step: comparisons, not min()/max() calls, on the hit path.
        end = offset + length
        if end > self.size:
            end = self.size if offset < self.size else offset
        if offset >= self._buf_at and end <= self._buf_end:
            at = self._buf_at
            return self._buf[offset - at:end - at]
        if self.fd < 0:
            raise OSError("file already closed")
        want = end - offset
        if want < self.chunk:
            want = self.chunk
        if want > self.size - offset:
            want = self.size - offset
        buf = os.pread(self.fd, want, offset) if want > 0 else b""
        if offset + len(buf) < end:
            raise OSError(f"file shrank during the transfer (short read at offset {offset})")
        self._buf, self._buf_at, self._buf_end = memoryview(buf), offset, offset + len(buf)
        return self._buf[:end - offset]

    def close(self) -> None:
        """Release the descriptor; idempotent."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self._buf = memoryview(b"")
            self._buf_at = self._buf_end = 0


Content = bytes | FileContent
"""What a provider returns: the whole bytes, or a file read on demand."""


def close_content(content: Content) -> None:
    """Release what `content` holds (a `FileContent`'s descriptor); bytes need nothing."""
    if isinstance(content, FileContent):
        content.close()


class ContentProvider(Protocol):
    """Returns the content of `path` as requested by `peer`, or raises `TftpRefusal`."""

    def get(self, path: str, peer: tuple[str, int]) -> Content:
        """The file for this peer: bytes, or a `FileContent` the caller must close."""
        ...


class StaticRoot:
    """Read-only files under `root`; refuses anything that would leave it or that is not public.

    Refused with code 2 (access violation): what `normalise_path` refuses, symlinks that resolve outside
    the root, directories, non-regular files, files that are not world-readable (mode ``o+r``: a file the
    operator kept private on disk stays private on the wire), and files matching a `private` glob when
    `may_read_private` says the peer may not have them. Missing files are code 1.

    Files up to `small_file` bytes are read whole and cached by (inode, size, mtime) up to `cache_bytes` in
    total, so a thousand devices fetching the same small file share one copy (each session holds a
    reference) and a changed file is re-read. Larger files are returned as a `FileContent`, read block by
    block during the transfer.
    """

    def __init__(self, root: Path, *, cache_bytes: int = 256 * 1024 * 1024, small_file: int = 1024 * 1024,
                 private: Iterable[str] = (), may_read_private: Callable[[str], bool] | None = None) -> None:
        """`private`: globs over the normalised path relative to `root` (``*`` also matches ``/``);
        `may_read_private(peer_ip)`: whether a peer may read those (None: nobody may)."""
        self.root = Path(root).resolve()
        self._cache: OrderedDict[tuple[int, int, int, int], bytes] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._small_file = small_file
        self._cached = 0
        self.private = tuple(private)
        self.may_read_private = may_read_private

    def is_private(self, path: str) -> bool:
        """Whether the normalised `path` matches one of the `private` globs."""
        return any(fnmatch.fnmatchcase(path, glob) for glob in self.private)

    def resolve(self, path: str) -> Path:
        """The file `path` names under the root, or `TftpRefusal` saying why it may not be served."""
        path = normalise_path(path)
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

    def get(self, path: str, peer: tuple[str, int]) -> Content:
        """Content of the regular file `path` under the root (see class docstring for refusals)."""
        path = normalise_path(path)
        # Before looking at the disk, so a stranger cannot even learn which private files exist.
        if self.private and self.is_private(path) and (
                self.may_read_private is None or not self.may_read_private(peer[0])):
            raise TftpRefusal(ERR_ACCESS, "private file: only for hosts holding a lease or reservation")
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
            if not st.st_mode & stat.S_IROTH:
                raise TftpRefusal(ERR_ACCESS, "file is not world-readable")
            if st.st_size > self._small_file:
                streamed = FileContent(fd, st.st_size)
                fd = -1  # now owned by the FileContent, closed when the transfer ends
                return streamed
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            content = _read_small(fd, st.st_size)
        except OSError as exc:
            raise TftpRefusal(ERR_UNDEFINED, f"read error: {exc.strerror or exc}") from None
        finally:
            if fd >= 0:
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


def _read_small(fd: int, size: int) -> bytes:
    """The whole (small) file; a file that grew since fstat is cut at `size`, as a stream would be."""
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


class ChainedContent:
    """Tries providers in order; the first that does not refuse with code 1 (not found) answers.

    The path is normalised once, here, before any provider sees it.
    """

    def __init__(self, *providers: ContentProvider) -> None:
        self.providers = providers

    def get(self, path: str, peer: tuple[str, int]) -> Content:
        """Content from the first provider that knows `path`; other refusals stop the chain."""
        path = normalise_path(path)
        last = TftpRefusal(ERR_NOT_FOUND, "file not found")
        for provider in self.providers:
            try:
                return provider.get(path, peer)
            except TftpRefusal as refusal:
                if refusal.code != ERR_NOT_FOUND:
                    raise
                last = refusal
        raise last
