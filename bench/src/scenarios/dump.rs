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
//! Parts not in this build are skipped: `raftlite dump` when the binary does not dump
//! (probed on an empty database), and the HTTP dump while `/db/backup` answers 404.

use std::io::Read as _;
use std::path::Path;

use super::{file_len, Context, OrFail, ScenarioResult};
use crate::datagen::empty_with_schema;
use crate::measure::{kib_to_mib, run_tool, warm_page_cache};
use crate::node::Node;
use crate::report::{Row, ScenarioReport};

const GOALS: &[&str] = &[
    "P2: raftlite dump <= 0.5x the time of sqlite3 .dump; GET /db/backup?fmt=sql <= 0.3x \
       (issue #26); memory growth <= 64 MiB (raftlited: RssAnon, RssFile apart)",
];

pub fn run(ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("dump", GOALS);
    let data = ctx.data_set().or_fail(&mut report)?;
    let dir = ctx.scratch("dump").or_fail(&mut report)?;
    warm_page_cache(&data.path).or_fail(&mut report)?;
    let empty = dir.join("empty.sqlite");
    empty_with_schema(&empty).or_fail(&mut report)?;
    let src = data.path.display().to_string();

    let sqlite3 = ctx.sqlite3().or_fail(&mut report)?;
    let ref_out = dir.join("sqlite3.sql");
    let ref_row = tool_dump(
        &sqlite3,
        &|db: &str| vec![db.to_string(), ".dump".to_string()],
        &src,
        &empty,
        &ref_out,
        "sqlite3 .dump",
    )
    .or_fail(&mut report)?;

    let raftlite = ctx.raftlite_bin();
    if dump_subcommand_works(&raftlite, &empty) {
        let out = dir.join("raftlite-dump.sql");
        let row = tool_dump(
            &raftlite,
            &|db: &str| vec!["dump".to_string(), db.to_string()],
            &src,
            &empty,
            &out,
            "raftlite dump DB",
        )
        .or_fail(&mut report)?;
        let note = compare(&out, &ref_out);
        report.push(row.time_ratio_to(&ref_row).note(note));
        let _ = std::fs::remove_file(&out);
    } else {
        report.skip_part(format!(
            "{} has no working `dump` subcommand yet",
            raftlite.display()
        ));
    }

    let cluster = ctx.cluster_with_data("dump-node", 1).or_fail(&mut report)?;
    let out = dir.join("raftlite-http.sql");
    match http_dump(cluster.leader(), &out).or_fail(&mut report)? {
        None => report.skip_part("GET /db/backup?fmt=sql answered 404 (not in this build yet)"),
        Some(row) => {
            let note = compare(&out, &ref_out);
            report.push(row.time_ratio_to(&ref_row).note(note));
        }
    }
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&ref_out);
    report.push(ref_row);
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
