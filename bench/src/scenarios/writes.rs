//! `writes` (P6, P9): statements per second through `/db/execute`.
//!
//! Cases: one INSERT per request at concurrency 1, 8 and 64 (P9 asks ≥10k writes/s at 64),
//! and 1000 INSERTs per request at concurrency 1 (P6 asks ≥100k statements/s) and 4. Latency is
//! per request. The reference is the `sqlite3` CLI running the same batches (each in one
//! transaction, WAL, `synchronous=NORMAL` as raftlite's writer) from a script, so the ratio
//! shows what the HTTP/JSON/Raft path costs over bare SQLite.
//!
//! Every case runs against a 3-node cluster on this machine (writes go to the leader; each
//! acknowledged write is fsynced on a majority, two of the three nodes). The three nodes share
//! the machine's two cores and one disk with the client, so the figures are a lower bound of
//! what three machines would do.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Context, OrFail, ScenarioResult};
use crate::measure::{kib_to_mib, run_tool, Percentiles};
use crate::node::{post, Node};
use crate::report::{Row, ScenarioReport};

const GOALS: &[&str] = &[
    "P6: >= 100k statements/s with 1000-statement batches",
    "P9: >= 10k writes/s at concurrency 64 (single-statement requests)",
];
pub(super) const BATCH: usize = 1000;
/// Cluster size of every case.
const NODES: usize = 3;
/// Clients in the second batched case.
const BATCH_CLIENTS: usize = 4;

struct Counts {
    /// Requests per concurrency level.
    single: &'static [(usize, usize)],
    batches: usize,
}

const QUICK: Counts = Counts {
    single: &[(1, 300), (8, 1_600), (64, 3_200)],
    batches: 10,
};
const FULL: Counts = Counts {
    single: &[(1, 10_000), (8, 40_000), (64, 64_000)],
    batches: 200,
};

pub fn run(ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("writes", GOALS);
    let counts = if ctx.opts.quick { &QUICK } else { &FULL };
    let cluster = ctx.empty_cluster("writes", NODES).or_fail(&mut report)?;
    let node = cluster.leader();
    execute(
        &ctx.agent,
        node,
        r#"["CREATE TABLE bench (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)"]"#,
    )
    .or_fail(&mut report)?;
    let baseline = node.rss_kib();
    let growth = |n: &Node| match (baseline, n.hwm_kib()) {
        (Some(b), Some(h)) => Some(kib_to_mib(h.saturating_sub(b))),
        _ => None,
    };

    let mut next_key = 0u64;
    for &(concurrency, requests) in counts.single {
        let (wall, mut lat) = drive(&ctx.agent, node, concurrency, requests, &mut next_key, 1)
            .or_fail(&mut report)?;
        let mut row = Row::new(format!(
            "raftlite {NODES} nodes, 1 stmt/request, c={concurrency}"
        ))
        .timed(wall.as_secs_f64(), None, Some(requests as u64));
        row.latency_ms = Percentiles::of(&mut lat);
        row.rss_growth_mib = growth(node);
        report.push(row.note("RSS+ is the peak so far in this scenario"));
    }

    // Batches at concurrency 1 (the P6 figure), then 4 clients at once, whose requests the
    // leader's group commit may carry in shared entries.
    let reference = sqlite3_batches(ctx, counts.batches).or_fail(&mut report)?;
    for concurrency in [1, BATCH_CLIENTS] {
        let (wall, mut lat) = drive(
            &ctx.agent,
            node,
            concurrency,
            counts.batches,
            &mut next_key,
            BATCH,
        )
        .or_fail(&mut report)?;
        let statements = (counts.batches * BATCH) as u64;
        let mut batched = Row::new(format!(
            "raftlite {NODES} nodes, {BATCH} stmts/request, c={concurrency}"
        ))
        .timed(wall.as_secs_f64(), None, Some(statements));
        batched.latency_ms = Percentiles::of(&mut lat);
        batched.rss_growth_mib = growth(node);
        report.push(batched.throughput_ratio_to(&reference));
    }
    report.push(reference);
    Ok(report)
}

fn execute(agent: &ureq::Agent, node: &Node, body: &str) -> Result<(), String> {
    let a = post(agent, &node.url("/db/execute"), "application/json", body)?;
    if a.status != 200 || a.body.contains("\"error\"") {
        return Err(format!("/db/execute answered {}: {}", a.status, a.body));
    }
    Ok(())
}

fn insert_body(first_key: u64, statements: usize) -> String {
    let mut body = String::from("[");
    for i in 0..statements as u64 {
        if i > 0 {
            body.push(',');
        }
        let k = first_key + i;
        body.push_str(&format!(
            r#"["INSERT INTO bench(k, v) VALUES(?, ?)", {k}, "value {k} with some text"]"#
        ));
    }
    body.push(']');
    body
}

/// Sends `requests` requests of `per_request` INSERTs from `concurrency` threads; returns
/// the wall time and every request's latency. Any error answer fails the case.
pub(super) fn drive(
    agent: &ureq::Agent,
    node: &Node,
    concurrency: usize,
    requests: usize,
    next_key: &mut u64,
    per_request: usize,
) -> Result<(Duration, Vec<Duration>), String> {
    let url = node.url("/db/execute");
    // Bodies are built before the clock starts: only the server's work is timed.
    let mut bodies: Vec<Vec<String>> = vec![Vec::new(); concurrency];
    for i in 0..requests {
        bodies[i % concurrency].push(insert_body(*next_key, per_request));
        *next_key += per_request as u64;
    }
    let latencies = Mutex::new(Vec::with_capacity(requests));
    let failure = Mutex::new(None::<String>);
    let started = Instant::now();
    std::thread::scope(|s| {
        for mine in &bodies {
            let (agent, url, latencies, failure) = (agent.clone(), &url, &latencies, &failure);
            s.spawn(move || {
                let mut local = Vec::with_capacity(mine.len());
                for body in mine {
                    let t = Instant::now();
                    match post(&agent, url, "application/json", body) {
                        Ok(a) if a.status == 200 && !a.body.contains("\"error\"") => {}
                        Ok(a) => {
                            let head: String = a.body.chars().take(300).collect();
                            let msg = format!("{} {head}", a.status);
                            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
                            return;
                        }
                        Err(e) => {
                            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            return;
                        }
                    }
                    local.push(t.elapsed());
                }
                latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(local);
            });
        }
    });
    let wall = started.elapsed();
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(format!("a write failed: {e}"));
    }
    Ok((
        wall,
        latencies.into_inner().unwrap_or_else(|p| p.into_inner()),
    ))
}

/// The same batches through the `sqlite3` CLI, as a script on stdin.
fn sqlite3_batches(ctx: &Context, batches: usize) -> Result<Row, String> {
    let sqlite3 = ctx.sqlite3()?;
    let dir = ctx.scratch("writes-sqlite3")?;
    let script = dir.join("batches.sql");
    let mut sql = String::from(
        "PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\n\
         CREATE TABLE bench (id INTEGER PRIMARY KEY, k INTEGER, v TEXT);\n",
    );
    let mut k = 0u64;
    for _ in 0..batches {
        sql.push_str("BEGIN;\n");
        for _ in 0..BATCH {
            sql.push_str(&format!(
                "INSERT INTO bench(k, v) VALUES({k}, 'value {k} with some text');\n"
            ));
            k += 1;
        }
        sql.push_str("COMMIT;\n");
    }
    std::fs::write(&script, sql).map_err(|e| format!("write {}: {e}", script.display()))?;
    let db = dir.join("ref.sqlite");
    let db_arg = db.display().to_string();
    let run = run_tool(&sqlite3, &[&db_arg], Some(&script), None)?;
    let mut row = Row::new(format!("sqlite3 CLI {BATCH} stmts/txn")).timed(
        run.wall.as_secs_f64(),
        None,
        Some((batches * BATCH) as u64),
    );
    row.peak_rss_mib = run.peak_rss_kib.map(kib_to_mib);
    Ok(row.note("reference: same INSERTs as a script, no HTTP"))
}
