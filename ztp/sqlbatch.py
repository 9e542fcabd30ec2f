"""Many rows into SQLite with one statement step, not one per row.

`sqlite3`'s `executemany` releases the GIL around every row's `sqlite3_step` and takes it back after.
On a writer thread that is one GIL hand-over per row, and while the event loop is busy (a DHCP storm)
each of them can wait a whole switch interval: a 200-row lease batch then took seconds to commit, and
every ACK waiting on it with it (the convoy effect). A multi-row `INSERT ... VALUES (...), (...), ...`
binds the whole batch in one C call and steps once, so a transaction is three hand-overs (BEGIN, the
insert, COMMIT) whatever its size.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

_MAX_ROWS = 500  # rows per statement: bounded SQL text and statement-cache entries; few statements per batch


def insert_rows(conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``head`` (``INSERT ... INTO t (a, b, c)``) with every row of ``rows`` (equal widths) as VALUES,
    in statements of up to _MAX_ROWS rows (and the connection's bound-parameter limit), in order: a later row
    replaces an earlier one exactly as with `executemany`."""
    if not rows:
        return
    width = len(rows[0])
    per = max(1, min(_MAX_ROWS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    one = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        params = [value for row in chunk for value in row]
        conn.execute(f"{head} VALUES {', '.join([one] * len(chunk))}", params)
