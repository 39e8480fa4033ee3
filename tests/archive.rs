//! Continuous archiving and point-in-time recovery on real processes (file storage; S3 in
//! tests/auto_backup_s3.rs): a node archives as it writes; the node is then lost, and
//! `raftlite restore` rebuilds the database at chosen log indexes and times, each compared
//! with the digest the node reported at that point; the result boots a new node. Also: a
//! SQL load (its script archived and replayed) and a database file's load (a new history
//! whose first base is the file) in the middle, retention of bases and chunks, a
//! leader change in a cluster (the new leader continues where the storage ends), and a
//! damaged or missing chunk (an error, no file written).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{wait_until, Cluster, Node};

const SHELL: &str = env!("CARGO_BIN_EXE_raftlite");

/// A configuration that archives into `dir` (entries within 100 ms).
fn config(at: &Path, dir: &Path, archive: &str) -> PathBuf {
    let path = at.join("auto-backup.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"version":1,"type":"file","interval":"1h",
                "archive":{archive},
                "sub":{{"dir":"{}","name":"backup.sqlite"}}}}"#,
            dir.display()
        ),
    )
    .unwrap();
    path
}

fn digest(node: &Node) -> (u64, String) {
    let s = node.get("/status?digest").json();
    let d = &s["store"]["db_digest"];
    (
        d["applied_index"].as_u64().unwrap(),
        d["digest"].as_str().unwrap().to_string(),
    )
}

fn archiver(node: &Node) -> serde_json::Value {
    node.get("/debug/vars").json()["archiver"].clone()
}

fn wait_shipped(node: &Node, index: u64) {
    assert!(
        wait_until(Duration::from_secs(30), || archiver(node)["shipped_index"]
            .as_u64()
            .unwrap_or(0)
            >= index),
        "{}\n{}",
        archiver(node),
        node.log()
    );
}

/// Runs `raftlite restore ARGS`: exit code, stdout, stderr.
fn restore(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(SHELL)
        .arg("restore")
        .args(args)
        .output()
        .expect("run raftlite restore");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn restored_to(cfg: &Path, point: &[&str], out: &Path) -> serde_json::Value {
    let args: Vec<&str> = [
        &["--from", cfg.to_str().unwrap()],
        point,
        &[out.to_str().unwrap()],
    ]
    .concat();
    let (code, stdout, stderr) = restore(&args);
    assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The one history folder of an archive (a single cluster, no binary load).
fn history(dir: &Path) -> PathBuf {
    let archive = dir.join("backup.sqlite.archive");
    let folders = objects(&archive, "");
    assert_eq!(folders.len(), 1, "{folders:?}");
    archive.join(&folders[0])
}

/// Files in `dir` whose names start with `prefix`.
fn objects(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix) || prefix.is_empty())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_lost_node_is_rebuilt_at_any_index_and_time_with_the_same_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let cfg = config(tmp.path(), &dir, r#"{"max_delay":"100ms"}"#);
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    // The clock and the random sequence are the leader's: the replay must reproduce them.
    node.execute(r#"["CREATE TABLE t(n, r, at)", "INSERT INTO t VALUES(0, random(), strftime('%f', 'now'))"]"#);
    let mut points = vec![digest(&node)];
    // The first base is taken at the first tick after the first write: points before it
    // cannot be restored.
    wait_shipped(&node, points[0].0);
    let mut times = Vec::new();
    for i in 1..=6 {
        std::thread::sleep(Duration::from_millis(30));
        times.push((unix_ms(), digest(&node)));
        std::thread::sleep(Duration::from_millis(30));
        node.execute(&format!(
            r#"["INSERT INTO t VALUES({i}, random(), strftime('%f', 'now'))", "UPDATE t SET r = r + 1 WHERE n = {}"]"#,
            i - 1
        ));
        points.push(digest(&node));
    }
    let last = points.last().unwrap().0;
    wait_shipped(&node, last);
    assert!(archiver(&node)["bases_taken"].as_u64().unwrap() >= 1);
    drop(node);

    assert!(
        !objects(&history(&dir).join("log"), "").is_empty(),
        "chunks"
    );
    for (index, want) in &points {
        let out = tmp.path().join(format!("at-{index}.db"));
        let report = restored_to(&cfg, &["--to-index", &index.to_string()], &out);
        assert_eq!(report["index"], *index, "{report}");
        assert_eq!(report["digest"], *want, "index {index}: {report}");
        assert_eq!(common::sqlite3(&out, "PRAGMA integrity_check").trim(), "ok");
        if index == &last {
            // The last point is past the base: reached by replaying archived entries.
            assert!(report["entries_applied"].as_u64().unwrap() >= 6, "{report}");
        }
    }
    // By time: the database as it was when the time was read.
    for (at, (index, want)) in &times {
        let out = tmp.path().join(format!("time-{at}.db"));
        let report = restored_to(&cfg, &["--to-time", &at.to_string()], &out);
        assert_eq!(report["index"], *index, "time {at}: {report}");
        assert_eq!(report["digest"], *want, "time {at}: {report}");
    }
    // Past the archive's end: a clear error, no file.
    let out = tmp.path().join("beyond.db");
    let (code, _, stderr) = restore(&[
        "--from",
        cfg.to_str().unwrap(),
        "--to-index",
        &(last + 100).to_string(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("has no entry"), "{stderr}");
    assert!(!out.exists());
    // An existing output is never overwritten.
    let out = tmp.path().join(format!("at-{last}.db"));
    let (code, _, stderr) = restore(&[
        "--from",
        cfg.to_str().unwrap(),
        "--to-index",
        "1",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("exists"), "{stderr}");

    // The restored file boots a new node with the same content.
    let booted = Node::start(&[]);
    let bytes = std::fs::read(tmp.path().join(format!("at-{last}.db"))).unwrap();
    let r = reqwest::blocking::Client::new()
        .post(booted.url("/boot"))
        .body(bytes)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());
    assert_eq!(digest(&booted).1, points.last().unwrap().1);
}

/// Posts a load body; returns the index it was applied at (this test's node has no other
/// writer).
fn load(node: &Node, content_type: &str, body: Vec<u8>) -> u64 {
    let r = reqwest::blocking::Client::new()
        .post(node.url("/db/load"))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(status, 200, "{}", r.text().unwrap());
    digest(node).0
}

/// Waits until the node holds no load content kept for the archive (all shipped).
fn wait_no_kept_loads(node: &Node) {
    let kept = || common::files_named(&node.data_dir, "archive-load-");
    assert!(
        wait_until(Duration::from_secs(10), || kept().is_empty()),
        "the kept content is removed once shipped: {:?}",
        kept()
    );
}

/// Restores each `(index, digest)` into `dir/at-INDEX.db` and checks its digest.
fn restore_each<const N: usize>(cfg: &Path, dir: &Path, points: [&(u64, String); N]) {
    for (index, want) in points {
        let out = dir.join(format!("at-{index}.db"));
        let report = restored_to(cfg, &["--to-index", &index.to_string()], &out);
        assert_eq!(report["digest"], *want, "at {index}: {report}");
    }
}

/// A node archiving into `tmp/backups` (entries within 100 ms, one base an hour) that has
/// written a first row, archived: its storage folder, configuration and the node.
fn archiving_node(tmp: &Path) -> (PathBuf, PathBuf, Node) {
    let dir = tmp.join("backups");
    let cfg = config(tmp, &dir, r#"{"max_delay":"100ms","base_interval":"1h"}"#);
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(r#"["CREATE TABLE t(n)", "INSERT INTO t VALUES(1)"]"#);
    wait_shipped(&node, digest(&node).0);
    (dir, cfg, node)
}

/// A node archiving into `tmp/backups` with the `archive` object `archive`, snapshotting
/// every `snap` entries and keeping `trailing` behind, and its own `extra` flags; a table
/// `t(n, r)` made and archived: its storage folder, configuration and the node.
fn archiving_fast(
    tmp: &Path,
    archive: &str,
    snap: &str,
    trailing: &str,
    extra: &[&str],
) -> (PathBuf, PathBuf, Node) {
    let dir = tmp.join("backups");
    let cfg = config(tmp, &dir, archive);
    let mut args = vec![
        "-auto-backup",
        cfg.to_str().unwrap(),
        "-raft-snap",
        snap,
        "-raft-trailing-logs",
        trailing,
    ];
    args.extend_from_slice(extra);
    let node = Node::start(&args);
    node.execute(r#"["CREATE TABLE t(n, r)"]"#);
    wait_shipped(&node, digest(&node).0);
    (dir, cfg, node)
}

#[test]
fn a_sql_load_is_archived_with_its_script_and_every_point_around_it_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, cfg, node) = archiving_node(tmp.path());
    let before = digest(&node);
    let bases_before = archiver(&node)["bases_taken"].as_u64().unwrap();
    // The script uses the entry's clock and randomness: the replay must give them back.
    let script = "CREATE TABLE loaded(x, at, r);\n\
                  INSERT INTO loaded VALUES('from a load', datetime('now'), random());\n";
    let at = load(&node, "text/plain", script.as_bytes().to_vec());
    let at_load = digest(&node);
    assert_eq!(at_load.0, at);
    node.execute(r#"["INSERT INTO t VALUES(2)"]"#);
    let after = digest(&node);
    wait_shipped(&node, after.0);
    let stats = archiver(&node);
    assert_eq!(
        stats["bases_taken"].as_u64().unwrap(),
        bases_before,
        "the script went to storage, so no base was needed after the load: {stats}"
    );
    let loads = history(&dir).join("loads");
    assert_eq!(objects(&loads, ""), [format!("{at:020}.sql.zst")]);
    wait_no_kept_loads(&node);
    drop(node);
    restore_each(&cfg, tmp.path(), [&before, &at_load, &after]);

    // A script that is not the one the entry names (same length, other bytes) is refused.
    let object = loads.join(format!("{at:020}.sql.zst"));
    let other = script.replace("from a load", "from a fake");
    std::fs::write(&object, zstd::encode_all(other.as_bytes(), 3).unwrap()).unwrap();
    let out = tmp.path().join("forged.db");
    let (code, stdout, stderr) = restore(&[
        "--from",
        cfg.to_str().unwrap(),
        "--to-index",
        &after.0.to_string(),
        out.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{stdout}");
    assert!(stderr.contains("CRC-32C"), "{stderr}");
    assert!(!out.exists());
    // A missing one says what is missing.
    std::fs::remove_file(&object).unwrap();
    let (code, _, stderr) = restore(&[
        "--from",
        cfg.to_str().unwrap(),
        "--to-index",
        &at.to_string(),
        out.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("lacks the SQL script"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn a_database_file_load_starts_a_history_whose_first_base_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, cfg, node) = archiving_node(tmp.path());
    let file = tmp.path().join("other.db");
    // A table under the state table's name, as a file from another node's data directory
    // has: the nodes replace it, and so must a restore from the base the file becomes.
    common::sqlite3(
        &file,
        "CREATE TABLE other(x); INSERT INTO other VALUES('a file loaded');
         CREATE TABLE _raftlite_state(something_else);",
    );
    node.execute(r#"["INSERT INTO t VALUES(2)"]"#);
    // Written just before the load: the old history must still get it.
    let before = digest(&node);
    std::thread::sleep(Duration::from_millis(20));
    let between = unix_ms();
    std::thread::sleep(Duration::from_millis(20));
    let at = load(
        &node,
        "application/octet-stream",
        std::fs::read(&file).unwrap(),
    );
    let at_load = digest(&node);
    assert_eq!(at_load.0, at);
    node.execute(r#"["INSERT INTO other VALUES('after')"]"#);
    let after = digest(&node);
    wait_shipped(&node, after.0);
    let archive = dir.join("backup.sqlite.archive");
    let histories = objects(&archive, "");
    assert_eq!(histories.len(), 2, "{histories:?}");
    let first_bases: Vec<String> = histories
        .iter()
        .map(|h| objects(&archive.join(h).join("bases"), "")[0].clone())
        .collect();
    assert!(
        first_bases.contains(&format!("{at:020}.json")),
        "the new history starts with the loaded file at the load's index: {first_bases:?}"
    );
    wait_no_kept_loads(&node);
    drop(node);
    // Each point from the history that holds it, chosen without being named.
    restore_each(&cfg, tmp.path(), [&before, &at_load, &after]);
    assert_eq!(
        common::sqlite3(
            &tmp.path().join(format!("at-{}.db", after.0)),
            "SELECT x FROM other"
        ),
        "a file loaded\nafter\n"
    );
    // A time after the last write and before the load: the old history, up to the load.
    let out = tmp.path().join("between.db");
    let report = restored_to(&cfg, &["--to-time", &between.to_string()], &out);
    assert_eq!(report["digest"], before.1, "{report}");
    assert_eq!(report["index"], before.0, "{report}");
}

/// Content kept for an archiver that no longer runs (the node restarted without archiving)
/// is removed at start, or it would stay on the disk for good.
#[test]
fn kept_load_content_goes_when_a_node_starts_without_archiving() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (suffix, body) in [("content", "x"), ("json", "{}")] {
        std::fs::write(data.join(format!("archive-load-{:020}.{suffix}", 7)), body).unwrap();
    }
    let node = Node::start_in(&data, &[]);
    assert_eq!(
        common::files_named(&node.data_dir, "archive-load-"),
        Vec::<String>::new()
    );
}

#[test]
fn old_bases_and_the_log_only_they_needed_are_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let cfg = config(
        tmp.path(),
        &dir,
        r#"{"max_delay":"100ms","base_interval":"300ms","keep_bases":2}"#,
    );
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(r#"["CREATE TABLE t(n)"]"#);
    let mut first = None;
    for i in 0..12 {
        node.execute(&format!(r#"["INSERT INTO t VALUES({i})"]"#));
        first.get_or_insert_with(|| digest(&node).0);
        std::thread::sleep(Duration::from_millis(150));
    }
    let last = digest(&node);
    wait_shipped(&node, last.0);
    assert!(
        wait_until(Duration::from_secs(20), || archiver(&node)["bases_taken"]
            .as_u64()
            .unwrap()
            >= 4),
        "{}",
        archiver(&node)
    );
    let archive = history(&dir);
    let bases = objects(&archive.join("bases"), "");
    assert_eq!(
        bases.len(),
        4,
        "two bases, each a file and its metadata: {bases:?}"
    );
    let oldest: u64 = bases[0][..20].parse().unwrap();
    for chunk in objects(&archive.join("log"), "") {
        let last_of: u64 = chunk[21..41].parse().unwrap();
        assert!(
            last_of > oldest,
            "{chunk} is older than the oldest base {oldest}"
        );
    }
    assert!(archiver(&node)["objects_deleted"].as_u64().unwrap() > 0);
    // No gap: every entry from the oldest base on is in a chunk, bases taken on the way too.
    let ranges: Vec<(u64, u64)> = objects(&archive.join("log"), "")
        .iter()
        .map(|c| (c[..20].parse().unwrap(), c[21..41].parse().unwrap()))
        .collect();
    let end = ranges.iter().map(|r| r.1).max().unwrap();
    assert!(end >= last.0, "{ranges:?} {last:?}");
    for i in oldest + 1..=end {
        assert!(
            ranges.iter().any(|(f, l)| *f <= i && i <= *l),
            "entry {i} is in no chunk: {ranges:?}"
        );
    }
    drop(node);
    // Before the oldest base kept: refused with the reason.
    let out = tmp.path().join("old.db");
    let (code, _, stderr) = restore(&[
        "--from",
        cfg.to_str().unwrap(),
        "--to-index",
        &first.unwrap().to_string(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("oldest base"), "{stderr}");
    // The latest point still restores.
    let out = tmp.path().join("last.db");
    let report = restored_to(&cfg, &["--to-index", &last.0.to_string()], &out);
    assert_eq!(report["digest"], last.1, "{report}");
}

#[test]
fn a_damaged_chunk_fails_the_restore_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let cfg = config(tmp.path(), &dir, r#"{"max_delay":"100ms"}"#);
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(r#"["CREATE TABLE t(n)"]"#);
    wait_shipped(&node, digest(&node).0);
    for i in 0..5 {
        node.execute(&format!(r#"["INSERT INTO t VALUES({i})"]"#));
    }
    let last = digest(&node);
    wait_shipped(&node, last.0);
    drop(node);
    let log = history(&dir).join("log");
    let chunks = objects(&log, "");
    let victim = log.join(chunks.last().unwrap());
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    let out = tmp.path().join("damaged.db");
    let (code, _, stderr) = restore(&[
        "--from",
        cfg.to_str().unwrap(),
        "--to-index",
        &last.0.to_string(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(!out.exists());
    let leftovers = objects(tmp.path(), "damaged.db");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A chunk that is well formed but holds nothing (an attacker with write access to the
    // storage): an error at once, not a loop fetching it again.
    let empty = zstd::encode_all(&b"RLARCH1\n"[..], 1).unwrap();
    std::fs::write(&victim, &empty).unwrap();
    let started = std::time::Instant::now();
    let (code, _, stderr) = restore(&[
        "--from",
        cfg.to_str().unwrap(),
        "--to-index",
        &last.0.to_string(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("holds no entry"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // Removed altogether: a gap, named.
    std::fs::remove_file(&victim).unwrap();
    let (code, _, stderr) = restore(&[
        "--from",
        cfg.to_str().unwrap(),
        "--to-index",
        &last.0.to_string(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("has no entry"), "{stderr}");
}

#[test]
fn after_a_leader_change_the_new_leader_continues_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let cfg = config(tmp.path(), &dir, r#"{"max_delay":"100ms"}"#);
    let mut cluster = Cluster::start(3, &["-auto-backup", cfg.to_str().unwrap()]);
    let leader = cluster.leader();
    cluster.nodes[leader]
        .execute(r#"["CREATE TABLE t(n, r)", "INSERT INTO t VALUES(1, random())"]"#);
    let first = digest(&cluster.nodes[leader]);
    wait_shipped(&cluster.nodes[leader], first.0);
    cluster.nodes[leader].stop();
    let new_leader = {
        let mut found = None;
        assert!(wait_until(Duration::from_secs(30), || {
            found = (0..3).filter(|&i| i != leader).find(|&i| {
                cluster.nodes[i].get("/readyz").status == 200
                    && cluster.nodes[i].get("/status").json()["store"]["raft"]["state"] == "Leader"
            });
            found.is_some()
        }));
        found.unwrap()
    };
    cluster.nodes[new_leader].execute(r#"["INSERT INTO t VALUES(2, random())"]"#);
    let second = digest(&cluster.nodes[new_leader]);
    wait_shipped(&cluster.nodes[new_leader], second.0);
    drop(cluster);
    for (index, want) in [&first, &second] {
        let out = tmp.path().join(format!("at-{index}.db"));
        let report = restored_to(&cfg, &["--to-index", &index.to_string()], &out);
        assert_eq!(report["digest"], *want, "{report}");
        if index == &second.0 {
            // The new leader shipped the entries after the first leader's base; it took no
            // base of its own (the newest one in storage is not due).
            assert!(report["entries_applied"].as_u64().unwrap() >= 1, "{report}");
        }
    }
}

/// Two clusters that share a storage (a new one set up with the old one's configuration)
/// keep separate histories: the newest is restored by default, the older by name, each with
/// its own digests, never a mix of the two.
#[test]
fn clusters_sharing_a_storage_keep_separate_histories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let cfg = config(tmp.path(), &dir, r#"{"max_delay":"100ms"}"#);
    let first = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    first.execute(r#"["CREATE TABLE t(n)"]"#);
    for i in 0..20 {
        first.execute(&format!(r#"["INSERT INTO t VALUES({i})"]"#));
    }
    let a = digest(&first);
    wait_shipped(&first, a.0);
    drop(first);
    let second = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    second.execute(r#"["CREATE TABLE t(n)", "INSERT INTO t VALUES(100)"]"#);
    wait_shipped(&second, digest(&second).0);
    for _ in 0..30 {
        second.execute(r#"["UPDATE t SET n = n + 1"]"#);
    }
    let b = digest(&second);
    wait_shipped(&second, b.0);
    drop(second);
    let histories = objects(&dir.join("backup.sqlite.archive"), "");
    assert_eq!(histories.len(), 2, "{histories:?}");
    let out = tmp.path().join("newest.db");
    let report = restored_to(&cfg, &["--to-index", &b.0.to_string()], &out);
    assert_eq!(report["digest"], b.1, "{report}");
    let older = histories
        .iter()
        .find(|h| **h != report["history"].as_str().unwrap())
        .unwrap();
    let out = tmp.path().join("older.db");
    let report = restored_to(
        &cfg,
        &["--to-index", &a.0.to_string(), "--history", older],
        &out,
    );
    assert_eq!(report["digest"], a.1, "{report}");
}

/// A base taken after a restart (the node's in-memory clock of the last entry is gone) still
/// carries the latest stamp of the entries it holds: a time before them is refused, never
/// answered with the newest data.
#[test]
fn a_base_after_a_restart_keeps_its_entries_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let cfg = config(
        tmp.path(),
        &dir,
        r#"{"max_delay":"100ms","base_interval":"300ms"}"#,
    );
    let data = tmp.path().join("data");
    let args = ["-auto-backup", cfg.to_str().unwrap()];
    let mut node = Node::start_in(&data, &args);
    let before = unix_ms();
    std::thread::sleep(Duration::from_millis(20));
    node.execute(r#"["CREATE TABLE t(n)", "INSERT INTO t VALUES(1)"]"#);
    for i in 2..10 {
        node.execute(&format!(r#"["INSERT INTO t VALUES({i})"]"#));
    }
    wait_shipped(&node, digest(&node).0);
    node.stop();
    let node = Node::start_in(&data, &args);
    // The restart's own entries (a new term) change no row; a base follows them.
    let bases = || objects(&history(&dir).join("bases"), "").len();
    let had = bases();
    assert!(
        wait_until(Duration::from_secs(20), || bases() > had),
        "{}",
        archiver(&node)
    );
    drop(node);
    let out = tmp.path().join("too-early.db");
    let (code, stdout, stderr) = restore(&[
        "--from",
        cfg.to_str().unwrap(),
        "--to-time",
        &before.to_string(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("oldest base"), "{stderr}");
}

/// Writes that outrun the archive: snapshots every 40 entries keep 5 behind, and the archive
/// ships once a second, so the log is asked to purge entries the archive does not hold yet.
/// While archiving, the log keeps them (the purges wait for the archive): no base is taken
/// for a gap, and every point written restores to the digest the node had there.
#[test]
fn writes_faster_than_the_log_keeps_them_are_all_archived() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, cfg, node) = archiving_fast(
        tmp.path(),
        r#"{"max_delay":"1s","base_interval":"1h"}"#,
        "40",
        "5",
        &[],
    );
    let bases = archiver(&node)["bases_taken"].as_u64().unwrap();
    let purged = || {
        node.get("/status").json()["store"]["raft"]["purged_index"]
            .as_u64()
            .unwrap()
    };
    let shipped = || archiver(&node)["shipped_index"].as_u64().unwrap_or(0);

    // Write until the log has been asked to purge past what the archive held then (bounded).
    let mut points = Vec::new();
    let mut outran = false;
    for i in 0..3000 {
        node.execute(&format!(r#"["INSERT INTO t VALUES({i}, random())"]"#));
        if i % 20 == 0 {
            points.push(digest(&node));
            let held = shipped();
            if purged() > held + 40 {
                outran = true;
                if points.len() >= 8 {
                    break;
                }
            }
        }
    }
    assert!(
        outran,
        "the writes never outran the archive: {}",
        archiver(&node)
    );
    points.push(digest(&node));
    points.dedup();
    let last = points.last().unwrap().0;
    wait_shipped(&node, last);
    assert_eq!(
        archiver(&node)["bases_taken"].as_u64().unwrap(),
        bases,
        "no base for a gap: {}\n{}",
        archiver(&node),
        node.log()
    );
    drop(node);

    let points: Vec<&(u64, String)> = points.iter().collect();
    for (index, want) in points {
        let out = tmp.path().join(format!("at-{index}.db"));
        let report = restored_to(&cfg, &["--to-index", &index.to_string()], &out);
        assert_eq!(report["digest"], *want, "at {index}: {report}");
    }
}

/// The log held for an archive that cannot ship stops at `max_log_hold_bytes`: a storage
/// that is gone must not make the log grow without end. Small segments make the purges
/// visible as files.
#[test]
fn the_log_held_for_the_archive_stops_at_its_size_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _, node) = archiving_fast(
        tmp.path(),
        r#"{"max_delay":"200ms","base_interval":"1h","max_log_hold_bytes":20000}"#,
        "40",
        "5",
        &["-raft-log-segment-size", "2048"],
    );
    // The storage goes: its folder becomes a file.
    std::fs::rename(&dir, tmp.path().join("gone")).unwrap();
    std::fs::write(&dir, b"not a folder").unwrap();
    let failures = || archiver(&node)["failures"].as_u64().unwrap_or(0);
    for i in 0..400 {
        node.execute(&format!(
            r#"["INSERT INTO t VALUES({i}, randomblob(200))"]"#
        ));
    }
    assert!(
        wait_until(Duration::from_secs(10), || failures() >= 1),
        "{}",
        archiver(&node)
    );
    // 400 entries of ~300 bytes fill ~60 segments; past 20,000 bytes the log is purged.
    node.execute(r#"["INSERT INTO t VALUES(-1, randomblob(200))"]"#);
    let segments = || common::files_named(&node.data_dir.join("raft"), "").len();
    assert!(
        wait_until(Duration::from_secs(10), || segments() < 20),
        "the log still holds {} files past its hold limit: {}",
        segments(),
        archiver(&node)
    );
}

/// A storage outage loses no entry: the leader's log keeps what the archive lacks through
/// the failed ticks, snapshots and the purge after a load included. A database file loaded
/// just before the outage ends its history: that history gets its last entries once the
/// storage is back (the shipment is retried), and every point on both sides restores.
#[test]
fn an_outage_loses_nothing_and_the_history_a_load_ends_gets_its_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, cfg, node) = archiving_fast(
        tmp.path(),
        r#"{"max_delay":"6s","base_interval":"1h"}"#,
        "20",
        "2",
        &[],
    );
    let file = tmp.path().join("other.db");
    common::sqlite3(
        &file,
        "CREATE TABLE other(x); INSERT INTO other VALUES('loaded');",
    );

    // Right after a tick: writes, the load (kept: the last tick succeeded), then the outage,
    // all before the next tick (6 s: room for a busy machine).
    let mut points = Vec::new();
    for i in 0..30 {
        node.execute(&format!(r#"["INSERT INTO t VALUES({i}, random())"]"#));
        if i % 10 == 9 {
            points.push(digest(&node));
        }
    }
    let at = load(
        &node,
        "application/octet-stream",
        std::fs::read(&file).unwrap(),
    );
    points.push(digest(&node));
    std::fs::rename(&dir, tmp.path().join("away")).unwrap();
    std::fs::write(&dir, b"not a folder").unwrap();
    let shipped = archiver(&node)["shipped_index"].as_u64().unwrap_or(0);
    assert!(
        shipped < points[0].0,
        "the test needs the outage to start before the writes were shipped: {}",
        archiver(&node)
    );
    for i in 0..30 {
        node.execute(&format!(r#"["INSERT INTO other VALUES({i})"]"#));
        if i % 10 == 9 {
            points.push(digest(&node));
        }
    }
    let failures = || archiver(&node)["failures"].as_u64().unwrap_or(0);
    assert!(
        wait_until(Duration::from_secs(15), || failures() >= 1),
        "{}",
        archiver(&node)
    );
    // Snapshots and the purge after the load were asked for meanwhile.
    let purged = node.get("/status").json()["store"]["raft"]["purged_index"]
        .as_u64()
        .unwrap();
    assert!(purged >= at, "purged to {purged}, the load at {at}");

    // The storage comes back.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(tmp.path().join("away"), &dir).unwrap();
    let last = points.last().unwrap().0;
    wait_shipped(&node, last);
    wait_no_kept_loads(&node);
    drop(node);
    for (index, want) in &points {
        let out = tmp.path().join(format!("at-{index}.db"));
        let report = restored_to(&cfg, &["--to-index", &index.to_string()], &out);
        assert_eq!(
            report["digest"], *want,
            "at {index} (load at {at}): {report}"
        );
    }
}

/// Two database files loaded within one tick: the history between them is archived whole
/// (its first base is the first file, its entries up to the second load), and every point
/// before, between and after the loads restores.
#[test]
fn two_file_loads_within_one_tick_each_get_their_history() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let cfg = config(
        tmp.path(),
        &dir,
        r#"{"max_delay":"6s","base_interval":"1h"}"#,
    );
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(r#"["CREATE TABLE t(n)", "INSERT INTO t VALUES(0)"]"#);
    wait_shipped(&node, digest(&node).0);
    let files: Vec<PathBuf> = (1..=2)
        .map(|n| {
            let file = tmp.path().join(format!("file{n}.db"));
            common::sqlite3(
                &file,
                &format!("CREATE TABLE f{n}(x); INSERT INTO f{n} VALUES('file {n}');"),
            );
            file
        })
        .collect();

    // Right after a tick: a write, a load, a write, a load, a write, before the next.
    node.execute(r#"["INSERT INTO t VALUES(1)"]"#);
    let mut points = vec![digest(&node)];
    let first = load(
        &node,
        "application/octet-stream",
        std::fs::read(&files[0]).unwrap(),
    );
    points.push(digest(&node));
    node.execute(r#"["INSERT INTO f1 VALUES('between')"]"#);
    points.push(digest(&node));
    let second = load(
        &node,
        "application/octet-stream",
        std::fs::read(&files[1]).unwrap(),
    );
    points.push(digest(&node));
    node.execute(r#"["INSERT INTO f2 VALUES('after')"]"#);
    points.push(digest(&node));
    let shipped = archiver(&node)["shipped_index"].as_u64().unwrap_or(0);
    assert!(
        shipped < second,
        "the test needs both loads within one tick: {}",
        archiver(&node)
    );
    wait_shipped(&node, points.last().unwrap().0);
    wait_no_kept_loads(&node);
    drop(node);

    let archive = dir.join("backup.sqlite.archive");
    assert_eq!(objects(&archive, "").len(), 3, "three histories");
    for (index, want) in &points {
        let out = tmp.path().join(format!("at-{index}.db"));
        let report = restored_to(&cfg, &["--to-index", &index.to_string()], &out);
        assert_eq!(
            report["digest"], *want,
            "at {index} (loads at {first} and {second}): {report}"
        );
    }
    let between = tmp.path().join(format!("at-{}.db", points[2].0));
    assert_eq!(
        common::sqlite3(&between, "SELECT x FROM f1"),
        "file 1\nbetween\n"
    );
}
