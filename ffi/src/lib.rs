//! raftlite-ffi: the thin, safe layer between raftlite and the SQLite C library.
//!
//! This crate owns every `unsafe` block in the project. It wraps the handful of C API families
//! raftlite needs — connections, prepared statements, values, the online backup API, and a few
//! utilities (`sqlite3_complete`, SQLite's own `printf` for REAL formatting) — and nothing more.
//! It also provides the deterministic apply connection ([`Connection::open_deterministic`]):
//! a VFS shim whose clock, and `random()`/`randomblob()` whose sequence, the caller sets per
//! Raft entry ([`ApplyInputs`]).
//! It wraps the authorizer and the progress handler ([`Connection::set_authorizer`],
//! [`Connection::set_progress_handler`]), and the pre-update hook change data capture is built
//! on ([`Connection::set_preupdate_hook`]), as traits the caller implements.
//! It has no policy: connection settings, transactions, retries and encoding live in the
//! `raftlite` crate.
//!
//! Invariants the wrappers keep:
//! - A `Connection` owns its `sqlite3*`. After `close()` the handle is null and every method
//!   returns an error with [`ErrorCode::Misuse`] instead of touching freed memory.
//! - A `Statement<'c>` borrows its connection, so it is finalized before the connection can be
//!   closed or dropped; `close()` therefore always succeeds in releasing the handle.
//! - A `Backup<'a>` borrows both connections for its whole life and finishes on drop.
//! - A connection may keep prepared statements for reuse ([`Connection::prepare_first_cached`],
//!   off by default); they are finalized before it closes, and never outlive a schema change
//!   the connection makes (see `statement_cache`).
//! - Text handed to SQLite is copied by SQLite (`SQLITE_TRANSIENT`) when it must outlive the call.
//! - Every error carries the extended SQLite result code and the connection's message.

mod backup;
mod connection;
mod deterministic;
mod error;
mod hooks;
mod page_store;
mod preupdate;
mod snapshot;
mod statement;
mod statement_cache;
mod util;
mod value;
mod vfs_passthrough;

pub use backup::{Backup, BackupProgress};
pub use connection::{Connection, InterruptHandle, OpenFlags, TxnState};
pub use deterministic::{randomness, ApplyInputs};
pub use error::{Error, ErrorCode, Result};
pub use hooks::{AuthAction, AuthRequest, Authorization, Authorizer, ProgressHandler};
pub use page_store::PageStore;
pub use preupdate::{Change, ChangeOp, PreupdateHook};
pub use snapshot::Snapshot;
pub use statement::{ColumnType, Statement, Step};
pub use statement_cache::{
    CachedStatement, StatementCacheStats, DEFAULT_STATEMENT_CACHE_CAPACITY, MAX_CACHED_SQL_LEN,
};
pub use util::{complete, format_real_20g, format_real_20g_into, sqlite_version};
pub use value::{Value, ValueRef};

/// Re-exported raw result codes, for callers that match on specific primary codes.
pub use libsqlite3_sys as sys;
