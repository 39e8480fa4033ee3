//! Deterministic replication, end to end: a workload full of non-deterministic SQL (random(),
//! randomblob(), every 'now' form, CURRENT_TIMESTAMP defaults, a trigger and a view calling
//! them, per-row random updates, AUTOINCREMENT, transactions that fail half-way) leaves every
//! node of a 3-node cluster with the same content digest, the same binary backup and the same
//! SQL dump — across a leader change, and after a node restarts and replays its log tail.

mod common;

use std::time::Duration;

use common::{wait_until, Cluster, Node, FAST_RAFT};

const SCHEMA: &str = r#"[
 "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, r INTEGER, b BLOB, created TEXT DEFAULT CURRENT_TIMESTAMP, d TEXT DEFAULT CURRENT_DATE, t TEXT DEFAULT CURRENT_TIME, ms REAL DEFAULT (unixepoch('now','subsec')))",
 "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, item INTEGER, noise INTEGER, tag BLOB, at TEXT)",
 "CREATE TRIGGER items_audit AFTER INSERT ON items BEGIN INSERT INTO audit(item, noise, tag, at) VALUES (new.id, random(), randomblob(8), strftime('%Y-%m-%d %H:%M:%f','now')); END",
 "CREATE VIEW v_now AS SELECT random() AS r, julianday('now') AS j, randomblob(4) AS b",
 "CREATE TABLE nows (a, b, c, d, e, f, g)",
 "CREATE TABLE plain (k TEXT PRIMARY KEY, v) WITHOUT ROWID"
]"#;

/// One step of the workload: the request body and the query string.
fn step(i: usize) -> Vec<(String, &'static str)> {
    let mut out = vec![
        (
            r#"["INSERT INTO items(r, b) VALUES(random(), randomblob(16))", "INSERT INTO nows VALUES(datetime('now'), date('now'), time('now'), julianday('now'), unixepoch('now'), strftime('%s','now'), timediff('now','2000-01-01'))", "INSERT INTO nows SELECT r, j, b, 0, 0, 0, 0 FROM v_now"]"#.to_string(),
            "",
        ),
        (
            format!(r#"[["INSERT OR REPLACE INTO plain VALUES(?, hex(randomblob(6)))", "k{}"]]"#, i % 7),
            "",
        ),
    ];
    if i % 5 == 0 {
        out.push((
            r#"["UPDATE items SET r = random(), b = randomblob(3)"]"#.into(),
            "",
        ));
    }
    if i % 4 == 1 {
        // Fails half-way as a transaction: the first insert (and its trigger, and its
        // AUTOINCREMENT step) is undone on every node.
        out.push((
            r#"["INSERT INTO items(r) VALUES(random())", "INSERT INTO nosuch VALUES(1)"]"#.into(),
            "?transaction",
        ));
    }
    if i % 4 == 3 {
        // Fails half-way without a transaction: the statements around the error stay.
        out.push((
            r#"["INSERT INTO items(r) VALUES(random())", "INSERT INTO items(id) VALUES(1)", "INSERT INTO audit(noise) VALUES(random())"]"#.into(),
            "",
        ));
        out.push((
            r#"["BEGIN", "INSERT INTO items(r) VALUES(random())", "ROLLBACK"]"#.into(),
            "",
        ));
    }
    out
}

/// Sends a write to `node`, retrying while the cluster has no leader (elections).
fn write(node: &Node, body: &str, query: &str) {
    let path = format!("/db/execute{query}");
    let ok = wait_until(Duration::from_secs(30), || {
        let a = node.post(&path, body);
        a.status == 200 && a.body.contains("\"results\":[{")
    });
    assert!(
        ok,
        "write {body} never succeeded on {}:\n{}",
        node.http_addr,
        node.log()
    );
}

fn run_workload(nodes: &[&Node], steps: std::ops::Range<usize>) {
    for i in steps {
        let node = nodes[i % nodes.len()];
        for (body, query) in step(i) {
            write(node, &body, query);
        }
    }
}

fn digest(node: &Node) -> (u64, String, u64) {
    let s = node.get("/status?digest").json();
    let d = &s["store"]["db_digest"];
    (
        d["applied_index"].as_u64().unwrap_or(0),
        d["digest"].as_str().unwrap_or_default().to_string(),
        d["rows"].as_u64().unwrap_or(0),
    )
}

fn rows(node: &Node, sql: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", sql)
        .finish();
    node.get(&format!("/db/query?level=none&{q}")).body
}

fn bytes(node: &Node, path: &str) -> Vec<u8> {
    indexed_bytes(node, path).1
}

/// The body and the Raft index the backup reflects.
fn indexed_bytes(node: &Node, path: &str) -> (String, Vec<u8>) {
    let r = reqwest::blocking::Client::new()
        .get(node.url(path))
        .timeout(Duration::from_secs(60))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    let index = r
        .headers()
        .get("x-raftlite-raft-index")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (index, r.bytes().unwrap().to_vec())
}

/// Waits until every node reports the same applied index in its digest, then checks that the
/// digests, the table contents, the binary backups and the SQL dumps are identical.
fn assert_converged(nodes: &[&Node]) {
    let mut last = Vec::new();
    let same = wait_until(Duration::from_secs(30), || {
        last = nodes.iter().map(|n| digest(n)).collect::<Vec<_>>();
        last.windows(2).all(|w| w[0].0 == w[1].0) && last[0].0 > 0
    });
    assert!(same, "nodes did not reach the same applied index: {last:?}");
    for d in &last {
        assert_eq!(d.1, last[0].1, "digests differ at the same index: {last:?}");
        assert_eq!(d.1.len(), 32);
    }
    assert!(last[0].2 > 50, "the digest covers the rows: {last:?}");
    for sql in [
        "SELECT * FROM items ORDER BY id",
        "SELECT * FROM audit ORDER BY id",
        "SELECT * FROM nows ORDER BY rowid",
        "SELECT * FROM plain",
        "SELECT * FROM sqlite_sequence ORDER BY name",
    ] {
        let first = rows(nodes[0], sql);
        for n in &nodes[1..] {
            assert_eq!(rows(n, sql), first, "{sql}");
        }
    }
    // Binary copies are compared at the same Raft index (an entry such as a membership change
    // could land between two downloads; it changes no user table, but the freed pages of the
    // dropped state table would hold another log id).
    let mut backups = Vec::new();
    let same_index = wait_until(Duration::from_secs(30), || {
        backups = nodes
            .iter()
            .map(|n| indexed_bytes(n, "/db/backup?noleader"))
            .collect();
        backups.windows(2).all(|w| w[0].0 == w[1].0)
    });
    assert!(same_index, "backups never at one index");
    for b in &backups[1..] {
        assert!(
            b.1 == backups[0].1,
            "binary backups differ at index {}",
            b.0
        );
    }
    let dump = bytes(nodes[0], "/db/backup?fmt=sql&noleader");
    assert!(String::from_utf8_lossy(&dump).contains("CREATE TRIGGER items_audit"));
    for n in &nodes[1..] {
        assert_eq!(
            String::from_utf8_lossy(&bytes(n, "/db/backup?fmt=sql&noleader")),
            String::from_utf8_lossy(&dump),
            "SQL dumps differ"
        );
    }
}

#[test]
fn mixed_nondeterministic_workload_converges_across_a_leader_change_and_a_restart() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let l = &c.nodes[leader];
    l.execute(SCHEMA);
    // Many rows, then one UPDATE giving each its own random value, as SQLite does.
    l.execute(
        r#"["WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300) INSERT INTO items(r) SELECT i FROM n", "UPDATE items SET r = random()"]"#,
    );
    let distinct = rows(
        l,
        "SELECT count(DISTINCT r) = count(*), count(*) FROM items",
    );
    assert!(distinct.contains("[[1,300]]"), "{distinct}");
    {
        let all: Vec<&Node> = c.nodes.iter().collect();
        run_workload(&all, 0..20);
        assert_converged(&all);
    }

    // Leader change in the middle of the workload: kill the leader, go on with the others.
    let old = c.leader();
    c.nodes[old].kill();
    {
        let survivors: Vec<&Node> = c.nodes.iter().filter(|n| n.is_running()).collect();
        run_workload(&survivors, 20..40);
        assert_converged(&survivors);
    }
    assert_ne!(c.leader(), old);

    // The old leader restarts on its data: it replays its log tail and catches up.
    let dir = c.nodes[old].data_dir.clone();
    let id = format!("node{}", old + 1);
    let temp = c.nodes[old].take_temp();
    c.nodes[old] = Node::start_in(&dir, &[FAST_RAFT, &["-node-id", &id]].concat());
    let _temp = temp;
    {
        let all: Vec<&Node> = c.nodes.iter().collect();
        run_workload(&all, 40..50);
        assert_converged(&all);
    }

    // A follower that stops cleanly and restarts reaches the same digest as well.
    let f = c.followers()[0];
    c.nodes[f].stop();
    let dir = c.nodes[f].data_dir.clone();
    let id = format!("node{}", f + 1);
    let temp = c.nodes[f].take_temp();
    {
        let running: Vec<&Node> = c.nodes.iter().filter(|n| n.is_running()).collect();
        run_workload(&running, 50..55);
    }
    c.nodes[f] = Node::start_in(&dir, &[FAST_RAFT, &["-node-id", &id]].concat());
    let _temp2 = temp;
    let all: Vec<&Node> = c.nodes.iter().collect();
    assert_converged(&all);

    // The failed transactions left nothing behind; the clock was the leaders'.
    let leader = &c.nodes[c.leader()];
    let orphans = rows(
        leader,
        "SELECT count(*) FROM audit WHERE item IS NOT NULL AND item NOT IN (SELECT id FROM items)",
    );
    assert!(orphans.contains("[[0]]"), "{orphans}");
    let years = rows(leader, "SELECT count(*) FROM items WHERE created < '2025'");
    assert!(years.contains("[[0]]"), "{years}");
}

#[test]
fn reads_keep_the_real_clock_and_randomness() {
    let n = Node::start(&[]);
    n.execute(r#"["CREATE TABLE t (a)", "INSERT INTO t VALUES (random())"]"#);
    let a = rows(&n, "SELECT random(), random()");
    let b = rows(&n, "SELECT random(), random()");
    assert_ne!(a, b);
    // A write's 'now' is within the test's own clock window.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    n.execute(r#"["INSERT INTO t VALUES (CAST(unixepoch('now','subsec') * 1000 AS INTEGER))"]"#);
    let after = before + 10_000;
    let got: serde_json::Value =
        serde_json::from_str(&rows(&n, "SELECT a FROM t WHERE rowid = 2")).unwrap();
    let ms = got["results"][0]["values"][0][0].as_i64().unwrap();
    assert!(
        ms >= before - 1000 && ms <= after,
        "{ms} not in [{before}, {after}]"
    );
}

#[test]
fn disallowed_pragmas_are_refused_with_rqlites_error() {
    let n = Node::start(&[]);
    for sql in [
        "PRAGMA journal_mode=DELETE",
        "PRAGMA main.synchronous=OFF",
        "PRAGMA wal_checkpoint(TRUNCATE)",
        "PRAGMA wal_autocheckpoint=1",
        "PRAGMA query_only=1",
        "PRAGMA writable_schema=ON",
    ] {
        let body = serde_json::to_string(&[sql]).unwrap();
        for path in ["/db/execute", "/db/request", "/db/query"] {
            let a = n.post(path, &body);
            assert_eq!(
                (a.status, a.body.as_str()),
                (200, r#"{"results":[],"error":"disallowed pragma"}"#),
                "{path} {sql}"
            );
        }
    }
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", "PRAGMA journal_mode=delete")
        .finish();
    assert!(n
        .get(&format!("/db/query?{q}"))
        .body
        .contains("disallowed pragma"));
    // Reading those settings, and other pragmas, still work; the node kept its settings.
    let a = n.post(
        "/db/request",
        r#"["PRAGMA journal_mode", "PRAGMA foreign_keys=ON"]"#,
    );
    assert!(a.body.contains(r#"[["wal"]]"#), "{}", a.body);
    let s = n.get("/status").json();
    assert_eq!(
        s["store"]["sqlite3"]["pragmas"]["rw"]["journal_mode"],
        "wal"
    );
}

#[test]
fn returning_rows_raft_index_and_rewrite_flags() {
    let n = Node::start(&[]);
    n.execute(r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, r INTEGER, at TEXT)"]"#);
    // RETURNING returns the values the apply produced (the same on every node).
    let a = n.post(
        "/db/execute?raft_index&noparse&norwrandom&norwtime",
        r#"["INSERT INTO t(r, at) VALUES (random(), datetime('now')) RETURNING id, typeof(r), length(at)"]"#,
    );
    assert_eq!(a.status, 200);
    let j = a.json();
    assert_eq!(
        j["results"][0]["values"],
        serde_json::json!([[1, "integer", 19]]),
        "{}",
        a.body
    );
    assert!(j["raft_index"].as_u64().unwrap() > 0, "{}", a.body);
    // /db/sql shows what rqlite's rewriting would replicate; the flags turn parts off.
    let q = |extra: &str| {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", "SELECT random(), datetime('now')")
            .finish();
        n.get(&format!("/db/sql?{q}{extra}")).json()["results"][0].clone()
    };
    let full = q("");
    assert_eq!(full["original"], "SELECT random(), datetime('now')");
    let rewritten = full["rewritten"].as_str().unwrap();
    assert!(
        !rewritten.contains("random()") && !rewritten.contains("'now'"),
        "{rewritten}"
    );
    assert!(q("&norwrandom")["rewritten"]
        .as_str()
        .unwrap()
        .contains("random()"));
    assert!(q("&norwtime")["rewritten"]
        .as_str()
        .unwrap()
        .contains("'now'"));
    assert_eq!(
        q("&noparse")["rewritten"],
        "SELECT random(), datetime('now')"
    );
    let p = n
        .post("/db/sql", r#"["INSERT INTO t(r) VALUES(random())"]"#)
        .json();
    assert!(!p["results"][0]["rewritten"]
        .as_str()
        .unwrap()
        .contains("random()"));
    assert_eq!(n.request("DELETE", "/db/sql", None, "").status, 405);
}

#[test]
fn db_timeout_bounds_reads_by_time_and_writes_by_budget() {
    let n = Node::start(&[]);
    n.execute(r#"["CREATE TABLE t (x)"]"#);
    let forever =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c";
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", forever)
        .finish();
    let started = std::time::Instant::now();
    let a = n.get(&format!("/db/query?db_timeout=200ms&{q}"));
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, r#"{"results":[{"error":"query timeout"}]}"#)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The pooled reader is clean for the next query.
    assert!(n.query("SELECT 1").contains("[[1]]"));
    // A write's db_timeout becomes a budget of steps the leader puts in the entry (the same
    // on every node, whatever their speed): 1 ms buys too few for 300,000 rows, and the
    // request is undone with rqlite's answer; a generous one lets it run to the end.
    let insert = r#"["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 300000) INSERT INTO t SELECT x FROM c"]"#;
    let a = n.post("/db/execute?db_timeout=1ms", insert);
    assert_eq!(
        a.json()["results"][0]["error"],
        "execute timeout",
        "{}",
        a.body
    );
    assert!(n.query("SELECT count(*) FROM t").contains("[[0]]"));
    let a = n.post("/db/execute?db_timeout=1m", insert);
    assert!(a.body.contains(r#""rows_affected":300000"#), "{}", a.body);
}

#[test]
fn queued_writes_answer_at_once_and_wait_waits_for_the_batch() {
    let n = Node::start(&[
        "-write-queue-batch-size",
        "10",
        "-write-queue-timeout",
        "100ms",
    ]);
    n.execute(r#"["CREATE TABLE q (id INTEGER PRIMARY KEY, v, at DEFAULT CURRENT_TIMESTAMP)"]"#);
    let mut seqs = Vec::new();
    for i in 0..25 {
        let a = n.post(
            "/db/execute?queue",
            &format!(r#"[["INSERT INTO q(v) VALUES(?)", {i}]]"#),
        );
        assert_eq!(a.status, 200, "{}", a.body);
        let j = a.json();
        assert_eq!(j["results"], serde_json::json!([]), "{}", a.body);
        seqs.push(j["sequence_number"].as_i64().unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // `wait` answers once its batch (and every earlier one) is applied.
    let a = n.post(
        "/db/execute?queue&wait",
        r#"["INSERT INTO q(v) VALUES(random())"]"#,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json()["sequence_number"].as_i64().unwrap() > seqs[24]);
    assert!(n.query("SELECT count(*) FROM q").contains("[[26]]"));
    // Batches kept the order of acceptance.
    let order = n.query("SELECT group_concat(v) FROM (SELECT v FROM q WHERE id <= 25 ORDER BY id)");
    let expected: Vec<String> = (0..25).map(|i| i.to_string()).collect();
    assert!(order.contains(&expected.join(",")), "{order}");
}
