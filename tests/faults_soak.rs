//! The soak: a 3-node cluster under mixed faults while clients write and read, backups are
//! taken and whole databases are loaded, then everything is checked.
//!
//! Each round picks a fault (none, the leader or a follower cut off, a one-way cut, or a node
//! killed with SIGKILL) and, while the fault holds, an operation of the test's own (none, a
//! binary backup, a SQL dump, or a load of a new database) sent to a random node; then the
//! links heal or the killed node restarts on its data directory. The first rounds go through
//! every fault and every operation once, so even the short run in CI covers each; the rest are
//! drawn from the run's seed. At the end (`faults::conclude`): the history of the writes, the
//! loads and the `strong`/`linearizable` reads is linearizable, every acknowledged write made
//! after the last load is on every node, every replica holds the same content, and every
//! backup and dump that was answered whole opens and passes `PRAGMA integrity_check`.
//!
//! A load replaces the whole database, so it is recorded as a write of every key (with values
//! no client writes) between its call and its return, which is what its atomicity promises.
//!
//! `RAFTLITE_SOAK_SECONDS` (default 40) is how long faults are injected; `RAFTLITE_FAULTS_SEED`
//! seeds the choices (see `docs/faults.md` for the long run).

mod common;
mod faults;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{RngExt as _, SeedableRng};

use faults::history::{Op, Outcome, Record};
use faults::proxy::Cut;
use faults::{FaultCluster, RunConfig};

/// Keeps this scenario's random choices apart from the partition scenarios'.
const SALT: u64 = 60;
/// At most this many rounds, however long the run.
const MAX_ROUNDS: usize = 10_000;
/// A round is not started with less than this left.
const MIN_ROUND: Duration = Duration::from_secs(3);
/// The first value a load writes; clients count up from 1 and never get near it.
const LOAD_VALUES: u64 = 1 << 40;
/// The longest a backup or a load may take before it is given up.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    IsolateLeader,
    IsolateFollower,
    OneWay,
    Kill,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Operation {
    None,
    BinaryBackup,
    SqlDump,
    Load,
}

const FAULTS: [Fault; 5] = [
    Fault::None,
    Fault::IsolateLeader,
    Fault::IsolateFollower,
    Fault::OneWay,
    Fault::Kill,
];
const OPERATIONS: [Operation; 4] = [
    Operation::None,
    Operation::BinaryBackup,
    Operation::SqlDump,
    Operation::Load,
];

/// A backup or dump answered whole, to be checked at the end.
struct Backup {
    file: PathBuf,
    sql: bool,
    what: String,
}

/// The soak's own state: its HTTP client, its files, what it took and loaded.
struct Soak {
    http: reqwest::blocking::Client,
    dir: tempfile::TempDir,
    backups: Vec<Backup>,
    /// The loads, as register writes of every key (see the module doc).
    load_records: Vec<Record>,
    loads_ok: usize,
    /// The return of the last load that may have taken effect: writes called before it may
    /// have been replaced.
    writes_kept_from: Option<Instant>,
    next_file: usize,
}

fn soak_time() -> Duration {
    let secs = std::env::var("RAFTLITE_SOAK_SECONDS")
        .ok()
        .map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("RAFTLITE_SOAK_SECONDS={v}: a whole number"))
        })
        .unwrap_or(40);
    Duration::from_secs(secs)
}

/// The node whose `/status` says it leads, asked with a short timeout; `None` when not
/// exactly one does (a killed node does not answer and is not counted).
fn leader_of(cluster: &FaultCluster, http: &reqwest::blocking::Client) -> Option<usize> {
    let leaders: Vec<usize> = (0..cluster.nodes.len())
        .filter(|&i| {
            http.get(cluster.nodes[i].url("/status"))
                .send()
                .ok()
                .and_then(|r| r.json::<serde_json::Value>().ok())
                .is_some_and(|s| s["store"]["raft"]["state"] == "Leader")
        })
        .collect();
    (leaders.len() == 1).then(|| leaders[0])
}

fn cut_mode(rng: &mut StdRng) -> Cut {
    if rng.random_bool(0.5) {
        Cut::Refuse
    } else {
        Cut::Blackhole
    }
}

impl Soak {
    fn new() -> Soak {
        Soak {
            http: reqwest::blocking::Client::builder()
                .timeout(OPERATION_TIMEOUT)
                .connect_timeout(Duration::from_secs(1))
                .build()
                .expect("client"),
            dir: tempfile::tempdir().expect("temp dir"),
            backups: Vec::new(),
            load_records: Vec::new(),
            loads_ok: 0,
            writes_kept_from: None,
            next_file: 0,
        }
    }

    fn file(&mut self, ext: &str) -> PathBuf {
        self.next_file += 1;
        self.dir.path().join(format!("{}.{ext}", self.next_file))
    }

    /// `GET /db/backup` (a SQLite file, or with `sql` a dump) from `node`; a body read whole
    /// after a 200 is kept for the final check. Returns what happened, for the fault log.
    fn backup(&mut self, cluster: &FaultCluster, node: usize, sql: bool) -> String {
        let path = if sql {
            "/db/backup?fmt=sql"
        } else {
            "/db/backup"
        };
        let what = format!("{} from node{}", path, node + 1);
        let answer = self
            .http
            .get(cluster.nodes[node].url(path))
            .send()
            .and_then(|r| {
                let status = r.status().as_u16();
                r.bytes().map(|b| (status, b))
            });
        match answer {
            Ok((200, body)) => {
                let file = self.file(if sql { "sql" } else { "db" });
                std::fs::write(&file, &body).expect("write the backup");
                self.backups.push(Backup {
                    file,
                    sql,
                    what: what.clone(),
                });
                format!("{what}: 200, {} bytes", body.len())
            }
            Ok((status, body)) => format!(
                "{what}: {status} {}",
                String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
            ),
            Err(e) => format!("{what}: {e}"),
        }
    }

    /// `POST /db/load` of a new database to `node`: the workload's tables, every key with a
    /// value no client writes, and those values in `acked`. Recorded as a write of every key.
    fn load(&mut self, cluster: &FaultCluster, node: usize, keys: usize, round: usize) -> String {
        let file = self.file("load.db");
        let values: Vec<u64> = (0..keys)
            .map(|k| LOAD_VALUES + (round * keys + k) as u64)
            .collect();
        let mut sql = String::from(
            "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER); \
             CREATE TABLE acked(v INTEGER PRIMARY KEY);",
        );
        for (k, v) in values.iter().enumerate() {
            sql.push_str(&format!(
                "INSERT INTO kv VALUES('{}', {v}); INSERT INTO acked VALUES({v});",
                faults::workload::key_name(k)
            ));
        }
        common::sqlite3(&file, &sql);
        let body = std::fs::read(&file).expect("read the load file");
        let what = format!("load of {} bytes to node{}", body.len(), node + 1);
        let call = Instant::now();
        let sent = self
            .http
            .post(cluster.nodes[node].url("/db/load"))
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()));
        let ret = Instant::now();
        let (outcome, said) = match sent {
            Ok((200, text)) if !text.contains("\"error\"") => {
                self.loads_ok += 1;
                (Outcome::Written, "200".to_string())
            }
            // Refused before anything was proposed: no leader to take it, or no node reached.
            Ok((503, text)) if text.trim() == "leader not found" => (
                Outcome::Failed(text.clone()),
                format!("503 {}", text.trim()),
            ),
            Err(e) if e.is_connect() => (Outcome::Failed(e.to_string()), e.to_string()),
            Ok((status, text)) => (
                Outcome::Unknown(format!("{status} {text}")),
                format!("{status} {}", text.trim()),
            ),
            Err(e) => (Outcome::Unknown(e.to_string()), e.to_string()),
        };
        if !matches!(outcome, Outcome::Failed(_)) {
            self.writes_kept_from = Some(ret);
        }
        for (key, value) in values.into_iter().enumerate() {
            self.load_records.push(Record {
                // A process of its own: no client's, and none of another load's.
                process: 1_000_000 + round,
                node,
                op: Op::Write { key, value },
                call,
                ret,
                outcome: outcome.clone(),
            });
        }
        format!("{what}: {said}")
    }

    fn operate(
        &mut self,
        op: Operation,
        cluster: &FaultCluster,
        node: usize,
        keys: usize,
        round: usize,
    ) -> Option<String> {
        match op {
            Operation::None => None,
            Operation::BinaryBackup => Some(self.backup(cluster, node, false)),
            Operation::SqlDump => Some(self.backup(cluster, node, true)),
            Operation::Load => Some(self.load(cluster, node, keys, round)),
        }
    }
}

/// Opens a backup (or replays a dump into a new file) with the `sqlite3` CLI and returns
/// what `PRAGMA integrity_check` said.
fn integrity_of(backup: &Backup, scratch: &Path) -> String {
    let file = if backup.sql {
        let db = scratch.join(format!(
            "{}.replayed.db",
            backup.file.file_name().unwrap().to_string_lossy()
        ));
        common::sqlite3(&db, &format!(".read {}", backup.file.display()));
        db
    } else {
        backup.file.clone()
    };
    common::sqlite3(&file, "PRAGMA integrity_check")
        .trim()
        .to_string()
}

#[test]
fn a_soak_of_mixed_faults_backups_and_loads_loses_nothing() {
    let cfg = RunConfig::from_env();
    let soak_time = soak_time();
    let mut cluster = FaultCluster::start(3);
    let (workload, mut log) = faults::begin(&cluster, &cfg, SALT);
    let keys = workload.keys();
    let mut soak = Soak::new();
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(7919).wrapping_add(SALT));
    // Every fault and every operation once first, in a seeded order, paired up.
    let mut first_faults = FAULTS.to_vec();
    let mut first_ops = OPERATIONS.to_vec();
    first_faults.shuffle(&mut rng);
    first_ops.shuffle(&mut rng);
    let mut kills = 0;
    let end = Instant::now() + soak_time;
    for round in 0..MAX_ROUNDS {
        if Instant::now() + MIN_ROUND >= end && round >= FAULTS.len() {
            break;
        }
        let fault = first_faults
            .get(round)
            .copied()
            .unwrap_or_else(|| FAULTS[rng.random_range(0..FAULTS.len())]);
        let op = first_ops
            .get(round)
            .copied()
            .unwrap_or_else(|| OPERATIONS[rng.random_range(0..OPERATIONS.len())]);
        let n = cluster.nodes.len();
        let mut killed = None;
        match fault {
            Fault::None => {}
            Fault::IsolateLeader | Fault::IsolateFollower => {
                let leader = leader_of(&cluster, &soak.http);
                let victim = match (fault, leader) {
                    (Fault::IsolateLeader, Some(l)) => Some(l),
                    (Fault::IsolateFollower, Some(l)) => Some((l + rng.random_range(1..n)) % n),
                    _ => None,
                };
                if let Some(v) = victim {
                    let m = cut_mode(&mut rng);
                    cluster.net.isolate(&[v], m);
                    log.push(format!("{fault:?}: node{} ({m:?})", v + 1));
                } else {
                    log.push(format!("{fault:?}: no single leader, skipped"));
                }
            }
            Fault::OneWay => {
                let from = rng.random_range(0..n);
                let to = (from + rng.random_range(1..n)) % n;
                let m = cut_mode(&mut rng);
                cluster.net.cut(from, to, m);
                log.push(format!(
                    "one-way cut node{} -> node{} ({m:?})",
                    from + 1,
                    to + 1
                ));
            }
            Fault::Kill => {
                let v = rng.random_range(0..n);
                cluster.kill(v);
                kills += 1;
                killed = Some(v);
                log.push(format!("kill -9 node{}", v + 1));
            }
        }
        let hold = Instant::now() + Duration::from_millis(rng.random_range(1000..3000));
        // The operation goes to a node that is up.
        let target = (killed.map_or(0, |k| k + 1) + rng.random_range(0..n - 1)) % n;
        let target = if Some(target) == killed {
            (target + 1) % n
        } else {
            target
        };
        if let Some(what) = soak.operate(op, &cluster, target, keys, round) {
            log.push(what);
        }
        if let Some(left) = hold.checked_duration_since(Instant::now()) {
            std::thread::sleep(left);
        }
        if let Some(v) = killed {
            cluster.restart(v);
            workload.set_addr(v, &cluster.nodes[v].http_addr);
            log.push(format!("restart node{}", v + 1));
        } else if fault != Fault::None {
            cluster.net.heal_all();
            log.push("heal all");
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
    }
    // Under the faults, an operation may have been refused every time it came up. Each kind
    // that never went through runs once more on a healed cluster, so the end checks always
    // cover a load, a backup and a dump (the log says which ran under a fault).
    cluster.net.heal_all();
    let make_up: Vec<Operation> = [Operation::Load, Operation::BinaryBackup, Operation::SqlDump]
        .into_iter()
        .filter(|op| match op {
            Operation::Load => soak.loads_ok == 0,
            Operation::BinaryBackup => !soak.backups.iter().any(|b| !b.sql),
            Operation::SqlDump => !soak.backups.iter().any(|b| b.sql),
            Operation::None => false,
        })
        .collect();
    for (i, op) in make_up.into_iter().enumerate() {
        let leader = (0..20)
            .find_map(|_| {
                leader_of(&cluster, &soak.http).or_else(|| {
                    std::thread::sleep(Duration::from_millis(500));
                    None
                })
            })
            .expect("a leader after healing");
        if let Some(what) = soak.operate(op, &cluster, leader, keys, MAX_ROUNDS + i) {
            log.push(format!("after the faults: {what}"));
        }
    }
    let outcomes = faults::conclude(
        "soak",
        &cluster,
        workload,
        log,
        std::mem::take(&mut soak.load_records),
        soak.writes_kept_from,
    );
    outcomes.assert_sound(&cluster);
    let summary = outcomes.summary();
    let scratch = tempfile::tempdir().expect("temp dir");
    for b in &soak.backups {
        assert_eq!(
            integrity_of(b, scratch.path()),
            "ok",
            "{}: the backup does not pass integrity_check\n{summary}",
            b.what
        );
    }
    eprintln!(
        "soak: {kills} kills, {} loads applied, {} backups and dumps checked ({} SQL)",
        soak.loads_ok,
        soak.backups.len(),
        soak.backups.iter().filter(|b| b.sql).count()
    );
    // The run tested what it says: a node was killed, and a load and backups of both kinds
    // went through (the first rounds send each once; a fault may refuse one, not all).
    assert!(kills > 0, "no node was killed\n{summary}");
    assert!(soak.loads_ok > 0, "no load went through\n{summary}");
    assert!(
        soak.backups.iter().any(|b| b.sql) && soak.backups.iter().any(|b| !b.sql),
        "no backup of each kind was answered whole\n{summary}"
    );
}
