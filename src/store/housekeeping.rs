//! The leader's periodic maintenance, proposed as entries so every node runs it at the same
//! point of the log: `PRAGMA optimize` every `-auto-optimize-int` (rqlited's flag, default
//! 24 h; `0h` turns it off).
//!
//! rqlited runs its optimize on each node during a snapshot, outside the log; here it is a
//! write of the cluster's own, so the statistics it records (`sqlite_stat1`) are the same on
//! every node and in every backup, and the database's digest stays one value across the
//! cluster. The statement is made deterministic as a user's would be (every table, a fixed
//! mask: `db::rewrite::pin_optimize`).
//!
//! When: once the interval has passed since this node's last optimize (kept in
//! `DATA_DIR/auto-optimize.json` across restarts) or, for a node that never ran one, since
//! it began leading. Another leader's runs are not known here: after a leader change the
//! next run comes up to one interval early or late, which costs one `ANALYZE` at most. Counted in `/debug/vars` as rqlite counts it:
//! `store.num_auto_optimizes`, `store.num_auto_optimizes_failed`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::db::request::{Request, ResultOptions, RowsPolicy, SqlStatement};

use super::Store;

const LAST_RUN_FILE: &str = "auto-optimize.json";

/// Runs `PRAGMA optimize` through the log every `interval` while this node leads; returns
/// when the node stops.
pub async fn auto_optimize(store: Arc<Store>, interval: Duration) {
    let file = store.data_dir().join(LAST_RUN_FILE);
    let mut tick = tokio::time::interval(
        (interval / 10).clamp(Duration::from_millis(100), Duration::from_secs(60)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading_since: Option<u64> = None;
    loop {
        tick.tick().await;
        if store.is_stopping() {
            return;
        }
        if !store.is_leader() {
            leading_since = None;
            continue;
        }
        let now = unix_ms();
        let since = *leading_since.get_or_insert(now);
        let last = last_run(&file).unwrap_or(since);
        if now.saturating_sub(last) < interval.as_millis() as u64 {
            continue;
        }
        let request = Request {
            statements: vec![SqlStatement::new("PRAGMA optimize")],
            transaction: false,
        };
        let outcome = store
            .propose_write(
                request,
                RowsPolicy::ReturningOnly,
                ResultOptions::default(),
                None,
            )
            .await;
        match outcome {
            Ok(done)
                if done.results.error.is_none()
                    && !done.results.results.iter().any(|r| r.is_error()) =>
            {
                store
                    .counters
                    .auto_optimizes
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    index = done.raft_index,
                    "database optimized (-auto-optimize-int)"
                );
            }
            other => {
                store
                    .counters
                    .auto_optimizes_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("auto-optimize: {other:?}");
            }
        }
        // A failure waits a whole interval too: it must not be retried every tick.
        if let Err(e) = record_run(&file, now) {
            tracing::warn!("record the last auto-optimize in {}: {e}", file.display());
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LastRun {
    unix_ms: u64,
}

fn last_run(file: &Path) -> Option<u64> {
    let bytes = std::fs::read(file).ok()?;
    serde_json::from_slice::<LastRun>(&bytes)
        .ok()
        .map(|r| r.unix_ms)
}

fn record_run(file: &PathBuf, at: u64) -> std::io::Result<()> {
    let tmp = crate::db::sibling(file, ".tmp");
    std::fs::write(&tmp, serde_json::to_vec(&LastRun { unix_ms: at })?)?;
    std::fs::rename(&tmp, file)
}
