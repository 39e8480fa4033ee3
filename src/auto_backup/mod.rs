//! Automatic backups (`-auto-backup FILE`, rqlite's configuration): every `interval` the
//! leader backs its database up to the configured storage, when it changed since the last
//! upload. The backup is made by the backup engine that serves `GET /db/backup`
//! ([`crate::store::backup`]: the same copy, consistency, disk reserve and background
//! priority), gzip-compressed unless `no_compress`, and copied from the engine's finished
//! copy to the storage in bounded pieces.
//!
//! "Changed" is decided as rqlite decides it, with one difference: rqlite names an upload by
//! the Raft index that last changed the database and skips when that index has not moved;
//! raftlite's applied index also moves with entries that change no row (a new leader's first
//! entry), so an upload is named by the SHA-256 of the backup's bytes (uncompressed) and
//! skipped when that is the one last uploaded. A tick on which nothing at all was applied,
//! or whose database no write has touched yet, skips without making a backup. After a restart, the first upload compares with the
//! storage's recorded id (`METADATA.json`), so an unchanged database is not uploaded again.
//!
//! Counters under `uploader` in `/debug/vars` are rqlite's (`num_uploads_ok`,
//! `num_uploads_fail`, `num_uploads_skipped`, `num_uploads_skipped_id`, `num_sum_get_fail`,
//! `total_upload_bytes`, `last_upload_bytes`).

pub mod config;
pub mod file;
pub mod restore;
pub mod s3;
pub mod storage;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub use config::{AutoBackupConfig, AutoRestoreConfig, Storage};
use storage::Target;

use crate::store::Store;

/// The uploader's counters (rqlite's `uploader` expvar map).
#[derive(Debug, Default)]
pub struct UploaderStats {
    pub uploads_ok: AtomicU64,
    pub uploads_fail: AtomicU64,
    pub uploads_skipped: AtomicU64,
    pub uploads_skipped_id: AtomicU64,
    pub sum_get_fail: AtomicU64,
    pub total_upload_bytes: AtomicU64,
    pub last_upload_bytes: AtomicU64,
}

impl UploaderStats {
    /// Its figures in a `/metrics` reading.
    pub fn add_to(&self, reading: &mut crate::metrics::NodeReading) {
        reading.uploads_ok = self.uploads_ok.load(Ordering::Relaxed);
        reading.uploads_failed = self.uploads_fail.load(Ordering::Relaxed);
        reading.upload_bytes = self.total_upload_bytes.load(Ordering::Relaxed);
    }

    /// The `uploader` map of `/debug/vars`.
    pub fn expvar(&self) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "num_uploads_ok": n(&self.uploads_ok),
            "num_uploads_fail": n(&self.uploads_fail),
            "num_uploads_skipped": n(&self.uploads_skipped),
            "num_uploads_skipped_id": n(&self.uploads_skipped_id),
            "num_sum_get_fail": n(&self.sum_get_fail),
            "total_upload_bytes": n(&self.total_upload_bytes),
            "last_upload_bytes": n(&self.last_upload_bytes),
        })
    }
}

/// What the uploader remembers between ticks.
#[derive(Default)]
struct Progress {
    /// The applied index the last backup (or skip) looked at.
    checked_index: u64,
    /// The id of the last upload this process made or found in storage.
    uploaded_id: Option<String>,
}

/// The running uploader; [`Uploader::shut_down`] ends it.
pub struct Uploader {
    task: tokio::task::JoinHandle<()>,
    stopping: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
}

/// How long a stop waits for an upload being written to give up cleanly (its next write
/// fails, so a file upload removes its temporary file and an S3 multipart upload is aborted
/// instead of left in the bucket) before the task is cut off.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl Uploader {
    /// Stops the ticks and the upload being written, waiting [`STOP_GRACE`] at most for it
    /// to clean up.
    pub async fn shut_down(self) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_one();
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Checks the storage (at start-up, so a node that cannot back up does not start) and starts
/// the uploader on the runtime. Every node runs one; only the leader's uploads.
pub fn start(
    store: Arc<Store>,
    config: AutoBackupConfig,
    stats: Arc<UploaderStats>,
) -> anyhow::Result<Uploader> {
    let storage = Arc::new(Target::open_for_uploads(&config.storage, config.timestamp)?);
    tracing::info!(
        "automatic backups to {} every {:?}",
        storage.describe(),
        config.interval
    );
    let stopping = Arc::new(AtomicBool::new(false));
    let stop_writes = Arc::clone(&stopping);
    let wake = Arc::new(tokio::sync::Notify::new());
    let woken = Arc::clone(&wake);
    let task = tokio::spawn(async move {
        let mut progress = Progress::default();
        let mut ticks = tokio::time::interval(config.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // The first tick is immediate; rqlite's first upload waits one interval.
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = woken.notified() => break,
            }
            if stop_writes.load(Ordering::Acquire) {
                break;
            }
            if !store.is_leader() {
                continue;
            }
            let upload = upload_if_changed(
                &store,
                &config,
                &storage,
                &mut progress,
                &stats,
                &stop_writes,
            );
            if let Err(e) = upload.await {
                if stop_writes.load(Ordering::Acquire) {
                    tracing::info!("automatic backup stopped with the node: {e:#}");
                    break;
                }
                stats.uploads_fail.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("automatic backup to {} failed: {e:#}", storage.describe());
            }
        }
    });
    Ok(Uploader {
        task,
        stopping,
        wake,
    })
}

async fn upload_if_changed(
    store: &Store,
    config: &AutoBackupConfig,
    storage: &Arc<Target>,
    progress: &mut Progress,
    stats: &UploaderStats,
    stopping: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let applied = store.applied_index();
    if applied <= progress.checked_index {
        stats.uploads_skipped.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    // A database no write has touched holds no data (it has no lineage): rqlite uploads
    // nothing until the first write either.
    let (content, _) = store
        .backups()
        .binary_head(store.database())
        .await
        .map_err(|e| anyhow::anyhow!("read the database's state: {e}"))?;
    if content.lineage.is_none() {
        progress.checked_index = applied;
        stats.uploads_skipped.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let backup = store
        .backups()
        .binary(store.database(), applied, config.vacuum)
        .await
        .map_err(|e| anyhow::anyhow!("make the backup: {e}"))?;
    let id = hex(&backup
        .digest()
        .await
        .map_err(|e| anyhow::anyhow!("hash the backup: {e}"))?);
    let first_look = progress.uploaded_id.is_none();
    if first_look {
        match storage.current_id().await {
            Ok(id) => progress.uploaded_id = id,
            Err(e) => {
                stats.sum_get_fail.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("read the id of the last automatic backup: {e:#}");
            }
        }
    }
    if progress.uploaded_id.as_deref() == Some(id.as_str()) {
        progress.checked_index = applied;
        let skipped = if first_look {
            &stats.uploads_skipped_id
        } else {
            &stats.uploads_skipped
        };
        skipped.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let copy = backup
        .finished_file()
        .await
        .map_err(|e| anyhow::anyhow!("read the backup: {e}"))?;
    // On the data directory's file system, the upload leaves `-disk-reserve` free, as every
    // copy the engine makes does (the uncompressed size bounds what is written).
    if let Some(dir) = storage.local_dir() {
        if same_file_system(dir, store.data_dir()) {
            crate::db::disk::check_room(
                dir,
                backup.info.len,
                store.backups().disk_reserve(),
                "an automatic backup",
            )?;
        }
    }
    let compress = config.compress;
    let stopping = Arc::clone(stopping);
    let (path, bytes) = storage
        .upload(&id, unix_now(), move |out| {
            let mut source = std::fs::File::open(&copy)?;
            let mut counted = CountingWriter {
                inner: out,
                count: 0,
                stopping,
            };
            if compress {
                let mut gz =
                    flate2::write::GzEncoder::new(&mut counted, flate2::Compression::default());
                std::io::copy(&mut source, &mut gz)?;
                gz.finish()?;
            } else {
                std::io::copy(&mut source, &mut counted)?;
            }
            Ok(counted.count)
        })
        .await?;
    // Held until here, so the copy's file stayed while it was read; not kept for
    // `-backup-keep` after it (nobody asked for it: it would only take disk space).
    backup.release();
    progress.checked_index = applied;
    progress.uploaded_id = Some(id);
    stats.uploads_ok.fetch_add(1, Ordering::Relaxed);
    stats.total_upload_bytes.fetch_add(bytes, Ordering::Relaxed);
    stats.last_upload_bytes.store(bytes, Ordering::Relaxed);
    tracing::info!("automatic backup of index {applied} written to {path} ({bytes} bytes)");
    Ok(())
}

/// Counts what it writes, and fails once the node is stopping.
struct CountingWriter<W> {
    inner: W,
    count: u64,
    stopping: Arc<AtomicBool>,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(std::io::Error::other("the node is stopping"));
        }
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn same_file_system(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        // Unknown: treat it as shared, so the reserve is kept.
        _ => true,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
