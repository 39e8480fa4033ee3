//! Three-node clusters of real processes on loopback: replication, failover, snapshot
//! install, forwarding, redirects and membership errors.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, Cluster, Node, FAST_RAFT};

fn count_on(node: &Node, table: &str) -> Option<i64> {
    let a = node.get(&format!(
        "/db/query?level=none&q=SELECT%20count(*)%20FROM%20{table}"
    ));
    a.json()["results"][0]["values"][0][0].as_i64()
}

fn rows_on(node: &Node, sql: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", sql)
        .finish();
    node.get(&format!("/db/query?level=none&{q}")).body
}

#[test]
fn three_nodes_replicate_writes_from_any_node() {
    let c = Cluster::start(3, &[]);
    let leader = c.leader();
    let follower = c.followers()[0];
    c.nodes[leader]
        .execute(r#"["CREATE TABLE foo (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)"]"#);
    // Through a follower: forwarded to the leader, answered as the leader answered.
    let a = c.nodes[follower].post(
        "/db/execute",
        r#"[["INSERT INTO foo(name) VALUES(?)", "fiona"]]"#,
    );
    assert_eq!(
        a.body,
        r#"{"results":[{"last_insert_id":1,"rows_affected":1}]}"#
    );
    assert_eq!(
        a.header("x-rqlite-served-by"),
        Some(c.nodes[leader].raft_addr.as_str())
    );
    c.nodes[leader].execute(r#"["INSERT INTO foo(name) VALUES('declan')"]"#);
    for node in &c.nodes {
        assert!(
            wait_until(Duration::from_secs(10), || count_on(node, "foo") == Some(2)),
            "{}",
            c.logs()
        );
    }
    let expected = rows_on(&c.nodes[leader], "SELECT * FROM foo ORDER BY id");
    assert!(
        expected.contains(r#"[[1,"fiona"],[2,"declan"]]"#),
        "{expected}"
    );
    for node in &c.nodes {
        assert_eq!(rows_on(node, "SELECT * FROM foo ORDER BY id"), expected);
        assert_eq!(
            rows_on(node, "SELECT * FROM sqlite_sequence"),
            rows_on(&c.nodes[leader], "SELECT * FROM sqlite_sequence")
        );
    }
    // A default (weak) read on a follower is forwarded to the leader.
    let weak = c.nodes[follower].get("/db/query?q=SELECT%20count(*)%20FROM%20foo");
    assert!(weak.body.contains("[[2]]"), "{}", weak.body);
    // Strong and linearizable reads work from any node.
    for level in ["strong", "linearizable"] {
        let r = c.nodes[follower].get(&format!(
            "/db/query?level={level}&q=SELECT%20count(*)%20FROM%20foo"
        ));
        assert!(r.body.contains("[[2]]"), "{level}: {}", r.body);
    }
    let nodes = c.nodes[follower].get("/nodes?ver=2").json();
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 3);
    assert!(nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["reachable"] == true));
}

#[test]
fn redirect_noleader_and_no_leader_answers() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let follower = c.followers()[0];
    c.nodes[leader].execute(r#"["CREATE TABLE t (a)"]"#);
    let a = c.nodes[follower].post("/db/execute?redirect", r#"["INSERT INTO t VALUES(1)"]"#);
    assert_eq!(a.status, 301);
    assert_eq!(
        a.header("location"),
        Some(format!("http://{}/db/execute?redirect", c.nodes[leader].http_addr).as_str())
    );
    let q = c.nodes[follower].get("/db/query?q=SELECT%201&redirect&level=weak");
    assert_eq!(q.status, 301);
    assert!(q
        .header("location")
        .unwrap()
        .ends_with("/db/query?q=SELECT%201&redirect&level=weak"));
    // level=none is served by the follower itself.
    assert_eq!(
        c.nodes[follower]
            .get("/db/query?q=SELECT%201&level=none")
            .status,
        200
    );

    // Take two of three nodes down: the survivor has no leader.
    let survivor = follower;
    for i in 0..3 {
        if i != survivor {
            c.nodes[i].kill();
        }
    }
    let s = &c.nodes[survivor];
    assert!(wait_until(Duration::from_secs(20), || {
        s.post("/db/execute", r#"["INSERT INTO t VALUES(2)"]"#)
            .status
            == 503
    }));
    let a = s.post("/db/execute", r#"["INSERT INTO t VALUES(2)"]"#);
    assert_eq!((a.status, a.body.as_str()), (503, "leader not found\n"));
    assert_eq!(s.get("/db/query?q=SELECT%201").status, 503);
    assert_eq!(
        s.get("/db/query?q=SELECT%201&level=none").status,
        200,
        "none still serves locally"
    );
    assert_eq!(s.get("/readyz").status, 503);
    assert_eq!(s.get("/readyz?noleader").status, 200);
}

#[test]
fn leader_killed_during_writes_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    c.nodes[leader].execute(r#"["CREATE TABLE w (id INTEGER PRIMARY KEY, v TEXT)"]"#);
    // Writers on every node (followers forward); each records the ids it got acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(1));
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.http_addr.clone()).collect();
    let mut writers = Vec::new();
    for addr in addrs.clone() {
        let (acked, stop, next) = (Arc::clone(&acked), Arc::clone(&stop), Arc::clone(&next));
        writers.push(std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            // Bounded in time and count; failures back off so the budget is not burnt at once.
            let deadline = std::time::Instant::now() + Duration::from_secs(90);
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) || std::time::Instant::now() > deadline {
                    break;
                }
                let id = next.fetch_add(1, Ordering::Relaxed) as i64;
                let body = format!(r#"[["INSERT INTO w(id, v) VALUES(?, 'x')", {id}]]"#);
                let ok = match client
                    .post(format!("http://{addr}/db/execute"))
                    .body(body)
                    .send()
                {
                    Ok(r) => {
                        r.status().as_u16() == 200
                            && r.text().unwrap_or_default().contains("rows_affected")
                    }
                    Err(_) => false,
                };
                if ok {
                    acked.lock().unwrap().push(id);
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }));
    }
    assert!(wait_until(Duration::from_secs(20), || acked
        .lock()
        .unwrap()
        .len()
        >= 50));
    c.nodes[leader].kill();
    let before_kill = acked.lock().unwrap().len();
    // A new leader takes over and writes keep being acknowledged.
    assert!(
        wait_until(Duration::from_secs(30), || acked.lock().unwrap().len()
            >= before_kill + 50),
        "writes did not resume after the leader died:\n{}",
        c.logs()
    );
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let new_leader = c.leader();
    assert_ne!(new_leader, leader);
    let acked: Vec<i64> = acked.lock().unwrap().clone();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let total = count_on(&c.nodes[new_leader], "w").unwrap();
    for &i in &survivors {
        assert!(wait_until(Duration::from_secs(10), || count_on(
            &c.nodes[i],
            "w"
        ) == Some(total)));
        for id in &acked {
            assert!(
                rows_on(&c.nodes[i], &format!("SELECT 1 FROM w WHERE id = {id}")).contains("[[1]]"),
                "acknowledged write {id} missing on node {}",
                i + 1
            );
        }
    }
    // The killed node restarts on its data, catches up and agrees.
    let dir = c.nodes[leader].data_dir.clone();
    let id = format!("node{}", leader + 1);
    let restarted = Node::start_in(&dir, &[FAST_RAFT, &["-node-id", &id]].concat());
    assert!(
        wait_until(Duration::from_secs(30), || count_on(&restarted, "w")
            == Some(total)),
        "restarted node did not catch up:\n{}\n--- restarted ---\n{}",
        c.logs(),
        restarted.log()
    );
    let expected = rows_on(&c.nodes[new_leader], "SELECT id FROM w ORDER BY id");
    assert_eq!(
        rows_on(&restarted, "SELECT id FROM w ORDER BY id"),
        expected
    );
}

#[test]
fn late_joiner_catches_up_through_a_snapshot_install() {
    let snap = ["-raft-snap", "1000", "-raft-trailing-logs", "10"];
    let c = Cluster::start(2, &snap);
    let leader = c.leader();
    let l = &c.nodes[leader];
    l.execute(r#"["CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT)"]"#);
    // 10k writes, in batches of 100 statements per request.
    for batch in 0..100 {
        let stmts: Vec<String> = (0..100)
            .map(|i| {
                format!(
                    r#"["INSERT INTO s(v) VALUES(?)", "row {}"]"#,
                    batch * 100 + i
                )
            })
            .collect();
        // Single-statement entries make the log long enough to be purged.
        for s in &stmts[..10] {
            l.execute(&format!("[{s}]"));
        }
        l.execute(&format!("[{}]", stmts[10..].join(",")));
    }
    assert_eq!(count_on(l, "s"), Some(10_000));
    assert!(wait_until(Duration::from_secs(20), || {
        l.get("/status").json()["store"]["raft"]["last_snapshot_index"]
            .as_u64()
            .unwrap_or(0)
            > 0
    }));
    let join = c.nodes[0].raft_addr.clone();
    let late = Node::start(&[FAST_RAFT, &snap, &["-node-id", "late", "-join", &join]].concat());
    assert!(
        wait_until(Duration::from_secs(30), || count_on(&late, "s")
            == Some(10_000)),
        "late joiner did not catch up:\n{}",
        late.log()
    );
    assert_eq!(
        late.get("/status").json()["store"]["num_restores"],
        1,
        "caught up through a snapshot install"
    );
    assert_eq!(
        rows_on(&late, "SELECT * FROM s ORDER BY id"),
        rows_on(l, "SELECT * FROM s ORDER BY id")
    );
    // And it keeps following the log after the install.
    l.execute(r#"["INSERT INTO s(v) VALUES('after')"]"#);
    assert!(wait_until(Duration::from_secs(10), || count_on(&late, "s")
        == Some(10_001)));
}

#[test]
fn membership_errors_are_clear() {
    let c = Cluster::start(2, &[]);
    let leader = c.leader();
    // Removing an unknown node is a 404.
    let a = c.nodes[leader].request(
        "DELETE",
        "/remove",
        Some("application/json"),
        r#"{"id":"nosuch"}"#,
    );
    assert_eq!(a.status, 404, "{}", a.body);
    let a = c.nodes[leader].request(
        "DELETE",
        "/remove",
        Some("application/json"),
        r#"{"nope":1}"#,
    );
    assert_eq!(a.status, 400);
    // A second node claiming a running member's id is refused, and exits with the reason.
    // (A member that restarts on a new address keeps its id: that is accepted, see the
    // failover test.)
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dup");
    let join = c.nodes[0].raft_addr.clone();
    let (code, out) = common::run_binary(
        &[
            "-http-addr",
            "127.0.0.1:0",
            "-raft-addr",
            "127.0.0.1:0",
            "-raft-election-timeout",
            "500ms",
            "-node-id",
            "node2",
            "-join",
            &join,
            "-join-attempts",
            "1",
            data.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("node id \"node2\" is already in use by a running node"),
        "{out}"
    );
    // Removing a follower through the leader works, and /nodes no longer lists it.
    let follower = c.followers()[0];
    let id = format!("node{}", follower + 1);
    let a = c.nodes[leader].request(
        "DELETE",
        "/remove",
        Some("application/json"),
        format!(r#"{{"id":"{id}"}}"#),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(wait_until(Duration::from_secs(10), || {
        c.nodes[leader]
            .get("/nodes")
            .json()
            .as_object()
            .is_some_and(|o| !o.contains_key(&id))
    }));
}

/// Group commit: 64 clients writing at once share Raft entries (the leader proposes fewer
/// entries than it receives writes), yet each gets its own results and raft index, and every
/// node ends with the same rows, including the per-write `random()` and clock values. One
/// client's writes end the apply transaction with a ROLLBACK conflict clause; the writes that
/// shared its entries survive.
#[test]
fn concurrent_writes_share_entries_and_agree_on_every_node() {
    let cluster = Cluster::start(3, &[]);
    let leader = &cluster.nodes[cluster.leader()];
    leader.execute(
        r#"["CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER UNIQUE, r INTEGER, ts TEXT)",
            "CREATE TABLE once(x INTEGER PRIMARY KEY ON CONFLICT ROLLBACK)",
            "INSERT INTO once VALUES(1)"]"#,
    );
    let before = leader.get("/debug/vars").json()["store"]["write_entries"]
        .as_u64()
        .expect("write_entries");
    const CLIENTS: u64 = 64;
    const EACH: u64 = 5;
    let barrier = std::sync::Barrier::new(CLIENTS as usize);
    let answers: Mutex<Vec<(u64, serde_json::Value)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let (barrier, answers) = (&barrier, &answers);
            s.spawn(move || {
                barrier.wait();
                for i in 0..EACH {
                    let k = c * EACH + i;
                    let body = if c == 0 {
                        // Fails and rolls back the whole apply transaction.
                        r#"[["INSERT INTO once VALUES(?)", 1]]"#.to_string()
                    } else {
                        format!(
                            r#"[["INSERT INTO t(k, r, ts) VALUES(?, random(), strftime('%Y-%m-%d %H:%M:%f','now'))", {k}]]"#
                        )
                    };
                    let a = leader.post("/db/execute?raft_index", &body);
                    assert_eq!(a.status, 200, "{}", a.body);
                    answers.lock().unwrap().push((k, a.json()));
                }
            });
        }
    });
    let answers = answers.into_inner().unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (k, a) in &answers {
        let r = &a["results"][0];
        assert!(a["raft_index"].as_u64().is_some_and(|i| i > 0), "{a}");
        if *k < EACH {
            let err = r["error"].as_str().unwrap_or_default();
            assert!(err.contains("UNIQUE"), "{a}");
            continue;
        }
        assert!(r.get("error").is_none(), "{a}");
        let id = r["last_insert_id"].as_i64().expect("last_insert_id");
        assert!(ids.insert(id), "two writes reported rowid {id}");
        let stored = rows_on(leader, &format!("SELECT k FROM t WHERE id = {id}"));
        assert!(stored.contains(&format!("[[{k}]]")), "rowid {id}: {stored}");
    }
    let writes = CLIENTS * EACH;
    let entries = leader.get("/debug/vars").json()["store"]["write_entries"]
        .as_u64()
        .expect("write_entries")
        - before;
    assert!(
        entries < writes,
        "{writes} concurrent writes took {entries} entries: nothing was batched"
    );
    let expected = (CLIENTS - 1) * EACH;
    let all = "SELECT id, k, r, ts FROM t ORDER BY id";
    let on_leader = rows_on(leader, all);
    for node in &cluster.nodes {
        assert!(
            wait_until(Duration::from_secs(20), || count_on(node, "t")
                == Some(expected as i64)),
            "{} has {:?} rows, expected {expected}",
            node.http_addr,
            count_on(node, "t")
        );
        assert_eq!(rows_on(node, all), on_leader, "{} differs", node.http_addr);
        assert_eq!(count_on(node, "once"), Some(1));
    }
}

/// `-raft-reap-node-timeout` and `-raft-reap-read-only-node-timeout`, as rqlited: the leader
/// removes a member it has not heard from for longer than its kind's timeout, and never one
/// that answers.
#[test]
fn the_leader_reaps_members_it_has_not_heard_from() {
    // Timeouts well above the heartbeat interval (200 ms): a busy machine delays answers.
    let reap = [
        "-raft-reap-node-timeout",
        "4s",
        "-raft-reap-read-only-node-timeout",
        "2s",
    ];
    let c = Cluster::start(3, &reap);
    let leader = c.leader();
    let mut args: Vec<&str> = FAST_RAFT.to_vec();
    args.extend_from_slice(&reap);
    args.extend_from_slice(&["-node-id", "r1", "-raft-non-voter=true", "-join"]);
    args.push(&c.nodes[leader].raft_addr);
    let mut replica = Node::start(&args);
    let l = &c.nodes[leader];
    let members = |n: &Node| {
        n.get("/nodes?nonvoters")
            .json()
            .as_object()
            .map_or(0, |o| o.len())
    };
    let reaped = |n: &Node| n.get("/debug/vars").json()["store"]["nodes_reaped_ok"].clone();
    assert!(wait_until(Duration::from_secs(10), || members(l) == 4));
    // Everyone answers: nobody is reaped, for longer than both timeouts.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(members(l), 4, "{}", c.logs());
    assert_eq!(reaped(l), 0);

    // The read replica goes: reaped after its timeout.
    replica.kill();
    assert!(
        wait_until(Duration::from_secs(15), || members(l) == 3),
        "{}",
        c.logs()
    );
    // Counted once the removal is committed, which /nodes may show a moment before.
    assert!(
        wait_until(Duration::from_secs(5), || reaped(l) == 1),
        "{}",
        reaped(l)
    );
    assert!(!l.get("/nodes?nonvoters").body.contains("\"r1\""));

    // A voter goes: reaped after its own (longer) timeout; the two left keep serving.
    let mut c = c;
    let follower = c.followers()[0];
    let killed_at = std::time::Instant::now();
    c.nodes[follower].kill();
    let l = &c.nodes[leader];
    assert!(
        wait_until(Duration::from_secs(20), || members(l) == 2),
        "{}",
        c.logs()
    );
    assert!(
        killed_at.elapsed() >= Duration::from_secs(3),
        "a voter is not reaped before its timeout ({:?})",
        killed_at.elapsed()
    );
    // Counted once the removal is committed, which /nodes may show a moment before.
    assert!(
        wait_until(Duration::from_secs(5), || reaped(l) == 2),
        "{}",
        reaped(l)
    );
    l.execute(r#"["CREATE TABLE after_reaping(x)"]"#);
    let other = c.followers()[0];
    assert!(wait_until(Duration::from_secs(10), || count_on(
        &c.nodes[other],
        "after_reaping"
    ) == Some(0)));
}

/// `-raft-remove-shutdown`, as rqlited: a node the leader removes stops (exit 0); a node
/// started without it stays up, outside the cluster. The leader tells the removed node: it
/// cannot learn it from the log, which stops reaching it as the removal is appended.
#[test]
fn a_removed_node_stops_with_raft_remove_shutdown() {
    let c = Cluster::start(3, &[]);
    let leader = c.leader();
    let mut args: Vec<&str> = FAST_RAFT.to_vec();
    args.extend_from_slice(&["-node-id", "quitter", "-raft-remove-shutdown", "-join"]);
    args.push(&c.nodes[leader].raft_addr);
    let mut quitter = Node::start(&args);
    c.wait_for_members(4);
    let remove = |c: &Cluster, id: &str| {
        let a = c.nodes[leader].request(
            "DELETE",
            "/remove",
            Some("application/json"),
            format!(r#"{{"id":"{id}"}}"#),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    };
    remove(&c, "quitter");
    let status = quitter.wait_for_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        quitter.log()
    );
    assert!(quitter.log().contains("removed from the cluster"));

    // Without the flag, a removed node keeps running.
    let follower = c.followers()[0];
    let id = format!("node{}", follower + 1);
    remove(&c, &id);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        c.nodes[follower].is_running(),
        "{}",
        c.nodes[follower].log()
    );
    assert!(c.nodes[follower].log().contains("this node was removed"));
    c.nodes[leader].execute(r#"["CREATE TABLE still_serving(x)"]"#);
}
