//! `raftlite restore --from CONFIG (--to-index N | --to-time T) OUT.db`: point-in-time
//! recovery from the continuous archive that `-auto-backup CONFIG` (with its `archive`
//! object) writes (see [`crate::archive::pitr`]). `T` is a time SQLite reads
//! (`2026-12-03T12:00:00Z`, `2026-12-03 12:00:00.250+01:00`) or a number of Unix
//! milliseconds. `--history H` picks an archive history (a database lineage: a binary load or
//! a new cluster starts a new one) other than the newest. `--extensions-path P,...` loads the
//! SQLite extensions the cluster loaded (`-extensions-path`, the same forms), for entries that
//! call their functions. Prints what it did as one JSON object.
//!
//! Exit status: 0 the file was written, 1 the restore failed (nothing written), 2 wrong usage.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::archive::pitr::{self, RestorePoint};
use crate::auto_backup::storage::Target;

const USAGE: &str = "usage: raftlite restore --from CONFIG (--to-index N | --to-time TIME) \
                     [--history H] [--extensions-path P,...] OUT.db";

struct Args {
    config: PathBuf,
    point: RestorePoint,
    /// The archive history (a database lineage); the newest when absent.
    history: Option<String>,
    /// `--extensions-path`, split at commas.
    extensions: Vec<PathBuf>,
    out: PathBuf,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let (mut config, mut point, mut out, mut history) = (None, None, None, None);
    let mut extensions = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let mut set_point = |p: RestorePoint| match point.replace(p) {
            Some(_) => Err("give one of --to-index and --to-time".to_string()),
            None => Ok(()),
        };
        match a.as_str() {
            "--from" => config = Some(PathBuf::from(value("--from")?)),
            "--history" => history = Some(value("--history")?),
            "--extensions-path" => extensions.extend(
                value("--extensions-path")?
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from),
            ),
            "--to-index" => {
                let v = value("--to-index")?;
                let n = v
                    .parse::<u64>()
                    .map_err(|_| format!("--to-index {v:?} is not a log index"))?;
                set_point(RestorePoint::Index(n))?;
            }
            "--to-time" => {
                let v = value("--to-time")?;
                set_point(RestorePoint::Time(unix_millis(&v)?))?;
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if out.is_none() => out = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    Ok(Args {
        config: config.ok_or("no --from CONFIG")?,
        point: point.ok_or("no --to-index or --to-time")?,
        history,
        extensions,
        out: out.ok_or("no OUT file")?,
    })
}

/// Unix milliseconds of `text`: digits as they are, anything else as SQLite's date functions
/// read it (so the accepted forms are SQLite's, documented and tested there).
fn unix_millis(text: &str) -> Result<i64, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("--to-time {text:?} is too large"));
    }
    let parsed = (|| -> raftlite_ffi::Result<Option<i64>> {
        let conn = raftlite_ffi::Connection::open(
            ":memory:",
            raftlite_ffi::OpenFlags::READ_WRITE | raftlite_ffi::OpenFlags::MEMORY,
        )?;
        let mut stmt = conn
            .prepare("SELECT CAST(round((julianday(?1) - 2440587.5) * 86400000.0) AS INTEGER)")?;
        stmt.bind_text(1, text)?;
        stmt.step()?;
        Ok(match stmt.column_value(0) {
            raftlite_ffi::ValueRef::Integer(n) => Some(n),
            _ => None,
        })
    })();
    match parsed {
        Ok(Some(ms)) => Ok(ms),
        _ => Err(format!(
            "--to-time {text:?} is not a time (2026-12-03T12:00:00Z, or Unix milliseconds)"
        )),
    }
}

/// Runs `raftlite restore` with the arguments after `restore`; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("raftlite restore: {e}\n{USAGE}");
            return 2;
        }
    };
    match restore(&args) {
        Ok(done) => {
            println!(
                "{}",
                serde_json::to_string(&done).unwrap_or_else(|_| "{}".into())
            );
            0
        }
        Err(e) => {
            eprintln!("raftlite restore: {e:#}");
            1
        }
    }
}

fn restore(args: &Args) -> anyhow::Result<pitr::Restored> {
    let config = crate::auto_backup::config::read(&args.config)?;
    let storage = Arc::new(Target::open_for_restore(&config.storage)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    // The extensions are gathered as a node gathers them, into `OUT.ext/` beside the result,
    // which goes with the run.
    let work = {
        let mut name = args.out.file_name().unwrap_or_default().to_os_string();
        name.push(".ext");
        args.out.with_file_name(name)
    };
    let mut _gone_after = None;
    let mut extensions = crate::extensions::Extensions::default();
    if !args.extensions.is_empty() {
        // A new folder (an existing one is refused, never emptied), removed after the run.
        std::fs::create_dir(&work).with_context(|| format!("create {}", work.display()))?;
        _gone_after = Some(RemoveDir(work.clone()));
        extensions = crate::extensions::Extensions::gather(&work, &args.extensions)
            .context("--extensions-path")?;
    }
    runtime.block_on(pitr::restore(
        storage,
        args.point,
        args.history.clone(),
        &args.out,
        extensions,
    ))
}

/// Removes a folder when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn arguments_and_times() {
        let a = parse(&args("--from c.json --to-index 42 out.db")).unwrap();
        assert_eq!(a.point, RestorePoint::Index(42));
        assert_eq!(a.out, PathBuf::from("out.db"));
        let a = parse(&args("--to-time 2026-12-03T12:00:00.250Z --from c out")).unwrap();
        assert_eq!(a.point, RestorePoint::Time(1_796_299_200_250));
        let a = parse(&args("--from c --to-time 2026-12-03T13:00:00+01:00 out")).unwrap();
        assert_eq!(a.point, RestorePoint::Time(1_796_299_200_000));
        let a = parse(&args("--from c --to-time 1796299200000 out")).unwrap();
        assert_eq!(a.point, RestorePoint::Time(1_796_299_200_000));
        for bad in [
            "--from c out",
            "--from c --to-index 1 --to-time 2 out",
            "--from c --to-index x out",
            "--from c --to-time yesterday out",
            "--to-index 1 out",
            "--from c --to-index 1",
            "--from c --to-index 1 a b",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }
}
