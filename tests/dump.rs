//! The SQL dumper against the `sqlite3` 3.40.1 shell and against golden text where the shell
//! has no equivalent (`tables=` subsets), plus the snapshot, streaming and error-kind
//! guarantees. The suite of tricky databases is `tests/dump_conformance/`.

mod common;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::reference_shell::reference_shell;

use raftlite::db::dump::{dump, DumpError};
use raftlite_ffi::{Connection, OpenFlags};

fn create(dir: &Path, name: &str, sql: &str) -> PathBuf {
    let path = dir.join(name);
    let c = Connection::open(&path, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
    c.execute_batch(sql).unwrap();
    path
}

fn ours(path: &Path, tables: Option<&[String]>) -> String {
    let c = Connection::open(path, OpenFlags::READ_ONLY).unwrap();
    let mut out = Vec::new();
    dump(&c, tables, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// The reference shell's dump, or None when `sqlite3` 3.40.x is not on PATH: the test then
/// says loudly that it skipped the comparison, or fails under CI
/// (`tests/common/reference_shell.rs`).
fn shell(path: &Path) -> Option<String> {
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let shell = reference_shell(&format!("tests/dump.rs::{test}"))?;
    let out = shell.command().arg(path).arg(".dump").output().unwrap();
    Some(String::from_utf8(out.stdout).unwrap())
}

/// Builds a database from `sql` and checks our dump against the shell's, byte for byte.
/// (The cases avoid REALs whose `%!.20g` digits differ between SQLite versions.)
fn same_as_shell(sql: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = create(dir.path(), "t.db", sql);
    let got = ours(&path, None);
    if let Some(want) = shell(&path) {
        assert_eq!(got, want, "dump differs from the sqlite3 shell's");
    }
    got
}

#[test]
fn quoted_identifiers_and_keywords() {
    let d = same_as_shell(
        r#"CREATE TABLE "a""b"("c""d" TEXT, "select", "my col");
        INSERT INTO "a""b" VALUES('x', 1, 2);
        CREATE TABLE "my table"(x); INSERT INTO "my table" VALUES('spaces');
        CREATE TABLE "Values"(rowid, oid); INSERT INTO "Values" VALUES(1, 2);
        CREATE TABLE [bracket](x); INSERT INTO [bracket] VALUES(1);
        CREATE TABLE 'single'(x); INSERT INTO 'single' VALUES(1);
        CREATE TABLE "日本"(x); INSERT INTO "日本" VALUES('名');
        CREATE INDEX "idx ""q""" ON "a""b"("c""d");"#,
    );
    assert!(
        d.contains("INSERT INTO \"a\"\"b\" VALUES('x',1,2);\n"),
        "{d}"
    );
    assert!(d.contains("INSERT INTO \"Values\" VALUES(1,2);\n"), "{d}");
    assert!(
        d.contains("CREATE TABLE IF NOT EXISTS 'single'(x);\n"),
        "{d}"
    );
}

#[test]
fn empty_database_and_empty_tables() {
    let d = same_as_shell("CREATE TABLE a(x); DROP TABLE a;");
    assert_eq!(d, "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCOMMIT;\n");
    let d = same_as_shell("CREATE TABLE e(x, y);");
    assert_eq!(
        d,
        "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE e(x, y);\nCOMMIT;\n"
    );
}

#[test]
fn values_of_every_kind() {
    let d = same_as_shell(
        "CREATE TABLE v(a);
        INSERT INTO v VALUES(NULL),(0),(-1),(9223372036854775807),(-9223372036854775808),
          (0.5),(-2.25),(3.0),(1e999),(-1e999),(-0.0),(1e20),(-9223372036854775808.0),
          (''),('it''s'),(x''),(x'00ff10'),(zeroblob(3)),
          ('a'||char(10)||'b'||char(13)||'c'),('nul'||char(0)||'lost'),
          (char(1,2,3,9,27,127)),('\\n'||char(10)||'\\012');",
    );
    assert!(d.contains("VALUES(1e999);\nINSERT INTO v VALUES(-1e999);\nINSERT INTO v VALUES(0.0);"));
    assert!(d.contains("VALUES(1.0e+20);"), "{d}");
    assert!(d.contains("VALUES(-9223372036854775808.0);"), "{d}");
    assert!(d.contains("VALUES('nul');"), "{d}");
}

#[test]
fn without_rowid_strict_and_generated_columns() {
    same_as_shell(
        "CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
        INSERT INTO w VALUES('b',1),('a',2);
        CREATE TABLE s(id INTEGER PRIMARY KEY, t TEXT, a ANY) STRICT;
        INSERT INTO s VALUES(1,'x',x'01'),(2,NULL,1.5);
        CREATE TABLE g(a INT, b AS (a*2), c TEXT, d AS (upper(c)) STORED);
        INSERT INTO g(a,c) VALUES(1,'x'),(NULL,NULL);",
    );
}

#[test]
fn autoincrement_fts5_and_object_order() {
    let d = same_as_shell(
        "CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
        INSERT INTO a(v) VALUES('one'),('two');
        CREATE VIEW v2 AS SELECT * FROM a;
        CREATE TRIGGER tr AFTER INSERT ON a BEGIN SELECT 1; END;
        CREATE INDEX ia ON a(v); -- trailing comment
        CREATE VIRTUAL TABLE f USING fts5(body);
        INSERT INTO f VALUES('hello world');
        CREATE TABLE z(x); INSERT INTO z VALUES(1);
        CREATE VIEW v1 AS SELECT 1 -- comment
          , 2;",
    );
    let seq = d.find("DELETE FROM sqlite_sequence;").unwrap();
    assert!(
        d.find("INSERT INTO z").unwrap() < seq,
        "sqlite_sequence comes after all tables"
    );
    assert!(
        d.contains("CREATE VIEW v1 AS SELECT 1 -- comment\n          , 2\n;\n"),
        "{d}"
    );
}

#[test]
fn stat1_is_dumped_through_analyze() {
    let d = same_as_shell(
        "CREATE TABLE t(a); CREATE INDEX ta ON t(a);
        INSERT INTO t VALUES(1),(2),(2); ANALYZE;",
    );
    assert!(
        d.contains("ANALYZE sqlite_schema;\nINSERT INTO sqlite_stat1 VALUES('t','ta','3 2');\n")
    );
}

#[test]
fn utf16_database() {
    same_as_shell(
        "PRAGMA encoding='UTF-16le';
        CREATE TABLE \"ü t\"(s TEXT, b BLOB);
        INSERT INTO \"ü t\" VALUES('日本語'||char(10)||'é', x'00');
        INSERT INTO \"ü t\" VALUES('😀', NULL);",
    );
}

#[test]
fn create_text_with_comments_is_completed_like_the_shell() {
    same_as_shell(
        "CREATE TABLE t1(a -- comment
        , b);
        CREATE TABLE t2(a /* c */, b);
        PRAGMA writable_schema=ON;
        INSERT INTO sqlite_schema VALUES('table','w1','w1',0,'CREATE TABLE w1(a) -- tail');
        INSERT INTO sqlite_schema VALUES('table','w2','w2',0,'CREATE TABLE w2(a) /* tail');
        PRAGMA writable_schema=OFF;",
    );
}

const SUBSET_DB: &str = "
    CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
    INSERT INTO a(v) VALUES('a1');
    CREATE TABLE b_x(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
    INSERT INTO b_x(v) VALUES('b1'),('b2');
    CREATE TABLE \"My T\"(x);
    INSERT INTO \"My T\" VALUES(1);
    CREATE INDEX ia ON a(v);
    CREATE INDEX imt ON \"My T\"(x);
    CREATE TRIGGER ta AFTER INSERT ON a BEGIN SELECT 1; END;
    CREATE VIEW va AS SELECT * FROM a;
    CREATE VIRTUAL TABLE f USING fts5(body);
    INSERT INTO f VALUES('x');";

#[test]
fn subset_takes_tables_with_their_indexes_triggers_and_sequence_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = create(dir.path(), "s.db", SUBSET_DB);
    // Case-insensitive, no wildcards ("b_%" and "b%x" match nothing), unknown names skipped.
    let names: Vec<String> = ["A", "my t", "b_%", "b%x", "nope"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        ours(&path, Some(&names)),
        "PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
INSERT INTO a VALUES(1,'a1');
CREATE TABLE IF NOT EXISTS \"My T\"(x);
INSERT INTO \"My T\" VALUES(1);
DELETE FROM sqlite_sequence WHERE name='a';
INSERT INTO sqlite_sequence VALUES('a',1);
CREATE INDEX ia ON a(v);
CREATE INDEX imt ON \"My T\"(x);
CREATE TRIGGER ta AFTER INSERT ON a BEGIN SELECT 1; END;
COMMIT;
"
    );
}

#[test]
fn subset_of_a_virtual_table_brings_its_shadow_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = create(dir.path(), "s.db", SUBSET_DB);
    let d = ours(&path, Some(&["F".to_string()]));
    assert!(d.starts_with(
        "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nPRAGMA writable_schema=ON;\n\
         INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)VALUES('table','f','f',0,\
         'CREATE VIRTUAL TABLE f USING fts5(body)');\n\
         CREATE TABLE IF NOT EXISTS 'f_data'"
    ));
    assert!(d.ends_with("PRAGMA writable_schema=OFF;\nCOMMIT;\n"), "{d}");
    for shadow in ["f_idx", "f_content", "f_docsize", "f_config"] {
        assert!(
            d.contains(&format!("CREATE TABLE IF NOT EXISTS '{shadow}'")),
            "{shadow}: {d}"
        );
    }
    assert!(!d.contains("CREATE TABLE a("));
    // Loading the subset into a fresh database gives a working FTS table (the schema rows
    // written through writable_schema take effect on the next connection).
    let fresh = create(dir.path(), "fresh.db", &d);
    let fresh = Connection::open(fresh, OpenFlags::READ_ONLY).unwrap();
    assert_eq!(
        fresh
            .query_i64("SELECT count(*) FROM f WHERE f MATCH 'x'")
            .unwrap(),
        Some(1)
    );
}

#[test]
fn empty_subset_is_just_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = create(dir.path(), "s.db", SUBSET_DB);
    assert_eq!(
        ours(
            &path,
            Some(&["va".to_string(), "sqlite_sequence".to_string()])
        ),
        "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCOMMIT;\n"
    );
}

#[test]
fn stats_count_rows_tables_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = create(
        dir.path(),
        "s.db",
        "CREATE TABLE t(x); INSERT INTO t VALUES(1),(2);",
    );
    let c = Connection::open(&path, OpenFlags::READ_ONLY).unwrap();
    let mut out = Vec::new();
    let stats = dump(&c, None, &mut out).unwrap();
    assert_eq!((stats.rows, stats.tables, stats.errors), (2, 1, 0));
    assert_eq!(stats.bytes, out.len() as u64);
    assert!(c.is_autocommit().unwrap(), "the snapshot is released");
}

/// A writer that fails after `limit` bytes, like a client that disconnects.
struct FailingWriter {
    written: usize,
    limit: usize,
    largest_write: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "client went away",
            ));
        }
        self.written += buf.len();
        self.largest_write = self.largest_write.max(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn big_db(dir: &Path) -> PathBuf {
    create(
        dir,
        "big.db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<50000)
        INSERT INTO t SELECT i, printf('row %d %.40c', i, 'x') FROM n;",
    )
}

#[test]
fn writer_failure_is_a_write_error_and_ends_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = big_db(dir.path());
    let c = Connection::open(&path, OpenFlags::READ_ONLY).unwrap();
    let mut w = FailingWriter {
        written: 0,
        limit: 200_000,
        largest_write: 0,
    };
    match dump(&c, None, &mut w) {
        Err(DumpError::Write(e)) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
        other => panic!("expected a write error, got {other:?}"),
    }
    assert!(
        c.is_autocommit().unwrap(),
        "the snapshot is released after a failure"
    );
}

#[test]
fn output_is_streamed_in_bounded_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let path = big_db(dir.path());
    let c = Connection::open(&path, OpenFlags::READ_ONLY).unwrap();
    let mut w = FailingWriter {
        written: 0,
        limit: usize::MAX,
        largest_write: 0,
    };
    let stats = dump(&c, None, &mut w).unwrap();
    assert_eq!(stats.bytes, w.written as u64);
    assert!(w.written > 3_000_000);
    assert!(
        w.largest_write <= 64 * 1024,
        "largest single write: {}",
        w.largest_write
    );
}

#[test]
fn sqlite_errors_are_sqlite_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let c = Connection::open(&path, OpenFlags::READ_ONLY).unwrap();
    assert!(matches!(
        dump(&c, None, &mut Vec::new()),
        Err(DumpError::Sqlite(_))
    ));
}

#[test]
fn dump_is_one_snapshot_while_another_connection_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = create(
        dir.path(),
        "snap.db",
        "PRAGMA journal_mode=WAL;
        CREATE TABLE a(id INTEGER PRIMARY KEY, n INT);
        CREATE TABLE b(id INTEGER PRIMARY KEY, n INT);
        WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM k WHERE i<2000)
        INSERT INTO a SELECT i, 0 FROM k;
        INSERT INTO b SELECT id, 0 FROM a;",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop) = (path.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let w = Connection::open(&path, OpenFlags::READ_WRITE).unwrap();
            w.busy_timeout(5000).unwrap();
            let mut commits = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Both tables change in one transaction: a consistent dump has a == b.
                w.execute_batch(
                    "BEGIN IMMEDIATE; UPDATE a SET n = n + 1; UPDATE b SET n = n + 1; COMMIT;",
                )
                .unwrap();
                commits += 1;
            }
            commits
        })
    };
    let reader = Connection::open(&path, OpenFlags::READ_ONLY).unwrap();
    // As the server's readers do: a read can meet the writer mid-checkpoint (SQLITE_BUSY).
    reader.busy_timeout(5000).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let mut out = Vec::new();
        dump(&reader, None, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let values = |table: &str| -> Vec<String> {
            let prefix = format!("INSERT INTO {table} VALUES(");
            text.lines()
                .filter_map(|l| l.strip_prefix(&prefix))
                .map(|rest| {
                    rest.split(',')
                        .nth(1)
                        .unwrap()
                        .trim_end_matches(");")
                        .to_string()
                })
                .collect()
        };
        let (a, b) = (values("a"), values("b"));
        assert_eq!(a.len(), 2000);
        assert!(
            a.iter().all(|v| *v == a[0]),
            "table a changed in the middle of the dump"
        );
        assert_eq!(a, b, "tables a and b come from different snapshots");
        seen.insert(a[0].clone());
    }
    stop.store(true, Ordering::Relaxed);
    let commits = writer.join().unwrap();
    assert!(commits > 0);
    eprintln!(
        "{commits} concurrent commits; dumps saw {} distinct states",
        seen.len()
    );
}
