"""Many rows into SQLite with one statement step, not one per row.

`sqlite3`'s `executemany` releases the GIL around every row's `sqlite3_step` and takes it back after.
On a writer thread that is one GIL hand-over per row, and while the event loop is busy (a DHCP storm)
each of them can wait a whole switch interval: a 200-row lease batch then took seconds to commit, and
every ACK waiting on it with it (the convoy effect). A multi-row `INSERT ... VALUES (...), (...), ...`
binds the whole batch in one C call and steps once; `write_rows` sends a batch that fits one statement
as that statement alone (in autocommit mode a statement is its own transaction, atomic and synced when
it is done), so a lease batch is one GIL hand-over, not three (BEGIN, the insert, COMMIT) or one per row.
Connections keep enough prepared statements for every batch size (`CACHED_STATEMENTS`): preparing also
gives the GIL away.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_MAX_ROWS = 500  # rows per statement: bounded SQL text and statement-cache entries; few statements per batch
CACHED_STATEMENTS = 2 * _MAX_ROWS + 128  # sqlite3.connect(cached_statements=...): every batch size stays prepared


def _per_statement(conn: sqlite3.Connection, width: int) -> int:
    return max(1, min(_MAX_ROWS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))


def write_rows(conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]]) -> None:
    """`insert_rows` as one transaction on an autocommit connection (``isolation_level=None``): one statement
    when the rows fit in one, else BEGIN IMMEDIATE ... COMMIT (rolled back if a statement fails)."""
    if not rows:
        return
    if len(rows) <= _per_statement(conn, len(rows[0])):
        insert_rows(conn, head, rows)
        return
    with immediate(conn):
        insert_rows(conn, head, rows)


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT around the block, on an autocommit connection; rolled back if it fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the statement's own error is the one to report
        raise


def insert_rows(conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``head`` (``INSERT ... INTO t (a, b, c)``) with every row of ``rows`` (equal widths) as VALUES,
    in statements of up to _MAX_ROWS rows (and the connection's bound-parameter limit), in order: a later row
    replaces an earlier one exactly as with `executemany`."""
    if not rows:
        return
    width = len(rows[0])
    per = _per_statement(conn, width)
    one = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        params = [value for row in chunk for value in row]
        conn.execute(f"{head} VALUES {', '.join([one] * len(chunk))}", params)
