//! P1, made fair (issue #26): `GET /db/backup` to a file against `sqlite3 .backup`, each pair
//! at equal durability, on a quiet machine, after a warm-up, beside a `dd` reference.
//!
//! The cases, run in [`crate::measure::rotated`] order each round (no case always first):
//! - `sqlite3 SRC ".backup OUT"`: the reference; SQLite fsyncs its destination.
//! - the same under `eatmydata` (Debian), which makes fsync a no-op: the reference unsynced.
//! - `curl -o OUT` from the node, then fsync of OUT. One download gives two rows: the time
//!   until curl exits (unsynced, against the `eatmydata` reference) and the time until the
//!   fsync returns (synced, against plain `sqlite3 .backup`: the goal's verdict, equal
//!   durability, what a user can rely on).
//! - the `raftlite` shell's `.backup OUT` (it fsyncs before renaming into place) against
//!   `sqlite3 .backup`: a row, no goal.
//!
//! Before the rounds: wait until the kernel has under [`crate::measure::QUIET_BELOW_BYTES`]
//! dirty or in writeback and the node has no backup temporary file (`backup-*`) left in its
//! data or backup directory ([`QUIET_BEFORE_ROUNDS`] at most; a timeout is flagged in the
//! report, not fatal); time `dd conv=fsync` of the data set's size; read the source and the
//! node's database into the page cache (idle file cache is evicted here within a minute);
//! run every case once, untimed. Before each case the same quiet wait, shorter
//! ([`QUIET_BEFORE_CASE`]). After the rounds `dd` again. The run is flagged (the scenario's
//! `flags`, each starting `P1: ` or `P1 [256 MiB]: `, which the P1 goal line shows) when
//! the median `sqlite3 .backup`'s speed is more than [`crate::measure::REFERENCE_FACTOR`]
//! away from `dd`'s mean, when the two `dd` runs are that far apart (the disk changed under
//! the rounds), or when a quiet wait timed out.
//!
//! Each case's row is its median round with every round's time and the spread in its note;
//! the memory figures are the largest of the rounds (bounds, not typical figures).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::datagen::DataSet;
use crate::measure::{
    dd_reference, kib_to_mib, rotated, run_tool, speed_flag, wait_quiet, warm_page_cache,
};
use crate::node::Node;
use crate::report::{Row, ScenarioReport};
use crate::scenarios::{
    download_then_sync, file_len, max_rss_growth, max_sampled_growth, median_row, which, Context,
};

/// Case names, as the goals read them (`goals::case`); a second size appends its suffix.
pub const SQLITE3: &str = "sqlite3 .backup";
pub const SQLITE3_UNSYNCED: &str = "sqlite3 .backup under eatmydata (fsync a no-op)";
pub const DOWNLOAD: &str = "raftlite GET /db/backup";
pub const DOWNLOAD_SYNCED: &str = "raftlite GET /db/backup + fsync";
pub const SHELL: &str = "raftlite shell .backup (fsyncs)";

/// The longest quiet wait before the rounds (issue #26: "wait until nothing is dirty").
const QUIET_BEFORE_ROUNDS: Duration = crate::measure::QUIET_TIMEOUT;
/// The longest quiet wait before each case; the rounds already started from a quiet machine,
/// so this only lets the previous case's writeback and the server's clean-up finish.
const QUIET_BEFORE_CASE: Duration = Duration::from_secs(10);

/// The cases of a round, in their base order.
#[derive(Clone, Copy)]
enum Case {
    Sqlite3,
    Sqlite3Unsynced,
    Download,
    Shell,
}

const CASES: [Case; 4] = [
    Case::Sqlite3,
    Case::Sqlite3Unsynced,
    Case::Download,
    Case::Shell,
];

/// The tools P1 runs besides raftlite.
struct Tools {
    sqlite3: PathBuf,
    /// None: not installed and not required (outside CI); that pair is skipped.
    eatmydata: Option<PathBuf>,
    shell: PathBuf,
}

/// Measures P1 on `node` (serving a copy of `data`), rows named with `suffix` (empty for the
/// run's data set, ` [256 MiB]` for the second size). Flags and skips go to `report`.
pub fn measure(
    ctx: &Context,
    report: &mut ScenarioReport,
    data: &DataSet,
    node: &Node,
    dir: &Path,
    rounds: usize,
    suffix: &str,
) -> Result<Vec<Row>, String> {
    let name = |base: &str| format!("{base}{suffix}");
    let tools = Tools {
        sqlite3: ctx.sqlite3()?,
        eatmydata: match which("eatmydata") {
            Some(p) => Some(p),
            None if std::env::var("CI").is_ok_and(|v| v == "true") => {
                return Err("eatmydata is not installed (apt-get install eatmydata; \
                            scripts/bench-quick.sh does)"
                    .into())
            }
            None => {
                report.skip_part(format!(
                    "{}: eatmydata is not installed (apt-get install eatmydata)",
                    name("P1 unsynced pair")
                ));
                None
            }
        },
        shell: ctx.raftlite_bin(),
    };
    let src = data.path.display().to_string();
    let out = dir.join("p1-out.sqlite");
    let tmp_dirs = backup_dirs(node);
    let db = node_database(node);
    let idle = || no_temp_copies(&tmp_dirs);
    let mib = data.bytes.div_ceil(1 << 20);

    let cp_row = {
        let cp = run_tool(
            Path::new("cp"),
            &[&src, &out.display().to_string()],
            None,
            None,
        )?;
        let mut row = Row::new(name("cp")).timed(cp.wall.as_secs_f64(), Some(data.bytes), None);
        row.peak_rss_mib = cp.peak_rss_kib.map(kib_to_mib);
        let _ = std::fs::remove_file(&out);
        row
    };

    let quiet = wait_quiet(QUIET_BEFORE_ROUNDS, idle);
    if let Some(why) = &quiet.timed_out {
        report.flag(format!("{}: before the rounds: {why}", name("P1")));
    }
    let dd_before = dd_reference(&dir.join("dd.bin"), mib)?;
    warm_page_cache(&data.path)?;
    warm_page_cache(&db)?;

    // By slot: sqlite3, eatmydata, download unsynced, download synced, shell.
    let mut timed: [Vec<Row>; 5] = Default::default();
    let mut late_quiet = 0usize;
    let mut run_case = |case: Case, keep: bool| -> Result<(), String> {
        if wait_quiet(QUIET_BEFORE_CASE, idle).timed_out.is_some() {
            late_quiet += 1;
        }
        let rows = one_case(case, &tools, &src, node, &out)?;
        let _ = std::fs::remove_file(&out);
        if keep {
            for (i, row) in rows.into_iter().enumerate() {
                timed[slot(case) + i].push(row);
            }
        }
        Ok(())
    };
    // The warm-up round: untimed, every case once.
    for case in CASES {
        run_case(case, false)?;
    }
    for order in rotated(rounds, CASES.len()) {
        for i in order {
            run_case(CASES[i], true)?;
        }
    }
    if late_quiet > 0 {
        report.flag(format!(
            "{}: {late_quiet} case(s) started before the machine was quiet (waited {} s each)",
            name("P1"),
            QUIET_BEFORE_CASE.as_secs()
        ));
    }
    let dd_after = dd_reference(&dir.join("dd.bin"), mib)?;

    let [sqlite3, unsynced_ref, download, synced, shell] = timed;
    // The median round, named for this size before any ratio names it as its reference.
    let median = |rounds: &[Row]| {
        median_row(rounds).map(|mut r| {
            r.case = name(&r.case);
            r
        })
    };
    let reference = median(&sqlite3)?.time_ratio_to(&cp_row);
    let dd_note = format!(
        "machine quiet after {:.1} s ({:.1} MiB dirty or in writeback); dd conv=fsync of \
         {mib} MiB: {dd_before:.0} MB/s before the rounds, {dd_after:.0} MB/s after",
        quiet.waited.as_secs_f64(),
        kib_to_mib(quiet.unwritten_bytes / 1024)
    );
    let mut flags = Vec::new();
    let reference_mb_s = reference.mb_per_s.unwrap_or(0.0);
    // The reference against its own usual speed on this machine (dd's speed is context: a
    // synced `sqlite3 .backup` runs 2-3x `dd conv=fsync` here in every run).
    let usual = usual_speed(&ctx.opts.out, ctx.opts.size, &name(SQLITE3));
    let usual_note = match usual {
        Some((mb_s, runs)) => {
            if let Some(f) = away_from_usual(&name(SQLITE3), reference_mb_s, mb_s, runs) {
                flags.push(format!(
                    "{}: {f}: the reference was not at its usual speed; compare this run's \
                     ratios with care",
                    name("P1")
                ));
            }
            format!(
                "{} usually {mb_s:.0} MB/s (median of {runs} earlier runs)",
                name(SQLITE3)
            )
        }
        None => format!(
            "no earlier runs of {} to compare its speed with",
            name(SQLITE3)
        ),
    };
    if let Some(f) = speed_flag("dd after the rounds", dd_after, "dd before", dd_before) {
        flags.push(format!(
            "{}: the disk changed speed during the rounds: {f}",
            name("P1")
        ));
    }
    let reference = reference
        .also_note(&dd_note)
        .also_note(&usual_note)
        .also_note(if !flags.is_empty() {
            "FLAGGED: see the scenario's flags"
        } else if usual.is_some() {
            "at its usual speed"
        } else {
            ""
        });
    for f in flags {
        report.flag(f);
    }

    let mut rows = Vec::new();
    let memory = |median: Row, all: &[Row]| {
        let mut row = median.with_growth(max_sampled_growth(all));
        row.rss_growth_mib = max_rss_growth(all);
        row
    };
    let synced_row = memory(median(&synced)?, &synced)
        .time_ratio_to(&reference)
        .also_note("P1: curl -o OUT, then fsync OUT, against sqlite3 .backup (which fsyncs): equal durability; memory = largest of the rounds");
    rows.push(synced_row);
    match unsynced_ref.is_empty() {
        false => {
            let unsynced_ref = median(&unsynced_ref)?;
            rows.push(
                memory(median(&download)?, &download)
                    .time_ratio_to(&unsynced_ref)
                    .also_note("P1 unsynced: curl -o OUT (no fsync) against sqlite3 .backup under eatmydata; memory = largest of the rounds (P3)"),
            );
            rows.push(unsynced_ref);
        }
        true => rows.push(
            memory(median(&download)?, &download)
                .also_note("curl -o OUT, no fsync; memory = largest of the rounds (P3)"),
        ),
    }
    if !shell.is_empty() {
        rows.push(median(&shell)?.time_ratio_to(&reference));
    }
    rows.push(reference);
    rows.push(cp_row);
    let dd_row = |when: &str, mb_s: f64| {
        let bytes = mib << 20;
        Row::new(name(&format!("dd conv=fsync, {when} the rounds")))
            .timed(bytes as f64 / 1e6 / mb_s.max(1e-9), Some(bytes), None)
            .note("the disk's synced write speed in this run")
    };
    rows.push(dd_row("before", dd_before));
    rows.push(dd_row("after", dd_after));
    Ok(rows)
}

/// Where a case's rows go among the rounds' results (the download has two).
fn slot(case: Case) -> usize {
    match case {
        Case::Sqlite3 => 0,
        Case::Sqlite3Unsynced => 1,
        Case::Download => 2,
        Case::Shell => 4,
    }
}

/// Runs one case once; its rows (the download gives two: unsynced, then synced).
fn one_case(
    case: Case,
    tools: &Tools,
    src: &str,
    node: &Node,
    out: &Path,
) -> Result<Vec<Row>, String> {
    let dot_backup = format!(".backup '{}'", out.display());
    let sqlite3_row = |label: &str, run: crate::measure::ToolRun| {
        let mut row = Row::new(label).timed(run.wall.as_secs_f64(), Some(file_len(out)), None);
        row.peak_rss_mib = run.peak_rss_kib.map(kib_to_mib);
        row
    };
    match case {
        Case::Sqlite3 => {
            let run = run_tool(&tools.sqlite3, &[src, &dot_backup], None, None)?;
            Ok(vec![sqlite3_row(SQLITE3, run)])
        }
        Case::Sqlite3Unsynced => match &tools.eatmydata {
            None => Ok(Vec::new()),
            Some(eatmydata) => {
                let sqlite3 = tools.sqlite3.display().to_string();
                let run = run_tool(eatmydata, &[&sqlite3, src, &dot_backup], None, None)?;
                Ok(vec![sqlite3_row(SQLITE3_UNSYNCED, run)])
            }
        },
        Case::Download => {
            let (row, synced) = download_then_sync(node, "/db/backup", out, DOWNLOAD, true)?
                .ok_or("GET /db/backup answered 404")?;
            let check = super::artifact_check(out);
            let synced_s = synced.ok_or("the download was not synced")?;
            let mut synced_row = row.clone().timed(synced_s, row.bytes, None);
            synced_row.case = DOWNLOAD_SYNCED.into();
            Ok(vec![row.note(&check), synced_row.note(check)])
        }
        Case::Shell => shell_backup(&tools.shell, node, out).map(|r| vec![r]),
    }
}

/// The `raftlite` shell's `.backup OUT` against `node`, timed from spawn to exit.
fn shell_backup(shell: &Path, node: &Node, out: &Path) -> Result<Row, String> {
    let (host, port) = node
        .addr
        .rsplit_once(':')
        .ok_or_else(|| format!("node address {} has no port", node.addr))?;
    let commands = out.with_extension("commands");
    let said = out.with_extension("said");
    std::fs::write(&commands, format!(".backup {}\n", out.display()))
        .map_err(|e| format!("write {}: {e}", commands.display()))?;
    let run = run_tool(
        shell,
        &["-H", host, "-p", port],
        Some(&commands),
        Some(&said),
    );
    let text = std::fs::read_to_string(&said).unwrap_or_default();
    let _ = std::fs::remove_file(&commands);
    let _ = std::fs::remove_file(&said);
    let run = run?;
    if !text.contains("backup file written successfully") {
        return Err(format!("the shell's .backup failed: {}", text.trim()));
    }
    let mut row = Row::new(SHELL).timed(run.wall.as_secs_f64(), Some(file_len(out)), None);
    row.peak_rss_mib = run.peak_rss_kib.map(kib_to_mib);
    Ok(row)
}

/// Where `node` makes its backup copies (`/status`: `backup_copies.tmp_dir`) and its data
/// directory (the default for them).
fn backup_dirs(node: &Node) -> Vec<PathBuf> {
    let mut dirs = vec![node.data_dir.clone()];
    if let Some(tmp) = status_field(node, &["backup_copies", "tmp_dir"]) {
        let tmp = PathBuf::from(tmp);
        if !dirs.contains(&tmp) {
            dirs.push(tmp);
        }
    }
    dirs
}

/// How far the reference may stray from its usual speed before the run is flagged.
const USUAL_FACTOR: f64 = 1.5;

/// The usual speed of `case` at a data set of `size` bytes: the median MB/s of the earlier
/// runs of this method recorded beside this run's report (`--out`'s directory; rows whose
/// note names `dd conv=fsync`, which only this method writes), and how many there were.
/// None without at least two.
fn usual_speed(out: &Path, size: u64, case: &str) -> Option<(f64, usize)> {
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty())?;
    let runs = crate::record::load_all(&[dir.to_path_buf()]).ok()?;
    let mut speeds: Vec<f64> = runs
        .iter()
        .filter(|(_, run)| run.size_bytes == Some(size) && run.quick != Some(true))
        .filter_map(|(_, run)| {
            let row = run.scenario("backup")?.row(case)?;
            row.note.contains("dd conv=fsync").then_some(row.mb_per_s?)
        })
        .collect();
    if speeds.len() < 2 {
        return None;
    }
    speeds.sort_by(f64::total_cmp);
    Some((speeds[(speeds.len() - 1) / 2], speeds.len()))
}

/// A flag when `mb_s` is more than [`USUAL_FACTOR`] times faster or slower than `usual`.
fn away_from_usual(what: &str, mb_s: f64, usual: f64, runs: usize) -> Option<String> {
    let ratio = mb_s / usual;
    (!(1.0 / USUAL_FACTOR..=USUAL_FACTOR).contains(&ratio)).then(|| {
        format!(
            "{what} ran at {mb_s:.0} MB/s, {ratio:.2}x its usual {usual:.0} MB/s (median of \
             {runs} earlier runs; more than {USUAL_FACTOR}x away)"
        )
    })
}

/// The node's database file (`/status`: `sqlite3.path`; `DATA_DIR/db.sqlite` if unsaid).
pub(in crate::scenarios) fn node_database(node: &Node) -> PathBuf {
    status_field(node, &["sqlite3", "path"])
        .map(PathBuf::from)
        .unwrap_or_else(|| node.data_dir.join("db.sqlite"))
}

/// A string at `path` below any object of `GET /status` (its layout nests these under
/// `store`; searching keeps this independent of that).
fn status_field(node: &Node, path: &[&str]) -> Option<String> {
    let body = crate::node::agent()
        .get(&node.url("/status"))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    find_path(&json, path).map(str::to_owned)
}

fn find_path<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    let here = path.iter().try_fold(v, |at, key| at.get(key));
    if let Some(s) = here.and_then(serde_json::Value::as_str) {
        return Some(s);
    }
    v.as_object()?
        .values()
        .find_map(|child| find_path(child, path))
}

/// Ok when none of `dirs` holds a backup temporary file (`backup-*`), else which one does.
fn no_temp_copies(dirs: &[PathBuf]) -> Result<(), String> {
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("backup-") {
                return Err(format!("{} is still there", e.path().display()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_found_at_any_depth() {
        let status: serde_json::Value = serde_json::json!({
            "node": {"id": 1},
            "store": {
                "backup_copies": {"made": 3, "tmp_dir": "/data/raftlite-x"},
                "sqlite3": {"path": "/data/db.sqlite"}
            }
        });
        assert_eq!(
            find_path(&status, &["backup_copies", "tmp_dir"]),
            Some("/data/raftlite-x")
        );
        assert_eq!(
            find_path(&status, &["sqlite3", "path"]),
            Some("/data/db.sqlite")
        );
        assert_eq!(
            find_path(&status, &["backup_copies", "made"]),
            None,
            "not a string"
        );
        assert_eq!(find_path(&status, &["nothing"]), None);
    }

    #[test]
    fn a_temp_copy_keeps_the_machine_busy() {
        let dir = std::env::temp_dir().join(format!("p1-temp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("db.sqlite"), b"x").unwrap();
        assert_eq!(no_temp_copies(std::slice::from_ref(&dir)), Ok(()));
        std::fs::write(dir.join("backup-17.db"), b"x").unwrap();
        let busy = no_temp_copies(std::slice::from_ref(&dir)).unwrap_err();
        assert!(busy.contains("backup-17.db"), "{busy}");
        assert_eq!(no_temp_copies(&[dir.join("missing")]), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn report(dir: &Path, file: &str, size: u64, mb_s: f64, note: &str) {
        let json = format!(
            r#"{{"size_bytes": {size}, "scenarios": [{{"name": "backup", "rows": [
                {{"case": "sqlite3 .backup", "mb_per_s": {mb_s}, "note": "{note}"}}]}}]}}"#
        );
        std::fs::write(dir.join(file), json).unwrap();
    }

    #[test]
    fn the_reference_is_held_to_its_own_usual_speed() {
        let dir = std::env::temp_dir().join(format!("p1-usual-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("this-run.json");
        assert_eq!(
            usual_speed(&out, 1024, "sqlite3 .backup"),
            None,
            "no history"
        );
        report(
            &dir,
            "a.json",
            1024,
            700.0,
            "dd conv=fsync of 1 MiB: 300 MB/s",
        );
        assert_eq!(
            usual_speed(&out, 1024, "sqlite3 .backup"),
            None,
            "one run is not usual"
        );
        report(
            &dir,
            "b.json",
            1024,
            760.0,
            "dd conv=fsync of 1 MiB: 320 MB/s",
        );
        report(
            &dir,
            "c.json",
            1024,
            650.0,
            "dd conv=fsync of 1 MiB: 310 MB/s",
        );
        // Other sizes and runs of the older method do not count.
        report(&dir, "d.json", 2048, 100.0, "dd conv=fsync of 2 MiB");
        report(&dir, "e.json", 1024, 100.0, "before the fair method");
        assert_eq!(usual_speed(&out, 1024, "sqlite3 .backup"), Some((700.0, 3)));
        assert_eq!(away_from_usual("ref", 800.0, 700.0, 3), None);
        assert_eq!(away_from_usual("ref", 500.0, 700.0, 3), None);
        assert!(away_from_usual("ref", 1100.0, 700.0, 3).is_some());
        assert!(away_from_usual("ref", 400.0, 700.0, 3).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
