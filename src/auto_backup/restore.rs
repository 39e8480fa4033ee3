//! Automatic restore at first start (`-auto-restore FILE`, rqlite's configuration): a node
//! that holds no data downloads the latest backup from the storage before it serves, and the
//! first time a leader is known, the node loads it into the cluster if it is that leader.
//!
//! As rqlite does it: the download is bounded by the configuration's `timeout`; a failed one
//! stops the node unless `continue_on_failure`; a node with data skips it all; only the node
//! that is leader at the first leader it sees loads the file, the others drop theirs; the
//! file is removed whatever happens. Counted in `/debug/vars`: `downloader`
//! (`num_downloads_ok`, `num_downloads_fail`, `download_bytes`) and `store`
//! (`num_auto_restores`, `num_auto_restores_skipped`, `num_auto_restores_failed`).
//!
//! Safer than rqlite in two ways. The load goes through the same staging as `POST /db/load`
//! (gzip told by content and decompressed as it is read, `-max-load-size`, the disk
//! reserve), with SQLite's full `integrity_check` before anything is proposed, and a file that
//! is not a database is refused. And the leader loads only into a database no write has
//! touched (no lineage): a cluster that already holds data, because another node restored
//! it or a client wrote first, is never overwritten from storage.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::config::AutoRestoreConfig;
use super::storage::Target;
use crate::store::restore::{self, RestoreLimits, StageChecks};
use crate::store::Store;
use crate::temp_file::TempFile;

/// The downloaded backup, waiting for the first leader.
pub struct Downloaded {
    file: TempFile,
    from: String,
}

/// What the data directory held at start decides whether to restore: any applied write, or
/// any Raft state (a node that was a member of a cluster), is data. Read as the node opened
/// it: entries a leader sends once the Raft port serves do not make an empty node one with
/// data.
pub fn holds_data(store: &Store) -> bool {
    store.applied_content().lineage.is_some() || store.opened_with_state()
}

/// Downloads the backup into the data directory if the node holds no data (`Ok(None)` when
/// it does, or when the download failed and `continue_on_failure` lets the node start
/// empty). An error stops the node.
pub async fn download(
    store: &Store,
    config: &AutoRestoreConfig,
    max_bytes: Option<u64>,
) -> anyhow::Result<Option<Downloaded>> {
    if holds_data(store) {
        tracing::info!(
            "auto-restore requested, but data already exists in {}, skipping",
            store.data_dir().display()
        );
        return Ok(None);
    }
    let counters = &store.counters;
    let attempt = async {
        let target = Arc::new(Target::open_for_restore(&config.storage)?);
        let from = target.describe();
        let file = TempFile::new(store.data_dir().join(format!(
            "auto-restore-{}.part",
            crate::temp_file::unique_suffix()
        )));
        let started = Instant::now();
        let fetch = target.download(file.path(), max_bytes.unwrap_or(u64::MAX));
        let bytes = tokio::time::timeout(config.timeout, fetch)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "timed out after {:?} (the configuration's timeout)",
                    config.timeout
                )
            })??;
        tracing::info!(
            "auto-restore file downloaded from {from} in {:?} ({bytes} bytes)",
            started.elapsed()
        );
        counters.download_bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok::<_, anyhow::Error>(Downloaded { file, from })
    };
    match attempt.await {
        Ok(downloaded) => {
            counters.downloads_ok.fetch_add(1, Ordering::Relaxed);
            Ok(Some(downloaded))
        }
        Err(e) => {
            counters.downloads_fail.fetch_add(1, Ordering::Relaxed);
            if config.continue_on_failure {
                tracing::warn!(
                    "failed to download auto-restore file: {e:#}, continuing with node startup \
                     anyway"
                );
                Ok(None)
            } else {
                Err(e.context("download the auto-restore file"))
            }
        }
    }
}

/// How often the first leader is looked for, and for how long at most (then the file is
/// dropped and counted as skipped: a node that never sees a leader restores nothing).
const LEADER_POLL: Duration = Duration::from_millis(100);
const LEADER_WAIT: Duration = Duration::from_secs(600);

/// Waits for the first leader, then loads the file if this node is it and the database is
/// still untouched. Runs on the node's runtime; the file goes when it ends.
pub fn install_when_leader(
    store: Arc<Store>,
    downloaded: Downloaded,
    limits: RestoreLimits,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let counters = &store.counters;
        let deadline = Instant::now() + LEADER_WAIT;
        let leader = loop {
            if let Some(leader) = store.leader() {
                break Some(leader);
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(LEADER_POLL).await;
        };
        let skip = match &leader {
            None => Some("no leader was elected in time"),
            Some(l) if l.id != store.node().id => Some("a different node became leader"),
            Some(_) if store.applied_content().lineage.is_some() => {
                Some("the cluster's database already holds data")
            }
            Some(_) => None,
        };
        if let Some(why) = skip {
            tracing::info!("not performing auto-restore: {why}");
            counters
                .auto_restores_skipped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        match load(&store, &downloaded, limits).await {
            Ok(index) => {
                counters.auto_restores.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    "node auto-restored successfully from {} (log index {index})",
                    downloaded.from
                );
            }
            Err(e) => {
                counters
                    .auto_restores_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("failed to auto-restore from {}: {e:#}", downloaded.from);
            }
        }
    })
}

async fn load(
    store: &Store,
    downloaded: &Downloaded,
    limits: RestoreLimits,
) -> anyhow::Result<u64> {
    let path: PathBuf = downloaded.file.path().to_path_buf();
    let file = tokio::fs::File::open(&path)
        .await
        .with_context(|| format!("open {}", path.display()))?;
    let declared = file.metadata().await.ok().map(|m| m.len());
    let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
    let checks = StageChecks {
        integrity_check: true,
        sqlite_only: true,
        build_while_staging: false,
    };
    let started = Instant::now();
    let staged = restore::stage(store, body, declared, limits, checks)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Checked again at the last moment: a write may have come since the leader was found.
    if store.applied_content().lineage.is_some() {
        anyhow::bail!("the cluster's database received data before the restore; not overwritten");
    }
    let restored = restore::propose(store, staged, limits, started)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(restored.raft_index.unwrap_or(0))
}
