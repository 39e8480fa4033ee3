//! rqlite's operational surface, end to end on real processes: rqlited-style command lines,
//! joining, `peers.json` recovery, `/status` fields and types, `/debug/vars`, `/nodes`,
//! `/readyz`, `POST /snapshot`, `POST /reap` and `POST /leader` (stepdown).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{run_binary, wait_until, Cluster, Node, FAST_RAFT};
use serde_json::Value;

/// A free loopback port (bound, then released) for tests that need a node's address before
/// it starts.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn status(node: &Node) -> Value {
    node.get("/status").json()
}

fn count(node: &Node, table: &str) -> Option<i64> {
    let a = node.get(&format!(
        "/db/query?level=none&q=SELECT%20COUNT(*)%20FROM%20{table}"
    ));
    a.json()["results"][0]["values"][0][0].as_i64()
}

fn state_of(node: &Node) -> String {
    status(node)["store"]["raft"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Every `/status` field that tools read, with rqlite's name and JSON type.
fn assert_status_fields(
    s: &Value,
    node: &Node,
    expect_state: &str,
    leader: &Node,
    leader_id: &str,
) {
    let store = &s["store"];
    let raft = &store["raft"];
    assert_eq!(raft["state"], expect_state, "{s}");
    for key in [
        "term",
        "commit_index",
        "applied_index",
        "last_log_index",
        "last_snapshot_index",
        "fsm_pending",
    ] {
        assert!(raft[key].is_u64(), "store.raft.{key} is not a number: {s}");
    }
    assert!(raft["term"].as_u64().unwrap() >= 1, "{s}");
    assert!(raft["applied_index"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(raft["voter"], Value::Bool(true), "{s}");
    assert_eq!(store["leader"]["node_id"], leader_id, "{s}");
    assert_eq!(store["leader"]["addr"], leader.raft_addr.as_str(), "{s}");
    assert!(store["db_applied_index"].is_u64(), "{s}");
    assert!(store["fsm_index"].is_u64(), "{s}");
    assert!(store["node_id"].is_string(), "{s}");
    assert_eq!(
        store["dir"].as_str().map(Path::new),
        Some(node.data_dir.as_path()),
        "{s}"
    );
    let sqlite = &store["sqlite3"];
    assert!(sqlite["path"].is_string(), "{s}");
    assert!(sqlite["db_size"].is_u64(), "{s}");
    for conn in ["rw", "ro"] {
        assert!(sqlite["pragmas"][conn].is_object(), "{s}");
    }
    assert_eq!(s["http"]["bind_addr"], node.http_addr.as_str(), "{s}");
    assert!(s["node"]["start_time"].is_string(), "{s}");
    assert!(s["node"]["uptime"].is_string(), "{s}");
    assert!(s["build"]["version"].is_string(), "{s}");
}

#[test]
fn rqlited_style_command_lines_form_a_cluster_and_status_has_rqlites_fields() {
    let style = [
        "-raft-non-voter=false",
        "-fk=true",
        "-raft-snap",
        "100",
        "-raft-snap-int",
        "1s",
        "-raft-cluster-remove-shutdown=false",
        "-raft-log-level",
        "INFO",
    ];
    let args = |id: &str| -> Vec<String> {
        let mut a: Vec<String> = FAST_RAFT.iter().map(|s| s.to_string()).collect();
        a.extend(style.iter().map(|s| s.to_string()));
        a.extend(["-node-id".to_string(), id.to_string()]);
        a
    };
    let a1 = args("n1");
    let n1 = Node::start(&a1.iter().map(String::as_str).collect::<Vec<_>>());
    // `-join ADDR` without -bootstrap-expect, as rqlited's scripts start a node.
    let mut a2 = args("n2");
    a2.extend(["-join".into(), n1.raft_addr.clone()]);
    let n2 = Node::start(&a2.iter().map(String::as_str).collect::<Vec<_>>());
    let mut a3 = args("n3");
    a3.extend(["-join".into(), n1.raft_addr.clone()]);
    let n3 = Node::start(&a3.iter().map(String::as_str).collect::<Vec<_>>());
    n1.execute(
        r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t(v) VALUES ('x')"]"#,
    );
    assert!(wait_until(Duration::from_secs(10), || count(&n3, "t") == Some(1)));

    assert_status_fields(&status(&n1), &n1, "Leader", &n1, "n1");
    for f in [&n2, &n3] {
        assert_status_fields(&status(f), f, "Follower", &n1, "n1");
    }
    // -fk=true reached both connections.
    let s = status(&n2);
    for conn in ["rw", "ro"] {
        assert_eq!(
            s["store"]["sqlite3"]["pragmas"][conn]["foreign_keys"], "1",
            "{s}"
        );
    }
    // `?key=` keeps one sub-object.
    let leader = n2.get("/status?key=store.leader").json();
    assert_eq!(leader["node_id"], "n1");
    // No backup yet: no last_backup_time; after one, at the top level.
    assert!(status(&n1).get("last_backup_time").is_none());
    assert_eq!(n1.get("/db/backup").status, 200);
    assert!(status(&n1)["last_backup_time"].is_string());
}

#[test]
fn flags_that_do_not_apply_warn_and_gcs_storage_refuses() {
    let dir = tempfile::tempdir().unwrap();
    // -auto-backup and -auto-restore to a storage raftlite cannot reach (GCS: no emulator runs
    // here to test it); tests/auto_backup.rs and tests/auto_backup_s3.rs have the rest.
    for (flag, text) in [
        ("-auto-restore", r#"{"version":1,"type":"gcs","sub":{}}"#),
        (
            "-auto-backup",
            r#"{"version":1,"type":"gcs","interval":"1m","sub":{}}"#,
        ),
    ] {
        let cfg = dir.path().join("cfg.json");
        std::fs::write(&cfg, text).unwrap();
        let data = dir.path().join("d");
        let (code, out) = run_binary(
            &[
                "-http-addr",
                "127.0.0.1:0",
                "-raft-addr",
                "127.0.0.1:0",
                flag,
                cfg.to_str().unwrap(),
                data.to_str().unwrap(),
            ],
            Duration::from_secs(20),
        );
        assert_eq!(code, Some(1), "{flag}: {out}");
        assert!(
            out.contains(&flag[1..]) && out.contains("refusing to start"),
            "{out}"
        );
    }
    // A flag with no effect here is accepted, with a warning in the log.
    let node = Node::start(&["-compress-snap-transport", "-raft-commit-timeout=50ms"]);
    assert!(
        node.log()
            .contains("flag -compress-snap-transport is accepted"),
        "{}",
        node.log()
    );
    // Flags after the data directory are an error, as in rqlited.
    let (code, out) = run_binary(&["/tmp/x", "-fk"], Duration::from_secs(10));
    assert_eq!(code, Some(1));
    assert!(out.contains("arguments after data directory"), "{out}");
}

#[test]
fn join_through_a_follower_and_rejoin_after_data_loss_is_idempotent() {
    let c = Cluster::start(2, &[]);
    let leader = c.leader();
    let follower = c.followers()[0];
    c.nodes[leader].execute(r#"["CREATE TABLE j (x)", "INSERT INTO j VALUES (1)"]"#);
    // n3 joins through the follower: the follower points it to the leader.
    let (http, raft) = (free_addr(), free_addr());
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("n3");
    let n3_args = [
        "-raft-election-timeout",
        "500ms",
        "-node-id",
        "node3",
        "-http-addr",
        &http,
        "-raft-addr",
        &raft,
        "-join",
        &c.nodes[follower].raft_addr,
    ];
    let mut n3 = Node::start_in(&data, &n3_args);
    assert!(wait_until(Duration::from_secs(10), || count(&n3, "j") == Some(1)));
    let nodes = c.nodes[leader].get("/nodes").json();
    assert_eq!(nodes["node3"]["addr"], raft.as_str(), "{nodes}");
    let ignored_before = c.nodes[leader].get("/debug/vars").json()["store"]["num_ignored_joins"]
        .as_u64()
        .unwrap();
    // n3 loses its data and comes back with the same id and addresses: the join changes
    // nothing in the membership (rqlite's ignored join), and the node catches up again.
    n3.kill();
    std::fs::remove_dir_all(&data).unwrap();
    let n3 = Node::start_in(&data, &n3_args);
    assert!(wait_until(Duration::from_secs(20), || count(&n3, "j") == Some(1)));
    // The data can arrive through Raft (n3 is still a member at the same address) before
    // its join request reaches the leader: wait for the join to be counted, bounded.
    let ignored = || {
        c.nodes[leader].get("/debug/vars").json()["store"]["num_ignored_joins"]
            .as_u64()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(20), || ignored() > ignored_before),
        "{}\n--- leader ---\n{}",
        n3.log(),
        c.nodes[leader].log()
    );
    let vars = c.nodes[leader].get("/debug/vars").json();
    assert_eq!(
        vars["store"]["num_ignored_joins"].as_u64().unwrap(),
        ignored_before + 1,
        "{vars}"
    );
    assert!(
        vars["cluster"]["num_join_req"].as_u64().unwrap() >= 2,
        "{vars}"
    );
}

#[test]
fn restarted_node_with_new_address_is_updated() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let f = c.followers()[0];
    let id = format!("node{}", f + 1);
    let old = c.nodes[f].raft_addr.clone();
    let temp = c.nodes[f].take_temp();
    let dir = c.nodes[f].data_dir.clone();
    c.nodes[f].stop();
    // Same data directory, new ports (port 0), the same -join as before.
    let join = c.nodes[leader].raft_addr.clone();
    let back = Node::start_in(
        &dir,
        &[
            "-raft-election-timeout",
            "500ms",
            "-node-id",
            &id,
            "-join",
            &join,
        ],
    );
    assert_ne!(back.raft_addr, old);
    assert!(
        wait_until(Duration::from_secs(20), || {
            c.nodes[leader].get("/nodes").json()[&id]["addr"] == back.raft_addr.as_str()
        }),
        "{}",
        c.nodes[leader].get("/nodes").body
    );
    assert!(
        c.nodes[leader].get("/debug/vars").json()["store"]["num_removed_before_joins"]
            .as_u64()
            .unwrap()
            >= 1
    );
    drop(temp);
}

#[test]
fn single_node_leader_started_with_join_refuses() {
    let other = Node::start(&[]);
    let mut single = Node::start(&[]);
    let temp = single.take_temp();
    let dir = single.data_dir.clone();
    single.stop();
    let (code, out) = run_binary(
        &[
            "-http-addr",
            "127.0.0.1:0",
            "-raft-addr",
            "127.0.0.1:0",
            "-join",
            &other.raft_addr,
            dir.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("already the leader of a single-node cluster"),
        "{out}"
    );
    drop(temp);
}

#[test]
fn peers_json_recovers_a_follower_that_survived_a_lost_majority() {
    recover_with_peers_json(false);
}

#[test]
fn peers_json_recovers_the_leader_that_survived_a_lost_majority() {
    recover_with_peers_json(true);
}

/// Two of three nodes are lost for good; the survivor (the old leader, or a follower whose
/// vote names a dead leader) is restarted with a `peers.json` listing only itself.
fn recover_with_peers_json(survivor_was_leader: bool) {
    let mut c = Cluster::start(3, &[]);
    let leader = c.leader();
    let s = if survivor_was_leader {
        leader
    } else {
        c.followers()[0]
    };
    let survivor_id = format!("node{}", s + 1);
    c.nodes[leader].execute(
        r#"["CREATE TABLE r (x)", "INSERT INTO r VALUES (1)", "INSERT INTO r VALUES (2)"]"#,
    );
    assert!(wait_until(Duration::from_secs(10), || c
        .nodes
        .iter()
        .all(|n| count(n, "r") == Some(2))));
    let survivor_raft = c.nodes[s].raft_addr.clone();
    let temp = c.nodes[s].take_temp();
    let dir = c.nodes[s].data_dir.clone();
    for n in &mut c.nodes {
        n.kill();
    }
    let peers = dir.join("raft").join("peers.json");
    // A bad file stops the start with a clear message and is left in place.
    std::fs::write(&peers, r#"[{"id":"someone-else","address":"127.0.0.1:1"}]"#).unwrap();
    let (code, out) = run_binary(
        &[
            "-http-addr",
            "127.0.0.1:0",
            "-raft-addr",
            "127.0.0.1:0",
            dir.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("peers.json") && out.contains("not in the list"),
        "{out}"
    );
    assert!(peers.exists());

    std::fs::write(
        &peers,
        format!(r#"[{{"id":"{survivor_id}","address":"{survivor_raft}","non_voter":false}}]"#),
    )
    .unwrap();
    let node = Node::start_in(
        &dir,
        &["-raft-election-timeout", "500ms", "-node-id", &survivor_id],
    );
    assert_eq!(state_of(&node), "Leader");
    assert_eq!(count(&node, "r"), Some(2));
    assert!(!peers.exists(), "peers.json must be consumed");
    assert!(dir.join("raft").join("peers.info").exists());
    let nodes = node.get("/nodes").json();
    assert_eq!(nodes.as_object().map(|o| o.len()), Some(1), "{nodes}");
    assert_eq!(node.get("/debug/vars").json()["store"]["num_recoveries"], 1);
    // It takes writes alone, and stays a one-node cluster across a restart.
    node.execute(r#"["INSERT INTO r VALUES (3)"]"#);
    let mut node = node;
    node.stop();
    let node = Node::start_in(
        &dir,
        &["-raft-election-timeout", "500ms", "-node-id", &survivor_id],
    );
    assert_eq!(count(&node, "r"), Some(3));
    assert_eq!(
        node.get("/nodes").json().as_object().map(|o| o.len()),
        Some(1)
    );
    drop(temp);
}

#[test]
fn stepdown_hands_leadership_to_another_node() {
    let c = Cluster::start(3, &[]);
    let old = c.leader();
    c.nodes[old].execute(r#"["CREATE TABLE s (x)"]"#);
    let a = c.nodes[old].request("POST", "/leader", None, "");
    assert_eq!(a.status, 200, "{}", a.body);
    let new = c.leader();
    assert_ne!(new, old, "{}", c.logs());
    // The cluster works under its new leader.
    c.nodes[new].execute(r#"["INSERT INTO s VALUES (1)"]"#);
    // To a named target, sent to a follower (forwarded to the leader).
    let target = (0..3).find(|i| *i != new).unwrap();
    let via = (0..3).find(|i| *i != new && *i != target).unwrap();
    let body = format!(r#"{{"id":"node{}"}}"#, target + 1);
    let a = c.nodes[via].request("POST", "/leader?wait", Some("application/json"), body);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        wait_until(Duration::from_secs(10), || state_of(&c.nodes[target])
            == "Leader"),
        "{}",
        c.logs()
    );
    // A target that is not a voting member is a clear 400.
    let leader = c.leader();
    let a = c.nodes[leader].request(
        "POST",
        "/leader",
        Some("application/json"),
        r#"{"id":"nosuch"}"#,
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("nosuch"), "{}", a.body);
    let a = c.nodes[leader].request("POST", "/leader", Some("application/json"), "{not json");
    assert_eq!(a.status, 400, "{}", a.body);
}

#[test]
fn snapshot_reap_and_debug_vars() {
    let node = Node::start(&[]);
    node.execute(r#"["CREATE TABLE v (x)", "INSERT INTO v VALUES (1)"]"#);
    let a = node.request("POST", "/snapshot", None, "");
    assert_eq!(a.status, 200, "{}", a.body);
    // Nothing new since: 204.
    assert_eq!(node.request("POST", "/snapshot", None, "").status, 204);
    for i in 0..20 {
        node.execute(&format!(r#"["INSERT INTO v VALUES ({i})"]"#));
    }
    let a = node.request("POST", "/snapshot?trailing_logs=0", None, "");
    assert_eq!(a.status, 200, "{}", a.body);
    let s = status(&node);
    let raft = &s["store"]["raft"];
    assert_eq!(raft["last_snapshot_index"], raft["applied_index"], "{s}");
    // With trailing_logs=0 the log is purged up to the snapshot (openraft may delay it).
    assert!(
        wait_until(Duration::from_secs(10), || {
            let s = status(&node);
            s["store"]["raft"]["purged_index"] == s["store"]["raft"]["last_snapshot_index"]
        }),
        "{}",
        status(&node)
    );
    assert_eq!(
        node.request("POST", "/snapshot?trailing_logs=x", None, "")
            .status,
        400
    );
    assert_eq!(node.get("/snapshot").status, 405);

    let a = node.request("POST", "/reap", None, "");
    assert_eq!(a.status, 200);
    assert_eq!(a.body, r#"{"snapshots_reaped":0,"wals_checkpointed":0}"#);
    assert_eq!(node.get("/reap").status, 405);

    assert_eq!(node.get("/db/backup").status, 200);
    let vars = node.get("/debug/vars");
    assert_eq!(vars.status, 200);
    let v = vars.json();
    assert!(v["store"]["num_snapshots"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["store"]["num_restores"], 0, "{v}");
    assert_eq!(v["store"]["num_backups"], 1, "{v}");
    assert_eq!(v["http"]["backups"], 1, "{v}");
    assert_eq!(v["http"]["loads"], 0, "{v}");
    assert_eq!(v["http"]["user_snapshots"], 3, "{v}");
    assert_eq!(v["http"]["user_reaps"], 1, "{v}");
    assert!(v["cmdline"].is_array(), "{v}");
    let only = node.get("/debug/vars?key=http").json();
    assert_eq!(only.as_object().map(|o| o.len()), Some(1), "{only}");
    assert_eq!(only["http"]["backups"], 1);
}

#[test]
fn nodes_readyz_and_leaving_on_shutdown() {
    let c = Cluster::start(3, &[]);
    let leader = c.leader();
    let follower = c.followers()[0];
    // A read replica, started the rqlited way.
    let mut replica = Node::start(&[
        "-raft-election-timeout",
        "500ms",
        "-node-id",
        "r1",
        "-raft-non-voter=true",
        "-raft-cluster-remove-shutdown=true",
        "-join",
        &c.nodes[leader].raft_addr,
    ]);
    let f = &c.nodes[follower];
    assert!(wait_until(Duration::from_secs(10), || f
        .get("/nodes?nonvoters")
        .json()
        .as_object()
        .is_some_and(|o| o.len() == 4)));
    // Legacy shape: voters only, keyed by id.
    let legacy = f.get("/nodes").json();
    let obj = legacy.as_object().unwrap();
    assert_eq!(obj.len(), 3, "{legacy}");
    let l_id = format!("node{}", leader + 1);
    let l = &legacy[&l_id];
    assert_eq!(l["id"], l_id.as_str());
    assert_eq!(l["leader"], true);
    assert_eq!(l["reachable"], true);
    assert_eq!(l["voter"], true);
    assert_eq!(l["addr"], c.nodes[leader].raft_addr.as_str());
    assert_eq!(
        l["api_addr"],
        format!("http://{}", c.nodes[leader].http_addr).as_str()
    );
    // The replica's own /status: a follower that does not vote.
    let rs = status(&replica);
    assert_eq!(rs["store"]["raft"]["state"], "Follower", "{rs}");
    assert_eq!(rs["store"]["raft"]["voter"], false, "{rs}");
    let with = f.get("/nodes?nonvoters").json();
    assert_eq!(with["r1"]["voter"], false, "{with}");
    // ver=2: a list sorted by id.
    let v2 = f.get("/nodes?ver=2&nonvoters").json();
    let ids: Vec<&str> = v2["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["node1", "node2", "node3", "r1"]);

    // readyz?sync on a follower right after a write: it answers once caught up.
    c.nodes[leader].execute(r#"["CREATE TABLE y (x)", "INSERT INTO y VALUES (1)"]"#);
    let a = replica.get("/readyz?sync&timeout=10s");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        "[+]node ok\n[+]leader ok\n[+]store ok\n[+]db ok\n[+]sync ok"
    );
    assert_eq!(count(&replica, "y"), Some(1));
    assert_eq!(f.get("/readyz?noleader").body, "[+]node ok");

    // -raft-cluster-remove-shutdown=true: a graceful stop leaves the cluster.
    let code = replica.stop();
    assert!(code.success());
    assert!(wait_until(Duration::from_secs(10), || !c.nodes[leader]
        .get("/nodes?nonvoters")
        .json()
        .as_object()
        .is_some_and(|o| o.contains_key("r1"))));
}

#[test]
fn leader_steps_down_on_graceful_shutdown() {
    let mut c = Cluster::start(3, &[]);
    let old = c.leader();
    let code = c.nodes[old].stop();
    assert!(code.success());
    let log = c.nodes[old].log();
    assert!(log.contains("stepped down before shutting down"), "{log}");
    let new = c.leader();
    assert_ne!(new, old);
    c.nodes[new].execute(r#"["CREATE TABLE z (x)"]"#);
}

/// `POST /reap` reports what it did: the finished backup copies kept for reuse are let go
/// (`snapshots_reaped`), and the WAL's waiting frames are copied back into the database
/// (`wals_checkpointed`); a second reap finds nothing left.
#[test]
fn reap_lets_kept_copies_go_and_checkpoints_the_wal() {
    let node = Node::start(&["-backup-keep", "60s"]);
    node.execute(r#"["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)"]"#);
    assert_eq!(node.get("/db/backup").status, 200);
    let kept = || {
        status(&node)["store"]["backup_copies"]["kept_bytes"]
            .as_u64()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(10), || kept() > 0),
        "the copy was never kept: {}",
        status(&node)
    );
    node.execute(r#"["INSERT INTO t VALUES(2)"]"#);
    let a = node.request("POST", "/reap", None, "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, r#"{"snapshots_reaped":1,"wals_checkpointed":1}"#);
    assert_eq!(kept(), 0);
    let a = node.request("POST", "/reap", None, "");
    assert_eq!(a.body, r#"{"snapshots_reaped":0,"wals_checkpointed":0}"#);
    // Nothing was lost: the rows are there, and the WAL's content is in the database file.
    let rows = node.get("/db/query?q=SELECT%20count(*)%20FROM%20t").json();
    assert_eq!(rows["results"][0]["values"][0][0], 2, "{rows}");
}

/// `-raft-snap-wal-size`, checked every `-raft-snap-int`, as rqlited: a WAL holding that many
/// bytes starts a snapshot whatever `-raft-snap` says (`store.num_wal_snapshots`); 0 turns it
/// off.
#[test]
fn a_wal_past_its_size_starts_a_snapshot() {
    let args = |size: &'static str| {
        [
            "-raft-snap",
            "1000000",
            "-raft-snap-int",
            "100ms",
            "-raft-snap-wal-size",
            size,
        ]
    };
    let sized = Node::start(&args("8192"));
    let off = Node::start(&args("0"));
    let wal_snapshots =
        |n: &Node| n.get("/debug/vars").json()["store"]["num_wal_snapshots"].as_u64();
    let snapshot_index =
        |n: &Node| n.get("/status").json()["store"]["raft"]["last_snapshot_index"].as_u64();
    for node in [&sized, &off] {
        node.execute(r#"["CREATE TABLE t(x)"]"#);
        for _ in 0..10 {
            node.execute(r#"["INSERT INTO t VALUES(randomblob(2000))"]"#);
        }
    }
    assert!(
        wait_until(Duration::from_secs(10), || wal_snapshots(&sized)
            .is_some_and(|n| n >= 1)
            && snapshot_index(&sized).is_some_and(|i| i > 0)),
        "{}",
        sized.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(wal_snapshots(&off), Some(0));
    assert_eq!(
        snapshot_index(&off),
        Some(0),
        "no snapshot without the WAL's size"
    );
}

/// `-auto-optimize-int`, as rqlited: the leader runs `PRAGMA optimize` every interval, here
/// as an entry, so every node applies it at the same point (`store.num_auto_optimizes`);
/// `0h` turns it off.
#[test]
fn the_leader_optimizes_the_database_every_interval() {
    let c = Cluster::start(2, &["-auto-optimize-int", "1s"]);
    let leader = c.leader();
    let l = &c.nodes[leader];
    l.execute(
        r#"["CREATE TABLE t(x, y)", "CREATE INDEX t_x ON t(x)",
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<500) INSERT INTO t SELECT i % 7, i FROM c"]"#,
    );
    let optimizes = |n: &Node| n.get("/debug/vars").json()["store"]["num_auto_optimizes"].as_u64();
    let applied = |n: &Node| n.get("/status").json()["store"]["raft"]["applied_index"].as_u64();
    // The first run may come before these reads (an interval after the leader began): wait
    // for one after them.
    let before = applied(l).unwrap();
    let runs = optimizes(l).unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || optimizes(l)
            .is_some_and(|n| n > runs)),
        "{}",
        c.logs()
    );
    // An entry of its own, which the follower applied too: the same database on both.
    assert!(applied(l).unwrap() > before);
    let follower = c.followers()[0];
    let digest = |n: &Node| n.get("/status?digest").json()["store"]["db_digest"].clone();
    assert!(wait_until(Duration::from_secs(10), || {
        let (a, b) = (digest(l), digest(&c.nodes[follower]));
        a["applied_index"] == b["applied_index"] && a["digest"] == b["digest"]
    }));
    assert_eq!(
        optimizes(&c.nodes[follower]),
        Some(0),
        "only the leader proposes"
    );

    let off = Node::start(&["-auto-optimize-int", "0h"]);
    assert!(
        off.get("/status").json()["store"]
            .get("auto_vacuum")
            .is_none(),
        "only with -auto-vacuum-int"
    );
    off.execute(r#"["CREATE TABLE t(x)"]"#);
    let at = applied(&off);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(optimizes(&off), Some(0));
    assert_eq!(applied(&off), at, "no entry of its own");
}

/// `-auto-vacuum-int`, as rqlited: the leader has the database vacuumed every interval, here
/// as an entry every node runs outside its transactions (`VACUUM` cannot run inside one): the
/// pages that deleted rows freed are gone on every node, the rows are the same, and the rowids
/// VACUUM renumbers (a table with neither an INTEGER PRIMARY KEY nor an index) are renumbered
/// alike on every node.
#[test]
fn the_leader_vacuums_the_database_every_interval() {
    let c = Cluster::start(2, &["-auto-vacuum-int", "2s"]);
    let leader = c.leader();
    let l = &c.nodes[leader];
    let follower = &c.nodes[c.followers()[0]];
    let vacuums = |n: &Node| n.get("/debug/vars").json()["store"]["num_auto_vacuums"].as_u64();
    let free_pages = |n: &Node| {
        let r: serde_json::Value =
            serde_json::from_str(&n.query_at("PRAGMA freelist_count", "none")).unwrap();
        r["results"][0]["values"][0][0].as_u64()
    };
    let rows = |n: &Node| n.query_at("SELECT rowid, x, length(y) FROM t ORDER BY rowid", "none");
    let applied = |n: &Node| n.get("/status").json()["store"]["raft"]["applied_index"].as_u64();
    l.execute(
        r#"["CREATE TABLE t(x, y)",
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<3000) INSERT INTO t SELECT i, zeroblob(2000) FROM c",
            "DELETE FROM t WHERE x <= 2990"]"#,
    );
    // Wait for a run that began after the delete was applied.
    let runs = vacuums(l).unwrap();
    let before = applied(l).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || vacuums(l)
            .is_some_and(|n| n > runs)),
        "{}",
        c.logs()
    );
    assert!(applied(l).unwrap() > before, "an entry of its own");
    assert!(
        wait_until(Duration::from_secs(10), || applied(follower) == applied(l)),
        "{}",
        c.logs()
    );
    assert_eq!(free_pages(l), Some(0), "{}", c.logs());
    assert_eq!(free_pages(follower), Some(0), "{}", c.logs());
    // The ten rows left (rowids 2991..3000) now have rowids 1..10, on both nodes.
    let on_leader = rows(l);
    assert!(
        on_leader.contains("[[1,2991,2000],[2,2992,2000]"),
        "{on_leader}"
    );
    assert!(on_leader.contains("[10,3000,2000]]"), "{on_leader}");
    assert_eq!(rows(follower), on_leader);
    let digest = |n: &Node| n.get("/status?digest").json()["store"]["db_digest"].clone();
    assert!(wait_until(Duration::from_secs(10), || {
        let (a, b) = (digest(l), digest(follower));
        a["applied_index"] == b["applied_index"] && a["digest"] == b["digest"]
    }));
    assert_eq!(vacuums(follower), Some(0), "only the leader proposes");
    // rqlite's /status object: the leader's last run, and when the next is due.
    let auto_vacuum = l.get("/status").json()["store"]["auto_vacuum"].clone();
    assert!(auto_vacuum["last_vacuum"].is_string(), "{auto_vacuum}");
    assert!(
        auto_vacuum["next_vacuum_after"].as_str().unwrap()
            > auto_vacuum["last_vacuum"].as_str().unwrap()
    );
    let on_follower = follower.get("/status").json()["store"]["auto_vacuum"].clone();
    assert!(on_follower["last_vacuum"].is_null() && on_follower["next_vacuum_after"].is_string());
    assert_eq!(
        l.get("/debug/vars").json()["store"]["num_auto_vacuums_failed"],
        0
    );
    // Writes go on as before.
    assert!(l
        .execute(r#"["INSERT INTO t VALUES(0, 'after')"]"#)
        .contains(r#""rows_affected":1"#));
}

/// `-raft-apply-timeout`: a write not applied within it answers rqlite's way (200, the reason
/// in `error`), and its entry goes on: the rows arrive.
#[test]
fn a_write_slower_than_the_apply_timeout_answers_and_still_lands() {
    let node = Node::start(&["-raft-apply-timeout", "100ms"]);
    node.execute(r#"["CREATE TABLE t(x)"]"#);
    let a = node.post(
        "/db/execute",
        r#"["WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<2000000) INSERT INTO t SELECT i FROM c"]"#,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let error = a.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("-raft-apply-timeout 100ms") && error.contains("may still be applied"),
        "{}",
        a.body
    );
    assert!(wait_until(Duration::from_secs(60), || node
        .query("SELECT count(*) FROM t")
        .contains("2000000")));
    // A quick write is answered as usual.
    assert!(!node
        .execute(r#"["INSERT INTO t VALUES(0)"]"#)
        .contains("error"));
}
