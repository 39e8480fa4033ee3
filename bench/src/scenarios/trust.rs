//! `trust`: what the trust boundary costs other clients (issue #21).
//!
//! - **Wrong passwords do not stall the node.** A client reads with valid credentials (a
//!   bcrypt hash at bcrypt's default cost in the `-auth` file, its check cached after the
//!   first request) while an attacker sends 50 requests per second, each with a new wrong
//!   password (nothing to cache: every one costs a bcrypt check). Goal: the reader's p99
//!   latency under attack stays within 2x its p99 without it. Rounds alternate quiet and
//!   attacked periods; each figure is the median round.
//! - **Memory per request is bounded.** One node's peak RSS growth (VmHWM) while it answers
//!   a body at the body limit: 60 MB of one statement with 30 million integer parameters
//!   (refused: it would take gigabytes parsed), and 60 MB of legitimate text parameters
//!   (applied). Goal: each within 4x `-max-body-size` (64 MiB).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Context, OrFail, ScenarioResult};
use crate::measure::{kib_to_mib, Percentiles};
use crate::node::Node;
use crate::report::{Row, ScenarioReport};

const GOALS: &[&str] = &[
    "authenticated reads under 50 wrong passwords/s: p99 <= 2x p99 without them",
    "peak RSS growth per request <= 4x -max-body-size (64 MiB), whatever the body holds",
];

/// Wrong-password requests per second during the attacked periods.
const ATTACK_RATE: u32 = 50;

pub fn run(ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("trust", GOALS);
    let (period, rounds) = if ctx.opts.quick {
        (Duration::from_secs(2), 1)
    } else {
        (Duration::from_secs(10), 3)
    };
    auth_stall(ctx, &mut report, period, rounds).or_fail(&mut report)?;
    request_memory(ctx, &mut report).or_fail(&mut report)?;
    Ok(report)
}

fn auth_stall(
    ctx: &mut Context,
    report: &mut ScenarioReport,
    period: Duration,
    rounds: usize,
) -> Result<(), String> {
    let dir = ctx.scratch("trust-auth")?;
    let hash = bcrypt::hash("reader-secret", bcrypt::DEFAULT_COST).map_err(|e| e.to_string())?;
    let auth = dir.join("auth.json");
    std::fs::write(
        &auth,
        format!(
            r#"[{{"username": "reader", "password": "{hash}", "perms": ["query", "ready"]}},
               {{"username": "*", "perms": ["ready", "status"]}}]"#
        ),
    )
    .map_err(|e| e.to_string())?;
    let node = Node::start_with(
        &ctx.opts.bin_dir,
        &dir.join("node"),
        &["-auth".into(), auth.display().to_string()],
    )?;
    let url = node.url("/db/query?q=SELECT%201");
    let agent = crate::node::agent();
    let read = |agent: &ureq::Agent| -> Result<Duration, String> {
        let started = Instant::now();
        let r = agent
            .get(&url)
            .set("Authorization", &basic("reader", "reader-secret"))
            .call();
        match r {
            Ok(_) => Ok(started.elapsed()),
            Err(e) => Err(format!("authenticated read: {e}")),
        }
    };
    read(&agent)?; // the one bcrypt check of the reader, then cached
    let mut quiet = Vec::new();
    let mut attacked = Vec::new();
    let mut refused_total = 0u64;
    for round in 0..rounds {
        // Alternate which period comes first, as the other benchmarks alternate sides.
        for attack in [round % 2 == 1, round % 2 == 0] {
            let stop = Arc::new(AtomicBool::new(false));
            let attacker = attack.then(|| {
                let stop = Arc::clone(&stop);
                let url = url.clone();
                std::thread::spawn(move || attack_at(&url, &stop))
            });
            let mut samples = Vec::new();
            let until = Instant::now() + period;
            while Instant::now() < until {
                samples.push(read(&agent)?);
            }
            stop.store(true, Ordering::Relaxed);
            let p = Percentiles::of(&mut samples).ok_or("no samples")?;
            if let Some(a) = attacker {
                refused_total += a.join().map_err(|_| "the attacker panicked")?;
                attacked.push(p);
            } else {
                quiet.push(p);
            }
        }
    }
    // The round with the median p99, whole (its p50, p90 and max with it).
    let median_round = |ps: &[Percentiles]| -> Option<Percentiles> {
        let mut v = ps.to_vec();
        v.sort_by(|a, b| a.p99.total_cmp(&b.p99));
        v.get(v.len() / 2).cloned()
    };
    let quiet_median = median_round(&quiet).ok_or("no quiet round")?;
    let attacked_median = median_round(&attacked).ok_or("no attacked round")?;
    let (q, a) = (quiet_median.p99, attacked_median.p99);
    let ratio = a / q.max(1e-6);
    let mut quiet_row = Row::new("authenticated reads, quiet");
    quiet_row.latency_ms = Some(quiet_median);
    let mut attacked_row = Row::new(format!(
        "authenticated reads, {ATTACK_RATE} wrong passwords/s"
    ));
    attacked_row.latency_ms = Some(attacked_median);
    attacked_row.ratio = Some(crate::report::Ratio {
        value: ratio,
        of: "time",
        reference: "authenticated reads, quiet".into(),
    });
    let verdict = if ratio <= 2.0 { "met" } else { "MISSED" };
    report.push(attacked_row.note(format!(
        "p99 {a:.2} ms vs {q:.2} ms quiet (median of {rounds} rounds of {} s): {ratio:.2}x, goal <= 2x: {verdict}; {refused_total} wrong passwords refused",
        period.as_secs()
    )));
    report.push(quiet_row);
    node.stop()
}

/// Sends `ATTACK_RATE` requests a second until `stop`, each with a new wrong password, without
/// waiting for the answers (an attacker does not wait: a request still in flight does not
/// slow the next); returns how many were refused (401).
fn attack_at(url: &str, stop: &AtomicBool) -> u64 {
    let agent = crate::node::agent();
    let gap = Duration::from_secs(1) / ATTACK_RATE;
    let mut next = Instant::now();
    let mut n = 0u64;
    let mut in_flight = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (agent, url, guess) = (agent.clone(), url.to_string(), format!("guess-{n}"));
        in_flight.push(std::thread::spawn(move || {
            let r = agent
                .get(&url)
                .set("Authorization", &basic("reader", &guess))
                .timeout(Duration::from_secs(30))
                .call();
            matches!(r, Err(ureq::Error::Status(401, _)))
        }));
        next += gap;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    in_flight
        .into_iter()
        .map(|t| u64::from(t.join().unwrap_or(false)))
        .sum()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Starts a new peak (`VmHWM`) for `node` at its current RSS (Linux: `clear_refs` 5) and
/// returns that RSS; None when the kernel does not allow it.
fn restart_peak(node: &Node) -> Option<u64> {
    let pid = node.pid()?;
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").ok()?;
    node.rss_kib()
}

fn request_memory(ctx: &mut Context, report: &mut ScenarioReport) -> Result<(), String> {
    let dir = ctx.scratch("trust-memory")?;
    // The full run uses raftlited's default body limit (64 MiB) and bodies of 60 MB; --quick
    // scales both down by 8.
    let (body_limit, size): (u64, usize) = if ctx.opts.quick {
        (8 << 20, 7_500_000)
    } else {
        (64 << 20, 60_000_000)
    };
    let node = Node::start_with(
        &ctx.opts.bin_dir,
        &dir.join("node"),
        &["-max-body-size".into(), body_limit.to_string()],
    )?;
    let agent = crate::node::agent();
    let execute = node.url("/db/execute");
    crate::node::post(
        &agent,
        &execute,
        "application/json",
        r#"["CREATE TABLE t(x)"]"#,
    )?;
    // One statement, `size / 2` integer parameters: `1,1,1,…`.
    let mut ints = String::with_capacity(size + 64);
    ints.push_str(r#"[["INSERT INTO t VALUES(?)""#);
    while ints.len() < size {
        ints.push_str(",1");
    }
    ints.push_str("]]");
    // The same size of legitimate rows: text parameters of 60 KB.
    let text = "x".repeat(60_000);
    let mut rows = String::with_capacity(size + 64);
    rows.push('[');
    while rows.len() < size {
        if rows.len() > 1 {
            rows.push(',');
        }
        rows.push_str(&format!(r#"["INSERT INTO t VALUES(?)", "{text}"]"#));
    }
    rows.push(']');
    for (label, body, want) in [
        ("one statement, integer parameters", &ints, 413),
        ("text parameters, 60 KB each", &rows, 200),
    ] {
        // Each body gets its own peak: the first one's must not hide the second's.
        let before = restart_peak(&node).ok_or("cannot reset VmHWM (/proc/PID/clear_refs)")?;
        let started = Instant::now();
        let answer = crate::node::post(&agent, &execute, "application/json", body)?;
        let wall = started.elapsed().as_secs_f64();
        if answer.status != want {
            return Err(format!(
                "{label}: answered {} (expected {want}): {}",
                answer.status,
                answer.body.chars().take(200).collect::<String>()
            ));
        }
        let after = node.hwm_kib().ok_or("no VmHWM")?;
        let growth = kib_to_mib(after.saturating_sub(before));
        let multiple = growth * (1 << 20) as f64 / body_limit as f64;
        let mut row = Row::new(format!(
            "POST /db/execute {} MB: {label}",
            body.len() / 1_000_000
        ))
        .timed(wall, Some(body.len() as u64), None);
        row.rss_growth_mib = Some(growth);
        let verdict = if multiple <= 4.0 { "met" } else { "MISSED" };
        report.push(row.note(format!(
            "answered {}; peak RSS growth {growth:.1} MiB = {multiple:.2}x the {} MiB body limit, goal <= 4x: {verdict}",
            answer.status,
            body_limit >> 20
        )));
    }
    node.stop()
}
