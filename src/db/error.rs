//! How SQLite errors are sorted: deterministic SQL errors versus local faults.
//!
//! The rule (see docs/error-handling.md): an error that every node would hit identically when
//! applying the same entry to the same database is *deterministic* — it is the statement's
//! result and the entry still counts as applied. An error that depends on this machine (I/O,
//! a full disk, memory, corruption, a file that cannot be opened) is a *local fault*: applying
//! past it would let this replica diverge, so the caller must stop the node.

use std::path::PathBuf;

use raftlite_ffi::ErrorCode;

/// An error from running SQL, sorted.
#[derive(Debug)]
pub enum SqlFailure {
    /// A deterministic error: the message goes back to the client.
    Sql(String),
    /// A local fault: the node cannot continue applying.
    Local(raftlite_ffi::Error),
}

/// True for errors that depend on this node rather than on the SQL and the data.
///
/// `SQLITE_CORRUPT_VTAB` is not one: a virtual table reports it when its own contents
/// disagree (a full-text index told to delete a row with the wrong text, shadow tables a load
/// filled), which every replica holds alike.
pub fn is_local_fault(e: &raftlite_ffi::Error) -> bool {
    if e.extended_code == raftlite_ffi::sys::SQLITE_CORRUPT_VTAB {
        return false;
    }
    matches!(
        e.code(),
        ErrorCode::IoErr
            | ErrorCode::Full
            | ErrorCode::Corrupt
            | ErrorCode::NoMemory
            | ErrorCode::CantOpen
            | ErrorCode::NotADatabase
            | ErrorCode::Protocol
            | ErrorCode::Internal
    )
}

/// True for SQLite's `SQLITE_FULL`: the disk had no room (or a size limit was reached).
pub fn is_full(e: &raftlite_ffi::Error) -> bool {
    e.code() == ErrorCode::Full
}

pub fn classify(e: raftlite_ffi::Error) -> SqlFailure {
    if is_local_fault(&e) {
        SqlFailure::Local(e)
    } else {
        SqlFailure::Sql(e.message)
    }
}

/// A failure of the [`crate::db::Database`] itself (not of a statement it ran): the file, the
/// threads that own its connections, the swap. Every case but [`DbError::Closed`] is a fault
/// of this node (its disk, its files, its process), never of the request that met it: a
/// caller answers 500 (507 when [`DbError::is_disk_full`]); a failed swap leaves the node
/// without a writer, and its caller stops the node.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database was closed: the node is shutting down.
    #[error("the database is closed")]
    Closed,
    /// The writer thread could not be started.
    #[error("start the writer thread: {0}")]
    StartWriter(#[source] std::io::Error),
    /// The writer thread is gone (a job panicked); nothing can be written any more.
    #[error("the writer thread stopped")]
    WriterStopped,
    /// A task that ran a read connection panicked or was cancelled (the server's runtime).
    #[cfg(feature = "server")]
    #[error("a read task failed: {0}")]
    ReadTask(#[source] tokio::task::JoinError),
    /// A connection to the file could not be opened.
    #[error("open {what} to {}: {source}", path.display())]
    Open {
        /// Which connection: "the database", "a read connection", …
        what: &'static str,
        path: PathBuf,
        #[source]
        source: raftlite_ffi::Error,
    },
    /// A step of the file swap failed ([`crate::db::Database::replace_with_file`]).
    #[error("swap the database file: {step}: {source}")]
    Swap {
        step: SwapStep,
        #[source]
        source: std::io::Error,
    },
    /// The WAL could not be checkpointed.
    #[error("checkpoint the WAL of {}: {source}", path.display())]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: anyhow::Error,
    },
}

/// The steps of a file swap, in order. When a step up to and including [`SwapStep::Rename`]
/// fails, the old file is still in place; from [`SwapStep::SyncDirectory`] on, the new one
/// is (a crash before the directory's fsync may still bring back the old one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapStep {
    /// Close the writer connection.
    CloseWriter,
    /// Remove the old file's `-wal` and `-shm`.
    RemoveWal,
    /// Rename the new file over the old one.
    Rename,
    /// Fsync the directory, so the rename survives a crash.
    SyncDirectory,
    /// Open the writer connection on the new file.
    Reopen,
}

impl std::fmt::Display for SwapStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SwapStep::CloseWriter => "close the writer",
            SwapStep::RemoveWal => "remove the old WAL",
            SwapStep::Rename => "rename the new file into place",
            SwapStep::SyncDirectory => "fsync the directory",
            SwapStep::Reopen => "reopen the database",
        })
    }
}

impl DbError {
    /// True for a fault of this node: everything but a closed database.
    pub fn is_local_fault(&self) -> bool {
        !matches!(self, DbError::Closed)
    }

    /// True when the disk is full (SQLite's `SQLITE_FULL` or `ENOSPC`).
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::Open { source, .. } => source.code() == ErrorCode::Full,
            DbError::Swap { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            DbError::Checkpoint { source, .. } => is_disk_full(source),
            _ => false,
        }
    }
}

/// True when any cause in `e`'s chain is a full disk (SQLite's `SQLITE_FULL`, `ENOSPC`, or a
/// [`DbError`] that says so). For errors that cross several layers as `anyhow` (a build, a
/// copy); a [`DbError`] answers [`DbError::is_disk_full`] itself.
pub fn is_disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<raftlite_ffi::Error>()
            .is_some_and(|e| e.code() == ErrorCode::Full)
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull)
    })
}
