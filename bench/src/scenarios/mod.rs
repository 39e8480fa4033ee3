//! The scenarios. Each is a function from a [`Context`] to a [`ScenarioReport`]; `all` runs
//! them in the order of `cli::SCENARIOS`.
//!
//! A scenario whose feature is not in this build yet (an endpoint that answers 404, a
//! subcommand the binary lacks) reports `skipped` with the reason and never fails the run;
//! reference tools that need nothing from raftlite still run and print their figures, so the
//! baseline is there the day the feature lands. Filling one in means replacing its probe and
//! skip with the measurement: the data set, node start-up, tools and report are shared here.

pub mod backup;
pub mod dump;
pub mod log_append;
pub mod restore;
pub mod shell_backup_memory;
pub mod writes;

use std::path::{Path, PathBuf};

use crate::cli::Options;
use crate::datagen::{self, DataSet};
use crate::node::{scratch_dir, Cluster};
use crate::report::{Outcome, ScenarioReport};

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

    pub fn data_set_path(&self) -> Option<String> {
        self.data_set.as_ref().map(|d| d.path.display().to_string())
    }

    pub fn scratch(&self, name: &str) -> Result<PathBuf, String> {
        scratch_dir(&self.opts.work_dir, name)
    }

    /// A single-node "cluster" serving a copy of the data set (copied in as `db.sqlite`
    /// before start-up, so no load endpoint is needed).
    pub fn cluster_with_data(&mut self, name: &str) -> Result<Cluster, String> {
        let data = self.data_set()?;
        let work = self.scratch(name)?;
        let node_dir = work.join("node1");
        std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
        std::fs::copy(&data.path, node_dir.join("db.sqlite"))
            .map_err(|e| format!("copy the data set into the node: {e}"))?;
        Cluster::start(&self.opts.bin_dir, &work, 1)
    }

    pub fn empty_cluster(&self, name: &str) -> Result<Cluster, String> {
        Cluster::start(&self.opts.bin_dir, &self.scratch(name)?, 1)
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
        "backup" => backup::run(ctx),
        "dump" => dump::run(ctx),
        "restore" => restore::run(ctx),
        "log-append" => log_append::run(ctx),
        "shell-backup-memory" => shell_backup_memory::run(ctx),
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
pub type ScenarioResult = Result<ScenarioReport, Box<(ScenarioReport, String)>>;

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

/// Streams `GET path` from `node` into the file `out` and measures it: wall time, bytes, and
/// the node's peak RSS growth over its level before the request. None when the endpoint does
/// not exist (404), so scenarios can report "not in this build".
pub fn download_measured(
    agent: &ureq::Agent,
    node: &crate::node::Node,
    path: &str,
    out: &Path,
    label: &str,
) -> Result<Option<crate::report::Row>, String> {
    let baseline = node.rss_kib();
    let url = node.url(path);
    let started = std::time::Instant::now();
    let resp = match agent.get(&url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(404, _)) => return Ok(None),
        Err(ureq::Error::Status(code, r)) => {
            return Err(format!(
                "{url}: {code}: {}",
                r.into_string().unwrap_or_default()
            ))
        }
        Err(e) => return Err(format!("{url}: {e}")),
    };
    let mut file =
        std::fs::File::create(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let bytes = std::io::copy(&mut resp.into_reader(), &mut file)
        .map_err(|e| format!("stream {url}: {e}"))?;
    let mut row =
        crate::report::Row::new(label).timed(started.elapsed().as_secs_f64(), Some(bytes), None);
    if let (Some(b), Some(h)) = (baseline, node.hwm_kib()) {
        row.rss_growth_mib = Some(crate::measure::kib_to_mib(h.saturating_sub(b)));
    }
    Ok(Some(row))
}
