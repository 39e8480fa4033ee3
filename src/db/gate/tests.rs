//! The gate on real connections, through the functions the node runs users' SQL with
//! (`db::execute`): one test per rule, each with the attack it stops.

use raftlite_ffi::{Connection, OpenFlags};

use super::*;
use crate::db::execute::{
    execute_request, execute_script, is_read_only, query_request, ReadLimits, RequestResults,
    ScriptOutcome,
};
use crate::db::request::{Request, ResultOptions, RowsPolicy, SqlStatement, StatementOutcome};

const BUDGET: u64 = 1_000_000_000;

/// A file-backed connection with the gate, as `db::settings` opens them (an in-memory one
/// would make `ATTACH ''` and temp files behave differently).
fn writer(dir: &tempfile::TempDir) -> Connection {
    let mut c = Connection::open_deterministic(
        dir.path().join("db.sqlite"),
        OpenFlags::READ_WRITE | OpenFlags::CREATE,
    )
    .unwrap();
    crate::db::settings::install_gate(&mut c).unwrap();
    c.set_statement_cache_capacity(raftlite_ffi::DEFAULT_STATEMENT_CACHE_CAPACITY);
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE TABLE _raftlite_state(id, x);",
    )
    .unwrap();
    c
}

fn req(sqls: &[&str]) -> Request {
    Request {
        statements: sqls.iter().map(|s| SqlStatement::new(*s)).collect(),
        transaction: false,
    }
}

fn write_with(c: &Connection, sqls: &[&str], budget: u64) -> RequestResults {
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    let out = execute_request(
        c,
        &req(sqls),
        RowsPolicy::AllQueries,
        ResultOptions::default(),
        budget,
    )
    .expect("no fault of the node");
    c.execute_batch("COMMIT")
        .unwrap_or_else(|e| panic!("the entry of {sqls:?} commits: {e} ({out:?})"));
    out
}

fn write(c: &Connection, sqls: &[&str]) -> RequestResults {
    write_with(c, sqls, BUDGET)
}

fn errors(r: &RequestResults) -> Vec<Option<String>> {
    r.results
        .iter()
        .map(|s| match &s.outcome {
            StatementOutcome::Error(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn only_error(r: &RequestResults) -> String {
    match errors(r).as_slice() {
        [Some(m)] => m.clone(),
        other => panic!("expected one error, got {other:?} ({r:?})"),
    }
}

fn int(c: &Connection, sql: &str) -> i64 {
    c.query_i64(sql).unwrap().unwrap_or(i64::MIN)
}

/// The attack that stopped every node for good: SQLite applies a flag pragma while compiling,
/// so `EXPLAIN PRAGMA query_only=1` made the writer read-only and the next statement of the
/// apply (recording the applied index) failed. The gate refuses it at compile time, with
/// rqlite's text.
#[test]
fn explain_pragma_query_only_is_refused_and_the_writer_stays_writable() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    for sql in [
        "EXPLAIN PRAGMA query_only=1",
        "EXPLAIN QUERY PLAN PRAGMA query_only=1",
        "PRAGMA main.query_only=1",
        "SELECT * FROM pragma_query_only WHERE 0; PRAGMA query_only=ON",
    ] {
        let out = write(&c, &[sql]);
        assert!(
            errors(&out)
                .iter()
                .flatten()
                .any(|e| e == "disallowed pragma"),
            "{sql}: {out:?}"
        );
        assert_eq!(int(&c, "PRAGMA query_only"), 0, "{sql}");
    }
    let out = write(&c, &["INSERT INTO t(v) VALUES(1)"]);
    assert_eq!(errors(&out), vec![None]);
}

/// `ATTACH` of a file created it anywhere on every node's disk, outside every snapshot.
#[test]
fn attach_is_refused_and_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    let target = dir.path().join("elsewhere.db");
    let attach = format!("ATTACH DATABASE '{}' AS e", target.display());
    let out = write(&c, &[&attach, "CREATE TABLE e.x(y)"]);
    let errs = errors(&out);
    assert!(
        errs[0]
            .as_deref()
            .unwrap()
            .starts_with("ATTACH and DETACH are not allowed"),
        "{errs:?}"
    );
    assert!(errs[1].is_some(), "{errs:?}");
    assert!(!target.exists());
    for sql in ["ATTACH ':memory:' AS m", "ATTACH '' AS m", "DETACH main"] {
        assert!(
            only_error(&write(&c, &[sql])).starts_with("ATTACH and DETACH"),
            "{sql}"
        );
    }
    assert_eq!(
        int(
            &c,
            "SELECT count(*) FROM pragma_database_list WHERE name NOT IN ('main', 'temp')"
        ),
        0
    );
}

/// Settings of one connection changed later results on the node that set them, not on one
/// restarted from a snapshot. Most are refused; a few may be set for one request, and the next
/// request starts from the default again.
#[test]
fn connection_settings_are_refused_or_last_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    for sql in [
        "PRAGMA cache_size=1",
        "PRAGMA automatic_index=0",
        "PRAGMA max_page_count=1",
        "PRAGMA locking_mode=EXCLUSIVE",
        "PRAGMA temp_store_directory='/tmp'",
        "PRAGMA data_store_directory='/tmp'",
        "PRAGMA mmap_size=1000000",
        "PRAGMA count_changes=1",
        "PRAGMA no_such_pragma=1",
    ] {
        let e = only_error(&write(&c, &[sql]));
        assert!(e.starts_with("disallowed pragma"), "{sql}: {e}");
    }
    assert_eq!(int(&c, "PRAGMA cache_size"), -2000);
    assert_eq!(int(&c, "PRAGMA automatic_index"), 1);

    // recursive_triggers for one request: it works there, and is off in the next.
    write(
        &c,
        &[
            "CREATE TABLE n(x)",
            "CREATE TRIGGER more AFTER INSERT ON n WHEN new.x < 5 BEGIN INSERT INTO n VALUES(new.x + 1); END",
        ],
    );
    let out = write(
        &c,
        &["PRAGMA recursive_triggers=1", "INSERT INTO n VALUES(1)"],
    );
    assert_eq!(errors(&out), vec![None, None]);
    assert_eq!(int(&c, "SELECT count(*) FROM n"), 5);
    assert_eq!(int(&c, "PRAGMA recursive_triggers"), 0);
    write(&c, &["INSERT INTO n VALUES(1)"]);
    assert_eq!(
        int(&c, "SELECT count(*) FROM n"),
        7,
        "one more row and its one trigger"
    );

    // case_sensitive_like has no read form: compare what LIKE does.
    write(&c, &["PRAGMA case_sensitive_like=1"]);
    assert_eq!(int(&c, "SELECT 'a' LIKE 'A'"), 1);
    // reverse_unordered_selects would change which rows an unordered INSERT ... SELECT takes.
    write(&c, &["PRAGMA reverse_unordered_selects=1"]);
    assert_eq!(int(&c, "PRAGMA reverse_unordered_selects"), 0);
}

/// Layout pragmas do nothing on a database that exists; they are skipped instead of being
/// kept on the connection for a VACUUM. Values stored in the file may be set.
#[test]
fn layout_pragmas_are_skipped_and_stored_values_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    let out = write(
        &c,
        &[
            "PRAGMA page_size=8192",
            "PRAGMA auto_vacuum=FULL",
            "PRAGMA user_version=7",
            "PRAGMA application_id=9",
        ],
    );
    assert_eq!(errors(&out), vec![None, None, None, None]);
    assert_eq!(int(&c, "PRAGMA page_size"), 4096);
    assert_eq!(int(&c, "PRAGMA auto_vacuum"), 0);
    assert_eq!(int(&c, "PRAGMA user_version"), 7);
    assert_eq!(int(&c, "PRAGMA application_id"), 9);
    let e = only_error(&write(&c, &["PRAGMA temp.user_version=3"]));
    assert!(e.contains("main database"), "{e}");
}

/// Values that differ between nodes (file paths, page counts, counters of the connection)
/// cannot reach the data, whatever the statement's shape.
#[test]
fn values_that_differ_between_nodes_are_refused_in_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    write(&c, &["INSERT INTO t(v) VALUES('x')"]);
    for sql in [
        "INSERT INTO t(v) SELECT file FROM pragma_database_list",
        "INSERT INTO t(v) SELECT * FROM pragma_page_count",
        "INSERT INTO t(v) VALUES(total_changes())",
        "INSERT INTO t(v) VALUES(changes())",
        "INSERT INTO t(v) SELECT fts3_tokenizer('simple')",
        "INSERT INTO t(v) SELECT pageno FROM dbstat",
        "CREATE VIRTUAL TABLE s USING dbstat",
        "INSERT INTO t(v) SELECT data FROM sqlite_dbpage",
        "UPDATE sqlite_dbpage SET data = zeroblob(4096) WHERE pgno = 2",
        "INSERT INTO t(v) SELECT * FROM pragma_data_version",
        "SELECT load_extension('x')",
    ] {
        let e = only_error(&write(&c, &[sql]));
        assert!(
            e.contains("not allowed") || e.starts_with("disallowed pragma"),
            "{sql}: {e}"
        );
    }
    // Through a trigger body too: the body is compiled into the statement that fires it.
    write(
        &c,
        &["CREATE TRIGGER leak AFTER UPDATE ON t BEGIN INSERT INTO t(v) VALUES(total_changes()); END"],
    );
    let e = only_error(&write(&c, &["UPDATE t SET v = 'y'"]));
    assert!(e.contains("total_changes() is not allowed"), "{e}");
    assert_eq!(int(&c, "SELECT count(*) FROM t"), 1);
    // Full-text and R-tree tables are fine.
    let out = write(
        &c,
        &[
            "CREATE VIRTUAL TABLE f USING fts5(b)",
            "INSERT INTO f VALUES('hello')",
            "CREATE VIRTUAL TABLE r USING rtree(id, x0, x1)",
        ],
    );
    assert_eq!(errors(&out), vec![None, None, None]);
}

/// Temporary tables, views and triggers lived on the writer only: a temp trigger on a main
/// table kept firing on the node that created it and not on one restarted since.
#[test]
fn temporary_objects_do_not_outlive_their_request() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    let out = write(
        &c,
        &[
            "CREATE TEMP TABLE scratch(x)",
            "INSERT INTO scratch VALUES(1), (2)",
            "CREATE TEMP TRIGGER spy AFTER INSERT ON main.t BEGIN INSERT INTO scratch VALUES(new.v); END",
            "CREATE TEMP VIEW tv AS SELECT * FROM scratch",
            "INSERT INTO t(v) SELECT count(*) FROM tv",
        ],
    );
    assert_eq!(errors(&out), vec![None; 5]);
    assert_eq!(int(&c, "SELECT v FROM t"), 2);
    // Only raftlite's own table of captured changes, which every writer has.
    assert_eq!(
        int(
            &c,
            "SELECT count(*) FROM temp.sqlite_schema WHERE name != '_raftlite_cdc_events'"
        ),
        0
    );
    assert_eq!(int(&c, "SELECT count(*) FROM temp.sqlite_schema"), 1);
    let out = write(
        &c,
        &["INSERT INTO t(v) VALUES(3)", "SELECT count(*) FROM scratch"],
    );
    assert!(
        errors(&out)[1]
            .as_deref()
            .unwrap()
            .contains("no such table"),
        "{out:?}"
    );
}

/// The state table is raftlite's: dropping it, changing it, or hiding it behind a temp table
/// of the same name made the apply's own bookkeeping fail (or write elsewhere) on every node.
#[test]
fn the_state_table_is_out_of_reach_of_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    for sql in [
        "DROP TABLE _raftlite_state",
        "UPDATE _raftlite_state SET x = 1",
        "DELETE FROM _raftlite_state",
        "INSERT INTO _raftlite_state VALUES(2, 2)",
        "ALTER TABLE _raftlite_state RENAME TO other",
        "CREATE TRIGGER stop BEFORE UPDATE ON _raftlite_state BEGIN SELECT RAISE(FAIL, 'no'); END",
        "CREATE INDEX i ON _RAFTLITE_STATE(x)",
        "CREATE TEMP TABLE _raftlite_state(id, x)",
        "CREATE TEMP VIEW _raftlite_state AS SELECT 1",
        "INSERT INTO t(v) SELECT x FROM _raftlite_state",
    ] {
        let e = only_error(&write(&c, &[sql]));
        assert!(
            e.contains("_raftlite_state is raftlite's own"),
            "{sql}: {e}"
        );
    }
    assert_eq!(
        int(
            &c,
            "SELECT count(*) FROM sqlite_schema WHERE name = '_raftlite_state'"
        ),
        1
    );
}

/// `RELEASE "raftlite request"` released the savepoint the request runs in; the release at the
/// end of the request then failed, and that stopped every node.
#[test]
fn savepoints_named_like_raftlites_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    for sql in [
        "RELEASE \"raftlite request\"",
        "ROLLBACK TO \"raftlite request\"",
        "SAVEPOINT raftlite_x",
        "RELEASE \"RaftLite user transaction\"",
    ] {
        let e = only_error(&write(&c, &[sql]));
        assert!(e.contains("are reserved"), "{sql}: {e}");
    }
    let out = write(
        &c,
        &[
            "SAVEPOINT mine",
            "INSERT INTO t(v) VALUES(1)",
            "RELEASE mine",
        ],
    );
    assert_eq!(errors(&out), vec![None, None, None]);
}

/// A write that never ends stops at its budget, at the same point whatever the connection ran
/// before (a cached statement, a fresh one), and is undone; the next write runs.
#[test]
fn the_budget_stops_an_endless_write_at_the_same_point_and_undoes_it() {
    const ENDLESS: &str = "INSERT INTO t(v) SELECT x FROM (WITH RECURSIVE c(x) AS \
                           (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)";
    let run = |warm: bool| {
        let dir = tempfile::tempdir().unwrap();
        let c = writer(&dir);
        if warm {
            // The same text, cached and run to completion before, changes nothing.
            write_with(
                &c,
                &[ENDLESS.replace("FROM c)", "FROM c LIMIT 10)").as_str()],
                BUDGET,
            );
            write(&c, &["DELETE FROM t"]);
        }
        let out = write_with(
            &c,
            &[
                "INSERT INTO t(v) VALUES('kept?')",
                ENDLESS,
                "INSERT INTO t(v) VALUES('never')",
            ],
            20_000,
        );
        let gate = crate::db::settings::gate(&c).unwrap();
        let used = gate.budget_use();
        assert!(used.exhausted);
        assert_eq!(
            used.used, 20_001,
            "stopped at the first step past the budget"
        );
        assert_eq!(errors(&out), vec![None, Some(EXECUTE_TIMEOUT_ERROR.into())]);
        assert!(
            out.error
                .as_deref()
                .unwrap()
                .starts_with("execute timeout: "),
            "{out:?}"
        );
        assert_eq!(
            int(&c, "SELECT count(*) FROM t"),
            0,
            "the request is undone"
        );
        let next = write(&c, &["INSERT INTO t(v) VALUES('next')"]);
        assert_eq!(errors(&next), vec![None]);
        assert_eq!(int(&c, "SELECT count(*) FROM t"), 1);
        format!(
            "{:?}",
            out.results.iter().map(|r| &r.outcome).collect::<Vec<_>>()
        )
    };
    assert_eq!(run(false), run(true));

    // A read-only statement over its budget in a write request is stopped the same way.
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    let out = write_with(
        &c,
        &["INSERT INTO t(v) VALUES(1)", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"],
        5_000,
    );
    assert_eq!(errors(&out)[1].as_deref(), Some(EXECUTE_TIMEOUT_ERROR));
    assert_eq!(int(&c, "SELECT count(*) FROM t"), 0);
}

/// A deferred foreign key violation only showed at the entry's COMMIT, which failed on every
/// node and stopped them all. It now fails the request that caused it.
#[test]
fn a_deferred_foreign_key_violation_fails_its_request_not_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    c.execute_batch("PRAGMA foreign_keys=ON").unwrap();
    write(
        &c,
        &[
            "CREATE TABLE p(id INTEGER PRIMARY KEY)",
            "CREATE TABLE ch(p REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)",
            "CREATE TABLE im(p REFERENCES p(id))",
        ],
    );
    for sqls in [
        vec!["INSERT INTO t(v) VALUES(1)", "INSERT INTO ch VALUES(5)"],
        vec!["PRAGMA defer_foreign_keys=1", "INSERT INTO im VALUES(5)"],
    ] {
        let out = write(&c, &sqls);
        assert_eq!(
            out.error.as_deref(),
            Some("FOREIGN KEY constraint failed"),
            "{sqls:?}: {out:?}"
        );
        assert_eq!(int(&c, "SELECT count(*) FROM t"), 0);
    }
    let out = write(&c, &["INSERT INTO p VALUES(5)", "INSERT INTO ch VALUES(5)"]);
    assert_eq!(out.error, None);
    assert_eq!(int(&c, "PRAGMA defer_foreign_keys"), 0);
}

/// Reads cannot write (#21): not through a write statement, transaction control, temporary
/// tables or settings, on whatever connection runs them. The answer is rqlite's.
#[test]
fn queries_cannot_change_the_database_or_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    write(&c, &["INSERT INTO t(v) VALUES(1)"]);
    let query = |sqls: &[&str]| {
        query_request(
            &c,
            &req(sqls),
            ResultOptions::default(),
            ReadLimits::steps(BUDGET),
        )
        .unwrap()
    };
    for sql in [
        "INSERT INTO t(v) VALUES(2)",
        "BEGIN",
        "COMMIT",
        "SAVEPOINT s",
        "CREATE TEMP TABLE x(a)",
        "PRAGMA user_version=3",
        "PRAGMA optimize",
        "ATTACH ':memory:' AS m",
        "EXPLAIN INSERT INTO t(v) VALUES(2)",
    ] {
        let out = query(&[sql]);
        assert_eq!(only_error(&out), QUERY_WRITE_ERROR, "{sql}");
    }
    // The raw pages (SQLite is built with sqlite_dbpage, for the backup engine) stay out of
    // reads: they hold the state table and freed data.
    for sql in [
        "SELECT data FROM sqlite_dbpage WHERE pgno = 1",
        "SELECT count(*) FROM sqlite_dbpage('main')",
        "WITH p AS (SELECT * FROM sqlite_dbpage) SELECT count(*) FROM p",
    ] {
        let e = only_error(&query(&[sql]));
        assert!(e.contains("sqlite_dbpage is not allowed"), "{sql}: {e}");
    }
    let out = query(&[
        "PRAGMA cache_size=5",
        "PRAGMA wal_checkpoint",
        "PRAGMA recursive_triggers=1",
    ]);
    assert_eq!(
        errors(&out),
        vec![
            Some("disallowed pragma: cache_size cannot be set in a query".into()),
            Some("disallowed pragma".into()),
            Some("disallowed pragma: recursive_triggers cannot be set in a query".into()),
        ]
    );
    assert_eq!(int(&c, "PRAGMA cache_size"), -2000);
    assert_eq!(int(&c, "SELECT count(*) FROM t"), 1);
    let out = query(&[
        "SELECT count(*) FROM t",
        "PRAGMA table_info(t)",
        "SELECT name FROM pragma_table_info('t')",
        "PRAGMA database_list",
        "PRAGMA user_version",
        "SELECT * FROM _raftlite_state",
        "EXPLAIN QUERY PLAN SELECT * FROM t",
    ]);
    assert_eq!(errors(&out), vec![None; 7]);
    // A read that never ends stops at its budget; the statements after it are not run.
    let out = query_request(
        &c,
        &req(&[
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
            "SELECT 1",
        ]),
        ResultOptions::default(),
        ReadLimits::steps(10_000),
    )
    .unwrap();
    assert_eq!(
        errors(&out),
        vec![
            Some(QUERY_TIMEOUT_ERROR.into()),
            Some(QUERY_TIMEOUT_ERROR.into())
        ]
    );
    assert!(c.is_autocommit().unwrap());
}

/// Deciding whether a `/db/request` only reads prepares its statements on a reader: that
/// alone applied flag pragmas to the pooled connection.
#[test]
fn deciding_read_only_changes_nothing_on_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    for sql in [
        "PRAGMA case_sensitive_like=1",
        "EXPLAIN PRAGMA query_only=1",
        "SELECT 1",
    ] {
        let ro = is_read_only(&c, &req(&[sql]));
        assert_eq!(ro, sql == "SELECT 1", "{sql}");
    }
    assert_eq!(int(&c, "SELECT 'a' LIKE 'A'"), 1);
    assert_eq!(int(&c, "PRAGMA query_only"), 0);
}

fn script(c: &Connection, text: &str) -> ScriptOutcome {
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    let out = execute_script(c, text.lines().map(|l| Ok(l.to_string())), BUDGET).unwrap();
    c.execute_batch(if matches!(out, ScriptOutcome::Done { .. }) {
        "COMMIT"
    } else {
        "ROLLBACK"
    })
    .unwrap();
    out
}

/// A dump of a database with a full-text table (the shell's `writable_schema` lines) still
/// loads, and the table works after it; other writes into the schema table are refused.
#[test]
fn a_dump_with_a_virtual_table_loads_and_other_schema_writes_do_not() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = writer(&src_dir);
    write(
        &src,
        &[
            "CREATE VIRTUAL TABLE docs USING fts5(body)",
            "INSERT INTO docs VALUES('hello world'), ('other')",
        ],
    );
    let mut dump = Vec::new();
    crate::db::dump::dump_excluding(&src, None, &[STATE_TABLE, "t"], &mut dump).unwrap();
    let dump = String::from_utf8(dump).unwrap();
    assert!(dump.contains("PRAGMA writable_schema=ON;"), "{dump}");

    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    let out = script(&c, &dump);
    assert!(matches!(out, ScriptOutcome::Done { .. }), "{out:?}");
    assert_eq!(
        int(&c, "SELECT count(*) FROM docs WHERE docs MATCH 'hello'"),
        1
    );
    assert_eq!(int(&c, "PRAGMA writable_schema"), 0);

    // Anything else in writable_schema mode is refused: a real table's row, a row of another
    // shape, an update of the schema table.
    for bad in [
        "INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)VALUES('table','x','x',2,'CREATE TABLE x(a)');",
        "INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)VALUES('table','v','v',0,'CREATE VIRTUAL TABLE v USING dbstat');",
        "UPDATE sqlite_schema SET sql = 'garbage' WHERE name = 't';",
        "PRAGMA writable_schema=1;",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let c = writer(&dir);
        let text = format!("PRAGMA writable_schema=ON;\n{bad}\nPRAGMA writable_schema=OFF;\n");
        let out = script(&c, &text);
        assert!(matches!(out, ScriptOutcome::Failed(_)), "{bad}: {out:?}");
        assert_eq!(int(&c, "SELECT count(*) FROM sqlite_schema WHERE name IN ('x', 'v')"), 0);
        assert_eq!(int(&c, "SELECT count(*) FROM t"), 0, "{bad}: the schema still loads");
    }
}

/// A virtual table row whose shadow tables do not match (a load can write them directly)
/// fails the load instead of every later statement on the table.
#[test]
fn a_load_with_a_damaged_virtual_table_fails() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    let text = "PRAGMA writable_schema=ON;\n\
        INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)VALUES('table','docs','docs',0,'CREATE VIRTUAL TABLE docs USING fts5(body)');\n\
        CREATE TABLE 'docs_data'(id INTEGER PRIMARY KEY, block BLOB);\n\
        INSERT INTO docs_data VALUES(1,X'00ff00ff');\n\
        INSERT INTO docs_data VALUES(10,X'000000000101010001010101');\n\
        CREATE TABLE 'docs_idx'(segid, term, pgno, PRIMARY KEY(segid, term)) WITHOUT ROWID;\n\
        CREATE TABLE 'docs_content'(id INTEGER PRIMARY KEY, c0);\n\
        INSERT INTO docs_content VALUES(1,'hello world');\n\
        CREATE TABLE 'docs_docsize'(id INTEGER PRIMARY KEY, sz BLOB);\n\
        CREATE TABLE 'docs_config'(k PRIMARY KEY, v) WITHOUT ROWID;\n\
        INSERT INTO docs_config VALUES('version',4);\n\
        PRAGMA writable_schema=OFF;\n";
    let out = script(&c, text);
    match out {
        ScriptOutcome::Failed(m) => assert!(m.contains("docs"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        int(
            &c,
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'docs%'"
        ),
        0
    );
}

#[test]
fn every_pragma_on_the_list_exists_and_the_list_is_sorted() {
    let c = Connection::open(":memory:", OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
    let mut known = Vec::new();
    let mut stmt = c.prepare("SELECT name FROM pragma_pragma_list").unwrap();
    while stmt.step().unwrap().is_row() {
        known.push(String::from_utf8_lossy(stmt.column_text(0)).into_owned());
    }
    for rule in PRAGMAS {
        assert!(
            known.iter().any(|k| k == rule.name),
            "{} is not a pragma",
            rule.name
        );
    }
    let names: Vec<_> = PRAGMAS.iter().map(|p| p.name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    // Every pragma SQLite has has a rule: none answers "not supported" to a reader.
    for name in &known {
        assert!(names.contains(&name.as_str()), "{name} has no rule");
    }
}

#[test]
fn every_pragma_can_be_read_by_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let settings = crate::db::settings::DbSettings::default();
    drop(crate::db::settings::open_writer(&path, &settings).unwrap());
    let reader = crate::db::settings::open_reader(&path, &settings).unwrap();
    // Pragmas that need an argument to be read, or that answer about a table.
    let needs_argument = [
        "foreign_key_list",
        "index_info",
        "index_list",
        "index_xinfo",
        "table_info",
        "table_xinfo",
    ];
    for rule in PRAGMAS {
        if needs_argument.contains(&rule.name) || rule.set == Set::RqliteAlways {
            continue;
        }
        let sql = format!("PRAGMA {}", rule.name);
        let out = query_request(
            &reader,
            &req(&[&sql]),
            ResultOptions::default(),
            ReadLimits::steps(BUDGET),
        )
        .unwrap();
        assert!(
            !matches!(&out.results[0].outcome, StatementOutcome::Error(e) if e.contains("pragma")),
            "{sql}: {:?}",
            out.results[0].outcome
        );
    }
}

/// Runs `requests` on `warm` (warming whatever it caches), copies its database with the backup
/// API (which leaves its statement cache alone), then runs them again on both `warm` and a
/// connection opened cold on the copy, and returns the steps each counted per request.
fn steps_warm_and_cold(
    dir: &tempfile::TempDir,
    warm: &Connection,
    requests: &[&[&str]],
) -> Vec<(u64, u64)> {
    for r in requests {
        write(warm, r);
    }
    let copy = dir.path().join("copy.sqlite");
    crate::db::backup::copy_to_file(warm, &copy, 100, |_| Ok(())).unwrap();
    let mut cold = Connection::open_deterministic(&copy, OpenFlags::READ_WRITE).unwrap();
    crate::db::settings::install_gate(&mut cold).unwrap();
    cold.set_statement_cache_capacity(raftlite_ffi::DEFAULT_STATEMENT_CACHE_CAPACITY);
    let steps = |c: &Connection, r: &[&str]| {
        let out = write(c, r);
        assert!(
            out.error.is_none() && errors(&out).iter().all(Option::is_none),
            "{r:?}: {out:?}"
        );
        crate::db::settings::gate(c).unwrap().budget_use().used
    };
    requests
        .iter()
        .map(|r| (steps(warm, r), steps(&cold, r)))
        .collect()
}

/// The budget counts every program that runs for a request. SQLite carries a statement's
/// count over from its earlier runs when the progress handler is called every N > 1
/// instructions, so a cached statement (a node that has run for a while) and a fresh one (a
/// node that just restarted) would stop at different points; called at every instruction
/// check, both count the same.
#[test]
fn a_cached_and_a_fresh_statement_count_the_same_steps() {
    let dir = tempfile::tempdir().unwrap();
    let warm = writer(&dir);
    // Programs of a few lengths, so that no count happens to line up by chance.
    let texts: Vec<String> = (250..257)
        .map(|n| {
            format!(
                "INSERT INTO t(v) SELECT count(*) FROM (WITH RECURSIVE c(i) AS (SELECT 1 \
                 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) SELECT i FROM c)"
            )
        })
        .collect();
    let requests: Vec<Vec<&str>> = texts.iter().map(|t| vec![t.as_str(), t.as_str()]).collect();
    let requests: Vec<&[&str]> = requests.iter().map(Vec::as_slice).collect();
    let counts = steps_warm_and_cold(&dir, &warm, &requests);
    assert!(
        warm.statement_cache_stats().hits > 0,
        "the warm run used its cached statements"
    );
    for (warm, cold) in counts {
        assert!(warm > 250);
        assert_eq!(warm, cold);
    }
}

/// Full-text and R-tree modules keep caches on the connection (their configuration, FTS5's
/// structure record) and fill them with programs of their own, which the budget counts. The
/// schema is reloaded after every request that used a table of a database with virtual
/// tables, so each request starts with empty caches, as on a node that just restarted.
#[test]
fn a_warm_and_a_fresh_connection_count_the_same_steps_with_virtual_tables() {
    let dir = tempfile::tempdir().unwrap();
    let warm = writer(&dir);
    write(
        &warm,
        &[
            "CREATE VIRTUAL TABLE f5 USING fts5(b)",
            "CREATE VIRTUAL TABLE f4 USING fts4(b)",
            "CREATE VIRTUAL TABLE r USING rtree(id, x0, x1)",
            "CREATE TABLE log(n)",
            "INSERT INTO f5 SELECT 'word' || value FROM json_each('[1,2,3,4,5,6,7,8,9]')",
            "INSERT INTO f4 SELECT 'word' || value FROM json_each('[1,2,3,4,5,6,7,8,9]')",
            "INSERT INTO r SELECT value, value, value + 1 FROM json_each('[1,2,3,4,5,6,7,8,9]')",
        ],
    );
    let requests: &[&[&str]] = &[
        &["INSERT INTO log SELECT count(*) FROM f5 WHERE f5 MATCH 'word1 OR word2'"],
        &[
            "INSERT INTO f5 VALUES('word10')",
            "INSERT INTO log SELECT rowid FROM f5 WHERE f5 MATCH 'word10'",
        ],
        &["INSERT INTO log SELECT count(*) FROM f4 WHERE f4 MATCH 'word3'"],
        &[
            "INSERT INTO f4 VALUES('word11')",
            "DELETE FROM f4 WHERE rowid = (SELECT max(rowid) FROM f4)",
        ],
        &["INSERT INTO log SELECT count(*) FROM r WHERE x0 > 3 AND x1 < 8"],
        &[
            "INSERT OR REPLACE INTO r VALUES(10, 1, 2)",
            "UPDATE r SET x1 = 3 WHERE id = 10",
        ],
        &["INSERT INTO f5(f5) VALUES('optimize')"],
        &[
            "INSERT INTO log SELECT count(*) FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL \
           SELECT i + 1 FROM c WHERE i < 257) SELECT i FROM c) JOIN f5 ON f5.rowid = i % 9 + 1",
        ],
    ];
    for (r, (warm, cold)) in requests
        .iter()
        .zip(steps_warm_and_cold(&dir, &warm, requests))
    {
        assert_eq!(warm, cold, "{r:?}");
    }
}

/// Once a table holds rowid 9223372036854775807, SQLite picks each new rowid at random from
/// the process-wide PRNG, so the replicas store different rowids (the `apply_diff` fuzz target
/// found it within minutes). A request that leaves a table it wrote at that rowid is undone,
/// whether it inserted that rowid itself or the table already held it (a loaded file).
#[test]
fn a_request_that_leaves_a_table_at_the_largest_rowid_is_undone() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    write(&c, &["CREATE TABLE log(x)", "CREATE TRIGGER tl AFTER INSERT ON log BEGIN INSERT INTO t(id, v) VALUES(9223372036854775807, 'via trigger'); END"]);
    for sqls in [
        vec![
            "INSERT INTO t(v) VALUES(1)",
            "INSERT INTO t(id, v) VALUES(9223372036854775807, 2)",
        ],
        vec![
            "INSERT INTO t(v) VALUES(CAST(1e300 AS INTEGER))",
            "UPDATE t SET id = CAST(1e300 AS INTEGER)",
        ],
        vec!["INSERT INTO log VALUES(1)"],
        vec![
            "CREATE TEMP TABLE tt(a)",
            "INSERT INTO tt(rowid, a) VALUES(9223372036854775807, 1)",
            "INSERT INTO tt(a) VALUES(2)",
        ],
    ] {
        let out = write(&c, &sqls);
        let e = out.error.clone().unwrap_or_default();
        assert!(
            e.contains("would hold rowid 9223372036854775807"),
            "{sqls:?}: {out:?}"
        );
        assert!(
            out.results.is_empty(),
            "no answer carries a rowid drawn at random: {out:?}"
        );
        assert_eq!(int(&c, "SELECT count(*) FROM t"), 0, "{sqls:?}");
    }
    // A table that already holds it (written around the gate, as a loaded file would).
    c.execute_batch("INSERT INTO t(id, v) VALUES(9223372036854775807, 'loaded')")
        .unwrap();
    let out = write(&c, &["INSERT INTO t(v) VALUES('next')"]);
    assert!(out.error.unwrap_or_default().contains("would hold rowid"));
    assert_eq!(int(&c, "SELECT count(*) FROM t"), 1);
    // WITHOUT ROWID tables and views are not looked at; other tables are not affected.
    let out = write(
        &c,
        &[
            "CREATE TABLE w(k PRIMARY KEY) WITHOUT ROWID",
            "INSERT INTO w VALUES(9223372036854775807)",
            "INSERT INTO log VALUES(2)",
        ],
    );
    assert!(
        out.error.unwrap_or_default().contains("would hold rowid"),
        "the trigger writes t"
    );
    let out = write(
        &c,
        &[
            "CREATE TABLE w(k PRIMARY KEY) WITHOUT ROWID",
            "INSERT INTO w VALUES(9223372036854775807)",
        ],
    );
    assert_eq!(out.error, None, "{out:?}");
    // A statement handed out again by the statement cache is not authorized again: what it
    // writes is remembered from its prepare.
    let insert = |id: i64| Request {
        statements: vec![SqlStatement {
            sql: "INSERT INTO log(rowid, x) VALUES(?, 0)".into(),
            params: crate::db::request::Params::Positional(vec![
                crate::db::request::ParamValue::Integer(id),
            ]),
        }],
        transaction: false,
    };
    let run = |r: &Request| {
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        let out = execute_request(
            &c,
            r,
            RowsPolicy::AllQueries,
            ResultOptions::default(),
            BUDGET,
        )
        .unwrap();
        c.execute_batch("COMMIT").unwrap();
        out
    };
    write(&c, &["DROP TRIGGER tl"]);
    // The first run also writes `log` before the statement is prepared, so that statement's
    // own prepare adds nothing new to the request's list: what it writes must still be
    // remembered as its own.
    let mut first = insert(5);
    first
        .statements
        .insert(0, SqlStatement::new("INSERT INTO log VALUES(4)"));
    assert_eq!(run(&first).error, None);
    let hits = c.statement_cache_stats().hits;
    let out = run(&insert(i64::MAX));
    assert!(
        c.statement_cache_stats().hits > hits,
        "the second run came from the cache"
    );
    assert!(out.error.unwrap_or_default().contains("would hold rowid"));
    assert_eq!(int(&c, "SELECT count(*) FROM log"), 2);
    // A load's rows go through cached templates: the end of the script looks at every table.
    let loaded = script(
        &c,
        "INSERT INTO log VALUES(1);\nINSERT INTO log(rowid, x) VALUES(9223372036854775807, 2);\n",
    );
    assert!(
        matches!(&loaded, ScriptOutcome::Failed(m) if m.contains("would hold rowid")),
        "{loaded:?}"
    );
}

/// Found by `apply_diff` (its 30-minute run): a load statement that ends the transaction
/// itself (a write stopped by its budget, or a ROLLBACK conflict clause) left nothing for the
/// runner's ROLLBACK, which failed: a local fault, on every node. It is now the load's
/// answer, and the entry is recorded.
#[test]
fn a_load_statement_that_ends_the_transaction_is_the_loads_answer() {
    let dir = tempfile::tempdir().unwrap();
    let c = writer(&dir);
    for (text, budget, expected) in [
        (
            "CREATE TABLE once(x INTEGER PRIMARY KEY ON CONFLICT ROLLBACK);\nINSERT INTO once VALUES(1);\nINSERT INTO once VALUES(1);\n",
            BUDGET,
            "UNIQUE constraint failed",
        ),
        (
            "CREATE TABLE e(x);\nWITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) INSERT INTO e SELECT i FROM c;\n",
            5_000,
            EXECUTE_TIMEOUT_ERROR,
        ),
        ("CREATE VIRTUAL TABLE f USING fts5(a, b);\n", 20, EXECUTE_TIMEOUT_ERROR),
    ] {
        let path = dir.path().join("load.sql");
        std::fs::write(&path, text).unwrap();
        let mut recorded = false;
        let out = crate::db::execute::run_sql_script(&c, &path, false, budget, |_| {
            recorded = true;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{text}: a fault: {e:#}"));
        assert!(
            matches!(&out, ScriptOutcome::Failed(m) if m.contains(expected)),
            "{text}: {out:?}"
        );
        assert!(recorded, "{text}");
        assert!(c.is_autocommit().unwrap());
        assert_eq!(
            int(&c, "SELECT count(*) FROM sqlite_schema WHERE name IN ('once', 'e', 'f')"),
            0,
            "{text}"
        );
    }
}
