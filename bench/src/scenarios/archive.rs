//! `archive` (issue #27): what continuous archiving costs, the recovery point it gives, and
//! how long a point-in-time restore takes.
//!
//! 1. **Cost on writes:** the P9 case (single-statement requests at c=64) and the P6 case
//!    (1000-statement requests at c=1) on a 3-node cluster with archiving off and on (file
//!    storage in the scratch directory, `max_delay` 1 s), in alternating rounds, a new cluster
//!    each round; the median round of each side, and on/off as the ratio.
//! 2. **Recovery point:** during the archiving-on P9 case, `/debug/vars` is sampled every
//!    100 ms: the age of the oldest applied entry not yet archived (what the archive would
//!    lack if the leader's machine were lost at that moment) and how many entries that is.
//!    Reported as the maximum and the median sample.
//! 3. **Point-in-time restore:** a node serving the data set (1 GiB in a full run) archives a
//!    base, then takes 100,000 single-row writes (2,000 with `--quick`) as archived entries;
//!    `raftlite restore --from CONFIG --to-index LAST` rebuilds the database. The reference
//!    is `cp` of the same database file (the floor of getting 1 GiB back) on the same disk.

use std::path::Path;
use std::time::{Duration, Instant};

use super::writes::{drive, BATCH};
use super::{cost_on_writes, Context, ScenarioResult};
use crate::node::{answer, post, Cluster, Node};
use crate::report::{Row, ScenarioReport};

const GOALS: &[&str] = &[
    "A1: archiving on >= 0.9x the write throughput with it off (P9's and P6's cases)",
    "A2: recovery point under steady writes: no applied entry waits more than 2 s to be archived",
    "A3: point-in-time restore of the data set + 100k archived writes <= 10x the time of cp",
];
const ROUNDS: usize = 3;
/// Case names the goals read (`goals.rs`).
pub const RESTORE_CASE: &str = "raftlite restore --to-index (base + archived entries)";
pub const RPO_CASE: &str = "recovery point under c=64 writes (archive age)";
const NODES: usize = 3;

struct Counts {
    single: usize,
    batches: usize,
    pitr_entries: usize,
}
const QUICK: Counts = Counts {
    single: 1_600,
    batches: 10,
    pitr_entries: 2_000,
};
const FULL: Counts = Counts {
    single: 32_000,
    batches: 100,
    pitr_entries: 100_000,
};

fn config(dir: &Path, storage: &Path) -> Result<String, String> {
    let path = dir.join("auto-backup.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"version":1,"type":"file","interval":"24h","archive":{{"max_delay":"1s"}},
                "sub":{{"dir":"{}","name":"backup.sqlite"}}}}"#,
            storage.display()
        ),
    )
    .map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

/// The archiver's figures from `/debug/vars`: (unshipped since ms, shipped index).
fn archiver(agent: &ureq::Agent, node: &Node) -> Option<(i64, u64, u64)> {
    let url = node.url("/debug/vars");
    let a = answer(agent.get(&url).call(), &url).ok()?;
    let v: serde_json::Value = serde_json::from_str(&a.body).ok()?;
    let status_url = node.url("/status");
    let s = answer(agent.get(&status_url).call(), &status_url).ok()?;
    let s: serde_json::Value = serde_json::from_str(&s.body).ok()?;
    Some((
        v["archiver"]["unshipped_since_ms"].as_i64()?,
        v["archiver"]["shipped_index"].as_u64()?,
        s["store"]["raft"]["applied_index"].as_u64()?,
    ))
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Round {
    single: Row,
    batched: Row,
    /// Recovery point samples: (age ms, entries behind).
    lag: Vec<(i64, u64)>,
}

fn round(ctx: &Context, counts: &Counts, archiving: bool, n: usize) -> Result<Round, String> {
    let side = if archiving { "on" } else { "off" };
    let work = ctx.scratch(&format!("archive-{side}-{n}"))?;
    let mut extra = Vec::new();
    if archiving {
        extra = vec![
            "-auto-backup".to_string(),
            config(&work, &work.join("storage"))?,
        ];
    }
    let cluster = Cluster::start_with(&ctx.opts.bin_dir, &work.join("nodes"), NODES, &extra)?;
    let node = cluster.leader();
    let create = r#"["CREATE TABLE bench (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)"]"#;
    post(
        &ctx.agent,
        &node.url("/db/execute"),
        "application/json",
        create,
    )?;
    let mut next_key = 0;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut lag = Vec::new();
    let (single, batched) = std::thread::scope(|s| {
        let sampler = archiving.then(|| {
            let (agent, stop) = (ctx.agent.clone(), &stop);
            s.spawn(move || {
                let mut samples = Vec::new();
                // Bounded: at most ten minutes of samples.
                for _ in 0..6_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    if let Some((since, shipped, applied)) = archiver(&agent, node) {
                        let age = if since == 0 { 0 } else { unix_ms() - since };
                        samples.push((age, applied.saturating_sub(shipped)));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                samples
            })
        });
        let single = drive(&ctx.agent, node, 64, counts.single, &mut next_key, 1);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = sampler {
            lag = h.join().unwrap_or_default();
        }
        let batched = drive(&ctx.agent, node, 1, counts.batches, &mut next_key, BATCH);
        (single, batched)
    });
    let (single_wall, _) = single?;
    let (batch_wall, _) = batched?;
    cluster.stop()?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(Round {
        single: Row::new(format!("archiving {side}: 1 stmt/request, c=64")).timed(
            single_wall.as_secs_f64(),
            None,
            Some(counts.single as u64),
        ),
        batched: Row::new(format!("archiving {side}: {BATCH} stmts/request, c=1")).timed(
            batch_wall.as_secs_f64(),
            None,
            Some((counts.batches * BATCH) as u64),
        ),
        lag,
    })
}

pub fn run(ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("archive", GOALS);
    let counts = if ctx.opts.quick { &QUICK } else { &FULL };
    let rounds = if ctx.opts.quick { 1 } else { ROUNDS };
    let n = std::cell::Cell::new(0);
    let ctx_ref = &*ctx;
    let (_, on) = cost_on_writes(
        &mut report,
        rounds,
        || {
            n.set(n.get() + 1);
            round(ctx_ref, counts, false, n.get())
        },
        || {
            n.set(n.get() + 1);
            round(ctx_ref, counts, true, n.get())
        },
        [|r: &Round| r.single.clone(), |r: &Round| r.batched.clone()],
    )?;

    let mut ages: Vec<i64> = on.iter().flat_map(|r| r.lag.iter().map(|l| l.0)).collect();
    let behind = on
        .iter()
        .flat_map(|r| r.lag.iter().map(|l| l.1))
        .max()
        .unwrap_or(0);
    ages.sort_unstable();
    if let (Some(max), Some(median)) = (ages.last(), ages.get(ages.len() / 2)) {
        report.push(Row::new(RPO_CASE).note(format!(
            "max {max} ms, median {median} ms over {} samples; at most {behind} entries \
                 applied but not archived (max_delay 1 s)",
            ages.len()
        )));
    }

    match pitr(ctx, counts) {
        Ok((restore, reference)) => {
            report.push(restore.time_ratio_to(&reference));
            report.push(reference);
        }
        Err(e) => report.flag(format!("point-in-time restore: {e}")),
    }
    Ok(report)
}

/// A node serving the data set archives a base and `counts.pitr_entries` writes; returns the
/// restore's row and the `cp` reference.
fn pitr(ctx: &mut Context, counts: &Counts) -> Result<(Row, Row), String> {
    let data = ctx.data_set()?;
    let work = ctx.scratch("archive-pitr")?;
    let storage = work.join("storage");
    let cfg = config(&work, &storage)?;
    let cluster = ctx.cluster_serving(
        "archive-pitr-node",
        1,
        &["-auto-backup".to_string(), cfg.clone()],
        &data.path,
    )?;
    let node = cluster.leader();
    let create = r#"["CREATE TABLE bench (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)"]"#;
    post(
        &ctx.agent,
        &node.url("/db/execute"),
        "application/json",
        create,
    )?;
    // The first base (the whole data set) before the archived writes.
    wait_archived(&ctx.agent, node, Duration::from_secs(900))?;
    let mut next_key = 0;
    drive(&ctx.agent, node, 8, counts.pitr_entries, &mut next_key, 1)?;
    let last = wait_archived(&ctx.agent, node, Duration::from_secs(300))?;
    cluster.stop()?;
    crate::measure::settle();
    let out = work.join("restored.sqlite");
    let started = Instant::now();
    let status = std::process::Command::new(ctx.raftlite_bin())
        .args(["restore", "--from", &cfg, "--to-index", &last.to_string()])
        .arg(&out)
        .output()
        .map_err(|e| format!("run raftlite restore: {e}"))?;
    let wall = started.elapsed();
    if !status.status.success() {
        return Err(format!(
            "raftlite restore failed: {}",
            String::from_utf8_lossy(&status.stderr)
        ));
    }
    let bytes = std::fs::metadata(&out).map_or(0, |m| m.len());
    let report: serde_json::Value =
        serde_json::from_slice(&status.stdout).unwrap_or(serde_json::Value::Null);
    if report["entries_applied"].as_u64() == Some(0) {
        // Then the archive took a base at the end (the log was purged past what it had
        // shipped): the restore did not measure a replay, and must not pass for one.
        return Err(format!(
            "the restore replayed no archived entry (a base at the end): {}",
            String::from_utf8_lossy(&status.stdout).trim()
        ));
    }
    let restore = Row::new(RESTORE_CASE)
        .timed(wall.as_secs_f64(), Some(bytes), None)
        .note(format!(
            "the data set's base + {} single-row writes, {} log entries after group commit: {}",
            counts.pitr_entries,
            report["entries_applied"],
            String::from_utf8_lossy(&status.stdout).trim()
        ));
    crate::measure::settle();
    let copy = work.join("copy.sqlite");
    let started = Instant::now();
    std::fs::copy(&out, &copy).map_err(|e| format!("cp: {e}"))?;
    std::fs::File::open(&copy)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("fsync the copy: {e}"))?;
    let reference = Row::new("cp of the restored file (+ fsync)")
        .timed(started.elapsed().as_secs_f64(), Some(bytes), None)
        .note("reference: the floor of writing the database back");
    let _ = std::fs::remove_dir_all(&work);
    Ok((restore, reference))
}

/// Waits until the node's archive holds everything it applied; returns that index.
fn wait_archived(agent: &ureq::Agent, node: &Node, limit: Duration) -> Result<u64, String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some((since, shipped, applied)) = archiver(agent, node) {
            if since == 0 && shipped >= applied && shipped > 0 {
                return Ok(shipped);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("the archive did not catch up in {limit:?}"))
}
