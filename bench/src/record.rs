//! Reading JSON reports back: the runs `raftlite-bench report` summarises.
//!
//! The writing side ([`crate::report::RunReport`]) holds what a run has just measured, with
//! the fields it always knows. A report read back may be older than a field (reports written
//! before the commit was recorded have none) or transcribed by hand from the notebook in
//! `docs/benchmarks.md`, which recorded some figures of a run and not others. So every field
//! here is optional, and a missing one means "not recorded", never zero.
//!
//! Unknown fields are refused, not ignored: a misspelt key in a transcribed file would
//! otherwise read as a missing figure. So every field the writer writes is declared here,
//! whether the summary reads it or not, and the test `a_written_report_reads_back` keeps
//! these types in step with the writer's.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One run: when, what was built, how it was invoked, and what each scenario measured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Every field the writer writes is declared (see above), read or not.
pub struct RunRecord {
    pub tool: Option<String>,
    pub version: Option<String>,
    /// RFC 3339, UTC (`2026-11-27T21:00:00Z`).
    pub date_utc: Option<String>,
    /// The git commit of the build (`-dirty` appended when the sources differed from it), or,
    /// in a transcribed report, the build as the notebook names it (`branch logbench`).
    pub commit: Option<String>,
    /// The bench's command line as typed.
    pub command: Option<String>,
    pub machine: Option<MachineRecord>,
    pub quick: Option<bool>,
    pub size_bytes: Option<u64>,
    pub seed: Option<u64>,
    pub data_set: Option<String>,
    /// Only in a report transcribed from the notebook: where its figures come from and what
    /// the notebook did not record.
    pub transcribed_from: Option<String>,
    #[serde(default)]
    pub scenarios: Vec<ScenarioRecord>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Every field the writer writes is declared (see above), read or not.
pub struct MachineRecord {
    pub cpus: Option<usize>,
    pub mem_total_mib: Option<u64>,
    pub kernel: Option<String>,
    pub sqlite3_cli: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Every field the writer writes is declared (see above), read or not.
pub struct ScenarioRecord {
    pub name: String,
    pub outcome: Option<OutcomeRecord>,
    #[serde(default)]
    pub goals: Vec<String>,
    #[serde(default)]
    pub skipped_parts: Vec<String>,
    /// Reasons to distrust some figures of the run (absent in reports before issue #26).
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub rows: Vec<RowRecord>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Every field the writer writes is declared (see above), read or not.
pub struct OutcomeRecord {
    /// `ran`, `skipped` or `failed`.
    pub status: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Every field the writer writes is declared (see above), read or not.
pub struct RowRecord {
    pub case: String,
    pub wall_s: Option<f64>,
    pub bytes: Option<u64>,
    pub mb_per_s: Option<f64>,
    pub statements: Option<u64>,
    pub stmts_per_s: Option<f64>,
    pub latency_ms: Option<LatencyRecord>,
    pub rss_growth_mib: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    /// Sampled `RssAnon` growth; absent in reports before issue #26, which recorded only
    /// `rss_growth_mib` (VmHWM over VmRSS, file pages included).
    pub rss_anon_growth_mib: Option<f64>,
    pub rss_file_growth_mib: Option<f64>,
    pub ratio: Option<RatioRecord>,
    #[serde(default)]
    pub note: String,
    /// The database size of this row when the scenario measures several (`sizes`).
    pub data_set_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Every field the writer writes is declared (see above), read or not.
pub struct LatencyRecord {
    pub samples: Option<usize>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatioRecord {
    pub value: f64,
    /// `time`, `throughput` or `p99`.
    pub of: String,
    pub reference: String,
}

impl RunRecord {
    pub fn scenario(&self, name: &str) -> Option<&ScenarioRecord> {
        self.scenarios.iter().find(|s| s.name == name)
    }
}

impl ScenarioRecord {
    /// The row of exactly this case.
    pub fn row(&self, case: &str) -> Option<&RowRecord> {
        self.rows.iter().find(|r| r.case == case)
    }

    /// The row a ratio of `row` was taken against.
    pub fn reference_of(&self, row: &RowRecord) -> Option<&RowRecord> {
        self.row(&row.ratio.as_ref()?.reference)
    }
}

/// Parses one report; the error names the file.
pub fn parse(text: &str, origin: &Path) -> Result<RunRecord, String> {
    serde_json::from_str(text).map_err(|e| format!("read {}: {e}", origin.display()))
}

/// The report files `paths` name: a file as given, a directory as its `*.json` files in name
/// order.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut in_dir: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("list {}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "json"))
                .collect();
            if in_dir.is_empty() {
                return Err(format!("{} holds no .json report", p.display()));
            }
            in_dir.sort();
            files.extend(in_dir);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Reads every report `paths` name (see [`expand`]), in that order.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<(PathBuf, RunRecord)>, String> {
    expand(paths)?
        .into_iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(&f).map_err(|e| format!("read {}: {e}", f.display()))?;
            let run = parse(&text, &f)?;
            Ok((f, run))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Machine, Outcome, Row, RunReport, ScenarioReport};

    #[test]
    fn a_written_report_reads_back() {
        let mut s = ScenarioReport::new("backup", &["P1: a goal"]);
        let reference = Row::new("sqlite3 .backup").timed(2.0, Some(1_000_000), None);
        let mut row = Row::new("raftlite GET /db/backup")
            .timed(1.0, Some(1_000_000), Some(3))
            .time_ratio_to(&reference)
            .note("a note");
        row.latency_ms =
            crate::measure::Percentiles::of(&mut [std::time::Duration::from_millis(5)]);
        row.rss_growth_mib = Some(9.0);
        row.peak_rss_mib = Some(12.0);
        let row = row.with_growth(Some(crate::measure::Growth {
            anon_mib: 3.0,
            file_mib: 40.0,
        }));
        s.rows.push(row);
        s.flag("a flag");
        s.rows.push(reference);
        s.skip_part("a part");
        s.outcome = Outcome::Skipped("why".into());
        let run = RunReport {
            tool: "raftlite-bench",
            version: "0.1.0",
            date_utc: "2026-01-02T03:04:05Z".into(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            command: "target/release/raftlite-bench --quick backup".into(),
            machine: Machine {
                cpus: 2,
                mem_total_mib: Some(1024),
                kernel: Some("6.1".into()),
                sqlite3_cli: Some("3.40.1".into()),
            },
            quick: true,
            size_bytes: 4 << 20,
            seed: 1,
            data_set: Some("/tmp/d.sqlite".into()),
            scenarios: vec![s],
        };
        let json = serde_json::to_string(&run).unwrap();
        let back = parse(&json, Path::new("x.json")).expect("every written field is known");
        assert_eq!(back.date_utc.as_deref(), Some("2026-01-02T03:04:05Z"));
        assert_eq!(back.commit, run.commit);
        assert_eq!(back.command.as_deref(), Some(run.command.as_str()));
        assert_eq!(back.machine.as_ref().and_then(|m| m.cpus), Some(2));
        assert_eq!((back.quick, back.size_bytes), (Some(true), Some(4 << 20)));
        let s = back.scenario("backup").unwrap();
        let row = s.row("raftlite GET /db/backup").unwrap();
        let ratio = row.ratio.as_ref().unwrap();
        assert_eq!((ratio.value, ratio.of.as_str()), (0.5, "time"));
        assert_eq!(s.reference_of(row).unwrap().wall_s, Some(2.0));
        assert_eq!(row.latency_ms.as_ref().unwrap().p99, Some(5.0));
        assert_eq!(
            (row.rss_anon_growth_mib, row.rss_file_growth_mib),
            (Some(3.0), Some(40.0))
        );
        assert_eq!(s.flags, ["a flag"]);
        assert_eq!(s.outcome.as_ref().unwrap().status, "skipped");
    }

    /// A row of the `sizes` scenario carries its database's size; other rows write none.
    #[test]
    fn a_rows_database_size_reads_back_and_is_written_only_when_known() {
        let mut s = ScenarioReport::new("sizes", &[]);
        let mut row = Row::new("backup: cp").timed(1.0, Some(1_000_000), None);
        row.data_set_bytes = Some(64 << 20);
        s.rows.push(row);
        s.rows.push(Row::new("other"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json.matches("data_set_bytes").count(), 1, "{json}");
        let back: ScenarioRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.row("backup: cp").unwrap().data_set_bytes,
            Some(64 << 20)
        );
        assert_eq!(back.row("other").unwrap().data_set_bytes, None);
    }

    #[test]
    fn an_old_report_without_metadata_reads_as_unknown() {
        let old = r#"{"tool":"raftlite-bench","version":"0.1.0","scenarios":[
            {"name":"dump","outcome":{"status":"ran"},"goals":[],"skipped_parts":[],
             "rows":[{"case":"raftlite dump DB","wall_s":1.0}]}]}"#;
        let run = parse(old, Path::new("old.json")).unwrap();
        assert_eq!((run.date_utc, run.commit, run.command), (None, None, None));
        assert_eq!((run.quick, run.size_bytes), (None, None));
        let row = &run.scenarios[0].rows[0];
        assert_eq!((row.wall_s, row.rss_growth_mib), (Some(1.0), None));
    }

    #[test]
    fn a_misspelt_field_is_refused_with_the_file_name() {
        let typo = r#"{"scenarios":[{"name":"dump","rows":[{"case":"c","rss_growth":1.0}]}]}"#;
        let e = parse(typo, Path::new("docs/bench-results/x.json")).unwrap_err();
        assert!(e.contains("docs/bench-results/x.json"), "{e}");
        assert!(e.contains("rss_growth"), "{e}");
    }
}
