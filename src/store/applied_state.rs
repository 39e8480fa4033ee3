//! Where the state machine keeps its own state inside the database: the applied log id and
//! the membership, in the table `_raftlite_state` ([`STATE_TABLE`]), written in the same transaction as the
//! entry they describe. A crash therefore never applies an entry twice or loses one, and a
//! copy of the database (a snapshot, a backup) carries the index it reflects.
//!
//! The table is visible to SQL (`sqlite_master` lists it). Backups served by raftlite leave it
//! out, in both formats: `GET /db/backup` reads it from its copy (for the
//! `X-Raftlite-Raft-Index` header) and then drops it there, and the SQL dump excludes it.

use raftlite_ffi::Connection;

use super::node_info::{LogId, StoredMembership};
use crate::db::STATE_TABLE;

/// The applied state recorded in a database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppliedState {
    pub log_id: Option<LogId>,
    pub membership: StoredMembership,
}

/// Creates the state table if it does not exist (on the writer, outside any transaction).
pub fn ensure_table(conn: &Connection) -> raftlite_ffi::Result<()> {
    crate::db::apply::ensure_state_table(conn)
}

/// Reads the applied state; a database without the table (a fresh or foreign file) has none.
pub fn read(conn: &Connection) -> anyhow::Result<AppliedState> {
    let exists = conn.query_i64(&format!(
        "SELECT count(*) FROM main.sqlite_master WHERE type = 'table' AND name = '{STATE_TABLE}'"
    ))?;
    if exists != Some(1) {
        return Ok(AppliedState::default());
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT applied_log_id, membership FROM main.{STATE_TABLE} WHERE id = 1"
    ))?;
    if !stmt.step()?.is_row() {
        return Ok(AppliedState::default());
    }
    let text = |i| -> Option<String> {
        match stmt.column_value(i) {
            raftlite_ffi::ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
            _ => None,
        }
    };
    let log_id = match text(0) {
        Some(t) => Some(serde_json::from_str(&t)?),
        None => None,
    };
    let membership = match text(1) {
        Some(t) => serde_json::from_str(&t)?,
        None => StoredMembership::default(),
    };
    Ok(AppliedState { log_id, membership })
}

/// Records the applied log id, and the membership when it changed (inside the apply
/// transaction).
pub fn write(
    conn: &Connection,
    log_id: &LogId,
    membership: Option<&StoredMembership>,
) -> anyhow::Result<()> {
    let membership = membership.map(serde_json::to_string).transpose()?;
    crate::db::apply::record_state(conn, &serde_json::to_string(log_id)?, membership.as_deref())?;
    Ok(())
}
