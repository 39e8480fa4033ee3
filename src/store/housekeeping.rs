//! The leader's periodic maintenance, proposed as entries so every node runs it at the same
//! point of the log (rqlited's flags):
//! - `PRAGMA optimize` every `-auto-optimize-int` (default 24 h; `0h` turns it off), a write
//!   of the cluster's own, made deterministic as a user's would be (every table, a fixed mask:
//!   `db::rewrite::pin_optimize`);
//! - `VACUUM` every `-auto-vacuum-int` (default off), a
//!   [`Command::Vacuum`](super::types::Command::Vacuum) entry that every node runs between
//!   two entries' transactions (`state_machine::vacuum_at`).
//!
//! rqlited runs both on each node during a snapshot, outside the log; here the statistics
//! `optimize` records (`sqlite_stat1`) are the same on every node and in every backup, the
//! database's digest stays one value across the cluster, and the rowids a VACUUM renumbers
//! are renumbered at the same point of the log on every node.
//!
//! When: once the interval has passed since this node's last run (kept in
//! `DATA_DIR/auto-optimize.json`, `DATA_DIR/auto-vacuum.json` across restarts) or, for a node
//! that never ran one, since it began leading. Another leader's runs are not known here:
//! after a leader change the next run comes up to one interval early or late, which costs
//! one `ANALYZE` or one `VACUUM` at most. Counted in `/debug/vars` as rqlite counts them:
//! `store.num_auto_optimizes`, `num_auto_optimizes_failed`, `num_auto_vacuums`,
//! `num_auto_vacuums_failed`. A failure waits a whole interval too.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::db::request::{Request, ResultOptions, RowsPolicy, SqlStatement};

use super::Store;

/// A periodic job of the leader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chore {
    Optimize,
    Vacuum,
}

impl Chore {
    fn name(self) -> &'static str {
        match self {
            Chore::Optimize => "auto-optimize",
            Chore::Vacuum => "auto-vacuum",
        }
    }

    /// Where the last run's time is kept: `auto-optimize.json`, `auto-vacuum.json`.
    fn last_run_file(self) -> String {
        format!("{}.json", self.name())
    }

    fn counters(self, store: &Store) -> (&AtomicU64, &AtomicU64) {
        let c = &store.counters;
        match self {
            Chore::Optimize => (&c.auto_optimizes, &c.auto_optimizes_failed),
            Chore::Vacuum => (&c.auto_vacuums, &c.auto_vacuums_failed),
        }
    }

    /// Proposes the chore's entry; its index, or why it failed.
    async fn propose(self, store: &Store) -> Result<u64, String> {
        let outcome = match self {
            Chore::Optimize => {
                let request = Request {
                    statements: vec![SqlStatement::new("PRAGMA optimize")],
                    transaction: false,
                };
                store
                    .propose_write(
                        request,
                        RowsPolicy::ReturningOnly,
                        ResultOptions::default(),
                        None,
                    )
                    .await
            }
            Chore::Vacuum => {
                room_for_vacuum(store)?;
                store.propose_vacuum().await
            }
        };
        match outcome {
            Ok(done) => match done.results.error.or_else(|| {
                done.results.results.iter().find_map(|r| match &r.outcome {
                    crate::db::request::StatementOutcome::Error(e) => Some(e.clone()),
                    _ => None,
                })
            }) {
                None => Ok(done.raft_index),
                Some(e) => Err(format!("entry {}: {e}", done.raft_index)),
            },
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Runs `chore` through the log every `interval` while this node leads; returns when the
/// node stops.
pub async fn run(store: Arc<Store>, chore: Chore, interval: Duration) {
    let file = store.data_dir().join(chore.last_run_file());
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
        let (done, failed) = chore.counters(&store);
        match chore.propose(&store).await {
            Ok(index) => {
                done.fetch_add(1, Ordering::Relaxed);
                tracing::info!(index, "{} done", chore.name());
            }
            Err(e) => {
                failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("{}: {e}", chore.name());
            }
        }
        // Counted from the end of the run (a long VACUUM must not be followed by another at
        // once), and a failure waits a whole interval too: it must not be retried every tick.
        if let Err(e) = record_run(&file, unix_ms()) {
            tracing::warn!(
                "record the last {} in {}: {e}",
                chore.name(),
                file.display()
            );
        }
    }
}

/// Whether this node's disk has room for a VACUUM: SQLite builds the new database in a
/// temporary file (on the data directory's disk: the node points `SQLITE_TMPDIR` there), then
/// writes it back through the WAL, so about twice the database's size, beyond `-disk-reserve`.
/// Every node must run the entry (`state_machine::vacuum_at`) and waits for room if it has
/// none: the leader proposes none that its own disk could not take.
fn room_for_vacuum(store: &Store) -> Result<(), String> {
    let db = store.database().path().to_path_buf();
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let used = size(&db) + size(&crate::db::sibling(&db, "-wal"));
    let need = used
        .saturating_mul(2)
        .saturating_add(store.backups().disk_reserve());
    let free = crate::db::disk::free_bytes(store.data_dir()).map_err(|e| e.to_string())?;
    if free < need {
        return Err(format!(
            "skipped: a VACUUM of this {used}-byte database needs about {need} bytes free \
             (twice its size, beyond -disk-reserve); {free} are"
        ));
    }
    Ok(())
}

/// `/status` `store.auto_vacuum`, as rqlite shows it while `-auto-vacuum-int` is set: when
/// this node's leader last had the database vacuumed (absent before the first run, and on a
/// node that never led one) and when the next run is due at the earliest (counted from the
/// node's start when it never ran one).
pub fn vacuum_status(store: &Store, interval: Duration, started_unix_ms: u64) -> serde_json::Value {
    let last = last_run(&store.data_dir().join(Chore::Vacuum.last_run_file()));
    let rfc3339 = |ms: u64| crate::http::json::rfc3339_from_unix((ms / 1000) as i64);
    let base = last.unwrap_or(started_unix_ms);
    let mut doc = serde_json::json!({
        "next_vacuum_after": rfc3339(base.saturating_add(interval.as_millis() as u64)),
    });
    if let Some(ms) = last {
        doc["last_vacuum"] = rfc3339(ms).into();
    }
    doc
}

pub(crate) fn unix_ms() -> u64 {
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
