//! Shared read snapshots: a second connection reads exactly the first one's state, whatever
//! was committed since; misuse (autocommit, a connection that never read, a rollback-journal
//! database, a statement still running) is refused with an error, never undefined behaviour.

use raftlite_ffi::{Connection, OpenFlags};

fn open(path: &std::path::Path) -> Connection {
    Connection::open(path, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap()
}

fn count(c: &Connection) -> i64 {
    c.query_i64("SELECT count(*) FROM t").unwrap().unwrap()
}

fn wal_db(dir: &tempfile::TempDir) -> (std::path::PathBuf, Connection) {
    let path = dir.path().join("s.db");
    let writer = open(&path);
    writer
        .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        .unwrap();
    (path, writer)
}

#[test]
fn a_second_connection_reads_the_first_ones_snapshot_after_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (path, writer) = wal_db(&dir);
    let first = open(&path);
    first.execute_batch("BEGIN").unwrap();
    assert_eq!(count(&first), 1);
    let snapshot = first.snapshot().unwrap();
    writer.execute_batch("INSERT INTO t VALUES (2)").unwrap();
    writer
        .execute_batch("PRAGMA wal_checkpoint(PASSIVE)")
        .unwrap();

    let second = open(&path);
    assert_eq!(count(&second), 2, "a first read opens the WAL");
    second.execute_batch("BEGIN").unwrap();
    second.open_snapshot(&snapshot).unwrap();
    assert_eq!(count(&second), 1, "the snapshot, not the latest commit");
    second.execute_batch("COMMIT").unwrap();
    assert_eq!(count(&second), 2, "outside the snapshot: the latest state");

    // A connection already reading the latest state moves back to the snapshot.
    second.execute_batch("BEGIN").unwrap();
    assert_eq!(count(&second), 2);
    second.open_snapshot(&snapshot).unwrap();
    assert_eq!(count(&second), 1);
    second.execute_batch("COMMIT").unwrap();
    first.execute_batch("COMMIT").unwrap();
}

#[test]
fn misuse_is_refused_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _writer) = wal_db(&dir);
    let c = open(&path);
    assert!(c.snapshot().is_err(), "autocommit: no transaction to name");
    c.execute_batch("BEGIN").unwrap();
    let snapshot = c.snapshot().unwrap();

    let fresh = open(&path);
    assert!(fresh.open_snapshot(&snapshot).is_err(), "autocommit");
    fresh.execute_batch("BEGIN").unwrap();
    assert!(
        fresh.open_snapshot(&snapshot).is_err(),
        "never read: no WAL open yet"
    );
    fresh.execute_batch("COMMIT").unwrap();

    let busy = open(&path);
    busy.execute_batch("BEGIN").unwrap();
    let mut running = busy.prepare("SELECT x FROM t").unwrap();
    assert!(running.step().unwrap().is_row());
    assert!(
        busy.open_snapshot(&snapshot).is_err(),
        "a statement is running"
    );
    drop(running);
    busy.execute_batch("COMMIT").unwrap();
    c.execute_batch("COMMIT").unwrap();

    let rollback = dir.path().join("r.db");
    let r = open(&rollback);
    r.execute_batch("CREATE TABLE t(x); BEGIN").unwrap();
    assert_eq!(count(&r), 0);
    assert!(
        r.snapshot().is_err(),
        "rollback-journal databases have no snapshots"
    );
    r.execute_batch("COMMIT").unwrap();
}
