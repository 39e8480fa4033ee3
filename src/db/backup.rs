//! The page copier: a consistent copy of a live database into a file, with SQLite's online
//! backup API driven in steps.
//!
//! The copy holds one read transaction on the source connection from the first step to the
//! last. In WAL mode that pins one snapshot: the copy holds every transaction committed before
//! it began and nothing after, writes from other connections neither block it nor restart it,
//! and it never blocks writers. The destination needs neither a journal nor an fsync (it is a
//! temporary file until something renames it); after the copy its header is switched from
//! WAL to rollback (DELETE) mode, so the result is one self-contained file.
//!
//! IMPLEMENTATION CAVEATS: the copy pins the WAL for its duration (the checkpointer cannot
//! pass it); a caller that streams slowly should copy first and stream the file.

use std::path::Path;
use std::time::Duration;

use raftlite_ffi::{Backup, BackupProgress, Connection, OpenFlags};

/// Pages copied per step: 1024 pages of 4 KiB is 4 MiB, large enough that the per-step
/// overhead (locking, page-count checks) vanishes, small enough to react to interruption.
pub const PAGES_PER_STEP: i32 = 1024;

/// How often a busy or locked step is retried before the copy gives up.
const MAX_BUSY_RETRIES: u32 = 500;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("copy database: {0}")]
    Sqlite(#[from] raftlite_ffi::Error),
    #[error("copy database: the source stayed busy")]
    Busy,
    /// The caller's `after_step` stopped the copy (for example: the disk reserve was reached).
    #[error("copy database: {0}")]
    Stopped(String),
}

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub pages: i32,
    pub steps: u32,
    pub busy_retries: u32,
}

/// Copies the `main` schema of `src` into a new file at `dest` (which must not exist).
/// `after_step` runs after every step with the pages left; an error from it stops the copy
/// (the caller removes the partial file). Tests use it to interleave writes.
pub fn copy_to_file(
    src: &Connection,
    dest: &Path,
    pages_per_step: i32,
    mut after_step: impl FnMut(i32) -> Result<(), CopyError>,
) -> Result<CopyStats, CopyError> {
    let mut dest_conn = Connection::open(
        dest,
        OpenFlags::READ_WRITE | OpenFlags::CREATE | OpenFlags::NO_MUTEX,
    )?;
    // The destination is scratch until it is complete: no journal, no syncs.
    dest_conn.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF")?;

    // One read transaction for the whole copy: a fixed snapshot of the source.
    let began_here = src.is_autocommit()?;
    if began_here {
        src.execute_batch("BEGIN")?;
        src.query_i64("SELECT count(*) FROM sqlite_master")?;
    }
    let result = run_steps(&mut dest_conn, src, pages_per_step, &mut after_step);
    if began_here {
        let _ = src.execute_batch("ROLLBACK");
    }
    let stats = result?;
    // A copy of a WAL-mode source carries the WAL bytes (18-19 = 2); make it a plain file.
    dest_conn.query_text("PRAGMA journal_mode=DELETE")?;
    dest_conn.close()?;
    Ok(stats)
}

fn run_steps(
    dest: &mut Connection,
    src: &Connection,
    pages_per_step: i32,
    after_step: &mut impl FnMut(i32) -> Result<(), CopyError>,
) -> Result<CopyStats, CopyError> {
    let mut backup = Backup::new(dest, "main", src, "main")?;
    let mut stats = CopyStats::default();
    let mut retries_in_a_row = 0;
    loop {
        match backup.step(pages_per_step)? {
            BackupProgress::Done => {
                stats.steps += 1;
                stats.pages = backup.page_count();
                break;
            }
            BackupProgress::More => {
                stats.steps += 1;
                retries_in_a_row = 0;
                after_step(backup.remaining())?;
            }
            BackupProgress::Busy | BackupProgress::Locked => {
                stats.busy_retries += 1;
                retries_in_a_row += 1;
                if retries_in_a_row > MAX_BUSY_RETRIES {
                    return Err(CopyError::Busy);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    backup.finish()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_from_after_step_stops_the_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Connection::open(
            dir.path().join("src.db"),
            OpenFlags::READ_WRITE | OpenFlags::CREATE | OpenFlags::NO_MUTEX,
        )
        .expect("open");
        src.execute_batch(
            "CREATE TABLE t(v BLOB); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 \
             FROM c WHERE x < 200) INSERT INTO t SELECT randomblob(4000) FROM c",
        )
        .expect("fill");
        let mut steps = 0;
        let err = copy_to_file(&src, &dir.path().join("dest.db"), 16, |_| {
            steps += 1;
            if steps == 3 {
                Err(CopyError::Stopped("the reserve".into()))
            } else {
                Ok(())
            }
        })
        .expect_err("stopped");
        assert!(
            matches!(err, CopyError::Stopped(ref m) if m == "the reserve"),
            "{err}"
        );
        assert_eq!(steps, 3);
        // The source is usable afterwards: the copy's read transaction was released.
        assert!(src.is_autocommit().expect("autocommit"));
        src.execute_batch("INSERT INTO t VALUES(1)")
            .expect("write after");
    }
}
