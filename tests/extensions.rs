//! `-extensions-path` on real processes: an extension built here with the system compiler
//! (a `twice(x)` function) is loaded from a folder, a zip and a tar.gz; its function answers
//! reads and is applied alike by every member of a cluster; `/status` names it; a node with
//! another set is refused when it joins; a file that is no extension stops the start with
//! SQLite's reason; SQL's `load_extension()` stays refused.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{run_binary, Cluster, Node};

const TWICE_C: &str = r#"
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1
static void twice(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    sqlite3_result_int64(ctx, 2 * sqlite3_value_int64(argv[0]));
}
int sqlite3_extension_init(sqlite3 *db, char **err, const sqlite3_api_routines *api) {
    (void)err;
    SQLITE_EXTENSION_INIT2(api);
    return sqlite3_create_function(db, "twice", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, 0,
                                   twice, 0, 0);
}
"#;

/// Builds `libtwice.so` in `dir` with `cc`; None (a skip, or a failure under CI) when the
/// compiler or SQLite's extension header is missing.
fn build_extension(dir: &Path) -> Option<PathBuf> {
    if !Path::new("/usr/include/sqlite3ext.h").exists() {
        common::prerequisite_missing("sqlite3ext.h (Debian's libsqlite3-dev)");
        return None;
    }
    let src = dir.join("twice.c");
    std::fs::write(&src, TWICE_C).unwrap();
    let out = dir.join("libtwice.so");
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .status();
    match status {
        Ok(s) if s.success() => Some(out),
        other => {
            common::prerequisite_missing(&format!("cc could not build the extension: {other:?}"));
            None
        }
    }
}

fn names(node: &Node) -> serde_json::Value {
    node.get("/status").json()["extensions"]["names"].clone()
}

#[test]
fn an_extension_from_a_folder_serves_reads_and_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("ext");
    std::fs::create_dir_all(&folder).unwrap();
    let Some(_) = build_extension(&folder) else {
        return;
    };
    std::fs::remove_file(folder.join("twice.c")).unwrap();
    let node = Node::start(&["-extensions-path", folder.to_str().unwrap()]);
    assert_eq!(names(&node), serde_json::json!(["libtwice.so"]));
    let q = node.query("SELECT twice(21) AS v");
    assert!(q.contains(r#""values":[[42]]"#), "{q}");
    node.execute(r#"["CREATE TABLE t(v)", "INSERT INTO t VALUES(twice(5))"]"#);
    let q = node.query("SELECT v FROM t");
    assert!(q.contains(r#""values":[[10]]"#), "{q}");
    // The SQL function stays off: only the operator's flag loads code.
    let lib = node.data_dir.join("extensions/libtwice.so");
    let q = node.query(&format!("SELECT load_extension('{}')", lib.display()));
    assert!(q.contains("error"), "{q}");
    // Without the flag, nothing is loaded (and the copies are gone).
    let data = node.data_dir.clone();
    drop(node);
    let node = Node::start_in(&data, &[]);
    assert_eq!(names(&node), serde_json::json!([]));
    assert!(node.query("SELECT twice(1)").contains("no such function"));
}

#[test]
fn archives_load_on_every_member_and_a_node_with_another_set_cannot_join() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(lib) = build_extension(tmp.path()) else {
        return;
    };
    let bytes = std::fs::read(&lib).unwrap();
    // A tar.gz, as `tar czf x.tar.gz libtwice.so` makes it.
    let tgz = tmp.path().join("ext.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&tgz).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, "libtwice.so", &bytes[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    // The same file in a zip loads alike (its digest is the same set's).
    let zip_path = tmp.path().join("ext.zip");
    {
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        w.start_file("libtwice.so", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, &bytes).unwrap();
        w.finish().unwrap();
    }
    let single = Node::start(&["-extensions-path", zip_path.to_str().unwrap()]);
    assert_eq!(names(&single), serde_json::json!(["libtwice.so"]));
    let zip_digest = single.get("/status").json()["extensions"]["digest"].clone();
    drop(single);

    let cluster = Cluster::start(3, &["-extensions-path", tgz.to_str().unwrap()]);
    let l = cluster.leader();
    let digest = cluster.nodes[l].get("/status").json()["extensions"]["digest"].clone();
    assert_eq!(digest, zip_digest);
    cluster.nodes[l].execute(r#"["CREATE TABLE t(v)", "INSERT INTO t VALUES(twice(7))"]"#);
    for node in &cluster.nodes {
        assert!(
            common::wait_until(Duration::from_secs(10), || node
                .query_at("SELECT v FROM t", "none")
                .contains(r#""values":[[14]]"#)),
            "{}",
            node.query_at("SELECT v FROM t", "none")
        );
    }

    // A node without the extension would apply `twice()` differently: refused.
    let other = tempfile::tempdir().unwrap();
    let (code, out) = run_binary(
        &[
            "-node-id",
            "stranger",
            "-http-addr",
            "127.0.0.1:0",
            "-raft-addr",
            "127.0.0.1:0",
            "-join",
            &cluster.nodes[l].raft_addr,
            "-join-attempts",
            "1",
            other.path().join("data").to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("other SQLite extensions"), "{out}");
    let nodes = cluster.nodes[l].get("/nodes").json();
    assert_eq!(nodes.as_object().unwrap().len(), 3, "{nodes}");
}

#[test]
fn a_file_that_is_no_extension_stops_the_start_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let bogus = tmp.path().join("bogus.so");
    std::fs::write(&bogus, b"not a shared object").unwrap();
    let start_with = |extension: &Path, data: &str| {
        run_binary(
            &[
                "-http-addr",
                "127.0.0.1:0",
                "-raft-addr",
                "127.0.0.1:0",
                "-extensions-path",
                extension.to_str().unwrap(),
                tmp.path().join(data).to_str().unwrap(),
            ],
            Duration::from_secs(30),
        )
    };
    let (code, out) = start_with(&bogus, "data");
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("bogus.so"), "{out}");
    let (code, out) = start_with(&tmp.path().join("missing"), "data2");
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("does not exist"), "{out}");
}

/// Archived entries that call an extension's function replay only with the extension:
/// `raftlite restore --extensions-path` loads it as the nodes did.
#[test]
fn a_point_in_time_restore_loads_the_clusters_extensions() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(lib) = build_extension(tmp.path()) else {
        return;
    };
    let backups = tmp.path().join("backups");
    let cfg = tmp.path().join("auto-backup.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"version":1,"type":"file","interval":"1h",
                "archive":{{"max_delay":"100ms","base_interval":"1h"}},
                "sub":{{"dir":"{}","name":"backup.sqlite"}}}}"#,
            backups.display()
        ),
    )
    .unwrap();
    let node = Node::start(&[
        "-extensions-path",
        lib.to_str().unwrap(),
        "-auto-backup",
        cfg.to_str().unwrap(),
    ]);
    node.execute(r#"["CREATE TABLE t(v)"]"#);
    let shipped = |node: &Node| {
        node.get("/debug/vars").json()["archiver"]["shipped_index"]
            .as_u64()
            .unwrap_or(0)
    };
    let first = node.get("/status?digest").json()["store"]["db_digest"]["applied_index"]
        .as_u64()
        .unwrap();
    assert!(common::wait_until(Duration::from_secs(20), || shipped(
        &node
    ) >= first));
    node.execute(r#"["INSERT INTO t VALUES(twice(8))"]"#);
    let d = node.get("/status?digest").json()["store"]["db_digest"].clone();
    let index = d["applied_index"].as_u64().unwrap();
    assert!(common::wait_until(Duration::from_secs(20), || shipped(
        &node
    ) >= index));
    drop(node);
    let restore = |extra: &[&str], out: &Path| {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_raftlite"))
            .args(["restore", "--from", cfg.to_str().unwrap(), "--to-index"])
            .arg(index.to_string())
            .args(extra)
            .arg(out)
            .output()
            .unwrap();
        (
            run.status.code(),
            String::from_utf8_lossy(&run.stdout).into_owned()
                + &String::from_utf8_lossy(&run.stderr),
        )
    };
    let without = tmp.path().join("without.db");
    let (code, out) = restore(&[], &without);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("--extensions-path"), "{out}");
    assert!(!without.exists());
    let with = tmp.path().join("with.db");
    let (code, out) = restore(&["--extensions-path", lib.to_str().unwrap()], &with);
    assert_eq!(code, Some(0), "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["digest"], d["digest"], "{report}");
    assert!(
        !tmp.path().join("with.db.ext").exists(),
        "the work folder goes"
    );
}
