//! Read snapshots shared between connections (`sqlite3_snapshot_get` / `_open`, built with
//! `SQLITE_ENABLE_SNAPSHOT`): a connection inside a read transaction of a WAL database names
//! the state it reads; other connections to the same file open a read transaction on exactly
//! that state. The parallel SQL dump uses it so that several connections read one snapshot.
//!
//! Invariants: a [`Snapshot`] is freed exactly once (on drop). It is only a name for a state:
//! the state stays readable while some connection holds a read transaction on it (the WAL
//! cannot be checkpointed past a reader), which the caller arranges by keeping the
//! connection it came from inside its transaction until the others have opened it.

use std::ptr::NonNull;

use libsqlite3_sys as sys;

use crate::connection::Connection;
use crate::error::Result;

/// The name of one read state of a WAL database's `main` schema.
pub struct Snapshot {
    ptr: NonNull<sys::sqlite3_snapshot>,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from sqlite3_snapshot_get and is freed only here.
        unsafe { sys::sqlite3_snapshot_free(self.ptr.as_ptr()) }
    }
}

impl Connection {
    /// The snapshot this connection reads: it must be inside a transaction (`BEGIN`; SQLite
    /// opens the read transaction if it has not read yet) on a WAL database, or SQLite refuses
    /// with SQLITE_ERROR.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let db = self.handle()?;
        let mut out: *mut sys::sqlite3_snapshot = std::ptr::null_mut();
        // SAFETY: `db` is a valid open handle, the schema name is a static C string and `out`
        // is a valid out-pointer for the call.
        let rc = unsafe { sys::sqlite3_snapshot_get(db, c"main".as_ptr(), &mut out) };
        if rc != sys::SQLITE_OK {
            return Err(self.last_error(rc));
        }
        NonNull::new(out)
            .map(|ptr| Snapshot { ptr })
            .ok_or_else(|| self.last_error(sys::SQLITE_NOMEM))
    }

    /// Begins a read transaction on `snapshot` (taken by a connection to the same file). The
    /// connection must be inside `BEGIN`, must have read the database once before (SQLite
    /// opens the WAL on the first read; a connection that never read fails with SQLITE_ERROR)
    /// and must have no statement running; a read transaction it already holds is replaced.
    /// The new one lasts until it is ended (`COMMIT`/`ROLLBACK`). Fails with
    /// SQLITE_ERROR_SNAPSHOT when the state is no longer in the WAL.
    pub fn open_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let db = self.handle()?;
        // SAFETY: `db` is a valid open handle, the schema name is a static C string, and
        // `snapshot.ptr` is a live snapshot (freed only when `snapshot` is dropped).
        let rc = unsafe { sys::sqlite3_snapshot_open(db, c"main".as_ptr(), snapshot.ptr.as_ptr()) };
        if rc != sys::SQLITE_OK {
            return Err(self.last_error(rc));
        }
        Ok(())
    }
}
