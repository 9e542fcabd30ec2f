"""ztp serve's log writer (ztp.logwriter): lines formatted and written off the caller's thread, in batches."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address

import pytest

from ztp.logwriter import LogWriter

FMT = "%(asctime)s %(levelname)-7s %(message)s"


@pytest.fixture
def writer() -> tuple[logging.Logger, LogWriter, io.StringIO]:
    stream = io.StringIO()
    handler = LogWriter(stream, FMT, delay=0.001)
    logger = logging.getLogger("test.logwriter")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger, handler, stream
    logger.removeHandler(handler)
    handler.close()


def test_lines_in_order_with_the_stock_format(writer: tuple[logging.Logger, LogWriter, io.StringIO]) -> None:
    logger, handler, stream = writer
    for i in range(200):
        logger.info("%s dhcp DISCOVER -> OFFER %s on %s", f"02:00:00:00:00:{i % 256:02x}", IPv4Address(i), "eth0")
    handler.flush()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    02:00:00:00:00:00 dhcp DISCOVER -> OFFER "
                        r"0\.0\.0\.0 on eth0", lines[0])
    assert lines[199].endswith("OFFER 0.0.0.199 on eth0")
    # The same text as logging.Formatter writes, timestamp included.
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    assert handler.format(record) == logging.Formatter(FMT).format(record)


def test_the_thread_writes_without_a_flush(writer: tuple[logging.Logger, LogWriter, io.StringIO]) -> None:
    logger, handler, stream = writer
    logger.warning("one line")
    for _ in range(2000):
        if stream.getvalue():
            break
        handler._thread.join(0.005)
    assert stream.getvalue().endswith("WARNING one line\n")


def test_mutable_arguments_are_formatted_at_the_call(writer: tuple[logging.Logger, LogWriter, io.StringIO]) -> None:
    logger, handler, stream = writer
    held = ["before"]
    logger.info("value %s", held)
    held[0] = "after"
    handler.flush()
    assert stream.getvalue().endswith("INFO    value ['before']\n")


def test_a_traceback_is_written(writer: tuple[logging.Logger, LogWriter, io.StringIO]) -> None:
    logger, handler, stream = writer
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed %s", "here")
    handler.flush()
    text = stream.getvalue()
    assert "ERROR   failed here\nTraceback" in text and "ValueError: boom" in text


def test_close_writes_what_is_queued() -> None:
    stream = io.StringIO()
    handler = LogWriter(stream, FMT, delay=10.0)  # the thread would wait far longer than the test
    logger = logging.getLogger("test.logwriter.close")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning("last words")
    handler.close()
    logger.removeHandler(handler)
    assert stream.getvalue().endswith("WARNING last words\n")


def test_install_leaves_existing_handlers_alone(caplog: pytest.LogCaptureFixture) -> None:
    from ztp.logwriter import install

    with caplog.at_level(logging.INFO):
        assert install(logging.WARNING, io.StringIO(), FMT) is None  # like basicConfig: a test's handlers stay
        logging.getLogger("test.logwriter.install").warning("seen by caplog")
    assert [r.getMessage() for r in caplog.records] == ["seen by caplog"]


@pytest.fixture
def installed() -> Iterator[tuple[LogWriter, io.StringIO]]:
    """`install` on a root logger without the test runner's handlers (restored afterwards)."""
    import ztp.logwriter as lw
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging._srcfile, logging.logThreads, logging.logProcesses,
             logging.logMultiprocessing, lw._active)
    root.handlers.clear()
    stream = io.StringIO()
    handler = lw.install(logging.INFO, stream, FMT)
    assert handler is not None
    yield handler, stream
    root.removeHandler(handler)
    handler.close()
    (root.handlers[:], level, logging._srcfile, logging.logThreads, logging.logProcesses,
     logging.logMultiprocessing, lw._active) = saved
    root.setLevel(level)


@contextmanager
def alone(handler: LogWriter) -> Iterator[None]:
    """The installed writer as the root logger's only handler: pytest adds its capture handlers to the root
    logger for each test's call, after the fixtures ran, and `fast_log` rightly steps aside for them."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        yield
    finally:
        root.handlers[:] = saved


def test_fast_log_writes_what_logger_log_writes(installed: tuple[LogWriter, io.StringIO]) -> None:
    from ztp.logwriter import fast_log
    handler, stream = installed
    logger = logging.getLogger("ztptest.fast")
    log = fast_log(logger)
    args = ("02:00:00:00:00:07", IPv4Address("10.60.0.7"), " (leaf07)", IPv4Address("10.60.0.1"))
    with alone(handler):
        log(logging.INFO, "%s dhcp DISCOVER -> OFFER %s%s via %s", args)
        assert type(handler._queue[-1]) is tuple  # the fast path: no LogRecord
        logger.info("%s dhcp DISCOVER -> OFFER %s%s via %s", *args)
        assert isinstance(handler._queue[-1], logging.LogRecord)
        log(logging.DEBUG, "%s not shown", ("x",))  # under the root's level
        log(logging.WARNING, "%s shown", ("y",))
    handler.flush()
    lines = [line[24:] for line in stream.getvalue().splitlines()]  # after the timestamp
    assert lines == ["INFO    02:00:00:00:00:07 dhcp DISCOVER -> OFFER 10.60.0.7 (leaf07) via 10.60.0.1"] * 2 \
        + ["WARNING y shown"]


def test_fast_log_goes_through_logging_when_something_else_listens(installed: tuple[LogWriter, io.StringIO]) -> None:
    from ztp.logwriter import fast_log
    handler, stream = installed
    logger = logging.getLogger("ztptest.fast.watched")
    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[method-assign,assignment]
    logger.addHandler(extra)
    try:
        with alone(handler):
            fast_log(logger)(logging.INFO, "%s seen by both", ("a",))
    finally:
        logger.removeHandler(extra)
    handler.flush()
    assert [r.getMessage() for r in seen] == ["a seen by both"]
    assert stream.getvalue().endswith("INFO    a seen by both\n")


@pytest.mark.parametrize("fmt", [FMT, "%(created)f %(msecs)03d %(levelno)s %(name)s [%(levelname)s] %(message)s",
                                 "%(message)s"])
def test_fast_log_lines_read_as_the_stock_formatter_writes_them(fmt: str) -> None:
    from ztp.logwriter import _LineFormat, _record
    line = (1764720000.0419, logging.WARNING, "ztp.dhcp", "%s dhcp %s -> %s for %ss",
            ("02:00:00:00:00:07", "REQUEST", IPv4Address("10.60.0.7"), 3600))
    assert _LineFormat(fmt)(line) == logging.Formatter(fmt).format(_record(line))
    assert "02:00:00:00:00:07 dhcp REQUEST -> 10.60.0.7 for 3600s" in _LineFormat(fmt)(line)


def test_a_batch_reads_line_by_line_as_the_stock_formatter_writes_it() -> None:
    """One generated loop formats a whole batch: its date cache crosses seconds, a level named by
    addLevelName reads as logging names it, and a line that cannot be formatted is handed back without
    stopping the lines after it."""
    from ztp.logwriter import _LineFormat, _record
    logging.addLevelName(27, "NOTICE")
    try:
        lines = [(1764720000.9996, logging.INFO, "ztp.dhcp", "%s a", ("x",)),
                 (1764720001.0004, 27, "ztp.dhcp", "%s b %s", ("y", IPv4Address("10.0.0.1"))),
                 (1764720001.5, logging.INFO, "ztp.dhcp", "%d bad", ("z",)),
                 (1764720061.25, 33, "ztp.tftp", "no arguments", ()),
                 (1764720061.75, logging.ERROR, "ztp", "%s last", ("w",))]
        for fmt in (FMT, "%(msecs)d %(levelname)s %(levelno)s %(name)s: %(message)s"):
            out: list[str] = []
            failed: list[tuple[object, ...]] = []
            _LineFormat(fmt).batch(lines, out, failed.append)
            assert failed == [lines[2]]
            assert out == [logging.Formatter(fmt).format(_record(line)) for line in lines if line is not lines[2]]
        assert "NOTICE" in out[1] and "Level 33" in out[2]
    finally:
        del logging._levelToName[27], logging._nameToLevel["NOTICE"]


def test_a_fast_log_line_that_cannot_be_formatted_is_reported_not_fatal(
        installed: tuple[LogWriter, io.StringIO], capsys: pytest.CaptureFixture[str]) -> None:
    from ztp.logwriter import fast_log
    handler, stream = installed
    log = fast_log(logging.getLogger("ztptest.fast.bad"))
    with alone(handler):
        log(logging.INFO, "%d devices", ("many",))
        log(logging.INFO, "%s after", ("line",))
        assert all(type(item) is tuple for item in handler._queue)
        handler.flush()
    assert stream.getvalue().endswith("INFO    line after\n") and "devices" not in stream.getvalue()
    assert "--- Logging error ---" in capsys.readouterr().err  # what logging does with such a record
