//! Regression tests: one test per bug that was found and fixed, named after the bug, with a
//! comment saying what broke and how it was found (usually a fuzz target, see
//! `docs/fuzzing.md`). Each test feeds the failing input to the same public function that
//! failed and asserts the correct behaviour, not just "no panic".

use raftlite::db::dump::dump;
use raftlite::db::request::{ParamValue, Params};
use raftlite::http::body::parse_statements;
use raftlite_ffi::{Connection, OpenFlags};

/// Found by reasoning about the `http_params` fuzz target's exact-number oracle, then by the
/// target itself: serde_json's default float parser is fast but not correctly rounded, so a
/// REAL parameter with 16–19 significant digits and a large exponent could bind as the
/// neighbouring double (about 30% of such values). rqlite (Go's `strconv.ParseFloat`) binds
/// the correctly rounded value, so the stored value differed from rqlite's and from what the
/// client sent. Fixed by enabling serde_json's `float_roundtrip` feature.
#[test]
fn real_parameters_bind_the_correctly_rounded_double() {
    for text in [
        "1.5762935925880763e206",
        "1.0640927457171686e167",
        "0.642552389239974198e279",
        "1.768650339504715e81",
        "1.4937795560748803e-255",
    ] {
        let body = format!(r#"[["SELECT ?", {text}]]"#);
        let got = parse_statements(body.as_bytes(), false, 1 << 20).expect("parses");
        let want: f64 = text.parse().expect("std parse is exact");
        match &got[0].params {
            Params::Positional(v) => match v.as_slice() {
                [ParamValue::Real(f)] => {
                    assert_eq!(f.to_bits(), want.to_bits(), "{text} bound as {f:e}")
                }
                other => panic!("{text}: unexpected params {other:?}"),
            },
            other => panic!("{text}: unexpected params {other:?}"),
        }
    }
}

/// Damages the second leaf page of table `bad` the way the dump kit's `corrupt_table` case
/// does: cell 0 runs off the page, cell 1 points into the page header.
fn corrupt_second_leaf(path: &std::path::Path, root: u32) {
    let mut data = std::fs::read(path).unwrap();
    let psz = usize::from(u16::from_be_bytes([data[16], data[17]]));
    let hdr = |n: u32| (n as usize - 1) * psz + if n == 1 { 100 } else { 0 };
    let h = hdr(root);
    assert_eq!(data[h], 0x05, "root of 'bad' is an interior page");
    let cp = usize::from(u16::from_be_bytes([data[h + 14], data[h + 15]]));
    let off = (root as usize - 1) * psz + cp;
    let child = u32::from_be_bytes(data[off..off + 4].try_into().unwrap());
    let c = hdr(child);
    assert_eq!(data[c], 0x0D, "a table leaf page");
    data[c + 8..c + 10].copy_from_slice(&((psz - 4) as u16).to_be_bytes());
    data[c + 10..c + 12].copy_from_slice(&3u16.to_be_bytes());
    std::fs::write(path, data).unwrap();
}

/// Bug: on a corrupt table the dump was written completely (ending in `ROLLBACK; -- due to
/// errors`, as the shell's), but then `RELEASE` of the snapshot savepoint failed with
/// SQLITE_CORRUPT, `dump` returned that error and `raftlite dump` exited 1 with a full dump on
/// stdout. Now the snapshot is ended (ROLLBACK if need be) and the dump counts as written.
#[test]
fn corrupt_table_dump_succeeds_and_releases_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    let c = Connection::open(&path, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
    c.execute_batch(
        "PRAGMA page_size=1024;
        CREATE TABLE good(id INTEGER PRIMARY KEY, v TEXT);
        CREATE TABLE bad(id INTEGER PRIMARY KEY, v TEXT);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<50)
        INSERT INTO good SELECT i, printf('g%03d%.40c', i, 'x') FROM n;
        INSERT INTO bad SELECT id, 'b' || substr(v, 2) FROM good;",
    )
    .unwrap();
    let root = c
        .query_i64("SELECT rootpage FROM sqlite_schema WHERE name='bad'")
        .unwrap();
    drop(c);
    corrupt_second_leaf(&path, root.unwrap() as u32);

    let ro = Connection::open(&path, OpenFlags::READ_ONLY).unwrap();
    let mut out = Vec::new();
    let stats = dump(&ro, None, &mut out).expect("a corrupt table is reported inside the dump");
    let text = String::from_utf8(out).unwrap();
    assert!(stats.errors > 0);
    assert!(
        text.contains("/****** CORRUPTION ERROR *******/\n"),
        "{text}"
    );
    assert!(text.ends_with("ROLLBACK; -- due to errors\n"), "{text}");
    assert!(
        ro.is_autocommit().unwrap(),
        "the read snapshot is not left open"
    );
}

// Attacks on the apply path (issue #22) and on reads (issue #21, item 2): each one stopped
// every node, split the replicas or let a read write. The gate (`db::gate`) answers them now;
// tests/hostile.rs replays all of them on a 3-node cluster and restarts it.

mod common;

use common::Node;

/// POSTs `body` to `path` and returns the JSON answer, which must be a 200.
fn post_json(node: &Node, path: &str, body: &str) -> serde_json::Value {
    let a = node.post(path, body);
    assert_eq!(a.status, 200, "{path} {body}: {}", a.body);
    a.json()
}

fn execute(node: &Node, body: &str) -> serde_json::Value {
    post_json(node, "/db/execute", body)
}

/// The errors of each statement's result (None where it succeeded).
fn errors(answer: &serde_json::Value) -> Vec<Option<String>> {
    answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {answer}"))
        .iter()
        .map(|r| r["error"].as_str().map(str::to_owned))
        .collect()
}

fn count(node: &Node, table: &str) -> i64 {
    let q = node.query(&format!("SELECT count(*) FROM {table}"));
    let v: serde_json::Value = serde_json::from_str(&q).unwrap();
    v["results"][0]["values"][0][0]
        .as_i64()
        .unwrap_or_else(|| panic!("{q}"))
}

/// The node still applies writes: a fresh write answers without error.
fn assert_writes(node: &Node) {
    let a = execute(
        node,
        r#"["CREATE TABLE IF NOT EXISTS alive(x)", "INSERT INTO alive VALUES(1)"]"#,
    );
    assert_eq!(errors(&a), vec![None, None], "{a}");
}

/// Stops the node (gracefully: it must still be running, not stopped by a fault) and starts
/// it again on its data directory.
fn restart(mut node: Node, args: &[&str]) -> Node {
    let temp = node.take_temp().expect("temp dir");
    let status = node.stop();
    assert!(
        status.success(),
        "the node had stopped: {status:?}\n{}",
        node.log()
    );
    let restarted = Node::start_in(&temp.path().join("data"), args);
    std::mem::forget(temp);
    restarted
}

/// Issue #22: `EXPLAIN PRAGMA query_only=1` through `/db/execute` stopped the node with exit
/// 70 ("record applied index: attempt to write a readonly database"), and again on every
/// restart: SQLite applies flag pragmas while compiling, and the pragma check only looked at
/// statements starting with `PRAGMA`.
#[test]
fn explain_pragma_query_only_no_longer_stops_the_node() {
    let node = Node::start(&[]);
    let a = execute(&node, r#"["EXPLAIN PRAGMA query_only=1"]"#);
    assert_eq!(
        errors(&a),
        vec![Some("disallowed pragma".to_string())],
        "{a}"
    );
    assert_writes(&node);
    let node = restart(node, &[]);
    assert_writes(&node);
}

/// Issue #22: `ATTACH DATABASE '/any/path.db' AS e` created a file anywhere on every node's
/// disk; writes into it were in no snapshot.
#[test]
fn attach_database_no_longer_writes_outside_the_data_directory() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("e.db");
    let node = Node::start(&[]);
    let body = serde_json::json!([
        format!("ATTACH DATABASE '{}' AS e", target.display()),
        "CREATE TABLE e.x(y)",
        "INSERT INTO e.x VALUES(1)"
    ])
    .to_string();
    let a = execute(&node, &body);
    let errs = errors(&a);
    assert!(
        errs[0]
            .as_deref()
            .is_some_and(|e| e.starts_with("ATTACH and DETACH are not allowed")),
        "{a}"
    );
    assert!(errs[1].is_some() && errs[2].is_some(), "{a}");
    assert!(!target.exists());
    assert_writes(&node);
}

/// Issue #22: a setting of one connection (`recursive_triggers` here) stayed on the writer, so
/// later entries gave other results there than on a node restarted from a snapshot.
#[test]
fn connection_settings_no_longer_outlive_their_request() {
    let node = Node::start(&[]);
    execute(
        &node,
        r#"["CREATE TABLE n(x)", "CREATE TRIGGER more AFTER INSERT ON n WHEN new.x < 5 BEGIN INSERT INTO n VALUES(new.x + 1); END"]"#,
    );
    let a = execute(
        &node,
        r#"["PRAGMA recursive_triggers=1", "INSERT INTO n VALUES(1)"]"#,
    );
    assert_eq!(errors(&a), vec![None, None], "{a}");
    assert_eq!(
        count(&node, "n"),
        5,
        "recursion within the request that asked for it"
    );
    execute(&node, r#"["INSERT INTO n VALUES(1)"]"#);
    assert_eq!(
        count(&node, "n"),
        7,
        "the next request has the default again"
    );
    let a = execute(&node, r#"["PRAGMA cache_size=1"]"#);
    assert!(
        errors(&a)[0]
            .as_deref()
            .unwrap()
            .starts_with("disallowed pragma"),
        "{a}"
    );
}

/// Issue #22: pooled readers carried one user's settings to the next (a query's
/// `PRAGMA case_sensitive_like=1` changed LIKE for whoever got that connection next).
#[test]
fn pooled_readers_no_longer_carry_settings_between_queries() {
    let node = Node::start(&[]);
    for _ in 0..5 {
        let a = post_json(&node, "/db/query", r#"["PRAGMA case_sensitive_like=1"]"#);
        assert_eq!(
            errors(&a),
            vec![Some(
                "disallowed pragma: case_sensitive_like cannot be set in a query".into()
            )]
        );
        let like = node.query("SELECT 'a' LIKE 'A'");
        assert!(like.contains("[[1]]"), "{like}");
    }
}

/// Issue #22: a write that never ends (a recursive CTE without a bound) held the writer on
/// every node forever, and replayed after a restart. It now stops at its budget on every node
/// alike, answers rqlite's `execute timeout`, changes nothing, and the next write runs.
#[test]
fn an_endless_write_ends_at_its_budget_and_the_next_write_runs() {
    let args = ["-write-budget-steps", "2000000"];
    let node = Node::start(&args);
    execute(&node, r#"["CREATE TABLE e(x)"]"#);
    let started = std::time::Instant::now();
    let a = execute(
        &node,
        r#"["INSERT INTO e VALUES(0)", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) INSERT INTO e SELECT x FROM c"]"#,
    );
    assert_eq!(
        errors(&a),
        vec![None, Some("execute timeout".into())],
        "{a}"
    );
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .starts_with("execute timeout: the request went over its budget"),
        "{a}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(count(&node, "e"), 0, "the request is undone");
    assert_writes(&node);
    let node = restart(node, &args);
    assert_writes(&node);
    assert_eq!(count(&node, "e"), 0);
}

/// Issue #21, item 2: a user with only `query` wrote through `POST /db/query?level=strong`
/// (`["INSERT …", "COMMIT"]` committed, on the writer, with the real clock). Reads at every
/// level now run only read-only statements, without transaction control, and answer rqlite's
/// `attempt to change database via query operation`.
#[test]
fn a_strong_read_can_no_longer_commit_a_write() {
    let node = Node::start(&[]);
    execute(&node, r#"["CREATE TABLE t(x)"]"#);
    for level in ["strong", "linearizable", "weak", "none", "auto"] {
        let a = post_json(
            &node,
            &format!("/db/query?level={level}"),
            r#"["INSERT INTO t VALUES(1)", "COMMIT", "BEGIN", "INSERT INTO t VALUES(datetime('now'))", "CREATE TEMP TABLE x(a)"]"#,
        );
        let refused = Some("attempt to change database via query operation".to_string());
        assert_eq!(errors(&a), vec![refused; 5], "{level}: {a}");
    }
    assert_eq!(count(&node, "t"), 0);
    // A read-only /db/request at strong is a read too: it answers rows, and writes nothing.
    let a = post_json(
        &node,
        "/db/request?level=strong",
        r#"["SELECT count(*) FROM t"]"#,
    );
    assert_eq!(a["results"][0]["values"], serde_json::json!([[0]]), "{a}");
    assert_writes(&node);
}

/// Issue #22: SQL load scripts passed no filter at all.
#[test]
fn a_sql_load_goes_through_the_gate() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("loaded.db");
    let node = Node::start(&[]);
    let script = format!(
        "CREATE TABLE ok(x);\nATTACH DATABASE '{}' AS e;\nCREATE TABLE e.x(y);\n",
        target.display()
    );
    let a = node.request("POST", "/db/load", None, script.into_bytes());
    assert_eq!(a.status, 200, "{}", a.body);
    let error = a.json()["results"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.starts_with("ATTACH and DETACH are not allowed"),
        "{}",
        a.body
    );
    assert!(!target.exists());
    let tables = node.query("SELECT count(*) FROM sqlite_schema WHERE name = 'ok'");
    assert!(
        tables.contains("[[0]]"),
        "nothing of the script applied: {tables}"
    );
    assert_writes(&node);
}

/// Found while writing the gate: `RELEASE "raftlite request"` released the savepoint a request
/// runs in, so raftlite's own release at its end failed, which stopped the node (and every
/// node, the entry being in the log).
#[test]
fn releasing_raftlites_savepoint_no_longer_stops_the_node() {
    let node = Node::start(&[]);
    let a = execute(
        &node,
        r#"["RELEASE \"raftlite request\"", "INSERT INTO nosuch VALUES(1)"]"#,
    );
    let errs = errors(&a);
    assert!(errs[0].as_deref().unwrap().contains("are reserved"), "{a}");
    assert_writes(&node);
}

/// Found while writing the gate: with `-fk`, a deferred foreign key violation only showed at
/// the entry's COMMIT, which failed on every node and stopped them all. It now fails the
/// request that caused it.
#[test]
fn a_deferred_foreign_key_violation_no_longer_stops_the_node() {
    let node = Node::start(&["-fk"]);
    execute(
        &node,
        r#"["CREATE TABLE p(id INTEGER PRIMARY KEY)", "CREATE TABLE c(p REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)"]"#,
    );
    let a = execute(&node, r#"["INSERT INTO c VALUES(5)"]"#);
    assert_eq!(a["error"], "FOREIGN KEY constraint failed", "{a}");
    assert_eq!(count(&node, "c"), 0);
    let a = execute(
        &node,
        r#"["INSERT INTO p VALUES(5)", "INSERT INTO c VALUES(5)"]"#,
    );
    assert_eq!(errors(&a), vec![None, None], "{a}");
    assert_writes(&node);
}

/// Found while writing the gate: the state table was open to writes; dropping it (or adding a
/// trigger that refuses updates) made recording the applied index fail on every node.
#[test]
fn dropping_the_state_table_no_longer_stops_the_node() {
    let node = Node::start(&[]);
    for sql in [
        "DROP TABLE _raftlite_state",
        "CREATE TRIGGER no BEFORE UPDATE ON _raftlite_state BEGIN SELECT RAISE(FAIL, 'no'); END",
        "CREATE TEMP TABLE _raftlite_state(id, applied_log_id, membership)",
    ] {
        let a = execute(&node, &serde_json::json!([sql]).to_string());
        assert!(
            errors(&a)[0]
                .as_deref()
                .unwrap()
                .contains("_raftlite_state is raftlite's own"),
            "{sql}: {a}"
        );
        assert_writes(&node);
    }
    let node = restart(node, &[]);
    assert_writes(&node);
}

/// Found while writing the gate: a temporary trigger on a main table lived on the writer only,
/// firing on the node that created it and not on one restarted since.
#[test]
fn a_temp_trigger_no_longer_fires_on_one_node_only() {
    let node = Node::start(&[]);
    execute(&node, r#"["CREATE TABLE t(x)", "CREATE TABLE seen(x)"]"#);
    let a = execute(
        &node,
        r#"["CREATE TEMP TRIGGER spy AFTER INSERT ON main.t BEGIN INSERT INTO seen VALUES(new.x); END", "INSERT INTO t VALUES(1)"]"#,
    );
    assert_eq!(errors(&a), vec![None, None], "{a}");
    assert_eq!(count(&node, "seen"), 1, "within its request it works");
    execute(&node, r#"["INSERT INTO t VALUES(2)"]"#);
    assert_eq!(count(&node, "seen"), 1, "and it is gone after it");
}

/// Found while writing the gate: `total_changes()` counts since the connection opened, so
/// `INSERT INTO t VALUES(total_changes())` stored a different value on a restarted node.
#[test]
fn node_local_values_no_longer_reach_the_data() {
    let node = Node::start(&[]);
    execute(&node, r#"["CREATE TABLE t(x)"]"#);
    for sql in [
        "INSERT INTO t VALUES(total_changes())",
        "INSERT INTO t SELECT file FROM pragma_database_list",
        "INSERT INTO t SELECT pageno FROM dbstat",
    ] {
        let a = execute(&node, &serde_json::json!([sql]).to_string());
        let e = errors(&a)[0].clone().unwrap_or_default();
        assert!(e.contains("not allowed in a write"), "{sql}: {a}");
    }
    assert_eq!(count(&node, "t"), 0);
}

/// Found while writing the gate: an external-content full-text index told to delete a row its
/// content table still holds is out of step on every node alike, and the statement that
/// checked it failed with SQLITE_CORRUPT_VTAB, which was taken for a corrupt disk: the node
/// stopped (every node).
#[test]
fn a_damaged_full_text_index_no_longer_stops_the_node() {
    let node = Node::start(&[]);
    execute(
        &node,
        r#"["CREATE TABLE src(id INTEGER PRIMARY KEY, b)", "CREATE VIRTUAL TABLE ft USING fts5(b, content='src', content_rowid='id')", "INSERT INTO src VALUES(1, 'hello world')", "INSERT INTO ft(rowid, b) VALUES(1, 'hello world')"]"#,
    );
    execute(
        &node,
        r#"["INSERT INTO ft(ft, rowid, b) VALUES('delete', 1, 'hello world')"]"#,
    );
    // Rank 1: compare the index with the external content table too.
    let a = execute(
        &node,
        r#"["INSERT INTO ft(ft, rank) VALUES('integrity-check', 1)"]"#,
    );
    let e = errors(&a)[0].clone().unwrap_or_default();
    assert!(e.contains("malformed"), "{a}");
    assert_writes(&node);
    let a = execute(
        &node,
        r#"["INSERT INTO ft(ft) VALUES('rebuild')", "INSERT INTO ft(ft, rank) VALUES('integrity-check', 1)"]"#,
    );
    assert_eq!(errors(&a), vec![None, None], "{a}");
}

/// Found by the `apply_diff` fuzz target within minutes: once a table holds rowid
/// 9223372036854775807, SQLite picks each new rowid at random from its process-wide PRNG, so
/// every replica stored a different one. A request that leaves a table at that rowid is now
/// undone, with the reason.
#[test]
fn a_table_at_the_largest_rowid_no_longer_splits_the_replicas() {
    let node = Node::start(&[]);
    execute(&node, r#"["CREATE TABLE t(x)"]"#);
    let a = execute(
        &node,
        r#"["INSERT INTO t(rowid, x) VALUES(9223372036854775807, 1)", "INSERT INTO t(x) VALUES(2)"]"#,
    );
    let error = a["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("would hold rowid 9223372036854775807"),
        "{a}"
    );
    assert_eq!(count(&node, "t"), 0);
    assert_writes(&node);
}

/// Found by the `apply_diff` fuzz target: a SQL load whose statement ended the transaction
/// itself (a ROLLBACK conflict clause here; a write stopped by its budget likewise) left
/// nothing for the load's own ROLLBACK, which failed and stopped the node, and every node
/// applying the entry.
#[test]
fn a_load_whose_statement_rolls_back_no_longer_stops_the_node() {
    let node = Node::start(&[]);
    assert_writes(&node);
    let script = "CREATE TABLE once(x INTEGER PRIMARY KEY ON CONFLICT ROLLBACK);\n\
                  INSERT INTO once VALUES(1);\nINSERT INTO once VALUES(1);\n";
    let a = node.request("POST", "/db/load", None, script.as_bytes().to_vec());
    assert_eq!(a.status, 200, "{}", a.body);
    let error = a.json()["results"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("UNIQUE constraint failed"), "{}", a.body);
    assert_writes(&node);
    let tables = node.query("SELECT count(*) FROM sqlite_schema WHERE name = 'once'");
    assert!(tables.contains("[[0]]"), "{tables}");
}
