//! The deterministic apply connection: a settable clock (VFS shim) and seeded random functions,
//! reaching defaults, triggers and views under `trusted_schema=OFF`.

use raftlite_ffi::{ApplyInputs, Connection, ErrorCode, OpenFlags, Value};

fn open(path: &std::path::Path) -> Connection {
    let c =
        Connection::open_deterministic(path, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
    c.set_trusted_schema(false).unwrap();
    c
}

fn rows(c: &Connection, sql: &str) -> Vec<Vec<Value>> {
    let mut stmt = c.prepare(sql).unwrap();
    let n = stmt.column_count();
    let mut out = Vec::new();
    while stmt.step().unwrap().is_row() {
        out.push((0..n).map(|i| stmt.column_owned(i)).collect());
    }
    out
}

const INPUTS: ApplyInputs = ApplyInputs {
    // 2021-03-04 05:06:07.891 UTC
    unix_millis: 1_614_834_367_891,
    seed: 42,
};

#[test]
fn every_now_form_reads_the_set_clock() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir.path().join("a.db"));
    c.set_apply_inputs(Some(INPUTS)).unwrap();
    let got = rows(
        &c,
        "SELECT datetime('now'), date('now'), time('now'), julianday('now'), \
         unixepoch('now'), unixepoch('now','subsec'), strftime('%s','now'), \
         CURRENT_TIMESTAMP, CURRENT_DATE, CURRENT_TIME, timediff('now','2021-03-04 05:06:07.891')",
    );
    assert_eq!(
        got[0],
        vec![
            Value::Text("2021-03-04 05:06:07".into()),
            Value::Text("2021-03-04".into()),
            Value::Text("05:06:07".into()),
            Value::Real(2_459_277.712_591_331),
            Value::Integer(1_614_834_367),
            Value::Real(1_614_834_367.891),
            Value::Text("1614834367".into()),
            Value::Text("2021-03-04 05:06:07".into()),
            Value::Text("2021-03-04".into()),
            Value::Text("05:06:07".into()),
            Value::Text("+0000-00-00 00:00:00.000".into()),
        ]
    );
    // Cleared: the real clock again.
    c.set_apply_inputs(None).unwrap();
    let year = c
        .query_text("SELECT strftime('%Y','now')")
        .unwrap()
        .unwrap();
    assert!(year.as_str() >= "2025", "{year}");
}

#[test]
fn same_inputs_same_values_in_defaults_triggers_and_views() {
    let dir = tempfile::tempdir().unwrap();
    let schema = "CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, r INTEGER, b BLOB, \
                  ts TEXT DEFAULT CURRENT_TIMESTAMP, d TEXT DEFAULT (datetime('now','+1 day')));\
                  CREATE TABLE log(x, y, at);\
                  CREATE TRIGGER tr AFTER INSERT ON t BEGIN \
                    INSERT INTO log VALUES(random(), randomblob(4), datetime('now')); END;\
                  CREATE VIEW v AS SELECT random() AS r, datetime('now') AS n;";
    let run = |name: &str| {
        let c = open(&dir.path().join(name));
        c.execute_batch(schema).unwrap();
        c.set_apply_inputs(Some(INPUTS)).unwrap();
        c.execute_batch(
            "INSERT INTO t(r, b) VALUES(random(), randomblob(8)), (random(), randomblob(3));\
             INSERT INTO log SELECT * FROM v, (SELECT 1);\
             UPDATE t SET r = random();",
        )
        .unwrap();
        (
            rows(&c, "SELECT * FROM t ORDER BY id"),
            rows(&c, "SELECT * FROM log ORDER BY rowid"),
        )
    };
    let (t1, l1) = run("a.db");
    let (t2, l2) = run("b.db");
    assert_eq!(t1, t2);
    assert_eq!(l1, l2);
    assert_eq!(t1.len(), 2);
    assert_eq!(t1[0][3], Value::Text("2021-03-04 05:06:07".into()));
    assert_eq!(t1[0][4], Value::Text("2021-03-05 05:06:07".into()));
    assert_ne!(t1[0][1], t1[1][1], "random() differs per row");
    assert!(matches!(&t1[1][2], Value::Blob(b) if b.len() == 3));
    assert_eq!(l1.len(), 3);
    assert_ne!(l1[0][0], l1[1][0]);
}

#[test]
fn update_over_many_rows_gives_distinct_values_and_another_seed_another_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir.path().join("a.db"));
    c.execute_batch("CREATE TABLE t(x)").unwrap();
    c.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1000) \
         INSERT INTO t SELECT i FROM n",
    )
    .unwrap();
    c.set_apply_inputs(Some(INPUTS)).unwrap();
    c.execute_batch("UPDATE t SET x = random()").unwrap();
    assert_eq!(
        c.query_i64("SELECT count(DISTINCT x) FROM t").unwrap(),
        Some(1000)
    );
    assert!(c.apply_random_draws() >= 1000);
    let first = rows(&c, "SELECT x FROM t ORDER BY rowid");
    c.set_apply_inputs(Some(INPUTS)).unwrap();
    c.execute_batch("UPDATE t SET x = random()").unwrap();
    assert_eq!(
        rows(&c, "SELECT x FROM t ORDER BY rowid"),
        first,
        "same seed, same sequence"
    );
    c.set_apply_inputs(Some(ApplyInputs { seed: 43, ..INPUTS }))
        .unwrap();
    c.execute_batch("UPDATE t SET x = random()").unwrap();
    assert_ne!(rows(&c, "SELECT x FROM t ORDER BY rowid"), first);
    assert_eq!(
        c.query_i64("SELECT count(*) FROM t WHERE x = -9223372036854775808")
            .unwrap(),
        Some(0)
    );
}

#[test]
fn randomblob_keeps_sqlite_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir.path().join("a.db"));
    c.set_apply_inputs(Some(INPUTS)).unwrap();
    assert_eq!(
        rows(&c, "SELECT length(randomblob(0)), length(randomblob(-5)), length(randomblob('x')), length(randomblob(100)), typeof(randomblob(2))"),
        vec![vec![
            Value::Integer(1),
            Value::Integer(1),
            Value::Integer(1),
            Value::Integer(100),
            Value::Text("blob".into())
        ]]
    );
    let err = c
        .query_i64("SELECT length(randomblob(2000000000))")
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TooBig, "{err}");
    // Without inputs the functions still work (SQLite's own randomness).
    c.set_apply_inputs(None).unwrap();
    assert_ne!(
        c.query_i64("SELECT random()").unwrap(),
        c.query_i64("SELECT random()").unwrap()
    );
}

#[test]
fn plain_connections_keep_the_real_clock_and_refuse_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let w = open(&path);
    w.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(a)")
        .unwrap();
    w.set_apply_inputs(Some(INPUTS)).unwrap();
    w.execute_batch("INSERT INTO t VALUES(datetime('now'))")
        .unwrap();
    let r = Connection::open(&path, OpenFlags::READ_ONLY).unwrap();
    assert_eq!(
        r.query_text("SELECT a FROM t").unwrap().as_deref(),
        Some("2021-03-04 05:06:07")
    );
    let year = r
        .query_text("SELECT strftime('%Y','now')")
        .unwrap()
        .unwrap();
    assert!(
        year.as_str() >= "2025",
        "a reader keeps the real clock: {year}"
    );
    assert_eq!(
        r.set_apply_inputs(Some(INPUTS)).unwrap_err().code(),
        ErrorCode::Misuse
    );
}

#[test]
fn many_connections_open_and_close_their_own_vfs() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..50 {
        let mut c = open(&dir.path().join(format!("{}.db", i % 3)));
        c.set_apply_inputs(Some(ApplyInputs {
            unix_millis: i * 1000,
            seed: 1,
        }))
        .unwrap();
        assert_eq!(c.query_i64("SELECT unixepoch('now')").unwrap(), Some(i));
        if i % 2 == 0 {
            c.close().unwrap();
        }
    }
}
