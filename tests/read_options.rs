//! The read options rqlite clients send with a query, each changing what the node answers:
//! `linearizable_timeout` (how long a linearizable read waits for the apply),
//! `freshness_strict` (a follower must also have applied what it knows is committed), and
//! `retries` (a forward whose connection to the leader cannot be made is tried again). Nodes
//! whose apply of writes is slowed by a failpoint make a node that is behind its commit.

mod common;

use std::time::{Duration, Instant};

use common::{wait_until, Node, FAST_RAFT};

/// Slows every write's apply on the node that has it.
const SLOW_APPLY: (&str, &str) = ("FAILPOINTS", "apply::write_entry=sleep(1500)");

fn query(node: &Node, sql: &str, params: &str) -> serde_json::Value {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", sql)
        .finish();
    node.get(&format!("/db/query?{q}&{params}")).json()
}

/// Sends a write on a thread of its own (it waits for the slow apply).
fn write_in_background(node: &Node, sql: &str) -> std::thread::JoinHandle<String> {
    let url = node.url("/db/execute");
    let body = serde_json::json!([sql]).to_string();
    std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .post(url)
            .header("Content-Type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| e.to_string())
    })
}

/// A linearizable read waits for the apply of what is committed; `linearizable_timeout`
/// bounds that wait with rqlite's error, and without it the read waits and sees the write.
#[test]
fn linearizable_timeout_bounds_the_wait_for_the_apply() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_in_with_env(&dir.path().join("data"), FAST_RAFT, &[SLOW_APPLY]);
    node.execute(r#"["CREATE TABLE t(x)"]"#);
    let write = write_in_background(&node, "INSERT INTO t VALUES(1)");
    // The write is committed at once and applied 1.5 s later.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let timed_out = query(
        &node,
        "SELECT count(*) FROM t",
        "level=linearizable&linearizable_timeout=200ms",
    );
    let error = timed_out["error"].as_str().unwrap_or_default();
    assert!(error.ends_with("timeout waiting for fsm"), "{timed_out}");
    assert!(error.starts_with("index "), "{timed_out}");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    let waited = query(&node, "SELECT count(*) FROM t", "level=linearizable");
    assert_eq!(waited["results"][0]["values"][0][0], 1, "{waited}");
    assert!(write.join().unwrap().contains("rows_affected"));
}

/// `freshness_strict`: a follower that has not applied what it knows is committed within
/// `freshness` answers `stale read`, where plain `freshness` answers from its older data;
/// given long enough, the strict read waits for the apply and sees the write.
#[test]
fn freshness_strict_refuses_a_follower_behind_its_commit() {
    let leader = Node::start(&[FAST_RAFT, &["-node-id", "node1"]].concat());
    let dir = tempfile::tempdir().unwrap();
    let follower = Node::start_in_with_env(
        &dir.path().join("data"),
        &[
            FAST_RAFT,
            &["-node-id", "node2", "-join", &leader.raft_addr],
        ]
        .concat(),
        &[SLOW_APPLY],
    );
    leader.execute(r#"["CREATE TABLE t(x)"]"#);
    let count = |params: &str| query(&follower, "SELECT count(*) FROM t", params);
    assert!(
        wait_until(Duration::from_secs(30), || count("level=none")["results"]
            [0]["values"][0][0]
            == 0),
        "the follower never had the table"
    );
    let write = write_in_background(&leader, "INSERT INTO t VALUES(1)");
    assert!(write.join().unwrap().contains("rows_affected"));
    // The follower knows the write is committed (the leader told it) but applies it later.
    let behind = || {
        let m = follower.get("/metrics").body;
        let value = |name: &str| {
            m.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        value("raftlite_raft_commit_index") > value("raftlite_raft_applied_index")
    };
    assert!(
        wait_until(Duration::from_secs(5), behind),
        "the follower was never behind its commit"
    );
    let plain = count("level=none&freshness=1s");
    assert_eq!(plain["results"][0]["values"][0][0], 0, "{plain}");
    let strict = count("level=none&freshness=200ms&freshness_strict");
    assert_eq!(strict["error"], "stale read", "{strict}");
    let patient = count("level=none&freshness=10s&freshness_strict");
    assert_eq!(patient["results"][0]["values"][0][0], 1, "{patient}");
}

/// `retries`: a follower whose leader's API cannot be reached tries the forward again as
/// often as asked (rqlite's count, at least one retry), and says how many attempts it made.
#[test]
fn retries_sends_an_unreachable_forward_again() {
    let mut leader = Node::start(&[FAST_RAFT, &["-node-id", "node1"]].concat());
    // No election for a minute: the follower keeps naming the leader once it is gone.
    let follower = Node::start(&[
        "-node-id",
        "node2",
        "-join",
        &leader.raft_addr,
        "-raft-election-timeout",
        "60s",
    ]);
    leader.execute(r#"["CREATE TABLE t(x)"]"#);
    let retries = || {
        follower.get("/debug/vars").json()["cluster"]["client_retries"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(retries(), 0);
    leader.kill();
    let before = retries();
    let answer = query(&follower, "SELECT 1", "retries=3");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("(4 attempts)"), "{answer}");
    assert_eq!(retries() - before, 3);
    let answer = query(&follower, "SELECT 1", "");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("(2 attempts)"),
        "{answer}"
    );
}
