//! The command line: `raftlite-bench [options] SCENARIO...` runs scenarios,
//! `raftlite-bench report [options] RESULTS...` summarises JSON reports, and
//! `raftlite-bench chart [options] RESULTS...` draws them. Parsed by hand (the
//! option set is small and a parser crate would only add build time).
//!
//! Every default is chosen so that a bare `raftlite-bench --quick all` run from the
//! repository root after `cargo build --release --workspace` works: the binaries are looked
//! up next to `raftlite-bench` itself, and data sets are cached under the work directory.

use std::path::PathBuf;

/// Every scenario, in the order `all` runs them. `backup` first: P1 is timed on a quiet
/// machine, before other scenarios have left gigabytes to write back (issue #26).
pub const SCENARIOS: &[&str] = &[
    "backup",
    "writes",
    "compression",
    "dump",
    "restore",
    "log-append",
    "shell-backup-memory",
    "trust",
    "sizes",
    "archive",
    "cdc",
];

/// The data set size `--quick` uses unless `--size` is given.
pub const QUICK_SIZE: u64 = 4 << 20;
/// The data set size of a full run unless `--size` is given.
pub const FULL_SIZE: u64 = 1 << 30;

pub const USAGE: &str = "\
usage: raftlite-bench [OPTIONS] SCENARIO...
       raftlite-bench report [--write DOC] [--all-runs] [--complete] RESULTS...
       raftlite-bench chart --out DIR [--write DOC] [--all-runs] RESULTS...

Scenarios: all, backup, writes, compression, dump, restore, log-append, shell-backup-memory,
           trust, sizes, archive, cdc

Options:
  --quick            small sizes and counts; proves the harness works in well under a minute
  --size SIZE        data set size: 512KiB, 64MiB, 1GiB, 1500MB or plain bytes
                     (default 1GiB, or 4MiB with --quick)
  --sizes LIST       the database sizes the sizes scenario sweeps, comma-separated
                     (default 64MiB,256MiB,1GiB, or 1MiB,2MiB,4MiB with --quick)
  --seed N           data generator seed (default 1); same size + seed = same data
  --out FILE         write the JSON report here (default WORK_DIR/results.json)
  --bin-dir DIR      where raftlited and raftlite are (default: this binary's directory)
  --work-dir DIR     data set cache and scratch space (default: $TMPDIR/raftlite-bench)
  -h, --help         this text

report: the current figure of every goal, from JSON reports (files, or directories of
*.json), as a Markdown table: for each goal, the latest run that measured it.
  --write DOC        replace the table between DOC's current-figures markers instead of
                     printing it (docs/benchmarks.md)
  --all-runs         also read --quick runs and data sets under 1 GiB (the goals are stated
                     for 1 GiB; by default such runs are ignored, with a note on stderr)
  --complete         fail when a goal has no figure (CI: proves every goal's cases exist)

chart: SVG charts from JSON reports: throughput against database size (one chart per
operation, a line per tool) from the latest run of the sizes scenario, and every goal's
figure across the runs against its target.
  --out DIR          write the SVG files here (created if missing)
  --write DOC        replace the links between DOC's chart markers (docs/benchmarks.md)
  --all-runs         also read --quick runs and data sets under 1 GiB, as report does
";

/// Parsed options.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub size: u64,
    pub seed: u64,
    pub out: PathBuf,
    pub bin_dir: PathBuf,
    pub work_dir: PathBuf,
    pub scenarios: Vec<String>,
    /// The database sizes of the `sizes` scenario, in bytes.
    pub sweep: Vec<u64>,
}

/// Options of `raftlite-bench report`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Report files and directories of them, in the order given.
    pub inputs: Vec<PathBuf>,
    /// The document whose table to replace; None prints the table.
    pub write: Option<PathBuf>,
    pub all_runs: bool,
    pub complete: bool,
}

/// Options of `raftlite-bench chart`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartOptions {
    /// Report files and directories of them.
    pub inputs: Vec<PathBuf>,
    /// Where the SVG files go.
    pub out: PathBuf,
    /// The document whose chart links to replace; None leaves documents alone.
    pub write: Option<PathBuf>,
    pub all_runs: bool,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    Run(Options),
    Report(ReportOptions),
    Chart(ChartOptions),
    Help,
}

pub fn parse(args: &[String]) -> Result<Parsed, String> {
    if args.first().is_some_and(|a| a == "report") {
        return parse_report(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "chart") {
        return parse_chart(&args[1..]);
    }
    let mut quick = false;
    let mut size = None;
    let mut seed = 1u64;
    let mut sweep = None;
    let mut out = None;
    let mut bin_dir = None;
    let mut work_dir = None;
    let mut scenarios = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = option_and_inline_value(arg);
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match name {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--quick" => quick = true,
            "--size" => size = Some(parse_size(&value("a size")?)?),
            "--sizes" => {
                let list = value("a comma-separated list of sizes")?;
                let sizes = list
                    .split(',')
                    .map(parse_size)
                    .collect::<Result<Vec<u64>, String>>()?;
                sweep = Some(sizes);
            }
            "--seed" => {
                let v = value("a number")?;
                seed = v
                    .parse()
                    .map_err(|_| format!("--seed {v:?} is not a number"))?;
            }
            "--out" => out = Some(PathBuf::from(value("a file")?)),
            "--bin-dir" => bin_dir = Some(PathBuf::from(value("a directory")?)),
            "--work-dir" => work_dir = Some(PathBuf::from(value("a directory")?)),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            "all" => scenarios.extend(SCENARIOS.iter().map(|s| s.to_string())),
            s if SCENARIOS.contains(&s) => scenarios.push(s.to_string()),
            s => return Err(format!("unknown scenario {s:?}")),
        }
    }
    if scenarios.is_empty() {
        return Err("name at least one scenario, or all".into());
    }
    let mut seen = std::collections::HashSet::new();
    scenarios.retain(|s| seen.insert(s.clone()));
    let bin_dir = match bin_dir {
        Some(d) => d,
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .ok_or("cannot find this binary's directory; pass --bin-dir")?,
    };
    let work_dir = work_dir.unwrap_or_else(|| std::env::temp_dir().join("raftlite-bench"));
    let out = out.unwrap_or_else(|| work_dir.join("results.json"));
    Ok(Parsed::Run(Options {
        quick,
        size: size.unwrap_or(if quick { QUICK_SIZE } else { FULL_SIZE }),
        seed,
        out,
        bin_dir,
        work_dir,
        scenarios,
        sweep: sweep.unwrap_or_else(|| {
            let sizes = if quick {
                crate::scenarios::sizes::QUICK_SIZES
            } else {
                crate::scenarios::sizes::FULL_SIZES
            };
            sizes.to_vec()
        }),
    }))
}

/// `--opt=value` as (`--opt`, Some(`value`)); anything else as (itself, None). Both
/// `--opt value` and `--opt=value` are accepted.
fn option_and_inline_value(arg: &str) -> (&str, Option<String>) {
    match arg.split_once('=') {
        Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
        _ => (arg, None),
    }
}

fn parse_report(args: &[String]) -> Result<Parsed, String> {
    let mut opts = ReportOptions {
        inputs: Vec::new(),
        write: None,
        all_runs: false,
        complete: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = option_and_inline_value(arg);
        match name {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--write" => {
                let doc = inline
                    .or_else(|| it.next().cloned())
                    .ok_or("--write needs a file")?;
                opts.write = Some(PathBuf::from(doc));
            }
            "--all-runs" => opts.all_runs = true,
            "--complete" => opts.complete = true,
            s if s.starts_with('-') => return Err(format!("unknown report option {s}")),
            s => opts.inputs.push(PathBuf::from(s)),
        }
    }
    if opts.inputs.is_empty() {
        return Err("report needs at least one JSON report or directory of them".into());
    }
    Ok(Parsed::Report(opts))
}

fn parse_chart(args: &[String]) -> Result<Parsed, String> {
    let mut inputs = Vec::new();
    let mut out = None;
    let mut write = None;
    let mut all_runs = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = option_and_inline_value(arg);
        let mut value = |what: &str| -> Result<PathBuf, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match name {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--out" => out = Some(value("a directory")?),
            "--write" => write = Some(value("a file")?),
            "--all-runs" => all_runs = true,
            s if s.starts_with('-') => return Err(format!("unknown chart option {s}")),
            s => inputs.push(PathBuf::from(s)),
        }
    }
    if inputs.is_empty() {
        return Err("chart needs at least one JSON report or directory of them".into());
    }
    let out = out.ok_or("chart needs --out DIR")?;
    Ok(Parsed::Chart(ChartOptions {
        inputs,
        out,
        write,
        all_runs,
    }))
}

/// `1GiB`, `64MiB`, `512KiB`, `1500MB`, `2GB`, `1000kB`, `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("size {s:?} does not start with a number"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        u => return Err(format!("unknown size unit {u:?} in {s:?}")),
    };
    let bytes = num * mult as f64;
    if !(1.0..=1e13).contains(&bytes) {
        return Err(format!("size {s:?} is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn options_and_scenarios() {
        let Ok(Parsed::Run(o)) = parse(&args(
            "--quick --seed=7 --size 8MiB --work-dir /tmp/w writes all",
        )) else {
            panic!("did not parse");
        };
        assert!(o.quick);
        assert_eq!((o.seed, o.size), (7, 8 << 20));
        assert_eq!(o.scenarios.len(), SCENARIOS.len(), "duplicates removed");
        assert_eq!(o.scenarios[0], "writes");
        assert_eq!(o.out, PathBuf::from("/tmp/w/results.json"));
        assert_eq!(o.sweep, [1 << 20, 2 << 20, 4 << 20], "quick sizes");
        let Ok(Parsed::Run(o)) = parse(&args("--sizes 64MiB,1GiB sizes")) else {
            panic!("did not parse");
        };
        assert_eq!(o.sweep, [64 << 20, 1 << 30]);
        assert!(parse(&args("--sizes 64MiB,lots sizes")).is_err());
        assert!(parse(&args("--quick")).is_err());
        assert!(parse(&args("nope")).is_err());
        assert!(parse(&args("--bogus all")).is_err());
        assert!(matches!(parse(&args("--help")), Ok(Parsed::Help)));
    }

    #[test]
    fn report_options() {
        let Ok(Parsed::Report(r)) = parse(&args(
            "report --write=docs/benchmarks.md --all-runs a.json docs/bench-results",
        )) else {
            panic!("did not parse");
        };
        assert_eq!(
            r,
            ReportOptions {
                inputs: vec!["a.json".into(), "docs/bench-results".into()],
                write: Some("docs/benchmarks.md".into()),
                all_runs: true,
                complete: false,
            }
        );
        assert!(parse(&args("report")).is_err(), "no input");
        assert!(parse(&args("report --write")).is_err());
        assert!(parse(&args("report --quick a.json")).is_err());
    }

    #[test]
    fn chart_options() {
        let Ok(Parsed::Chart(c)) = parse(&args(
            "chart --out=docs/charts --write docs/benchmarks.md docs/bench-results",
        )) else {
            panic!("did not parse");
        };
        assert_eq!(
            c,
            ChartOptions {
                inputs: vec!["docs/bench-results".into()],
                out: "docs/charts".into(),
                write: Some("docs/benchmarks.md".into()),
                all_runs: false,
            }
        );
        assert!(
            parse(&args("chart docs/bench-results")).is_err(),
            "no --out"
        );
        assert!(parse(&args("chart --out d")).is_err(), "no input");
        assert!(parse(&args("chart --out d --quick a.json")).is_err());
    }
}
