//! Where the state machine keeps its own state inside the database: the applied log id and
//! the membership, in the table `_raftlite_state` ([`STATE_TABLE`]), written in the same transaction as the
//! entry they describe. A crash therefore never applies an entry twice or loses one, and a
//! copy of the database (a snapshot, a backup) carries the index it reflects.
//!
//! The **lineage** names the history a database belongs to: it is set once, by the first entry
//! that carries something no other cluster could repeat (the leader's random seed of a write or
//! of a SQL load, the id of a loaded file), and kept from then on; a binary load
//! replaces the table and so starts a new lineage. Within one lineage Raft's log ids name
//! states uniquely (the log matching property), so the pair (lineage, applied log id) names
//! the content: it is what a backup's `ETag` is made of (`store::backup::ContentId`). A
//! database that no such entry has touched has no lineage (it holds no user data).
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
    pub lineage: Option<String>,
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
    let lineage_column = if crate::db::apply::state_table_has_lineage(conn)? {
        "lineage"
    } else {
        "NULL"
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT applied_log_id, membership, {lineage_column} FROM main.{STATE_TABLE} WHERE id = 1"
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
    let lineage = text(2);
    Ok(AppliedState {
        log_id,
        membership,
        lineage,
    })
}

/// Records the applied log id, the membership when it changed, and `lineage` if the database
/// has none yet (inside the apply transaction).
pub fn write(
    conn: &Connection,
    log_id: &LogId,
    membership: Option<&StoredMembership>,
    lineage: Option<&str>,
) -> anyhow::Result<()> {
    let membership = membership.map(serde_json::to_string).transpose()?;
    crate::db::apply::record_state(
        conn,
        &serde_json::to_string(log_id)?,
        membership.as_deref(),
        lineage,
    )?;
    Ok(())
}

/// The lineage a write or a SQL load starts: the leader's random seed for it, and its index.
pub fn lineage_from_seed(seed: u64, index: u64) -> String {
    format!("s{seed:016x}i{index:x}")
}

/// The lineage a loaded database file starts: the load's id (unique, made by the leader that
/// received it) and the entry's index.
pub fn lineage_from_load(load_id: &str, index: u64) -> String {
    format!("l{load_id}i{index:x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlite_ffi::OpenFlags;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(openraft::CommittedLeaderId::new(term, 1), index)
    }

    #[test]
    fn the_first_lineage_stays_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut conn = Connection::open(&path, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
        ensure_table(&conn).unwrap();
        write(&conn, &log_id(1, 1), None, None).unwrap();
        assert_eq!(
            read(&conn).unwrap().lineage,
            None,
            "a membership entry starts none"
        );
        write(&conn, &log_id(1, 2), None, Some("first")).unwrap();
        write(&conn, &log_id(1, 3), None, Some("second")).unwrap();
        write(&conn, &log_id(2, 4), None, None).unwrap();
        conn.close().unwrap();
        let conn = Connection::open(&path, OpenFlags::READ_WRITE).unwrap();
        let state = read(&conn).unwrap();
        assert_eq!(state.lineage.as_deref(), Some("first"));
        assert_eq!(state.log_id, Some(log_id(2, 4)));
    }

    #[test]
    fn a_state_table_of_an_older_version_gains_the_lineage_column() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(
            dir.path().join("db.sqlite"),
            OpenFlags::READ_WRITE | OpenFlags::CREATE,
        )
        .unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE {STATE_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), \
             applied_log_id TEXT, membership TEXT); INSERT INTO {STATE_TABLE}(id) VALUES (1)"
        ))
        .unwrap();
        // Read as it is: no lineage, no error.
        assert_eq!(read(&conn).unwrap().lineage, None);
        ensure_table(&conn).unwrap();
        write(&conn, &log_id(1, 5), None, Some("l")).unwrap();
        assert_eq!(read(&conn).unwrap().lineage.as_deref(), Some("l"));
    }
}
