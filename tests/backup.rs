//! `GET /db/backup` end to end on real processes: binary and SQL formats, compression, a backup
//! under concurrent writes, followers (proxy, redirect, noleader), and a client that leaves
//! mid-stream. Files are checked with the `sqlite3` shell.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::small_disk::SmallDisk;
use common::{sqlite3, wait_until, Cluster, Node};

/// These tests watch a copy's file go once nothing reads it: finished copies are not kept for
/// reuse here (`-backup-keep`; tests/backup_serving.rs covers keeping them).
const KEEP_NONE: [&str; 2] = ["-backup-keep", "0s"];
/// Copies kept a moment: plain binary backups are made as copies on disk (with nothing kept,
/// they stream straight from the database instead).
const KEEP_BRIEF: [&str; 2] = ["-backup-keep", "1s"];

struct Download {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Download {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn download(node: &Node, path: &str) -> Download {
    let r = client().get(node.url(path)).send().expect("GET backup");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().expect("backup body").to_vec();
    Download {
        status,
        headers,
        body,
    }
}

fn save(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write backup");
    p
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// The directory a node made for itself inside `-backup-tmp-dir` (there is exactly one).
fn own_backup_dir(parent: &Path) -> std::path::PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(parent)
        .expect("read -backup-tmp-dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "one private directory in {}: {dirs:?}",
        parent.display()
    );
    dirs[0].clone()
}

fn temp_files(dir: &Path) -> Vec<String> {
    common::files_named(dir, "backup-")
}

/// Checks a binary backup: header, DELETE mode, integrity, no internal table.
fn check_sqlite_file(file: &Path) {
    let bytes = std::fs::read(file).expect("read backup");
    assert!(bytes.starts_with(b"SQLite format 3\0"), "not a SQLite file");
    assert_eq!(&bytes[18..20], &[1, 1], "not in DELETE journal mode");
    assert_eq!(sqlite3(file, "PRAGMA integrity_check"), "ok\n");
    assert_eq!(
        sqlite3(
            file,
            "SELECT count(*) FROM sqlite_master WHERE name='_raftlite_state'"
        ),
        "0\n"
    );
}

const ROWS_SQL: &str = "SELECT * FROM foo ORDER BY id; SELECT * FROM bar ORDER BY k; \
                        SELECT * FROM sqlite_sequence ORDER BY name";

fn fill(node: &Node) {
    node.execute(
        r#"["CREATE TABLE foo (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, n INTEGER, b BLOB)",
            "CREATE TABLE bar (k TEXT PRIMARY KEY, v REAL)",
            "CREATE INDEX foo_name ON foo(name)",
            "INSERT INTO foo(name, n, b) VALUES('fiona', 20, x'0102ff')",
            "INSERT INTO foo(name, n) VALUES('it''s', -3)",
            "INSERT INTO foo(name, n) VALUES('two\nlines', NULL)",
            "DELETE FROM foo WHERE id = 2",
            "INSERT INTO foo(name, n) VALUES('declan', 7)",
            "INSERT INTO bar VALUES('a', 1.5), ('b', 2.0)"]"#,
    );
}

#[test]
fn single_node_binary_sql_compress_and_errors() {
    let node = Node::start(&KEEP_NONE);
    fill(&node);
    let tmp = tempfile::tempdir().expect("tempdir");

    // Binary.
    let d = download(&node, "/db/backup");
    assert_eq!(d.status, 200, "{}", String::from_utf8_lossy(&d.body));
    assert_eq!(d.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        d.header("content-length"),
        Some(d.body.len().to_string().as_str())
    );
    let index: u64 = d
        .header("x-raftlite-raft-index")
        .and_then(|v| v.parse().ok())
        .expect("raft index header");
    assert!(index > 0);
    let file = save(tmp.path(), "b.db", &d.body);
    check_sqlite_file(&file);
    let rows = sqlite3(&file, ROWS_SQL);
    assert!(rows.contains("fiona") && rows.contains("declan") && !rows.contains("|-3|"));
    assert!(rows.contains("foo|4"), "sqlite_sequence kept: {rows}");

    // fmt=delete and an unknown fmt are the same binary file.
    for q in [
        "/db/backup?fmt=DELETE",
        "/db/backup?fmt=whatever",
        "/db/backup?vacuum",
    ] {
        let d = download(&node, q);
        assert_eq!(d.status, 200, "{q}");
        let f = save(tmp.path(), "x.db", &d.body);
        check_sqlite_file(&f);
        assert_eq!(sqlite3(&f, ROWS_SQL), rows, "{q}");
    }

    // Compressed: gzip body, no Content-Encoding.
    let d = download(&node, "/db/backup?compress");
    assert_eq!(d.status, 200);
    assert!(d.header("content-encoding").is_none());
    assert_eq!(&d.body[..2], &[0x1f, 0x8b]);
    let f = save(tmp.path(), "c.db", &gunzip(&d.body));
    check_sqlite_file(&f);
    assert_eq!(sqlite3(&f, ROWS_SQL), rows);

    // SQL: byte for byte the shell's .dump of the binary backup.
    let d = download(&node, "/db/backup?fmt=sql");
    assert_eq!(d.status, 200);
    assert_eq!(d.header("content-type"), Some("application/sql"));
    assert!(d.header("x-raftlite-raft-index").is_some());
    let shell = sqlite3(&file, ".dump");
    assert_eq!(String::from_utf8_lossy(&d.body), shell);
    assert!(!shell.contains("_raftlite_state"));

    let d = download(&node, "/db/backup?fmt=Sql&compress");
    assert_eq!(d.status, 200);
    assert_eq!(String::from_utf8_lossy(&gunzip(&d.body)), shell);

    // tables=: only bar (no foo rows, no foo index).
    let d = download(&node, "/db/backup?fmt=sql&tables=%20bar%20");
    assert_eq!(d.status, 200);
    let text = String::from_utf8_lossy(&d.body);
    assert!(text.contains("CREATE TABLE bar"), "{text}");
    assert!(!text.contains("foo"), "{text}");

    // Errors.
    for q in ["/db/backup?fmt=sql&vacuum", "/db/backup?fmt=delete&vacuum"] {
        let d = download(&node, q);
        assert_eq!(d.status, 500, "{q}");
        assert_eq!(String::from_utf8_lossy(&d.body), "invalid backup format\n");
    }
    let a = node.request("POST", "/db/backup", None, "");
    assert_eq!(a.status, 405);

    let status = node.get("/status").json();
    assert!(status["store"]["num_backups"].as_u64().unwrap_or(0) >= 7);
    assert!(status["store"]["last_backup_time"].is_string());
    assert!(wait_until(Duration::from_secs(5), || temp_files(
        &node.data_dir
    )
    .is_empty()));
}

#[test]
fn backup_under_concurrent_writes_is_a_committed_prefix() {
    let node = Arc::new(Node::start(&KEEP_NONE));
    node.execute(r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, pad TEXT)"]"#);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (node, stop, written) = (Arc::clone(&node), Arc::clone(&stop), Arc::clone(&written));
        std::thread::spawn(move || {
            for id in 1..=3000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                node.execute(&format!(
                    r#"[["INSERT INTO t(id, pad) VALUES(?, hex(zeroblob(200)))", {id}]]"#
                ));
                written.store(id, Ordering::Relaxed);
            }
        })
    };
    assert!(wait_until(Duration::from_secs(30), || written
        .load(Ordering::Relaxed)
        >= 50));
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut seen = Vec::new();
    for i in 0..3 {
        let d = download(&node, "/db/backup");
        assert_eq!(d.status, 200);
        let f = save(tmp.path(), &format!("w{i}.db"), &d.body);
        check_sqlite_file(&f);
        let out = sqlite3(
            &f,
            "SELECT count(*), coalesce(min(id),0), coalesce(max(id),0) FROM t",
        );
        let v: Vec<u64> = out
            .trim()
            .split('|')
            .map(|x| x.parse().expect("number"))
            .collect();
        assert!(v[0] >= 50, "backup misses committed rows: {out}");
        assert_eq!((v[1], v[2]), (1, v[0]), "not a gap-free prefix: {out}");
        seen.push(v[0]);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    // The copy is removed off the HTTP worker, just after the last download ends.
    assert!(wait_until(Duration::from_secs(5), || temp_files(
        &node.data_dir
    )
    .is_empty()));
}

/// Restores SQL text into a new database with the `sqlite3` shell, as a user would.
fn restore_sql(dir: &Path, name: &str, sql: &[u8]) -> PathBuf {
    let db = dir.join(name);
    let mut child = Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run sqlite3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql)
        .expect("feed the dump");
    let out = child.wait_with_output().expect("sqlite3 finished");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

#[test]
fn sql_dump_under_concurrent_writes_restores_to_a_committed_prefix() {
    let node = Arc::new(Node::start(&[]));
    node.execute(r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, pad TEXT)", "CREATE TABLE u (id INTEGER PRIMARY KEY)"]"#);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (node, stop, written) = (Arc::clone(&node), Arc::clone(&stop), Arc::clone(&written));
        std::thread::spawn(move || {
            // Each request writes both tables in one transaction: a dump that saw half of one
            // would restore with t and u disagreeing.
            for id in 1..=3000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let a = node.post(
                    "/db/execute?transaction",
                    &format!(
                        r#"[["INSERT INTO t(id, pad) VALUES(?, hex(zeroblob(200)))", {id}], ["INSERT INTO u(id) VALUES(?)", {id}]]"#
                    ),
                );
                assert_eq!(a.status, 200);
                written.store(id, Ordering::Relaxed);
            }
        })
    };
    assert!(wait_until(Duration::from_secs(30), || written
        .load(Ordering::Relaxed)
        >= 50));
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut seen = Vec::new();
    for i in 0..3 {
        let d = download(&node, "/db/backup?fmt=sql");
        assert_eq!(d.status, 200);
        let db = restore_sql(tmp.path(), &format!("r{i}.db"), &d.body);
        let out = sqlite3(
            &db,
            "SELECT (SELECT count(*) FROM t), (SELECT coalesce(max(id),0) FROM t), \
             (SELECT count(*) FROM u), (SELECT coalesce(max(id),0) FROM u)",
        );
        let v: Vec<u64> = out
            .trim()
            .split('|')
            .map(|x| x.parse().expect("number"))
            .collect();
        assert!(v[0] >= 50, "the dump misses committed rows: {out}");
        assert_eq!(v[0], v[1], "t is not a gap-free prefix: {out}");
        assert_eq!(
            (v[2], v[3]),
            (v[0], v[1]),
            "a transaction was cut in half: {out}"
        );
        seen.push(v[0]);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
}

#[test]
fn followers_proxy_redirect_and_noleader() {
    let mut c = Cluster::start(3, &KEEP_NONE);
    let follower_at = c.followers()[0];
    let leader = &c.nodes[c.leader()];
    fill(leader);
    let follower = &c.nodes[follower_at];
    let tmp = tempfile::tempdir().expect("tempdir");

    let from_leader = download(leader, "/db/backup");
    assert_eq!(from_leader.status, 200);
    let lf = save(tmp.path(), "l.db", &from_leader.body);
    let expected = sqlite3(&lf, ROWS_SQL);

    let proxied = download(follower, "/db/backup");
    assert_eq!(
        proxied.status,
        200,
        "{}",
        String::from_utf8_lossy(&proxied.body)
    );
    assert!(proxied.header("x-raftlite-raft-index").is_some());
    let pf = save(tmp.path(), "p.db", &proxied.body);
    check_sqlite_file(&pf);
    assert_eq!(sqlite3(&pf, ROWS_SQL), expected);

    let sql = download(follower, "/db/backup?fmt=sql");
    assert_eq!(sql.status, 200);
    assert_eq!(String::from_utf8_lossy(&sql.body), sqlite3(&lf, ".dump"));

    let r = download(follower, "/db/backup?redirect");
    assert_eq!(r.status, 301);
    let loc = r.header("location").expect("Location");
    assert!(loc.ends_with("/db/backup?redirect"), "{loc}");
    assert!(loc.contains(&leader.http_addr), "{loc}");

    // noleader: the follower's own copy, once it has applied the writes.
    assert!(wait_until(Duration::from_secs(10), || {
        let d = download(follower, "/db/backup?noleader");
        d.status == 200 && {
            let f = save(tmp.path(), "n.db", &d.body);
            sqlite3(&f, ROWS_SQL) == expected
        }
    }));
    check_sqlite_file(&tmp.path().join("n.db"));

    // Two of three down: the survivor has no leader; noleader still serves its own copy.
    for i in 0..3 {
        if i != follower_at {
            c.nodes[i].kill();
        }
    }
    let s = &c.nodes[follower_at];
    // Until it notices, it answers 503 "forward to leader: ..." (the leader is gone).
    assert!(wait_until(Duration::from_secs(20), || {
        download(s, "/db/backup").body == b"leader not found\n"
    }));
    let d = download(s, "/db/backup");
    assert_eq!(
        (d.status, String::from_utf8_lossy(&d.body).as_ref()),
        (503, "leader not found\n")
    );
    assert_eq!(download(s, "/db/backup?redirect").status, 503);
    let d = download(s, "/db/backup?noleader");
    assert_eq!(d.status, 200);
    let f = save(tmp.path(), "s.db", &d.body);
    check_sqlite_file(&f);
    assert_eq!(sqlite3(&f, ROWS_SQL), expected);
    assert!(wait_until(Duration::from_secs(5), || temp_files(
        &s.data_dir
    )
    .is_empty()));
}

#[test]
fn client_leaving_mid_stream_leaves_no_temp_file() {
    let node = Node::start(&KEEP_NONE);
    fill_big(&node);
    // A vacuumed backup is made as a copy on disk; a plain or compressed one, on a node that
    // keeps no copies, streams straight from the database; a SQL dump never has a file.
    for (path, has_file) in [
        ("/db/backup?vacuum", true),
        ("/db/backup", false),
        ("/db/backup?compress", false),
        ("/db/backup?fmt=sql", false),
    ] {
        let s = start_slow_download(&node, path, 8192);
        // Still streaming: a copy's file exists while the client holds the connection.
        assert_eq!(
            !temp_files(&node.data_dir).is_empty(),
            has_file,
            "{path}: temp files mid-stream: {:?}",
            temp_files(&node.data_dir)
        );
        drop(s);
        assert!(
            wait_until(Duration::from_secs(15), || temp_files(&node.data_dir)
                .is_empty()),
            "{path}: temp file left: {:?}",
            temp_files(&node.data_dir)
        );
        assert_eq!(node.get("/readyz").status, 200);
    }
    // And a full backup still works afterwards.
    let d = download(&node, "/db/backup");
    assert_eq!(d.status, 200);
    assert!(d.body.len() > 30_000_000);
}

/// With no copies kept, a plain backup is streamed from the database in one pass: no copy is
/// made, and its bytes are those of the copy a range request reads of the same content.
#[test]
fn without_kept_copies_a_backup_streams_from_the_database() {
    let node = Node::start(&KEEP_NONE);
    // Larger than what the socket and the channel buffer: a held stream stays in progress.
    fill_blobs(&node, 30_000);
    fill(&node);
    node.execute(r#"["DELETE FROM big WHERE id % 4 = 0"]"#);
    let (made_before, _) = backup_copies(&node);
    let direct = download(&node, "/db/backup");
    assert_eq!(direct.status, 200);
    assert_eq!(
        direct.header("content-length"),
        Some(direct.body.len().to_string().as_str())
    );
    assert_eq!(
        backup_copies(&node).0,
        made_before,
        "no copy for a direct stream"
    );
    // While a direct stream is open, the next backup is a copy (which later ones would share).
    let held = start_slow_download(&node, "/db/backup", 8192);
    let during = download(&node, "/db/backup");
    assert_eq!(during.status, 200);
    assert!(
        during.body == direct.body,
        "a copy of the same content differs"
    );
    assert_eq!(
        backup_copies(&node).0,
        made_before + 1,
        "a copy beside the stream"
    );
    drop(held);
    let made_before = made_before + 1;
    // A range is read from a copy: the same content, the same bytes.
    let ranged = client()
        .get(node.url("/db/backup"))
        .header("Range", "bytes=0-")
        .send()
        .expect("GET range");
    assert_eq!(ranged.status().as_u16(), 206);
    let ranged_etag = ranged
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ranged = ranged.bytes().expect("body");
    assert_eq!(
        backup_copies(&node).0,
        made_before + 1,
        "the range made a copy"
    );
    assert_eq!(ranged_etag.as_deref(), direct.header("etag"));
    assert!(
        ranged.as_ref() == direct.body.as_slice(),
        "direct and copied bytes differ"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    check_sqlite_file(&save(dir.path(), "direct.db", &direct.body));
}

#[test]
fn startup_removes_leftover_backup_files() {
    let mut node = Node::start(&[]);
    let temp = node.take_temp().expect("temp dir");
    node.kill();
    // What a crash in the middle of a backup leaves behind.
    std::fs::write(temp.path().join("backup-1-0.db"), b"partial").expect("write");
    std::fs::write(temp.path().join("backup-1-0.db-journal"), b"x").expect("write");
    let node = Node::start_in(temp.path(), &[]);
    assert!(
        temp_files(temp.path()).is_empty(),
        "{:?}",
        temp_files(temp.path())
    );
    assert_eq!(download(&node, "/db/backup").status, 200);
}

fn backup_copies(node: &Node) -> (u64, u64) {
    let status: serde_json::Value =
        serde_json::from_str(&node.get("/status").body).expect("status JSON");
    let copies = &status["store"]["backup_copies"];
    (
        copies["made"].as_u64().expect("made"),
        copies["shared"].as_u64().expect("shared"),
    )
}

fn fill_blobs(node: &Node, rows: u32) {
    node.execute(&format!(
        r#"["CREATE TABLE IF NOT EXISTS big (id INTEGER PRIMARY KEY, v BLOB)",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < {rows}) INSERT INTO big(v) SELECT randomblob(1000) FROM c"]"#
    ));
}

#[test]
fn concurrent_backups_of_one_index_share_one_copy() {
    let node = Node::start(&KEEP_BRIEF);
    fill_blobs(&node, 20_000);
    let (made_before, shared_before) = backup_copies(&node);
    // Every client gets its response headers (the copy is ready) before any of them reads its
    // body, so all ten requests are in while the first copy is alive, whatever the timing.
    const CLIENTS: usize = 10;
    let barrier = Arc::new(std::sync::Barrier::new(CLIENTS));
    let bodies: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let url = node.url("/db/backup");
                s.spawn(move || {
                    let r = client().get(url).send().expect("GET backup");
                    assert_eq!(r.status().as_u16(), 200);
                    barrier.wait();
                    r.bytes().expect("body").to_vec()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    assert!(bodies[0].len() > 20_000_000);
    assert!(bodies.iter().all(|b| *b == bodies[0]), "backups differ");
    let dir = tempfile::tempdir().expect("tempdir");
    check_sqlite_file(&save(dir.path(), "shared.db", &bodies[0]));
    let (made, shared) = backup_copies(&node);
    assert_eq!(made - made_before, 1, "one copy for ten requests");
    assert_eq!(shared - shared_before, (CLIENTS - 1) as u64);
    assert!(
        wait_until(Duration::from_secs(10), || temp_files(&node.data_dir)
            .is_empty()),
        "copy left behind"
    );
    // A write moves the applied index: the next backup is a new copy that holds it.
    node.execute(r#"["INSERT INTO big(v) VALUES(x'01')"]"#);
    let d = download(&node, "/db/backup");
    assert_eq!(d.status, 200);
    assert_eq!(backup_copies(&node).0 - made_before, 2);
}

#[test]
fn backup_that_would_eat_the_disk_reserve_answers_507() {
    // A reserve larger than any disk: the copy is refused before it starts.
    let node = Node::start(&["-disk-reserve", "9000000000000000000"]);
    fill(&node);
    let d = download(&node, "/db/backup");
    assert_eq!(d.status, 507, "{}", String::from_utf8_lossy(&d.body));
    let msg = String::from_utf8_lossy(&d.body);
    assert!(msg.contains("-disk-reserve"), "{msg}");
    assert!(temp_files(&node.data_dir).is_empty());
    // The node still serves, and a SQL dump (no copy on disk) still works.
    assert_eq!(node.get("/readyz").status, 200);
    let sql = download(&node, "/db/backup?fmt=sql");
    assert_eq!(sql.status, 200);
    assert!(String::from_utf8_lossy(&sql.body).contains("INSERT INTO foo"));
}

#[test]
fn backup_tmp_dir_on_a_small_disk_fills_then_refuses_and_recovers() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let Some((_disk, tmp)) = SmallDisk::mount_or_skip(scratch.path(), "backups", 24, false) else {
        return;
    };
    let tmp_arg = tmp.display().to_string();
    let node = Node::start(&[
        "-backup-tmp-dir",
        &tmp_arg,
        "-disk-reserve",
        "1048576",
        "-backup-keep",
        "1s",
    ]);
    fill_blobs(&node, 8_000); // ~8.5 MB
    let files_in = |d: &Path| temp_files(d).len();
    // The node keeps its copies in a directory of its own inside -backup-tmp-dir.
    let tmp = own_backup_dir(&tmp);
    // Two downloads held open, at two indexes: two copies in the tmpfs, none in the data dir.
    let first = client().get(node.url("/db/backup")).send().expect("GET");
    assert_eq!(first.status().as_u16(), 200);
    node.execute(r#"["INSERT INTO big(v) VALUES(x'01')"]"#);
    let second = client().get(node.url("/db/backup")).send().expect("GET");
    assert_eq!(second.status().as_u16(), 200);
    assert_eq!(files_in(&tmp), 2);
    assert_eq!(files_in(&node.data_dir), 0);
    // A third copy does not fit in what is left above the reserve.
    node.execute(r#"["INSERT INTO big(v) VALUES(x'02')"]"#);
    let third = download(&node, "/db/backup");
    assert_eq!(
        third.status,
        507,
        "{}",
        String::from_utf8_lossy(&third.body)
    );
    // (Files are removed off the HTTP worker, a moment after the answer.)
    assert!(
        wait_until(Duration::from_secs(5), || files_in(&tmp) == 2),
        "the refused copy left a file"
    );
    // The held downloads complete and are whole; then the disk is free again.
    let one = first.bytes().expect("body");
    let two = second.bytes().expect("body");
    check_sqlite_file(&save(scratch.path(), "one.db", &one));
    check_sqlite_file(&save(scratch.path(), "two.db", &two));
    assert!(wait_until(Duration::from_secs(10), || files_in(&tmp) == 0));
    assert_eq!(download(&node, "/db/backup").status, 200);
    assert_eq!(node.get("/readyz").status, 200);
}

/// Sends `GET path` on a raw connection and reads `first` bytes of the answer, leaving the
/// rest unread: a client that stopped reading.
fn start_slow_download(node: &Node, path: &str, first: usize) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(&node.http_addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        node.http_addr
    )
    .expect("send request");
    let mut buf = vec![0u8; first];
    s.read_exact(&mut buf).expect("read the head of the dump");
    s
}

/// Reads what is left until the server closes (or aborts) the connection.
fn read_rest(mut s: std::net::TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    // Bounded: the dump in these tests is far below 1 GiB.
    while rest.len() < 1 << 30 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
        }
    }
    rest
}

fn fill_big(node: &Node) {
    node.execute(
        r#"["CREATE TABLE big (id INTEGER PRIMARY KEY, v BLOB)",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 30000) INSERT INTO big(v) SELECT randomblob(1000) FROM c"]"#,
    );
}

/// A SQL dump's snapshot pins the WAL, so a client that stops reading cannot hold it for
/// ever: the dump ends when the WAL has grown past `-dump-wal-limit`, or when the client has
/// read nothing for `-dump-stall-timeout`. The client gets a last comment line with the
/// reason and an aborted connection (never `COMMIT;`), and the node keeps serving dumps.
#[test]
fn sql_dump_held_by_a_slow_client_is_capped() {
    // WAL growth: writes that commit while the dump's snapshot is open.
    let node = Node::start(&["-dump-wal-limit", "200000", "-dump-stall-timeout", "10m"]);
    fill_big(&node);
    // Frames in the WAL when the dump starts, so its snapshot really pins them.
    node.execute(r#"["CREATE TABLE w (v BLOB)", "INSERT INTO w VALUES(randomblob(5000))"]"#);
    let slow = start_slow_download(&node, "/db/backup?fmt=sql", 8192);
    for _ in 0..30 {
        node.execute(r#"["INSERT INTO w VALUES(randomblob(50000))"]"#);
    }
    assert!(
        wait_until(Duration::from_secs(20), || node
            .log()
            .contains("SQL dump stopped")),
        "the dump was not stopped:\n{}",
        node.log()
    );
    assert!(node.log().contains("-dump-wal-limit"), "{}", node.log());
    let rest = String::from_utf8_lossy(&read_rest(slow)).into_owned();
    assert!(
        rest.contains("-- raftlite: dump aborted: the WAL grew by"),
        "no reason at the end: {}",
        &rest[rest.len().saturating_sub(500)..]
    );
    assert!(
        !rest.contains("COMMIT;"),
        "an aborted dump must not end cleanly"
    );
    // The node serves a whole dump afterwards.
    let d = download(&node, "/db/backup?fmt=sql");
    assert_eq!(d.status, 200);
    assert!(d.body.ends_with(b"COMMIT;\n"));

    // Stall: a client that reads nothing at all.
    let node = Node::start(&["-dump-stall-timeout", "1s"]);
    fill_big(&node);
    let slow = start_slow_download(&node, "/db/backup?fmt=sql", 8192);
    assert!(
        wait_until(Duration::from_secs(20), || node
            .log()
            .contains("SQL dump stopped")),
        "the stalled dump was not stopped:\n{}",
        node.log()
    );
    let rest = String::from_utf8_lossy(&read_rest(slow)).into_owned();
    assert!(
        rest.contains("-- raftlite: dump aborted: the client read nothing for 1s"),
        "no reason at the end: {}",
        &rest[rest.len().saturating_sub(500)..]
    );
    assert!(!rest.contains("COMMIT;"));
    let d = download(&node, "/db/backup?fmt=sql");
    assert_eq!(d.status, 200);
    assert!(d.body.ends_with(b"COMMIT;\n"));
}
