//! Capture through the real write path (`execute_request` inside an entry's transaction):
//! exactly the changes that stayed, whatever undid the others.

use raftlite_ffi::{Connection, OpenFlags};
use serde_json::{json, Value as Json};

use super::*;
use crate::db::execute::execute_request;
use crate::db::request::{Request, SqlStatement};
use crate::db::request::{ResultOptions, RowsPolicy};

const BUDGET: u64 = 1_000_000_000;

fn writer(options: CaptureOptions) -> Connection {
    let mut c = Connection::open(":memory:", OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
    c.set_statement_cache_capacity(raftlite_ffi::DEFAULT_STATEMENT_CACHE_CAPACITY);
    crate::db::settings::install_gate(&mut c).unwrap();
    configure(&mut c, options).unwrap();
    c
}

fn request(sqls: &[&str], transaction: bool) -> Request {
    Request {
        statements: sqls.iter().map(|s| SqlStatement::new(*s)).collect(),
        transaction,
    }
}

/// Applies the requests as one entry (one transaction, armed) and returns its events.
fn entry(c: &Connection, requests: &[Request]) -> Vec<Json> {
    arm(c, true);
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    for r in requests {
        let out = execute_request(
            c,
            r,
            RowsPolicy::ReturningOnly,
            ResultOptions::default(),
            BUDGET,
        )
        .unwrap();
        if out.ended_callers_transaction {
            // As the state machine would: the transaction was replaced by a new one.
            assert!(!c.is_autocommit().unwrap());
        }
    }
    let events = take_entry_events(c).unwrap();
    c.execute_batch("COMMIT").unwrap();
    arm(c, false);
    events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

fn one(c: &Connection, sqls: &[&str]) -> Vec<Json> {
    entry(c, &[request(sqls, false)])
}

#[test]
fn events_carry_rowids_and_both_images_as_rqlite_writes_them() {
    let c = writer(CaptureOptions::default());
    let events = one(
        &c,
        &[
            "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB, n)",
            "INSERT INTO t VALUES(5, 'a', 1.5, x'00ff', NULL)",
            "UPDATE t SET id = 6, name = 'b' WHERE id = 5",
            "DELETE FROM t WHERE id = 6",
        ],
    );
    let a = json!({"data": "AP8=", "id": 5, "n": null, "name": "a", "score": 1.5});
    let b = json!({"data": "AP8=", "id": 6, "n": null, "name": "b", "score": 1.5});
    assert_eq!(
        events,
        vec![
            json!({"op": "INSERT", "table": "t", "new_row_id": 5, "after": a}),
            json!({"op": "UPDATE", "table": "t", "new_row_id": 6, "old_row_id": 5, "before": a, "after": b}),
            json!({"op": "DELETE", "table": "t", "old_row_id": 6, "before": b}),
        ]
    );
    // The table is empty between entries, and an entry without row changes has no events.
    assert!(one(&c, &["CREATE TABLE u(x)"]).is_empty());
}

#[test]
fn the_table_filter_and_rowid_only_mode() {
    let c = writer(CaptureOptions {
        table_filter: Some(regex::Regex::new("^keep").unwrap()),
        row_ids_only: true,
        ..CaptureOptions::default()
    });
    let events = one(
        &c,
        &[
            "CREATE TABLE keep_me(v)",
            "CREATE TABLE skip_me(v)",
            "INSERT INTO keep_me VALUES('x')",
            "INSERT INTO skip_me VALUES('y')",
            "UPDATE keep_me SET v = 'z'",
        ],
    );
    assert_eq!(
        events,
        vec![
            json!({"op": "INSERT", "table": "keep_me", "new_row_id": 1}),
            json!({"op": "UPDATE", "table": "keep_me", "new_row_id": 1, "old_row_id": 1}),
        ]
    );
}

#[test]
fn a_failed_statement_leaves_no_events_unless_its_rows_stayed() {
    let c = writer(CaptureOptions::default());
    one(
        &c,
        &[
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v UNIQUE)",
            "INSERT INTO t VALUES(1, 1)",
        ],
    );
    // ABORT (the default): the statement's first two rows are undone with it.
    let events = one(
        &c,
        &[
            "INSERT INTO t VALUES(2, 2), (3, 3), (4, 1)",
            "INSERT INTO t VALUES(5, 5)",
        ],
    );
    assert_eq!(
        events,
        vec![json!({"op": "INSERT", "table": "t", "new_row_id": 5, "after": {"id": 5, "v": 5}})]
    );
    // FAIL keeps the rows before the failing one: their events stay.
    let events = one(&c, &["INSERT OR FAIL INTO t VALUES(6, 6), (7, 7), (8, 1)"]);
    let ids: Vec<&Json> = events.iter().map(|e| &e["new_row_id"]).collect();
    assert_eq!(ids, vec![&json!(6), &json!(7)]);
    assert_eq!(c.query_i64("SELECT count(*) FROM t").unwrap(), Some(4));
}

#[test]
fn a_fail_at_the_first_row_keeps_what_its_trigger_did() {
    let c = writer(CaptureOptions::default());
    one(
        &c,
        &[
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v UNIQUE)",
            "CREATE TABLE log(id INTEGER PRIMARY KEY, what)",
            "CREATE TRIGGER tr BEFORE INSERT ON t BEGIN INSERT INTO log(what) VALUES(new.v); END",
            "INSERT INTO t VALUES(1, 1)",
        ],
    );
    // The first row fails; its trigger's row stays (FAIL), and the statement counted nothing.
    let events = one(&c, &["INSERT OR FAIL INTO t VALUES(2, 1)"]);
    assert_eq!(
        events,
        vec![
            json!({"op": "INSERT", "table": "log", "new_row_id": 2, "after": {"id": 2, "what": 1}})
        ]
    );
    assert_eq!(c.query_i64("SELECT count(*) FROM log").unwrap(), Some(2));
    // The same with ABORT: the trigger's row is undone too, and so is its event.
    let events = one(&c, &["INSERT INTO t VALUES(3, 1)"]);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(c.query_i64("SELECT count(*) FROM log").unwrap(), Some(2));
}

#[test]
fn savepoints_transactions_and_rollback_clauses_undo_their_events() {
    let c = writer(CaptureOptions::default());
    one(&c, &["CREATE TABLE t(id INTEGER PRIMARY KEY, v UNIQUE)"]);
    // A user's savepoint rolled back, inside a request.
    let events = one(
        &c,
        &[
            "SAVEPOINT s",
            "INSERT INTO t VALUES(1, 1)",
            "ROLLBACK TO s",
            "RELEASE s",
            "INSERT INTO t VALUES(2, 2)",
        ],
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["new_row_id"], json!(2));
    // A request with `transaction` whose second statement fails: all of it is undone.
    let events = entry(
        &c,
        &[
            request(
                &["INSERT INTO t VALUES(3, 3)", "INSERT INTO t VALUES(4, 2)"],
                true,
            ),
            request(&["INSERT INTO t VALUES(5, 5)"], false),
        ],
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["new_row_id"], json!(5));
    // BEGIN ... ROLLBACK in a request, and a transaction left open.
    let events = one(
        &c,
        &[
            "BEGIN",
            "DELETE FROM t",
            "ROLLBACK",
            "BEGIN",
            "UPDATE t SET v = v + 10",
        ],
    );
    assert!(events.is_empty());
    // A ROLLBACK conflict clause ends the entry's transaction: the events of the requests
    // before it in the same entry go with their rows.
    let events = entry(
        &c,
        &[
            request(&["INSERT INTO t VALUES(6, 6)"], false),
            request(&["INSERT OR ROLLBACK INTO t VALUES(7, 6)"], false),
        ],
    );
    assert!(events.is_empty());
    assert_eq!(c.query_i64("SELECT count(*) FROM t").unwrap(), Some(2));
}

#[test]
fn an_entry_rolled_back_as_a_whole_leaves_nothing_for_the_next() {
    let c = writer(CaptureOptions::default());
    one(&c, &["CREATE TABLE t(v)"]);
    arm(&c, true);
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    execute_request(
        &c,
        &request(&["INSERT INTO t VALUES(1)"], false),
        RowsPolicy::ReturningOnly,
        ResultOptions::default(),
        BUDGET,
    )
    .unwrap();
    c.execute_batch("ROLLBACK").unwrap();
    arm(&c, false);
    assert_eq!(one(&c, &["INSERT INTO t VALUES(2)"]).len(), 1);
}

#[test]
fn an_unarmed_connection_and_other_schemas_capture_nothing() {
    let c = writer(CaptureOptions::default());
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    execute_request(
        &c,
        &request(&["CREATE TABLE t(v)", "INSERT INTO t VALUES(1)"], false),
        RowsPolicy::ReturningOnly,
        ResultOptions::default(),
        BUDGET,
    )
    .unwrap();
    assert!(take_entry_events(&c).unwrap().is_empty());
    c.execute_batch("COMMIT").unwrap();
    let events = one(
        &c,
        &[
            "CREATE TEMP TABLE scratch(v)",
            "INSERT INTO scratch VALUES(1)",
        ],
    );
    assert!(events.is_empty());
}

#[test]
fn users_cannot_reach_the_events_table() {
    let c = writer(CaptureOptions::default());
    one(&c, &["CREATE TABLE t(v)"]);
    for sql in [
        // The very texts raftlite runs on it: never handed out from the statement cache.
        "INSERT INTO temp._raftlite_cdc_events(event) VALUES(?1)",
        "SELECT event FROM temp._raftlite_cdc_events ORDER BY seq",
        "INSERT INTO temp._raftlite_cdc_events(event) VALUES('{}')",
        "DELETE FROM temp._raftlite_cdc_events",
        "DROP TABLE temp._raftlite_cdc_events",
        "SELECT * FROM _raftlite_cdc_events",
        "CREATE TEMP TRIGGER x AFTER INSERT ON _raftlite_cdc_events BEGIN SELECT 1; END",
    ] {
        arm(&c, true);
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        let out = execute_request(
            &c,
            &request(&[sql], false),
            RowsPolicy::ReturningOnly,
            ResultOptions::default(),
            BUDGET,
        )
        .unwrap();
        let text = format!("{:?}", out.results[0].outcome);
        assert!(
            text.contains("_raftlite_cdc_events is raftlite's own"),
            "{sql}: {text}"
        );
        c.execute_batch("COMMIT").unwrap();
    }
    // A request that leaves temporary objects has them dropped, but not the events table.
    one(&c, &["CREATE TEMP TABLE mine(v)"]);
    assert_eq!(one(&c, &["INSERT INTO t VALUES(1)"]).len(), 1);
}

#[test]
fn generated_columns_and_without_rowid_tables() {
    let c = writer(CaptureOptions::default());
    let events = one(
        &c,
        &[
            "CREATE TABLE g(a INTEGER, b AS (a * 2) STORED, c AS (a * 3) VIRTUAL)",
            "INSERT INTO g(a) VALUES(2)",
            "CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID",
            "INSERT INTO w VALUES('x', 1)",
        ],
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].get("error"), None, "{}", events[0]);
    assert_eq!(events[0]["after"]["a"], json!(2));
    assert_eq!(events[0]["after"]["b"], json!(4));
    // The virtual column is not stored: the hook has no value for it.
    assert_eq!(events[0]["after"].get("c"), None);
    assert_eq!(events[1]["after"], json!({"k": "x", "v": 1}));
}

/// A connection that runs users' SQL without capturing (a node without `-cdc-config`).
fn plain() -> Connection {
    let mut c = Connection::open(":memory:", OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
    c.set_statement_cache_capacity(raftlite_ffi::DEFAULT_STATEMENT_CACHE_CAPACITY);
    crate::db::settings::install_gate(&mut c).unwrap();
    c
}

/// Runs each request as an entry with `budget`, on a capturing and on a plain connection:
/// their answers and their rows must be the same (capture never changes what SQL does).
fn same_on_both(setup: &str, requests: &[Request], budget: u64, check: &str) -> Vec<Json> {
    let capturing = writer(CaptureOptions::default());
    let other = plain();
    let mut events = Vec::new();
    for c in [&capturing, &other] {
        c.execute_batch(setup).unwrap();
    }
    for r in requests {
        let mut answers = Vec::new();
        for c in [&capturing, &other] {
            arm(c, true);
            c.execute_batch("BEGIN IMMEDIATE").unwrap();
            let out = execute_request(
                c,
                r,
                RowsPolicy::ReturningOnly,
                ResultOptions::default(),
                budget,
            )
            .unwrap();
            if is_configured(c) {
                events.extend(take_entry_events(c).unwrap());
            }
            c.execute_batch("COMMIT").unwrap();
            arm(c, false);
            answers.push(format!(
                "{:?}",
                (
                    out.results.iter().map(|r| &r.outcome).collect::<Vec<_>>(),
                    &out.error
                )
            ));
        }
        assert_eq!(answers[0], answers[1], "{:?}", r.statements);
    }
    let rows = |c: &Connection| {
        let mut stmt = c.prepare(check).unwrap();
        let mut out = Vec::new();
        while stmt.step().unwrap().is_row() {
            out.push(
                (0..stmt.column_count())
                    .map(|i| stmt.column_owned(i))
                    .collect::<Vec<_>>(),
            );
        }
        out
    };
    assert_eq!(rows(&capturing), rows(&other));
    events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

#[test]
fn last_insert_rowid_is_what_it_would_be_without_capture() {
    let events = same_on_both(
        "CREATE TABLE t(id INTEGER PRIMARY KEY); CREATE TABLE u(v)",
        &[request(
            &[
                "INSERT INTO t VALUES(5)",
                "INSERT INTO u VALUES(last_insert_rowid()) RETURNING v",
            ],
            false,
        )],
        BUDGET,
        "SELECT v FROM u",
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["after"]["v"], json!(5));
}

#[test]
fn what_the_lookups_meet_in_users_schemas_does_not_change_the_entry() {
    // A failed statement's rows are looked up, with the table's columns. A temporary table
    // named like the function those lookups could use, a virtual column, and columns named
    // like every rowid alias must neither fail the entry nor lose the rows that stayed.
    let events = same_on_both(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, a UNIQUE, g AS (a * 2) VIRTUAL);
         CREATE TABLE r(rowid, _rowid_, oid, k UNIQUE)",
        &[request(
            &[
                "CREATE TEMP TABLE pragma_table_xinfo(x)",
                "INSERT OR FAIL INTO t(id, a) VALUES(1, 10), (2, 10)",
                "INSERT OR FAIL INTO r VALUES(1, 2, 3, 'k'), (4, 5, 6, 'k')",
                "INSERT INTO t(id, a) VALUES(3, 30)",
            ],
            false,
        )],
        BUDGET,
        "SELECT id, a, g FROM t ORDER BY id",
    );
    let rows: Vec<(&Json, &Json)> = events
        .iter()
        .map(|e| (&e["table"], &e["new_row_id"]))
        .collect();
    assert_eq!(
        rows,
        vec![
            (&json!("t"), &json!(1)),
            (&json!("r"), &json!(1)),
            (&json!("t"), &json!(3))
        ],
        "{events:?}"
    );
    assert!(
        events.iter().all(|e| e.get("error").is_none()),
        "{events:?}"
    );
    assert_eq!(events[0]["after"], json!({"id": 1, "a": 10}));
}

#[test]
fn a_delete_of_every_row_costs_the_same_budget_with_and_without_capture() {
    // SQLite compiles `DELETE FROM t` as one clear without a hook and row by row with one;
    // every connection has the hook, so the budget stops both alike.
    let setup = "CREATE TABLE t(v); \
        WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<5000) \
        INSERT INTO t SELECT i FROM c";
    for budget in [50, 500_000] {
        same_on_both(
            setup,
            &[request(&["DELETE FROM t"], false)],
            budget,
            "SELECT count(*) FROM t",
        );
    }
}

#[test]
fn sqlite_and_shadow_tables_have_no_events() {
    let c = writer(CaptureOptions::default());
    let events = one(
        &c,
        &[
            "CREATE TABLE t(a)",
            "CREATE INDEX ta ON t(a)",
            "INSERT INTO t VALUES(1)",
            "ANALYZE",
            "CREATE VIRTUAL TABLE f USING fts5(body)",
            "INSERT INTO f VALUES('hello')",
        ],
    );
    let tables: Vec<&Json> = events.iter().map(|e| &e["table"]).collect();
    assert_eq!(tables, vec![&json!("t")], "{events:?}");
}

#[test]
fn too_much_for_one_statement_or_entry_becomes_one_error_event() {
    let c = writer(CaptureOptions {
        max_bytes: 10_000,
        ..CaptureOptions::default()
    });
    one(&c, &["CREATE TABLE t(id INTEGER PRIMARY KEY, v)"]);
    // One statement over the bound: one event with an error, and the rows are written.
    let events = one(
        &c,
        &[
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<200) \
           INSERT INTO t SELECT i, printf('%.100c', 'x') FROM c",
        ],
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["op"], json!("INSERT"));
    assert_eq!(events[0]["table"], json!("t"));
    assert!(events[0]["error"].as_str().unwrap().contains("left out"));
    assert_eq!(c.query_i64("SELECT count(*) FROM t").unwrap(), Some(200));
    // Statements each under it, together over it: one event for the entry.
    let statements: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "UPDATE t SET v = printf('%.200c', 'y') WHERE id = {}",
                i + 1
            )
        })
        .collect();
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    let events = one(&c, &statements);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0]["error"]
        .as_str()
        .unwrap()
        .contains("entry's events"));
}

#[test]
fn a_table_altered_within_an_entry_is_described_as_it_is_at_each_statement() {
    let c = writer(CaptureOptions::default());
    let events = one(
        &c,
        &[
            "CREATE TABLE t(id INTEGER PRIMARY KEY, a)",
            "INSERT INTO t VALUES(1, 'x')",
            "ALTER TABLE t ADD COLUMN b DEFAULT 'd'",
            "INSERT INTO t VALUES(2, 'y', 'z')",
            "DROP TABLE t",
            "CREATE TABLE t(other)",
            "INSERT INTO t VALUES('o')",
        ],
    );
    let afters: Vec<&Json> = events.iter().map(|e| &e["after"]).collect();
    assert_eq!(
        afters,
        vec![
            &json!({"id": 1, "a": "x"}),
            &json!({"id": 2, "a": "y", "b": "z"}),
            &json!({"other": "o"}),
        ],
        "{events:?}"
    );
}

#[test]
fn what_a_write_sees_of_the_temporary_schema_is_the_same_with_and_without_capture() {
    same_on_both(
        "CREATE TABLE x(n, m)",
        &[request(
            &[
                "INSERT INTO x SELECT (SELECT count(*) FROM temp.sqlite_schema), \
               (SELECT count(*) FROM pragma_table_list WHERE schema = 'temp')",
            ],
            false,
        )],
        BUDGET,
        "SELECT n, m FROM x",
    );
}

#[test]
fn a_schema_change_rolled_back_is_not_remembered() {
    let c = writer(CaptureOptions::default());
    let events = one(
        &c,
        &[
            "CREATE TABLE t(a)",
            "BEGIN",
            "ALTER TABLE t RENAME COLUMN a TO b",
            "INSERT INTO t VALUES(1)",
            "ROLLBACK",
            "INSERT INTO t VALUES(2)",
        ],
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["after"], json!({"a": 2}));
}

#[test]
fn an_entry_over_the_bound_holds_little_and_says_so_even_when_its_last_row_is_a_shadow_tables() {
    let c = writer(CaptureOptions {
        max_bytes: 10_000,
        ..CaptureOptions::default()
    });
    one(
        &c,
        &[
            "CREATE TABLE docs(id INTEGER PRIMARY KEY, body)",
            "CREATE VIRTUAL TABLE f USING fts5(body)",
            "CREATE TRIGGER copy AFTER INSERT ON docs BEGIN INSERT INTO f VALUES(new.body); END",
        ],
    );
    // One statement over the bound whose last change is in the FTS index's storage: the
    // error event is still there, without a table.
    let events = one(
        &c,
        &[
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<100) \
           INSERT INTO docs SELECT i, printf('%.200c', 'x') FROM c",
        ],
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0]["error"].as_str().unwrap().contains("left out"),
        "{events:?}"
    );
    // Many statements each under the bound, the entry far over it: the events table holds
    // one small event per statement once the entry passed the bound, not their rows.
    arm(&c, true);
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    let statements: Vec<String> = (0..50)
        .map(|i| {
            format!(
                "UPDATE docs SET body = printf('%.150c', 'z') WHERE id = {}",
                i + 1
            )
        })
        .collect();
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    execute_request(
        &c,
        &request(&statements, false),
        RowsPolicy::ReturningOnly,
        ResultOptions::default(),
        BUDGET,
    )
    .unwrap();
    let held: i64 = c
        .query_i64("SELECT sum(length(event)) FROM temp._raftlite_cdc_events")
        .unwrap()
        .unwrap_or(0);
    assert!(
        held < 3 * 10_000,
        "{held} bytes held for a 10,000-byte bound"
    );
    let events = take_entry_events(&c).unwrap();
    c.execute_batch("COMMIT").unwrap();
    arm(&c, false);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("entry's events"), "{events:?}");
}
