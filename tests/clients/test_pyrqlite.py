"""pyrqlite (PyPI), unmodified: the DB-API 2 driver most Python rqlite users have."""

import datetime

import pyrqlite.dbapi2 as dbapi2
import pytest
from cluster import wait_until


def connect(node):
    host, port = node.host_port.rsplit(":", 1)
    return dbapi2.connect(host=host, port=int(port), timeout=30)


def test_create_executemany_and_every_value_type(single):
    conn = connect(single)
    cur = conn.cursor()
    cur.execute("CREATE TABLE py_types (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT,"
                " b BLOB, n)")
    rows = [
        (1, 42, 2.5, "hello", b"\x00\x01\xfe\xff", None),
        (2, -9007199254740993, -0.125, "h\u00e9llo \u2603 'quoted'", b"", 7),
        (3, None, None, None, None, "untyped text"),
    ]
    cur.executemany("INSERT INTO py_types VALUES (?, ?, ?, ?, ?, ?)", rows)
    assert cur.rowcount == 3

    cur.execute("SELECT id, i, r, t, b, n FROM py_types ORDER BY id")
    assert [d[0] for d in cur.description] == ["id", "i", "r", "t", "b", "n"]
    got = [tuple(row) for row in cur.fetchall()]
    # pyrqlite decodes BLOB columns (sent base64-encoded by the server) into bytes, and gives
    # INTEGER as int, REAL as float, TEXT as str, NULL as None, untyped columns as the JSON value.
    assert got == rows
    assert isinstance(got[0][1], int) and isinstance(got[0][2], float)
    assert isinstance(got[0][4], bytes)

    # Expressions have no declared type: the JSON value comes through as is.
    cur.execute("SELECT 1 + 1 AS two, 0.5 * 3 AS x, 'a' || 'b' AS s, NULL AS z")
    assert tuple(cur.fetchone()) == (2, 1.5, "ab", None)


def test_lastrowid_rowcount_update_delete(single):
    conn = connect(single)
    cur = conn.cursor()
    cur.execute("CREATE TABLE py_rows (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)")
    cur.execute("INSERT INTO py_rows (name) VALUES (?)", ("fiona",))
    first = cur.lastrowid
    cur.execute("INSERT INTO py_rows (name) VALUES (?)", ("justin",))
    assert cur.lastrowid == first + 1
    cur.execute("UPDATE py_rows SET name = ? WHERE id >= ?", ("x", first))
    assert cur.rowcount == 2
    cur.execute("DELETE FROM py_rows WHERE id = ?", (first,))
    assert cur.rowcount == 1
    cur.execute("SELECT name FROM py_rows")
    assert [tuple(r) for r in cur.fetchall()] == [("x",)]
    # Named parameters are substituted by the client.
    cur.execute("SELECT count(*) FROM py_rows WHERE name = :name", {"name": "x"})
    assert cur.fetchone()[0] == 1


def test_errors_raise(single):
    cur = connect(single).cursor()
    with pytest.raises(dbapi2.Error, match="syntax error"):
        cur.execute("CREATE TABLE oops (a,,)")
    with pytest.raises(dbapi2.Error, match="no such table"):
        cur.execute("SELECT * FROM py_missing_table")
    with pytest.raises(dbapi2.Error, match="no such table"):
        cur.execute("INSERT INTO py_missing_table VALUES (1)")
    cur.execute("CREATE TABLE py_unique (k TEXT UNIQUE)")
    cur.execute("INSERT INTO py_unique VALUES ('a')")
    with pytest.raises(dbapi2.Error, match="UNIQUE constraint failed"):
        cur.execute("INSERT INTO py_unique VALUES ('a')")
    # The node keeps serving after the errors.
    cur.execute("SELECT k FROM py_unique")
    assert [tuple(r) for r in cur.fetchall()] == [("a",)]


def test_follower_forwards_writes_and_reads(three):
    leader = three.leader()
    follower = three.followers()[0]
    conn = connect(follower)
    cur = conn.cursor()
    cur.execute("CREATE TABLE py_follower (id INTEGER PRIMARY KEY, v TEXT)")
    cur.executemany("INSERT INTO py_follower (v) VALUES (?)", [("a",), ("b",), ("c",)])
    assert cur.rowcount == 3
    # The follower answered for the leader: the connection still points at the follower.
    assert f"{conn.host}:{conn.port}" == follower.host_port
    cur.execute("SELECT v FROM py_follower ORDER BY id", consistency="strong")
    assert [r[0] for r in cur.fetchall()] == ["a", "b", "c"]
    # The rows are on the leader too.
    cur2 = connect(leader).cursor()
    cur2.execute("SELECT count(*) FROM py_follower")
    assert cur2.fetchone()[0] == 3
    # A read at level none is answered by the follower from its own copy, once replicated.
    def follower_has_rows():
        cur.execute("SELECT count(*) FROM py_follower", consistency="none")
        return cur.fetchone()[0] == 3

    wait_until("the follower's own copy to have the rows", follower_has_rows, timeout=10)


def test_declared_types_dates_and_booleans(single):
    """With detect_types, pyrqlite parses the RFC 3339 text that rqlite (go-sqlite3) gives for
    DATE/DATETIME/TIMESTAMP columns, and BOOLEAN columns arrive as JSON booleans."""
    host, port = single.host_port.rsplit(":", 1)
    conn = dbapi2.connect(host=host, port=int(port),
                          detect_types=dbapi2.PARSE_DECLTYPES | dbapi2.PARSE_COLNAMES)
    cur = conn.cursor()
    cur.execute("CREATE TABLE py_dates (d DATE, ts TIMESTAMP, dt DATETIME, ok BOOLEAN)")
    cur.execute("INSERT INTO py_dates VALUES (?, ?, ?, ?)",
                (datetime.date(2024, 1, 2), datetime.datetime(2024, 1, 2, 3, 4, 5, 123456),
                 "2024-01-02 03:04:05", True))
    cur.execute("INSERT INTO py_dates VALUES (?, ?, ?, ?)", (None, None, None, False))
    cur.execute("SELECT d, ts, dt, ok FROM py_dates ORDER BY rowid")
    assert [tuple(r) for r in cur.fetchall()] == [
        (datetime.date(2024, 1, 2), datetime.datetime(2024, 1, 2, 3, 4, 5, 123456),
         "2024-01-02 03:04:05", True),
        (None, None, None, False),
    ]
    # PARSE_COLNAMES: a converter named in the column alias.
    cur.execute('SELECT d AS "d [DATE]", 7 AS "n [INTEGER]" FROM py_dates LIMIT 1')
    assert tuple(cur.fetchone()) == (datetime.date(2024, 1, 2), 7)


def test_queued_writes(single):
    """pyrqlite's queue=True (`/db/execute?transaction&queue`) and wait=True."""
    cur = connect(single).cursor()
    cur.execute("CREATE TABLE py_queue (v INTEGER)")
    cur.execute("INSERT INTO py_queue VALUES (?)", (1,), queue=True)
    cur.execute("INSERT INTO py_queue VALUES (?)", (2,), queue=True, wait=True)
    # wait=True returns once the queue holding both writes has been applied.
    cur.execute("SELECT v FROM py_queue ORDER BY v")
    assert [r[0] for r in cur.fetchall()] == [1, 2]
