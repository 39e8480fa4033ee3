//! End-to-end tests of the single-node HTTP API against the real `raftlited` binary.

mod common;

use common::Node;

const CREATE_FOO: &str = r#"["CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT)"]"#;

#[test]
fn create_insert_and_query_exact_rqlite_json() {
    let node = Node::start(&[]);
    assert_eq!(node.execute(CREATE_FOO), r#"{"results":[{}]}"#);
    assert_eq!(
        node.execute(r#"[["INSERT INTO foo(name) VALUES(?)", "fiona"]]"#),
        r#"{"results":[{"last_insert_id":1,"rows_affected":1}]}"#
    );
    assert_eq!(
        node.query("SELECT * FROM foo"),
        r#"{"results":[{"columns":["id","name"],"types":["integer","text"],"values":[[1,"fiona"]]}]}"#
    );
    let a = node.get("/db/query?q=SELECT%20*%20FROM%20foo&associative");
    assert_eq!(
        a.body,
        r#"{"results":[{"types":{"id":"integer","name":"text"},"rows":[{"id":1,"name":"fiona"}]}]}"#
    );
    assert_eq!(
        a.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(a.header("x-rqlite-version"), Some(raftlite::VERSION));
    assert_eq!(
        a.header("x-rqlite-served-by"),
        Some(node.http_addr.as_str())
    );
}

#[test]
fn every_value_type_round_trips_with_rqlite_encoding() {
    let node = Node::start(&[]);
    node.execute(
        r#"["CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n, flag BOOLEAN, d DATETIME, big REAL)"]"#,
    );
    let body = r#"[
        ["INSERT INTO t VALUES(?, ?, ?, ?, ?, ?, ?, ?)", -42, 3.0, "<a & b>\n", "x'00ff10'", null, true, "2024-05-06 07:08:09", 1e21],
        ["INSERT INTO t VALUES(:i, :r, :s, :b, :n, :flag, :d, :big)", {"i": 9223372036854775807, "r": 0.1, "s": "é", "b": [1, 2, 3], "n": null, "flag": false, "d": 1700000000, "big": 1e-7}]
    ]"#;
    assert_eq!(
        node.execute(body),
        r#"{"results":[{"last_insert_id":1,"rows_affected":1},{"last_insert_id":2,"rows_affected":1}]}"#
    );
    assert_eq!(
        node.query("SELECT * FROM t ORDER BY rowid"),
        concat!(
            r#"{"results":[{"columns":["i","r","s","b","n","flag","d","big"],"#,
            r#""types":["integer","real","text","blob","","boolean","datetime","real"],"#,
            r#""values":[[-42,3,"\u003ca \u0026 b\u003e\n","AP8Q",null,true,"2024-05-06T07:08:09Z",1e+21],"#,
            r#"[9223372036854775807,0.1,"é","AQID",null,false,"2023-11-14T22:13:20Z",1e-07]]}]}"#
        )
    );
    let a = node.get("/db/query?q=SELECT%20b%20FROM%20t%20ORDER%20BY%20rowid&blob_array");
    assert_eq!(
        a.body,
        r#"{"results":[{"columns":["b"],"types":["blob"],"values":[[[0,255,16]],[[1,2,3]]]}]}"#
    );
    let a =
        node.get("/db/query?q=SELECT%20typeof(b),%20typeof(flag)%20FROM%20t%20ORDER%20BY%20rowid");
    assert!(
        a.body.contains(r#"["blob","integer"],["blob","integer"]"#),
        "{}",
        a.body
    );
}

#[test]
fn sql_errors_are_200_with_error_field_and_processing_continues() {
    let node = Node::start(&[]);
    node.execute(CREATE_FOO);
    let body = node.execute(r#"["INSERT INTO foo(id, name) VALUES(1, 'a')", "INSERT INTO nosuch VALUES(1)", "INSERT INTO foo(id, name) VALUES(1, 'b')", "INSERT INTO foo(id, name) VALUES(2, 'c')"]"#);
    assert_eq!(
        body,
        r#"{"results":[{"last_insert_id":1,"rows_affected":1},{"error":"no such table: nosuch"},{"error":"UNIQUE constraint failed: foo.id"},{"last_insert_id":2,"rows_affected":1}]}"#
    );
    let body = node.execute(r#"["SELEC 1"]"#);
    assert_eq!(
        body,
        r#"{"results":[{"error":"near \"SELEC\": syntax error"}]}"#
    );
}

#[test]
fn transaction_flag_is_all_or_nothing() {
    let node = Node::start(&[]);
    node.execute(CREATE_FOO);
    let a = node.post(
        "/db/execute?transaction",
        r#"["INSERT INTO foo(id, name) VALUES(1, 'a')", "INSERT INTO foo(id, name) VALUES(1, 'b')", "INSERT INTO foo(id, name) VALUES(2, 'c')"]"#,
    );
    assert_eq!(
        a.body,
        r#"{"results":[{"last_insert_id":1,"rows_affected":1},{"error":"UNIQUE constraint failed: foo.id"}]}"#
    );
    assert_eq!(
        node.query("SELECT count(*) FROM foo"),
        r#"{"results":[{"columns":["count(*)"],"types":["integer"],"values":[[0]]}]}"#
    );
}

#[test]
fn double_quoted_strings_and_foreign_keys_default_off() {
    let node = Node::start(&[]);
    node.execute(r#"["CREATE TABLE p (id INTEGER PRIMARY KEY)", "CREATE TABLE c (pid INTEGER REFERENCES p(id))"]"#);
    // rqlite's own tests insert with double quotes.
    assert!(node
        .execute(r#"["INSERT INTO c VALUES(\"7\")"]"#)
        .contains(r#""rows_affected":1"#));
    let fk_on = Node::start(&["-fk"]);
    fk_on.execute(r#"["CREATE TABLE p (id INTEGER PRIMARY KEY)", "CREATE TABLE c (pid INTEGER REFERENCES p(id))"]"#);
    assert_eq!(
        fk_on.execute(r#"["INSERT INTO c VALUES(7)"]"#),
        r#"{"results":[{"error":"FOREIGN KEY constraint failed"}]}"#
    );
    let off = Node::start(&["-fk=false"]);
    off.execute(r#"["CREATE TABLE p (id INTEGER PRIMARY KEY)", "CREATE TABLE c (pid INTEGER REFERENCES p(id))"]"#);
    assert!(off
        .execute(r#"["INSERT INTO c VALUES(7)"]"#)
        .contains("rows_affected"));
}

#[test]
fn query_forms_get_post_json_and_text_plain() {
    let node = Node::start(&[]);
    node.execute(CREATE_FOO);
    node.execute(r#"["INSERT INTO foo(name) VALUES('fiona')"]"#);
    let expected = r#"{"results":[{"columns":["name"],"types":["text"],"values":[["fiona"]]}]}"#;
    assert_eq!(
        node.post("/db/query", r#"["SELECT name FROM foo"]"#).body,
        expected
    );
    assert_eq!(
        node.request(
            "POST",
            "/db/query",
            Some("text/plain"),
            "SELECT name FROM foo"
        )
        .body,
        expected
    );
    let named = node.post(
        "/db/query",
        r#"[["SELECT name FROM foo WHERE id = :id", {"id": 1}]]"#,
    );
    assert_eq!(named.body, expected);
    let pretty = node.get("/db/query?q=SELECT%20name%20FROM%20foo&pretty");
    assert!(
        pretty
            .body
            .starts_with("{\n    \"results\": [\n        {\n            \"columns\": ["),
        "{}",
        pretty.body
    );
    let timed = node
        .get("/db/query?q=SELECT%20name%20FROM%20foo&timings")
        .json();
    assert!(timed["time"].as_f64().unwrap() > 0.0);
    assert!(timed["results"][0]["time"].as_f64().unwrap() > 0.0);
    for level in ["none", "weak", "strong", "linearizable", "auto", "NONE"] {
        assert_eq!(
            node.get(&format!(
                "/db/query?q=SELECT%20name%20FROM%20foo&level={level}"
            ))
            .body,
            expected
        );
    }
    // rqlite's answer to a write sent as a query (its `ErrQueryWrite`).
    let writes_on_query = node.post("/db/query", r#"["INSERT INTO foo(name) VALUES('x')"]"#);
    assert_eq!(
        writes_on_query.body,
        r#"{"results":[{"error":"attempt to change database via query operation"}]}"#
    );
}

#[test]
fn request_endpoint_mixes_reads_and_writes() {
    let node = Node::start(&[]);
    let a = node.post(
        "/db/request",
        r#"["CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT)", ["INSERT INTO foo(name) VALUES(?)", "fiona"], "SELECT * FROM foo"]"#,
    );
    assert_eq!(
        a.body,
        r#"{"results":[{},{"last_insert_id":1,"rows_affected":1},{"columns":["id","name"],"types":["integer","text"],"values":[[1,"fiona"]]}]}"#
    );
    let a = node.post(
        "/db/request?associative",
        r#"["SELECT name FROM foo", "INSERT INTO foo(name) VALUES('declan')"]"#,
    );
    assert_eq!(
        a.body,
        r#"{"results":[{"types":{"name":"text"},"rows":[{"name":"fiona"}]},{"last_insert_id":2,"rows_affected":1,"rows":null}]}"#
    );
    let ro = node.post("/db/request", r#"["SELECT count(*) FROM foo"]"#);
    assert_eq!(
        ro.body,
        r#"{"results":[{"columns":["count(*)"],"types":["integer"],"values":[[2]]}]}"#
    );
    let returning = node.post(
        "/db/execute",
        r#"["INSERT INTO foo(name) VALUES('x') RETURNING id"]"#,
    );
    assert_eq!(
        returning.body,
        r#"{"results":[{"columns":["id"],"types":["integer"],"values":[[3]]}]}"#
    );
}

#[test]
fn bad_input_gets_clear_4xx_and_changes_nothing() {
    let node = Node::start(&["-max-body-size", "1024"]);
    node.execute(CREATE_FOO);
    node.execute(r#"["INSERT INTO foo(name) VALUES('keep')"]"#);
    let cases: &[(&str, &[u8], u16, &str)] = &[
        ("/db/execute", b"not json", 400, "invalid JSON body\n"),
        ("/db/execute", b"", 400, "invalid JSON body\n"),
        ("/db/execute", b"{\"a\": 1}", 400, "invalid request\n"),
        ("/db/execute", b"[1, 2]", 400, "invalid request\n"),
        ("/db/execute", b"[[1, \"x\"]]", 400, "invalid request\n"),
        ("/db/execute", b"[]", 400, "no statements\n"),
        (
            "/db/execute",
            b"[\"INSERT INTO foo(name) VALUES('\xff')\"]",
            400,
            "invalid UTF-8 in request body\n",
        ),
        (
            "/db/execute",
            b"[[\"INSERT INTO foo(name) VALUES(?)\", {\"a\": {}}]]",
            400,
            "unsupported type map[string]interface {}\n",
        ),
        ("/db/query", b"[\"SELECT 1\"", 400, "invalid JSON body\n"),
        ("/db/request", b"{}", 400, "invalid request\n"),
    ];
    for (path, body, status, text) in cases {
        let a = node.request("POST", path, Some("application/json"), body.to_vec());
        assert_eq!(
            a.status,
            *status,
            "{path} {:?}: {}",
            String::from_utf8_lossy(body),
            a.body
        );
        assert_eq!(a.body, *text, "{path}");
        assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    }
    let big = format!(
        r#"["INSERT INTO foo(name) VALUES('{}')"]"#,
        "x".repeat(2000)
    );
    let a = node.post("/db/execute", &big);
    assert_eq!(a.status, 413);
    assert!(
        a.body
            .contains("request body too large: the limit is 1024 bytes"),
        "{}",
        a.body
    );
    assert_eq!(
        node.query("SELECT name FROM foo"),
        r#"{"results":[{"columns":["name"],"types":["text"],"values":[["keep"]]}]}"#,
        "nothing changed"
    );
}

#[test]
fn default_body_limit_accepts_large_batches() {
    let node = Node::start(&[]);
    node.execute(CREATE_FOO);
    // ~4 MiB of statements: far above actix's small default payload limit.
    let stmts: Vec<String> = (0..20_000)
        .map(|i| format!(r#"["INSERT INTO foo(name) VALUES(?)", "{:0>200}"]"#, i))
        .collect();
    let body = format!("[{}]", stmts.join(","));
    assert!(body.len() > 4_000_000);
    let a = node.post("/db/execute?transaction", &body);
    assert_eq!(a.status, 200);
    assert!(node.query("SELECT count(*) FROM foo").contains("[[20000]]"));
}

#[test]
fn methods_paths_params_and_options() {
    let node = Node::start(&[]);
    assert_eq!(node.get("/db/execute").status, 405);
    assert_eq!(node.request("PUT", "/db/query", None, "").status, 405);
    assert_eq!(node.get("/db/request").status, 405);
    assert_eq!(node.request("POST", "/status", None, "").status, 405);
    let nf = node.get("/no/such/path");
    assert_eq!((nf.status, nf.body.as_str()), (404, ""));
    let opt = node.request("OPTIONS", "/db/execute", None, "");
    assert_eq!((opt.status, opt.body.as_str()), (200, ""));
    assert_eq!(
        opt.header("access-control-allow-methods"),
        Some("OPTIONS, GET, POST")
    );
    let bad = node.get("/db/query?timeout=xyz&q=select%201");
    assert_eq!(
        (bad.status, bad.body.as_str()),
        (400, "timeout is not a valid duration\n")
    );
    assert_eq!(node.get("/db/query?q=").body, "query parameter not set\n");
    assert_eq!(node.get("/db/query").status, 400);
    assert_eq!(
        node.get("/status?retries=x").status,
        400,
        "validation runs for every path"
    );
    let ok = node.get("/db/query?q=SELECT%201&chunk_kb=9&whatever");
    assert_eq!(ok.status, 200, "unknown parameters are ignored");
}

#[test]
fn status_readyz_nodes_leader() {
    let node = Node::start(&["-node-id", "n1"]);
    let s = node.get("/status").json();
    assert_eq!(s["store"]["node_id"], "n1");
    assert_eq!(s["store"]["raft"]["state"], "Leader");
    assert_eq!(s["store"]["leader"]["node_id"], "n1");
    assert_eq!(s["http"]["bind_addr"], node.http_addr.as_str());
    assert_eq!(s["build"]["version"], raftlite::VERSION);
    assert_eq!(
        s["store"]["sqlite3"]["pragmas"]["rw"]["journal_mode"],
        "wal"
    );
    // rqlite's types: every pragma value a string.
    assert_eq!(s["store"]["sqlite3"]["pragmas"]["ro"]["foreign_keys"], "0");
    assert_eq!(s["store"]["sqlite3"]["pragmas"]["rw"]["synchronous"], "1");
    assert!(
        s["store"]["sqlite3"]["pragmas"]["rw"]["busy_timeout"].is_string(),
        "{s}"
    );
    assert_eq!(node.get("/status?key=store.nosuch").body, "{}");
    assert_eq!(node.get("/status?key=store.leader").json()["node_id"], "n1");
    assert!(node
        .get("/status?pretty")
        .body
        .contains("\n    \"build\": {"));

    let r = node.get("/readyz");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "[+]node ok\n[+]leader ok\n[+]store ok\n[+]db ok")
    );
    assert_eq!(node.get("/readyz?noleader").body, "[+]node ok");
    assert!(node.get("/readyz?sync").body.ends_with("[+]sync ok"));

    let nodes = node.get("/nodes").json();
    assert_eq!(
        nodes["n1"]["api_addr"],
        format!("http://{}", node.http_addr)
    );
    assert_eq!(nodes["n1"]["leader"], true);
    assert_eq!(nodes["n1"]["reachable"], true);
    let v2 = node.get("/nodes?ver=2").json();
    assert_eq!(v2["nodes"][0]["id"], "n1");
    let leader = node.get("/leader").json();
    assert_eq!(leader["id"], "n1");
}

#[test]
fn restart_on_same_data_directory_keeps_data() {
    let mut node = Node::start(&[]);
    node.execute(CREATE_FOO);
    node.execute(r#"[["INSERT INTO foo(name) VALUES(?)", "fiona"]]"#);
    let temp = node.take_temp();
    let dir = node.data_dir.clone();
    assert!(node.stop().success(), "clean exit on SIGTERM");
    let node = Node::start_in(&dir, &[]);
    assert_eq!(
        node.query("SELECT * FROM foo"),
        r#"{"results":[{"columns":["id","name"],"types":["integer","text"],"values":[[1,"fiona"]]}]}"#
    );
    drop(temp);
}

/// The WAL is copied back into the database file by the node's checkpointer, not by the
/// writer's auto-checkpoint (which would stall the apply of the entry that crosses the
/// threshold): the file grows and `/debug/vars` counts the checkpoints, with no snapshot due.
#[test]
fn wal_is_checkpointed_off_the_writer() {
    let node = Node::start(&["-raft-snap", "1000000"]);
    node.execute(r#"["CREATE TABLE big(v BLOB)"]"#);
    let checkpoints = || {
        node.get("/debug/vars").json()["store"]["num_wal_checkpoints"]
            .as_u64()
            .expect("num_wal_checkpoints")
    };
    assert_eq!(checkpoints(), 0);
    // About 8 MiB: some 2000 pages, twice the checkpoint threshold.
    for _ in 0..40 {
        node.execute(r#"["INSERT INTO big VALUES(randomblob(200000))"]"#);
    }
    let db = node.data_dir.join("db.sqlite");
    let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    assert!(
        common::wait_until(std::time::Duration::from_secs(10), || checkpoints() >= 1
            && size() >= 3 << 20),
        "checkpoints {}, database file {} bytes",
        checkpoints(),
        size()
    );
    assert!(node.query("SELECT count(*) FROM big").contains("[[40]]"));
}

/// `/status` answers while the writer is busy with a long job (a SQL load's transaction ran
/// for 40 s on 1 GiB): it shows the writer's settings as it last read them instead of
/// queueing behind the job.
#[test]
fn status_answers_while_the_writer_is_busy() {
    let node = Node::start(&[]);
    let rw = |a: &common::Answer| a.json()["store"]["sqlite3"]["pragmas"]["rw"].clone();
    let before = node.get("/status");
    assert_eq!(before.status, 200);
    let known = rw(&before);
    assert_eq!(known["journal_mode"], "wal", "{known}");
    // `/debug/vars`: jobs the writer has begun, and how long the running one has run.
    let writer = || {
        let vars = node.get("/debug/vars").json();
        let n = |k: &str| {
            vars["store"][k]
                .as_u64()
                .unwrap_or_else(|| panic!("{k}: {vars}"))
        };
        (n("writer_jobs"), n("writer_busy_ms"))
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            // Seconds of work on the writer thread (a count over a long recursive CTE).
            node.execute(
                r#"["CREATE TABLE n AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 8000000) SELECT count(*) AS n FROM c"]"#,
            );
        });
        // Handshake: the writer has been running one job for a while. On this otherwise idle
        // node only the CTE runs that long.
        let mut busy = (0, 0);
        let started = common::wait_until(std::time::Duration::from_secs(60), || {
            busy = writer();
            busy.1 >= 200
        });
        assert!(started, "the writer never ran the long job: {busy:?}");
        let during = node.get("/status");
        assert_eq!(during.status, 200);
        // The same job was still running after /status answered.
        let after = writer();
        assert!(
            after.0 == busy.0 && after.1 > busy.1,
            "/status waited for the writer's job: (jobs, busy ms) {busy:?} then {after:?}"
        );
        assert_eq!(rw(&during), known);
    });
    assert!(node.query("SELECT n FROM n").contains("[[8000000]]"));
}
