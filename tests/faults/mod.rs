//! The fault suite's harness: a cluster of real `raftlited` nodes behind the fault proxy
//! ([`proxy`]), clients that record every operation ([`workload`]), and the check of what they
//! recorded ([`history`]). Test files (`tests/faults_partition.rs`) declare the scenarios.
//!
//! A run is set by environment variables, so CI's short form and the long runs are the same
//! code: `RAFTLITE_FAULTS_SEED` (default 1) seeds every random choice of the clients and of
//! the faults, and `RAFTLITE_FAULTS_SECONDS` (default 12) is how long each scenario injects
//! faults. Timing still varies from run to run (the nodes are real processes), so a seed fixes
//! the choices, not the interleaving.

#![allow(dead_code)]

pub mod history;
pub mod proxy;
pub mod workload;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::common::{wait_until, Node, FAST_RAFT};
use history::{Outcome, Record, Report};
use proxy::FaultNet;
use workload::{Workload, WorkloadConfig};

/// The run's settings, from the environment.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    pub fault_time: Duration,
}

impl RunConfig {
    pub fn from_env() -> RunConfig {
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.parse::<u64>()
                        .unwrap_or_else(|_| panic!("{name}={v}: a whole number"))
                })
                .unwrap_or(default)
        };
        RunConfig {
            seed: var("RAFTLITE_FAULTS_SEED", 1),
            fault_time: Duration::from_secs(var("RAFTLITE_FAULTS_SECONDS", 12)),
        }
    }

    /// The workload for a scenario of this run (`salt` keeps scenarios' choices apart).
    pub fn workload(&self, salt: u64) -> WorkloadConfig {
        WorkloadConfig {
            seed: self.seed.wrapping_mul(31).wrapping_add(salt),
            clients: 6,
            keys: 3,
            op_timeout: Duration::from_secs(5),
            max_duration: self.fault_time + Duration::from_secs(120),
            max_ops_per_client: 100_000,
            pause: Duration::from_millis(10),
        }
    }
}

/// A cluster whose node-to-node traffic goes through a [`FaultNet`].
pub struct FaultCluster {
    pub nodes: Vec<Node>,
    pub net: FaultNet,
    /// Each node's flags, to restart it as it was started.
    args: Vec<Vec<String>>,
    _dirs: tempfile::TempDir,
}

impl FaultCluster {
    /// Starts `n` nodes: the first bootstraps, the others join it through the proxy.
    pub fn start(n: usize) -> FaultCluster {
        let net = FaultNet::new(n);
        let dirs = tempfile::tempdir().expect("temp dir");
        let mut nodes: Vec<Node> = Vec::new();
        let mut all_args = Vec::new();
        for i in 0..n {
            let id = format!("node{}", i + 1);
            let mut args: Vec<String> = FAST_RAFT.iter().map(|s| s.to_string()).collect();
            args.extend(["-node-id".to_string(), id.clone()]);
            args.extend(net.advertise_args(i));
            if i > 0 {
                args.extend(["-join".to_string(), net.raft_addr(0)]);
            }
            let node = Node::spawn(
                &dirs.path().join(&id),
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
            )
            .unwrap_or_else(|log| panic!("{id} did not start:\n{log}"));
            all_args.push(args);
            net.attach(
                i,
                node.pid().expect("a running node has a pid"),
                &node.raft_addr,
                &node.http_addr,
            );
            node.wait_ready();
            nodes.push(node);
        }
        let cluster = FaultCluster {
            nodes,
            net,
            args: all_args,
            _dirs: dirs,
        };
        let all_see_all = wait_until(Duration::from_secs(30), || {
            cluster.nodes.iter().all(|node| {
                node.get("/nodes")
                    .json()
                    .as_object()
                    .is_some_and(|o| o.len() == n)
            })
        });
        assert!(all_see_all, "cluster did not form:\n{}", cluster.logs());
        cluster
    }

    /// Kills node `i` with SIGKILL, as a crash: what it had not synced is lost.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again on its data directory with its flags (a node with Raft state
    /// rejoins as it was), and tells the proxy its new process and ports. Returns the start
    /// log of the run that was killed, which the restarted node's [`Node`] replaces.
    pub fn restart(&mut self, i: usize) -> String {
        let before = self.nodes[i].log();
        let args: Vec<&str> = self.args[i].iter().map(String::as_str).collect();
        let node = Node::spawn(&self.nodes[i].data_dir.clone(), &args).unwrap_or_else(|log| {
            panic!(
                "node{} did not restart:\n{log}\nthe run before:\n{before}",
                i + 1
            )
        });
        self.net.attach(
            i,
            node.pid().expect("a running node has a pid"),
            &node.raft_addr,
            &node.http_addr,
        );
        self.nodes[i] = node;
        before
    }

    pub fn http_addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.http_addr.clone()).collect()
    }

    /// The nodes whose `/status` says they lead (more than one is possible during a partition).
    pub fn claimed_leaders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.status(i)["store"]["raft"]["state"] == "Leader")
            .collect()
    }

    /// Waits (bounded) for exactly one node to claim leadership and returns it.
    pub fn leader(&self, within: Duration) -> Option<usize> {
        let mut found = None;
        wait_until(within, || {
            let leaders = self.claimed_leaders();
            found = (leaders.len() == 1).then(|| leaders[0]);
            found.is_some()
        });
        found
    }

    pub fn status(&self, i: usize) -> serde_json::Value {
        self.nodes[i].get("/status").json()
    }

    pub fn logs(&self) -> String {
        crate::common::logs_of(&self.nodes)
    }

    /// Waits (bounded) until every node has applied the same index with the same content
    /// digest; returns how many distinct digests remain if they never agree.
    pub fn wait_converged(&self, within: Duration) -> usize {
        let mut distinct = usize::MAX;
        wait_until(within, || {
            let mut seen: Vec<(u64, String)> = self
                .nodes
                .iter()
                .map(|n| {
                    let s = n.get("/status?digest").json();
                    let d = &s["store"]["db_digest"];
                    (
                        d["applied_index"].as_u64().unwrap_or(0),
                        d["digest"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            seen.sort();
            seen.dedup();
            distinct = seen.len();
            distinct == 1
        });
        distinct
    }
}

/// A fault injected, for the run's log.
#[derive(Debug, Clone)]
pub struct Fault {
    pub at: Duration,
    pub what: String,
}

/// The outcome of a scenario: what the clients did, what the faults were, what was checked.
pub struct Outcomes {
    pub name: String,
    pub records: Vec<Record>,
    pub faults: Vec<Fault>,
    pub report: Report,
    pub acknowledged_lost: usize,
    pub divergent: usize,
    pub start: Instant,
    pub keys: usize,
    /// What the proxy did (connections forwarded, severed, refused, blackholed).
    pub proxy: String,
}

impl Outcomes {
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {}: faults injected {}, {}, acknowledged writes lost {}, distinct replica \
             digests after healing {}",
            self.name,
            self.faults_injected(),
            self.report.summary(),
            self.acknowledged_lost,
            self.divergent,
        );
        let _ = writeln!(s, "  proxy: {}", self.proxy);
        for f in &self.faults {
            let _ = writeln!(s, "  {:>7.3}s {}", f.at.as_secs_f64(), f.what);
        }
        s
    }

    /// Faults injected (cuts and flaps; heals are logged but not counted).
    pub fn faults_injected(&self) -> usize {
        self.faults
            .iter()
            .filter(|f| !f.what.starts_with("heal"))
            .count()
    }

    /// Fails the test when a promise was broken, with the history of the first bad key.
    pub fn assert_sound(&self, cluster: &FaultCluster) {
        let summary = self.summary();
        eprintln!("{summary}");
        if let Some(&key) = self.report.violating_keys.first() {
            panic!(
                "{summary}\nnot linearizable: key {key}; its operations:\n{}\n{}",
                history::dump(&self.records, key, self.start),
                cluster.logs()
            );
        }
        assert_eq!(
            self.acknowledged_lost,
            0,
            "{summary}\nacknowledged writes lost\n{}",
            cluster.logs()
        );
        assert_eq!(
            self.divergent,
            1,
            "{summary}\nreplicas differ after healing\n{}",
            cluster.logs()
        );
        assert!(
            self.report.writes_ok > 0,
            "{summary}\nno write succeeded: the run tested nothing"
        );
    }
}

/// Runs the workload on `cluster` while `nemesis` injects faults (it gets the cluster, the
/// run's start and a log to push each fault to, and must return with every link healed), then
/// heals, waits for the cluster to settle, stops the clients and checks everything.
pub fn run_scenario(
    name: &str,
    cluster: &FaultCluster,
    cfg: &RunConfig,
    salt: u64,
    nemesis: impl FnOnce(&FaultCluster, &mut FaultLog),
) -> Outcomes {
    let (workload, mut log) = begin(cluster, cfg, salt);
    nemesis(cluster, &mut log);
    conclude(name, cluster, workload, log, Vec::new(), None)
}

/// Creates the workload's tables and starts its clients, with a quiet second so every key
/// has a history before the faults. For scenarios that drive the cluster themselves (they
/// need it mutable, to restart nodes); [`conclude`] ends the run.
pub fn begin(cluster: &FaultCluster, cfg: &RunConfig, salt: u64) -> (Workload, FaultLog) {
    cluster.nodes[0].execute(workload::SCHEMA);
    let workload = Workload::start(cluster.http_addrs(), cfg.workload(salt));
    let log = FaultLog {
        start: workload.start,
        faults: Vec::new(),
    };
    std::thread::sleep(Duration::from_secs(1));
    (workload, log)
}

/// Ends a run: heals every link, lets the clients run on while the cluster recovers, stops
/// them, reads every key once more with `strong` on the leader, and checks the history (with
/// `extra` records: operations the scenario made itself, such as loads), the replicas'
/// digests, and the acknowledged writes. A write counts as lost only if it was called after
/// `writes_kept_from` (a load replaces the whole database, and with it every earlier write).
pub fn conclude(
    name: &str,
    cluster: &FaultCluster,
    workload: Workload,
    mut log: FaultLog,
    extra: Vec<Record>,
    writes_kept_from: Option<Instant>,
) -> Outcomes {
    let keys = workload.keys();
    let start = workload.start;
    cluster.net.heal_all();
    log.push("heal all");
    // The clients keep going while the cluster recovers: the history covers the healing.
    let recovered = cluster.leader(Duration::from_secs(30)).is_some();
    std::thread::sleep(Duration::from_secs(2));
    let mut records = workload.finish();
    records.extend(extra);
    assert!(
        recovered,
        "no single leader 30 s after healing\n{}",
        cluster.logs()
    );
    // A final strong read of every key on the leader, recorded like the others: it pins the
    // end state the whole history must explain.
    let leader = cluster.leader(Duration::from_secs(30)).expect("a leader");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let final_process = records.iter().map(|r| r.process).max().unwrap_or(0) + 1;
    for key in 0..keys {
        let op = history::Op::Read {
            key,
            level: history::Level::Strong,
        };
        let call = Instant::now();
        let outcome = workload::perform(&http, &cluster.nodes[leader].http_addr, op);
        assert!(
            matches!(outcome, Outcome::Read(_)),
            "final read of key {key} on node{}: {outcome:?}\nstatus: {}\n{}",
            leader + 1,
            (0..cluster.nodes.len())
                .map(|i| format!("{}\n", cluster.status(i)["store"]))
                .collect::<String>(),
            cluster.logs()
        );
        records.push(Record {
            process: final_process,
            node: leader,
            op,
            call,
            ret: Instant::now(),
            outcome,
        });
    }
    let divergent = cluster.wait_converged(Duration::from_secs(30));
    let acknowledged_lost = count_lost(cluster, &records, writes_kept_from);
    let report = history::check(&records, keys, Duration::from_secs(60));
    Outcomes {
        name: name.to_string(),
        records,
        faults: log.faults,
        report,
        acknowledged_lost,
        divergent,
        start,
        keys,
        proxy: cluster.net.counters().summary(),
    }
}

/// Acknowledged writes called after `from` (all of them when `None`) missing from `acked` on
/// any node (read locally on each, after the cluster converged).
fn count_lost(cluster: &FaultCluster, records: &[Record], from: Option<Instant>) -> usize {
    let acknowledged: Vec<u64> = records
        .iter()
        .filter(|r| from.is_none_or(|from| r.call > from))
        .filter_map(|r| match (r.op, &r.outcome) {
            (history::Op::Write { value, .. }, Outcome::Written) => Some(value),
            _ => None,
        })
        .collect();
    let mut lost = 0;
    for node in &cluster.nodes {
        let body = node.query_at("SELECT v FROM acked", "none");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let present: std::collections::HashSet<u64> = json["results"][0]["values"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r[0].as_u64()).collect())
            .unwrap_or_default();
        lost += acknowledged.iter().filter(|v| !present.contains(v)).count();
    }
    lost
}

/// The faults of a run, with their times.
pub struct FaultLog {
    start: Instant,
    pub faults: Vec<Fault>,
}

impl FaultLog {
    pub fn push(&mut self, what: impl Into<String>) {
        self.faults.push(Fault {
            at: self.start.elapsed(),
            what: what.into(),
        });
    }
}
