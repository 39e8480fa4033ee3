//! The page copier: a consistent copy of a live database into a file, with SQLite's online
//! backup API driven in steps.
//!
//! The copy holds one read transaction on the source connection from the first step to the
//! last. In WAL mode that pins one snapshot: the copy holds every transaction committed before
//! it began and nothing after, writes from other connections neither block it nor restart it,
//! and it never blocks writers. The destination needs neither a journal nor an fsync (it is a
//! temporary file until something renames it); after the copy its header bytes are switched
//! from WAL to rollback (DELETE) mode, so the result is one self-contained file.
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
    #[error("copy database: {0}")]
    Io(#[from] std::io::Error),
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
    after_step: impl FnMut(i32) -> Result<(), CopyError>,
) -> Result<CopyStats, CopyError> {
    let mut dest_conn = Connection::open(
        dest,
        OpenFlags::READ_WRITE | OpenFlags::CREATE | OpenFlags::NO_MUTEX,
    )?;
    let stats = copy_into(src, &mut dest_conn, pages_per_step, after_step)?;
    dest_conn.close()?;
    set_rollback_header(dest)?;
    Ok(stats)
}

/// Copies the `main` schema of `src` into `dest`, an empty database (a new file, or a page
/// store: see `store::backup::one_pass`). The result keeps the source's journal-mode bytes
/// (18-19); the caller makes it a rollback-mode file once `dest` is closed
/// ([`set_rollback_header`], [`rollback_header`]).
pub fn copy_into(
    src: &Connection,
    dest: &mut Connection,
    pages_per_step: i32,
    mut after_step: impl FnMut(i32) -> Result<(), CopyError>,
) -> Result<CopyStats, CopyError> {
    // The destination is scratch until it is complete: no journal, no syncs.
    dest.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF")?;
    // One read transaction for the whole copy: a fixed snapshot of the source.
    let began_here = src.is_autocommit()?;
    if began_here {
        src.execute_batch("BEGIN")?;
        src.query_i64("SELECT count(*) FROM sqlite_master")?;
    }
    let result = run_steps(dest, src, pages_per_step, &mut after_step);
    if began_here {
        let _ = src.execute_batch("ROLLBACK");
    }
    result
}

/// Offset of the file format's write and read versions in the header: 1 1 for a rollback
/// journal, 2 2 for WAL.
const VERSION_BYTES: std::ops::Range<usize> = 18..20;

/// Makes `page1` (a copy's first page, or its first 100 bytes) that of a rollback-mode file.
/// A copy of a WAL-mode source carries its WAL bytes; a copy is one self-contained file. This
/// is what `PRAGMA journal_mode=DELETE` stores, without opening the copy in WAL mode first
/// (which a page store cannot: it has no shared memory).
pub fn rollback_header(page1: &mut [u8]) {
    if page1.len() >= VERSION_BYTES.end {
        page1[VERSION_BYTES].copy_from_slice(&[1, 1]);
    }
}

/// [`rollback_header`] on the closed copy at `path`.
pub fn set_rollback_header(path: &Path) -> Result<(), CopyError> {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut header = [0u8; 100];
    let n = file.read_at(&mut header, 0)?;
    if n < VERSION_BYTES.end {
        // An empty copy (an empty source): SQLite writes no header at all.
        return Ok(());
    }
    rollback_header(&mut header);
    file.write_all_at(&header[VERSION_BYTES], VERSION_BYTES.start as u64)?;
    Ok(())
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
