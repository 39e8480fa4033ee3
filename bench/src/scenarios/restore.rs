//! `restore` (P7): getting a node back to serving the data set.
//!
//! Measured now: **restart**, the time from spawning `raftlited` on a data directory that
//! holds the data set to `/readyz` answering 200, three times (the figure is the median).
//! DESIGN.md wants it to depend on the log tail, not on the database size; compare runs of
//! two `--size`s.
//!
//! For the restore issue to fill in (skipped while `POST /db/load` answers 404): loading the
//! binary file (`Content-Type: application/octet-stream`) against `sqlite3 NEW ".restore
//! DB"` and `cp`, and loading the SQL text dump against `sqlite3 NEW < dump.sql`, each with
//! raftlited's RSS growth (the body must be streamed, never held whole).

use std::path::Path;
use std::time::{Duration, Instant};

use super::{file_len, Context, OrFail, ScenarioResult};
use crate::measure::{kib_to_mib, run_tool, warm_page_cache, Percentiles};
use crate::node::{answer, Node};
use crate::report::{Row, ScenarioReport};

const GOALS: &[&str] = &[
    "P7: restart time depends on the log tail, not the database size; load streams with bounded memory",
];
const RESTARTS: usize = 3;

pub fn run(ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("restore", GOALS);
    let data = ctx.data_set().or_fail(&mut report)?;
    warm_page_cache(&data.path).or_fail(&mut report)?;

    // Restart: the first start copies the data in; the timed ones reuse the directory.
    let cluster = ctx.cluster_with_data("restore-node").or_fail(&mut report)?;
    let data_dir = cluster.leader().data_dir.clone();
    let mut node = cluster
        .nodes
        .into_iter()
        .next()
        .ok_or_else(|| "no node".to_string())
        .or_fail(&mut report)?;
    let mut samples: Vec<Duration> = Vec::with_capacity(RESTARTS);
    for _ in 0..RESTARTS {
        node.stop().or_fail(&mut report)?;
        let t = Instant::now();
        node = Node::start(&ctx.opts.bin_dir, &data_dir).or_fail(&mut report)?;
        samples.push(t.elapsed());
    }
    let mut row = Row::new(format!("raftlited restart to /readyz (x{RESTARTS})"));
    row.latency_ms = Percentiles::of(&mut samples);
    if let Some(p) = &row.latency_ms {
        row.wall_s = Some(p.p50 / 1e3);
    }
    report.push(row.note(format!(
        "database {} MB; wall = median",
        data.bytes / 1_000_000
    )));

    // Load: the binary file, then the references.
    let dir = ctx.scratch("restore").or_fail(&mut report)?;
    let sqlite3 = ctx.sqlite3().or_fail(&mut report)?;
    let target = dir.join("restored.sqlite");
    let dot_restore = format!(".restore '{}'", data.path.display());
    let r = run_tool(
        &sqlite3,
        &[&target.display().to_string(), &dot_restore],
        None,
        None,
    )
    .or_fail(&mut report)?;
    let mut ref_row =
        Row::new("sqlite3 .restore").timed(r.wall.as_secs_f64(), Some(file_len(&target)), None);
    ref_row.peak_rss_mib = r.peak_rss_kib.map(kib_to_mib);
    let _ = std::fs::remove_file(&target);

    match http_load(&ctx.agent, &node, &data.path).or_fail(&mut report)? {
        None => report.skip_part("POST /db/load answered 404 (not in this build yet)"),
        Some(row) => report.push(row.time_ratio_to(&ref_row)),
    }
    // TODO(restore): the SQL text load (POST /db/load with `sqlite3 DB .dump` output) against
    // `sqlite3 NEW < dump.sql`, and a restart after a load.
    report.push(ref_row);
    node.stop().or_fail(&mut report)?;
    Ok(report)
}

/// Streams the file as the body of `POST /db/load`. None when the endpoint does not exist.
fn http_load(agent: &ureq::Agent, node: &Node, file: &Path) -> Result<Option<Row>, String> {
    let url = node.url("/db/load");
    // Probe with an empty body first: a 404 must not cost (or break on) a large upload.
    let probe = answer(agent.post(&url).send_bytes(&[]), &url)?;
    if probe.status == 404 {
        return Ok(None);
    }
    let baseline = node.rss_kib();
    let len = file_len(file);
    let body = std::fs::File::open(file).map_err(|e| format!("open {}: {e}", file.display()))?;
    let started = Instant::now();
    let a = answer(
        agent
            .post(&url)
            .set("Content-Type", "application/octet-stream")
            .set("Content-Length", &len.to_string())
            .send(body),
        &url,
    )?;
    if a.status != 200 || a.body.contains("\"error\"") {
        return Err(format!("{url}: {}: {}", a.status, a.body));
    }
    let mut row = Row::new("raftlite POST /db/load (binary)").timed(
        started.elapsed().as_secs_f64(),
        Some(len),
        None,
    );
    if let (Some(b), Some(h)) = (baseline, node.hwm_kib()) {
        row.rss_growth_mib = Some(kib_to_mib(h.saturating_sub(b)));
    }
    Ok(Some(row))
}
