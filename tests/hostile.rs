//! No statement can stop, stall or split the cluster (issue #22): every hostile request of
//! `tests/data/hostile-requests.jsonl` (each attack of issues #21 and #22, and those found while
//! building the gate) is sent to a real 3-node cluster as a write through the leader and
//! through a follower, as a mixed `/db/request`, and as a read at every level. Every answer
//! must be a 200 with rqlite's JSON, every node must keep serving, no file may appear outside
//! the data directories, and the nodes must hold the same content (`GET /status?digest`) —
//! also after all three are stopped and started again, replaying their logs.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{wait_until, Cluster, Node, FAST_RAFT};

const REQUESTS: &str = include_str!("data/hostile-requests.jsonl");

/// The requests, with `@DIR@` pointing into `outside`.
fn requests(outside: &Path) -> Vec<String> {
    // The path goes inside SQL string literals inside JSON strings.
    let dir = outside.display().to_string().replace('\'', "''");
    let dir = serde_json::to_string(&dir).unwrap();
    let dir = &dir[1..dir.len() - 1];
    REQUESTS
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.replace("@DIR@", dir))
        .collect()
}

fn digest(node: &Node) -> (u64, String) {
    let s = node.get("/status?digest").json();
    let d = &s["store"]["db_digest"];
    (
        d["applied_index"].as_u64().unwrap_or(0),
        d["digest"].as_str().unwrap_or_default().to_string(),
    )
}

/// Waits until every node reports the same applied index, then requires the same digest.
fn assert_same_content(cluster: &Cluster) -> (u64, String) {
    let mut last = Vec::new();
    let same = wait_until(Duration::from_secs(60), || {
        last = cluster.nodes.iter().map(digest).collect::<Vec<_>>();
        last.windows(2).all(|w| w[0].0 == w[1].0) && last[0].0 > 0
    });
    assert!(
        same,
        "the nodes did not reach the same index: {last:?}\n{}",
        cluster.logs()
    );
    for d in &last {
        assert_eq!(
            d.1,
            last[0].1,
            "the replicas differ: {last:?}\n{}",
            cluster.logs()
        );
    }
    last[0].clone()
}

fn assert_serving(cluster: &Cluster, after: &str) {
    for (i, node) in cluster.nodes.iter().enumerate() {
        let r = node.get("/readyz");
        assert_eq!(
            r.status,
            200,
            "node {} after {after}: {}\n{}",
            i + 1,
            r.body,
            cluster.logs()
        );
    }
}

#[test]
fn hostile_requests_leave_every_node_serving_with_the_same_content() {
    let outside = tempfile::tempdir().unwrap();
    let args = ["-write-budget-steps", "2000000"];
    let mut cluster = Cluster::start(3, &args);
    let leader = cluster.leader();
    let follower = cluster.followers()[0];
    let setup = cluster.nodes[leader].post("/db/execute", r#"["CREATE TABLE h(a)"]"#);
    assert_eq!(setup.status, 200, "{}", setup.body);

    let requests = requests(outside.path());
    assert!(requests.len() > 50, "the list is read: {}", requests.len());
    for body in &requests {
        for (node, path) in [
            (leader, "/db/execute"),
            (follower, "/db/execute?transaction"),
            (follower, "/db/request"),
            (leader, "/db/query?level=strong"),
            (follower, "/db/query?level=linearizable"),
            (follower, "/db/query?level=none"),
        ] {
            let a = cluster.nodes[node].post(path, body);
            assert_eq!(
                a.status,
                200,
                "{path} {body}: {}\n{}",
                a.body,
                cluster.logs()
            );
            let answer = a.json();
            assert!(
                answer["results"].is_array() || answer["error"].is_string(),
                "{path} {body}: {answer}"
            );
            if path.starts_with("/db/query") {
                // A read never writes: whatever it held answers an error or rows.
                for r in answer["results"].as_array().into_iter().flatten() {
                    assert!(
                        r.get("rows_affected").is_none() && r.get("last_insert_id").is_none(),
                        "{path} {body}: {answer}"
                    );
                }
            }
        }
        assert_serving(&cluster, body);
    }
    let before = assert_same_content(&cluster);
    let leftovers: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "files outside the data directories: {leftovers:?}"
    );

    // Stop every node (each must still be running: a fault would have stopped it with exit
    // status 70) and start them again on the same addresses: each replays its log tail on a
    // new connection.
    let mut dirs = Vec::new();
    for (i, node) in cluster.nodes.iter_mut().enumerate() {
        let temp = node.take_temp().expect("temp dir");
        let addrs = (node.http_addr.clone(), node.raft_addr.clone());
        let status = node.stop();
        assert!(
            status.success(),
            "node {} had stopped: {status:?}\n{}",
            i + 1,
            node.log()
        );
        dirs.push((temp, addrs));
    }
    let mut restarted = Vec::new();
    for (i, (temp, (http, raft))) in dirs.iter().enumerate() {
        let id = format!("node{}", i + 1);
        let node = Node::spawn(
            &temp.path().join("data"),
            &[
                FAST_RAFT,
                &args,
                &["-node-id", &id, "-http-addr", http, "-raft-addr", raft],
            ]
            .concat(),
        )
        .unwrap_or_else(|log| panic!("node {id} did not start:\n{log}"));
        restarted.push(node);
    }
    let cluster = Cluster { nodes: restarted };
    cluster.wait_for_members(3);
    let after = assert_same_content(&cluster);
    assert!(after.0 >= before.0, "{before:?} {after:?}");
    assert_eq!(
        after.1, before.1,
        "the restarted replicas hold what they held"
    );
    let leader = cluster.leader();
    let a = cluster.nodes[leader].post("/db/execute", r#"["INSERT INTO h VALUES('after')"]"#);
    assert!(a.body.contains("rows_affected"), "{}", a.body);
    assert_same_content(&cluster);
    drop(dirs);
}
