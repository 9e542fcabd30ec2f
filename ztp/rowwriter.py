"""A process that writes rows into one SQLite database: group-committed, fsync'd transactions.

The lease store's writer used to be a thread of `ztp serve`. Its Python work (binding a batch, settling
futures) and every GIL hand-over around SQLite's I/O competed with the event loop: in a DHCP storm at 80 %
of the server's rate the loop waited for the GIL behind the writer, replies queued, and the p99 latency
of a DORA grew from a few milliseconds to hundreds (issue 14). Here the writing is another process with a
GIL of its own; the loop only hands it frames through a pipe and reads acknowledgements back.

The protocol (both directions: a 4-byte big-endian length, then a `marshal` body; sans-I/O codec below):
- parent -> writer: a frame is a list of row tuples (str, int, float, None). Everything readable when
  the writer finishes a transaction is the next transaction (group commit: a batch is what was waiting).
- writer -> parent: one acknowledgement per transaction,
  ``(frames, error, transactions, rows, checkpoints)``: ``frames`` is how many frames it covered (in
  order), ``error`` None when they are on stable storage, else ``(sqlite3 exception name, message)``;
  the counters are totals.
End of input (the parent closed the pipe, or exited) ends the writer once it has written what it read;
SIGINT and SIGTERM do not (they reach the whole process group or unit when `ztp serve` is stopped).

Run as ``python -m ztp.rowwriter DATABASE INSERT_HEAD BUSY_TIMEOUT CHECKPOINT_EVERY [USER]``; it imports
nothing of ztp but this module, `ztp.sqlbatch` and `ztp.privilege`, so it starts in a few tens of
milliseconds. `ztp serve` starts it as root, before its own switch to `user:`; with USER it opens the
database, gives the state directory to USER and becomes USER with no capability at all (it may not be
able to start as USER: a Python under root's home is not executable by USER).
"""

from __future__ import annotations

import marshal
import os
import signal
import sqlite3
import struct
import sys
import threading
from pathlib import Path
from typing import Any

from ztp.sqlbatch import CACHED_STATEMENTS, write_rows

_LENGTH = struct.Struct("!I")
_READ = 1 << 20


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


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """The writer's connection: autocommit (write_rows makes the transactions), WAL, synchronous=FULL, no
    automatic checkpoints (a commit never copies the WAL into the database: the checkpointer does)."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False,
                           cached_statements=CACHED_STATEMENTS)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


class _Checkpointer(threading.Thread):
    """PASSIVE checkpoints every `every` seconds on a connection of its own: it never blocks the writer."""

    def __init__(self, path: str, every: float) -> None:
        super().__init__(name="checkpoint", daemon=True)
        self.path, self.every = path, every
        self.stop = threading.Event()
        self.count = 0

    def run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            while not self.stop.wait(self.every):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.count += 1
                except sqlite3.Error as exc:  # commits go on; the WAL only grows until the next one works
                    print(f"ztp row writer: {self.path}: WAL checkpoint failed: {exc}", file=sys.stderr, flush=True)
        finally:
            conn.close()


def serve(read_fd: int, write_fd: int, path: str, head: str, busy_timeout: float, checkpoint_every: float,
          user: str = "") -> None:
    """Write every frame read from `read_fd`, acknowledging each transaction on `write_fd`, until end of input
    (as `user` once the database is open, when given)."""
    conn = connect(path, busy_timeout)
    if user:
        from ztp.privilege import drop_privileges

        drop_privileges(user, state_dir=Path(path).parent, keep=())
    checkpointer = _Checkpointer(path, checkpoint_every)
    checkpointer.start()
    reader = FrameReader()
    transactions = rows_written = 0
    try:
        while True:
            data = os.read(read_fd, _READ)
            if not data:
                break
            frames = reader.feed(data)
            while reader.partial:  # a frame is written whole: the rest is on its way
                more = os.read(read_fd, _READ)
                if not more:
                    break
                frames += reader.feed(more)
            if not frames:
                continue
            rows = [row for f in frames for row in f]
            error: tuple[str, str] | None = None
            try:
                write_rows(conn, head, rows)
                transactions += 1
                rows_written += len(rows)
            except sqlite3.Error as exc:
                error = (type(exc).__name__, str(exc))
            ack = frame((len(frames), error, transactions, rows_written, checkpointer.count))
            view = memoryview(ack)
            while view:
                view = view[os.write(write_fd, view):]
    finally:
        checkpointer.stop.set()
        checkpointer.join(timeout=10)
        conn.close()


def ignore_stop_signals() -> None:
    """Ignore SIGINT and SIGTERM. Ctrl-C in a terminal and systemd's stop (SIGTERM to every process of the
    unit) reach this process too: it ends at end of input instead, once `ztp serve` has closed the pipe
    after its last commit. Also `ztp serve`'s `preexec_fn` for it: ignored signals stay ignored across exec,
    so a stop that comes while the writer is still starting does not kill it either."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main(argv: list[str]) -> int:
    ignore_stop_signals()
    path, head, busy_timeout, checkpoint_every, *user = argv
    try:
        serve(0, 1, path, head, float(busy_timeout), float(checkpoint_every), *user)
    except (sqlite3.Error, OSError) as exc:
        print(f"ztp row writer: {path}: {exc}", file=sys.stderr, flush=True)
        return 1
    except BrokenPipeError:
        return 0  # the parent is gone: what it sent is written
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
