//! openraft's storage test suite against the production pair: our log engine
//! ([`RaftLogStore`]) and the SQLite state machine ([`SqliteStateMachine`]).

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raftlite::db::{Database, DbSettings, DB_FILE_NAME};
use raftlite::raft::log::openraft::RaftLogStore;
use raftlite::raft::log::LogOptions;
use raftlite::store::state_machine::SqliteStateMachine;
use raftlite::store::types::TypeConfig;

/// Builds a fresh log and state machine in a temporary directory, which the guard keeps.
struct SqliteBuilder {
    segment_size: u64,
}

impl StoreBuilder<TypeConfig, RaftLogStore<TypeConfig>, SqliteStateMachine, tempfile::TempDir>
    for SqliteBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            RaftLogStore<TypeConfig>,
            SqliteStateMachine,
        ),
        StorageError<u64>,
    > {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(
            Database::open(dir.path().join(DB_FILE_NAME), DbSettings::default()).expect("open db"),
        );
        let (sm, _shared) = SqliteStateMachine::open(db, dir.path().to_path_buf())
            .await
            .expect("open sm");
        let options = LogOptions {
            segment_size: self.segment_size,
            ..LogOptions::default()
        };
        let log = RaftLogStore::open(dir.path().join("raft"), options).expect("open log");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_suite_passes_on_the_log_engine_and_the_sqlite_state_machine() {
    Suite::test_all(SqliteBuilder {
        segment_size: 64 * 1024 * 1024,
    })
    .expect("suite");
}

#[test]
fn openraft_suite_passes_with_tiny_segments() {
    Suite::test_all(SqliteBuilder { segment_size: 200 }).expect("suite");
}
