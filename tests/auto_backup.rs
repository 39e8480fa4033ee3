//! `-auto-backup` with rqlite's configuration file, `file` storage, on real nodes: timestamped
//! uploads (one file per change), overwrite mode with gzip, no upload when nothing changed
//! (also across a restart), only the leader uploads, and configurations a node must refuse.
//! `-auto-restore` from the same storage: an empty node (and an empty cluster) starts from the
//! backup, a node with data keeps it, a corrupt or missing backup is refused as rqlite's
//! `continue_on_failure` says. (S3 storage: tests/auto_backup_s3.rs.)

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{run_binary, sqlite3, wait_until, Cluster, Node};

/// Writes a configuration that backs up into `dir` every 200 ms.
fn config(at: &Path, dir: &Path, extra: &str) -> PathBuf {
    let path = at.join("auto-backup.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"version":1,"type":"file","interval":"200ms",{extra}
                "sub":{{"dir":"{}","name":"backup.sqlite"}}}}"#,
            dir.display()
        ),
    )
    .unwrap();
    path
}

fn uploader(node: &Node) -> serde_json::Value {
    node.get("/debug/vars").json()["uploader"].clone()
}

fn count(node: &Node, key: &str) -> u64 {
    uploader(node)[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key}: {}", uploader(node)))
}

/// Backup files in `dir`, oldest name first.
fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with("backup.sqlite"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn rows(db: &Path) -> String {
    sqlite3(db, "SELECT group_concat(x) FROM t")
        .trim()
        .to_string()
}

#[test]
fn timestamped_uploads_add_a_file_per_change_and_none_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let cfg = config(tmp.path(), &dir, r#""timestamp":true,"no_compress":true,"#);
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)"]"#);
    assert!(
        wait_until(Duration::from_secs(20), || backups(&dir).len() == 1),
        "{:?}\n{}",
        backups(&dir),
        node.log()
    );
    // Timestamps have a one-second resolution: the next upload must get another name.
    std::thread::sleep(Duration::from_millis(1100));
    node.execute(r#"["INSERT INTO t VALUES(2)"]"#);
    assert!(
        wait_until(Duration::from_secs(20), || backups(&dir).len() == 2),
        "{:?}",
        backups(&dir)
    );
    // The counter moves last (after the file and the metadata are in place).
    assert!(wait_until(Duration::from_secs(20), || count(
        &node,
        "num_uploads_ok"
    ) == 2));
    let files = backups(&dir);
    assert_eq!(rows(&files[0]), "1");
    assert_eq!(rows(&files[1]), "1,2");
    let name = files[1].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.len() == "YYYYMMDDHHMMSS_backup.sqlite".len()
            && name[..14].bytes().all(|b| b.is_ascii_digit())
            && name[14..] == *"_backup.sqlite",
        "{name}"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("METADATA.json")).unwrap()).unwrap();
    assert_eq!(meta["name"], files[1].display().to_string(), "{meta}");
    // Nothing changes: intervals pass, nothing is uploaded.
    let skipped = count(&node, "num_uploads_skipped");
    assert!(wait_until(Duration::from_secs(10), || count(
        &node,
        "num_uploads_skipped"
    ) >= skipped + 3));
    assert_eq!(count(&node, "num_uploads_ok"), 2);
    assert_eq!(backups(&dir).len(), 2);
    assert!(count(&node, "total_upload_bytes") >= 2 * 8192);
}

#[test]
fn overwrite_mode_gzips_one_file_and_a_restart_does_not_upload_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let cfg = config(tmp.path(), &dir, "");
    let data = tmp.path().join("data");
    let args = ["-auto-backup", cfg.to_str().unwrap()];
    let mut node = Node::start_in(&data, &args);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)", "INSERT INTO t VALUES(2)"]"#);
    let file = dir.join("backup.sqlite");
    assert!(
        wait_until(Duration::from_secs(20), || count(&node, "num_uploads_ok")
            == 1),
        "{}\n{}",
        uploader(&node),
        node.log()
    );
    // The uploader's copy is not kept for -backup-keep: nobody asked for it.
    assert_eq!(
        node.get("/status").json()["store"]["backup_copies"]["kept_bytes"],
        0
    );
    let gz = std::fs::read(&file).unwrap();
    assert_eq!(gz[..2], [0x1f, 0x8b], "gzip");
    assert_eq!(count(&node, "last_upload_bytes"), gz.len() as u64);
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    let restored = tmp.path().join("restored.sqlite");
    std::fs::write(&restored, &plain).unwrap();
    assert_eq!(rows(&restored), "1,2");
    assert_eq!(sqlite3(&restored, "PRAGMA integrity_check").trim(), "ok");
    // A write replaces the one file.
    node.execute(r#"["INSERT INTO t VALUES(3)"]"#);
    assert!(wait_until(Duration::from_secs(20), || count(
        &node,
        "num_uploads_ok"
    ) == 2));
    assert_eq!(backups(&dir), std::slice::from_ref(&file));
    // Restarted, the node finds its content already uploaded (METADATA.json's id), even
    // though its applied index moved (a new term's first entry).
    node.stop();
    let node = Node::start_in(&data, &args);
    assert!(
        wait_until(Duration::from_secs(20), || count(
            &node,
            "num_uploads_skipped_id"
        ) == 1),
        "{}\n{}",
        uploader(&node),
        node.log()
    );
    assert_eq!(count(&node, "num_uploads_ok"), 0);
}

#[test]
fn only_the_leader_uploads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let cfg = config(tmp.path(), &dir, r#""no_compress":true,"#);
    let cluster = Cluster::start(3, &["-auto-backup", cfg.to_str().unwrap()]);
    let leader = cluster.leader();
    cluster.nodes[leader].execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(7)"]"#);
    assert!(wait_until(Duration::from_secs(20), || count(
        &cluster.nodes[leader],
        "num_uploads_ok"
    ) == 1));
    assert_eq!(rows(&dir.join("backup.sqlite")), "7");
    std::thread::sleep(Duration::from_millis(600));
    for f in cluster.followers() {
        let u = uploader(&cluster.nodes[f]);
        assert_eq!(u["num_uploads_ok"], 0, "{u}");
        assert_eq!(u["num_uploads_fail"], 0, "{u}");
    }
}

/// Runs `raftlited -auto-backup CFG DATA` on free ports until it exits (bounded): its exit
/// code and output.
fn start_with(cfg: &Path, data: &Path) -> (Option<i32>, String) {
    run_binary(
        &[
            "-auto-backup",
            cfg.to_str().unwrap(),
            "-http-addr",
            "127.0.0.1:0",
            "-raft-addr",
            "127.0.0.1:0",
            data.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    )
}

#[test]
fn a_configuration_that_cannot_be_honoured_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"version":1,"type":"file","interval":"1s","sub":{"dir":"rel","name":"b"}}"#,
            "absolute",
        ),
        (
            r#"{"version":1,"type":"file","interval":"1s","sub":{"dir":"/tmp","name":"../b"}}"#,
            "plain file name",
        ),
        (
            r#"{"version":1,"type":"gcs","interval":"1s","sub":{}}"#,
            "not supported",
        ),
        (
            r#"{"version":1,"type":"s3","interval":"1s","sub":{"region":"r","bucket":"b"}}"#,
            "type s3",
        ),
        (
            r#"{"version":1,"type":"file","#,
            "not a valid configuration",
        ),
    ];
    for (i, (text, says)) in cases.iter().enumerate() {
        let cfg = tmp.path().join(format!("c{i}.json"));
        std::fs::write(&cfg, text).unwrap();
        let (code, out) = start_with(&cfg, &tmp.path().join(format!("d{i}")));
        assert_eq!(code, Some(1), "{text}: {out}");
        assert!(
            out.contains("-auto-backup") && out.contains(says),
            "{text}: {out}"
        );
    }
    // A directory that cannot be created: the node does not start either.
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let cfg = config(tmp.path(), &blocker.join("sub"), "");
    let (code, out) = start_with(&cfg, &tmp.path().join("dx"));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("backup directory"), "{out}");
}

/// An upload that cannot be written (the directory replaced by a file) is counted as failed,
/// leaves nothing half written, and the node keeps serving; once the directory is back, the
/// next tick uploads.
#[test]
fn a_failed_upload_is_counted_and_the_node_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let cfg = config(tmp.path(), &dir, r#""no_compress":true,"#);
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"in the way").unwrap();
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)"]"#);
    assert!(
        wait_until(Duration::from_secs(20), || count(&node, "num_uploads_fail")
            >= 2),
        "{}",
        uploader(&node)
    );
    assert!(node
        .execute(r#"["INSERT INTO t VALUES(2)"]"#)
        .contains("rows_affected"));
    assert_eq!(count(&node, "num_uploads_ok"), 0);
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || count(&node, "num_uploads_ok")
            == 1),
        "{}",
        uploader(&node)
    );
    assert_eq!(rows(&dir.join("backup.sqlite")), "1,2");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "the backup and METADATA.json, no temporary file"
    );
}

/// Writes an `-auto-restore` configuration reading `dir/backup.sqlite`.
fn restore_config(at: &Path, dir: &Path, extra: &str) -> PathBuf {
    let path = at.join("auto-restore.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"version":1,"type":"file",{extra}
                "sub":{{"dir":"{}","name":"backup.sqlite"}}}}"#,
            dir.display()
        ),
    )
    .unwrap();
    path
}

fn vars(node: &Node) -> serde_json::Value {
    node.get("/debug/vars").json()
}

fn restore_counts(node: &Node) -> (u64, u64, u64, u64, u64) {
    let v = vars(node);
    let n = |m: &str, k: &str| v[m][k].as_u64().unwrap_or_else(|| panic!("{m}.{k}: {v}"));
    (
        n("downloader", "num_downloads_ok"),
        n("downloader", "num_downloads_fail"),
        n("store", "num_auto_restores"),
        n("store", "num_auto_restores_skipped"),
        n("store", "num_auto_restores_failed"),
    )
}

fn query_rows(node: &Node) -> String {
    node.query("SELECT group_concat(x) FROM t")
}

/// Files a restore left in a data directory (there must be none once it is done).
fn restore_leftovers(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    name.starts_with("auto-restore") || name.starts_with("load-")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A gzipped backup of `t` with the rows 1, 2, 3 in `dir`, made by a node's uploader.
fn make_backup(tmp: &Path, dir: &Path) {
    let cfg = config(tmp, dir, "");
    let node = Node::start(&["-auto-backup", cfg.to_str().unwrap()]);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)", "INSERT INTO t VALUES(2)", "INSERT INTO t VALUES(3)"]"#);
    assert!(
        wait_until(Duration::from_secs(20), || count(&node, "num_uploads_ok")
            == 1),
        "{}",
        node.log()
    );
}

#[test]
fn an_empty_node_starts_from_the_backup_and_a_node_with_data_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    make_backup(tmp.path(), &dir);
    let cfg = restore_config(tmp.path(), &dir, r#""timeout":"10s","#);
    let data = tmp.path().join("restored");
    let args = ["-auto-restore", cfg.to_str().unwrap()];
    let mut node = Node::start_in(&data, &args);
    assert!(
        wait_until(Duration::from_secs(20), || restore_counts(&node).2 == 1),
        "{}\n{}",
        vars(&node),
        node.log()
    );
    assert!(query_rows(&node).contains("1,2,3"), "{}", query_rows(&node));
    assert_eq!(restore_counts(&node), (1, 0, 1, 0, 0));
    assert!(
        vars(&node)["downloader"]["download_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        restore_leftovers(&data).is_empty(),
        "{:?}",
        restore_leftovers(&data)
    );
    // Started again with data of its own (and a row the backup does not have), the node
    // downloads nothing and keeps what it holds.
    node.execute(r#"["INSERT INTO t VALUES(4)"]"#);
    node.stop();
    let node = Node::start_in(&data, &args);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        query_rows(&node).contains("1,2,3,4"),
        "{}",
        query_rows(&node)
    );
    assert_eq!(restore_counts(&node), (0, 0, 0, 0, 0));
    assert!(node.log().contains("data already exists"), "{}", node.log());
}

/// rqlite refuses `-auto-restore` with `-join` (without `-bootstrap-expect`): the node that
/// forms the cluster restores, and the nodes that join get the data through Raft.
#[test]
fn the_node_that_forms_a_cluster_restores_and_the_nodes_that_join_get_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    make_backup(tmp.path(), &dir);
    let cfg = restore_config(tmp.path(), &dir, "");
    let first = Node::start(
        &[
            common::FAST_RAFT,
            &["-node-id", "node1", "-auto-restore", cfg.to_str().unwrap()],
        ]
        .concat(),
    );
    let join = first.raft_addr.clone();
    let mut nodes = vec![first];
    for id in ["node2", "node3"] {
        nodes.push(Node::start(
            &[common::FAST_RAFT, &["-node-id", id, "-join", &join]].concat(),
        ));
    }
    let cluster = Cluster { nodes };
    cluster.wait_for_members(3);
    assert!(
        wait_until(Duration::from_secs(30), || (0..3)
            .all(|i| query_rows(&cluster.nodes[i]).contains("1,2,3"))),
        "{}",
        cluster.logs()
    );
    assert_eq!(restore_counts(&cluster.nodes[0]), (1, 0, 1, 0, 0));
}

#[test]
fn a_corrupt_backup_is_not_installed_and_the_node_serves_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    make_backup(tmp.path(), &dir);
    // The backup's gzip stream cut in half: it downloads, but does not stage.
    let file = dir.join("backup.sqlite");
    let gz = std::fs::read(&file).unwrap();
    std::fs::write(&file, &gz[..gz.len() / 2]).unwrap();
    let cfg = restore_config(tmp.path(), &dir, "");
    let data = tmp.path().join("restored");
    let node = Node::start_in(&data, &["-auto-restore", cfg.to_str().unwrap()]);
    assert!(
        wait_until(Duration::from_secs(20), || restore_counts(&node).4 == 1),
        "{}\n{}",
        vars(&node),
        node.log()
    );
    assert_eq!(restore_counts(&node), (1, 0, 0, 0, 1));
    assert!(node.query("SELECT * FROM t").contains("no such table"));
    let created = node.execute(r#"["CREATE TABLE u(y)", "INSERT INTO u VALUES(1)"]"#);
    assert!(created.contains("rows_affected\":1"), "{created}");
    assert!(
        restore_leftovers(&data).is_empty(),
        "{:?}",
        restore_leftovers(&data)
    );
    // Not a database at all (a text file, gzipped or not): refused the same way.
    std::fs::write(&file, b"CREATE TABLE x(y);").unwrap();
    let data = tmp.path().join("restored-text");
    let node = Node::start_in(&data, &["-auto-restore", cfg.to_str().unwrap()]);
    assert!(
        wait_until(Duration::from_secs(20), || restore_counts(&node).4 == 1),
        "{}",
        vars(&node)
    );
    assert!(node.query("SELECT * FROM x").contains("no such table"));
}

#[test]
fn a_missing_backup_stops_the_start_unless_continue_on_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nothing-here");
    let cfg = restore_config(tmp.path(), &dir, r#""timeout":"2s","#);
    let (code, out) = run_binary(
        &[
            "-auto-restore",
            cfg.to_str().unwrap(),
            "-http-addr",
            "127.0.0.1:0",
            "-raft-addr",
            "127.0.0.1:0",
            tmp.path().join("d1").to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("auto-restore") && out.contains("backup.sqlite"),
        "{out}"
    );
    let cfg = restore_config(tmp.path(), &dir, r#""continue_on_failure":true,"#);
    let node = Node::start_in(
        &tmp.path().join("d2"),
        &["-auto-restore", cfg.to_str().unwrap()],
    );
    assert_eq!(restore_counts(&node), (0, 1, 0, 0, 0));
    let created = node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)"]"#);
    assert!(created.contains("rows_affected\":1"), "{created}");
    assert!(node.log().contains("continuing with node startup anyway"));
    // A configuration that cannot be read stops the start whatever it says.
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"{"type":"gcs","sub":{}}"#).unwrap();
    let (code, out) = run_binary(
        &[
            "-auto-restore",
            bad.to_str().unwrap(),
            "-http-addr",
            "127.0.0.1:0",
            "-raft-addr",
            "127.0.0.1:0",
            tmp.path().join("d3").to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("-auto-restore") && out.contains("gcs"),
        "{out}"
    );
}
