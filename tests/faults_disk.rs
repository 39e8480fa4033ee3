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
    _disk: SmallDisk,
    data_dir: PathBuf,
    scratch: tempfile::TempDir,
}

/// Mounts `mib` MiB and starts a node in it with `args`; `None` (after a printed skip) where
/// mounting is impossible outside CI.
fn node_on_small_disk(mib: u64, args: &[&str]) -> Option<DiskNode> {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (disk, mount_point) = SmallDisk::mount_or_skip(scratch.path(), "disk", mib, false)?;
    let data_dir = mount_point.join("data");
    let node = Node::start_in(&data_dir, args);
    Some(DiskNode {
        node,
        _disk: disk,
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

    /// Gives `bytes` back to the file system, so the next writer fills it mid-way.
    fn leave_free(&self, bytes: u64) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .expect("open the filler");
        let len = f.metadata().expect("stat the filler").len();
        f.set_len(len.saturating_sub(bytes))
            .expect("shrink the filler");
    }

    fn remove(self) {
        std::fs::remove_file(&self.path).expect("remove the filler");
    }
}

/// Free bytes on the file system of `dir`, as `df` reports them.
fn free_bytes(dir: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .expect("run df");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df: {text}"))
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
        assert!(
            !acknowledged(&a),
            "a write on a full disk succeeded: {}",
            a.body
        );
        answers.push(a);
    }
    for a in &answers {
        assert_disk_full_answer(a, "a write");
    }
    assert!(
        dn.node.exit_status().is_none(),
        "the node stopped:\n{}",
        dn.node.log()
    );
    assert_rows_kept(&dn.node, 200, &[]);
    assert_eq!(row_count(&dn.node), 200);
    assert_eq!(dn.node.get("/status").status, 200);
    filler.remove();
    assert_writes_resume(&dn.node, 2000);
    assert_rows_kept(&dn.node, 200, &[2000]);
    restart_and_check(&mut dn, 200, &[2000], 2001);
}

/// A row count as a `/db/query` answer holds it.
fn count_in(a: &Answer) -> Option<i64> {
    a.json()["results"][0]["values"][0][0].as_i64()
}

#[test]
fn a_snapshot_on_a_full_disk_fails_clearly_and_raft_keeps_running() {
    // A low threshold: snapshots are taken as writes come, before and after the full disk.
    let Some(mut dn) = node_on_small_disk(32, &["-disk-reserve", "1048576", "-raft-snap", "40"])
    else {
        return;
    };
    seed(&dn.node, 30);
    let filler = Filler::fill(&dn.data_dir, 64);
    let a = dn.node.post("/snapshot", "");
    assert_disk_full_answer(&a, "POST /snapshot");
    assert!(a.body.contains("snapshot failed"), "{}", a.body);
    // Raft is still running on the node: it still leads and answers a linearizable read.
    assert!(dn.node.exit_status().is_none(), "{}", dn.node.log());
    let q = dn
        .node
        .get("/db/query?q=SELECT%20count(*)%20FROM%20t&level=linearizable");
    assert_eq!(q.status, 200, "{}", q.body);
    assert_eq!(count_in(&q), Some(30), "{}", q.body);
    filler.remove();
    let a = dn.node.post("/snapshot", "");
    assert_eq!(a.status, 200, "{}", a.body);
    // The threshold still takes snapshots: 40 more entries make at least one more.
    let before = dn.node.get("/status").json()["store"]["num_snapshots"].clone();
    for id in 100..145 {
        assert!(acknowledged(&insert(&dn.node, id)));
    }
    let grew = wait_until(Duration::from_secs(10), || {
        dn.node.get("/status").json()["store"]["num_snapshots"] != before
    });
    assert!(
        grew,
        "no snapshot after the disk was freed:\n{}",
        dn.node.log()
    );
    assert_rows_kept(&dn.node, 30, &[144]);
    restart_and_check(&mut dn, 30, &[100, 144], 3000);
}

#[test]
fn a_backup_that_fills_the_disk_answers_507_and_leaves_no_file() {
    // No reserve: the copy runs into the full disk itself, in the data directory.
    let Some(mut dn) = node_on_small_disk(32, &["-disk-reserve", "0"]) else {
        return;
    };
    seed(&dn.node, 1500); // about 1.6 MB of rows
    let filler = Filler::fill(&dn.data_dir, 64);
    filler.leave_free(512 << 10); // room for a third of the copy
    let files_before = data_dir_files(&dn.data_dir);
    let a = dn.node.get("/db/backup");
    assert_disk_full_answer(&a, "GET /db/backup");
    assert!(
        wait_until(Duration::from_secs(5), || data_dir_files(&dn.data_dir)
            == files_before),
        "the failed copy left a file: {:?} then {:?}",
        files_before,
        data_dir_files(&dn.data_dir)
    );
    assert_rows_kept(&dn.node, 1500, &[]);
    filler.remove();
    assert_writes_resume(&dn.node, 5000);
    let a = dn.node.get("/db/backup");
    assert_eq!(a.status, 200, "{}", a.body);
    restart_and_check(&mut dn, 1500, &[5000], 5001);
}

/// The data directory's file names (the filler aside), sorted.
fn data_dir_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the data dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "filler")
        .collect();
    names.sort();
    names
}

/// A SQLite file with `rows` rows of 1 KiB in `loaded`, made with the node's own writes
/// elsewhere would need a second node: the sqlite3 shell makes it.
fn loadable_db(dir: &Path, rows: u32) -> Vec<u8> {
    let path = dir.join("load.db");
    common::sqlite3(
        &path,
        &format!(
            "CREATE TABLE loaded(id INTEGER PRIMARY KEY, v BLOB); \
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < {rows}) \
             INSERT INTO loaded(v) SELECT randomblob(1024) FROM c;"
        ),
    );
    std::fs::read(&path).expect("read the database")
}

fn load(node: &Node, body: Vec<u8>) -> Answer {
    node.request("POST", "/db/load", Some("application/octet-stream"), body)
}

#[test]
fn loads_that_fill_the_disk_answer_507_and_change_nothing() {
    let Some(mut dn) = node_on_small_disk(32, &["-disk-reserve", "0"]) else {
        return;
    };
    seed(&dn.node, 100);
    let binary = loadable_db(dn.scratch.path(), 3000); // about 3 MB
    let mut sql =
        String::from("BEGIN TRANSACTION;\nCREATE TABLE loaded(id INTEGER PRIMARY KEY, v TEXT);\n");
    for i in 0..3000 {
        sql.push_str(&format!(
            "INSERT INTO loaded VALUES({i},'{}');\n",
            "x".repeat(1000)
        ));
    }
    sql.push_str("COMMIT;\n");
    let filler = Filler::fill(&dn.data_dir, 64);
    filler.leave_free(1 << 20); // a third of either load
    let files_before = data_dir_files(&dn.data_dir);
    for (what, body) in [
        ("a binary load", binary.clone()),
        ("a SQL load", sql.clone().into_bytes()),
    ] {
        let a = load(&dn.node, body);
        assert_disk_full_answer(&a, what);
        assert!(
            dn.node.exit_status().is_none(),
            "{what}: the node stopped:\n{}",
            dn.node.log()
        );
        assert_rows_kept(&dn.node, 100, &[]);
        let t = local_query(
            &dn.node,
            "SELECT count(*) FROM sqlite_master WHERE name = 'loaded'",
        );
        assert_eq!(
            count_in(&t),
            Some(0),
            "{what} changed the database: {}",
            t.body
        );
        assert!(
            wait_until(Duration::from_secs(5), || data_dir_files(&dn.data_dir)
                == files_before),
            "{what} left a file: {:?}",
            data_dir_files(&dn.data_dir)
        );
    }
    filler.remove();
    assert_writes_resume(&dn.node, 7000);
    let a = load(&dn.node, sql.into_bytes());
    assert!(acknowledged(&a), "{}", a.body);
    let t = local_query(&dn.node, "SELECT count(*) FROM loaded");
    assert_eq!(count_in(&t), Some(3000), "{}", t.body);
    let status = dn.node.stop();
    assert!(status.success());
    dn.node = Node::start_in(&dn.data_dir, &[]);
    let t = local_query(&dn.node, "SELECT count(*) FROM loaded");
    assert_eq!(count_in(&t), Some(3000), "{}", t.body);
}

#[test]
fn a_follower_whose_disk_fills_catches_up_once_space_is_freed() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let Some((_disk, mount_point)) = SmallDisk::mount_or_skip(scratch.path(), "disk", 32, false)
    else {
        return;
    };
    let args = common::FAST_RAFT;
    let n1 = Node::start(&[args, &["-node-id", "node1"]].concat());
    let join = n1.raft_addr.clone();
    let n2 = Node::start(&[args, &["-node-id", "node2", "-join", &join]].concat());
    let data3 = mount_point.join("data");
    let mut n3 = Node::start_in(
        &data3,
        &[args, &["-node-id", "node3", "-join", &join]].concat(),
    );
    let nodes = [&n1, &n2];
    assert!(
        wait_until(Duration::from_secs(30), || n1
            .get("/nodes")
            .json()
            .as_object()
            .is_some_and(|o| o.len() == 3)),
        "no 3-node cluster"
    );
    seed(&n1, 50);
    let caught_up = |node: &Node, rows: i64| {
        wait_until(Duration::from_secs(30), || {
            count_in(&local_query(node, "SELECT count(*) FROM t")) == Some(rows)
        })
    };
    assert!(caught_up(&n3, 50), "{}", n3.log());
    let filler = Filler::fill(&data3, 64);
    // The other two keep committing: every write is acknowledged.
    for id in 100..140 {
        let a = insert(nodes[0], id);
        assert!(
            acknowledged(&a),
            "write {id} with one follower full: {}",
            a.body
        );
    }
    assert!(caught_up(&n2, 90));
    // The full follower still serves what it has, and keeps running.
    assert!(
        n3.exit_status().is_none(),
        "the full follower stopped:\n{}",
        n3.log()
    );
    let a = local_query(&n3, "SELECT count(*) FROM t");
    assert_eq!(a.status, 200, "{}", a.body);
    // It met the full disk in its log (and, for entries already logged, in SQLite).
    assert!(
        wait_until(Duration::from_secs(10), || n3
            .log()
            .contains("the append waits for free space")),
        "the follower's log append never met the full disk:\n{}",
        n3.log()
    );
    filler.remove();
    assert!(
        caught_up(&n3, 90),
        "the follower did not catch up:\n{}",
        n3.log()
    );
    assert!(acknowledged(&insert(&n1, 200)));
    assert!(caught_up(&n3, 91), "{}", n3.log());
    // Full again, and stopped while it waits: the stop is not held up, and after a restart
    // with room it catches up.
    // (Its log or its apply: which one meets the disk first depends on what the last page
    // of each file has left.)
    let waits = |node: &Node| node.log().matches("waits for free space").count();
    let waited_before = waits(&n3);
    let filler = Filler::fill(&data3, 64);
    for id in 300..310 {
        assert!(acknowledged(&insert(nodes[0], id)));
    }
    assert!(
        wait_until(Duration::from_secs(10), || waits(&n3) > waited_before),
        "the follower did not meet the full disk again:\n{}",
        n3.log()
    );
    let asked = Instant::now();
    let status = n3.stop();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the stop took {:?}",
        asked.elapsed()
    );
    // 70 when the wait gave up first, 0 when Raft had already been told to stop.
    assert!(
        matches!(status.code(), Some(0 | 70)),
        "{status:?}\n{}",
        n3.log()
    );
    filler.remove();
    n3 = Node::start_in(
        &data3,
        &[args, &["-node-id", "node3", "-join", &join]].concat(),
    );
    assert!(caught_up(&n3, 101), "{}", n3.log());
}

/// The answer of a write sent from another thread: status and body, or the client's error.
type PendingWrite = std::thread::JoinHandle<reqwest::Result<(u16, String)>>;

/// Fills the disk but for 2 MiB, then sends (from another thread) a small request whose
/// statement makes 4 MB: its log entry fits, and the disk fills while SQLite applies it.
fn fill_while_applying(dn: &DiskNode) -> (Filler, PendingWrite) {
    let filler = Filler::fill(&dn.data_dir, 64);
    filler.leave_free(2 << 20);
    let url = dn.node.url("/db/execute");
    let big = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client")
            .post(url)
            .header("Content-Type", "application/json")
            .body(
                r#"["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 4000) INSERT INTO t(id, v) SELECT 10000 + x, randomblob(1024) FROM c"]"#,
            )
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
    });
    (filler, big)
}

#[test]
fn a_write_that_fills_the_disk_while_applying_waits_for_room_then_applies() {
    let Some(mut dn) = node_on_small_disk(32, &["-disk-reserve", "0"]) else {
        return;
    };
    seed(&dn.node, 20);
    let (filler, big) = fill_while_applying(&dn);
    // The statement fills the disk (a write sent before that would queue behind it).
    let filled = wait_until(Duration::from_secs(20), || {
        free_bytes(&dn.data_dir) < 512 << 10
    });
    assert!(
        filled,
        "the big write did not fill the disk:\n{}",
        dn.node.log()
    );
    // Until space returns the node keeps running and serving reads, and refuses new writes.
    assert_disk_full_answer(
        &insert(&dn.node, 900),
        "a write behind a write that filled the disk",
    );
    assert!(
        dn.node.exit_status().is_none(),
        "the node stopped:\n{}",
        dn.node.log()
    );
    assert_rows_kept(&dn.node, 20, &[]);
    assert!(
        !big.is_finished(),
        "the big write was answered while the disk was full"
    );
    // (The warning may reach the node's log a moment after the disk filled.)
    assert!(
        wait_until(Duration::from_secs(10), || dn
            .node
            .log()
            .contains("applying waits for free space")),
        "the write did not meet the full disk while applying:\n{}",
        dn.node.log()
    );
    assert!(
        !big.is_finished(),
        "the big write was answered while the disk was full"
    );
    filler.remove();
    let (status, body) = big.join().expect("join").expect("the big write's answer");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""rows_affected":4000"#), "{body}");
    assert_writes_resume(&dn.node, 901);
    restart_and_check(&mut dn, 20, &[10001, 14000, 901], 902);
}

/// The node's active Raft log segment (the last one by name).
fn active_segment(data_dir: &Path) -> PathBuf {
    let raft = data_dir.join("raft");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&raft)
        .expect("read the raft dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

fn chattr(flag: &str, path: &Path) {
    let st = std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .expect("run chattr");
    assert!(st.success(), "chattr {flag} {}", path.display());
}

/// A log write that fails for another reason than room (here the segment made immutable, so
/// the write fails with EPERM) poisons the log, and openraft stops Raft: the node must then
/// stop with a clear message, not go on looking ready with no Raft behind it. A restart
/// after the cause is removed finds every acknowledged write.
#[test]
fn a_failed_log_write_stops_the_node_with_a_clear_message() {
    let scratch = tempfile::tempdir().expect("tempdir");
    // ext4: a tmpfs has no immutable flag.
    let Some((_disk, mount_point)) = SmallDisk::mount_or_skip(scratch.path(), "disk", 32, true)
    else {
        return;
    };
    let data_dir = mount_point.join("data");
    let mut node = Node::start_in(&data_dir, &[]);
    seed(&node, 20);
    let segment = active_segment(&data_dir);
    chattr("+i", &segment);
    let url = node.url("/db/execute");
    // The write may be answered with an error or cut off when the process ends.
    let write = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
            .post(url)
            .header("Content-Type", "application/json")
            .body(r#"[["INSERT INTO t(id, v) VALUES(500, x'00')"]]"#)
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
    });
    let stopped = wait_until(Duration::from_secs(20), || node.exit_status().is_some());
    chattr("-i", &segment);
    assert!(stopped, "the node went on without Raft:\n{}", node.log());
    assert!(
        node.log().contains("Raft stopped on a fatal error"),
        "{}",
        node.log()
    );
    // An answer, if the process gave one before it ended, is an error (rqlite's way: 200
    // with an `error` field).
    let answer = write.join().expect("join");
    if let Ok((status, body)) = &answer {
        assert!(
            *status != 200 || body.contains("\"error\""),
            "the write was acknowledged: {status} {body}"
        );
    }
    let status = node.exit_status();
    assert_eq!(status.and_then(|s| s.code()), Some(70), "{status:?}");
    node = Node::start_in(&data_dir, &[]);
    assert_rows_kept(&node, 20, &[]);
    // The refused write never reached the log.
    let a = local_query(&node, "SELECT count(*) FROM t WHERE id = 500");
    assert_eq!(count_in(&a), Some(0), "{}", a.body);
    assert!(acknowledged(&insert(&node, 501)));
}

/// A stop asked for while an entry waits for disk space ends the process at once (status 70,
/// the reason logged), and the entry, committed in the log, is applied after the restart.
#[test]
fn a_stop_while_applying_waits_for_room_ends_the_process_and_the_entry_applies_later() {
    let Some(mut dn) = node_on_small_disk(32, &["-disk-reserve", "0"]) else {
        return;
    };
    seed(&dn.node, 20);
    let (filler, big) = fill_while_applying(&dn);
    assert!(
        wait_until(Duration::from_secs(20), || dn
            .node
            .log()
            .contains("applying waits for free space")),
        "the write did not meet the full disk while applying:\n{}",
        dn.node.log()
    );
    let asked = Instant::now();
    let status = dn.node.stop();
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(70), "{status:?}\n{}", dn.node.log());
    assert!(took < Duration::from_secs(10), "the stop took {took:?}");
    assert!(
        dn.node
            .log()
            .contains("asked to stop while the entry waited"),
        "{}",
        dn.node.log()
    );
    if let Ok((status, body)) = big.join().expect("join") {
        assert!(
            status != 200 || body.contains("\"error\""),
            "the write was acknowledged: {status} {body}"
        );
    }
    filler.remove();
    dn.node = Node::start_in(&dn.data_dir, &[]);
    assert_rows_kept(&dn.node, 20, &[]);
    // The entry is in the log: once the restarted node leads, it commits and applies it.
    let applied = wait_until(Duration::from_secs(20), || {
        count_in(&local_query(
            &dn.node,
            "SELECT count(*) FROM t WHERE id > 10000",
        )) == Some(4000)
    });
    assert!(
        applied,
        "the logged entry was not applied after the restart:\n{}",
        dn.node.log()
    );
}
