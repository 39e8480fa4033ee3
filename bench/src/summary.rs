//! `raftlite-bench report`: the current figure of every goal, from JSON reports.
//!
//! For each goal of [`crate::goals::GOALS`], the latest run that measured it (by its
//! recorded date; a report without a date counts as older than any dated one, and of two
//! runs with the same date the one named later on the command line wins) gives the figure,
//! the verdict, and the date, commit and command that produced it. Runs with `--quick` or a
//! data set under 1 GiB are not read unless `--all-runs` asks (the goals are stated for the
//! 1 GiB data set; a quick run proves the harness works, not the product).
//!
//! The table is Markdown. `--write DOC` puts it between DOC's two marker lines ([`BEGIN`],
//! [`END`]) and leaves the rest of DOC alone, so `docs/benchmarks.md` is regenerated with one
//! command; a test holds that file to what its committed reports in `docs/bench-results/`
//! render.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{ReportOptions, FULL_SIZE};
use crate::goals::{Goal, Reading, GOALS};
use crate::record::{self, RunRecord};

/// The line that opens the generated table in a document (a prefix: the rest of the line is
/// free text).
pub const BEGIN: &str = "<!-- BEGIN current figures";
/// The line that closes it.
pub const END: &str = "<!-- END current figures -->";

/// A goal and the latest figure found for it.
pub struct Line<'a> {
    pub goal: &'static Goal,
    pub found: Option<(Reading, &'a RunRecord)>,
}

/// Why a run is not read for the goals, or None when it is.
pub fn not_for_goals(run: &RunRecord) -> Option<String> {
    if run.quick == Some(true) {
        return Some("a --quick run".into());
    }
    match run.size_bytes {
        Some(size) if size < FULL_SIZE => Some(format!(
            "a {size}-byte data set (the goals are stated for 1 GiB)"
        )),
        _ => None,
    }
}

/// The latest figure of every goal among `runs` (given in command-line order), and the runs
/// left out with the reason.
pub fn current<'a>(
    runs: &'a [(PathBuf, RunRecord)],
    all_runs: bool,
) -> (Vec<Line<'a>>, Vec<(&'a Path, String)>) {
    let mut ignored = Vec::new();
    let mut read: Vec<&'a RunRecord> = Vec::new();
    for (path, run) in runs {
        match not_for_goals(run) {
            Some(why) if !all_runs => ignored.push((path.as_path(), why)),
            _ => read.push(run),
        }
    }
    // Oldest first; a stable sort keeps command-line order between equal dates.
    read.sort_by(|a, b| a.date_utc.cmp(&b.date_utc));
    let lines = GOALS
        .iter()
        .map(|goal| Line {
            goal,
            found: read.iter().rev().find_map(|run| {
                let reading = (goal.read)(run.scenario(goal.scenario)?)?;
                Some((reading, *run))
            }),
        })
        .collect();
    (lines, ignored)
}

/// The Markdown table, one line per goal.
pub fn markdown(lines: &[Line<'_>]) -> String {
    let mut out = String::from(
        "| goal | target | latest figure | verdict | date (UTC) | commit | command |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for line in lines {
        let g = line.goal;
        let cells = match &line.found {
            Some((reading, run)) => [
                reading.figure.clone(),
                if reading.met { "met" } else { "**missed**" }.to_string(),
                run.date_utc.as_deref().map_or("unknown".into(), date),
                run.commit.as_deref().map_or("unknown".into(), commit),
                run.command.as_deref().map_or("unknown".into(), code),
            ],
            None => [
                "no figure".into(),
                "unknown".into(),
                "—".into(),
                "—".into(),
                "—".into(),
            ],
        };
        out.push_str(&format!("| {} | {} |", g.id, g.target));
        for c in cells {
            out.push_str(&format!(" {} |", c.replace('|', "\\|")));
        }
        out.push('\n');
    }
    out
}

/// `2026-11-27T21:00:00Z` → `2026-11-27 21:00`; anything else as written.
fn date(rfc3339: &str) -> String {
    match rfc3339.split_once('T') {
        Some((day, time)) if time.len() >= 5 => format!("{day} {}", &time[..5]),
        _ => rfc3339.to_string(),
    }
}

/// A git hash as its first 7 digits (and `(dirty)` for a build with uncommitted changes);
/// anything else (a transcribed `branch logbench`) as written.
fn commit(c: &str) -> String {
    let (hash, dirty) = c.strip_suffix("-dirty").map_or((c, false), |h| (h, true));
    if hash.len() >= 7 && hash.chars().all(|ch| ch.is_ascii_hexdigit()) {
        let short = code(&hash[..7]);
        if dirty {
            format!("{short} (dirty)")
        } else {
            short
        }
    } else {
        c.to_string()
    }
}

/// An inline code span that holds `text` whatever backticks it contains.
fn code(text: &str) -> String {
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

/// `doc` with the text between its [`BEGIN`] and [`END`] lines replaced by `table`, set off
/// by blank lines.
pub fn replace_table(doc: &str, table: &str) -> Result<String, String> {
    let (head, _, tail) = split_at_markers(doc)?;
    Ok(format!("{head}\n{table}\n{tail}"))
}

/// `doc` cut around its generated part: (up to and including the BEGIN line, the generated
/// text, from the END line on).
pub fn split_at_markers(doc: &str) -> Result<(&str, &str, &str), String> {
    split_between(doc, BEGIN, END)
}

/// `doc` cut around the text between a line starting with `begin` and a later line that is
/// `end`: (up to and including the begin line, the text between, from the end line on).
pub fn split_between<'d>(
    doc: &'d str,
    begin: &str,
    end: &str,
) -> Result<(&'d str, &'d str, &'d str), String> {
    let begin_at = line_start(doc, |l| l.starts_with(begin))
        .ok_or_else(|| format!("no line starting with {begin:?}: add it and {end:?}"))?;
    let after_begin = doc[begin_at..]
        .find('\n')
        .map_or(doc.len(), |i| begin_at + i + 1);
    let end_at = line_start(&doc[after_begin..], |l| l.trim_end() == end)
        .map(|i| after_begin + i)
        .ok_or_else(|| format!("no {end:?} line after {begin:?}"))?;
    Ok((
        &doc[..after_begin],
        &doc[after_begin..end_at],
        &doc[end_at..],
    ))
}

/// Byte offset of the first line of `text` that `is` accepts.
fn line_start(text: &str, is: impl Fn(&str) -> bool) -> Option<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if is(line.trim_end_matches('\n')) {
            return Some(at);
        }
        at += line.len();
    }
    None
}

/// The `report` subcommand.
pub fn run(opts: &ReportOptions) -> ExitCode {
    let runs = match record::load_all(&opts.inputs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("raftlite-bench report: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (lines, ignored) = current(&runs, opts.all_runs);
    for (path, why) in &ignored {
        eprintln!(
            "raftlite-bench report: not read: {}: {why} (--all-runs reads it)",
            path.display()
        );
    }
    for (path, run) in &runs {
        if ignored.iter().any(|(p, _)| *p == path.as_path()) {
            continue;
        }
        for s in &run.scenarios {
            for flag in &s.flags {
                eprintln!(
                    "raftlite-bench report: {}: {}: FLAG: {flag}",
                    path.display(),
                    s.name
                );
            }
        }
    }
    let table = markdown(&lines);
    match &opts.write {
        None => print!("{table}"),
        Some(doc) => {
            let result = std::fs::read_to_string(doc)
                .map_err(|e| e.to_string())
                .and_then(|text| Ok((replace_table(&text, &table)?, text)))
                .and_then(|(new, old)| {
                    if new == old {
                        return Ok("already up to date");
                    }
                    std::fs::write(doc, new)
                        .map(|()| "table replaced")
                        .map_err(|e| e.to_string())
                });
            match result {
                Ok(what) => eprintln!("raftlite-bench report: {}: {what}", doc.display()),
                Err(e) => {
                    eprintln!("raftlite-bench report: {}: {e}", doc.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let missing: Vec<String> = lines
        .iter()
        .filter(|l| l.found.is_none())
        .map(|l| format!("{} ({})", l.goal.id, l.goal.target))
        .collect();
    if opts.complete && !missing.is_empty() {
        eprintln!(
            "raftlite-bench report: no figure for {} goal(s): {}",
            missing.len(),
            missing.join("; ")
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const WITH_METADATA: &str = r#"{
        "date_utc": "2026-11-27T21:00:00Z",
        "commit": "0123456789abcdef0123456789abcdef01234567-dirty",
        "command": "target/release/raftlite-bench --size 1GiB --out 'a|b.json' backup",
        "quick": false, "size_bytes": 1073741824,
        "scenarios": [{"name": "backup", "rows": [
            {"case": "raftlite GET /db/backup", "wall_s": 4.5, "rss_growth_mib": 9.0,
             "ratio": {"value": 0.867, "of": "time", "reference": "sqlite3 .backup"}},
            {"case": "sqlite3 .backup", "wall_s": 5.19},
            {"case": "3 nodes: GET /db/backup through a follower", "wall_s": 7.85,
             "ratio": {"value": 0.883, "of": "throughput",
                       "reference": "3 nodes: GET /db/backup from the leader"}},
            {"case": "3 nodes: GET /db/backup from the leader", "wall_s": 6.93}
        ]}]
    }"#;

    /// An older report: no date, commit or command.
    const WITHOUT_METADATA: &str = r#"{"scenarios": [{"name": "dump", "rows": [
        {"case": "raftlite dump DB", "wall_s": 6.0,
         "ratio": {"value": 0.54, "of": "time", "reference": "sqlite3 .dump"}}]}]}"#;

    /// Parsed reports from JSON texts, named `0.json`, `1.json`... (the chart's tests too).
    pub(crate) fn runs(texts: &[&str]) -> Vec<(PathBuf, RunRecord)> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let p = PathBuf::from(format!("{i}.json"));
                let run = record::parse(t, &p).unwrap();
                (p, run)
            })
            .collect()
    }

    fn table_line<'a>(table: &'a str, target_has: &str) -> &'a str {
        table
            .lines()
            .find(|l| l.contains(target_has))
            .unwrap_or_else(|| panic!("no line with {target_has:?} in\n{table}"))
    }

    #[test]
    fn met_missed_and_no_figure() {
        let runs = runs(&[WITH_METADATA]);
        let (lines, ignored) = current(&runs, false);
        assert!(ignored.is_empty());
        let t = markdown(&lines);
        assert_eq!(t.lines().count(), 2 + GOALS.len(), "a line per goal:\n{t}");
        assert_eq!(
            table_line(&t, "the time of `sqlite3 .backup`"),
            "| P1 | `GET /db/backup` to a file, synced (`curl -o` + fsync) ≤ 0.5× the time of \
             `sqlite3 .backup` (which syncs); the unsynced pair (`curl -o` against `sqlite3 \
             .backup` under eatmydata) beside it | 0.87× (4.50 s vs 5.19 s) (before issue #26: \
             curl unsynced against the synced `sqlite3 .backup`) | **missed** | \
             2026-11-27 21:00 | `0123456` (dirty) | \
             `target/release/raftlite-bench --size 1GiB --out 'a\\|b.json' backup` |"
        );
        assert_eq!(
            table_line(&t, "through a follower"),
            "| P4 | a backup through a follower ≥ 0.9× the throughput of one from the leader | \
             0.88× (7.85 s vs 6.93 s) | **missed** | 2026-11-27 21:00 | `0123456` (dirty) | \
             `target/release/raftlite-bench --size 1GiB --out 'a\\|b.json' backup` |"
        );
        assert_eq!(
            table_line(&t, "16 concurrent backups"),
            "| P8 | 16 concurrent backups ≥ 4× the aggregate throughput of one | no figure | \
             unknown | — | — | — |"
        );
    }

    #[test]
    fn an_old_report_renders_with_unknown_date_commit_and_command() {
        let runs = runs(&[WITHOUT_METADATA]);
        let (lines, ignored) = current(&runs, false);
        assert!(ignored.is_empty(), "nothing says it was quick or small");
        assert_eq!(
            table_line(&markdown(&lines), "`raftlite dump DB` ≤"),
            "| P2 | `raftlite dump DB` ≤ 0.5× the time of `sqlite3 .dump` | 0.54× | **missed** \
             | unknown | unknown | unknown |"
        );
    }

    #[test]
    fn the_latest_run_that_measured_a_goal_wins() {
        let newer_p1 = WITH_METADATA
            .replace("2026-11-27T21:00:00Z", "2026-11-28T09:00:00Z")
            .replace("0.867", "1.2")
            // This run measured P1 only.
            .replace("3 nodes: GET /db/backup through a follower", "another case");
        // Command-line order is not date order, and the undated report is the oldest.
        let runs = runs(&[&newer_p1, WITH_METADATA, WITHOUT_METADATA]);
        let (lines, _) = current(&runs, false);
        let t = markdown(&lines);
        let p1 = table_line(&t, "the time of `sqlite3 .backup`");
        assert!(
            p1.contains("1.20× (4.50 s vs 5.19 s) (before issue #26")
                && p1.contains("| **missed** | 2026-11-28 09:00"),
            "{p1}"
        );
        let p4 = table_line(&t, "through a follower");
        assert!(
            p4.contains("0.88×") && p4.contains("2026-11-27 21:00"),
            "{p4}"
        );
        assert!(table_line(&t, "`raftlite dump DB` ≤").contains("| unknown |"));
    }

    #[test]
    fn quick_and_small_runs_are_read_only_when_asked() {
        let quick = WITH_METADATA.replace("\"quick\": false", "\"quick\": true");
        let small = WITH_METADATA.replace("1073741824", "268435456");
        let runs = runs(&[&quick, &small]);
        let (lines, ignored) = current(&runs, false);
        assert!(lines.iter().all(|l| l.found.is_none()));
        let why: Vec<&str> = ignored.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(
            why,
            [
                "a --quick run",
                "a 268435456-byte data set (the goals are stated for 1 GiB)"
            ]
        );
        let (lines, ignored) = current(&runs, true);
        assert!(ignored.is_empty());
        assert!(lines.iter().any(|l| l.found.is_some()));
    }

    #[test]
    fn the_table_goes_between_the_markers_and_nothing_else_changes() {
        let doc = "# Title\n\n<!-- BEGIN current figures (any text) -->\nold\nlines\n\
                   <!-- END current figures -->\n\nHistory.\n";
        let new = replace_table(doc, "| t |\n").unwrap();
        assert_eq!(
            new,
            "# Title\n\n<!-- BEGIN current figures (any text) -->\n\n| t |\n\n\
             <!-- END current figures -->\n\nHistory.\n"
        );
        assert_eq!(replace_table(&new, "| t |\n").unwrap(), new, "idempotent");
        assert!(replace_table("# no markers\n", "x").is_err());
        assert!(replace_table("<!-- BEGIN current figures -->\nx\n", "x").is_err());
    }

    /// `docs/benchmarks.md` shows exactly what its committed reports render, so the page
    /// cannot drift from its data.
    #[test]
    fn docs_table_is_what_the_committed_reports_render() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let results = root.join("docs/bench-results");
        let runs = record::load_all(&[results]).unwrap();
        let (lines, ignored) = current(&runs, false);
        assert!(
            ignored.is_empty(),
            "a committed report the table does not read: {:?}",
            ignored
        );
        let doc = std::fs::read_to_string(root.join("docs/benchmarks.md")).unwrap();
        let (_, generated, _) = split_at_markers(&doc).unwrap();
        assert_eq!(
            generated,
            format!("\n{}\n", markdown(&lines)),
            "docs/benchmarks.md's table is stale: run `cargo run --release -p raftlite-bench \
             -- report --write docs/benchmarks.md docs/bench-results`"
        );
        assert!(
            lines.iter().all(|l| l.found.is_some()),
            "every goal has a recorded figure"
        );
    }
}
