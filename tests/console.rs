//! The web console's server side on real processes: the redirects, the embedded assets
//! (content types, caching headers, no network references), backup jobs (progress, one
//! download each, interruption, a follower's job served through the leader), the per-member
//! details of the Cluster tab, and staged
//! restores (report, install, discard, expiry, bounds, bad files refused and removed).
//! The browser tests are in `tests/console/` (`scripts/console-tests.sh`).

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{sqlite3, wait_until, Answer, Cluster, Node};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn answer(r: reqwest::blocking::Response) -> Answer {
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().unwrap_or_default(),
    }
}

fn send(node: &Node, method: &str, path: &str, body: Vec<u8>) -> Answer {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    answer(
        client()
            .request(m, node.url(path))
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .expect("request"),
    )
}

fn make_db(dir: &Path, name: &str, rows: u32) -> PathBuf {
    let path = dir.join(name);
    sqlite3(
        &path,
        &format!(
            "CREATE TABLE staged(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE other(x); \
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < {rows}) \
             INSERT INTO staged(v) SELECT printf('row %d', x) FROM c;"
        ),
    );
    path
}

fn load_files(node: &Node) -> Vec<String> {
    common::files_named(&node.data_dir, "load-")
}

fn local_count(node: &Node, table: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", &format!("SELECT count(*) FROM {table}"))
        .append_pair("level", "none")
        .finish();
    node.get(&format!("/db/query?{q}")).body
}

#[test]
fn redirects_and_assets_with_types_and_caching() {
    let node = Node::start(&[]);
    let root = node.get("/");
    assert_eq!(root.status, 302);
    assert_eq!(root.header("location"), Some("/console/"));
    let bare = node.get("/console");
    assert_eq!(bare.status, 301);
    assert_eq!(bare.header("location"), Some("/console/"));

    for (path, ct, needle) in [
        (
            "/console/",
            "text/html; charset=utf-8",
            "<title>raftlite console",
        ),
        (
            "/console/index.html",
            "text/html; charset=utf-8",
            "<!doctype html>",
        ),
        (
            "/console/console.js",
            "text/javascript; charset=utf-8",
            "splitSql",
        ),
        (
            "/console/console.css",
            "text/css; charset=utf-8",
            "prefers-color-scheme",
        ),
        ("/console/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let a = node.get(path);
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(a.header("content-type"), Some(ct), "{path}");
        assert!(a.body.contains(needle), "{path}");
        assert_eq!(a.header("cache-control"), Some("no-cache"), "{path}");
        assert!(
            a.header("content-security-policy")
                .is_some_and(|c| c.starts_with("default-src 'self'")),
            "{path}"
        );
        // Nothing loads from the network: no absolute URLs in any asset (the SVG's xmlns is
        // a name, not a load).
        let body = a.body.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} refers to the network"
        );
        let etag = a.header("etag").expect("etag").to_string();
        assert!(etag.starts_with('"') && etag.len() > 4, "{etag}");
        // Revalidation: the same ETag is a 304 without a body; another is the file again.
        let again = answer(
            client()
                .get(node.url(path))
                .header("If-None-Match", &etag)
                .send()
                .expect("GET"),
        );
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        let stale = answer(
            client()
                .get(node.url(path))
                .header("If-None-Match", "\"0000\"")
                .send()
                .expect("GET"),
        );
        assert_eq!(stale.status, 200, "{path}");
    }
    assert_eq!(node.get("/console/nope.js").status, 404);
    assert_eq!(node.get("/console/api/nope").status, 404);
    assert_eq!(send(&node, "POST", "/console/", vec![]).status, 405);
    assert_eq!(send(&node, "DELETE", "/console", vec![]).status, 405);
    let head = answer(
        client()
            .head(node.url("/console/console.js"))
            .send()
            .expect("HEAD"),
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
}

fn create_job(node: &Node, body: &str) -> (String, String) {
    let a = node.post("/console/api/backup-jobs", body);
    assert_eq!(a.status, 201, "{}", a.body);
    let j = a.json();
    (
        j["id"].as_str().expect("id").to_string(),
        j["download"].as_str().expect("download").to_string(),
    )
}

#[test]
fn backup_job_reports_progress_and_downloads_once() {
    let node = Node::start(&[]);
    node.execute(r#"["CREATE TABLE t(a, b)", "INSERT INTO t VALUES (1, 'one'), (2, NULL)"]"#);
    let (id, download) = create_job(&node, r#"{"fmt":"binary"}"#);
    assert_eq!(id.len(), 32);
    assert_eq!(download, format!("/console/api/backup-jobs/{id}/download"));
    let before = node.get(&format!("/console/api/backup-jobs/{id}")).json();
    assert_eq!(before["state"], "created");
    assert_eq!(before["bytes"], 0);

    // A browser asks for content codings; the download is never coded (its progress counts
    // the bytes of the Content-Length total).
    let r = client()
        .get(node.url(&download))
        .header("Accept-Encoding", "gzip, deflate, br, zstd")
        .send()
        .expect("download");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("content-encoding").is_none());
    let len = r.content_length().expect("Content-Length");
    let index: u64 = r.headers()["x-raftlite-raft-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let disposition = r.headers()["content-disposition"].to_str().unwrap();
    assert_eq!(
        disposition,
        format!("attachment; filename=\"raftlite-backup-{index}.sqlite3\"")
    );
    let bytes = r.bytes().expect("body");
    assert_eq!(bytes.len() as u64, len);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.db");
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(sqlite3(&file, "PRAGMA integrity_check").trim(), "ok");
    assert_eq!(sqlite3(&file, "SELECT count(*) FROM t").trim(), "2");

    let mut done = serde_json::Value::Null;
    assert!(wait_until(Duration::from_secs(10), || {
        done = node.get(&format!("/console/api/backup-jobs/{id}")).json();
        done["state"] == "done"
    }));
    assert_eq!(done["bytes"], len);
    assert_eq!(done["total"], len);
    assert_eq!(done["raft_index"], index);
    assert!(done["rate"].as_u64().is_some());
    assert_eq!(
        done["filename"],
        format!("raftlite-backup-{index}.sqlite3").as_str()
    );
    // One download per job; unknown jobs are a 404.
    let again = node.get(&download);
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(node.get("/console/api/backup-jobs/0123").status, 404);
    assert_eq!(
        node.get("/console/api/backup-jobs/0123/download").status,
        404
    );

    // SQL of a subset, gzipped: no length known in advance.
    let (id, download) = create_job(&node, r#"{"fmt":"sql","tables":"t","compress":true}"#);
    let r = client().get(node.url(&download)).send().expect("download");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .ends_with(".sql.gz\""));
    let gz = r.bytes().unwrap();
    let mut sql = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut sql)
        .unwrap();
    assert!(sql.contains("CREATE TABLE t(a, b)"), "{sql}");
    let mut p = serde_json::Value::Null;
    assert!(wait_until(Duration::from_secs(10), || {
        p = node.get(&format!("/console/api/backup-jobs/{id}")).json();
        p["state"] == "done"
    }));
    assert_eq!(p["total"], serde_json::Value::Null);
    assert_eq!(p["bytes"], gz.len());

    // Bad requests are refused with a reason.
    for bad in [
        r#"{"fmt":"xml"}"#,
        r#"{"fmt":"binary","tables":"t"}"#,
        r#"{"nope":1}"#,
        "not json",
    ] {
        let a = node.post("/console/api/backup-jobs", bad);
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }
    // An empty body is the default job (binary).
    assert_eq!(node.post("/console/api/backup-jobs", "").status, 201);
}

#[test]
fn backup_job_interrupted_download_is_reported() {
    let node = Node::start(&[]);
    node.execute(
        r#"["CREATE TABLE big(b)", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 24000) INSERT INTO big SELECT randomblob(1000) FROM c"]"#,
    );
    let (id, download) = create_job(&node, r#"{"fmt":"binary"}"#);
    let mut r = client().get(node.url(&download)).send().expect("download");
    let total = r.content_length().expect("length");
    assert!(total > 20_000_000, "{total}");
    let mut first = [0u8; 4096];
    r.read_exact(&mut first).expect("first bytes");
    drop(r); // The client goes away mid-download.
    let mut p = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            p = node.get(&format!("/console/api/backup-jobs/{id}")).json();
            p["state"] == "failed"
        }),
        "{p}"
    );
    assert_eq!(p["error"], "the download was interrupted");
    assert!(p["bytes"].as_u64().unwrap() < total);
}

fn stage(node: &Node, query: &str, body: Vec<u8>) -> Answer {
    send(node, "POST", &format!("/console/api/restores{query}"), body)
}

#[test]
fn staged_restore_reports_then_installs_on_confirmation() {
    let node = Node::start(&[]);
    node.execute(r#"["CREATE TABLE old(x)"]"#);
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), "src.db", 500);
    let a = stage(&node, "", std::fs::read(&db).unwrap());
    assert_eq!(a.status, 201, "{}", a.body);
    let j = a.json();
    let id = j["id"].as_str().unwrap().to_string();
    assert_eq!(j["report"]["kind"], "sqlite");
    assert_eq!(j["report"]["tables"], 2);
    assert_eq!(j["report"]["page_size"], 4096);
    assert!(j["report"]["pages"].as_u64().unwrap() >= 2);
    assert!(j["expires_in"].as_u64().unwrap() > 800);
    // Staged, and nothing changed.
    assert_eq!(load_files(&node).len(), 1);
    assert!(local_count(&node, "old").contains("[[0]]"));
    assert!(local_count(&node, "staged").contains("no such table"));
    let described = node.get(&format!("/console/api/restores/{id}"));
    assert_eq!(described.status, 200);
    assert_eq!(described.json()["report"], j["report"]);

    let installed = send(
        &node,
        "POST",
        &format!("/console/api/restores/{id}/install"),
        vec![],
    );
    assert_eq!(installed.status, 200, "{}", installed.body);
    let r = installed.json();
    assert!(r["raft_index"].as_u64().unwrap() > 0);
    assert_eq!(r["load"]["kind"], "sqlite");
    assert!(local_count(&node, "staged").contains("[[500]]"));
    assert!(local_count(&node, "old").contains("no such table"));
    assert!(wait_until(Duration::from_secs(10), || load_files(&node).is_empty()));
    // Installed once: it is gone from the staging area.
    let again = send(
        &node,
        "POST",
        &format!("/console/api/restores/{id}/install"),
        vec![],
    );
    assert_eq!(again.status, 404);

    // SQL text adds to the data; zstd-compressed, as the load path takes it.
    let sql = zstd::encode_all(&b"INSERT INTO other VALUES (7);"[..], 3).unwrap();
    let a = stage(&node, "", sql);
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.json()["report"]["kind"], "sql");
    assert_eq!(a.json()["report"]["zstd"], true, "{}", a.body);
    assert_eq!(a.json()["report"]["gzip"], false, "{}", a.body);
    let id = a.json()["id"].as_str().unwrap().to_string();
    let installed = send(
        &node,
        "POST",
        &format!("/console/api/restores/{id}/install"),
        vec![],
    );
    assert_eq!(installed.status, 200, "{}", installed.body);
    assert!(local_count(&node, "other").contains("[[1]]"));
    assert!(local_count(&node, "staged").contains("[[500]]"));
}

#[test]
fn bad_files_are_refused_and_leave_nothing() {
    let node = Node::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let db = make_db(dir.path(), "src.db", 3000);
    let mut corrupt = std::fs::read(&db).unwrap();
    corrupt[4096 * 2..4096 * 4].fill(0xa5);
    let mut truncated = std::fs::read(&db).unwrap();
    truncated.truncate(5000);
    for (body, why) in [
        (corrupt, "invalid SQLite data"),
        (truncated, "invalid SQLite data"),
        (
            vec![0, 0xff, 0x13, 0x37],
            "neither a SQLite database nor SQL text",
        ),
        (
            b"hello world".to_vec(),
            "does not start with an SQL command",
        ),
        (vec![], "load body is empty"),
    ] {
        let a = stage(&node, "", body);
        assert_eq!(a.status, 400, "{why}: {}", a.body);
        assert!(a.body.contains(why), "{why}: {}", a.body);
        assert!(
            load_files(&node).is_empty(),
            "{why}: {:?}",
            load_files(&node)
        );
    }
    assert_eq!(stage(&node, "?ttl=0", b"SELECT 1;".to_vec()).status, 400);
    assert_eq!(stage(&node, "?ttl=x", b"SELECT 1;".to_vec()).status, 400);
    assert!(load_files(&node).is_empty());
}

#[test]
fn staged_restores_are_discarded_expire_and_are_bounded() {
    let node = Node::start(&[]);
    let sql = b"CREATE TABLE s(a);".to_vec();
    // Discard.
    let a = stage(&node, "", sql.clone());
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.json()["id"].as_str().unwrap().to_string();
    assert_eq!(load_files(&node).len(), 1);
    let d = send(
        &node,
        "DELETE",
        &format!("/console/api/restores/{id}"),
        vec![],
    );
    assert_eq!(d.status, 204);
    assert!(load_files(&node).is_empty());
    assert_eq!(node.get(&format!("/console/api/restores/{id}")).status, 404);
    assert_eq!(
        send(
            &node,
            "DELETE",
            &format!("/console/api/restores/{id}"),
            vec![]
        )
        .status,
        404
    );

    // Expiry: an unconfirmed upload goes with its file, whoever is watching.
    let a = stage(&node, "?ttl=1", sql.clone());
    assert_eq!(a.status, 201);
    let id = a.json()["id"].as_str().unwrap().to_string();
    assert_eq!(a.json()["expires_in"], 0);
    assert!(
        wait_until(Duration::from_secs(10), || load_files(&node).is_empty()),
        "{:?}",
        load_files(&node)
    );
    assert_eq!(node.get(&format!("/console/api/restores/{id}")).status, 404);
    assert_eq!(
        send(
            &node,
            "POST",
            &format!("/console/api/restores/{id}/install"),
            vec![]
        )
        .status,
        404
    );
    assert!(local_count(&node, "s").contains("no such table"));

    // Bounded: four at once.
    let ids: Vec<String> = (0..4)
        .map(|_| {
            let a = stage(&node, "?ttl=120", sql.clone());
            assert_eq!(a.status, 201, "{}", a.body);
            a.json()["id"].as_str().unwrap().to_string()
        })
        .collect();
    let over = stage(&node, "?ttl=120", sql.clone());
    assert_eq!(over.status, 503, "{}", over.body);
    assert!(over.body.contains("already staged"));
    assert_eq!(load_files(&node).len(), 4);
    let d = send(
        &node,
        "DELETE",
        &format!("/console/api/restores/{}", ids[0]),
        vec![],
    );
    assert_eq!(d.status, 204);
    assert_eq!(stage(&node, "?ttl=120", sql).status, 201);
}

#[test]
fn staging_respects_the_disk_reserve() {
    // A reserve larger than any disk: nothing may be staged.
    let node = Node::start(&["-disk-reserve", "1000000000000000"]);
    let a = stage(&node, "", b"CREATE TABLE s(a);".to_vec());
    assert_eq!(a.status, 507, "{}", a.body);
    assert!(a.body.contains("-disk-reserve"));
    assert!(load_files(&node).is_empty());
}

#[test]
fn follower_serves_backup_jobs_through_the_leader_and_sends_restores_to_it() {
    let cluster = Cluster::start(2, &[]);
    let leader = &cluster.nodes[cluster.leader()];
    let follower = &cluster.nodes[cluster.followers()[0]];
    leader.execute(r#"["CREATE TABLE t(a)", "INSERT INTO t VALUES (42)"]"#);

    let (id, download) = create_job(follower, r#"{"fmt":"sql"}"#);
    let r = client()
        .get(follower.url(&download))
        .send()
        .expect("download");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["x-rqlite-served-by"].to_str().unwrap(),
        leader.raft_addr
    );
    let sql = r.text().unwrap();
    assert!(sql.contains("INSERT INTO t VALUES(42);"), "{sql}");
    let mut p = serde_json::Value::Null;
    assert!(wait_until(Duration::from_secs(10), || {
        p = follower
            .get(&format!("/console/api/backup-jobs/{id}"))
            .json();
        p["state"] == "done"
    }));
    assert!(p["raft_index"].as_u64().unwrap() > 0);

    // Per-member details for the Cluster tab: the leader served that backup.
    let c = follower.get("/console/api/cluster").json();
    let nodes = c["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2, "{c}");
    for n in nodes {
        assert_eq!(n["reachable"], true, "{c}");
        assert!(n["applied_index"].as_u64().unwrap() > 0, "{c}");
        let is_leader = n["id"] == leader.get("/status").json()["store"]["node_id"];
        assert_eq!(n["last_backup_time"].is_string(), is_leader, "{c}");
    }

    let a = stage(follower, "", b"CREATE TABLE s(a);".to_vec());
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(
        a.body
            .contains(&format!("http://{}/console/", leader.http_addr)),
        "{}",
        a.body
    );
    assert!(load_files(follower).is_empty());
}
