//! The pre-update hook (`preupdate.rs`): which changes SQLite reports, with which rowids and
//! values, and that a panicking hook neither unwinds into C nor stops the statement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use raftlite_ffi::{Change, ChangeOp, Connection, OpenFlags, PreupdateHook, Value};

fn mem() -> Connection {
    Connection::open(":memory:", OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap()
}

/// A change as the hook saw it, copied out of SQLite's memory.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    op: ChangeOp,
    database: String,
    table: String,
    old_rowid: i64,
    new_rowid: i64,
    old: Option<Vec<Value>>,
    new: Option<Vec<Value>>,
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    panic_on_table: Option<&'static str>,
    panics: AtomicU64,
}

impl PreupdateHook for Recorder {
    fn on_change(&self, c: &Change<'_>) {
        if self.panic_on_table == Some(&*c.table) {
            panic!("the hook failed");
        }
        let n = c.column_count();
        let old: Option<Vec<Value>> = (0..n)
            .map(|i| c.before(i).map(|v| v.to_owned_value()))
            .collect();
        let new: Option<Vec<Value>> = (0..n)
            .map(|i| c.after(i).map(|v| v.to_owned_value()))
            .collect();
        let seen = Seen {
            op: c.op,
            database: c.database.to_string(),
            table: c.table.to_string(),
            old_rowid: c.old_rowid,
            new_rowid: c.new_rowid,
            old,
            new,
        };
        self.seen.lock().unwrap().push(seen);
    }

    fn panicked(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn inserts_updates_and_deletes_are_reported_with_both_images() {
    let mut conn = mem();
    let rec = Arc::new(Recorder::default());
    conn.set_preupdate_hook(Some(rec.clone())).unwrap();
    conn.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB);
         INSERT INTO t VALUES(7, 'a', 1.5, x'00ff');
         UPDATE t SET name = 'b', id = 9 WHERE id = 7;
         DELETE FROM t;",
    )
    .unwrap();
    let seen = rec.seen.lock().unwrap().clone();
    let row_a = vec![
        Value::Integer(7),
        text("a"),
        Value::Real(1.5),
        Value::Blob(vec![0, 255]),
    ];
    let row_b = vec![
        Value::Integer(9),
        text("b"),
        Value::Real(1.5),
        Value::Blob(vec![0, 255]),
    ];
    let want = |op, old_rowid, new_rowid, old, new| Seen {
        op,
        database: "main".into(),
        table: "t".into(),
        old_rowid,
        new_rowid,
        old,
        new,
    };
    assert_eq!(
        seen,
        vec![
            want(ChangeOp::Insert, 7, 7, None, Some(row_a.clone())),
            want(ChangeOp::Update, 7, 9, Some(row_a), Some(row_b.clone())),
            want(ChangeOp::Delete, 9, 9, Some(row_b), None),
        ]
    );
    assert!(conn.preupdate_hook::<Recorder>().is_some());
}

#[test]
fn the_schema_is_named_and_sqlites_own_tables_are_not_reported() {
    let mut conn = mem();
    let rec = Arc::new(Recorder::default());
    conn.set_preupdate_hook(Some(rec.clone())).unwrap();
    conn.execute_batch(
        "CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
         INSERT INTO a(v) VALUES(1);
         CREATE TEMP TABLE scratch(v);
         INSERT INTO scratch VALUES(2);
         CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
         INSERT INTO w VALUES('k', 3);",
    )
    .unwrap();
    let seen = rec.seen.lock().unwrap().clone();
    let names: Vec<(String, String)> = seen
        .iter()
        .map(|s| (s.database.clone(), s.table.clone()))
        .collect();
    // sqlite_sequence (AUTOINCREMENT's table) and sqlite_schema are not reported.
    assert_eq!(
        names,
        vec![
            ("main".into(), "a".into()),
            ("temp".into(), "scratch".into()),
            ("main".into(), "w".into()),
        ]
    );
    assert_eq!(seen[2].new, Some(vec![text("k"), Value::Integer(3)]));
}

#[test]
fn a_removed_hook_is_not_called_and_a_panic_does_not_stop_the_statement() {
    let mut conn = mem();
    let rec = Arc::new(Recorder {
        panic_on_table: Some("p"),
        ..Default::default()
    });
    conn.set_preupdate_hook(Some(rec.clone())).unwrap();
    conn.execute_batch("CREATE TABLE p(v); INSERT INTO p VALUES(1), (2);")
        .unwrap();
    assert_eq!(rec.panics.load(Ordering::Relaxed), 2);
    assert_eq!(conn.query_i64("SELECT count(*) FROM p").unwrap(), Some(2));
    conn.set_preupdate_hook::<Recorder>(None).unwrap();
    conn.execute_batch("CREATE TABLE q(v); INSERT INTO q VALUES(1);")
        .unwrap();
    assert!(rec.seen.lock().unwrap().is_empty());
    assert!(conn.preupdate_hook::<Recorder>().is_none());
}
