//! The SQLite database a node owns: one writer connection and a pool of read-only connections.
//!
//! Invariants:
//! - Exactly one connection writes: the writer, owned by a dedicated thread. Every write runs
//!   there, in the order it was submitted, so the apply order is the submission order.
//! - Readers are read-only connections (WAL mode lets them read while the writer writes). They
//!   are handed out from a pool, at most `max_readers` at a time, and run on tokio's blocking
//!   threads.
//! - Every connection gets the same settings (see [`settings`]): foreign keys as configured
//!   (off by default, as in rqlite, although the bundled build turns them on), double-quoted
//!   strings allowed, `trusted_schema` off, extension loading off, `mmap_size=0` so that RSS
//!   measures what we allocate, SQLite's defensive mode, and the [`gate`] (what users' SQL
//!   may do, and the write budget).

pub mod apply;
pub mod backup;
pub mod capture;
#[cfg(feature = "server")]
mod database;
pub mod digest;
pub mod disk;
pub mod dump;
pub mod error;
pub mod execute;
pub mod gate;
pub mod literal_insert;
pub mod priority;
pub mod request;
pub mod restore_file;
pub mod rewrite;
pub mod settings;
pub mod wal;

#[cfg(feature = "server")]
pub use database::Database;
pub use error::{DbError, SwapStep};
pub use settings::DbSettings;

use std::path::{Path, PathBuf};

/// The name of the database file inside the data directory (rqlite uses the same).
pub const DB_FILE_NAME: &str = "db.sqlite";

/// The state machine's own table in the database: the applied log id and the membership
/// (written by [`apply`], read by `store::applied_state`). Users' writes may not touch it
/// ([`gate`]), and no backup or dump carries it.
pub const STATE_TABLE: &str = "_raftlite_state";

/// `path` with `suffix` appended to its file name (`db.sqlite` → `db.sqlite-wal`).
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
