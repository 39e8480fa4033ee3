//! `sizes`: backup, dump and load throughput against database size, for raftlite and the
//! reference tools: what `raftlite-bench chart` draws as throughput-vs-size lines
//! ([`crate::chart`]).
//!
//! For each size of `--sizes` (default 64 MiB, 256 MiB and 1 GiB; 1, 2 and 4 MiB with
//! `--quick`), a data set of that size (same generator, same seed) and:
//! - backup: `cp`, `sqlite3 .backup`, and `GET /db/backup` from one node to a file;
//! - dump: `sqlite3 .dump`, `raftlite dump DB` and `GET /db/backup?fmt=sql` from that node;
//! - load: `sqlite3 .restore` and a binary `POST /db/load` into an empty 3-node cluster
//!   until all serve it; `sqlite3 NEW < dump` and a SQL `POST /db/load` the same way.
//!
//! The measuring code is the `backup`, `dump` and `restore` scenarios' own; this module only
//! loops over sizes. Each case runs once per size: the lines show how throughput scales, the
//! goals' verdicts (rounds, medians, memory bounds) stay with those scenarios.
//!
//! Rows: the case is `OPERATION: TOOL` ([`case`]), `data_set_bytes` the database size, and
//! `mb_per_s` the database's size over the wall time, not the output's: a dump's text is
//! larger than its database and a SQL load reads text, so only the database's size puts every
//! tool of an operation on one scale (higher is faster at the same database). `bytes` stays
//! what the tool wrote or read. A raftlite row carries its time ratio to the `sqlite3` case of
//! the same operation and size.

use std::path::Path;

use super::{backup, dump, restore, Context, OrFail, ScenarioResult};
use crate::datagen::{empty_with_schema, DataSet};
use crate::measure::{kib_to_mib, run_tool, warm_page_cache};
use crate::report::{Row, ScenarioReport};

/// The sizes a full run sweeps unless `--sizes` says otherwise.
pub const FULL_SIZES: [u64; 3] = [64 << 20, 256 << 20, 1 << 30];
/// The sizes a `--quick` run sweeps unless `--sizes` says otherwise.
pub const QUICK_SIZES: [u64; 3] = [1 << 20, 2 << 20, 4 << 20];

/// Case names: `OPERATION: TOOL`. The chart draws one chart per operation and a line per
/// tool, splitting at the first `": "`.
pub mod case {
    pub const BACKUP_CP: &str = "backup: cp";
    pub const BACKUP_SQLITE3: &str = "backup: sqlite3 .backup";
    pub const BACKUP_RAFTLITE: &str = "backup: raftlite GET /db/backup";
    pub const DUMP_SQLITE3: &str = "dump: sqlite3 .dump";
    pub const DUMP_CLI: &str = "dump: raftlite dump DB";
    pub const DUMP_HTTP: &str = "dump: raftlite GET /db/backup?fmt=sql";
    pub const LOAD_RESTORE: &str = "load: sqlite3 .restore";
    pub const LOAD_BINARY: &str = "load: raftlite POST /db/load (binary), 3 nodes";
    pub const LOAD_READ_DUMP: &str = "load: sqlite3 NEW < dump";
    pub const LOAD_SQL: &str = "load: raftlite POST /db/load (SQL), 3 nodes";
}

pub fn run(ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("sizes", &[]);
    let sizes = ctx.opts.sweep.clone();
    for size in sizes {
        let data = if size == ctx.opts.size {
            ctx.data_set()
        } else {
            crate::datagen::data_set(&ctx.opts.work_dir, size, ctx.opts.seed)
        }
        .or_fail(&mut report)?;
        eprintln!(
            "raftlite-bench: sizes: {} bytes ({})",
            data.bytes,
            data.path.display()
        );
        for row in one_size(ctx, &data).or_fail(&mut report)? {
            report.push(row);
        }
    }
    Ok(report)
}

/// Every case at one database size.
fn one_size(ctx: &Context, data: &DataSet) -> Result<Vec<Row>, String> {
    let dir = ctx.scratch("sizes")?;
    let sqlite3 = ctx.sqlite3()?;
    let src = data.path.display().to_string();
    let mut rows = Vec::new();
    warm_page_cache(&data.path)?;

    // Backup.
    let out = dir.join("backup.sqlite");
    let out_arg = out.display().to_string();
    let cp = run_tool(Path::new("cp"), &[&src, &out_arg], None, None)?;
    rows.push(Row::new(case::BACKUP_CP).timed(cp.wall.as_secs_f64(), Some(data.bytes), None));
    let _ = std::fs::remove_file(&out);
    let dot_backup = format!(".backup '{out_arg}'");
    let r = run_tool(&sqlite3, &[&src, &dot_backup], None, None)?;
    let mut backup_ref = Row::new(case::BACKUP_SQLITE3).timed(
        r.wall.as_secs_f64(),
        Some(super::file_len(&out)),
        None,
    );
    backup_ref.peak_rss_mib = r.peak_rss_kib.map(kib_to_mib);
    let _ = std::fs::remove_file(&out);
    let cluster = ctx.cluster_serving("sizes-node", 1, &backup::no_kept_copies(), &data.path)?;
    let node = cluster.leader();
    let ours = super::download_measured(node, "/db/backup", &out, case::BACKUP_RAFTLITE)?
        .ok_or("GET /db/backup answered 404")?;
    let _ = std::fs::remove_file(&out);
    rows.push(ours.time_ratio_to(&backup_ref));
    rows.push(backup_ref);

    // Dump.
    let empty = dir.join("empty.sqlite");
    empty_with_schema(&empty)?;
    let dump_ref_out = dir.join("sqlite3.sql");
    let dump_ref = dump::tool_dump(
        &sqlite3,
        &|db: &str| vec![db.to_string(), ".dump".to_string()],
        &src,
        &empty,
        &dump_ref_out,
        case::DUMP_SQLITE3,
    )?;
    let _ = std::fs::remove_file(&dump_ref_out);
    let http_out = dir.join("http.sql");
    let http = dump::http_dump(node, &http_out)?.ok_or("GET /db/backup?fmt=sql answered 404")?;
    let _ = std::fs::remove_file(&http_out);
    drop(cluster);
    rows.push(renamed(http, case::DUMP_HTTP).time_ratio_to(&dump_ref));
    // The CLI's dump is also the SQL load's input (less the rows sqlite3 cannot load).
    let full_dump = dir.join("raftlite.sql");
    let cli = dump::tool_dump(
        &ctx.raftlite_bin(),
        &|db: &str| vec!["dump".to_string(), db.to_string()],
        &src,
        &empty,
        &full_dump,
        case::DUMP_CLI,
    )?;
    rows.push(cli.time_ratio_to(&dump_ref));
    rows.push(dump_ref);

    // Load.
    let target = dir.join("restored.sqlite");
    let load_ref = renamed(
        restore::sqlite3_restore(&sqlite3, &data.path, &target)?,
        case::LOAD_RESTORE,
    );
    let cluster = ctx.empty_cluster("sizes-load-binary", 3)?;
    let ours = restore::load_into(&ctx.agent, &cluster, &data.path, "binary")?;
    drop(cluster);
    rows.push(renamed(ours, case::LOAD_BINARY).time_ratio_to(&load_ref));
    rows.push(load_ref);
    let dump = dir.join("dump.sql");
    restore::without_stat4(&full_dump, &dump)?;
    let _ = std::fs::remove_file(&full_dump);
    warm_page_cache(&dump)?;
    let load_ref = renamed(
        restore::sqlite3_read_dump(&sqlite3, &dump, &target)?,
        case::LOAD_READ_DUMP,
    );
    let cluster = ctx.empty_cluster("sizes-load-sql", 3)?;
    let ours = restore::load_into(&ctx.agent, &cluster, &dump, "SQL")?;
    drop(cluster);
    let _ = std::fs::remove_file(&dump);
    rows.push(renamed(ours, case::LOAD_SQL).time_ratio_to(&load_ref));
    rows.push(load_ref);

    Ok(rows
        .into_iter()
        .map(|row| of_database(row, data.bytes))
        .collect())
}

/// `row` under this scenario's case name. A reference is renamed before a ratio is taken
/// against it: the ratio names its reference's case.
fn renamed(mut row: Row, case: &str) -> Row {
    row.case = case.to_string();
    row
}

/// `row` with its database size, and its throughput as that size over its wall time (see the
/// module documentation).
fn of_database(mut row: Row, db_bytes: u64) -> Row {
    row.data_set_bytes = Some(db_bytes);
    row.mb_per_s = row.wall_s.map(|w| db_bytes as f64 / 1e6 / w.max(1e-9));
    row.also_note(format!(
        "{} MB database; MB/s = database size / time",
        db_bytes / 1_000_000
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_is_of_the_database_and_the_row_says_its_size() {
        // A dump: 3 MB of text from a 2 MB database in 0.5 s.
        let row = of_database(
            Row::new(case::DUMP_SQLITE3)
                .timed(0.5, Some(3_000_000), None)
                .note("n"),
            2_000_000,
        );
        assert_eq!(row.bytes, Some(3_000_000), "what the tool wrote stays");
        assert_eq!(row.mb_per_s, Some(4.0), "2 MB / 0.5 s, not 6");
        assert_eq!(row.data_set_bytes, Some(2_000_000));
        assert_eq!(row.note, "n; 2 MB database; MB/s = database size / time");
    }

    #[test]
    fn every_case_names_its_operation() {
        for c in [
            case::BACKUP_CP,
            case::BACKUP_SQLITE3,
            case::BACKUP_RAFTLITE,
            case::DUMP_SQLITE3,
            case::DUMP_CLI,
            case::DUMP_HTTP,
            case::LOAD_RESTORE,
            case::LOAD_BINARY,
            case::LOAD_READ_DUMP,
            case::LOAD_SQL,
        ] {
            let (op, tool) = c.split_once(": ").unwrap();
            assert!(["backup", "dump", "load"].contains(&op), "{c}");
            assert!(!tool.contains(": "), "{c}");
        }
    }
}
