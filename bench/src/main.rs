//! `raftlite-bench`: measures raftlite and the reference tools (`sqlite3`, `cp`) in the same
//! run, and prints absolute figures with ratios between them.
//!
//! `raftlite-bench --quick all` proves the harness works in well under a minute (CI runs it);
//! `raftlite-bench --size 1GiB all` is the full run recorded in `docs/benchmarks.md`. The
//! table goes to stdout, progress to stderr, the JSON report to `--out`. The exit status is
//! non-zero only when a scenario fails; a scenario whose feature is not built yet is skipped
//! with its reason and does not fail the run.
//!
//! `raftlite-bench report RESULTS...` reads JSON reports back and prints (or writes into
//! `docs/benchmarks.md`) the current figure of every goal: see [`summary`].
//! `raftlite-bench chart --out DIR RESULTS...` draws them as SVG charts: see [`chart`].
//!
//! Layout: `cli` (options), `datagen` (deterministic data sets), `node` (starting
//! `raftlited`, HTTP), `measure` (percentiles, `/proc` memory, timed tool runs), `report`
//! (rows, table, JSON), `scenarios/` (one module per scenario), `record` (reports read
//! back), `goals` (each goal's figure and verdict), `summary` (the current-figures table),
//! `chart` (the SVG charts).

#![forbid(unsafe_code)]

mod chart;
mod cli;
mod datagen;
mod goals;
mod measure;
mod node;
mod record;
mod report;
mod scenarios;
mod summary;

use std::process::ExitCode;

use report::{Machine, Outcome, RunReport};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let opts = match cli::parse(argv.get(1..).unwrap_or_default()) {
        Ok(cli::Parsed::Run(o)) => o,
        Ok(cli::Parsed::Report(r)) => return summary::run(&r),
        Ok(cli::Parsed::Chart(c)) => return chart::run(&c),
        Ok(cli::Parsed::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("raftlite-bench: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&opts.work_dir) {
        eprintln!("raftlite-bench: create {}: {e}", opts.work_dir.display());
        return ExitCode::FAILURE;
    }
    let started = std::time::Instant::now();
    let date_utc = report::now_rfc3339();
    let mut ctx = scenarios::Context::new(opts.clone());
    let reports: Vec<_> = opts
        .scenarios
        .iter()
        .map(|name| scenarios::run(name, &mut ctx))
        .collect();

    let run = RunReport {
        tool: "raftlite-bench",
        version: env!("CARGO_PKG_VERSION"),
        date_utc,
        commit: report::build_commit(),
        command: report::command_line(&argv),
        machine: Machine::probe(),
        quick: opts.quick,
        size_bytes: opts.size,
        seed: opts.seed,
        data_set: ctx.data_set_path(),
        scenarios: reports,
    };
    println!(
        "raftlite-bench {} | {} | commit {} | {} | {} CPUs | data set {} bytes, seed {}",
        run.version,
        run.date_utc,
        run.commit.as_deref().unwrap_or("unknown"),
        run.command,
        run.machine.cpus,
        run.size_bytes,
        run.seed
    );
    print!("{}", report::table(&run.scenarios));
    for s in &run.scenarios {
        for g in &s.goals {
            println!("  goal [{}] {g}", s.name);
        }
    }
    let json =
        serde_json::to_string_pretty(&run).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    match std::fs::write(&opts.out, json + "\n") {
        Ok(()) => println!("JSON report: {}", opts.out.display()),
        Err(e) => eprintln!("raftlite-bench: write {}: {e}", opts.out.display()),
    }
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    let failed = run
        .scenarios
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Failed(_)))
        .count();
    if failed > 0 {
        eprintln!("raftlite-bench: {failed} scenario(s) failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
