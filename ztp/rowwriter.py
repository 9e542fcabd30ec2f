"""A process that makes rows durable for one SQLite database: group-committed, fdatasync'd transactions in
a commit log (`ztp.commitlog`), written into the database in the background.

The lease store's writer used to be a thread of `ztp serve`. Its Python work (binding a batch, settling
futures) and every GIL hand-over around SQLite's I/O competed with the event loop: in a DHCP storm at 80 %
of the server's rate the loop waited for the GIL behind the writer, replies queued, and the p99 latency
of a DORA grew from a few milliseconds to hundreds (issue 14). Here the writing is another process with a
GIL of its own; the loop only hands it frames through a pipe and reads acknowledgements back. A transaction
is one record appended to the commit log and fdatasync'd; the applier thread writes the rows into SQLite
every APPLY_EVERY seconds, in one transaction, and checkpoints the WAL.

The protocol (both directions: frames of `ztp.frames`):
- parent -> writer: a frame is a list of row tuples (str, int, float, None). Everything readable when
  the writer finishes a transaction is the next transaction (group commit: a batch is what was waiting).
- writer -> parent: one acknowledgement per transaction,
  ``(frames, error, transactions, rows, applied)``: ``frames`` is how many frames it covered (in order),
  ``error`` None when they are on stable storage, else why not (the writer then exits: after a failed
  fdatasync nothing more is appended to that file); the counters are totals (``applied``: how many times
  the applier wrote into the database).
End of input (the parent closed the pipe, or exited) ends the writer once it has written what it read into
the database and deleted the log; SIGINT and SIGTERM do not (they reach the whole process group or unit when
`ztp serve` is stopped).

Run as ``python -m ztp.rowwriter DATABASE INSERT_HEAD BUSY_TIMEOUT APPLY_EVERY SEGMENT_BYTES [USER]``; it
imports nothing of ztp but this module, `ztp.frames`, `ztp.commitlog`, `ztp.sqlbatch` and `ztp.privilege`,
so it starts in a few tens of milliseconds. It first writes what a dead predecessor left in the log into the
database. `ztp serve` starts it as root, before its own switch to `user:`; with USER it opens the database,
gives the state directory to USER and becomes USER with no capability at all (it may not be able to start as
USER: a Python under root's home is not executable by USER).
"""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ztp.commitlog import (
    HEADER_BYTES,
    CommitLogError,
    apply,
    create,
    lock_path,
    record,
    replay,
    segment_path,
    segments,
    write_at,
)
from ztp.frames import FrameReader, frame
from ztp.sqlbatch import CACHED_STATEMENTS

_READ = 1 << 20


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """The writer's connection: autocommit (`ztp.commitlog.apply` makes the transactions), WAL,
    synchronous=FULL, no automatic checkpoints (the applier checkpoints after it wrote)."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False,
                           cached_statements=CACHED_STATEMENTS)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


class Applier(threading.Thread):
    """Writes the logged rows into the database every `every` seconds (one transaction, which also records
    the last segment it completes), then deletes those segments and runs a PASSIVE WAL checkpoint; prepares
    the next segment before the writer needs it. A failed write (the database locked by another process for
    longer than the busy timeout, a full disk) keeps its rows for the next round: they are in the log."""

    def __init__(self, conn: sqlite3.Connection, head: str, db: Path, db_id: str, applied: int, every: float,
                 segment_bytes: int) -> None:
        super().__init__(name="apply", daemon=True)
        self.conn, self.head, self.db, self.db_id = conn, head, db, db_id
        self.every, self.segment_bytes = every, segment_bytes
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.pending: list[Any] = []  # rows logged, not yet in the database (commit order)
        self.complete = applied  # the last segment whose rows are all in `pending` or the database
        self.applied = applied  # the last segment the database holds in full
        self.spare: tuple[int, int] | None = None  # (number, descriptor) of the next segment, created
        self.wanted: int | None = None  # the number of the next segment to create
        self.count = 0
        self.failed = 0  # rounds failed in a row

    def add(self, rows: list[Any], complete: int | None = None) -> None:
        """Rows just logged; `complete`: a segment finished (every row of it added)."""
        with self.lock:
            self.pending += rows
            if complete is not None:
                self.complete = complete

    def want(self, seq: int) -> None:
        """Create segment `seq` ahead of its use."""
        with self.lock:
            self.wanted = seq
        self.wake.set()

    def take(self, seq: int) -> int | None:
        """The descriptor of segment `seq` when it is ready."""
        with self.lock:
            if self.spare is None or self.spare[0] != seq:
                return None
            fd = self.spare[1]
            self.spare = None
            return fd

    def run(self) -> None:
        due = time.monotonic() + self.every
        while not self.stopping:
            self.wake.wait(max(0.0, due - time.monotonic()))
            self.wake.clear()
            self._prepare()
            if time.monotonic() >= due and not self.stopping:
                self.apply()
                due = time.monotonic() + self.every

    def _prepare(self) -> None:
        with self.lock:
            seq, self.wanted = self.wanted, None
        if seq is None:
            return
        try:
            fd = create(self.db, seq, self.db_id, self.segment_bytes)
        except OSError as exc:  # the writer tries again itself when it needs the segment
            print(f"ztp row writer: {segment_path(self.db, seq)}: cannot create: {exc}", file=sys.stderr, flush=True)
            return
        with self.lock:
            self.spare = (seq, fd)

    def apply(self) -> bool:
        """Write what is pending; whether the database now holds it."""
        with self.lock:
            rows, self.pending = self.pending, []
            upto = self.complete
        if not rows and upto == self.applied:
            return True
        try:
            apply(self.conn, self.head, rows, upto)
        except sqlite3.Error as exc:
            with self.lock:
                self.pending[:0] = rows
            if not self.failed:
                print(f"ztp row writer: {self.db}: writing the logged rows into the database failed (they stay in "
                      f"the commit log; trying again every {self.every} s): {exc}", file=sys.stderr, flush=True)
            self.failed += 1
            return False
        if self.failed:
            print(f"ztp row writer: {self.db}: the logged rows are in the database again, after {self.failed} "
                  "failed rounds", file=sys.stderr, flush=True)
            self.failed = 0
        try:
            for seq, path in segments(self.db):
                if seq <= upto:
                    path.unlink(missing_ok=True)
        except OSError as exc:  # harmless: the database's position says they are written in
            print(f"ztp row writer: {self.db}: cannot delete a segment written in: {exc}", file=sys.stderr, flush=True)
        self.applied = upto
        self.count += 1
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # commits go on; the WAL only grows until the next one works
            print(f"ztp row writer: {self.db}: WAL checkpoint failed: {exc}", file=sys.stderr, flush=True)
        return True

    def finish(self, last: int) -> None:
        """No more appends (`last` is the final segment): stop the thread, write everything into the database
        and delete the log (kept, for the next writer, if the database cannot be written; the segment made
        ahead holds nothing and goes either way)."""
        self.stopping = True
        self.wake.set()
        self.join()
        spare, self.spare = self.spare, None
        if spare is not None:
            os.close(spare[1])
            segment_path(self.db, spare[0]).unlink(missing_ok=True)
        self.add([], complete=last)
        self.apply()


class Log:
    """The writer's end of the commit log: the current segment, appends, and the step to the next one."""

    def __init__(self, db: Path, db_id: str, seq: int, applier: Applier) -> None:
        self.db, self.db_id, self.applier = db, db_id, applier
        self.seq = seq
        self.fd = create(db, seq, db_id, applier.segment_bytes)
        self.offset = HEADER_BYTES
        applier.want(seq + 1)

    def append(self, body: bytes, rows: list[Any]) -> None:
        """Log one transaction: on stable storage when this returns."""
        data = record(body)
        complete = None
        if self.offset + len(data) > self.applier.segment_bytes and self.offset > HEADER_BYTES:
            complete = self._next()
        write_at(self.fd, data, self.offset)
        self.offset += len(data)
        os.fdatasync(self.fd)
        self.applier.add(rows, complete)

    def _next(self) -> int:
        seq = self.seq + 1
        fd = self.applier.take(seq)
        if fd is None:
            fd = create(self.db, seq, self.db_id, self.applier.segment_bytes)
        os.close(self.fd)
        done, self.seq, self.fd, self.offset = self.seq, seq, fd, HEADER_BYTES
        self.applier.want(seq + 1)
        return done

    def close(self) -> None:
        os.close(self.fd)


def serve(read_fd: int, write_fd: int, path: str, head: str, busy_timeout: float, apply_every: float,
          segment_bytes: int, user: str = "") -> None:
    """Make every frame read from `read_fd` durable, acknowledging each transaction on `write_fd`, until end of
    input (as `user` once the database is open, when given)."""
    db = Path(path)
    held = _hold(db)
    conn = connect(path, busy_timeout)
    db_id, last = replay(conn, db, head)  # what a writer that died left in the log
    if user:
        from ztp.privilege import drop_privileges

        drop_privileges(user, state_dir=db.parent, keep=())
    sys.setswitchinterval(0.0005)  # the applier's Python work never holds up an acknowledgement for long
    applier = Applier(conn, head, db, db_id, last, apply_every, segment_bytes)
    log = Log(db, db_id, last + 1, applier)
    applier.start()
    reader = FrameReader()
    transactions = rows_written = 0
    try:
        while True:
            data = os.read(read_fd, _READ)
            if not data:
                break
            chunks = [data]
            frames = reader.feed(data)
            while reader.partial:  # a frame is written whole: the rest is on its way
                more = os.read(read_fd, _READ)
                if not more:
                    break
                chunks.append(more)
                frames += reader.feed(more)
            if not frames:
                continue
            rows = [row for f in frames for row in f]
            body = b"".join(chunks)
            if reader.partial:  # the parent died inside a frame: log the whole ones only
                body = body[:len(body) - reader.buffered]
            try:
                log.append(body, rows)
            except OSError as exc:
                _acknowledge(write_fd, (len(frames), f"commit log {segment_path(db, log.seq)}: {exc}",
                                        transactions, rows_written, applier.count))
                raise
            transactions += 1
            rows_written += len(rows)
            _acknowledge(write_fd, (len(frames), None, transactions, rows_written, applier.count))
    finally:
        log.close()
        applier.finish(log.seq)
        conn.close()
        os.close(held)


def _hold(db: Path) -> int:
    """Lock the database's commit log for this writer (released when it exits, however it exits): a second
    writer would replay and delete the first one's segments and number its own over them."""
    path = lock_path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(f"another lease writer holds {path}: is a second ztp serve using this state_dir?") from None
    return fd


def _acknowledge(write_fd: int, ack: tuple[Any, ...]) -> None:
    view = memoryview(frame(ack))
    while view:
        view = view[os.write(write_fd, view):]


def ignore_stop_signals() -> None:
    """Ignore SIGINT and SIGTERM. Ctrl-C in a terminal and systemd's stop (SIGTERM to every process of the
    unit) reach this process too: it ends at end of input instead, once `ztp serve` has closed the pipe
    after its last commit. Also `ztp serve`'s `preexec_fn` for it: ignored signals stay ignored across exec,
    so a stop that comes while the writer is still starting does not kill it either."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main(argv: list[str]) -> int:
    ignore_stop_signals()
    path, head, busy_timeout, apply_every, segment_bytes, *user = argv
    try:
        serve(0, 1, path, head, float(busy_timeout), float(apply_every), int(segment_bytes), *user)
    except (sqlite3.Error, OSError, CommitLogError) as exc:
        print(f"ztp row writer: {path}: {exc}", file=sys.stderr, flush=True)
        return 1
    except BrokenPipeError:
        return 0  # the parent is gone: what it sent is written
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
