//! Backup compression and compressed restores on real processes: `compress=zstd` next to
//! rqlite's gzip `compress`, `Accept-Encoding` negotiation (codings, q-values, `*`, identity
//! refused, `Vary` on every answer), a follower forwarding the coding and the client's
//! `Accept-Encoding`, and `.zst` files through `/db/load` and `/boot`, including a zstd bomb
//! and truncated or trailing data that must change nothing.

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{sqlite3, wait_until, Cluster, Node};

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

struct Download {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Download {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client that never decodes: the test sees the bytes as sent.
fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .no_deflate()
        .build()
        .expect("client")
}

/// GET `path`, with `Accept-Encoding: accept` when given.
fn download(node: &Node, path: &str, accept: Option<&str>) -> Download {
    let mut req = client().get(node.url(path));
    if let Some(a) = accept {
        req = req.header("Accept-Encoding", a);
    }
    let r = req.send().expect("GET backup");
    Download {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().expect("backup body").to_vec(),
    }
}

fn unzstd(bytes: &[u8]) -> Vec<u8> {
    zstd::decode_all(bytes).expect("a complete zstd stream")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

fn fill(node: &Node) {
    node.execute(
        r#"["CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT)",
            "INSERT INTO foo(name) VALUES('fiona'), ('declan'), ('zstd é')",
            "CREATE TABLE bar (x)",
            "INSERT INTO bar VALUES (zeroblob(100000))"]"#,
    );
}

/// `compress=zstd` is a `.zst` file of exactly the plain backup; `compress`, `compress=gzip`
/// and `compress=true` stay gzip; anything else is a 400. None of them has Content-Encoding.
#[test]
fn compress_zstd_and_gzip_files_round_trip() {
    let node = Node::start(&[]);
    fill(&node);
    for fmt in ["binary", "sql"] {
        let plain = download(&node, &format!("/db/backup?fmt={fmt}"), None);
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("vary"), Some("accept-encoding"));

        let z = download(&node, &format!("/db/backup?fmt={fmt}&compress=zstd"), None);
        assert_eq!(z.status, 200, "{}", z.text());
        assert_eq!(&z.body[..4], &ZSTD_MAGIC, "{fmt}");
        assert!(z.header("content-encoding").is_none());
        assert!(z.header("content-length").is_none(), "streamed");
        assert_eq!(z.header("vary"), Some("accept-encoding"));
        assert!(z.header("x-raftlite-raft-index").is_some());
        assert_eq!(
            unzstd(&z.body),
            plain.body,
            "{fmt}: zstd of the plain backup"
        );
        assert!(z.body.len() < plain.body.len() / 4, "{fmt}: compressed");

        for q in [
            "compress",
            "compress=gzip",
            "compress=true",
            "compress=GZIP",
        ] {
            let g = download(&node, &format!("/db/backup?fmt={fmt}&{q}"), None);
            assert_eq!(g.status, 200, "{q}");
            assert!(g.header("content-encoding").is_none(), "{q}");
            assert_eq!(gunzip(&g.body), plain.body, "{fmt} {q}");
        }
        // compress wins over Accept-Encoding: still a file, not a content coding.
        let z = download(
            &node,
            &format!("/db/backup?fmt={fmt}&compress=zstd"),
            Some("gzip"),
        );
        assert!(z.header("content-encoding").is_none());
        assert_eq!(unzstd(&z.body), plain.body);
    }
    for q in ["compress=false", "compress=brotli", "compress=zst"] {
        let d = download(&node, &format!("/db/backup?{q}"), None);
        assert_eq!(d.status, 400, "{q}");
        assert!(
            d.text().contains("compress=zstd"),
            "{q}: a clear message: {}",
            d.text()
        );
        assert_eq!(d.header("vary"), Some("accept-encoding"), "{q}");
    }
}

/// Accept-Encoding per RFC 9110 §12.5.3, on the SQL dump (deterministic, so every coded body
/// must decode to the same bytes) and on the binary backup (Content-Length only uncoded).
#[test]
fn accept_encoding_negotiation() {
    let node = Node::start(&[]);
    fill(&node);
    let plain = download(&node, "/db/backup?fmt=sql", None).body;
    assert!(!plain.is_empty());
    // (Accept-Encoding, the Content-Encoding chosen or None for identity, the status)
    let table: &[(&str, Option<&str>, u16)] = &[
        // A coding only when the client ranks it above identity, or refuses identity.
        ("zstd", None, 200),
        ("gzip", None, 200),
        ("x-gzip", None, 200),
        ("gzip, zstd", None, 200),
        ("gzip, deflate, br, zstd", None, 200),
        ("zstd, identity;q=0.5", Some("zstd"), 200),
        ("gzip, identity;q=0.5", Some("gzip"), 200),
        ("x-gzip, identity;q=0.1", Some("gzip"), 200),
        ("gzip, zstd, identity;q=0.5", Some("zstd"), 200),
        ("zstd;q=0.5, gzip;q=0.8, identity;q=0.1", Some("gzip"), 200),
        ("zstd;q=0.8, gzip;q=0.5, identity;q=0.1", Some("zstd"), 200),
        ("gzip;q=0.5, identity", None, 200),
        ("*", None, 200),
        ("*, identity;q=0.5", Some("zstd"), 200),
        ("*, zstd;q=0, identity;q=0.5", Some("gzip"), 200),
        ("br, deflate, compress", None, 200),
        ("identity", None, 200),
        ("", None, 200),
        ("zstd;q=0, gzip;q=0", None, 200),
        ("identity;q=0, gzip", Some("gzip"), 200),
        ("identity;q=0, br", None, 406),
        ("*;q=0", None, 406),
    ];
    for &(accept, coding, status) in table {
        let d = download(&node, "/db/backup?fmt=sql", Some(accept));
        assert_eq!(d.status, status, "{accept:?}: {}", d.text());
        assert_eq!(d.header("vary"), Some("accept-encoding"), "{accept:?}");
        assert_eq!(d.header("content-encoding"), coding, "{accept:?}");
        if status == 406 {
            assert!(d.text().contains("zstd, gzip and identity"), "{}", d.text());
            continue;
        }
        let decoded = match coding {
            Some("zstd") => unzstd(&d.body),
            Some("gzip") => gunzip(&d.body),
            _ => d.body.clone(),
        };
        assert_eq!(decoded, plain, "{accept:?}");
    }
    // Binary: a coded answer has no Content-Length (it streams), an uncoded one keeps it.
    let bin = download(&node, "/db/backup", None);
    assert_eq!(
        bin.header("content-length"),
        Some(bin.body.len().to_string().as_str())
    );
    let z = download(&node, "/db/backup", Some("zstd, identity;q=0.5"));
    assert_eq!(z.header("content-encoding"), Some("zstd"));
    assert!(z.header("content-length").is_none());
    assert_eq!(unzstd(&z.body), bin.body);
    // No Accept-Encoding at all: identity, and still Vary.
    assert!(bin.header("content-encoding").is_none());
    assert_eq!(bin.header("vary"), Some("accept-encoding"));

    // Each coding is its own representation: its own ETag, and HEAD says the coding.
    let tags = [
        bin.header("etag").map(str::to_owned),
        z.header("etag").map(str::to_owned),
        download(&node, "/db/backup", Some("gzip, identity;q=0.5"))
            .header("etag")
            .map(str::to_owned),
        download(&node, "/db/backup?compress=zstd", None)
            .header("etag")
            .map(str::to_owned),
        download(&node, "/db/backup?compress", None)
            .header("etag")
            .map(str::to_owned),
    ];
    assert!(tags.iter().all(Option::is_some), "{tags:?}");
    let distinct: std::collections::HashSet<_> = tags.iter().collect();
    assert_eq!(distinct.len(), tags.len(), "{tags:?}");
    let head = client()
        .head(node.url("/db/backup"))
        .header("Accept-Encoding", "zstd, identity;q=0.5")
        .send()
        .expect("HEAD");
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        head.headers().get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"zstd"[..])
    );
    // Not the uncompressed length (the coded one is not known before the body is made).
    assert_ne!(
        head.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some(bin.body.len().to_string().as_str())
    );
    assert_eq!(
        head.headers().get("etag"),
        z.headers.get("etag"),
        "HEAD names what GET sends"
    );
}

/// A follower forwards the client's Accept-Encoding to the leader and passes the leader's
/// coded bytes, Content-Encoding and Vary back untouched; compress=zstd goes along too.
#[test]
fn a_follower_forwards_the_coding() {
    let c = Cluster::start(2, &[]);
    let leader = &c.nodes[c.leader()];
    let follower = &c.nodes[c.followers()[0]];
    fill(leader);
    let plain = download(leader, "/db/backup?fmt=sql", None).body;
    for (accept, coding) in [
        ("zstd, identity;q=0.5", Some("zstd")),
        ("gzip, identity;q=0.5", Some("gzip")),
        ("gzip", None),
        ("br", None),
    ] {
        let d = download(follower, "/db/backup?fmt=sql", Some(accept));
        assert_eq!(d.status, 200, "{accept}: {}", d.text());
        assert!(d.header("x-rqlite-served-by").is_some(), "forwarded");
        assert_eq!(d.header("content-encoding"), coding, "{accept}");
        assert_eq!(d.header("vary"), Some("accept-encoding"));
        let decoded = match coding {
            Some("zstd") => unzstd(&d.body),
            Some("gzip") => gunzip(&d.body),
            _ => d.body.clone(),
        };
        assert_eq!(decoded, plain, "{accept}");
    }
    let d = download(follower, "/db/backup?fmt=sql&compress=zstd", None);
    assert_eq!(d.status, 200);
    assert!(d.header("content-encoding").is_none());
    assert_eq!(unzstd(&d.body), plain);
    let d = download(follower, "/db/backup", Some("identity;q=0"));
    assert_eq!(d.status, 406);
}

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

struct Posted {
    status: u16,
    body: String,
}

impl Posted {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn post(node: &Node, path: &str, body: Vec<u8>) -> Posted {
    let r = client()
        .post(node.url(path))
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .expect("POST");
    Posted {
        status: r.status().as_u16(),
        body: r.text().unwrap_or_default(),
    }
}

fn count(node: &Node, table: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", &format!("SELECT count(*) FROM {table}"))
        .append_pair("level", "none")
        .finish();
    node.get(&format!("/db/query?{q}")).body
}

fn has_count(node: &Node, table: &str, n: u64) -> bool {
    count(node, table).contains(&format!("\"values\":[[{n}]]"))
}

fn load_files(node: &Node) -> Vec<String> {
    common::files_named(&node.data_dir, "load-")
}

/// `.zst` database files and SQL dumps load through /db/load (on a cluster, through a
/// follower) and /boot, reported as zstd.
#[test]
fn zstd_files_load_and_boot() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::start(2, &[]);
    let leader = &c.nodes[c.leader()];
    let follower = &c.nodes[c.followers()[0]];
    leader.execute(r#"["CREATE TABLE old(a)"]"#);

    let db = std::fs::read(make_db(tmp.path(), "w.db", "WAL", 700)).unwrap();
    let r = post(follower, "/db/load?report", zst(&db));
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["load"]["kind"], "sqlite", "{j}");
    assert_eq!(j["load"]["zstd"], true, "{j}");
    assert_eq!(j["load"]["gzip"], false, "{j}");
    assert_eq!(j["load"]["bytes"], db.len() as u64, "{j}");
    for node in &c.nodes {
        assert!(
            wait_until(Duration::from_secs(30), || has_count(node, "test", 700)),
            "{}",
            count(node, "test")
        );
    }
    assert!(count(leader, "old").contains("no such table"));

    // A SQL dump, zstd-compressed: additive, with a results array.
    let sql = "CREATE TABLE s(a);\nINSERT INTO s VALUES(1);\nINSERT INTO s VALUES(2);\n";
    let r = post(leader, "/db/load?report", zst(sql.as_bytes()));
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["load"]["kind"], "sql", "{j}");
    assert_eq!(j["load"]["zstd"], true, "{j}");
    assert!(has_count(leader, "s", 2));
    assert!(
        has_count(leader, "test", 700),
        "a script adds to what is there"
    );

    // The plain binary backup, as compress=zstd made it, loads into another node.
    let other = Node::start(&[]);
    let backup = download(leader, "/db/backup?compress=zstd", None);
    assert_eq!(backup.status, 200);
    let r = post(&other, "/db/load", backup.body.clone());
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(has_count(&other, "s", 2) && has_count(&other, "test", 700));

    // /boot of a .zst file into a single node.
    let boot = Node::start(&[]);
    boot.execute(r#"["CREATE TABLE gone(a)"]"#);
    let r = post(&boot, "/boot", backup.body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(has_count(&boot, "test", 700));
    assert!(count(&boot, "gone").contains("no such table"));
    assert!(load_files(&boot).is_empty(), "{:?}", load_files(&boot));
}

/// A zstd bomb stops at -max-load-size (413), truncated zstd and bytes after the frame are
/// 400 with a message naming zstd; none of them changes the database or leaves a file.
#[test]
fn bad_zstd_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&["-max-load-size", "300000"]);
    node.execute(r#"["CREATE TABLE keep(a)", "INSERT INTO keep VALUES(1)"]"#);
    let good = std::fs::read(make_db(tmp.path(), "g.db", "DELETE", 500)).unwrap();
    let good_zst = zst(&good);
    let sql_zst = zst("INSERT INTO keep VALUES(2);\n".repeat(2000).as_bytes());
    let mut trailing = zst(b"INSERT INTO keep VALUES(2);\n");
    trailing.extend_from_slice(b"not a frame");
    let bomb = zst(&vec![b' '; 50_000_000]);
    assert!(bomb.len() < 10_000, "a bomb: {} bytes", bomb.len());
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("zstd bomb", bomb, 413, "too large"),
        (
            "truncated zstd sql",
            sql_zst[..sql_zst.len() / 2].to_vec(),
            400,
            "zstd",
        ),
        (
            "truncated zstd database",
            good_zst[..good_zst.len() - 3].to_vec(),
            400,
            "zstd",
        ),
        ("data after the frame", trailing, 400, "after the end"),
    ];
    for (name, body, want, says) in cases {
        let r = post(&node, "/db/load", body.clone());
        assert_eq!(r.status, want, "{name}: {}", r.body);
        assert!(r.body.contains(says), "{name}: a clear message: {}", r.body);
        assert!(has_count(&node, "keep", 1), "{name}: old data");
        assert!(
            wait_until(Duration::from_secs(10), || load_files(&node).is_empty()),
            "{name}: {:?}",
            load_files(&node)
        );
        let r = post(&node, "/boot", body);
        assert_eq!(r.status, want, "{name} (boot): {}", r.body);
        assert!(has_count(&node, "keep", 1), "{name} (boot): old data");
    }
    // And the good file still loads afterwards.
    let r = post(&node, "/db/load", good_zst);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(has_count(&node, "test", 500));
}
