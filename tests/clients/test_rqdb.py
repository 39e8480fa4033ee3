"""rqdb (PyPI), unmodified: execute/query, backup in both forms, restore into a fresh node."""

import asyncio
import io
import re
import sqlite3
import tempfile

import requests
import rqdb

BASE64_BLOB = b"\x00raft\xfflite"


def connect(*nodes):
    return rqdb.connect([n.host_port for n in nodes], log=False)


def test_execute_and_query(three):
    # Given only a follower, rqdb sends writes and strong reads with `redirect` and follows
    # the 301 to the leader.
    cur = connect(three.followers()[0]).cursor()
    cur.execute("CREATE TABLE rq_items (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    r = cur.execute("INSERT INTO rq_items (name, price) VALUES (?, ?)", ("apple", 1.25))
    assert r.last_insert_id == 1 and r.rows_affected == 1
    bulk = cur.executemany2(
        ["INSERT INTO rq_items (name, price) VALUES (?, ?)"] * 2,
        [("pear", 2.5), ("plum", None)],
    )
    assert [item.last_insert_id for item in bulk.items] == [2, 3]

    r = cur.execute("SELECT id, name, price FROM rq_items ORDER BY id")
    assert r.results == [[1, "apple", 1.25], [2, "pear", 2.5], [3, "plum", None]]
    assert cur.fetchone() == [1, "apple", 1.25]

    r = cur.execute("SELECT name FROM rq_items WHERE price > ?", (2,), read_consistency="strong")
    assert r.results == [["pear"]]

    # /db/request: a write and a read in one call.
    unified = cur.executeunified3((
        ("INSERT INTO rq_items (name, price) VALUES (?, ?)", ("fig", 0.5)),
        ("SELECT count(*) FROM rq_items", ()),
    ))
    assert unified.items[0].last_insert_id == 4 and unified.items[1].results == [[4]]
    cur.execute("DELETE FROM rq_items WHERE name = 'fig'")

    plan = cur.explain("SELECT name FROM rq_items WHERE id = ?", (1,), out="str")
    assert "SEARCH rq_items USING INTEGER PRIMARY KEY" in plan

    r = cur.execute("UPDATE rq_items SET price = price * 2 WHERE price IS NOT NULL")
    assert r.rows_affected == 2

    r = cur.execute("SELECT * FROM rq_missing", raise_on_error=False)
    assert r.error is not None and "no such table" in r.error
    try:
        cur.execute("SELECT * FROM rq_missing")
    except rqdb.errors.DBError as e:
        assert "no such table" in str(e)
    else:
        raise AssertionError("a failing query must raise")


def fill_backup_table(three):
    cur = connect(three.leader()).cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS rq_backup (id INTEGER PRIMARY KEY, t TEXT, b BLOB)")
    cur.execute("DELETE FROM rq_backup")
    cur.executemany2(
        ["INSERT INTO rq_backup (id, t, b) VALUES (?, ?, ?)"] * 3,
        [(1, "one", None), (2, "it's two", None), (3, "three", None)],
    )
    # rqdb has no blob parameters: write the blob as a literal.
    cur.execute("UPDATE rq_backup SET b = X'%s' WHERE id = 3" % BASE64_BLOB.hex())


def expected_rows():
    return [(1, "one", None), (2, "it's two", None), (3, "three", BASE64_BLOB)]


def test_backup_finds_leader_through_follower_redirect(three):
    leader = three.leader()
    follower = three.followers()[0]
    # Given only a follower, rqdb asks it with `?redirect` and follows the Location.
    conn = connect(follower)
    host, port = leader.host_port.rsplit(":", 1)
    assert conn.discover_leader() == (host, int(port))


def test_binary_backup_and_restore(three, fresh_node):
    fill_backup_table(three)
    conn = connect(three.followers()[0])
    out = io.BytesIO()
    conn.backup(out, raw=False)
    data = out.getvalue()
    assert data.startswith(b"SQLite format 3\x00")

    with tempfile.NamedTemporaryFile(suffix=".db") as f:
        f.write(data)
        f.flush()
        db = sqlite3.connect(f.name)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT id, t, b FROM rq_backup ORDER BY id").fetchall() \
            == expected_rows()
        db.close()

    node = fresh_node()
    resp = requests.post(node.url + "/db/load", data=data,
                         headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert resp.status_code == 200, resp.text
    check_restored(node)


def test_sql_backup_and_restore(three, fresh_node):
    fill_backup_table(three)
    conn = connect(three.followers()[-1])
    out = io.BytesIO()
    conn.backup(out, raw=True)
    text = out.getvalue().decode("utf-8")
    assert text.startswith("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n")
    assert "CREATE TABLE rq_backup" in text
    # raftlite writes what `sqlite3 .dump` writes (names quoted only when needed); rqlite
    # always quotes the table name. Either loads the same.
    assert re.search(r"""^INSERT INTO "?rq_backup"? VALUES\(2,'it''s two',NULL\);$""", text, re.M)
    assert text.rstrip().endswith("COMMIT;")

    node = fresh_node()
    resp = requests.post(node.url + "/db/load", data=text.encode("utf-8"),
                         headers={"Content-Type": "text/plain"}, timeout=30)
    assert resp.status_code == 200, resp.text
    check_restored(node)


def check_restored(node):
    cur = connect(node).cursor()
    r = cur.execute("SELECT id, t, hex(b) FROM rq_backup ORDER BY id")
    assert r.results == [
        [i, t, b.hex().upper() if b is not None else ""] for i, t, b in expected_rows()
    ]
    # The restored node takes writes.
    cur.execute("INSERT INTO rq_backup (id, t) VALUES (4, 'four')")
    assert cur.execute("SELECT count(*) FROM rq_backup").results == [[4]]


def test_async_connection(three):
    """rqdb's asyncio connection (aiohttp): execute, query and an SQL backup via a follower."""

    class Sink:
        def __init__(self):
            self.data = b""

        async def write(self, chunk):
            self.data += chunk

    async def scenario():
        async with rqdb.connect_async([three.followers()[0].host_port], log=False) as conn:
            cur = conn.cursor()
            await cur.execute("CREATE TABLE rq_async (id INTEGER PRIMARY KEY, v TEXT)")
            r = await cur.execute("INSERT INTO rq_async (v) VALUES (?)", ("x",))
            assert r.last_insert_id == 1
            r = await cur.execute("SELECT v FROM rq_async", read_consistency="strong")
            assert r.results == [["x"]]
            sink = Sink()
            await conn.backup(sink, raw=True)
            assert "CREATE TABLE rq_async" in sink.data.decode()

    asyncio.run(scenario())
