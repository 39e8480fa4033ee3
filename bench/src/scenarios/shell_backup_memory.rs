//! `shell-backup-memory`: the `raftlite` shell's `.backup FILE` against a node serving the
//! data set: the shell's peak RSS (it must stream to the file, never buffer the backup; goal:
//! under 32 MiB for a 1 GiB database) and its time against `GET /db/backup` with a plain
//! HTTP client in the same run.
//!
//! The shell runs through `measure::run_tool` with its commands on stdin, as a script would
//! drive it. Its baseline is the same shell connecting and running only `.exit`; the growth
//! is the difference of the two peaks. Skipped when the binary has no `.backup` (an older
//! build that answers "interactive shell not built yet").

use std::path::Path;

use super::{file_len, Context, OrFail, ScenarioResult};
use crate::measure::{kib_to_mib, run_tool, warm_page_cache};
use crate::report::{Outcome, Row, ScenarioReport};

const GOALS: &[&str] =
    &["shell .backup streams: peak RSS < 32 MiB for a 1 GiB database, independent of its size"];

pub fn run(ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("shell-backup-memory", GOALS);
    let bin = ctx.raftlite_bin();
    let data = ctx.data_set().or_fail(&mut report)?;
    warm_page_cache(&data.path).or_fail(&mut report)?;
    let dir = ctx.scratch("shell-backup").or_fail(&mut report)?;
    let cluster = ctx
        .cluster_with_data("shell-backup-node", 1)
        .or_fail(&mut report)?;
    let node = cluster.leader();
    let (host, port) = node
        .addr
        .rsplit_once(':')
        .ok_or_else(|| format!("node address {} has no port", node.addr))
        .or_fail(&mut report)?;
    let args = ["-H", host, "-p", port];

    let exit_only = dir.join("exit.txt");
    let backup_cmds = dir.join("backup.txt");
    let out = dir.join("shell-backup.sqlite");
    std::fs::write(&exit_only, ".exit\n")
        .map_err(|e| e.to_string())
        .or_fail(&mut report)?;
    std::fs::write(&backup_cmds, format!(".backup {}\n", out.display()))
        .map_err(|e| e.to_string())
        .or_fail(&mut report)?;
    let shown = dir.join("shell-stdout.txt");

    let base = run_tool(&bin, &args, Some(&exit_only), Some(&shown)).or_fail(&mut report)?;
    let said = std::fs::read_to_string(&shown).unwrap_or_default();
    if !said.contains("Welcome to the rqlite CLI.") {
        report.outcome = Outcome::Skipped(format!(
            "{} is not the interactive shell: {}",
            bin.display(),
            said.trim()
        ));
        return Ok(report);
    }
    let r = run_tool(&bin, &args, Some(&backup_cmds), Some(&shown)).or_fail(&mut report)?;
    let said = std::fs::read_to_string(&shown).unwrap_or_default();
    if !said.contains("backup file written successfully") {
        return Err(format!("the shell's .backup failed: {}", said.trim())).or_fail(&mut report);
    }
    let mut shell_row =
        Row::new("raftlite shell .backup").timed(r.wall.as_secs_f64(), Some(file_len(&out)), None);
    shell_row.peak_rss_mib = r.peak_rss_kib.map(kib_to_mib);
    if let (Some(peak), Some(idle)) = (r.peak_rss_kib, base.peak_rss_kib) {
        shell_row.rss_growth_mib = Some(kib_to_mib(peak.saturating_sub(idle)));
    }
    let _ = std::fs::remove_file(&out);

    let http_out = dir.join("http-backup.sqlite");
    let http = super::download_measured(node, "/db/backup", &http_out, "GET /db/backup (curl)")
        .or_fail(&mut report)?;
    let _ = std::fs::remove_file(&http_out);
    match http {
        Some(h) => {
            report.push(shell_row.time_ratio_to(&h).note(goal_note(r.peak_rss_kib)));
            report.push(h);
        }
        None => report.push(shell_row.note(goal_note(r.peak_rss_kib))),
    }
    let _ = std::fs::remove_file(Path::new(&shown));
    Ok(report)
}

fn goal_note(peak_kib: Option<u64>) -> String {
    match peak_kib {
        Some(k) if k < 32 * 1024 => format!("peak RSS {:.1} MiB < 32 MiB: met", kib_to_mib(k)),
        Some(k) => format!("peak RSS {:.1} MiB >= 32 MiB: NOT met", kib_to_mib(k)),
        None => "peak RSS not measurable here".into(),
    }
}
