//! Crashes at every named step of the long operations, on real `raftlited` processes.
//!
//! Each scenario arms one crash point (`raftlite::failpoint`, built in with the `failpoints`
//! feature, which this test file requires) in one node through `FAILPOINTS=<name>=return`,
//! makes acknowledged writes, starts the operation, and waits for the node to kill itself at
//! that point (its log must say so: a scenario whose crash happened elsewhere fails). Then it
//! restarts the node on the same data directory, without the crash point, and checks:
//! - the database is the old one or the new one, never a mix: the step's table says which
//!   (a committed load must arrive, an uncommitted one must not);
//! - every acknowledged write is there (in the old database; a load replaces them);
//! - every node of a cluster ends with the same content;
//! - nothing is left in the data directory but the node's own files ([`ALLOWED_FILES`]).
//!
//! The steps, what each exercises and what was found: `docs/faults.md`, "Crashes".

mod common;

use std::path::Path;
use std::time::Duration;

use common::{wait_until, Node};

/// How long a scenario waits for the armed node to reach its crash point and die.
const CRASH_WITHIN: Duration = Duration::from_secs(60);
/// How long a restarted node (or cluster) may take to settle on the expected content.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);
/// Acknowledged writes made before each operation.
const ACKED_WRITES: u64 = 20;
/// Rows in the database a load brings.
const LOAD_ROWS: u64 = 5_000;

/// What a data directory may hold once the node has settled: the database, the log, the
/// snapshot metadata and the node's own records. Anything else (`load-*`, `backup-*`,
/// `snapshot-in-*`, `*.tmp`, journals) is a file a crash left behind.
const ALLOWED_FILES: &[&str] = &[
    "db.sqlite",
    "db.sqlite-wal",
    "db.sqlite-shm",
    "raft",
    "snapshot-meta.json",
    "node-id",
    "peers.info",
    // When the leader last ran each housekeeping chore.
    "auto-optimize.json",
    "auto-vacuum.json",
    // SQLite's temporary files (`SQLITE_TMPDIR`): unlinked as they are opened, so the folder
    // must be empty (see `leftovers`).
    "sqlite-tmp",
];

/// Which database a node must serve after the crash and the restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The database before the operation, with every acknowledged write.
    Old,
    /// The loaded database.
    New,
}

/// Which database `node` serves now after `operation`: `Some(Old)` (every acknowledged row
/// and no loaded table), `Some(New)` (the loaded rows; after a database file, no acknowledged
/// table, which it replaced; after SQL text, which adds, every acknowledged row too), or
/// `None` (anything else: a mix, a missing write, or no answer).
fn content(node: &Node, operation: Operation) -> Option<Expect> {
    let acked = count(node, "acked");
    let loaded = count(node, "loaded");
    match (operation, acked, loaded) {
        (_, Some(ACKED_WRITES), None) => Some(Expect::Old),
        (Operation::SqlLoad, Some(ACKED_WRITES), Some(LOAD_ROWS)) => Some(Expect::New),
        (Operation::BinaryLoad | Operation::Boot, None, Some(LOAD_ROWS)) => Some(Expect::New),
        _ => None,
    }
}

/// Rows in `table` on `node` (a local read), `None` if the table does not exist or the node
/// does not answer.
fn count(node: &Node, table: &str) -> Option<u64> {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", &format!("SELECT count(*) FROM {table}"))
        .append_pair("level", "none")
        .finish();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let body = client
        .get(node.url(&format!("/db/query?{q}")))
        .send()
        .ok()?
        .text()
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["results"][0]["values"][0][0].as_u64()
}

/// Makes the acknowledged writes, one request each, every one answered 200.
fn acked_writes(node: &Node) {
    node.execute(r#"["CREATE TABLE acked(id INTEGER PRIMARY KEY, v TEXT)"]"#);
    for i in 0..ACKED_WRITES {
        node.execute(&format!(
            r#"[["INSERT INTO acked(v) VALUES(?)", "write {i}"]]"#
        ));
    }
}

/// A database file with [`LOAD_ROWS`] rows in `loaded`, made with SQLite itself.
fn load_file(dir: &Path) -> Vec<u8> {
    let path = dir.join("load-source.db");
    let _ = std::fs::remove_file(&path);
    let mut conn = raftlite_ffi::Connection::open(
        &path,
        raftlite_ffi::OpenFlags::READ_WRITE | raftlite_ffi::OpenFlags::CREATE,
    )
    .expect("create the load file");
    conn.execute_batch(&format!(
        "CREATE TABLE loaded(id INTEGER PRIMARY KEY, v TEXT); \
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < {LOAD_ROWS}) \
         INSERT INTO loaded(v) SELECT printf('row %d', x) FROM c;"
    ))
    .expect("fill the load file");
    conn.close().expect("close the load file");
    std::fs::read(&path).expect("read the load file")
}

/// A SQL script that makes the same database as [`load_file`].
fn load_script() -> Vec<u8> {
    let mut s = String::from("CREATE TABLE loaded(id INTEGER PRIMARY KEY, v TEXT);\n");
    for x in 1..=LOAD_ROWS {
        s.push_str(&format!("INSERT INTO loaded(v) VALUES('row {x}');\n"));
    }
    s.into_bytes()
}

/// POSTs `body` to `path` on a thread: the node may die before it answers.
fn post_in_background(node: &Node, path: &str, body: Vec<u8>) -> std::thread::JoinHandle<()> {
    let url = node.url(path);
    std::thread::spawn(move || {
        let _ = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client")
            .post(url)
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send();
    })
}

/// The environment that arms `failpoint`.
fn armed(failpoint: &str) -> String {
    format!("{failpoint}=return")
}

/// Waits for `node`, armed with `failpoint`, to kill itself there; fails the test if it does
/// not, or if it died of something else.
fn assert_crashed_at(node: &mut Node, failpoint: &str) {
    let status = node.wait_for_exit(CRASH_WITHIN);
    let log = node.log();
    assert!(
        status.is_some(),
        "the node never reached the crash point {failpoint}:\n{log}"
    );
    assert!(
        log.contains(&format!("failpoint {failpoint}: killing the process")),
        "the node died, but not at {failpoint} ({status:?}):\n{log}"
    );
}

/// Names in `dir` that [`ALLOWED_FILES`] does not list, and anything inside `sqlite-tmp`.
fn leftovers(dir: &Path) -> Vec<String> {
    let names = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut left: Vec<String> = names(dir)
        .into_iter()
        .filter(|n| !ALLOWED_FILES.contains(&n.as_str()))
        .collect();
    left.extend(
        names(&dir.join("sqlite-tmp"))
            .into_iter()
            .map(|n| format!("sqlite-tmp/{n}")),
    );
    left
}

/// Waits (bounded) until `dir` holds nothing a crash left behind.
fn assert_nothing_left(dir: &Path, log: impl Fn() -> String) {
    assert!(
        wait_until(SETTLE_WITHIN, || leftovers(dir).is_empty()),
        "files left behind in {}: {:?}\n{}",
        dir.display(),
        leftovers(dir),
        log()
    );
}

/// Waits (bounded) until `node` serves `expected` after `operation`.
fn assert_content(node: &Node, operation: Operation, expected: Expect) {
    assert!(
        wait_until(SETTLE_WITHIN, || content(node, operation) == Some(expected)),
        "expected the {expected:?} database, found acked={:?} loaded={:?}\n{}",
        count(node, "acked"),
        count(node, "loaded"),
        node.log()
    );
}

/// A single-node operation that a crash point interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// `POST /db/load` of a database file.
    BinaryLoad,
    /// `POST /boot` of a database file.
    Boot,
    /// `POST /db/load` of SQL text into a database that is not blank (the script runs).
    SqlLoad,
    /// `GET /db/backup`: a binary copy made in the data directory, then streamed.
    Backup,
    /// `POST /snapshot?trailing_logs=0`: a snapshot, then a purge of the whole log.
    Snapshot,
}

/// One row of the single-node table: the operation, the crash point, and which database
/// the node must serve after the restart.
struct Step {
    operation: Operation,
    failpoint: &'static str,
    expect: Expect,
}

/// Log segments this small make a purge delete whole segment files.
const SMALL_SEGMENTS: &[&str] = &["-raft-log-segment-size", "4096"];

/// One node: acknowledged writes, then `step`'s operation crashing at its point, a restart,
/// and the checks.
fn single_node_crash(step: &Step, tmp: &Path) {
    let dir = tmp.join(format!(
        "{:?}-{}",
        step.operation,
        step.failpoint.replace("::", "-")
    ));
    let env = armed(step.failpoint);
    let mut node = Node::start_in_with_env(&dir, SMALL_SEGMENTS, &[("FAILPOINTS", &env)]);
    acked_writes(&node);
    let request = match step.operation {
        Operation::BinaryLoad => post_in_background(&node, "/db/load", load_file(tmp)),
        Operation::Boot => post_in_background(&node, "/boot", load_file(tmp)),
        Operation::SqlLoad => post_in_background(&node, "/db/load", load_script()),
        Operation::Snapshot => post_in_background(&node, "/snapshot?trailing_logs=0", Vec::new()),
        Operation::Backup => {
            let url = node.url("/db/backup");
            std::thread::spawn(move || {
                let _ = reqwest::blocking::Client::new().get(url).send();
            })
        }
    };
    assert_crashed_at(&mut node, step.failpoint);
    let _ = request.join();
    let node = Node::start_in(&dir, SMALL_SEGMENTS);
    assert_content(&node, step.operation, step.expect);
    assert_nothing_left(&dir, || node.log());
}

/// The hole this suite was written to close first: a node whose load content was its only
/// copy (a single node, or a source that moved its file) renamed `.staged` to `.install`, and
/// start-up deleted `.install` files; a crash between that rename and the swap left a
/// committed load whose content existed nowhere, and the node retried the pull forever.
#[test]
fn a_crash_after_the_staged_load_moved_to_install_still_installs_it() {
    let tmp = tempfile::tempdir().unwrap();
    single_node_crash(
        &Step {
            operation: Operation::BinaryLoad,
            failpoint: "restore::after_move_to_install",
            expect: Expect::New,
        },
        tmp.path(),
    );
}

/// Every other step of the single-node operations, in order, each on a new node.
const SINGLE_NODE_STEPS: &[Step] = &[
    // A database file: receiving it, preparing it, the swap, then the snapshot and purge
    // every load is followed by.
    Step {
        operation: Operation::BinaryLoad,
        failpoint: "restore::mid_stage",
        expect: Expect::Old,
    },
    Step {
        operation: Operation::BinaryLoad,
        failpoint: "restore::mid_prepare",
        expect: Expect::New,
    },
    Step {
        operation: Operation::BinaryLoad,
        failpoint: "restore::after_prepare",
        expect: Expect::New,
    },
    Step {
        operation: Operation::BinaryLoad,
        failpoint: "swap::before_rename",
        expect: Expect::New,
    },
    Step {
        operation: Operation::BinaryLoad,
        failpoint: "swap::after_rename_before_dir_fsync",
        expect: Expect::New,
    },
    Step {
        operation: Operation::BinaryLoad,
        failpoint: "restore::after_apply",
        expect: Expect::New,
    },
    // `/boot` takes the same path; one step stands for it.
    Step {
        operation: Operation::Boot,
        failpoint: "swap::before_rename",
        expect: Expect::New,
    },
    // SQL text runs in the entry's transaction.
    Step {
        operation: Operation::SqlLoad,
        failpoint: "restore::mid_stage",
        expect: Expect::Old,
    },
    Step {
        operation: Operation::SqlLoad,
        failpoint: "restore::sql_before_commit",
        expect: Expect::New,
    },
    Step {
        operation: Operation::SqlLoad,
        failpoint: "restore::after_apply",
        expect: Expect::New,
    },
    // A backup's copy in the data directory.
    Step {
        operation: Operation::Backup,
        failpoint: "backup::copied_before_clean",
        expect: Expect::Old,
    },
    // A snapshot (checkpoint and syncs, then its metadata), then the log's purge.
    Step {
        operation: Operation::Snapshot,
        failpoint: "snapshot::after_sync_before_meta",
        expect: Expect::Old,
    },
    Step {
        operation: Operation::Snapshot,
        failpoint: "snapshot::meta_written_before_rename",
        expect: Expect::Old,
    },
    Step {
        operation: Operation::Snapshot,
        failpoint: "log::purge_after_meta",
        expect: Expect::Old,
    },
];

#[test]
fn a_crash_at_any_step_of_a_single_node_operation_leaves_old_or_new() {
    let tmp = tempfile::tempdir().unwrap();
    // Every step runs, and the failures are reported together.
    let failed: Vec<String> = SINGLE_NODE_STEPS
        .iter()
        .filter_map(|step| {
            eprintln!("step {:?} at {}", step.operation, step.failpoint);
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                single_node_crash(step, tmp.path())
            }))
            .err()
            .map(|e| {
                format!(
                    "{:?} at {}: {}",
                    step.operation,
                    step.failpoint,
                    panic_text(&e)
                )
            })
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} step(s) failed:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

/// The message of a caught panic.
fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Arguments of cluster node `i` (1-based) joining `join`.
fn member_args(i: usize, join: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = common::FAST_RAFT.iter().map(|s| s.to_string()).collect();
    args.extend(["-node-id".to_string(), format!("node{i}")]);
    if let Some(j) = join {
        args.extend(["-join".to_string(), j.to_string()]);
    }
    args
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Waits (bounded) until every node of `nodes` lists three members.
fn assert_three_members(nodes: &[Node]) {
    assert!(
        wait_until(SETTLE_WITHIN, || nodes.iter().all(|n| {
            n.get("/nodes")
                .json()
                .as_object()
                .is_some_and(|o| o.len() == 3)
        })),
        "the cluster did not form:\n{}",
        common::logs_of(nodes)
    );
}

/// Three nodes; node 2 (a follower: node 1 bootstraps and leads) runs with `failpoint` armed.
/// Each keeps its data directory under `tmp`.
fn cluster_with_armed_follower(tmp: &Path, failpoint: &str) -> Vec<Node> {
    let env = armed(failpoint);
    let first = Node::start_in(&tmp.join("n1"), &as_strs(&member_args(1, None)));
    let join = first.raft_addr.clone();
    let second = Node::start_in_with_env(
        &tmp.join("n2"),
        &as_strs(&member_args(2, Some(&join))),
        &[("FAILPOINTS", &env)],
    );
    let third = Node::start_in(&tmp.join("n3"), &as_strs(&member_args(3, Some(&join))));
    let nodes = vec![first, second, third];
    assert_three_members(&nodes);
    nodes
}

/// Restarts node 2 (index 1) on its data directory, unarmed, and waits until every node
/// holds `expected` and nothing is left in any data directory.
fn restart_and_converge(nodes: &mut [Node], tmp: &Path, operation: Operation, expected: Expect) {
    nodes[1] = Node::start_in(&tmp.join("n2"), &as_strs(&member_args(2, None)));
    for node in nodes.iter() {
        assert_content(node, operation, expected);
    }
    for node in nodes.iter() {
        assert_nothing_left(&node.data_dir, || common::logs_of(nodes));
    }
}

/// A follower that pulls a load's content crashes at each step of installing it; restarted,
/// it pulls the content again (the source keeps it until every member has applied the load)
/// and every node ends with the loaded database.
#[test]
fn a_follower_crashing_while_it_installs_a_pulled_load_gets_it_after_a_restart() {
    for failpoint in [
        "restore::after_move_to_install",
        "restore::after_prepare",
        "swap::before_rename",
    ] {
        eprintln!("follower crashes at {failpoint}");
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes = cluster_with_armed_follower(tmp.path(), failpoint);
        acked_writes(&nodes[0]);
        let request = post_in_background(&nodes[0], "/db/load", load_file(tmp.path()));
        assert_crashed_at(&mut nodes[1], failpoint);
        let _ = request.join();
        restart_and_converge(&mut nodes, tmp.path(), Operation::BinaryLoad, Expect::New);
    }
}

/// Where a crash point of the snapshot-install scenario is armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Armed {
    /// The follower that receives the snapshot.
    Follower,
    /// The leader that copies its database and sends it.
    Leader,
}

/// A follower that was down while the leader purged its log receives the database as a
/// snapshot; the follower crashes while it receives or swaps it in, or the leader while it
/// sends it. Restarted, the crashed node takes part again, and every node ends with every
/// acknowledged write.
#[test]
fn a_crash_while_a_follower_installs_a_snapshot_heals_after_a_restart() {
    for (armed_node, failpoint) in [
        (Armed::Follower, "snapshot::received_before_install"),
        (Armed::Follower, "swap::before_rename"),
        (Armed::Follower, "swap::after_rename_before_dir_fsync"),
        (Armed::Leader, "snapshot::send_copy_made"),
    ] {
        eprintln!("{armed_node:?} crashes at {failpoint}");
        let tmp = tempfile::tempdir().unwrap();
        let env = armed(failpoint);
        let leader_env: &[(&str, &str)] = match armed_node {
            Armed::Leader => &[("FAILPOINTS", &env)],
            Armed::Follower => &[],
        };
        let first = Node::start_in_with_env(
            &tmp.path().join("n1"),
            &as_strs(&member_args(1, None)),
            leader_env,
        );
        let join = first.raft_addr.clone();
        let mut nodes = vec![first];
        for i in 2..=3 {
            let dir = tmp.path().join(format!("n{i}"));
            nodes.push(Node::start_in(&dir, &as_strs(&member_args(i, Some(&join)))));
        }
        assert_three_members(&nodes);
        acked_writes(&nodes[0]);
        // The follower has a snapshot of its own (so its metadata is older than what it
        // will receive, not absent), then goes down.
        assert!(
            wait_until(SETTLE_WITHIN, || count(&nodes[1], "acked")
                == Some(ACKED_WRITES)),
            "{}",
            common::logs_of(&nodes)
        );
        let own = nodes[1].post("/snapshot", "");
        assert_eq!(own.status, 200, "{}", own.body);
        nodes[1].kill();
        // More acknowledged writes the follower misses, then a purge of the leader's log:
        // the follower can only catch up from a snapshot.
        let extra = 30;
        for i in 0..extra {
            nodes[0].execute(&format!(
                r#"[["INSERT INTO acked(v) VALUES(?)", "late {i}"]]"#
            ));
        }
        let snap = nodes[0].post("/snapshot?trailing_logs=0", "");
        assert!(snap.status == 200 || snap.status == 204, "{}", snap.body);
        let follower_env: &[(&str, &str)] = match armed_node {
            Armed::Follower => &[("FAILPOINTS", &env)],
            Armed::Leader => &[],
        };
        nodes[1] = Node::spawn_with_env(
            &tmp.path().join("n2"),
            &as_strs(&member_args(2, None)),
            follower_env,
        )
        .unwrap_or_else(|log| panic!("the follower did not start:\n{log}"));
        let victim = match armed_node {
            Armed::Leader => 0,
            Armed::Follower => 1,
        };
        assert_crashed_at(&mut nodes[victim], failpoint);
        let id = victim + 1;
        nodes[victim] = Node::start_in(
            &tmp.path().join(format!("n{id}")),
            &as_strs(&member_args(id, None)),
        );
        let total = ACKED_WRITES + extra;
        for node in nodes.iter() {
            assert!(
                wait_until(SETTLE_WITHIN, || count(node, "acked") == Some(total)),
                "{} did not get every acknowledged write: {:?}\n{}",
                node.http_addr,
                count(node, "acked"),
                common::logs_of(&nodes)
            );
        }
        for node in nodes.iter() {
            assert_nothing_left(&node.data_dir, || common::logs_of(&nodes));
        }
    }
}

/// A follower that stops between an `-auto-vacuum-int` VACUUM and the transaction that records
/// its entry runs the VACUUM again at restart. VACUUM renumbers the rowids of a table with
/// neither an INTEGER PRIMARY KEY nor an index: the second run gives the same ones, so the
/// follower ends with the rows and rowids of the other two nodes.
#[test]
fn a_follower_crashing_between_a_vacuum_and_its_record_ends_with_the_same_rowids() {
    let failpoint = "apply::vacuumed_before_record";
    let tmp = tempfile::tempdir().unwrap();
    let mut leader_args = member_args(1, None);
    leader_args.extend(["-auto-vacuum-int".to_string(), "4s".to_string()]);
    let first = Node::start_in(&tmp.path().join("n1"), &as_strs(&leader_args));
    let join = first.raft_addr.clone();
    // Rows whose rowids a VACUUM renumbers, written before the first run (4 s after the
    // leader began).
    first.execute(
        r#"["CREATE TABLE t(x)",
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<100) INSERT INTO t SELECT i FROM c",
            "DELETE FROM t WHERE x <= 90"]"#,
    );
    let second = Node::start_in_with_env(
        &tmp.path().join("n2"),
        &as_strs(&member_args(2, Some(&join))),
        &[("FAILPOINTS", &armed(failpoint))],
    );
    let third = Node::start_in(
        &tmp.path().join("n3"),
        &as_strs(&member_args(3, Some(&join))),
    );
    let mut nodes = vec![first, second, third];
    assert_crashed_at(&mut nodes[1], failpoint);
    nodes[1] = Node::start_in(&tmp.path().join("n2"), &as_strs(&member_args(2, None)));
    let rows = |n: &Node| n.query_at("SELECT rowid, x FROM t ORDER BY rowid", "none");
    let renumbered = |n: &Node| {
        let r = rows(n);
        r.contains("[[1,91],[2,92]") && r.contains("[10,100]]")
    };
    assert!(
        wait_until(SETTLE_WITHIN, || nodes.iter().all(renumbered)),
        "{:?}\n{}",
        nodes.iter().map(rows).collect::<Vec<_>>(),
        common::logs_of(&nodes)
    );
    // Its file already held the first VACUUM's rowids: the entry is applied again all the
    // same, and gives the same ones.
    assert!(
        wait_until(SETTLE_WITHIN, || nodes[1]
            .log()
            .contains("database vacuumed")),
        "the restarted follower runs the VACUUM again:\n{}",
        nodes[1].log()
    );
    let applied = |n: &Node| n.get("/status").json()["store"]["raft"]["applied_index"].clone();
    assert!(wait_until(SETTLE_WITHIN, || applied(&nodes[1]) == applied(&nodes[0])));
    assert_eq!(rows(&nodes[1]), rows(&nodes[0]));
    for node in &nodes {
        assert_nothing_left(&node.data_dir, || common::logs_of(&nodes));
    }
}
