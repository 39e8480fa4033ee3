//! Full disks, end to end: a real `raftlited` whose data directory sits on a small file system
//! (`common::small_disk`), filled to the last byte by a filler file during ordinary writes, a
//! snapshot, a backup copy and the loads, on one node, and on one follower of three.
//!
//! Every scenario checks the same promises: the request that met the full disk gets a clear
//! answer (status and message), every write acknowledged before is still there, the node keeps
//! serving reads and keeps running, and once the filler is deleted the node takes writes again
//! without a restart (and after one). `docs/faults.md`, "Full disks", has the table.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::small_disk::SmallDisk;
use common::{wait_until, Answer, Node};

/// A node whose data directory is on a small file system of its own. Fields drop in order:
/// the node stops before its disk is unmounted.
struct DiskNode {
    node: Node,
    disk: SmallDisk,
    data_dir: PathBuf,
    scratch: tempfile::TempDir,
}

/// Mounts `mib` MiB and starts a node in it with `args`; `None` (after a printed skip) where
/// mounting is impossible outside CI.
fn node_on_small_disk(mib: u64, args: &[&str]) -> Option<DiskNode> {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mount_point = scratch.path().join("disk");
    std::fs::create_dir(&mount_point).expect("mkdir");
    let disk = match SmallDisk::mount(&mount_point, scratch.path(), mib) {
        Ok(disk) => disk,
        Err(why) => {
            common::prerequisite_missing(&why);
            return None;
        }
    };
    let data_dir = mount_point.join("data");
    let node = Node::start_in(&data_dir, args);
    Some(DiskNode {
        node,
        disk,
        data_dir,
        scratch,
    })
}

/// A file that takes every free byte of a file system, until removed.
struct Filler {
    path: PathBuf,
}

impl Filler {
    /// Writes `dir/filler` until the file system refuses another byte (bounded: at most
    /// `max_mib` MiB, so a file system that never fills fails the test instead of the machine).
    fn fill(dir: &Path, max_mib: u64) -> Filler {
        let path = dir.join("filler");
        let mut f = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0x5au8; 1 << 20];
        let mut written = 0u64;
        let mut full = false;
        // Big pieces first, then single pages, so nothing is left over.
        'sizes: for piece in [1usize << 20, 4096, 512] {
            while written < max_mib << 20 {
                match f.write_all(&chunk[..piece]) {
                    Ok(()) => written += piece as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                        full = true;
                        continue 'sizes;
                    }
                    Err(e) => panic!("fill {}: {e}", path.display()),
                }
            }
            break;
        }
        assert!(full, "the small disk did not fill within {max_mib} MiB");
        // (tmpfs and ext4 both report ENOSPC at write time; sync_all makes sure.)
        let _ = f.sync_all();
        Filler { path }
    }

    fn remove(self) {
        std::fs::remove_file(&self.path).expect("remove the filler");
    }
}

/// A read on this node only (`level=none`): it must work whatever state Raft is in.
fn local_query(node: &Node, sql: &str) -> Answer {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", sql)
        .append_pair("level", "none")
        .finish();
    node.get(&format!("/db/query?{q}"))
}

/// The number of rows in `t`, read locally.
fn row_count(node: &Node) -> i64 {
    let a = local_query(node, "SELECT count(*) FROM t");
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["results"][0]["values"][0][0]
        .as_i64()
        .unwrap_or_else(|| panic!("no count: {}", a.body))
}

/// Inserts row `id` with a 1 KiB payload.
fn insert(node: &Node, id: u64) -> Answer {
    node.post(
        "/db/execute",
        &format!(r#"[["INSERT INTO t(id, v) VALUES(?, randomblob(1024))", {id}]]"#),
    )
}

fn acknowledged(a: &Answer) -> bool {
    a.status == 200 && !a.body.contains("\"error\"")
}

/// Creates `t` and inserts `rows` acknowledged rows, ids 1..=rows.
fn seed(node: &Node, rows: u64) {
    node.execute(r#"["CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)"]"#);
    for id in 1..=rows {
        let a = insert(node, id);
        assert!(acknowledged(&a), "seed row {id}: {} {}", a.status, a.body);
    }
}

/// Asserts that every acknowledged row (ids 1..=rows, and any in `more`) is there.
fn assert_rows_kept(node: &Node, rows: u64, more: &[u64]) {
    let a = local_query(node, &format!("SELECT count(*) FROM t WHERE id <= {rows}"));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json()["results"][0]["values"][0][0],
        rows,
        "acknowledged rows lost: {}",
        a.body
    );
    for id in more {
        let a = local_query(node, &format!("SELECT count(*) FROM t WHERE id = {id}"));
        assert_eq!(
            a.json()["results"][0]["values"][0][0],
            1,
            "acknowledged row {id} lost: {}",
            a.body
        );
    }
}

/// A full disk's answer: 507 and a message that names the disk.
fn assert_disk_full_answer(a: &Answer, what: &str) {
    assert_eq!(a.status, 507, "{what} on a full disk: {}", a.body);
    let body = a.body.to_lowercase();
    assert!(
        body.contains("disk") || body.contains("space") || body.contains("storage"),
        "{what}: the answer does not say the disk is full: {}",
        a.body
    );
}

/// After the filler is gone: writes are taken again (bounded wait), without a restart.
fn assert_writes_resume(node: &Node, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        let a = insert(node, id);
        if acknowledged(&a) {
            return;
        }
        last = Some(a);
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "writes did not resume once space was freed: {last:?}\n{}",
        node.log()
    );
}

/// Restarts the node on the same data directory and checks the rows and a new write.
fn restart_and_check(dn: &mut DiskNode, rows: u64, more: &[u64], next_id: u64) {
    let status = dn.node.stop();
    assert!(status.success(), "stop: {status:?}\n{}", dn.node.log());
    dn.node = Node::start_in(&dn.data_dir, &[]);
    assert_rows_kept(&dn.node, rows, more);
    assert!(acknowledged(&insert(&dn.node, next_id)));
}

#[test]
fn writes_on_a_full_disk_fail_clearly_and_resume_once_space_is_freed() {
    let Some(mut dn) = node_on_small_disk(32, &["-disk-reserve", "1048576"]) else {
        return;
    };
    seed(&dn.node, 200);
    let filler = Filler::fill(&dn.data_dir, 64);
    // Writes past the last byte: each is refused or fails, none is acknowledged wrongly.
    let mut answers = Vec::new();
    for id in 1000..1010 {
        let a = insert(&dn.node, id);
        assert!(!acknowledged(&a), "a write on a full disk succeeded: {}", a.body);
        answers.push(a);
    }
    for a in &answers {
        assert_disk_full_answer(a, "a write");
    }
    assert!(dn.node.is_running(), "the node stopped:\n{}", dn.node.log());
    assert_rows_kept(&dn.node, 200, &[]);
    assert_eq!(row_count(&dn.node), 200);
    assert_eq!(dn.node.get("/status").status, 200);
    filler.remove();
    assert_writes_resume(&dn.node, 2000);
    assert_rows_kept(&dn.node, 200, &[2000]);
    restart_and_check(&mut dn, 200, &[2000], 2001);
}
