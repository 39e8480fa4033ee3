//! The clients of a fault run: threads that write and read a few keys on every node while the
//! faults happen, and record every operation (see [`super::history`]).
//!
//! A write is one `/db/execute` request in one transaction: `INSERT OR REPLACE` of the key's
//! register in `kv`, and an `INSERT` of the same value into `acked`, an append-only table, so
//! that after the run every acknowledged write can be looked for on every node. Every value
//! written is unique in the run. A read is `SELECT v FROM kv WHERE k=?` at one of the four
//! levels. The node, the operation, the key and the level are drawn from a seeded generator.
//! Every loop is bounded by a stop flag, a deadline and a count.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng};

use super::history::{Level, Op, Outcome, Record};

/// The tables the workload uses; run once on the cluster before it starts.
pub const SCHEMA: &str = r#"["CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER)", "CREATE TABLE acked(v INTEGER PRIMARY KEY)"]"#;

/// The key names, by index.
pub fn key_name(key: usize) -> String {
    format!("k{key}")
}

#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub seed: u64,
    pub clients: usize,
    pub keys: usize,
    /// A request that has not answered after this long is given up (indeterminate).
    pub op_timeout: Duration,
    /// The longest the workload may run, whatever the test does.
    pub max_duration: Duration,
    /// At most this many operations per client.
    pub max_ops_per_client: usize,
    /// Pause between two operations of a client.
    pub pause: Duration,
}

/// Running clients.
pub struct Workload {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<Record>>>,
    http_addrs: Arc<Mutex<Vec<String>>>,
    keys: usize,
    pub start: Instant,
}

struct Shared {
    stop: Arc<AtomicBool>,
    next_process: AtomicUsize,
    next_value: AtomicU64,
    /// Each node's real HTTP address; a node restarted on a new port gets its new one.
    http_addrs: Arc<Mutex<Vec<String>>>,
    cfg: WorkloadConfig,
    deadline: Instant,
}

impl Workload {
    /// Starts `cfg.clients` client threads against the nodes at `http_addrs` (their real
    /// HTTP ports).
    pub fn start(http_addrs: Vec<String>, cfg: WorkloadConfig) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let http_addrs = Arc::new(Mutex::new(http_addrs));
        let keys = cfg.keys;
        let shared = Arc::new(Shared {
            stop: Arc::clone(&stop),
            next_process: AtomicUsize::new(0),
            next_value: AtomicU64::new(1),
            http_addrs: Arc::clone(&http_addrs),
            deadline: start + cfg.max_duration,
            cfg,
        });
        let clients = (0..shared.cfg.clients)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || client(i, &shared))
            })
            .collect();
        Workload {
            stop,
            clients,
            http_addrs,
            keys,
            start,
        }
    }

    /// How many keys the clients use.
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// Points the clients at node `i`'s new address (after a restart).
    pub fn set_addr(&self, i: usize, http_addr: &str) {
        self.http_addrs.lock().unwrap()[i] = http_addr.to_string();
    }

    /// Stops the clients (each finishes the operation it is in) and returns every record.
    pub fn finish(self) -> Vec<Record> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for c in self.clients {
            all.extend(c.join().expect("a client thread panicked"));
        }
        all
    }
}

fn client(index: usize, shared: &Shared) -> Vec<Record> {
    let cfg = &shared.cfg;
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(1000).wrapping_add(index as u64));
    let http = reqwest::blocking::Client::builder()
        .timeout(cfg.op_timeout)
        .connect_timeout(Duration::from_secs(1))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut process = shared.next_process.fetch_add(1, Ordering::Relaxed);
    let mut records = Vec::new();
    for _ in 0..cfg.max_ops_per_client {
        if shared.stop.load(Ordering::SeqCst) || Instant::now() > shared.deadline {
            break;
        }
        let addrs = shared.http_addrs.lock().unwrap().clone();
        let node = rng.random_range(0..addrs.len());
        let key = rng.random_range(0..cfg.keys);
        let op = if rng.random_bool(0.4) {
            Op::Write {
                key,
                value: shared.next_value.fetch_add(1, Ordering::Relaxed),
            }
        } else {
            let level = [Level::None, Level::Weak, Level::Linearizable, Level::Strong]
                [rng.random_range(0..4)];
            Op::Read { key, level }
        };
        let call = Instant::now();
        let outcome = perform(&http, &addrs[node], op);
        let ret = Instant::now();
        let unknown = matches!(outcome, Outcome::Unknown(_));
        records.push(Record {
            process,
            node,
            op,
            call,
            ret,
            outcome,
        });
        if unknown {
            // The unknown operation stays open to the end: this process makes no more.
            process = shared.next_process.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(cfg.pause);
    }
    records
}

/// Sends one operation and classifies its answer.
pub fn perform(http: &reqwest::blocking::Client, addr: &str, op: Op) -> Outcome {
    match op {
        Op::Write { key, value } => {
            let body = serde_json::json!([
                [
                    "INSERT OR REPLACE INTO kv(k, v) VALUES(?, ?)",
                    key_name(key),
                    value
                ],
                ["INSERT INTO acked(v) VALUES(?)", value],
            ]);
            let sent = http
                .post(format!("http://{addr}/db/execute?transaction"))
                .json(&body)
                .send();
            match answer(sent) {
                Ok(json) => match error_of(&json) {
                    None => Outcome::Written,
                    Some(e) => Outcome::Unknown(e),
                },
                Err(Failure::Definite(e)) => Outcome::Failed(e),
                Err(Failure::Unknown(e)) => Outcome::Unknown(e),
            }
        }
        Op::Read { key, level } => {
            let body = serde_json::json!([["SELECT v FROM kv WHERE k = ?", key_name(key)]]);
            let sent = http
                .post(format!("http://{addr}/db/query?level={}", level.as_str()))
                .json(&body)
                .send();
            match answer(sent) {
                Ok(json) => match error_of(&json) {
                    Some(e) => Outcome::Failed(e),
                    None => match read_value(&json) {
                        Ok(v) => Outcome::Read(v),
                        Err(e) => Outcome::Failed(e),
                    },
                },
                Err(Failure::Definite(e) | Failure::Unknown(e)) => Outcome::Failed(e),
            }
        }
    }
}

/// Why a request has no 200 answer, and whether a write in it surely had no effect.
enum Failure {
    /// Nothing was applied: the node was not reached, or it answered `leader not found`,
    /// which a node answers only when no node took the write (it had no leader to forward
    /// to, or a forwarded write reached a node that does not lead; openraft only fails an
    /// entry it appended when a new leader's log has removed it).
    Definite(String),
    /// The write may have been applied.
    Unknown(String),
}

/// The JSON of a 200 answer, or why there is none.
fn answer(
    sent: reqwest::Result<reqwest::blocking::Response>,
) -> Result<serde_json::Value, Failure> {
    let resp = sent.map_err(|e| {
        if e.is_connect() {
            Failure::Definite(format!("{e}"))
        } else {
            Failure::Unknown(format!("{e}"))
        }
    })?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .map_err(|e| Failure::Unknown(format!("read the answer: {e}")))?;
    if status == 503 && text.trim() == "leader not found" {
        return Err(Failure::Definite(format!("HTTP {status}: {}", text.trim())));
    }
    if status != 200 {
        return Err(Failure::Unknown(format!("HTTP {status}: {}", text.trim())));
    }
    serde_json::from_str(&text).map_err(|e| Failure::Unknown(format!("not JSON ({e}): {text}")))
}

/// The request-level or first statement's error, if any.
fn error_of(json: &serde_json::Value) -> Option<String> {
    if let Some(e) = json.get("error").and_then(|e| e.as_str()) {
        return Some(e.to_string());
    }
    let results = json.get("results").and_then(|r| r.as_array());
    match results {
        None => Some(format!("no results: {json}")),
        Some(rs) if rs.is_empty() => Some(format!("no results: {json}")),
        Some(rs) => rs
            .iter()
            .find_map(|r| r.get("error").and_then(|e| e.as_str()).map(str::to_string)),
    }
}

/// The value a read returned: `None` for no row.
fn read_value(json: &serde_json::Value) -> Result<Option<u64>, String> {
    let first = &json["results"][0];
    match first.get("values").and_then(|v| v.as_array()) {
        None => Ok(None),
        Some(rows) if rows.is_empty() => Ok(None),
        Some(rows) => rows[0][0]
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("not a value: {json}")),
    }
}
