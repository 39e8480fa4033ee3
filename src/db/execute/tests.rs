use raftlite_ffi::{Connection, OpenFlags, Value};

use super::*;
use crate::db::request::{ParamValue, Params, Request, SqlStatement};

/// A connection with a statement cache, as the writer has: every test here runs through it.
fn conn() -> Connection {
    let c = conn_uncached();
    c.set_statement_cache_capacity(raftlite_ffi::DEFAULT_STATEMENT_CACHE_CAPACITY);
    c
}

fn conn_uncached() -> Connection {
    let mut c = Connection::open(":memory:", OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
    c.set_double_quoted_strings(true).unwrap();
    crate::db::settings::install_gate(&mut c).unwrap();
    c
}

fn positional(sql: &str, params: Vec<ParamValue>) -> SqlStatement {
    SqlStatement {
        sql: sql.into(),
        params: Params::Positional(params),
    }
}

fn req(sqls: &[&str]) -> Request {
    Request {
        statements: sqls.iter().map(|s| SqlStatement::new(*s)).collect(),
        transaction: false,
    }
}

fn write(c: &Connection, r: &Request) -> RequestResults {
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    let out = execute_request(
        c,
        r,
        RowsPolicy::ReturningOnly,
        ResultOptions::default(),
        BUDGET,
    )
    .unwrap();
    c.execute_batch("COMMIT").unwrap();
    out
}

/// A budget no test here comes near.
const BUDGET: u64 = 1_000_000_000;

fn outcomes(r: &RequestResults) -> Vec<StatementOutcome> {
    r.results.iter().map(|r| r.outcome.clone()).collect()
}

fn exec(id: i64, n: i64) -> StatementOutcome {
    StatementOutcome::Executed {
        last_insert_id: id,
        rows_affected: n,
    }
}

fn count(c: &Connection) -> i64 {
    c.query_i64("SELECT count(*) FROM t").unwrap().unwrap()
}

#[test]
fn continue_on_error_without_transaction() {
    let c = conn();
    let r = write(
        &c,
        &req(&[
            "CREATE TABLE t(a UNIQUE)",
            "INSERT INTO t VALUES(1)",
            "INSERT INTO t VALUES(1)",
            "INSERT INTO t VALUES(2)",
        ]),
    );
    assert_eq!(
        outcomes(&r),
        vec![
            exec(0, 0),
            exec(1, 1),
            StatementOutcome::Error("UNIQUE constraint failed: t.a".into()),
            exec(2, 1)
        ]
    );
    assert_eq!(count(&c), 2);
}

#[test]
fn transaction_flag_stops_and_undoes_the_request() {
    let c = conn();
    write(&c, &req(&["CREATE TABLE t(a UNIQUE)"]));
    let mut r = req(&[
        "INSERT INTO t VALUES(1)",
        "INSERT INTO t VALUES(1)",
        "INSERT INTO t VALUES(2)",
    ]);
    r.transaction = true;
    let out = write(&c, &r);
    assert_eq!(out.results.len(), 2, "processing stops at the first error");
    assert!(out.results[1].is_error());
    assert_eq!(count(&c), 0, "the whole request was undone");
}

#[test]
fn ddl_does_not_report_a_previous_statements_changes() {
    let c = conn();
    let out = write(
        &c,
        &req(&[
            "CREATE TABLE t(a)",
            "INSERT INTO t VALUES(1),(2)",
            "CREATE TABLE u(b)",
            "UPDATE t SET a=3",
        ]),
    );
    assert_eq!(
        outcomes(&out),
        vec![exec(0, 0), exec(2, 2), exec(0, 0), exec(0, 2)]
    );
}

#[test]
fn user_begin_commit_map_onto_a_savepoint() {
    let c = conn();
    write(&c, &req(&["CREATE TABLE t(a)"]));
    let out = write(
        &c,
        &req(&["BEGIN TRANSACTION", "INSERT INTO t VALUES(1)", "COMMIT"]),
    );
    assert!(out.results.iter().all(|r| !r.is_error()), "{out:?}");
    assert_eq!(count(&c), 1);
    let out = write(&c, &req(&["BEGIN; INSERT INTO t VALUES(2); ROLLBACK;"]));
    assert!(out.error.is_none());
    assert_eq!(count(&c), 1, "the user rollback undid the insert");
    let out = write(&c, &req(&["COMMIT"]));
    assert_eq!(
        outcomes(&out),
        vec![StatementOutcome::Error(
            "cannot commit - no transaction is active".into()
        )]
    );
    let out = write(&c, &req(&["BEGIN", "BEGIN"]));
    assert_eq!(
        out.results[1].outcome,
        StatementOutcome::Error("cannot start a transaction within a transaction".into())
    );
}

#[test]
fn a_transaction_left_open_is_rolled_back() {
    let c = conn();
    write(&c, &req(&["CREATE TABLE t(a)"]));
    let out = write(&c, &req(&["BEGIN", "INSERT INTO t VALUES(1)"]));
    assert!(out.error.as_deref().unwrap().contains("rolled back"));
    assert_eq!(count(&c), 0);
    let out = write(&c, &req(&["INSERT INTO t VALUES(1)"]));
    assert_eq!(
        outcomes(&out),
        vec![exec(1, 1)],
        "the next request is not inside a transaction"
    );
}

#[test]
fn savepoint_statements_run_as_written() {
    let c = conn();
    write(&c, &req(&["CREATE TABLE t(a)"]));
    let out = write(
        &c,
        &req(&[
            "SAVEPOINT x",
            "INSERT INTO t VALUES(1)",
            "ROLLBACK TO x",
            "RELEASE x",
        ]),
    );
    assert!(out.results.iter().all(|r| !r.is_error()), "{out:?}");
    assert_eq!(count(&c), 0);
}

#[test]
fn rollback_conflict_clause_ends_the_request_but_not_the_node() {
    let c = conn();
    write(
        &c,
        &req(&["CREATE TABLE t(a UNIQUE)", "INSERT INTO t VALUES(1)"]),
    );
    let out = write(
        &c,
        &req(&[
            "INSERT INTO t VALUES(2)",
            "INSERT OR ROLLBACK INTO t VALUES(1)",
            "INSERT INTO t VALUES(3)",
        ]),
    );
    assert_eq!(out.results.len(), 2);
    assert!(out.error.is_some());
    assert_eq!(count(&c), 1);
}

#[test]
fn positional_and_named_parameters() {
    let c = conn();
    write(&c, &req(&["CREATE TABLE t(a, b)"]));
    let r = Request {
        statements: vec![
            SqlStatement {
                sql: "INSERT INTO t VALUES(?, ?)".into(),
                params: Params::Positional(vec![
                    ParamValue::Text("fiona".into()),
                    ParamValue::Integer(20),
                ]),
            },
            SqlStatement {
                sql: "INSERT INTO t VALUES(:name, $age)".into(),
                params: Params::Named(vec![
                    ("name".into(), ParamValue::Text("declan".into())),
                    ("age".into(), ParamValue::Bool(true)),
                ]),
            },
            SqlStatement {
                sql: "INSERT INTO t VALUES(?, ?); INSERT INTO t VALUES(?, ?)".into(),
                params: Params::Positional(vec![
                    ParamValue::Blob(vec![1, 2]),
                    ParamValue::Null,
                    ParamValue::Real(2.5),
                    ParamValue::Integer(7),
                ]),
            },
            SqlStatement {
                sql: "INSERT INTO t VALUES(?, ?)".into(),
                params: Params::Positional(vec![ParamValue::Integer(1)]),
            },
        ],
        transaction: false,
    };
    let out = write(&c, &r);
    assert_eq!(
        out.results[3].outcome,
        StatementOutcome::Error("not enough args to execute query: want 2 got 1".into())
    );
    let q = query_request(
        &c,
        &req(&["SELECT a, b FROM t ORDER BY rowid"]),
        ResultOptions::default(),
        ReadLimits::steps(BUDGET),
    )
    .unwrap();
    let StatementOutcome::Rows(rows) = &q.results[0].outcome else {
        panic!()
    };
    assert_eq!(
        rows.values,
        vec![
            vec![Value::Text("fiona".into()), Value::Integer(20)],
            vec![Value::Text("declan".into()), Value::Integer(1)],
            vec![Value::Blob(vec![1, 2]), Value::Null],
            vec![Value::Real(2.5), Value::Integer(7)],
        ]
    );
}

#[test]
fn returning_rows_on_execute_and_select_on_execute_is_execute_shaped() {
    let c = conn();
    write(
        &c,
        &req(&["CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT)"]),
    );
    let out = write(
        &c,
        &req(&[
            "INSERT INTO t(a) VALUES('x') RETURNING id, a",
            "SELECT * FROM t",
        ]),
    );
    let StatementOutcome::Rows(rows) = &out.results[0].outcome else {
        panic!("{out:?}")
    };
    assert_eq!(rows.columns, vec!["id", "a"]);
    assert_eq!(
        rows.values,
        vec![vec![Value::Integer(1), Value::Text("x".into())]]
    );
    assert_eq!(out.results[1].outcome, exec(0, 0));
}

#[test]
fn query_types_and_qualified_columns() {
    let c = conn();
    write(
        &c,
        &req(&[
            "CREATE TABLE t(id INTEGER, name VARCHAR(20), r)",
            "INSERT INTO t VALUES(1, 'a', 2.5)",
        ]),
    );
    let q = query_request(
        &c,
        &req(&["SELECT id, name, r, count(*), NULL FROM t"]),
        ResultOptions {
            qualify_columns: true,
        },
        ReadLimits::steps(BUDGET),
    )
    .unwrap();
    let StatementOutcome::Rows(rows) = &q.results[0].outcome else {
        panic!()
    };
    assert_eq!(
        rows.columns,
        vec!["t.id", "t.name", "t.r", "count(*)", "NULL"]
    );
    assert_eq!(
        rows.types(),
        vec!["integer", "varchar(20)", "real", "integer", ""]
    );
}

#[test]
fn read_only_classification() {
    let c = conn();
    write(&c, &req(&["CREATE TABLE t(a)"]));
    assert!(is_read_only(
        &c,
        &req(&["SELECT * FROM t", "SELECT 1; SELECT 2"])
    ));
    assert!(!is_read_only(
        &c,
        &req(&["SELECT * FROM t", "INSERT INTO t VALUES(1)"])
    ));
    assert!(
        !is_read_only(&c, &req(&["SELECT * FROM nosuch"])),
        "errors go to the write path"
    );
    assert!(!is_read_only(&c, &req(&["BEGIN"])));
}

#[test]
fn txn_control_recognises_keywords() {
    assert_eq!(
        txn_control("  begin immediate transaction"),
        Some(TxnControl::Begin)
    );
    assert_eq!(txn_control("/* x */ END"), Some(TxnControl::Commit));
    assert_eq!(txn_control("-- c\nROLLBACK;"), Some(TxnControl::Rollback));
    assert_eq!(txn_control("ROLLBACK TRANSACTION TO SAVEPOINT a"), None);
    assert_eq!(txn_control("ROLLBACK TO a"), None);
    assert_eq!(txn_control("BEGINX"), None);
    assert_eq!(txn_control("SELECT 1"), None);
}

/// One step of a scenario run on two connections.
enum Run {
    Write(Request),
    Query(Request),
}

/// The outcomes of `run` on `c` (timings left out).
fn run_on(c: &Connection, run: &Run) -> (Vec<StatementOutcome>, Option<String>) {
    let out = match run {
        Run::Write(r) => write(c, r),
        Run::Query(r) => {
            query_request(c, r, ResultOptions::default(), ReadLimits::steps(BUDGET)).unwrap()
        }
    };
    (outcomes(&out), out.error)
}

#[test]
fn results_are_the_same_with_and_without_the_statement_cache() {
    use ParamValue::{Integer as I, Text as T};
    let w = |r: Request| Run::Write(r);
    let q = |sqls: &[&str]| Run::Query(req(sqls));
    let with_txn = |sqls: &[&str]| {
        let mut r = req(sqls);
        r.transaction = true;
        r
    };
    let insert = |a: ParamValue, b: ParamValue| {
        positional("INSERT INTO t(a, b) VALUES(?, ?) RETURNING *", vec![a, b])
    };
    let many = |statements: Vec<SqlStatement>| Request {
        statements,
        transaction: false,
    };
    let scenario = vec![
        w(req(&[
            "CREATE TABLE t(id INTEGER PRIMARY KEY, a UNIQUE, b TEXT)",
        ])),
        w(many(vec![
            insert(I(1), T("one".into())),
            insert(I(2), T("two".into())),
            insert(I(1), T("duplicate".into())),
            positional("INSERT INTO t(a, b) VALUES(?, ?)", vec![I(3)]),
            positional("INSERT INTO t(a, b) VALUES(?, ?)", vec![I(3), I(33)]),
            SqlStatement {
                sql: "UPDATE t SET b = :b WHERE a = :a".into(),
                params: Params::Named(vec![("a".into(), I(2)), ("b".into(), T("deux".into()))]),
            },
            // `:b` not given: NULL, not the value bound the time before.
            SqlStatement {
                sql: "UPDATE t SET b = :b WHERE a = :a".into(),
                params: Params::Named(vec![("a".into(), I(1))]),
            },
            SqlStatement::new("SELECT * FROM t"),
            positional(
                "INSERT INTO t(a, b) VALUES(?, ?); INSERT INTO t(a, b) VALUES(?, ?)",
                vec![I(4), T("four".into()), I(5), T("five".into())],
            ),
            SqlStatement::new("INSERT INTO t(a, b) VALUES(abs(-9223372036854775807 - 1), 'x')"),
        ])),
        q(&[
            "SELECT * FROM t",
            "SELECT abs(-9223372036854775807 - 1)",
            "SELECT count(*) FROM t",
        ]),
        w(req(&["ALTER TABLE t ADD COLUMN c DEFAULT 'new'"])),
        w(many(vec![
            insert(I(6), T("six".into())),
            SqlStatement::new("DELETE FROM t WHERE a = 6"),
        ])),
        q(&["SELECT * FROM t"]),
        // DDL undone by the request's own rollback: the cached texts see the old schema again.
        w(with_txn(&[
            "ALTER TABLE t ADD COLUMN d",
            "SELECT * FROM t",
            "INSERT INTO t(a) VALUES(1)",
        ])),
        q(&["SELECT * FROM t"]),
        w(many(vec![insert(I(7), T("seven".into()))])),
        // User transaction control around cached statements.
        w(req(&[
            "BEGIN",
            "INSERT INTO t(a, b) VALUES(8, 'eight')",
            "COMMIT",
            "COMMIT",
        ])),
        w(req(&[
            "BEGIN",
            "INSERT INTO t(a, b) VALUES(9, 'nine')",
            "ROLLBACK",
        ])),
        w(req(&["BEGIN", "INSERT INTO t(a, b) VALUES(10, 'ten')"])),
        // A ROLLBACK conflict clause ends the whole transaction.
        w(req(&[
            "INSERT OR ROLLBACK INTO t(a, b) VALUES(1, 'again')",
            "SELECT 1",
        ])),
        w(req(&["DROP TABLE t", "CREATE TABLE t(a TEXT, b INTEGER)"])),
        w(many(vec![
            insert(T("x".into()), I(1)),
            insert(T("y".into()), I(2)),
            positional("INSERT INTO t(a, b) VALUES(?, ?)", vec![I(1), I(2)]),
        ])),
        q(&["SELECT * FROM t", "SELECT count(*) FROM t"]),
        w(req(&["DROP TABLE t"])),
        w(many(vec![
            insert(I(1), I(2)),
            positional("INSERT INTO t(a, b) VALUES(?, ?)", vec![I(1)]),
        ])),
        q(&["SELECT * FROM t"]),
    ];
    let cached = conn();
    let plain = conn_uncached();
    // Twice through: the second time every cacheable text comes from the cache.
    for round in 0..2 {
        for (i, step) in scenario.iter().enumerate() {
            let a = run_on(&cached, step);
            let b = run_on(&plain, step);
            assert_eq!(a, b, "round {round}, step {i}");
        }
        assert_eq!(plain.statement_cache_stats().hits, 0);
    }
    let stats = cached.statement_cache_stats();
    // DDL steps empty the cache, so only the texts between them are reused.
    assert!(stats.hits >= 10, "{stats:?}");
}

#[test]
fn cached_statements_see_each_entrys_clock_and_seed() {
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str, capacity: usize| {
        let mut c = Connection::open_deterministic(
            dir.path().join(name),
            OpenFlags::READ_WRITE | OpenFlags::CREATE,
        )
        .unwrap();
        crate::db::settings::install_gate(&mut c).unwrap();
        c.set_statement_cache_capacity(capacity);
        c
    };
    let cached = open("cached.db", 64);
    let plain = open("plain.db", 0);
    let base_millis = 1_614_834_367_000i64;
    let create = req(&["CREATE TABLE t(entry, r, now, blob, d DEFAULT CURRENT_TIMESTAMP)"]);
    let insert =
        "INSERT INTO t(entry, r, now, blob) VALUES(?, random(), datetime('now'), randomblob(4))";
    for c in [&cached, &plain] {
        write(c, &create);
        for entry in 0..5i64 {
            c.set_apply_inputs(Some(raftlite_ffi::ApplyInputs {
                unix_millis: base_millis + entry * 61_000,
                seed: entry as u64,
            }))
            .unwrap();
            let r = Request {
                statements: (0..3)
                    .map(|_| positional(insert, vec![ParamValue::Integer(entry)]))
                    .collect(),
                transaction: false,
            };
            let out = write(c, &r);
            assert!(out.results.iter().all(|s| !s.is_error()), "{out:?}");
        }
        c.set_apply_inputs(None).unwrap();
    }
    assert!(cached.statement_cache_stats().hits >= 14);
    let all = |c: &Connection| {
        let q = query_request(
            c,
            &req(&["SELECT * FROM t ORDER BY rowid"]),
            ResultOptions::default(),
            ReadLimits::steps(BUDGET),
        )
        .unwrap();
        let StatementOutcome::Rows(rows) = &q.results[0].outcome else {
            panic!("{q:?}")
        };
        rows.values.clone()
    };
    let rows = all(&cached);
    assert_eq!(rows, all(&plain), "the cache changes nothing");
    // Each entry's own clock, for the function and for the column default...
    for row in &rows {
        let Value::Integer(entry) = row[0] else {
            panic!()
        };
        let want = c_datetime(&plain, base_millis + entry * 61_000);
        assert_eq!(row[2], Value::Text(want.clone()));
        assert_eq!(row[4], Value::Text(want));
    }
    // ...and a fresh draw for every row, not a value kept from an earlier run.
    let mut randoms: Vec<_> = rows
        .iter()
        .map(|r| format!("{:?}{:?}", r[1], r[3]))
        .collect();
    randoms.sort();
    randoms.dedup();
    assert_eq!(randoms.len(), 15);
}

/// `datetime()` of a Unix time in milliseconds, computed by SQLite.
fn c_datetime(c: &Connection, millis: i64) -> String {
    c.query_text(&format!("SELECT datetime({}, 'unixepoch')", millis / 1000))
        .unwrap()
        .unwrap()
}

#[test]
fn a_repeated_text_is_prepared_once() {
    let c = conn();
    write(&c, &req(&["CREATE TABLE t(k, v)"]));
    let r = Request {
        statements: (0..1000)
            .map(|k| {
                positional(
                    "INSERT INTO t(k, v) VALUES(?, ?)",
                    vec![
                        ParamValue::Integer(k),
                        ParamValue::Text(format!("value {k}")),
                    ],
                )
            })
            .collect(),
        transaction: false,
    };
    let out = write(&c, &r);
    assert_eq!(out.results[999].outcome, exec(1000, 1));
    // Two more statements go through the cache once per request: raftlite's look at the
    // written table's largest rowid.
    let stats = c.statement_cache_stats();
    assert_eq!((stats.misses, stats.hits), (3, 999), "{stats:?}");
    write(&c, &r);
    let again = c.statement_cache_stats();
    assert_eq!(again.hits - stats.hits, 1000 + 2, "{again:?}");
    assert_eq!(c.query_i64("SELECT count(*) FROM t").unwrap(), Some(2000));
}

#[test]
fn sql_loads_do_not_fill_the_cache() {
    let c = conn();
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    let script = [
        "CREATE TABLE t(a)",
        "INSERT INTO t VALUES(1)",
        "INSERT INTO t VALUES(2)",
    ];
    let out = execute_script(&c, script.iter().map(|s| Ok(s.to_string())), BUDGET).unwrap();
    c.execute_batch("COMMIT").unwrap();
    assert!(
        matches!(out, ScriptOutcome::Done { statements: 3, .. }),
        "{out:?}"
    );
    assert_eq!(c.statement_cache_stats().len, 0);
}

/// Not a test: the apply cost of the benchmark's write request (P6). Run in release:
/// `cargo test --release --no-default-features --lib apply_cost -- --ignored --nocapture`
/// It applies 200 requests of 1000 identical parameterised INSERTs through `execute_request`
/// on a writer opened as the node opens it, each request in its own transaction with its own
/// clock and seed, as the state machine applies an entry; it prints the time per request.
#[test]
#[ignore = "a measurement, not a test; run it by hand in release mode"]
fn apply_cost_of_1000_identical_parameterised_inserts() {
    const REQUESTS: u64 = 200;
    const PER_REQUEST: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let settings = crate::db::DbSettings::default();
    let c = crate::db::settings::open_writer(&path, &settings).unwrap();
    write(
        &c,
        &req(&["CREATE TABLE bench (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)"]),
    );
    let mut took = Vec::with_capacity(REQUESTS as usize);
    for r in 0..REQUESTS {
        let statements = (0..PER_REQUEST)
            .map(|i| {
                let k = r * PER_REQUEST + i;
                SqlStatement {
                    sql: "INSERT INTO bench(k, v) VALUES(?, ?)".into(),
                    params: Params::Positional(vec![
                        ParamValue::Integer(k as i64),
                        ParamValue::Text(format!("value {k} with some text")),
                    ]),
                }
            })
            .collect();
        let request = Request {
            statements,
            transaction: false,
        };
        let started = std::time::Instant::now();
        c.set_apply_inputs(Some(raftlite_ffi::ApplyInputs {
            unix_millis: 1_700_000_000_000 + r as i64,
            seed: r,
        }))
        .unwrap();
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        let out = execute_request(
            &c,
            &request,
            RowsPolicy::ReturningOnly,
            ResultOptions::default(),
            BUDGET,
        )
        .unwrap();
        c.execute_batch("COMMIT").unwrap();
        took.push(started.elapsed());
        assert!(out.error.is_none() && out.results.iter().all(|s| !s.is_error()));
    }
    let rows = c.query_i64("SELECT count(*) FROM bench").unwrap();
    assert_eq!(rows, Some((REQUESTS * PER_REQUEST) as i64));
    let total: std::time::Duration = took.iter().sum();
    took.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "apply: {REQUESTS} requests x {PER_REQUEST} INSERTs: total {:.1} ms; per request: \
         min {:.3} ms, median {:.3} ms, mean {:.3} ms, max {:.3} ms; cache {:?}",
        ms(total),
        ms(took[0]),
        ms(took[took.len() / 2]),
        ms(total) / REQUESTS as f64,
        ms(took[took.len() - 1]),
        c.statement_cache_stats(),
    );
}

#[test]
fn a_read_over_its_result_cap_fails_that_statement_only() {
    let c = conn();
    write(
        &c,
        &req(&[
            "CREATE TABLE big(v)",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
             INSERT INTO big SELECT zeroblob(300) FROM n",
        ]),
    );
    let limits = |max_result_bytes| ReadLimits {
        budget_steps: BUDGET,
        max_result_bytes,
    };
    let read = req(&["SELECT v FROM big", "SELECT count(*) FROM big"]);
    // 100 BLOBs of 300 bytes hold 100 × (16 + 400) bytes: a cap just above passes.
    let fits = query_request(&c, &read, ResultOptions::default(), limits(41_600)).unwrap();
    assert!(matches!(&fits.results[0].outcome, StatementOutcome::Rows(r) if r.values.len() == 100));
    let over = query_request(&c, &read, ResultOptions::default(), limits(41_599)).unwrap();
    match &over.results[0].outcome {
        StatementOutcome::Error(m) => assert!(m.starts_with(RESULT_TOO_LARGE_ERROR), "{m}"),
        other => panic!("expected the cap's error, got {other:?}"),
    }
    assert!(
        matches!(&over.results[1].outcome, StatementOutcome::Rows(r) if r.values == vec![vec![Value::Integer(100)]]),
        "the statement after the refused one still runs: {:?}",
        over.results[1]
    );
    // Writes are never capped: RETURNING rows are the same on every node whatever its flag,
    // and a capped read leaves no cap behind on the connection.
    let returning = write(&c, &req(&["UPDATE big SET v = v RETURNING v"]));
    assert!(
        matches!(&returning.results[0].outcome, StatementOutcome::Rows(r) if r.values.len() == 100)
    );
}

#[test]
fn a_writable_schema_line_is_told_by_its_words_not_its_spacing_or_case() {
    use super::writable_schema_line as line;
    assert_eq!(line("PRAGMA writable_schema=ON;"), Some(true));
    assert_eq!(line("  pragma  WRITABLE_SCHEMA = off ;\n"), Some(false));
    assert_eq!(line("PRAGMA writable_schema=ONE;"), None);
    assert_eq!(line("PRAGMA writable_schema=O;"), None);
    assert_eq!(line("PRAGMA writable_schema=ON; SELECT 1;"), None);
    assert_eq!(
        line("INSERT INTO t VALUES('PRAGMA writable_schema=ON');"),
        None
    );
    assert_eq!(line(""), None);
}

/// A full-text table created, written and rolled back to a savepoint within one script makes
/// SQLite refuse the COMMIT (found by the `apply_diff` fuzz target for requests). The load is
/// then a failed load that changed nothing and is recorded, not a fault that stops the node.
#[test]
fn a_load_whose_commit_sqlite_refuses_fails_and_is_recorded() {
    let c = conn();
    c.execute_batch("CREATE TABLE applied(n)").unwrap();
    let script = [
        "CREATE TABLE kept(a)",
        "SAVEPOINT s",
        "CREATE VIRTUAL TABLE ft USING fts5(a)",
        "INSERT INTO ft VALUES('pending')",
        "ROLLBACK TO s",
        "RELEASE s",
    ];
    let mut recorded = 0;
    let out = run_statements(
        &c,
        script.iter().map(|s| Ok(s.to_string())),
        true,
        BUDGET,
        |c| {
            recorded += 1;
            c.execute_batch("INSERT INTO applied VALUES(1)")?;
            Ok(())
        },
    )
    .expect("not a fault");
    let ScriptOutcome::Failed(msg) = out else {
        panic!("the load committed: {out:?}")
    };
    assert!(msg.contains("commit refused"), "{msg}");
    assert!(c.is_autocommit().unwrap(), "no transaction left open");
    let tables = c
        .query_i64("SELECT count(*) FROM sqlite_schema WHERE name = 'kept'")
        .unwrap();
    assert_eq!(tables, Some(0), "nothing of the load stays");
    assert_eq!(recorded, 2, "recorded again after the refused commit");
    assert_eq!(
        c.query_i64("SELECT count(*) FROM applied").unwrap(),
        Some(1),
        "the record that stays is the one committed with the failed load's no-op"
    );
}

/// The same refusal for an entry: its requests answer the error, the entry is recorded, and
/// the connection applies the next entry.
#[test]
fn an_entry_whose_commit_sqlite_refuses_applies_as_a_recorded_no_op() {
    let c = conn();
    c.execute_batch("CREATE TABLE applied(n); CREATE TABLE t(a)")
        .unwrap();
    let poison = Request {
        statements: [
            "INSERT INTO t VALUES(1)",
            "CREATE VIRTUAL TABLE ft USING fts5(a)",
            "INSERT INTO ft(ft) VALUES('rebuild')",
            "INSERT INTO no_such_table VALUES(1)",
        ]
        .iter()
        .map(|s| SqlStatement::new(*s))
        .collect(),
        transaction: true,
    };
    let record = |c: &Connection| {
        c.execute_batch("INSERT INTO applied VALUES(1)")?;
        Ok(())
    };
    let run = |r: &Request| {
        crate::db::apply::apply_entry(
            &c,
            |c| {
                execute_request(
                    c,
                    r,
                    RowsPolicy::ReturningOnly,
                    ResultOptions::default(),
                    BUDGET,
                )
            },
            |e| RequestResults {
                error: Some(e.to_string()),
                ..RequestResults::default()
            },
            record,
        )
    };
    let answer = run(&poison).expect("not a fault");
    assert!(
        answer
            .error
            .as_deref()
            .unwrap_or("")
            .contains("commit refused"),
        "{answer:?}"
    );
    assert_eq!(count(&c), 0);
    assert_eq!(
        c.query_i64("SELECT count(*) FROM applied").unwrap(),
        Some(1)
    );
    let next = run(&req(&["INSERT INTO t VALUES(2)"])).expect("the next entry applies");
    assert_eq!(outcomes(&next), vec![exec(1, 1)]);
    assert_eq!(
        c.query_i64("SELECT count(*) FROM applied").unwrap(),
        Some(2)
    );
}
