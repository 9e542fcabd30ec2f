"""`ztp serve`'s log output off the packet paths: records are queued as they are, a writer thread formats
them and writes each batch with one `write` (issue 14, item 3).

With the default `log_level: info` every DORA logs two lines (the per-device story). Written the standard
way, each line costs the DHCP shell a LogRecord with the caller's frame looked up, a strftime, the
formatting and a locked `write` + `flush` of its own; here the shell pays the record and a deque append,
and the rest happens on `LogWriter`'s thread, up to `delay` seconds later, many lines per system call.

A record whose arguments are not plain values (str, numbers, addresses) is formatted at once, so a mutable
argument changed after the call cannot change what the line says (what `logging.handlers.QueueHandler`
does for every record). `flush()` (called by `logging.shutdown` at exit) writes what is queued; a process
killed with SIGKILL loses at most the last `delay` seconds of lines.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import TextIO

_PLAIN = frozenset({str, int, float, bool, IPv4Address, IPv4Network, type(None)})
# What a record made by `fast_log` carries; a format naming anything else gets standard records.
_FAST_FIELDS = frozenset({"asctime", "levelname", "levelno", "name", "message", "created", "msecs"})
_active: LogWriter | None = None  # the LogWriter `install` put on the root logger


class LogWriter(logging.Handler):
    """A handler that queues records unformatted and writes them in batches from its own thread."""

    def __init__(self, stream: TextIO, fmt: str, *, delay: float = 0.05) -> None:
        super().__init__()
        self.stream = stream
        self.setFormatter(_SecondCachedFormatter(fmt))
        self.delay = delay  # how long a batch gathers after its first line (bounded lateness)
        self._queue: collections.deque[logging.LogRecord] = collections.deque()
        self._wake = threading.Event()
        self._closed = False
        self._stop = threading.Event()  # ends the gathering pause at close
        self._write_lock = threading.Lock()  # the thread and flush() never interleave batches
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """Queue `record` (no handler lock: a deque append is atomic)."""
        rv = self.filter(record)
        if rv:
            self.emit(record)
        return bool(rv)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue `record`; format it now only when its arguments could change before the thread gets to it."""
        args = record.args
        if record.exc_info or (args and not (type(args) is tuple and all(type(a) in _PLAIN for a in args))):
            try:
                record.msg = record.getMessage()
                if record.exc_info:  # the traceback's frames would be kept alive until written
                    record.exc_text = self.formatter.formatException(record.exc_info) if self.formatter else None
                    record.exc_info = None
            except Exception:
                self.handleError(record)
                return
            record.args = None
        self._queue.append(record)
        if not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            if self._closed:
                break
            self._stop.wait(self.delay)  # let a storm's lines gather into one write
            self._wake.clear()
            self._write_queued()

    def _write_queued(self) -> None:
        with self._write_lock:
            queue = self._queue
            if not queue:
                return
            lines = []
            fmt = self.format
            while queue:
                record = queue.popleft()
                try:
                    lines.append(fmt(record))
                except Exception:
                    self.handleError(record)
            if not lines:
                return
            lines.append("")
            try:
                self.stream.write("\n".join(lines))
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed (the process is going away): nothing to tell
                pass

    def flush(self) -> None:
        """Write every queued line now."""
        self._write_queued()

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._write_queued()
        super().close()


class _SecondCachedFormatter(logging.Formatter):
    """`logging.Formatter` that builds the date and time part of `%(asctime)s` once per second."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """`YYYY-MM-DD HH:MM:SS,mmm` in local time, as the stock formatter writes it."""
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._text = time.strftime(self.default_time_format, self.converter(record.created))
        return f"{self._text},{int(record.msecs):03d}"


def install(level: int, stream: TextIO, fmt: str) -> LogWriter | None:
    """Route every record at `level` and above through one `LogWriter` on the root logger, and let records
    skip what no ztp format shows (the caller's file and line, thread and process names). Like
    `logging.basicConfig`, it only sets the level when the root logger has handlers already (a test's);
    the handler, or None then."""
    root = logging.getLogger()
    root.setLevel(level)
    if root.handlers:
        return None
    # Documented optimisations (Logging HOWTO, "Optimization"): none of these appear in ztp's formats.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LogWriter(stream, fmt)
    root.addHandler(handler)
    global _active
    _active = handler if set(re.findall(r"%\((\w+)\)", fmt)) <= _FAST_FIELDS else None
    return handler


Log = Callable[[int, str, tuple[object, ...]], None]


def fast_log(logger: logging.Logger) -> Log:
    """``log(level, msg, args)``: what ``logger.log(level, msg, *args)`` does, for the per-packet lines.

    When `install` put the only handler on the path (no filter, no other handler, nothing disabled), the
    record goes straight onto its queue: a LogRecord with just the fields ztp's format shows, without the
    logging module's record factory and handler walk (about a microsecond instead of four to seven a line:
    two lines per DORA at the default level, issue 14). Otherwise through `logger.log`, unchanged.
    """
    def log(level: int, msg: str, args: tuple[object, ...]) -> None:
        writer = _active
        if writer is None or level < writer.level or not _plain_path(logger, writer) \
                or not logger.isEnabledFor(level):
            logger.log(level, msg, *args)
            return
        now = time.time()
        record = _new_record(logging.LogRecord)
        record.__dict__.update(name=logger.name, msg=msg, args=args, levelno=level,
                               levelname=logging.getLevelName(level), created=now,
                               msecs=(now - int(now)) * 1000, exc_info=None, exc_text=None, stack_info=None)
        writer.emit(record)

    return log


_new_record = logging.LogRecord.__new__


def _plain_path(logger: logging.Logger, writer: LogWriter) -> bool:
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters or node.disabled:
            return False
        if node.handlers:
            return node.parent is None and len(node.handlers) == 1 and node.handlers[0] is writer \
                and not writer.filters
        if not node.propagate:
            return False
        node = node.parent
    return False
