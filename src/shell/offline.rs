//! Offline commands of the `raftlite` binary: they read a local SQLite file, no server needed.
//!
//! `raftlite dump DB_FILE [TABLE...]` writes the SQL text dump of `DB_FILE` to stdout, with
//! the same code as `GET /db/backup?fmt=sql` ([`crate::db::dump`]). The file is opened
//! read-only, with `writable_schema` on as in the shell (a damaged schema row does not stop
//! the dump); a WAL-mode file is read together with its `-wal`, if there is one.

use std::io::{self, Write};
use std::path::Path;

use raftlite_ffi::{Connection, OpenFlags};

use crate::db::dump::{dump_with_helpers, helper_count, share_snapshot, DumpError};

/// Runs `raftlite dump` with the arguments after `dump`; returns the process exit status.
pub fn run_dump(args: &[String]) -> i32 {
    let Some((db, tables)) = args.split_first() else {
        eprintln!("usage: raftlite dump DB_FILE [TABLE...]");
        return 2;
    };
    let tables = (!tables.is_empty()).then_some(tables);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match dump_file(Path::new(db), tables, &mut out) {
        Ok(()) => 0,
        // A closed pipe (`raftlite dump x.db | head`) is the reader's choice, not a failure.
        Err(DumpError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("raftlite dump: {db}: {e}");
            1
        }
    }
}

/// Dumps the database file at `path` to `out`.
pub fn dump_file(
    path: &Path,
    tables: Option<&[String]>,
    out: &mut dyn Write,
) -> Result<(), DumpError> {
    // The file the dump reads: a helper must open the same one (not a file put in its place).
    let identity = file_identity(path);
    let conn = Connection::open(path, OpenFlags::READ_ONLY | OpenFlags::NO_MUTEX)?;
    // As the shell's `.dump` does: with writable_schema on, SQLite reads what it can of a
    // schema holding rows it cannot parse instead of refusing the whole file, and the dump
    // writes them as they are. The connection is private and read-only, so the setting
    // cannot change the file.
    conn.execute_batch("PRAGMA writable_schema=ON")?;
    // Helpers read large tables in parallel, on the state this transaction reads.
    conn.execute_batch("BEGIN")?;
    let read = conn.query_i64("SELECT count(*) FROM sqlite_schema");
    let mut helpers = if read.is_ok() {
        share_snapshot(&conn, helper_count(), || {
            let helper = Connection::open(path, OpenFlags::READ_ONLY | OpenFlags::NO_MUTEX)?;
            if identity.is_none() || file_identity(path) != identity {
                return Err(raftlite_ffi::Error::new(
                    raftlite_ffi::sys::SQLITE_CANTOPEN,
                    "the file was replaced during the dump",
                ));
            }
            helper.execute_batch("PRAGMA writable_schema=ON")?;
            Ok(helper)
        })
    } else {
        Vec::new()
    };
    let result = dump_with_helpers(&conn, &mut helpers, tables, &[], out);
    drop(helpers);
    // Read only: ending the transaction just releases the file.
    let _ = conn.execute_batch("ROLLBACK");
    result?;
    Ok(())
}

/// The device and inode of the file at `path`, if it can be read.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}
