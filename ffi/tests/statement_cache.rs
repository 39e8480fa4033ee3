//! The prepared-statement cache: reuse, schema changes (the connection's own, a rollback that
//! undoes them, a backup into it, DETACH/ATTACH), statements dropped mid-step or after an
//! error, capacity, flushing, and closing with statements cached.

use raftlite_ffi::{
    Backup, BackupProgress, Connection, ErrorCode, OpenFlags, StatementCacheStats, TxnState, Value,
    MAX_CACHED_SQL_LEN,
};

fn cached(path: &std::path::Path, capacity: usize) -> Connection {
    let c = Connection::open(path, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
    c.set_statement_cache_capacity(capacity);
    c
}

fn mem(capacity: usize) -> Connection {
    cached(std::path::Path::new(":memory:"), capacity)
}

/// Runs `sql` through the cache and returns (column names read before the first step, rows).
fn query(c: &Connection, sql: &str) -> (Vec<String>, Vec<Vec<Value>>) {
    let mut s = c.prepare_cached(sql).unwrap();
    let names = (0..s.column_count()).map(|i| s.column_name(i)).collect();
    let n = s.column_count();
    let mut rows = Vec::new();
    while s.step().unwrap().is_row() {
        rows.push((0..n).map(|i| s.column_owned(i)).collect());
    }
    (names, rows)
}

fn stats(c: &Connection) -> StatementCacheStats {
    c.statement_cache_stats()
}

#[test]
fn reuse_gives_correct_results_with_new_parameters_each_time() {
    let c = mem(8);
    c.execute_batch("CREATE TABLE t(k INTEGER, v TEXT)")
        .unwrap();
    for k in 0..500i64 {
        let mut s = c
            .prepare_cached("INSERT INTO t(k, v) VALUES(?, ?)")
            .unwrap();
        assert!(s.is_cacheable());
        s.bind_i64(1, k).unwrap();
        // Every other row binds only the first parameter: a leftover binding would show.
        if k % 2 == 0 {
            s.bind_text(2, &format!("v{k}")).unwrap();
        }
        assert!(!s.step().unwrap().is_row());
    }
    let st = stats(&c);
    assert_eq!((st.misses, st.hits, st.len), (1, 499, 1), "{st:?}");
    for k in [0i64, 1, 250, 499] {
        let mut s = c.prepare_cached("SELECT v FROM t WHERE k = ?").unwrap();
        s.bind_i64(1, k).unwrap();
        assert!(s.step().unwrap().is_row());
        let want = if k % 2 == 0 {
            Value::Text(format!("v{k}"))
        } else {
            Value::Null
        };
        assert_eq!(s.column_owned(0), want, "k = {k}");
    }
    assert_eq!(
        c.query_i64("SELECT count(*) FROM t WHERE v IS NULL")
            .unwrap(),
        Some(250)
    );
    assert_eq!(stats(&c).hits, 499 + 3);
}

#[test]
fn the_same_text_in_use_twice_gets_two_statements() {
    let c = mem(8);
    c.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES(1), (2)")
        .unwrap();
    let sql = "SELECT a FROM t ORDER BY a";
    let mut outer = c.prepare_cached(sql).unwrap();
    assert!(outer.step().unwrap().is_row());
    {
        let mut inner = c.prepare_cached(sql).unwrap();
        assert!(inner.step().unwrap().is_row());
        assert_eq!(inner.column_i64(0), 1);
    }
    assert!(outer.step().unwrap().is_row());
    assert_eq!(outer.column_i64(0), 2, "the outer statement kept its place");
    drop(outer);
    assert_eq!(stats(&c).len, 1);
}

#[test]
fn a_statement_cached_before_alter_table_sees_the_new_columns() {
    let c = mem(8);
    c.execute_batch("CREATE TABLE t(a, b); INSERT INTO t VALUES(1, 2)")
        .unwrap();
    assert_eq!(query(&c, "SELECT * FROM t").0, ["a", "b"]);
    c.execute_batch("ALTER TABLE t ADD COLUMN c DEFAULT 3")
        .unwrap();
    // Read before the first step: a statement prepared for the old schema would say [a, b].
    let (names, rows) = query(&c, "SELECT * FROM t");
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(
        rows,
        vec![vec![
            Value::Integer(1),
            Value::Integer(2),
            Value::Integer(3)
        ]]
    );
}

#[test]
fn a_statement_cached_before_drop_and_create_of_the_same_name_sees_the_new_table() {
    let c = mem(8);
    c.execute_batch("CREATE TABLE t(a, b)").unwrap();
    let insert = "INSERT INTO t VALUES(?, ?)";
    let mut s = c.prepare_cached(insert).unwrap();
    s.bind_i64(1, 1).unwrap();
    s.bind_i64(2, 2).unwrap();
    s.step().unwrap();
    drop(s);
    assert_eq!(query(&c, "SELECT * FROM t").0, ["a", "b"]);
    c.execute_batch("DROP TABLE t; CREATE TABLE t(x TEXT, y TEXT)")
        .unwrap();
    let mut s = c.prepare_cached(insert).unwrap();
    s.bind_text(1, "p").unwrap();
    s.bind_text(2, "q").unwrap();
    s.step().unwrap();
    drop(s);
    let (names, rows) = query(&c, "SELECT * FROM t");
    assert_eq!(names, ["x", "y"]);
    assert_eq!(
        rows,
        vec![vec![Value::Text("p".into()), Value::Text("q".into())]]
    );
    // Dropped and not recreated: the cached text fails as a fresh prepare would.
    c.execute_batch("DROP TABLE t").unwrap();
    let err = c.prepare_cached(insert).err().expect("no such table");
    assert_eq!(err.message, "no such table: t");
}

#[test]
fn a_rollback_that_undoes_ddl_is_not_served_from_the_cache() {
    let c = mem(8);
    c.execute_batch("CREATE TABLE t(a, b)").unwrap();
    c.execute_batch("BEGIN; ALTER TABLE t ADD COLUMN c")
        .unwrap();
    assert_eq!(query(&c, "SELECT * FROM t").0, ["a", "b", "c"]);
    c.execute_batch("ROLLBACK").unwrap();
    assert_eq!(query(&c, "SELECT * FROM t").0, ["a", "b"]);
    // The same through a savepoint.
    c.execute_batch("SAVEPOINT s; ALTER TABLE t ADD COLUMN d")
        .unwrap();
    assert_eq!(query(&c, "SELECT * FROM t").0, ["a", "b", "d"]);
    c.execute_batch("ROLLBACK TO s; RELEASE s").unwrap();
    assert_eq!(query(&c, "SELECT * FROM t").0, ["a", "b"]);
}

#[test]
fn a_backup_into_the_connection_empties_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let src = cached(&dir.path().join("s.db"), 0);
    src.execute_batch("CREATE TABLE t(x, y, z); INSERT INTO t VALUES(7, 8, 9)")
        .unwrap();
    let mut dest = cached(&dir.path().join("d.db"), 8);
    dest.execute_batch("CREATE TABLE t(a)").unwrap();
    assert_eq!(query(&dest, "SELECT * FROM t").0, ["a"]);
    let mut b = Backup::new(&mut dest, "main", &src, "main").unwrap();
    assert_eq!(b.step(-1).unwrap(), BackupProgress::Done);
    b.finish().unwrap();
    let (names, rows) = query(&dest, "SELECT * FROM t");
    assert_eq!(names, ["x", "y", "z"]);
    assert_eq!(rows.len(), 1);
}

#[test]
fn detach_and_attach_of_another_file_under_the_same_name() {
    let dir = tempfile::tempdir().unwrap();
    for (name, table) in [("one.db", "t(a)"), ("two.db", "t(p, q)")] {
        let f = cached(&dir.path().join(name), 0);
        f.execute_batch(&format!("CREATE TABLE {table}")).unwrap();
    }
    let c = mem(8);
    let attach = |file: &str| {
        let path = dir.path().join(file);
        c.execute_batch(&format!("ATTACH '{}' AS aux", path.display()))
            .unwrap();
    };
    attach("one.db");
    assert_eq!(query(&c, "SELECT * FROM aux.t").0, ["a"]);
    c.execute_batch("DETACH aux").unwrap();
    attach("two.db");
    assert_eq!(query(&c, "SELECT * FROM aux.t").0, ["p", "q"]);
}

#[test]
fn a_statement_dropped_mid_step_is_reset_and_holds_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let c = cached(&dir.path().join("a.db"), 8);
    c.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES(1), (2), (3)")
        .unwrap();
    let sql = "SELECT a FROM t ORDER BY a";
    let mut s = c.prepare_cached(sql).unwrap();
    assert!(s.step().unwrap().is_row());
    assert_eq!(c.txn_state("main").unwrap(), TxnState::Read);
    drop(s);
    // Back in the cache, reset: no read transaction is left open...
    assert_eq!(stats(&c).len, 1);
    assert_eq!(c.txn_state("main").unwrap(), TxnState::None);
    // ...nothing keeps the table busy (DROP fails with "database table is locked" while a
    // statement reads it)...
    c.execute_batch("CREATE TABLE u(b); DROP TABLE u").unwrap();
    c.execute_batch("BEGIN; INSERT INTO t VALUES(4); COMMIT")
        .unwrap();
    // ...and the statement starts from the first row again.
    assert_eq!(
        query(&c, sql).1,
        (1..=4).map(|i| vec![Value::Integer(i)]).collect::<Vec<_>>()
    );
}

#[test]
fn an_error_mid_step_leaves_the_connection_usable_and_the_statement_reset() {
    let dir = tempfile::tempdir().unwrap();
    let c = cached(&dir.path().join("a.db"), 8);
    c.execute_batch("CREATE TABLE t(a UNIQUE); INSERT INTO t VALUES(1), (2), (3)")
        .unwrap();
    // The second row overflows: an error after a row was returned.
    let sql =
        "SELECT CASE WHEN a = 2 THEN abs(-9223372036854775807 - 1) ELSE a END FROM t ORDER BY a";
    c.execute_batch("BEGIN").unwrap();
    {
        let mut s = c.prepare_cached(sql).unwrap();
        assert!(s.step().unwrap().is_row());
        let err = s.step().unwrap_err();
        assert_eq!(err.message, "integer overflow");
    }
    // A constraint failure of a cached INSERT inside the transaction.
    for _ in 0..2 {
        let mut s = c.prepare_cached("INSERT INTO t VALUES(?)").unwrap();
        s.bind_i64(1, 1).unwrap();
        assert_eq!(s.step().unwrap_err().code(), ErrorCode::Constraint);
    }
    c.execute_batch("COMMIT").unwrap();
    assert!(c.is_autocommit().unwrap());
    assert_eq!(c.txn_state("main").unwrap(), TxnState::None);
    c.execute_batch("BEGIN; DELETE FROM t WHERE a = 2; COMMIT")
        .unwrap();
    // Reused, both run cleanly from the start.
    assert_eq!(
        query(&c, sql).1,
        vec![vec![Value::Integer(1)], vec![Value::Integer(3)]]
    );
    let mut s = c.prepare_cached("INSERT INTO t VALUES(?)").unwrap();
    s.bind_i64(1, 9).unwrap();
    s.step().unwrap();
    drop(s);
    assert_eq!(stats(&c).hits, 3);
}

#[test]
fn the_cache_stays_within_capacity_and_evicts_the_least_recently_used() {
    let c = mem(3);
    c.execute_batch("CREATE TABLE t(a)").unwrap();
    let text = |i: i64| format!("SELECT a + {i} FROM t");
    for i in 0..10 {
        drop(c.prepare_cached(&text(i)).unwrap());
        // Keep text 0 recently used.
        drop(c.prepare_cached(&text(0)).unwrap());
        assert!(stats(&c).len <= 3, "{:?}", stats(&c));
    }
    let before = stats(&c);
    assert_eq!(before.len, 3);
    drop(c.prepare_cached(&text(0)).unwrap());
    drop(c.prepare_cached(&text(9)).unwrap());
    assert_eq!(stats(&c).hits, before.hits + 2, "0 and 9 are still cached");
    drop(c.prepare_cached(&text(1)).unwrap());
    assert_eq!(
        stats(&c).misses,
        before.misses + 1,
        "1 was evicted long ago"
    );
    // Shrinking evicts; 0 turns the cache off.
    c.set_statement_cache_capacity(1);
    assert_eq!(stats(&c).len, 1);
    c.set_statement_cache_capacity(0);
    assert_eq!(stats(&c).len, 0);
    let s = c.prepare_cached(&text(0)).unwrap();
    assert!(!s.is_cacheable());
    drop(s);
    assert_eq!(stats(&c).len, 0);
}

#[test]
fn only_single_short_queries_and_dml_are_cached() {
    let c = mem(8);
    c.execute_batch("CREATE TABLE t(a)").unwrap();
    for sql in [
        "INSERT INTO t VALUES(1) -- trailing comment",
        "  /* lead */ select * from t;  ",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "UPDATE t SET a = a",
        "DELETE FROM t WHERE 0",
        "VALUES(1)",
        "REPLACE INTO t VALUES(2)",
    ] {
        let (s, used) = c.prepare_first_cached(sql).unwrap();
        assert!(s.unwrap().is_cacheable(), "{sql}");
        assert_eq!(used, sql.len());
    }
    let long = format!("SELECT '{}'", "x".repeat(MAX_CACHED_SQL_LEN));
    for sql in [
        "INSERT INTO t VALUES(1); INSERT INTO t VALUES(2)",
        "PRAGMA table_info(t)",
        "BEGIN",
        "SAVEPOINT s",
        "CREATE TABLE IF NOT EXISTS t(a)",
        "EXPLAIN SELECT 1",
        long.as_str(),
    ] {
        let (s, _) = c.prepare_first_cached(sql).unwrap();
        assert!(!s.unwrap().is_cacheable(), "{sql}");
    }
    // A multi-statement text hands back its first statement and where the rest starts.
    let (s, used) = c.prepare_first_cached("SELECT 1; SELECT 2").unwrap();
    assert_eq!(s.unwrap().sql(), "SELECT 1;");
    assert_eq!(used, "SELECT 1;".len());
    assert!(c.prepare_cached("SELECT 1; SELECT 2").is_err());
    let (s, used) = c.prepare_first_cached("  -- nothing").unwrap();
    assert!(s.is_none());
    assert_eq!(used, "  -- nothing".len());
    // `prepare_cached` wants exactly one statement: nothing is misuse too.
    assert!(c.prepare_cached("  -- nothing").is_err());
}

#[test]
fn flushing_empties_the_cache_and_statements_in_use_do_not_come_back() {
    let c = mem(8);
    drop(c.prepare_cached("SELECT 1").unwrap());
    drop(c.prepare_cached("SELECT 2").unwrap());
    let in_use = c.prepare_cached("SELECT 3").unwrap();
    assert_eq!(stats(&c).len, 2);
    c.flush_statement_cache();
    assert_eq!(stats(&c).len, 0);
    drop(in_use);
    assert_eq!(stats(&c).len, 0, "checked out before the flush: finalized");
    drop(c.prepare_cached("SELECT 1").unwrap());
    assert_eq!(stats(&c).len, 1);
}

#[test]
fn closing_a_connection_with_cached_statements_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cached(&dir.path().join("a.db"), 8);
    c.execute_batch("CREATE TABLE t(a)").unwrap();
    for i in 0..5 {
        let mut s = c
            .prepare_cached(&format!("INSERT INTO t VALUES({i})"))
            .unwrap();
        s.step().unwrap();
    }
    {
        // One dropped mid-step, too.
        let mut s = c.prepare_cached("SELECT * FROM t").unwrap();
        assert!(s.step().unwrap().is_row());
    }
    assert_eq!(stats(&c).len, 6);
    c.close().unwrap();
    assert!(c.is_closed());
    assert_eq!(stats(&c).len, 0);
    let err = c.prepare_cached("SELECT * FROM t").err().unwrap();
    assert_eq!(err.code(), ErrorCode::Misuse);
    // The file is whole and unlocked: another connection reads every row.
    let again = cached(&dir.path().join("a.db"), 0);
    assert_eq!(again.query_i64("SELECT count(*) FROM t").unwrap(), Some(5));
}

/// The caller's own statements live apart: the same text through the shared cache is
/// prepared afresh (so its authorizer sees it), and the private one is reused.
#[test]
fn private_statements_are_never_handed_to_the_shared_cache() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    struct Counting(AtomicU64);
    impl raftlite_ffi::Authorizer for Counting {
        fn authorize(&self, r: &raftlite_ffi::AuthRequest<'_>) -> raftlite_ffi::Authorization {
            if r.action == raftlite_ffi::AuthAction::Insert {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
            raftlite_ffi::Authorization::Allow
        }
    }
    let mut c = mem(16);
    c.execute_batch("CREATE TABLE t(v)").unwrap();
    let auth = Arc::new(Counting(AtomicU64::new(0)));
    c.set_authorizer(Some(Arc::clone(&auth))).unwrap();
    let sql = "INSERT INTO t VALUES(1)";
    for _ in 0..3 {
        let mut s = c.prepare_private_cached(sql).unwrap();
        while s.step().unwrap().is_row() {}
    }
    assert_eq!(
        auth.0.load(Ordering::Relaxed),
        1,
        "the private statement is reused"
    );
    let mut s = c.prepare_cached(sql).unwrap();
    while s.step().unwrap().is_row() {}
    drop(s);
    assert_eq!(
        auth.0.load(Ordering::Relaxed),
        2,
        "the shared cache prepared its own, through the authorizer"
    );
    assert_eq!(c.query_i64("SELECT count(*) FROM t").unwrap(), Some(4));
    // Flushing drops the private statements too.
    c.flush_statement_cache();
    let mut s = c.prepare_private_cached(sql).unwrap();
    while s.step().unwrap().is_row() {}
    assert_eq!(auth.0.load(Ordering::Relaxed), 3);
}
