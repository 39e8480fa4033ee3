//! `dump` (P2): the SQL text dump of the data set, by `raftlite dump DB` (offline, the
//! dumper run against a file) and by `GET /db/backup?fmt=sql` (online), against
//! `sqlite3 DB .dump` in the same run.
//!
//! P2 asks `raftlite dump` to be at least 2× faster than the shell (ratio ≤ 0.5 in time) and
//! the HTTP dump ≤ 0.3× (issue #26), each with at most 64 MiB memory growth. A command-line
//! tool's growth is its peak RSS minus its peak on an empty database with the same schema;
//! the server's is its sampled `RssAnon` over its value before (what the goal reads), with
//! `RssFile` (page cache of the mapped database) apart and VmHWM over VmRSS as before. Each
//! raftlite output is compared with the shell's byte for byte, and the first differing byte
//! offset is reported (REAL literals may legitimately differ: the dumper's digits parse to the
//! same doubles as the shell's, see `src/db/dump.rs`).
//!
//! Made fair as P1 is (issue #26): an untimed warm-up round of every case (its outputs are
//! the ones compared), then [`ROUNDS`] rounds in rotated order, each case starting on a quiet
//! machine (the previous output written back) with the source and the node's database in the
//! page cache; medians reported, memory growth the worst round's. Every case writes its dump
//! to a file and none syncs it: equal durability.
//!
//! Parts not in this build are skipped: `raftlite dump` when the binary does not dump
//! (probed on an empty database), and the HTTP dump while `/db/backup` answers 404.

use std::io::Read as _;
use std::path::Path;

use std::time::Duration;

use super::{
    file_len, max_rss_growth, max_sampled_growth, median_row, Context, OrFail, ScenarioResult,
};
use crate::datagen::empty_with_schema;
use crate::measure::{kib_to_mib, rotated, run_tool, wait_quiet, warm_page_cache};
use crate::node::Node;
use crate::report::{Row, ScenarioReport};

const GOALS: &[&str] = &[
    "P2: raftlite dump <= 0.5x the time of sqlite3 .dump; GET /db/backup?fmt=sql <= 0.3x \
       (issue #26); memory growth <= 64 MiB (raftlited: RssAnon, RssFile apart)",
];

/// Timed rounds per case (medians reported), after one untimed warm-up round.
const ROUNDS: usize = 5;
/// How long each case waits at most for the previous one's output to be written back.
const QUIET_BEFORE_CASE: Duration = Duration::from_secs(10);

/// The three dumps, in the order of the first round.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Case {
    Shell,
    Cli,
    Http,
}

pub fn run(ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("dump", GOALS);
    let rounds = if ctx.opts.quick { 1 } else { ROUNDS };
    let data = ctx.data_set().or_fail(&mut report)?;
    let dir = ctx.scratch("dump").or_fail(&mut report)?;
    let empty = dir.join("empty.sqlite");
    empty_with_schema(&empty).or_fail(&mut report)?;
    let src = data.path.display().to_string();
    let sqlite3 = ctx.sqlite3().or_fail(&mut report)?;
    let raftlite = ctx.raftlite_bin();
    let cluster = ctx.cluster_with_data("dump-node", 1).or_fail(&mut report)?;
    let node = cluster.leader();
    let node_db = super::backup::p1::node_database(node);

    let mut cases = vec![Case::Shell];
    if dump_subcommand_works(&raftlite, &empty) {
        cases.push(Case::Cli);
    } else {
        report.skip_part(format!(
            "{} has no working `dump` subcommand yet",
            raftlite.display()
        ));
    }
    cases.push(Case::Http);
    let out_of = |case: Case| {
        dir.join(match case {
            Case::Shell => "sqlite3.sql",
            Case::Cli => "raftlite-dump.sql",
            Case::Http => "raftlite-http.sql",
        })
    };
    let run_case = |case: Case| -> Result<Option<Row>, String> {
        let out = out_of(case);
        match case {
            Case::Shell => tool_dump(
                &sqlite3,
                &|db: &str| vec![db.to_string(), ".dump".to_string()],
                &src,
                &empty,
                &out,
                "sqlite3 .dump",
            )
            .map(Some),
            Case::Cli => tool_dump(
                &raftlite,
                &|db: &str| vec!["dump".to_string(), db.to_string()],
                &src,
                &empty,
                &out,
                "raftlite dump DB",
            )
            .map(Some),
            Case::Http => http_dump(node, &out),
        }
    };

    // The warm-up round: untimed; its outputs are the ones compared with the shell's.
    let mut notes = Vec::new();
    for case in cases.clone() {
        wait_quiet(QUIET_BEFORE_CASE, || Ok(()));
        if run_case(case).or_fail(&mut report)?.is_none() {
            report.skip_part("GET /db/backup?fmt=sql answered 404 (not in this build yet)");
            cases.retain(|c| *c != Case::Http);
        }
    }
    for &case in &cases[1..] {
        notes.push(compare(&out_of(case), &out_of(Case::Shell)));
    }
    for &case in &cases {
        let _ = std::fs::remove_file(out_of(case));
    }

    let mut timed: Vec<Vec<Row>> = vec![Vec::new(); cases.len()];
    let mut late_quiet = 0usize;
    for order in rotated(rounds, cases.len()) {
        for i in order {
            // Each case from the same start: nothing of the previous one left to write
            // back, the source and the node's database in the page cache.
            if wait_quiet(QUIET_BEFORE_CASE, || Ok(())).timed_out.is_some() {
                late_quiet += 1;
            }
            warm_page_cache(&data.path).or_fail(&mut report)?;
            warm_page_cache(&node_db).or_fail(&mut report)?;
            let row = run_case(cases[i]).or_fail(&mut report)?;
            let _ = std::fs::remove_file(out_of(cases[i]));
            timed[i].extend(row);
        }
    }
    if late_quiet > 0 {
        report.flag(format!(
            "dump: {late_quiet} case(s) started before the machine was quiet (waited {} s each)",
            QUIET_BEFORE_CASE.as_secs()
        ));
    }
    let median = |rounds: &[Row]| -> Result<Row, String> {
        let mut row = median_row(rounds)?;
        row.rss_growth_mib = max_rss_growth(rounds);
        if let Some(g) = max_sampled_growth(rounds) {
            row.rss_anon_growth_mib = Some(g.anon_mib);
            row.rss_file_growth_mib = Some(g.file_mib);
        }
        Ok(row)
    };
    let reference = median(&timed[0]).or_fail(&mut report)?;
    for (i, note) in notes.into_iter().enumerate() {
        let row = median(&timed[i + 1]).or_fail(&mut report)?;
        report.push(row.time_ratio_to(&reference).also_note(note));
    }
    report.push(reference);
    Ok(report)
}

/// Runs `program` with `argv(DB)`, stdout to `out`; the RSS growth is measured against the
/// same command on `empty`.
pub(super) fn tool_dump(
    program: &Path,
    argv: &dyn Fn(&str) -> Vec<String>,
    db: &str,
    empty: &Path,
    out: &Path,
    case: &str,
) -> Result<Row, String> {
    let empty_out = out.with_extension("empty");
    let base_args = argv(&empty.display().to_string());
    let base = run_tool(
        program,
        &base_args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
        Some(&empty_out),
    )?;
    let _ = std::fs::remove_file(&empty_out);
    let full_args = argv(db);
    let run = run_tool(
        program,
        &full_args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
        Some(out),
    )?;
    let mut row = Row::new(case).timed(run.wall.as_secs_f64(), Some(file_len(out)), None);
    row.peak_rss_mib = run.peak_rss_kib.map(kib_to_mib);
    if let (Some(peak), Some(b)) = (run.peak_rss_kib, base.peak_rss_kib) {
        row.rss_growth_mib = Some(kib_to_mib(peak.saturating_sub(b)));
    }
    Ok(row)
}

/// True when `raftlite dump EMPTY` exits 0 and prints a dump.
fn dump_subcommand_works(raftlite: &Path, empty: &Path) -> bool {
    let out = std::process::Command::new(raftlite)
        .arg("dump")
        .arg(empty)
        .stdin(std::process::Stdio::null())
        .output();
    matches!(out, Ok(o) if o.status.success()
        && String::from_utf8_lossy(&o.stdout).contains("BEGIN TRANSACTION;"))
}

/// Streams `GET /db/backup?fmt=sql` into `out`. None when the endpoint does not exist.
pub(super) fn http_dump(node: &Node, out: &Path) -> Result<Option<Row>, String> {
    super::download_measured(
        node,
        "/db/backup?fmt=sql",
        out,
        "raftlite GET /db/backup?fmt=sql",
    )
}

/// "identical to sqlite3 .dump" or where the first difference is.
fn compare(a: &Path, b: &Path) -> String {
    let open = |p: &Path| std::fs::File::open(p).map(std::io::BufReader::new);
    let (Ok(fa), Ok(fb)) = (open(a), open(b)) else {
        return "output not comparable (unreadable)".into();
    };
    let mut offset = 0u64;
    let mut ia = fa.bytes();
    let mut ib = fb.bytes();
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return "identical to sqlite3 .dump".into(),
            (Some(Ok(x)), Some(Ok(y))) if x == y => offset += 1,
            (None, _) | (_, None) => return format!("differs: one ends at byte {offset}"),
            _ => return format!("differs from sqlite3 .dump at byte {offset}"),
        }
    }
}
