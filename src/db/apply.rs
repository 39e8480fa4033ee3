//! Applying one write entry on the writer: the part of the state machine that runs SQL, kept
//! apart from Raft so the `apply_diff` fuzz target runs exactly this code.
//!
//! [`apply_entry`] runs an entry's work in one transaction, records the entry (the state
//! machine writes its log id into the state table) and commits. Failures are sorted by
//! [`super::error::is_local_fault`]:
//! - an error the entry caused, the same on every node (its SQL left raftlite's own
//!   statements failing), rolls the work back: the entry applies as a no-op, recorded, with the
//!   error as its answer;
//!   The same holds when the work ran but SQLite refuses its COMMIT for a reason the SQL
//!   caused (see [`Refused`]);
//! - a local fault (I/O, a full disk, memory), or any other failure to begin, record or
//!   commit, is returned as [`EntryFault`]: the node must stop rather than diverge. The one fault it
//!   need not stop for is a full disk (`SQLITE_FULL`): the entry's transaction is rolled back
//!   here, so the entry changed nothing and [`EntryFault::disk_full`] tells the caller it may
//!   apply it again once there is room.
//!
//! [`apply_batch`] is the work of a group-commit entry (`ExecuteBatch`): each item as its own
//! `Execute` entry would run, with its own clock, seed and budget.
//!
//! The state table's schema and its write live here too ([`ensure_state_table`],
//! [`record_state`]); `store::applied_state` reads and writes it with Raft's types.

use raftlite_ffi::Connection;

use super::execute::{self, ApplyError, RequestResults};
use super::request::{ApplyEnv, ExecuteItem};
use super::STATE_TABLE;

/// A fault of this node while applying an entry, with what was being done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFault {
    pub message: String,
    /// SQLite found the disk full, and the entry's transaction was rolled back: the entry
    /// changed nothing and can be applied again (with the same clock and seed) once there is
    /// room.
    pub disk_full: bool,
}

impl std::fmt::Display for EntryFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn fault(what: &str, e: &raftlite_ffi::Error) -> EntryFault {
    EntryFault {
        message: format!("{what}: {e}"),
        disk_full: super::error::is_full(e),
    }
}

/// Runs `work` in one write transaction, then `record`, then commits (see the module
/// documentation). `failed` makes the answer of an entry that failed as a whole from the
/// error's text.
pub fn apply_entry<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, ApplyError>,
    failed: impl FnOnce(&str) -> T,
    record: impl FnMut(&Connection) -> anyhow::Result<()>,
) -> Result<T, EntryFault> {
    let outcome = apply_entry_once(conn, work, failed, record);
    if let Err(f) = &outcome {
        if f.disk_full {
            // SQLite may already have rolled the transaction back itself; whatever is left of
            // it goes, so the entry can be applied again from the start.
            if !conn.is_autocommit().unwrap_or(true) {
                if let Err(e) = conn.execute_batch("ROLLBACK") {
                    return Err(fault("roll back the entry after a full disk", &e));
                }
            }
        }
    }
    outcome
}

fn apply_entry_once<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, ApplyError>,
    failed: impl FnOnce(&str) -> T,
    mut record: impl FnMut(&Connection) -> anyhow::Result<()>,
) -> Result<T, EntryFault> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| fault("begin apply transaction", &e))?;
    let failure = match work(conn) {
        Ok(answer) => {
            record_entry(conn, &mut record)?;
            match commit_or_roll_back(conn) {
                Ok(()) => return Ok(answer),
                Err(Refused::Fault(e)) => return Err(fault("commit apply transaction", &e)),
                Err(Refused::ByEntry(e)) => format!("entry failed: commit refused: {e}"),
            }
        }
        Err(e) if super::error::is_local_fault(&e) => return Err(fault("apply entry", &e)),
        Err(e) => {
            roll_back_if_open(conn).map_err(|e| fault("roll back the entry", &e))?;
            format!("entry failed: {e}")
        }
    };
    // The entry itself caused it: every node fails here alike, so the entry applies as a
    // no-op with the error as its answer, instead of stopping every node.
    tracing::warn!("{failure}; it changed nothing");
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| fault("begin apply transaction", &e))?;
    let answer = failed(&failure);
    record_entry(conn, &mut record)?;
    conn.execute_batch("COMMIT")
        .map_err(|e| fault("commit apply transaction", &e))?;
    Ok(answer)
}

fn record_entry(
    conn: &Connection,
    record: &mut impl FnMut(&Connection) -> anyhow::Result<()>,
) -> Result<(), EntryFault> {
    record(conn).map_err(|e| EntryFault {
        message: format!("record applied index: {e:#}"),
        disk_full: super::error::is_disk_full(&e),
    })
}

/// Why a COMMIT of work that ran without error did not happen.
pub(crate) enum Refused {
    /// This node's fault (I/O, a full disk, memory): the caller stops or waits.
    Fault(raftlite_ffi::Error),
    /// The work itself made SQLite refuse the commit, alike on every node; the transaction is
    /// rolled back. A full-text table created and written inside a savepoint that was then
    /// rolled back does it: the table's pending data outlives its shadow tables, and its
    /// flush at COMMIT fails (`SQL logic error`).
    ByEntry(raftlite_ffi::Error),
}

/// Commits the open transaction, sorting a failure (see [`Refused`]).
pub(crate) fn commit_or_roll_back(conn: &Connection) -> Result<(), Refused> {
    let Err(e) = conn.execute_batch("COMMIT") else {
        return Ok(());
    };
    // An allow-list: only what SQL itself reports (an error in a virtual table's flush, a
    // constraint) is the entry's doing; anything else (busy, locked, read-only, I/O, memory,
    // misuse) is this node's, and stops it rather than record a no-op others may not.
    if !matches!(
        e.code(),
        raftlite_ffi::ErrorCode::Error | raftlite_ffi::ErrorCode::Constraint
    ) {
        return Err(Refused::Fault(e));
    }
    // SQLite has rolled back already after most failed commits; the rest is rolled back here.
    roll_back_if_open(conn).map_err(Refused::Fault)?;
    Err(Refused::ByEntry(e))
}

/// Rolls back the open transaction, if a failed statement has not ended it already.
pub(crate) fn roll_back_if_open(conn: &Connection) -> raftlite_ffi::Result<()> {
    if !conn.is_autocommit()? {
        conn.execute_batch("ROLLBACK")?;
    }
    Ok(())
}

/// Applies a group-commit batch inside the entry's open transaction: each item as an
/// `Execute` entry would run, with its own clock, seed and budget. `each` sees each item's
/// inputs before it runs (the state machine keeps the latest clock).
///
/// An item whose ROLLBACK conflict clause (or a write stopped by its budget) ends the
/// transaction also undoes the items before it, which alone would have committed in entries of
/// their own. They are run again, in order, in the new transaction: the database is back where
/// the batch started and each item carries its inputs, so they produce the same changes and
/// results on every node. Items that ended the transaction changed nothing and are not run
/// again, so the redo never loops.
pub fn apply_batch(
    conn: &Connection,
    items: &[ExecuteItem],
    mut each: impl FnMut(&ApplyEnv),
) -> Result<Vec<RequestResults>, ApplyError> {
    let mut run = |item: &ExecuteItem| {
        conn.set_apply_inputs(Some(item.env.inputs()))?;
        each(&item.env);
        execute::execute_request(conn, &item.request, item.policy, item.opts, item.env.budget)
    };
    let mut results = Vec::with_capacity(items.len());
    // Indexes of the items whose changes the open transaction holds.
    let mut kept: Vec<usize> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let out = run(item)?;
        if out.ended_callers_transaction {
            for &k in &kept {
                let redone = run(&items[k])?;
                debug_assert!(!redone.ended_callers_transaction);
            }
        } else {
            kept.push(i);
        }
        results.push(out);
    }
    conn.set_apply_inputs(None)?;
    Ok(results)
}

/// Creates the state table if it does not exist (on the writer, outside any transaction), and
/// adds the `lineage` column to a table written before it existed.
pub fn ensure_state_table(conn: &Connection) -> raftlite_ffi::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS main.{STATE_TABLE} (\
            id INTEGER PRIMARY KEY CHECK (id = 1), \
            applied_log_id TEXT, \
            membership TEXT, \
            lineage TEXT); \
         INSERT OR IGNORE INTO main.{STATE_TABLE}(id) VALUES (1);"
    ))?;
    if !state_table_has_lineage(conn)? {
        conn.execute_batch(&format!(
            "ALTER TABLE main.{STATE_TABLE} ADD COLUMN lineage TEXT"
        ))?;
    }
    Ok(())
}

/// Whether the state table has the `lineage` column (tables written by older versions do not).
pub fn state_table_has_lineage(conn: &Connection) -> raftlite_ffi::Result<bool> {
    Ok(conn
        .query_i64(&format!(
            "SELECT count(*) FROM pragma_table_info('{STATE_TABLE}', 'main') WHERE name = 'lineage'"
        ))?
        .unwrap_or(0)
        > 0)
}

/// Records an applied log id (as JSON), and the membership when it changed (inside the apply
/// transaction). `lineage` is recorded only where none is yet (see `store::applied_state`).
/// An UPDATE, so `last_insert_rowid` is left alone.
pub fn record_state(
    conn: &Connection,
    log_id_json: &str,
    membership_json: Option<&str>,
    lineage: Option<&str>,
) -> raftlite_ffi::Result<()> {
    let mut stmt = conn.prepare(&format!(
        "UPDATE main.{STATE_TABLE} SET applied_log_id = ?1, \
            membership = coalesce(?2, membership), \
            lineage = coalesce(lineage, ?3) WHERE id = 1"
    ))?;
    stmt.bind_text(1, log_id_json)?;
    match membership_json {
        Some(m) => stmt.bind_text(2, m)?,
        None => stmt.bind_null(2)?,
    }
    match lineage {
        Some(l) => stmt.bind_text(3, l)?,
        None => stmt.bind_null(3)?,
    }
    stmt.step()?;
    Ok(())
}
