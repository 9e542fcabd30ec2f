"""ztp.sqlbatch: many rows per statement, the same outcome as executemany."""

from __future__ import annotations

import sqlite3

from ztp.sqlbatch import insert_rows, write_rows


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER, note TEXT)")
    return conn


def test_rows_land_in_order_a_later_row_replacing_an_earlier_one() -> None:
    conn = _db()
    rows = [(f"k{i % 700}", i, None if i % 3 else "x") for i in range(1234)]  # 1,234 rows: three statements
    insert_rows(conn, "INSERT OR REPLACE INTO t (k, v, note)", rows)
    ref = _db()
    ref.executemany("INSERT OR REPLACE INTO t (k, v, note) VALUES (?, ?, ?)", rows)
    got = conn.execute("SELECT k, v, note FROM t ORDER BY k").fetchall()
    assert got == ref.execute("SELECT k, v, note FROM t ORDER BY k").fetchall()
    assert len(got) == 700 and dict((k, v) for k, v, _ in got)["k0"] == 700  # the last k0 row (i = 700) won


def test_statements_respect_the_connections_parameter_limit() -> None:
    conn = _db()
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)  # at most three rows of three per statement
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    insert_rows(conn, "INSERT INTO t (k, v, note)", [(str(i), i, "n") for i in range(7)])
    assert conn.execute("SELECT count(*), sum(v) FROM t").fetchone() == (7, 21)
    assert [s.count("),") + 1 for s in statements if s.startswith("INSERT")] == [3, 3, 1]


def test_nothing_to_insert_runs_nothing() -> None:
    conn = _db()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    insert_rows(conn, "INSERT INTO t (k, v, note)", [])
    assert statements == []


def test_write_rows_is_one_statement_when_it_fits_else_one_transaction() -> None:
    conn = _db()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    write_rows(conn, "INSERT INTO t (k, v, note)", [(str(i), i, "n") for i in range(10)])
    assert [s.split()[0] for s in statements] == ["INSERT"]  # autocommit: the statement is the transaction
    statements.clear()
    write_rows(conn, "INSERT INTO t (k, v, note)", [(f"b{i}", i, "n") for i in range(1200)])
    assert [s.split()[0] for s in statements] == ["BEGIN", "INSERT", "INSERT", "INSERT", "COMMIT"]
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1210,)


def test_a_failing_batch_writes_nothing_and_leaves_no_transaction_open() -> None:
    conn = _db()
    rows = [(f"k{i}", i, "n") for i in range(1200)] + [("k0", 0, "again")]  # the last row breaks the key
    try:
        write_rows(conn, "INSERT INTO t (k, v, note)", rows)
    except sqlite3.IntegrityError:
        pass
    else:
        raise AssertionError("the duplicate key was accepted")
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    write_rows(conn, "INSERT INTO t (k, v, note)", [("x", 1, None)])  # the connection still works
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
