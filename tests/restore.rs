//! `POST /db/load` and `POST /boot` end to end on real processes: binary and SQL loads on a
//! 3-node cluster (through a follower, surviving a restart, reaching a node that joins later),
//! bad input that must change nothing and leave no file behind, `/boot`, `dry_run`, kill -9
//! inside named steps of a load (checked from the victim's log to have landed there), and the
//! writer's cached statements after a load.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{sqlite3, wait_until, Answer, Cluster, Node};

/// A database file with `rows` rows in `test`, made by the sqlite3 shell.
fn make_db(dir: &Path, name: &str, journal: &str, rows: u32) -> PathBuf {
    let path = dir.join(name);
    sqlite3(
        &path,
        &format!(
            "PRAGMA journal_mode={journal}; CREATE TABLE test(id INTEGER PRIMARY KEY, v TEXT); \
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < {rows}) \
             INSERT INTO test(v) SELECT printf('row %d', x) FROM c;"
        ),
    );
    path
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

fn post(node: &Node, path: &str, body: Vec<u8>) -> Answer {
    let r = client()
        .post(node.url(path))
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .expect("POST");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Answer {
        status,
        headers,
        body: r.text().unwrap_or_default(),
    }
}

/// A local read (`level=none`) of one value.
fn local(node: &Node, sql: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", sql)
        .append_pair("level", "none")
        .finish();
    node.get(&format!("/db/query?{q}")).body
}

fn count(node: &Node, table: &str) -> String {
    local(node, &format!("SELECT count(*) FROM {table}"))
}

fn has_count(body: &str, n: u64) -> bool {
    body.contains(&format!("\"values\":[[{n}]]"))
}

/// Waits (bounded by `within`) until `node` counts `n` rows in `table`.
fn assert_count_soon(node: &Node, table: &str, n: u64, within: Duration) {
    assert!(
        wait_until(within, || has_count(&count(node, table), n)),
        "node {} never counted {n} rows in {table}: {}\n{}",
        node.http_addr,
        count(node, table),
        node.log()
    );
}

/// Checks a load answered rqlite's 200 with a script error that mentions `what`.
fn assert_script_error(r: &Answer, what: &str) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.json()["results"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains(what)),
        "{}",
        r.body
    );
}

/// Files a load may leave in the data directory.
fn load_files(node: &Node) -> Vec<String> {
    std::fs::read_dir(&node.data_dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("load-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (bounded) until a load has left no file in `node`'s data directory.
fn assert_load_files_go(node: &Node) {
    assert!(
        wait_until(Duration::from_secs(30), || load_files(node).is_empty()),
        "{:?}",
        load_files(node)
    );
}

/// Checks whether the source of the last binary load installed from a copy of its staged file
/// (`copy=true`: some member could not have pulled it yet) or moved it (`copy=false`).
fn assert_source_copied(source: &Node, copied: bool) {
    let log = source.log();
    let waited = log
        .lines()
        .find(|line| line.contains("waited for the other members to apply the entry"))
        .unwrap_or_default();
    assert!(waited.contains(&format!("copy={copied}")), "{log}");
}

/// This node's prebuilt SQL loads applied by installing the built file, and by running the
/// script (`/debug/vars`).
fn prebuilt_counts(node: &Node) -> (u64, u64) {
    let vars = node.get("/debug/vars").json();
    let n = |k: &str| vars["store"][k].as_u64().unwrap_or(u64::MAX);
    (
        n("num_prebuilt_load_installs"),
        n("num_prebuilt_load_scripts"),
    )
}

/// A script with `rows` rows in `big`, and a table `env` of values that depend on the apply's
/// clock and random seed.
fn script_with_rows(rows: u32) -> String {
    let mut sql = String::from(
        "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n\
         CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT);\n",
    );
    for i in 1..=rows {
        sql.push_str(&format!(
            "INSERT INTO big VALUES({i},'row {i} of a script long enough to take a moment');\n"
        ));
    }
    sql.push_str(
        "CREATE TABLE env(r, year);\n\
         INSERT INTO env VALUES(random(), CAST(strftime('%Y','now') AS INTEGER));\nCOMMIT;\n",
    );
    sql
}

/// The `env` table of [`script_with_rows`] on a node: one random value and a recent year.
fn env_row(node: &Node) -> serde_json::Value {
    let body = local(node, "SELECT r, year FROM env");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = v["results"][0]["values"][0].clone();
    assert!(row[1].as_i64().is_some_and(|y| y >= 2025), "{body}");
    row
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn binary_load_reaches_every_node_survives_restart_and_joiners() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(3, &["-raft-snap", "100000"]);
    let l = cluster.leader();
    cluster.nodes[l].execute(r#"["CREATE TABLE old(a)", "INSERT INTO old VALUES(1)"]"#);
    // A WAL-mode file, gzipped, sent to a follower: forwarded to the leader as a stream.
    let db = make_db(tmp.path(), "new.db", "WAL", 1000);
    let bytes = std::fs::read(&db).unwrap();
    assert_eq!(&bytes[18..20], &[2, 2]);
    let f = cluster.followers()[0];
    let a = post(&cluster.nodes[f], "/db/load?report", gz(&bytes));
    assert_eq!(a.status, 200, "{}", a.body);
    let j = a.json();
    assert_eq!(j["results"], serde_json::json!([]));
    assert_eq!(j["load"]["kind"], "sqlite");
    assert_eq!(j["load"]["tables"], 1);
    // Every phase is reported, as seconds.
    for phase in ["upload_s", "validate_s", "install_s"] {
        assert!(
            j["load"]["phases"][phase].as_f64().is_some(),
            "{phase}: {j}"
        );
    }
    for node in &cluster.nodes {
        assert_count_soon(node, "test", 1000, Duration::from_secs(30));
        assert!(count(node, "old").contains("no such table"));
    }
    // With every follower up, the source waited for them to pull the file and then moved it
    // into place instead of writing another copy.
    assert_source_copied(&cluster.nodes[l], false);
    // Writes continue after the load, on every node.
    cluster.nodes[l].execute(r#"["INSERT INTO test(v) VALUES('after')"]"#);
    for node in &cluster.nodes {
        assert_count_soon(node, "test", 1001, Duration::from_secs(10));
    }
    // A follower restarts with the loaded database and the write after it.
    let f = cluster.followers()[1];
    let temp = cluster.nodes[f].take_temp();
    cluster.nodes[f].stop();
    let dir = cluster.nodes[f].data_dir.clone();
    let id = format!("node{}", f + 1);
    cluster.nodes[f] = Node::start_in(&dir, &["-raft-election-timeout", "500ms", "-node-id", &id]);
    let _keep = temp;
    assert_count_soon(&cluster.nodes[f], "test", 1001, Duration::from_secs(20));
    // A node that joins later receives the loaded database.
    let join = cluster.nodes[l].raft_addr.clone();
    let late = Node::start(&[
        "-raft-election-timeout",
        "500ms",
        "-node-id",
        "node4",
        "-join",
        &join,
    ]);
    assert_count_soon(&late, "test", 1001, Duration::from_secs(30));
    // The source retires its staged file once every member has applied the load.
    for node in &cluster.nodes {
        assert_load_files_go(node);
    }
}

/// A follower that is down during a binary load cannot pull the file yet: the source does not
/// wait for it, keeps its staged file (copying it for its own install), and the follower gets
/// the new database when it comes back.
#[test]
fn binary_load_with_a_follower_down_reaches_it_later() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(3, &[]);
    let l = cluster.leader();
    cluster.nodes[l].execute(r#"["CREATE TABLE old(a)", "INSERT INTO old VALUES(1)"]"#);
    let f = cluster.followers()[0];
    let temp = cluster.nodes[f].take_temp();
    cluster.nodes[f].stop();
    let db = make_db(tmp.path(), "new.db", "DELETE", 500);
    let a = post(&cluster.nodes[l], "/db/load", std::fs::read(&db).unwrap());
    assert_eq!(a.status, 200, "{}", a.body);
    assert_source_copied(&cluster.nodes[l], true);
    assert!(has_count(&count(&cluster.nodes[l], "test"), 500));
    let dir = cluster.nodes[f].data_dir.clone();
    let id = format!("node{}", f + 1);
    cluster.nodes[f] = Node::start_in(&dir, &["-raft-election-timeout", "500ms", "-node-id", &id]);
    let _keep = temp;
    assert_count_soon(&cluster.nodes[f], "test", 500, Duration::from_secs(30));
    assert!(count(&cluster.nodes[f], "old").contains("no such table"));
}

#[test]
fn sql_dump_loads_atomically_on_every_node() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.db");
    // Rows that violate a foreign key (the dump's PRAGMA foreign_keys=OFF must hold), an
    // FTS5 table (writable_schema lines), and multi-line text.
    sqlite3(
        &src,
        "CREATE TABLE parent(id INTEGER PRIMARY KEY); \
         CREATE TABLE child(id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id)); \
         INSERT INTO child VALUES(1, 42); \
         CREATE VIRTUAL TABLE docs USING fts5(body); \
         INSERT INTO docs VALUES('hello world'), ('line one\nline two;');",
    );
    let dump = sqlite3(&src, ".dump");
    assert!(dump.contains("writable_schema"));
    let cluster = Cluster::start(3, &["-fk"]);
    let l = cluster.leader();
    let a = post(&cluster.nodes[l], "/db/load?report", dump.into_bytes());
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!a.body.contains("error"), "{}", a.body);
    assert_eq!(a.json()["load"]["kind"], "sql");
    for node in &cluster.nodes {
        assert_count_soon(node, "child", 1, Duration::from_secs(20));
        let hit = local(node, "SELECT count(*) FROM docs WHERE docs MATCH 'hello'");
        assert!(has_count(&hit, 1), "{hit}");
    }
    // The cluster was blank: the leader built the database once and every node installed
    // that file instead of running the script.
    assert_eq!(a.json()["load"]["built"], true, "{}", a.body);
    assert_eq!(a.json()["load"]["installed_built"], true, "{}", a.body);
    for node in &cluster.nodes {
        assert_eq!(prebuilt_counts(node), (1, 0), "{}", cluster.logs());
    }
    // The node's own foreign_keys setting is back after the load.
    let fk = cluster.nodes[l].post("/db/execute", r#"["INSERT INTO child VALUES(2, 99)"]"#);
    assert!(fk.body.contains("FOREIGN KEY"), "{}", fk.body);
    // The writer is not left inside a transaction.
    let a = cluster.nodes[l].post("/db/execute", r#"["BEGIN", "COMMIT"]"#);
    assert!(!a.body.contains("error"), "{}", a.body);
}

#[test]
fn the_same_statements_after_a_load_run_against_the_loaded_database() {
    // The writer keeps prepared statements by SQL text. A load swaps the file and reopens the
    // writer: statements prepared for the old file must neither keep the close from
    // succeeding nor be used on the new one.
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&[]);
    node.execute(r#"["CREATE TABLE test(id INTEGER PRIMARY KEY, v TEXT)"]"#);
    let insert = |v: &str| {
        node.execute(&format!(
            r#"[["INSERT INTO test(v) VALUES(?) RETURNING *", "{v}"]]"#
        ))
    };
    // A strong read runs on the writer, through its cache too.
    let strong = |sql: &str| {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", sql)
            .append_pair("level", "strong")
            .finish();
        let a = node.get(&format!("/db/query?{q}"));
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()["results"][0].clone()
    };
    for i in 1..=5 {
        let body = insert(&format!("old {i}"));
        assert!(
            body.contains(&format!(r#""values":[[{i},"old {i}"]]"#)),
            "{body}"
        );
        assert_eq!(
            strong("SELECT * FROM test")["values"]
                .as_array()
                .map(Vec::len),
            Some(i)
        );
    }
    // The loaded file has a table of the same name with other columns, in another order.
    let file = tmp.path().join("new.db");
    sqlite3(
        &file,
        "CREATE TABLE test(v TEXT, extra TEXT DEFAULT 'loaded', id INTEGER PRIMARY KEY); \
         INSERT INTO test(v, id) VALUES('from file', 100);",
    );
    let a = post(&node, "/db/load", std::fs::read(&file).unwrap());
    assert_eq!(a.status, 200, "{}", a.body);
    for (n, v) in ["new 1", "new 2", "new 3"].iter().enumerate() {
        let body = insert(v);
        let id = 101 + n;
        assert!(
            body.contains(r#""columns":["v","extra","id"]"#)
                && body.contains(&format!(r#""values":[["{v}","loaded",{id}]]"#)),
            "{body}"
        );
    }
    let all = strong("SELECT * FROM test");
    assert_eq!(all["columns"], serde_json::json!(["v", "extra", "id"]));
    assert_eq!(
        all["values"],
        serde_json::json!([
            ["from file", "loaded", 100],
            ["new 1", "loaded", 101],
            ["new 2", "loaded", 102],
            ["new 3", "loaded", 103]
        ])
    );
}

/// Tools written against rqlite compare `/db/load`'s answer exactly: it is rqlite's unless
/// `?report` asks for raftlite's report beside it.
#[test]
fn load_answers_are_rqlites_unless_a_report_is_asked_for() {
    let node = Node::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f.db");
    sqlite3(&file, "CREATE TABLE f(x); INSERT INTO f VALUES(1);");
    let a = post(&node, "/db/load", std::fs::read(&file).unwrap());
    assert_eq!((a.status, a.body.as_str()), (200, r#"{"results":[]}"#));
    let sql = "CREATE TABLE s(x);\nINSERT INTO s VALUES(1);\nINSERT INTO s VALUES(2);\n";
    let a = post(&node, "/db/load", sql.into());
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            200,
            r#"{"results":[{"last_insert_id":2,"rows_affected":1}]}"#
        )
    );
    let a = post(&node, "/db/load?report", std::fs::read(&file).unwrap());
    assert_eq!(a.json()["results"], serde_json::json!([]));
    assert_eq!(a.json()["load"]["kind"], "sqlite", "{}", a.body);
}

#[test]
fn failing_sql_applies_nothing() {
    let node = Node::start(&[]);
    node.execute(r#"["CREATE TABLE keep(a)", "INSERT INTO keep VALUES(1)"]"#);
    // A syntax error in the last statement.
    let sql = "BEGIN TRANSACTION;\nCREATE TABLE a(x);\nINSERT INTO a VALUES(1);\nINSERT INTO a VALUES(2) nonsense;\nCOMMIT;\n";
    let r = post(&node, "/db/load", sql.into());
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["results"][0]["error"].is_string(), "{}", r.body);
    assert!(count(&node, "a").contains("no such table"));
    // A constraint failure in the middle.
    let sql = "CREATE TABLE b(x PRIMARY KEY);\nINSERT INTO b VALUES(1);\nINSERT INTO b VALUES(1);\nINSERT INTO b VALUES(2);\n";
    let r = post(&node, "/db/load", sql.into());
    assert_script_error(&r, "UNIQUE");
    assert!(count(&node, "b").contains("no such table"));
    assert!(has_count(&count(&node, "keep"), 1));
    let a = node.post("/db/execute", r#"["BEGIN", "COMMIT"]"#);
    assert!(!a.body.contains("error"), "{}", a.body);
    // Additive: a good script adds to what is there, and reports its last change.
    let r = post(
        &node,
        "/db/load",
        "INSERT INTO keep VALUES(2);\nINSERT INTO keep VALUES(3);\n".into(),
    );
    assert_eq!(r.json()["results"][0]["last_insert_id"], 3, "{}", r.body);
    assert!(has_count(&count(&node, "keep"), 3));
    assert!(load_files(&node).is_empty());
}

#[test]
fn bad_input_changes_nothing_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&["-max-load-size", "300000"]);
    node.execute(r#"["CREATE TABLE keep(a)", "INSERT INTO keep VALUES(1)"]"#);
    let good = std::fs::read(make_db(tmp.path(), "good.db", "DELETE", 500)).unwrap();
    let page = u16::from_be_bytes([good[16], good[17]]) as usize;
    let mut flipped = good.clone();
    // The first b-tree page after page 1: its header bytes.
    flipped[page + 1] ^= 0xff;
    flipped[page + 3] ^= 0xff;
    let mut bad_page_size = good.clone();
    bad_page_size[16..18].copy_from_slice(&3000u16.to_be_bytes());
    let mut encrypted = good[..16].to_vec();
    encrypted.extend((0..good.len() - 16).map(|i| (i * 7919 % 251) as u8));
    let sql_gz = gz("INSERT INTO keep VALUES(2);\n".repeat(2000).as_bytes());
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("empty body", vec![], 400),
        ("truncated file", good[..good.len() / 2].to_vec(), 400),
        ("flipped byte", flipped, 400),
        ("wrong page size", bad_page_size, 400),
        (
            "not SQLite and not SQL",
            b"Hello, this is a letter.\n".to_vec(),
            400,
        ),
        (
            "binary garbage",
            (0..5000u32).map(|i| (i * 31 % 256) as u8).collect(),
            400,
        ),
        ("truncated gzip", sql_gz[..sql_gz.len() / 2].to_vec(), 400),
        ("encrypted", encrypted, 400),
        ("over the limit", vec![b' '; 400_000], 413),
        ("gzip bomb over the limit", gz(&vec![b' '; 1_000_000]), 413),
    ];
    for (name, body, want) in cases {
        let r = post(&node, "/db/load", body);
        assert_eq!(r.status, want, "{name}: {}", r.body);
        assert!(!r.body.trim().is_empty(), "{name}: a clear message");
        assert!(has_count(&count(&node, "keep"), 1), "{name}: old data");
        assert!(
            load_files(&node).is_empty(),
            "{name}: {:?}",
            load_files(&node)
        );
    }
    // A client that goes away mid-upload.
    {
        let mut s = std::net::TcpStream::connect(&node.http_addr).unwrap();
        write!(
            s,
            "POST /db/load HTTP/1.1\r\nHost: x\r\nContent-Length: 250000\r\n\r\n"
        )
        .unwrap();
        s.write_all(&good[..8000]).unwrap();
        // Handshake: the node is staging this upload before the client goes.
        assert!(
            wait_until(Duration::from_secs(10), || load_files(&node)
                .iter()
                .any(|f| f.ends_with(".part"))),
            "the upload was never staged: {:?}",
            load_files(&node)
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || load_files(&node).is_empty()),
        "{:?}",
        load_files(&node)
    );
    assert!(has_count(&count(&node, "keep"), 1));
    // And a valid load still works afterwards.
    let r = post(&node, "/db/load", good);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(has_count(&count(&node, "test"), 500));
}

#[test]
fn dry_run_reports_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&[]);
    node.execute(r#"["CREATE TABLE keep(a)"]"#);
    let db = std::fs::read(make_db(tmp.path(), "d.db", "DELETE", 10)).unwrap();
    let r = post(&node, "/db/load?dry_run", db.clone());
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["load"]["dry_run"], true);
    assert_eq!(j["load"]["bytes"], db.len() as u64);
    assert_eq!(j["load"]["pages"], (db.len() / 4096) as u64);
    // A dry run installs nothing, so it has no install phase.
    assert!(j["load"]["phases"]["validate_s"].as_f64().is_some(), "{j}");
    assert!(j["load"]["phases"].get("install_s").is_none(), "{j}");
    assert!(count(&node, "test").contains("no such table"));
    assert!(count(&node, "keep").contains("values"));
    assert!(load_files(&node).is_empty());
}

#[test]
fn boot_loads_a_single_node_and_refuses_clusters() {
    let tmp = tempfile::tempdir().unwrap();
    let db = std::fs::read(make_db(tmp.path(), "b.db", "WAL", 300)).unwrap();
    let mut node = Node::start(&[]);
    node.execute(r#"["CREATE TABLE old(a)"]"#);
    let r = post(
        &node,
        "/boot",
        b"hello hello hello hello hello hello hello".to_vec(),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.body, "invalid SQLite data\n");
    let r = post(&node, "/boot", db.clone());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "");
    assert!(has_count(&count(&node, "test"), 300));
    assert!(count(&node, "old").contains("no such table"));
    assert!(load_files(&node).is_empty(), "{:?}", load_files(&node));
    // It survives a restart.
    let temp = node.take_temp();
    node.stop();
    let node = Node::start_in(&node.data_dir.clone(), &[]);
    let _keep = temp;
    assert!(has_count(&count(&node, "test"), 300));

    let cluster = Cluster::start(2, &[]);
    let l = cluster.leader();
    let r = post(&cluster.nodes[l], "/boot", db.clone());
    assert_eq!((r.status, r.body.as_str()), (503, "not single-node\n"));
    let f = cluster.followers()[0];
    let r = post(&cluster.nodes[f], "/boot", db);
    assert_eq!((r.status, r.body.as_str()), (503, "not leader\n"));
}

#[test]
fn redirect_from_a_follower() {
    let cluster = Cluster::start(2, &[]);
    let f = cluster.followers()[0];
    let r = post(
        &cluster.nodes[f],
        "/db/load?redirect",
        b"SELECT 1;".to_vec(),
    );
    assert_eq!(r.status, 301);
    assert!(r
        .header("location")
        .is_some_and(|l| l.ends_with("/db/load?redirect")));
}

/// Kill -9 of the leader while it receives the body, then of a follower and of the leader
/// while the entry is applied: after restarts every node holds the old database or the new
/// one, and all agree.
#[test]
fn kill_during_load_leaves_old_or_new_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let db = std::fs::read(make_db(tmp.path(), "k.db", "DELETE", 200_000)).unwrap();
    let setup = |leader: &Node| {
        leader.execute(r#"["CREATE TABLE old(a)", "INSERT INTO old VALUES(1)"]"#);
    };
    let state = |n: &Node| {
        let t = count(n, "test");
        let o = count(n, "old");
        if has_count(&t, 200_000) && o.contains("no such table") {
            "new"
        } else if has_count(&o, 1) && t.contains("no such table") {
            "old"
        } else {
            "mixed"
        }
    };
    let kills = [
        Kill::Leader(Phase::Staging),
        Kill::Follower(Phase::Applying),
        Kill::Leader(Phase::Applying),
    ];
    kill_during_load(&db, &kills, setup, state);
}

/// Kill -9 of the leader while it builds the database from the script, then of a follower
/// and of the leader while the entry is applied, during a SQL load into a blank cluster:
/// after restarts every node holds the blank database or the loaded one, and all agree.
#[test]
fn kill_during_a_built_sql_load_leaves_old_or_new_everywhere() {
    let script = script_with_rows(60_000).into_bytes();
    let state = |n: &Node| {
        let big = count(n, "big");
        if has_count(&big, 60_000) {
            "new"
        } else if big.contains("no such table") && n.get("/readyz").status == 200 {
            "old"
        } else {
            "mixed"
        }
    };
    let kills = [
        Kill::Leader(Phase::Building),
        Kill::Follower(Phase::Applying),
        Kill::Leader(Phase::Applying),
    ];
    kill_during_load(&script, &kills, |_| {}, state);
}

/// What the leader logs once a load is staged (and built), right before it proposes it.
const PROPOSING: &str = "load staged and validated; proposing";
/// What a node logs once it has applied a load entry.
const APPLIED: &str = "applied load";

/// A step of a load, told from the leader's files and the nodes' logs.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The leader receives and validates the body: a `load-*.part` file, not yet proposing.
    Staging,
    /// The leader builds the database from the script: two `.part` files, not yet proposing.
    Building,
    /// The entry is proposed, and the victim has not applied it yet.
    Applying,
}

impl Phase {
    /// Whether the load has reached this step.
    fn reached(self, leader: &Node) -> bool {
        let parts = || {
            load_files(leader)
                .iter()
                .filter(|f| f.ends_with(".part"))
                .count()
        };
        match self {
            Phase::Staging => parts() >= 1,
            Phase::Building => parts() == 2,
            Phase::Applying => leader.log().contains(PROPOSING),
        }
    }

    /// Whether the log of the victim, whole after its death, shows this step was over.
    fn over(self, victim_log: &str) -> bool {
        match self {
            Phase::Staging | Phase::Building => victim_log.contains(PROPOSING),
            Phase::Applying => victim_log.contains(APPLIED),
        }
    }
}

/// Whom a kill test kills, and during which step of the load.
#[derive(Debug, Clone, Copy)]
enum Kill {
    Leader(Phase),
    Follower(Phase),
}

/// Attempts at landing a kill (or a write) inside its step of a load; each runs on a new
/// cluster.
const ATTEMPTS: u32 = 3;

/// For each kill (on a new 3-node cluster prepared by `setup`): uploads `body` to the leader,
/// waits until the load reaches the kill's step, kills the victim, checks from the victim's
/// log that the step was not over (else tries again, at most [`ATTEMPTS`] times), restarts
/// it, and waits until every node's `state` is the same "old" or "new".
fn kill_during_load(
    body: &[u8],
    kills: &[Kill],
    setup: impl Fn(&Node),
    state: impl Fn(&Node) -> &'static str,
) {
    for (round, &kill) in kills.iter().enumerate() {
        let landed = (1..=ATTEMPTS).any(|attempt| {
            let inside = kill_once(body, kill, &setup, &state, round);
            if !inside {
                eprintln!("round {round}, attempt {attempt}: {kill:?} landed outside its step");
            }
            inside
        });
        assert!(
            landed,
            "round {round}: in {ATTEMPTS} attempts no kill landed inside {kill:?}"
        );
    }
}

/// One attempt of [`kill_during_load`]; false when the kill landed outside its step (nothing
/// was checked then).
fn kill_once(
    body: &[u8],
    kill: Kill,
    setup: &impl Fn(&Node),
    state: &impl Fn(&Node) -> &'static str,
    round: usize,
) -> bool {
    let mut cluster = Cluster::start(3, &[]);
    let l = cluster.leader();
    setup(&cluster.nodes[l]);
    let (victim, phase) = match kill {
        Kill::Leader(phase) => (l, phase),
        Kill::Follower(phase) => (cluster.followers()[0], phase),
    };
    let url = cluster.nodes[l].url("/db/load");
    let body = body.to_vec();
    let upload = std::thread::spawn(move || {
        let _ = client().post(url).body(body).send();
    });
    // Handshake: the load reached the step (bounded; a load that ended first is a miss).
    // Polled often: a step can last well under 100 ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let reached = loop {
        if phase.reached(&cluster.nodes[l]) {
            break true;
        }
        if upload.is_finished() || std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let temp = cluster.nodes[victim].take_temp();
    cluster.nodes[victim].kill();
    if !reached || phase.over(&cluster.nodes[victim].log()) {
        return false;
    }
    let _ = upload.join();
    let dir = cluster.nodes[victim].data_dir.clone();
    let id = format!("node{}", victim + 1);
    cluster.nodes[victim] =
        Node::start_in(&dir, &["-raft-election-timeout", "500ms", "-node-id", &id]);
    let _keep = temp;
    cluster.wait_for_members(3);
    let agreed = wait_until(Duration::from_secs(60), || {
        let states: Vec<_> = cluster.nodes.iter().map(state).collect();
        states.iter().all(|s| *s != "mixed" && *s == states[0])
    });
    let states: Vec<_> = cluster.nodes.iter().map(state).collect();
    assert!(agreed, "round {round}: {states:?}\n{}", cluster.logs());
    true
}

/// A load must leave `-disk-reserve` free, like a backup: a body that declares a size that
/// cannot fit is refused before a byte is written, and a body of unknown size (chunked, or
/// gzip that grows) is stopped while staging. Both answer 507 with the numbers, leave no
/// file behind and change nothing.
#[test]
fn load_that_would_eat_the_disk_reserve_answers_507() {
    let tmp = tempfile::tempdir().unwrap();
    // More than any disk here: nothing fits above it.
    let node = Node::start(&["-disk-reserve", "1152921504606846976"]);
    node.execute(r#"["CREATE TABLE keep(a)", "INSERT INTO keep VALUES(1)"]"#);
    let db = std::fs::read(make_db(tmp.path(), "r.db", "DELETE", 100)).unwrap();

    let declared = post(&node, "/db/load", db.clone());
    assert_eq!(declared.status, 507, "{}", declared.body);
    assert!(declared.body.contains("-disk-reserve"), "{}", declared.body);

    let chunked = client()
        .post(node.url("/db/load"))
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(gz(&db))))
        .send()
        .expect("POST chunked");
    assert_eq!(chunked.status().as_u16(), 507);
    let text = chunked.text().unwrap_or_default();
    assert!(text.contains("not enough disk space"), "{text}");

    assert!(count(&node, "test").contains("no such table"));
    assert!(has_count(&count(&node, "keep"), 1));
    assert!(load_files(&node).is_empty(), "{:?}", load_files(&node));
    assert_eq!(node.get("/readyz").status, 200);
}

/// A SQL load is built once on the leader when the cluster is blank. A write that commits
/// while it builds makes the database non-blank at the load's log position: then every node
/// runs the script on top of that write instead, and nothing of either is lost. The script's
/// clock and random values are the same on every node on either branch.
#[test]
fn a_write_during_the_build_makes_every_node_run_the_script() {
    // The write is sent once the build is under way; an attempt where it still committed after
    // the load's entry (the build was quicker) is run again on a new cluster.
    let landed = (1..=ATTEMPTS).any(|attempt| {
        let inside = write_during_the_build();
        if !inside {
            eprintln!("attempt {attempt}: the write committed after the load's entry");
        }
        inside
    });
    assert!(
        landed,
        "in {ATTEMPTS} attempts no write committed before the built load's entry"
    );
}

/// One attempt of [`a_write_during_the_build_makes_every_node_run_the_script`]; false when the
/// write's entry came after the load's (nothing was checked then).
fn write_during_the_build() -> bool {
    let script = script_with_rows(60_000);
    let cluster = Cluster::start(3, &[]);
    let l = cluster.leader();
    let leader = &cluster.nodes[l];
    let url = leader.url("/db/load?raft_index&report");
    let body = script.clone().into_bytes();
    let upload = std::thread::spawn(move || {
        let r = client().post(url).body(body).send().expect("POST");
        r.text().unwrap_or_default()
    });
    // Handshake: while it builds, the leader holds two `.part` files: the script and the new
    // database.
    assert!(
        wait_until(Duration::from_secs(60), || Phase::Building.reached(leader)),
        "{}",
        leader.log()
    );
    let w = leader.post(
        "/db/execute?raft_index",
        r#"["CREATE TABLE during(x)", "INSERT INTO during VALUES(1)"]"#,
    );
    assert_eq!(w.status, 200, "{}", w.body);
    assert!(!w.body.contains("error"), "{}", w.body);
    let answer: serde_json::Value = serde_json::from_str(&upload.join().unwrap()).unwrap();
    let index = |v: &serde_json::Value| v["raft_index"].as_u64().unwrap_or_else(|| panic!("{v}"));
    if index(&w.json()) > index(&answer) {
        return false;
    }
    assert_eq!(answer["load"]["built"], true, "{answer}");
    assert!(answer["load"]["installed_built"].is_null(), "{answer}");
    assert_eq!(answer["results"][0]["last_insert_id"], 1, "{answer}");
    let first_env = env_row(leader);
    for node in &cluster.nodes {
        assert_count_soon(node, "big", 60_000, Duration::from_secs(30));
        assert!(has_count(&count(node, "during"), 1));
        assert_eq!(env_row(node), first_env);
        assert_eq!(prebuilt_counts(node), (0, 1), "{}", cluster.logs());
    }
    // Nobody needed the built file: it is gone from the leader, with the script once every
    // member has applied the load.
    assert_load_files_go(leader);
    true
}

/// The same script on a blank cluster installs the built file everywhere, with the same
/// clock and random values on every node, and answers with the script's last result.
#[test]
fn a_blank_cluster_installs_the_database_built_from_the_script() {
    let cluster = Cluster::start(3, &[]);
    let l = cluster.leader();
    let a = post(
        &cluster.nodes[l],
        "/db/load?report",
        script_with_rows(500).into_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["load"]["installed_built"], true, "{}", a.body);
    assert_eq!(a.json()["results"][0]["last_insert_id"], 1, "{}", a.body);
    let first_env = env_row(&cluster.nodes[l]);
    for node in &cluster.nodes {
        assert_count_soon(node, "big", 500, Duration::from_secs(30));
        assert_eq!(env_row(node), first_env);
        assert_eq!(prebuilt_counts(node), (1, 0));
    }
    // The installed file is the node's database from now on: writes go on and reach all.
    let w = cluster.nodes[l].execute(r#"["INSERT INTO big(v) VALUES('after')"]"#);
    assert!(w.contains(r#""last_insert_id":501"#), "{w}");
    for node in &cluster.nodes {
        assert_count_soon(node, "big", 501, Duration::from_secs(30));
    }
    for node in &cluster.nodes {
        assert_load_files_go(node);
    }
}

/// On a blank node a failing script fails while the leader builds: rqlite's 200 with the
/// error, nothing proposed, nothing applied, no file left.
#[test]
fn a_script_that_fails_on_a_blank_database_applies_nothing() {
    let node = Node::start(&[]);
    let before = node.get("/status").json()["store"]["raft"]["applied_index"].clone();
    let sql =
        "CREATE TABLE b(x PRIMARY KEY);\nINSERT INTO b VALUES(1);\nINSERT INTO b VALUES(1);\n";
    let r = post(&node, "/db/load?raft_index", sql.into());
    assert_script_error(&r, "UNIQUE");
    assert!(r.json()["raft_index"].is_null(), "{}", r.body);
    assert!(count(&node, "b").contains("no such table"));
    assert!(load_files(&node).is_empty(), "{:?}", load_files(&node));
    let after = node.get("/status").json()["store"]["raft"]["applied_index"].clone();
    assert_eq!(before, after);
    assert_eq!(prebuilt_counts(&node), (0, 0));
}

/// The database built from a SQL load leaves `-disk-reserve` free, like staging: a short
/// script that would build a database bigger than the room above the reserve answers 507,
/// changes nothing and leaves no file.
#[test]
fn a_build_that_would_eat_the_disk_reserve_answers_507() {
    let probe = tempfile::tempdir().unwrap();
    let free = raftlite::db::disk::free_bytes(probe.path()).unwrap();
    // 600 MiB of room above the reserve; the script makes 2 GB.
    let reserve = free.saturating_sub(600 << 20);
    let node = Node::start(&["-disk-reserve", &reserve.to_string()]);
    let sql = "CREATE TABLE b(x);\nWITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 \
               FROM c WHERE i < 2000) INSERT INTO b SELECT zeroblob(1000000) FROM c;\n";
    let r = post(&node, "/db/load", sql.into());
    assert_eq!(r.status, 507, "{}", r.body);
    assert!(
        r.body.contains("build the database") && r.body.contains("-disk-reserve"),
        "{}",
        r.body
    );
    assert!(count(&node, "b").contains("no such table"));
    assert!(load_files(&node).is_empty(), "{:?}", load_files(&node));
    assert_eq!(node.get("/readyz").status, 200);
    // A script that fits still loads.
    let r = post(&node, "/db/load", "CREATE TABLE small(x);\n".into());
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(count(&node, "small").contains("[[0]]"));
}

/// `.part` files in `node`'s data directory: an upload being staged, a database being built.
fn part_files(node: &Node) -> usize {
    load_files(node)
        .iter()
        .filter(|f| f.ends_with(".part"))
        .count()
}

/// A SQL load into a blank node is built while its body still arrives: with half the script
/// sent, the build's file is there beside the upload's; the rest sent, the load answers as a
/// built load. A body cut off after whole statements builds nothing and leaves no file.
#[test]
fn a_sql_load_into_a_blank_node_is_built_while_it_arrives() {
    use std::io::Read as _;
    let node = Node::start(&[]);
    // Long enough that half of it passes the staging writer's buffer (256 KiB).
    let script = script_with_rows(20_000);
    let (first, rest) = script.as_bytes().split_at(script.len() / 2);
    // Cut after a whole statement, so the part sent alone is a valid, shorter script.
    let cut = first.iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let (first, rest) = (&first[..cut], [&first[cut..], rest].concat());
    let send_head = |s: &mut std::net::TcpStream| {
        write!(
            s,
            "POST /db/load?report HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            script.len()
        )
        .unwrap();
        s.write_all(first).unwrap();
    };
    let build_started = || {
        assert!(
            wait_until(Duration::from_secs(10), || part_files(&node) == 2),
            "no build beside the upload: {:?}",
            load_files(&node)
        );
    };

    // Cut off: nothing is loaded, nothing is left, the node still serves.
    {
        let mut s = std::net::TcpStream::connect(&node.http_addr).unwrap();
        send_head(&mut s);
        build_started();
    }
    assert_load_files_go(&node);
    assert!(
        count(&node, "big").contains("no such table"),
        "{}",
        count(&node, "big")
    );
    assert_eq!(node.get("/readyz").status, 200);

    // Completed: the build that started with the first half is the one installed.
    let mut s = std::net::TcpStream::connect(&node.http_addr).unwrap();
    send_head(&mut s);
    build_started();
    s.write_all(&rest).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    let j: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(j["load"]["built_while_uploading"], true, "{j}");
    assert_eq!(j["load"]["installed_built"], true, "{j}");
    assert!(
        has_count(&count(&node, "big"), 20_000),
        "{}",
        count(&node, "big")
    );
    env_row(&node);
    assert_load_files_go(&node);
}

/// Bad SQL bodies on a blank node, where a build starts with the upload: each is refused as
/// on any node, and the build's file goes with the upload's before the answer.
#[test]
fn bad_sql_bodies_on_a_blank_node_leave_no_build_behind() {
    let node = Node::start(&["-max-load-size", "300000"]);
    let script = "CREATE TABLE b(x);\n".to_string() + &"INSERT INTO b VALUES(1);\n".repeat(20_000);
    let script_gz = gz(script.as_bytes());
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "truncated gzip",
            script_gz[..script_gz.len() / 2].to_vec(),
            400,
        ),
        ("decompressed over the limit", script_gz.clone(), 413),
        (
            "invalid UTF-8 after valid statements",
            [
                &b"CREATE TABLE b(x);\nINSERT INTO b VALUES(1);\n"[..],
                &[0xff, 0xfe, b'\n'],
            ]
            .concat(),
            400,
        ),
    ];
    for (name, body, want) in cases {
        let r = post(&node, "/db/load", body);
        assert_eq!(r.status, want, "{name}: {}", r.body);
        assert!(count(&node, "b").contains("no such table"), "{name}");
        assert!(
            load_files(&node).is_empty(),
            "{name}: {:?}",
            load_files(&node)
        );
    }
    // A database file on a blank node: the build that started gives way to the binary load.
    let tmp = tempfile::tempdir().unwrap();
    let db = std::fs::read(make_db(tmp.path(), "good.db", "DELETE", 50)).unwrap();
    let r = post(&node, "/db/load", db);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(has_count(&count(&node, "test"), 50));
    assert_load_files_go(&node);
}

/// A script that fails on the blank database its build started from, but not on what was
/// written while it arrived, runs on every node instead of answering the build's error: the
/// build looked at the database when the upload began.
#[test]
fn a_script_that_fails_only_on_the_blank_database_runs_after_a_write_during_its_upload() {
    use std::io::Read as _;
    let node = Node::start(&[]);
    // Enough rows that the first part passes the staging writer's buffer (256 KiB).
    let mut script = String::new();
    for i in 0..20_000 {
        script.push_str(&format!(
            "INSERT INTO t VALUES({i},'a row long enough to count');\n"
        ));
    }
    let (first, rest) = script.as_bytes().split_at(script.len() / 2);
    let mut s = std::net::TcpStream::connect(&node.http_addr).unwrap();
    write!(
        s,
        "POST /db/load HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        script.len()
    )
    .unwrap();
    s.write_all(first).unwrap();
    // The build has started; on its blank database it fails at the first statement (no
    // table t), whenever it reads it.
    assert!(
        wait_until(Duration::from_secs(10), || part_files(&node) == 2),
        "{:?}",
        load_files(&node)
    );
    let w = node.execute(r#"["CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"]"#);
    assert!(!w.contains("error"), "{w}");
    s.write_all(rest).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("error"), "{answer}");
    assert!(
        has_count(&count(&node, "t"), 20_000),
        "{}",
        count(&node, "t")
    );
    assert_load_files_go(&node);
}
