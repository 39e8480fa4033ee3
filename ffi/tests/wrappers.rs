//! Unit tests for each wrapper, including misuse: invalid SQL, out-of-range binds, closed handles.

use raftlite_ffi::{
    complete, format_real_20g, format_real_20g_into, Backup, BackupProgress, ColumnType,
    Connection, ErrorCode, OpenFlags, Step, TxnState, Value, ValueRef,
};

fn mem() -> Connection {
    Connection::open(":memory:", OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap()
}

#[test]
fn open_missing_file_read_only_fails_with_cantopen() {
    let dir = tempfile::tempdir().unwrap();
    let err = Connection::open(dir.path().join("nope.db"), OpenFlags::READ_ONLY)
        .err()
        .unwrap();
    assert_eq!(err.code(), ErrorCode::CantOpen);
    assert!(err.message.contains("unable to open"), "{}", err.message);
}

#[test]
fn open_creates_file_and_reports_filename() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let c = Connection::open(&path, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
    c.execute_batch("CREATE TABLE t(a)").unwrap();
    assert!(path.exists());
    assert_eq!(c.filename("main").unwrap().unwrap(), path.to_str().unwrap());
    assert_eq!(mem().filename("main").unwrap(), None);
}

#[test]
fn read_only_connection_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    Connection::open(&path, OpenFlags::READ_WRITE | OpenFlags::CREATE)
        .unwrap()
        .execute_batch("CREATE TABLE t(a)")
        .unwrap();
    let ro = Connection::open(&path, OpenFlags::READ_ONLY).unwrap();
    let err = ro.execute_batch("INSERT INTO t VALUES(1)").unwrap_err();
    assert_eq!(err.code(), ErrorCode::ReadOnly);
}

#[test]
fn prepare_first_iterates_over_several_statements() {
    let c = mem();
    let sql = "CREATE TABLE t(a); INSERT INTO t VALUES(1);  -- trailing comment\n";
    let (s1, used1) = c.prepare_first(sql).unwrap();
    let mut s1 = s1.unwrap();
    assert_eq!(s1.sql(), "CREATE TABLE t(a);");
    assert_eq!(s1.step().unwrap(), Step::Done);
    let rest = &sql[used1..];
    let (s2, used2) = c.prepare_first(rest).unwrap();
    assert_eq!(s2.unwrap().sql().trim(), "INSERT INTO t VALUES(1);");
    let (s3, _) = c.prepare_first(&rest[used2..]).unwrap();
    assert!(s3.is_none(), "only a comment is left");
}

#[test]
fn invalid_sql_reports_code_and_message() {
    let c = mem();
    let err = c.prepare_first("SELEC 1").err().unwrap();
    assert_eq!(err.code(), ErrorCode::Error);
    assert_eq!(err.message, "near \"SELEC\": syntax error");
    let err = c.prepare("SELECT * FROM nosuch").err().unwrap();
    assert_eq!(err.message, "no such table: nosuch");
}

#[test]
fn prepare_rejects_empty_and_multiple_statements() {
    let c = mem();
    assert_eq!(
        c.prepare("  -- nothing").err().unwrap().code(),
        ErrorCode::Misuse
    );
    assert_eq!(
        c.prepare("SELECT 1; SELECT 2").err().unwrap().code(),
        ErrorCode::Misuse
    );
    assert!(c.prepare("SELECT 1; -- fine\n").is_ok());
}

#[test]
fn binds_and_reads_every_value_type() {
    let c = mem();
    c.execute_batch("CREATE TABLE t(i INTEGER, r REAL, s TEXT, b BLOB, n, e BLOB)")
        .unwrap();
    let mut ins = c
        .prepare("INSERT INTO t VALUES(?1, ?2, :s, @b, $n, ?6)")
        .unwrap();
    assert_eq!(ins.parameter_count(), 6);
    assert_eq!(ins.parameter_index(":s"), Some(3));
    assert_eq!(ins.parameter_name(4).as_deref(), Some("@b"));
    assert_eq!(ins.parameter_name(1).as_deref(), Some("?1"));
    ins.bind_i64(1, i64::MIN).unwrap();
    ins.bind_f64(2, 2.5).unwrap();
    ins.bind_text(3, "héllo\n'x'").unwrap();
    ins.bind_blob(4, &[0, 255, 7]).unwrap();
    ins.bind_null(5).unwrap();
    ins.bind_blob(6, &[]).unwrap();
    assert_eq!(ins.step().unwrap(), Step::Done);
    assert_eq!(c.changes().unwrap(), 1);
    assert_eq!(c.last_insert_rowid().unwrap(), 1);
    c.set_last_insert_rowid(0).unwrap();
    assert_eq!(c.last_insert_rowid().unwrap(), 0);
    drop(ins);

    let mut q = c
        .prepare("SELECT i, r, s, b, n, e, typeof(e) FROM t")
        .unwrap();
    assert_eq!(q.column_count(), 7);
    assert_eq!(q.column_name(2), "s");
    assert_eq!(q.column_decltype(1).as_deref(), Some("REAL"));
    assert_eq!(q.column_decltype(4), None);
    assert_eq!(q.column_table_name(0).as_deref(), Some("t"));
    assert_eq!(q.step().unwrap(), Step::Row);
    assert_eq!(q.column_value(0), ValueRef::Integer(i64::MIN));
    assert_eq!(q.column_value(1), ValueRef::Real(2.5));
    assert_eq!(q.column_owned(2), Value::Text("héllo\n'x'".into()));
    assert_eq!(q.column_value(3), ValueRef::Blob(&[0, 255, 7]));
    assert_eq!(q.column_type(4), ColumnType::Null);
    assert_eq!(
        q.column_type(5),
        ColumnType::Blob,
        "an empty blob stays a blob"
    );
    assert_eq!(q.column_text(6), b"blob");
    assert_eq!(q.step().unwrap(), Step::Done);
}

#[test]
fn bind_out_of_range_is_a_range_error() {
    let c = mem();
    let mut s = c.prepare("SELECT ?").unwrap();
    let err = s.bind_i64(2, 1).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Range);
    assert_eq!(err.message, "column index out of range");
    assert_eq!(s.bind_text(0, "x").unwrap_err().code(), ErrorCode::Range);
    assert_eq!(s.parameter_index(":nope"), None);
}

#[test]
fn column_access_out_of_range_is_null_not_ub() {
    let c = mem();
    let mut s = c.prepare("SELECT 1").unwrap();
    assert!(s.step().unwrap().is_row());
    assert_eq!(s.column_value(5), ValueRef::Null);
    assert_eq!(s.column_text(-1), b"");
    assert_eq!(s.column_name(9), "");
}

#[test]
fn step_error_and_reset() {
    let c = mem();
    c.execute_batch("CREATE TABLE t(a UNIQUE); INSERT INTO t VALUES(1)")
        .unwrap();
    let mut s = c.prepare("INSERT INTO t VALUES(?)").unwrap();
    s.bind_i64(1, 1).unwrap();
    let err = s.step().unwrap_err();
    assert_eq!(err.code(), ErrorCode::Constraint);
    assert_eq!(err.message, "UNIQUE constraint failed: t.a");
    // The extended code tells which constraint.
    assert_eq!(
        err.extended_code,
        raftlite_ffi::sys::SQLITE_CONSTRAINT_UNIQUE
    );
    let _ = s.reset();
    s.bind_i64(1, 2).unwrap();
    assert_eq!(s.step().unwrap(), Step::Done);
    s.reset().unwrap();
    s.clear_bindings().unwrap();
    assert_eq!(s.step().unwrap(), Step::Done, "NULL is not a duplicate");
    assert_eq!(c.total_changes().unwrap(), 3);
}

#[test]
fn readonly_classifies_statements() {
    let c = mem();
    c.execute_batch("CREATE TABLE t(a)").unwrap();
    assert!(c.prepare("SELECT * FROM t").unwrap().readonly());
    assert!(!c.prepare("INSERT INTO t VALUES(1)").unwrap().readonly());
    assert!(!c
        .prepare("INSERT INTO t VALUES(1) RETURNING a")
        .unwrap()
        .readonly());
    assert_eq!(c.prepare("EXPLAIN SELECT 1").unwrap().explain_kind(), 1);
}

#[test]
fn autocommit_and_txn_state() {
    let c = mem();
    c.execute_batch("CREATE TABLE t(a)").unwrap();
    assert!(c.is_autocommit().unwrap());
    c.execute_batch("BEGIN; INSERT INTO t VALUES(1)").unwrap();
    assert!(!c.is_autocommit().unwrap());
    assert_eq!(c.txn_state("main").unwrap(), TxnState::Write);
    c.execute_batch("COMMIT").unwrap();
    assert_eq!(c.txn_state("main").unwrap(), TxnState::None);
}

#[test]
fn busy_timeout_applies_to_lock_waits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let a = Connection::open(&path, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
    a.execute_batch("CREATE TABLE t(a); BEGIN IMMEDIATE; INSERT INTO t VALUES(1)")
        .unwrap();
    let b = Connection::open(&path, OpenFlags::READ_WRITE).unwrap();
    b.busy_timeout(50).unwrap();
    let start = std::time::Instant::now();
    let err = b.execute_batch("INSERT INTO t VALUES(2)").unwrap_err();
    assert_eq!(err.code(), ErrorCode::Busy);
    assert!(start.elapsed() >= std::time::Duration::from_millis(40));
}

#[test]
fn closed_handle_is_an_error_not_a_crash() {
    let mut c = mem();
    c.close().unwrap();
    assert!(c.is_closed());
    c.close().unwrap();
    assert_eq!(
        c.prepare_first("SELECT 1").err().unwrap().code(),
        ErrorCode::Misuse
    );
    assert_eq!(c.changes().unwrap_err().message, "connection is closed");
    assert!(c.last_insert_rowid().is_err());
    assert!(c.busy_timeout(1).is_err());
    assert!(c.is_autocommit().is_err());
    // Interrupting a closed connection does nothing.
    c.interrupt_handle().interrupt();
}

#[test]
fn interrupt_stops_a_running_statement() {
    let c = mem();
    let h = c.interrupt_handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.interrupt();
    });
    let err = c
        .execute_batch(
            "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r) SELECT count(*) FROM r",
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Interrupt);
    t.join().unwrap();
}

#[test]
fn a_pending_interrupt_is_visible_until_the_next_statement_starts() {
    let c = mem();
    assert!(!c.is_interrupted());
    c.interrupt_handle().interrupt();
    assert!(c.is_interrupted());
    // No statement was running: the next one starts afresh and clears it.
    c.execute_batch("SELECT 1").unwrap();
    assert!(!c.is_interrupted());
    let mut closed = mem();
    closed.close().unwrap();
    assert!(!closed.is_interrupted());
}

#[test]
fn double_quoted_strings_can_be_turned_on_and_off() {
    let c = mem();
    c.execute_batch("CREATE TABLE t(a)").unwrap();
    c.set_double_quoted_strings(true).unwrap();
    c.execute_batch("INSERT INTO t VALUES(\"fiona\")").unwrap();
    c.set_double_quoted_strings(false).unwrap();
    let err = c
        .execute_batch("INSERT INTO t VALUES(\"declan\")")
        .unwrap_err();
    assert_eq!(
        err.message,
        "no such column: \"declan\" - should this be a string literal in single-quotes?"
    );
}

#[test]
fn complete_detects_statement_ends() {
    assert!(complete("SELECT 1;"));
    assert!(!complete("SELECT 1"));
    assert!(!complete("SELECT ';"));
    assert!(!complete(
        "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1;"
    ));
    assert!(complete(
        "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END;"
    ));
    assert!(!complete("SELECT 1\0;"), "text after NUL is ignored");
}

#[test]
fn format_real_matches_sqlite_printf() {
    // The "!" flag keeps a ".0" on integral values; the digits past the 17th vary between
    // SQLite versions, so only the round trip is pinned for those.
    assert_eq!(format_real_20g(1.5), "1.5");
    assert_eq!(format_real_20g(-2.0), "-2.0");
    for v in [
        0.1,
        1e300,
        -1.0e-300,
        123456.789,
        f64::MAX,
        f64::MIN_POSITIVE,
    ] {
        let text = format_real_20g(v);
        assert_eq!(text.parse::<f64>().unwrap(), v, "{text}");
    }
}

#[test]
fn wal_checkpoint_reports_frames() {
    let dir = tempfile::tempdir().unwrap();
    let c = Connection::open(
        dir.path().join("w.db"),
        OpenFlags::READ_WRITE | OpenFlags::CREATE,
    )
    .unwrap();
    assert_eq!(
        c.query_text("PRAGMA journal_mode=WAL").unwrap().as_deref(),
        Some("wal")
    );
    c.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES(1)")
        .unwrap();
    let (log, done) = c
        .wal_checkpoint(raftlite_ffi::sys::SQLITE_CHECKPOINT_TRUNCATE)
        .unwrap();
    assert_eq!(log, 0, "TRUNCATE leaves an empty WAL");
    assert_eq!(done, 0);
}

#[test]
fn backup_copies_in_steps_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let src = Connection::open(
        dir.path().join("s.db"),
        OpenFlags::READ_WRITE | OpenFlags::CREATE,
    )
    .unwrap();
    src.execute_batch(
        "PRAGMA page_size=1024; CREATE TABLE t(a); \
         WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r LIMIT 2000) \
         INSERT INTO t SELECT randomblob(100) FROM r",
    )
    .unwrap();
    let mut dest = Connection::open(
        dir.path().join("d.db"),
        OpenFlags::READ_WRITE | OpenFlags::CREATE,
    )
    .unwrap();
    let mut b = Backup::new(&mut dest, "main", &src, "main").unwrap();
    let mut steps = 0;
    loop {
        match b.step(16).unwrap() {
            BackupProgress::Done => break,
            BackupProgress::More => {
                steps += 1;
                assert!(b.remaining() < b.page_count());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(steps > 5, "copied in several steps, got {steps}");
    assert_eq!(b.remaining(), 0);
    b.finish().unwrap();
    assert_eq!(
        dest.query_i64("SELECT count(*) FROM t").unwrap(),
        Some(2000)
    );
}

#[test]
fn backup_from_closed_connection_fails() {
    let mut src = mem();
    src.close().unwrap();
    let mut dest = mem();
    assert_eq!(
        Backup::new(&mut dest, "main", &src, "main")
            .err()
            .unwrap()
            .code(),
        ErrorCode::Misuse
    );
}

#[test]
fn backup_into_unknown_schema_fails_with_message() {
    let src = mem();
    let mut dest = mem();
    let err = Backup::new(&mut dest, "nosuch", &src, "main")
        .err()
        .unwrap();
    assert!(
        err.message.contains("unknown database nosuch"),
        "{}",
        err.message
    );
}

#[test]
fn format_real_into_matches_the_allocating_form() {
    let mut buf = [0u8; 64];
    for v in [
        0.1,
        1.5,
        -2.0,
        1e300,
        -1.7976931348623157e308,
        5e-324,
        123_456_789.123_456_78,
    ] {
        assert_eq!(format_real_20g_into(v, &mut buf), format_real_20g(v));
    }
}

#[test]
fn execute_batch_bytes_stores_invalid_utf8_literals_exactly() {
    let c = mem();
    // A TEXT literal holding bytes that are not UTF-8, as a dump of such a value writes it.
    let mut sql = b"CREATE TABLE t(v TEXT); INSERT INTO t VALUES('a".to_vec();
    sql.extend_from_slice(&[0xff, 0xfe]);
    sql.extend_from_slice(b"b'); INSERT INTO t VALUES('c');");
    c.execute_batch_bytes(&sql).unwrap();
    let mut s = c.prepare("SELECT v FROM t ORDER BY rowid").unwrap();
    assert!(s.step().unwrap().is_row());
    assert_eq!(s.column_text(0), &[b'a', 0xff, 0xfe, b'b']);
    assert!(s.step().unwrap().is_row());
    assert_eq!(s.column_text(0), b"c");
    drop(s);
    // Misuse: a syntax error in a later statement stops there, with SQLite's message.
    let err = c
        .execute_batch_bytes(b"INSERT INTO t VALUES('d'); INSERT INTO nope VALUES(1);")
        .unwrap_err();
    assert!(
        err.message.contains("no such table: nope"),
        "{}",
        err.message
    );
    assert_eq!(c.query_i64("SELECT count(*) FROM t").unwrap(), Some(3));
    let mut closed = mem();
    closed.close().unwrap();
    assert_eq!(
        closed.execute_batch_bytes(b"SELECT 1").unwrap_err().message,
        "connection is closed"
    );
}

#[test]
fn load_extension_misuse_is_an_error_and_sql_loading_stays_off() {
    let dir = tempfile::tempdir().unwrap();
    let not_lib = dir.path().join("not-an-extension.so");
    std::fs::write(&not_lib, b"plain text").unwrap();
    let c = mem();
    let err = c.load_extension(&not_lib).unwrap_err();
    assert!(err.message.contains("not-an-extension.so"), "{err:?}");
    let err = c
        .load_extension(&dir.path().join("missing.so"))
        .unwrap_err();
    assert!(err.message.contains("missing.so"), "{err:?}");
    // The C API was on for the call only; SQL's load_extension() never was.
    let q = c.execute_batch(&format!("SELECT load_extension('{}')", not_lib.display()));
    assert!(q.is_err());
    let mut closed = mem();
    closed.close().unwrap();
    assert!(closed.load_extension(&not_lib).is_err());
}
