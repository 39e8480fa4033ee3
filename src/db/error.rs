//! How SQLite errors are sorted: deterministic SQL errors versus local faults.
//!
//! The rule (see docs/error-handling.md): an error that every node would hit identically when
//! applying the same entry to the same database is *deterministic* — it is the statement's
//! result and the entry still counts as applied. An error that depends on this machine (I/O,
//! a full disk, memory, corruption, a file that cannot be opened) is a *local fault*: applying
//! past it would let this replica diverge, so the caller must stop the node.

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

/// True when a full disk is somewhere in `e`'s causes: SQLite's `SQLITE_FULL`, or `ENOSPC`.
pub fn is_disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<raftlite_ffi::Error>()
            .is_some_and(is_full)
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull)
    })
}

pub fn classify(e: raftlite_ffi::Error) -> SqlFailure {
    if is_local_fault(&e) {
        SqlFailure::Local(e)
    } else {
        SqlFailure::Sql(e.message)
    }
}
