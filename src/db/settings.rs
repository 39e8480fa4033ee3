//! Connection settings: how the writer and the readers are opened and configured.
//!
//! Pragmas differ from rqlite's on purpose where durability is concerned: rqlite runs with
//! `synchronous=OFF`; we use `synchronous=NORMAL` in WAL mode, so a committed transaction
//! survives a process crash and only the last transactions can be lost on power failure — and
//! those are in the fsynced Raft log, which is only purged up to a durably checkpointed index.

use std::path::Path;
use std::sync::Arc;

use raftlite_ffi::{Connection, OpenFlags};

use super::gate::Gate;

/// Settings shared by every connection of a node.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// `-fk`: enforce foreign keys.
    pub foreign_keys: bool,
    /// `-db-max-ro-conns`: how many read connections may be open at once.
    pub max_readers: usize,
    /// How long a connection waits for a lock before `SQLITE_BUSY`, in milliseconds.
    pub busy_timeout_ms: i32,
    /// `-write-budget-steps`: the budget the leader gives each write it proposes (see
    /// `db::gate` and `ApplyEnv::budget`). Applying uses the entry's, never this.
    pub write_budget_steps: u64,
    /// `-max-query-result-size`: the most bytes of rows one read statement may hold (see
    /// `execute::ReadLimits`). Reads only: a write's answer must not depend on a node's flag.
    pub max_query_result_bytes: u64,
    /// `-extensions-path`: the SQLite extensions every connection loads when it opens (the
    /// files `crate::extensions` gathered into the data directory), in this order.
    pub extensions: std::sync::Arc<[std::path::PathBuf]>,
    /// Their digest ("" without extensions): the set every member must share.
    pub extensions_digest: String,
}

/// 128 MiB of rows: what one answer may hold in memory before it is encoded (the JSON is
/// about as large again). Larger results belong in a backup, or in pages with `LIMIT`.
pub const DEFAULT_MAX_QUERY_RESULT_BYTES: u64 = 128 << 20;

impl Default for DbSettings {
    fn default() -> Self {
        DbSettings {
            foreign_keys: false,
            max_readers: 256,
            busy_timeout_ms: 5000,
            write_budget_steps: super::request::DEFAULT_WRITE_BUDGET_STEPS,
            max_query_result_bytes: DEFAULT_MAX_QUERY_RESULT_BYTES,
            extensions: std::sync::Arc::new([]),
            extensions_digest: String::new(),
        }
    }
}

/// Opens the writer: read-write, created if missing, WAL mode. It is the deterministic apply
/// connection (`Connection::open_deterministic`): the state machine sets each entry's clock and
/// seed on it. Readers keep the real clock and real randomness.
///
/// The writer keeps a prepared-statement cache: it is the only connection that changes the
/// file's schema, which is what keeps cached statements current. A swap of the file closes it
/// (finalizing every cached statement) and opens a new one with an empty cache.
pub fn open_writer(path: &Path, s: &DbSettings) -> raftlite_ffi::Result<Connection> {
    let conn = open_builder(path, s)?;
    conn.query_text("PRAGMA journal_mode=WAL")?;
    conn.execute_batch("PRAGMA synchronous=NORMAL")?;
    // Checkpoints run off the writer thread (`Database::checkpoint_if_due`).
    conn.execute_batch("PRAGMA wal_autocheckpoint=0")?;
    Ok(conn)
}

/// Opens a reader: read-only, the file must exist (the writer creates it first). It has no
/// statement cache: the writer changes the schema under it, and a cached statement would
/// report the old columns until its first step.
pub fn open_reader(path: &Path, s: &DbSettings) -> raftlite_ffi::Result<Connection> {
    let mut conn = Connection::open(
        path,
        OpenFlags::READ_ONLY | OpenFlags::NO_MUTEX | OpenFlags::NO_FOLLOW,
    )?;
    apply_common(&mut conn, s)?;
    Ok(conn)
}

/// Opens a connection that writes a database as the writer does, without choosing its journal
/// and sync modes: read-write, created if missing, deterministic, with the writer's statement
/// cache and SQL settings. [`open_writer`] adds WAL mode; `store::restore::build_once` builds a
/// new file with it.
pub fn open_builder(path: &Path, s: &DbSettings) -> raftlite_ffi::Result<Connection> {
    let mut conn = Connection::open_deterministic(
        path,
        OpenFlags::READ_WRITE | OpenFlags::CREATE | OpenFlags::NO_MUTEX | OpenFlags::NO_FOLLOW,
    )?;
    conn.set_statement_cache_capacity(raftlite_ffi::DEFAULT_STATEMENT_CACHE_CAPACITY);
    apply_common(&mut conn, s)?;
    Ok(conn)
}

/// The gate of a connection opened here (see [`super::gate`]). Every connection that runs
/// users' SQL has one; `None` means a connection opened elsewhere, for raftlite's own use.
pub fn gate(conn: &Connection) -> Option<&Gate> {
    conn.authorizer::<Gate>()
}

/// SQLite calls the gate's progress handler at every instruction check: the count of calls
/// is then the number of checks a program made, the same on every node whatever each
/// statement ran before (with a larger interval, SQLite carries the remainder over from a
/// statement's earlier runs, which differ between a node that cached the statement and one
/// that just prepared it).
const PROGRESS_EVERY_STEPS: u32 = 1;

/// Puts a connection under the [`Gate`]: SQLite's defensive mode (no writes to the schema
/// table or to shadow tables, no `writable_schema`), the gate as its authorizer and as its
/// progress handler, in `Internal` mode. Every connection opened here has it; tests give it
/// to connections of their own.
pub fn install_gate(conn: &mut Connection) -> raftlite_ffi::Result<()> {
    conn.set_defensive(true)?;
    let gate = Arc::new(Gate::default());
    conn.set_authorizer(Some(Arc::clone(&gate)))?;
    conn.set_progress_handler(PROGRESS_EVERY_STEPS, Some(gate))?;
    // On every connection that runs users' SQL, capturing or not: the hook changes how
    // SQLite compiles some writes, and so their budget (see `db::capture::Capture`).
    super::capture::install_disarmed(conn)
}

fn apply_common(conn: &mut Connection, s: &DbSettings) -> raftlite_ffi::Result<()> {
    conn.busy_timeout(s.busy_timeout_ms)?;
    conn.set_double_quoted_strings(true)?;
    conn.set_trusted_schema(false)?;
    conn.set_load_extension(false)?;
    for extension in s.extensions.iter() {
        conn.load_extension(extension)?;
    }
    install_gate(conn)?;
    conn.execute_batch(if s.foreign_keys {
        "PRAGMA foreign_keys=ON"
    } else {
        "PRAGMA foreign_keys=OFF"
    })?;
    conn.execute_batch("PRAGMA mmap_size=0")?;
    Ok(())
}

/// The pragma values `/status` reports for a connection.
pub fn pragmas(conn: &Connection) -> serde_json::Value {
    // Strings, numbers included ("1", "5000"), as rqlite reports them: tools written against
    // rqlite compare `/status` values with their JSON types.
    let get = |name: &str| -> serde_json::Value {
        match conn.query_text(&format!("PRAGMA {name}")) {
            Ok(Some(v)) => v.into(),
            _ => serde_json::Value::Null,
        }
    };
    serde_json::json!({
        "busy_timeout": get("busy_timeout"),
        "foreign_keys": get("foreign_keys"),
        "journal_mode": get("journal_mode"),
        "synchronous": get("synchronous"),
        "wal_autocheckpoint": get("wal_autocheckpoint"),
    })
}
