//! The scenarios. Each is a function from a [`Context`] to a [`ScenarioReport`]; `all` runs
//! them in the order of `cli::SCENARIOS`.
//!
//! A scenario whose feature is not in this build yet (an endpoint that answers 404, a
//! subcommand the binary lacks) reports `skipped` with the reason and never fails the run;
//! reference tools that need nothing from raftlite still run and print their figures, so the
//! baseline is there the day the feature lands. Filling one in means replacing its probe and
//! skip with the measurement: the data set, node start-up, tools and report are shared here.

pub mod archive;
pub mod backup;
pub mod cdc;
pub mod compression;
pub mod dump;
pub mod log_append;
pub mod restore;
pub mod shell_backup_memory;
pub mod sizes;
pub mod trust;
pub mod writes;

use std::path::{Path, PathBuf};

use crate::cli::Options;
use crate::datagen::{self, DataSet};
use crate::node::{scratch_dir, Cluster};
use crate::report::{Outcome, Row, ScenarioReport};

/// What every scenario shares: options, the data set (generated once per run) and tools.
pub struct Context {
    pub opts: Options,
    data_set: Option<DataSet>,
    pub agent: ureq::Agent,
}

impl Context {
    pub fn new(opts: Options) -> Context {
        Context {
            opts,
            data_set: None,
            agent: crate::node::agent(),
        }
    }

    /// The cached data set for `--size`/`--seed`, generated on first use.
    pub fn data_set(&mut self) -> Result<DataSet, String> {
        if let Some(d) = &self.data_set {
            return Ok(d.clone());
        }
        let started = std::time::Instant::now();
        let d = datagen::data_set(&self.opts.work_dir, self.opts.size, self.opts.seed)?;
        eprintln!(
            "raftlite-bench: data set {} ({} bytes, {} rows) ready in {:.1} s",
            d.path.display(),
            d.bytes,
            d.rows,
            started.elapsed().as_secs_f64()
        );
        self.data_set = Some(d.clone());
        Ok(d)
    }

    /// The data set of `size` bytes (same seed): the run's own when `size` is `--size`, else
    /// generated (or found in the cache) now. P1 is measured at two sizes.
    pub fn data_set_sized(&mut self, size: u64) -> Result<DataSet, String> {
        if size == self.opts.size {
            return self.data_set();
        }
        datagen::data_set(&self.opts.work_dir, size, self.opts.seed)
    }

    pub fn data_set_path(&self) -> Option<String> {
        self.data_set.as_ref().map(|d| d.path.display().to_string())
    }

    pub fn scratch(&self, name: &str) -> Result<PathBuf, String> {
        scratch_dir(&self.opts.work_dir, name)
    }

    /// An `n`-node cluster serving the data set. Each node gets its own copy as `db.sqlite`
    /// before start-up, so no load endpoint is involved: the copies are identical, the log
    /// holds no writes yet, and the cluster is consistent from its first entry.
    pub fn cluster_with_data(&mut self, name: &str, n: usize) -> Result<Cluster, String> {
        self.cluster_with_data_and(name, n, &[])
    }

    /// As [`Context::cluster_with_data`], each node with `extra` flags too.
    pub fn cluster_with_data_and(
        &mut self,
        name: &str,
        n: usize,
        extra: &[String],
    ) -> Result<Cluster, String> {
        let data = self.data_set()?;
        self.cluster_serving(name, n, extra, &data.path)
    }

    /// As [`Context::cluster_with_data_and`], serving a copy of `file` instead of the data set.
    pub fn cluster_serving(
        &self,
        name: &str,
        n: usize,
        extra: &[String],
        file: &Path,
    ) -> Result<Cluster, String> {
        let work = self.scratch(name)?;
        for i in 1..=n {
            let node_dir = work.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
            std::fs::copy(file, node_dir.join("db.sqlite"))
                .map_err(|e| format!("copy {} into node{i}: {e}", file.display()))?;
        }
        Cluster::start_with(&self.opts.bin_dir, &work, n, extra)
    }

    pub fn empty_cluster(&self, name: &str, n: usize) -> Result<Cluster, String> {
        Cluster::start(&self.opts.bin_dir, &self.scratch(name)?, n)
    }

    pub fn sqlite3(&self) -> Result<PathBuf, String> {
        which("sqlite3").ok_or_else(|| "the sqlite3 CLI is not on PATH".to_string())
    }

    pub fn raftlite_bin(&self) -> PathBuf {
        self.opts.bin_dir.join("raftlite")
    }
}

/// Runs one scenario by name, turning an error into a `Failed` report.
pub fn run(name: &str, ctx: &mut Context) -> ScenarioReport {
    eprintln!("raftlite-bench: scenario {name}");
    let result = match name {
        "writes" => writes::run(ctx),
        "archive" => archive::run(ctx),
        "cdc" => cdc::run(ctx),
        "backup" => backup::run(ctx),
        "compression" => compression::run(ctx),
        "dump" => dump::run(ctx),
        "restore" => restore::run(ctx),
        "log-append" => log_append::run(ctx),
        "shell-backup-memory" => shell_backup_memory::run(ctx),
        "sizes" => sizes::run(ctx),
        "trust" => trust::run(ctx),
        other => Err(Box::new((
            ScenarioReport::new(other, &[]),
            format!("unknown scenario {other}"),
        ))),
    };
    match result {
        Ok(r) => r,
        Err(failed) => {
            let (mut r, why) = *failed;
            eprintln!("raftlite-bench: {name}: FAILED: {why}");
            r.outcome = Outcome::Failed(why);
            r
        }
    }
}

/// A scenario's result: its report, or the partial report and why it failed.
/// A scenario that stopped: the rows measured so far, and why.
pub type Stopped = Box<(ScenarioReport, String)>;

pub type ScenarioResult = Result<ScenarioReport, Stopped>;

/// `?` for scenarios: keeps the rows measured so far when a step fails.
pub trait OrFail<T> {
    fn or_fail(self, report: &mut ScenarioReport) -> Result<T, Box<(ScenarioReport, String)>>;
}

impl<T> OrFail<T> for Result<T, String> {
    fn or_fail(self, report: &mut ScenarioReport) -> Result<T, Box<(ScenarioReport, String)>> {
        self.map_err(|e| Box::new((std::mem::replace(report, ScenarioReport::new("", &[])), e)))
    }
}

/// The path of `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

pub fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// A feature's cost on P9's and P6's write cases (`archive`, `cdc`): `rounds` rounds of each
/// side, off first, alternating (`measure::alternate`); pushes the median "on" row of each
/// case with its throughput ratio to the median "off" row, then that "off" row. Returns every
/// round, for what else a side measured.
pub(super) fn cost_on_writes<R>(
    report: &mut ScenarioReport,
    rounds: usize,
    off: impl FnMut() -> Result<R, String>,
    on: impl FnMut() -> Result<R, String>,
    cases: [fn(&R) -> Row; 2],
) -> Result<(Vec<R>, Vec<R>), Stopped> {
    let (off, on) = crate::measure::alternate(rounds, off, on).or_fail(report)?;
    for case in cases {
        let median = |rs: &[R]| median_row(&rs.iter().map(case).collect::<Vec<_>>());
        let off_row = median(&off).or_fail(report)?;
        let on_row = median(&on).or_fail(report)?;
        report.push(on_row.throughput_ratio_to(&off_row));
        report.push(off_row);
    }
    Ok((off, on))
}

/// The median round of a case (by wall time) as the case's row: that round's figures, with
/// every round's time in round order and the spread at the head of its note (`median of 3:
/// 5.02 / 4.10 / 4.35 s (min 4.10 / median 4.35 / max 5.02 s)`), then the median round's own
/// note. Errors when there are no rounds or a round
/// has no wall time (a median of untimed rows would be arbitrary).
pub fn median_row(rounds: &[Row]) -> Result<Row, String> {
    let times = rounds
        .iter()
        .map(|r| {
            r.wall_s
                .ok_or_else(|| format!("round of {} has no wall time", r.case))
        })
        .collect::<Result<Vec<f64>, String>>()?;
    let median = crate::measure::median_by(rounds, |r| r.wall_s.unwrap_or(f64::NAN))
        .ok_or("a median of no rounds")?;
    let shown: Vec<String> = times.iter().map(|&t| seconds(t)).collect();
    let spread = if times.len() > 1 {
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let max = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!(
            " (min {} / median {} / max {} s)",
            seconds(min),
            seconds(median.wall_s.unwrap_or(f64::NAN)),
            seconds(max)
        )
    } else {
        String::new()
    };
    Ok(median
        .clone()
        .note(format!(
            "median of {}: {} s{spread}",
            rounds.len(),
            shown.join(" / ")
        ))
        .also_note(&median.note))
}

/// The largest RSS growth of any round: memory goals are bounds, so the worst round counts,
/// not the typical one.
pub fn max_rss_growth(rounds: &[Row]) -> Option<f64> {
    rounds
        .iter()
        .filter_map(|r| r.rss_growth_mib)
        .reduce(f64::max)
}

/// The largest sampled `RssAnon` and `RssFile` growth of any round (each its own largest).
pub fn max_sampled_growth(rounds: &[Row]) -> Option<crate::measure::Growth> {
    let all: Vec<Option<crate::measure::Growth>> = rounds
        .iter()
        .map(|r| {
            Some(crate::measure::Growth {
                anon_mib: r.rss_anon_growth_mib?,
                file_mib: r.rss_file_growth_mib?,
            })
        })
        .collect();
    crate::measure::largest_growth(&all)
}

/// Seconds for a note: three decimals below one second (quick runs), two above.
fn seconds(t: f64) -> String {
    if t < 1.0 {
        format!("{t:.3}")
    } else {
        format!("{t:.2}")
    }
}

/// Downloads `path` from `node` into `out` with `curl -sS -o out URL`, the client the issues
/// name (`curl /db/backup > f`), and times it. Returns None when the endpoint does not exist
/// (404), and the node's memory growth during the download: VmHWM over VmRSS (`RSS+`), and
/// the sampled `RssAnon` and `RssFile` apart.
pub fn download_measured(
    node: &crate::node::Node,
    path: &str,
    out: &Path,
    label: &str,
) -> Result<Option<crate::report::Row>, String> {
    Ok(download_then_sync(node, path, out, label, false)?.map(|(row, _)| row))
}

/// As [`download_measured`]; with `sync`, `out` is then fsynced and the second value is the
/// time until that fsync returned (the download's own time stays in the row). So one
/// download gives both durabilities of P1: `curl -o` alone, and `curl -o` + fsync.
pub fn download_then_sync(
    node: &crate::node::Node,
    path: &str,
    out: &Path,
    label: &str,
    sync: bool,
) -> Result<Option<(crate::report::Row, Option<f64>)>, String> {
    let baseline = node.rss_kib();
    let url = node.url(path);
    crate::measure::settle();
    let sampler = crate::measure::MemorySampler::start(node.pid().into_iter().collect());
    let started = std::time::Instant::now();
    let run = std::process::Command::new("curl")
        .args(["-sS", "--fail-with-body", "-o"])
        .arg(out)
        .args(["-w", "%{http_code}", &url])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("run curl (is it installed?): {e}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let code = String::from_utf8_lossy(&run.stdout).trim().to_string();
    let synced = if sync && code == "200" && run.status.success() {
        crate::measure::fsync_file(out)?;
        Some(started.elapsed().as_secs_f64())
    } else {
        None
    };
    let growth = crate::measure::largest_growth(&sampler.finish());
    if code == "404" {
        return Ok(None);
    }
    if !run.status.success() || code != "200" {
        let body = std::fs::read_to_string(out).unwrap_or_default();
        return Err(format!(
            "{url}: HTTP {code}: {} {}",
            String::from_utf8_lossy(&run.stderr).trim(),
            body.chars().take(300).collect::<String>()
        ));
    }
    let bytes = std::fs::metadata(out)
        .map_err(|e| format!("stat {}: {e}", out.display()))?
        .len();
    let mut row = crate::report::Row::new(label)
        .timed(elapsed, Some(bytes), None)
        .with_growth(growth);
    if let (Some(b), Some(h)) = (baseline, node.hwm_kib()) {
        row.rss_growth_mib = Some(crate::measure::kib_to_mib(h.saturating_sub(b)));
    }
    Ok(Some((row, synced)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(wall_s: f64, mb: u64, rss: Option<f64>, note: &str) -> Row {
        let mut r = Row::new("case")
            .timed(wall_s, Some(mb * 1_000_000), None)
            .note(note);
        r.rss_growth_mib = rss;
        r
    }

    #[test]
    fn median_row_is_the_middle_round_with_every_time_in_its_note() {
        let rounds = [
            round(5.02, 100, Some(3.0), "first"),
            round(4.10, 100, Some(9.0), "second"),
            round(4.35, 100, Some(1.0), "third"),
        ];
        let row = median_row(&rounds).unwrap();
        assert_eq!(row.wall_s, Some(4.35));
        assert_eq!(row.mb_per_s, Some(100.0 / 4.35));
        assert_eq!(
            row.rss_growth_mib,
            Some(1.0),
            "the median round's own figures"
        );
        assert_eq!(
            row.note,
            "median of 3: 5.02 / 4.10 / 4.35 s (min 4.10 / median 4.35 / max 5.02 s); third"
        );
        assert_eq!(max_rss_growth(&rounds), Some(9.0));
    }

    #[test]
    fn median_row_of_one_and_of_an_even_count() {
        let one = median_row(&[round(0.0123, 1, None, "")]).unwrap();
        assert_eq!(
            (one.wall_s, one.note.as_str()),
            (Some(0.0123), "median of 1: 0.012 s")
        );
        let even = [
            round(4.0, 1, None, ""),
            round(1.0, 1, None, ""),
            round(3.0, 1, None, ""),
            round(2.0, 1, None, ""),
        ];
        assert_eq!(
            median_row(&even).unwrap().wall_s,
            Some(2.0),
            "the lower middle"
        );
        assert!(median_row(&[]).is_err());
        assert!(median_row(&[Row::new("untimed")]).is_err());
        assert_eq!(max_rss_growth(&even), None);
    }
}
