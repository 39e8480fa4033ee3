//! Results: what a scenario measured, the aligned table printed at the end of a run, and the
//! JSON file written beside it.
//!
//! A row is one measured case: raftlite or a reference tool. Figures are absolute (seconds,
//! MB/s with MB = 10^6 bytes, statements/s, milliseconds, MiB), and a row that has a
//! reference in the same run also carries a ratio to it. Ratios are what to compare across
//! runs: the machines are noisy and absolute figures drift from run to run.

use serde::Serialize;

use crate::measure::Percentiles;

/// One measured case.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// What ran, e.g. `raftlite GET /db/backup` or `sqlite3 .backup`.
    pub case: String,
    pub wall_s: Option<f64>,
    pub bytes: Option<u64>,
    pub mb_per_s: Option<f64>,
    pub statements: Option<u64>,
    pub stmts_per_s: Option<f64>,
    /// Per-request latency.
    pub latency_ms: Option<Percentiles>,
    /// Peak RSS (VmHWM) minus the idle baseline of the same process, in MiB.
    pub rss_growth_mib: Option<f64>,
    /// Absolute peak RSS, in MiB.
    pub peak_rss_mib: Option<f64>,
    /// Growth of a server's anonymous memory (`RssAnon`, sampled) over its value just before
    /// the case, in MiB: what issue #26's memory bounds are on.
    pub rss_anon_growth_mib: Option<f64>,
    /// Growth of its resident mapped-file pages (`RssFile`, page cache), reported apart.
    pub rss_file_growth_mib: Option<f64>,
    pub ratio: Option<Ratio>,
    pub note: String,
    /// The size of the database this row measured, when a scenario measures several sizes
    /// (`sizes`); absent otherwise, the run's `size_bytes` applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_set_bytes: Option<u64>,
}

/// `value` = this row's figure divided by the same figure of `reference`.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub value: f64,
    /// `time` (lower is better for raftlite) or `throughput` (higher is better).
    pub of: &'static str,
    pub reference: String,
}

impl Row {
    pub fn new(case: impl Into<String>) -> Row {
        Row {
            case: case.into(),
            ..Default::default()
        }
    }

    /// Sets wall time and the throughput derived from it.
    pub fn timed(mut self, wall_s: f64, bytes: Option<u64>, statements: Option<u64>) -> Row {
        let wall = wall_s.max(1e-9);
        self.wall_s = Some(wall_s);
        self.bytes = bytes;
        self.mb_per_s = bytes.map(|b| b as f64 / 1e6 / wall);
        self.statements = statements;
        self.stmts_per_s = statements.map(|n| n as f64 / wall);
        self
    }

    /// Records a server's sampled growth ([`crate::measure::MemorySampler`]).
    pub fn with_growth(mut self, growth: Option<crate::measure::Growth>) -> Row {
        if let Some(g) = growth {
            self.rss_anon_growth_mib = Some(g.anon_mib);
            self.rss_file_growth_mib = Some(g.file_mib);
        }
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    /// Appends `more` to the note, after a `; ` when the note already says something.
    pub fn also_note(mut self, more: impl AsRef<str>) -> Row {
        let more = more.as_ref();
        if !more.is_empty() {
            if !self.note.is_empty() {
                self.note.push_str("; ");
            }
            self.note.push_str(more);
        }
        self
    }

    /// Ratio of wall times, this / reference.
    pub fn time_ratio_to(mut self, reference: &Row) -> Row {
        if let (Some(a), Some(b)) = (self.wall_s, reference.wall_s) {
            self.ratio = Some(Ratio {
                value: a / b.max(1e-9),
                of: "time",
                reference: reference.case.clone(),
            });
        }
        self
    }

    /// Ratio of statements/s, this / reference.
    /// Statements per second where both rows have them, else MB/s.
    pub fn throughput_ratio_to(mut self, reference: &Row) -> Row {
        let pair = match (self.stmts_per_s, reference.stmts_per_s) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => self.mb_per_s.zip(reference.mb_per_s),
        };
        if let Some((a, b)) = pair {
            self.ratio = Some(Ratio {
                value: a / b.max(1e-9),
                of: "throughput",
                reference: reference.case.clone(),
            });
        }
        self
    }
}

/// How a scenario ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    Ran,
    /// The feature under test is not in this build yet (e.g. the endpoint answers 404).
    Skipped(String),
    Failed(String),
}

/// Everything one scenario produced. Rows measured before a skip or failure are kept.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub outcome: Outcome,
    /// The goals this scenario checks, as the issues state them (`docs/benchmarks.md`).
    pub goals: Vec<&'static str>,
    /// Parts of the scenario that were skipped while others ran, with the reason.
    pub skipped_parts: Vec<String>,
    /// Reasons to distrust some of this run's figures, found while measuring (a reference
    /// far from the disk's speed, a quiet wait that timed out); `raftlite-bench report`
    /// shows them beside the goals they concern.
    pub flags: Vec<String>,
    pub rows: Vec<Row>,
}

impl ScenarioReport {
    pub fn new(name: &str, goals: &[&'static str]) -> ScenarioReport {
        ScenarioReport {
            name: name.to_string(),
            outcome: Outcome::Ran,
            goals: goals.to_vec(),
            skipped_parts: Vec::new(),
            flags: Vec::new(),
            rows: Vec::new(),
        }
    }

    pub fn skip_part(&mut self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("raftlite-bench: {}: skipped: {what}", self.name);
        self.skipped_parts.push(what);
    }

    pub fn flag(&mut self, why: impl Into<String>) {
        let why = why.into();
        eprintln!("raftlite-bench: {}: FLAG: {why}", self.name);
        self.flags.push(why);
    }

    pub fn push(&mut self, row: Row) {
        eprintln!(
            "raftlite-bench: {}: {} done{}",
            self.name,
            row.case,
            row.wall_s
                .map(|w| format!(" in {w:.3} s"))
                .unwrap_or_default()
        );
        self.rows.push(row);
    }
}

/// The whole run, as written to JSON. `raftlite-bench report` reads it back
/// ([`crate::record::RunRecord`]) to show the current figure of every goal with the date,
/// commit and command that produced it.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub tool: &'static str,
    pub version: &'static str,
    pub date_utc: String,
    /// The git commit the workspace was built from (`-dirty` appended when its sources
    /// differed from it), embedded by `bench/build.rs`; None outside a git checkout.
    pub commit: Option<String>,
    /// The command line as typed, quoted for a POSIX shell where needed.
    pub command: String,
    pub machine: Machine,
    pub quick: bool,
    pub size_bytes: u64,
    pub seed: u64,
    pub data_set: Option<String>,
    pub scenarios: Vec<ScenarioReport>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub mem_total_mib: Option<u64>,
    pub kernel: Option<String>,
    pub sqlite3_cli: Option<String>,
}

impl Machine {
    pub fn probe() -> Machine {
        let mem_total_mib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb / 1024)
        });
        let sqlite3_cli = std::process::Command::new("sqlite3")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .next()
                    .map(String::from)
            });
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total_mib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string()),
            sqlite3_cli,
        }
    }
}

/// The aligned table: one line per row, scenarios in run order, skips spelled out.
pub fn table(scenarios: &[ScenarioReport]) -> String {
    let header = [
        "scenario",
        "case",
        "wall s",
        "MB/s",
        "stmts/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "RSS+ MiB",
        "anon+ MiB",
        "file+ MiB",
        "ratio",
        "note",
    ];
    let mut lines: Vec<Vec<String>> = Vec::new();
    for s in scenarios {
        for r in &s.rows {
            let lat = |f: fn(&Percentiles) -> f64| {
                r.latency_ms
                    .as_ref()
                    .map(|p| fmt(f(p), 2))
                    .unwrap_or_default()
            };
            lines.push(vec![
                s.name.clone(),
                r.case.clone(),
                r.wall_s.map(|v| fmt(v, 3)).unwrap_or_default(),
                r.mb_per_s.map(|v| fmt(v, 1)).unwrap_or_default(),
                r.stmts_per_s.map(|v| fmt(v, 0)).unwrap_or_default(),
                lat(|p| p.p50),
                lat(|p| p.p90),
                lat(|p| p.p99),
                lat(|p| p.max),
                r.rss_growth_mib
                    .map(|v| fmt(v, 1))
                    .or(r.peak_rss_mib.map(|v| format!("({})", fmt(v, 1))))
                    .unwrap_or_default(),
                r.rss_anon_growth_mib.map(|v| fmt(v, 1)).unwrap_or_default(),
                r.rss_file_growth_mib.map(|v| fmt(v, 1)).unwrap_or_default(),
                r.ratio
                    .as_ref()
                    .map(|q| format!("{:.2}x {} of {}", q.value, q.of, q.reference))
                    .unwrap_or_default(),
                r.note.clone(),
            ]);
        }
        for part in &s.skipped_parts {
            lines.push(skip_line(&s.name, &format!("skipped: {part}")));
        }
        for why in &s.flags {
            lines.push(skip_line(&s.name, &format!("FLAG: {why}")));
        }
        match &s.outcome {
            Outcome::Ran => {}
            Outcome::Skipped(why) => lines.push(skip_line(&s.name, &format!("skipped: {why}"))),
            Outcome::Failed(why) => lines.push(skip_line(&s.name, &format!("FAILED: {why}"))),
        }
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for l in &lines {
        // The last column (note) is free text and is not padded.
        for (w, c) in widths.iter_mut().zip(l.iter()).take(header.len() - 1) {
            *w = (*w).max(c.chars().count());
        }
    }
    let render = |cells: &[String]| -> String {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                let pad = widths[i] - c.chars().count();
                // Text columns left-aligned, numbers right-aligned.
                if i < 2 || i == RATIO_COLUMN {
                    out.push_str(c);
                    out.push_str(&" ".repeat(pad));
                } else {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(c);
                }
                out.push_str("  ");
            }
        }
        out.trim_end().to_string()
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = render(&header);
    out.push('\n');
    out.push_str(&"-".repeat(out.len().saturating_sub(1)));
    out.push('\n');
    for l in &lines {
        out.push_str(&render(l));
        out.push('\n');
    }
    out.push_str(
        "RSS+ = peak RSS (VmHWM) minus the idle baseline of the same process; \
         (n) = absolute peak RSS where no baseline applies; anon+ / file+ = a server's \
         largest sampled RssAnon / RssFile minus its value before the case.\n",
    );
    out
}

/// The table's columns: the ratio's (text, left-aligned among numbers) and how many.
const RATIO_COLUMN: usize = 12;
const COLUMNS: usize = 14;

fn skip_line(scenario: &str, text: &str) -> Vec<String> {
    let mut l = vec![String::new(); COLUMNS];
    l[0] = scenario.to_string();
    l[1] = "-".into();
    l[COLUMNS - 1] = text.to_string();
    l
}

fn fmt(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`2024-05-01T12:00:00Z`), without a date crate.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The commit `bench/build.rs` embedded, or None when it was built outside a git checkout.
pub fn build_commit() -> Option<String> {
    Some(env!("RAFTLITE_BENCH_COMMIT").to_string()).filter(|c| !c.is_empty())
}

/// `argv` as one line a POSIX shell reads back as the same words: a word with anything but
/// letters, digits and `_-./=:,@%+` is single-quoted.
pub fn command_line(argv: &[String]) -> String {
    let plain = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./=:,@%+".contains(c))
    };
    argv.iter()
        .map(|w| {
            if plain(w) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    rfc3339(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let argv: Vec<String> = [
            "target/release/raftlite-bench",
            "--out",
            "/tmp/a b.json",
            "it's",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            command_line(&argv),
            r"target/release/raftlite-bench --out '/tmp/a b.json' 'it'\''s' ''"
        );
    }

    #[test]
    fn notes_are_appended_with_a_separator() {
        assert_eq!(Row::new("a").also_note("x").note, "x");
        assert_eq!(Row::new("a").note("x").also_note("y").note, "x; y");
        assert_eq!(Row::new("a").note("x").also_note("").note, "x");
    }

    #[test]
    fn table_aligns_and_spells_out_skips() {
        let mut s = ScenarioReport::new("backup", &[]);
        let reference = Row::new("cp").timed(0.5, Some(1_000_000), None);
        s.rows.push(
            Row::new("sqlite3 .backup")
                .timed(1.0, Some(1_000_000), None)
                .time_ratio_to(&reference),
        );
        s.rows.push(reference);
        s.skip_part("GET /db/backup answered 404");
        s.flag("the reference was slow");
        let t = table(&[s]);
        assert!(t.contains("2.00x time of cp"), "{t}");
        assert!(t.contains("FLAG: the reference was slow"), "{t}");
        assert!(t.contains("skipped: GET /db/backup answered 404"), "{t}");
        let lines: Vec<&str> = t.lines().collect();
        // Numbers are right-aligned under their header.
        assert_eq!(
            lines[0].find("wall s").map(|i| i + "wall s".len()),
            lines[2].find("1.000").map(|i| i + "1.000".len())
        );
    }
}
