//! `Backup`: SQLite's online backup API (`sqlite3_backup_init/step/remaining/pagecount/finish`).
//!
//! The copy is driven by the caller in steps of N pages. A step can report `Busy` or `Locked`,
//! which are retryable; the caller owns the retry policy.

use std::ffi::{c_int, CString};
use std::marker::PhantomData;

use libsqlite3_sys as sys;

use crate::connection::{error_from_handle, Connection};
use crate::error::{Error, Result};

/// What one `step()` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupProgress {
    /// Every page has been copied.
    Done,
    /// Pages were copied and more remain.
    More,
    /// The source or destination was busy (another connection holds a lock); retry.
    Busy,
    /// A lock held by the same process (shared cache or same connection) blocked the step; retry.
    Locked,
}

/// An online backup from one connection's schema into another's.
pub struct Backup<'a> {
    handle: *mut sys::sqlite3_backup,
    dest: *mut sys::sqlite3,
    // The destination is borrowed mutably (SQLite forbids using it during a backup), the
    // source shared (it may keep serving reads, and its own writes restart the copy).
    _conns: PhantomData<(&'a mut Connection, &'a Connection)>,
}

impl<'a> Backup<'a> {
    /// Starts a backup of `src_schema` of `src` into `dest_schema` of `dest`.
    pub fn new(
        dest: &'a mut Connection,
        dest_schema: &str,
        src: &'a Connection,
        src_schema: &str,
    ) -> Result<Backup<'a>> {
        let dest_db = dest.handle()?;
        let src_db = src.handle()?;
        // The backup replaces the destination's schema, and nothing can prepare on `dest`
        // while it is borrowed here: emptying its cache now keeps every cached statement
        // current.
        dest.flush_statement_cache();
        let dn = CString::new(dest_schema).map_err(|_| Error::interior_nul("schema name"))?;
        let sn = CString::new(src_schema).map_err(|_| Error::interior_nul("schema name"))?;
        // SAFETY: both handles are open and borrowed for 'a; the names are NUL-terminated and
        // copied by SQLite. On failure the error is recorded on the destination handle.
        let handle = unsafe { sys::sqlite3_backup_init(dest_db, dn.as_ptr(), src_db, sn.as_ptr()) };
        if handle.is_null() {
            // SAFETY: `dest_db` is valid; the error of backup_init is left on it.
            return Err(unsafe { error_from_handle(dest_db, sys::sqlite3_errcode(dest_db)) });
        }
        Ok(Backup {
            handle,
            dest: dest_db,
            _conns: PhantomData,
        })
    }

    /// Copies up to `pages` pages (negative: all remaining).
    pub fn step(&mut self, pages: c_int) -> Result<BackupProgress> {
        // SAFETY: `handle` is a live backup object; both connections are borrowed by `self`.
        let rc = unsafe { sys::sqlite3_backup_step(self.handle, pages) };
        match rc & 0xff {
            sys::SQLITE_OK => Ok(BackupProgress::More),
            sys::SQLITE_DONE => Ok(BackupProgress::Done),
            sys::SQLITE_BUSY => Ok(BackupProgress::Busy),
            sys::SQLITE_LOCKED => Ok(BackupProgress::Locked),
            // SAFETY: `dest` is valid; step errors are reported on the destination handle,
            // though its message may be generic, so the code returned by step wins.
            _ => Err(unsafe { error_from_handle(self.dest, rc) }),
        }
    }

    /// Pages still to copy, as of the last step.
    pub fn remaining(&self) -> i32 {
        // SAFETY: `handle` is live.
        unsafe { sys::sqlite3_backup_remaining(self.handle) }
    }

    /// Pages in the source, as of the last step.
    pub fn page_count(&self) -> i32 {
        // SAFETY: `handle` is live.
        unsafe { sys::sqlite3_backup_pagecount(self.handle) }
    }

    /// Releases the backup and reports the first error any step met, if any.
    pub fn finish(mut self) -> Result<()> {
        let rc = self.finish_inner();
        if rc == sys::SQLITE_OK {
            Ok(())
        } else {
            // SAFETY: `dest` is still open (borrowed for 'a).
            Err(unsafe { error_from_handle(self.dest, rc) })
        }
    }

    fn finish_inner(&mut self) -> c_int {
        if self.handle.is_null() {
            return sys::SQLITE_OK;
        }
        // SAFETY: `handle` is live and finished exactly once; it is nulled right after.
        let rc = unsafe { sys::sqlite3_backup_finish(self.handle) };
        self.handle = std::ptr::null_mut();
        rc
    }
}

impl Drop for Backup<'_> {
    fn drop(&mut self) {
        self.finish_inner();
    }
}
