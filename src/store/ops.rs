//! Operator requests on the local store: a snapshot now (`POST /snapshot`) and a reap
//! (`POST /reap`). Both act on this node only, as in rqlite (they are not forwarded).
//!
//! A snapshot here copies nothing: the live database is the state machine, so a snapshot is a
//! checkpoint and fsync of the database plus its metadata (see `state_machine`). What the
//! operator gets from it is the log truncation: with `trailing_logs=N` the log is purged up to
//! N entries behind the snapshot (openraft may delay a purge while a follower still reads
//! those entries). Without it, openraft's configured `-raft-trailing-logs` applies.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::state_machine::SnapshotFailure;
use super::{Store, StoreError};

/// What a snapshot request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// A snapshot now covers everything applied; the value is its last index.
    Taken(u64),
    /// Nothing was applied since the last snapshot (rqlite answers 204).
    NothingNew,
}

/// What `POST /reap` reports, with rqlite's field names.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ReapReport {
    pub snapshots_reaped: u64,
    pub wals_checkpointed: u64,
}

/// Takes a snapshot now and, with `trailing_logs`, purges the log up to that many entries
/// behind it. Waits (bounded) for the snapshot to be recorded.
pub async fn snapshot_now(
    store: &Store,
    trailing_logs: Option<u64>,
) -> Result<SnapshotOutcome, StoreError> {
    let raft = store.raft();
    let applied = store.applied_index();
    let last_snapshot = raft.metrics().borrow().snapshot.map_or(0, |l| l.index);
    let outcome = if applied == 0 || applied <= last_snapshot {
        SnapshotOutcome::NothingNew
    } else {
        let shared = store.shared();
        let failures_before = shared.snapshot_failures.load(Ordering::Relaxed);
        // A failed build records no snapshot, so the metrics never move: the failure count
        // is watched too, and the build's reason answered.
        let failed = || {
            (shared.snapshot_failures.load(Ordering::Relaxed) != failures_before)
                .then(|| shared.last_snapshot_failure.lock().clone())
                .flatten()
        };
        raft.trigger()
            .snapshot()
            .await
            .map_err(|e| StoreError::Internal(anyhow::anyhow!("trigger a snapshot: {e}")))?;
        let mut metrics = raft.metrics();
        let done = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Some(s) = metrics.borrow().snapshot.filter(|s| s.index >= applied) {
                    return Ok(s.index);
                }
                if let Some(failure) = failed() {
                    return Err(failure);
                }
                // A change, or 100 ms: then both are looked at again.
                let changed =
                    tokio::time::timeout(Duration::from_millis(100), metrics.changed()).await;
                if let Ok(Err(_)) = changed {
                    return Err(SnapshotFailure {
                        message: "Raft stopped".into(),
                        disk_full: false,
                    });
                }
            }
        })
        .await;
        match done {
            Ok(Ok(index)) => SnapshotOutcome::Taken(index),
            Ok(Err(failure)) => {
                let message = format!("snapshot failed: {}", failure.message);
                return Err(if failure.disk_full {
                    StoreError::InsufficientStorage(message)
                } else {
                    StoreError::Internal(anyhow::anyhow!(message))
                });
            }
            _ => {
                return Err(StoreError::Internal(anyhow::anyhow!(
                    "the snapshot was not recorded within 60 s"
                )))
            }
        }
    };
    if let Some(keep) = trailing_logs {
        let snapshot = raft.metrics().borrow().snapshot.map_or(0, |l| l.index);
        let upto = snapshot.saturating_sub(keep);
        if upto > 0 {
            raft.trigger()
                .purge_log(upto)
                .await
                .map_err(|e| StoreError::Internal(anyhow::anyhow!("purge the log: {e}")))?;
        }
    }
    store
        .counters
        .user_snapshots
        .fetch_add(1, Ordering::Relaxed);
    Ok(outcome)
}

/// rqlite keeps snapshot files and WAL files beside its database and reaps the old ones.
/// raftlite keeps no snapshot files (the snapshot is the live database, and the copies sent to
/// followers are temporary files removed when sent). What it does keep beside the database
/// are finished backup copies kept for reuse and resumes (`-backup-keep`): those are let go
/// (`snapshots_reaped`, each file removed once no download reads it), and the WAL is copied
/// back into the database now rather than at the next checkpoint (`wals_checkpointed`: 1
/// when frames were waiting and the checkpoint ran).
pub async fn reap(store: &Store) -> Result<ReapReport, StoreError> {
    store.counters.user_reaps.fetch_add(1, Ordering::Relaxed);
    let snapshots_reaped = store.backups().reap_kept() as u64;
    let checkpointed = store.database().checkpoint_now().await?;
    Ok(ReapReport {
        snapshots_reaped,
        wals_checkpointed: u64::from(checkpointed),
    })
}
