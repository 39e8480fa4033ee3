//! `compression`: compressed backups of the data set. `GET /db/backup?compress=gzip` (gzip
//! level 1) and `?compress=zstd` (zstd level 3), against the command-line tools at the same
//! levels, `gzip -1` and `zstd -3 -T1`, compressing the plain binary backup of the same
//! database (made once, before the rounds, by `GET /db/backup`).
//!
//! `GET /db/backup` uncompressed runs in the same rounds: the server's compressed rows minus
//! it are what compression costs on top of making and sending the copy.
//!
//! Measured for each: wall time and the compressed size (the row's bytes; its MB/s is of the
//! uncompressed backup, what was compressed per second). Each server row's ratio is its time
//! over the tool's at the same coding. The server's figure includes making the backup copy
//! and sending it over loopback; the tool's compresses a file already on disk, from the page
//! cache (it was read once before the rounds): the tool is the floor, not a like-for-like
//! peer. `-T1`: the server encodes on one thread, so the tool does too.
//!
//! Method: [`ROUNDS`] rounds (one with `--quick`) of the five cases back to back, the order
//! rotated every round so that no case always runs first or last, each after a `sync`
//! (`measure::settle`, inside `run_tool` and `download_measured`). A row is its median round,
//! its note lists every round's time. No goal reads these rows yet: they say what the
//! codings cost, for choosing one.
//!
//! Needs `gzip` and `zstd` on PATH for the tool rows; without one its row is skipped with the
//! reason and the rest runs.

use std::path::{Path, PathBuf};

use super::{download_measured, file_len, median_row, which, Context, OrFail, ScenarioResult};
use crate::measure::{kib_to_mib, run_tool, warm_page_cache};
use crate::report::{Row, ScenarioReport};

/// Rounds of the cases in a full run; `--quick` runs one.
const ROUNDS: usize = 3;

/// The cases, in their first round's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// The uncompressed backup: what making and sending the copy costs, without compression.
    HttpPlain,
    HttpGzip,
    HttpZstd,
    ToolGzip,
    ToolZstd,
}

impl Case {
    const ALL: [Case; 5] = [
        Case::HttpPlain,
        Case::HttpGzip,
        Case::HttpZstd,
        Case::ToolGzip,
        Case::ToolZstd,
    ];

    fn label(self) -> &'static str {
        match self {
            Case::HttpPlain => "raftlite GET /db/backup (uncompressed)",
            Case::HttpGzip => "raftlite GET /db/backup?compress=gzip",
            Case::HttpZstd => "raftlite GET /db/backup?compress=zstd",
            Case::ToolGzip => "gzip -1 < backup",
            Case::ToolZstd => "zstd -3 -T1 < backup",
        }
    }

    /// The first bytes of the case's output: a SQLite file, a gzip member or a zstd frame.
    fn magic(self) -> &'static [u8] {
        match self {
            Case::HttpPlain => b"SQLite format 3\0",
            Case::HttpGzip | Case::ToolGzip => &[0x1f, 0x8b],
            Case::HttpZstd | Case::ToolZstd => &[0x28, 0xb5, 0x2f, 0xfd],
        }
    }
}

/// The order of the cases in `round`: rotated by one each round.
fn round_order(round: usize) -> Vec<Case> {
    let n = Case::ALL.len();
    (0..n).map(|i| Case::ALL[(i + round) % n]).collect()
}

pub fn run(ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("compression", &[]);
    let rounds = if ctx.opts.quick { 1 } else { ROUNDS };
    let data = ctx.data_set().or_fail(&mut report)?;
    let dir = ctx.scratch("compression").or_fail(&mut report)?;
    warm_page_cache(&data.path).or_fail(&mut report)?;
    let cluster = ctx
        // Every server row makes its copy (no copy kept from an earlier request).
        .cluster_with_data_and(
            "compression-node",
            1,
            &["-backup-keep".to_string(), "0s".to_string()],
        )
        .or_fail(&mut report)?;
    let node = cluster.leader();

    // The plain backup the tools compress: the same database, the same bytes the server
    // compresses.
    let plain = dir.join("backup.sqlite");
    if download_measured(node, "/db/backup", &plain, "plain")
        .or_fail(&mut report)?
        .is_none()
    {
        report.skip_part("GET /db/backup answered 404 (not in this build yet)");
        return Ok(report);
    }
    warm_page_cache(&plain).or_fail(&mut report)?;
    let plain_bytes = file_len(&plain);

    let gzip = which("gzip");
    let zstd = which("zstd");
    let mut cases = Case::ALL.to_vec();
    if gzip.is_none() {
        report.skip_part("gzip -1: needs gzip on PATH");
        cases.retain(|&c| c != Case::ToolGzip);
    }
    if zstd.is_none() {
        report.skip_part("zstd -3: needs zstd on PATH");
        cases.retain(|&c| c != Case::ToolZstd);
    }

    let mut rows: Vec<(Case, Vec<Row>)> = cases.iter().map(|&c| (c, Vec::new())).collect();
    for round in 0..rounds {
        for case in round_order(round) {
            let Some(slot) = rows.iter_mut().find(|(c, _)| *c == case) else {
                continue;
            };
            let out = dir.join(format!("out-{case:?}"));
            let row = match case {
                Case::HttpPlain | Case::HttpGzip | Case::HttpZstd => {
                    let path = match case {
                        Case::HttpGzip => "/db/backup?compress=gzip",
                        Case::HttpZstd => "/db/backup?compress=zstd",
                        _ => "/db/backup",
                    };
                    download_measured(node, path, &out, case.label())
                        .and_then(|r| r.ok_or_else(|| "GET /db/backup answered 404".to_string()))
                }
                Case::ToolGzip => tool_row(gzip.as_deref(), &["-1", "-c"], &plain, &out, case),
                Case::ToolZstd => tool_row(
                    zstd.as_deref(),
                    &["-3", "-T1", "-q", "-c"],
                    &plain,
                    &out,
                    case,
                ),
            }
            .and_then(|row| check_output(row, &out, case, plain_bytes))
            .or_fail(&mut report)?;
            let _ = std::fs::remove_file(&out);
            slot.1.push(row);
        }
    }
    let _ = std::fs::remove_file(&plain);

    let mut medians: Vec<(Case, Row)> = Vec::new();
    for (case, rounds) in &rows {
        medians.push((*case, median_row(rounds).or_fail(&mut report)?));
    }
    let tool_for = |case: Case| match case {
        Case::HttpGzip => Some(Case::ToolGzip),
        Case::HttpZstd => Some(Case::ToolZstd),
        _ => None,
    };
    let find = |case: Case| medians.iter().find(|(c, _)| *c == case).map(|(_, r)| r);
    for (case, row) in &medians {
        let row = match tool_for(*case).and_then(find) {
            Some(tool) => row.clone().time_ratio_to(tool),
            None => row.clone(),
        };
        report.push(row);
    }
    Ok(report)
}

/// One run of a compression tool: `program args < plain > out`.
fn tool_row(
    program: Option<&Path>,
    args: &[&str],
    plain: &Path,
    out: &Path,
    case: Case,
) -> Result<Row, String> {
    let program: PathBuf = program
        .ok_or_else(|| format!("{}: the tool is not on PATH", case.label()))?
        .to_path_buf();
    let r = run_tool(&program, args, Some(plain), Some(out))?;
    let mut row = Row::new(case.label()).timed(r.wall.as_secs_f64(), Some(file_len(out)), None);
    row.peak_rss_mib = r.peak_rss_kib.map(kib_to_mib);
    Ok(row)
}

/// Checks that `out` is the case's format, and describes the row in the scenario's terms:
/// bytes = the compressed size, MB/s = the uncompressed backup per second.
fn check_output(row: Row, out: &Path, case: Case, plain_bytes: u64) -> Result<Row, String> {
    let mut head = [0u8; 16];
    let n = std::io::Read::read(
        &mut std::fs::File::open(out).map_err(|e| format!("open {}: {e}", out.display()))?,
        &mut head,
    )
    .map_err(|e| format!("read {}: {e}", out.display()))?;
    if !head[..n].starts_with(case.magic()) {
        return Err(format!(
            "{}: the output does not start like its format: {:02x?}",
            case.label(),
            &head[..n]
        ));
    }
    let compressed = row.bytes.unwrap_or(0);
    let wall = row.wall_s.unwrap_or(0.0).max(1e-9);
    let mut row = row.note(format!(
        "{compressed} bytes = {:.1}% of the {plain_bytes}-byte backup; MB/s of the backup",
        100.0 * compressed as f64 / plain_bytes.max(1) as f64
    ));
    row.mb_per_s = Some(plain_bytes as f64 / 1e6 / wall);
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_takes_every_position_over_as_many_rounds() {
        for pos in 0..Case::ALL.len() {
            let mut seen: Vec<Case> = (0..Case::ALL.len()).map(|r| round_order(r)[pos]).collect();
            seen.sort_by_key(|c| Case::ALL.iter().position(|a| a == c));
            assert_eq!(seen, Case::ALL.to_vec(), "position {pos}");
        }
    }
}
