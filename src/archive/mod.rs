//! Continuous archiving for point-in-time recovery: the leader ships the Raft log's applied
//! entries to the automatic backups' storage as they are applied, with base backups named
//! by the log index they hold, so [`pitr`] can rebuild the database as it was at any entry
//! since the oldest base kept (`raftlite restore --from CONFIG --to-index N | --to-time T`).
//!
//! Turned on by the `archive` object of the `-auto-backup` configuration
//! ([`crate::auto_backup::config::ArchiveConfig`]). Objects, under the storage's archive root
//! (`NAME.archive/` beside file backups, `PATH.archive/` in a bucket):
//! - `bases/<index>.sqlite.gz`: a backup (the same engine as `GET /db/backup`) whose applied
//!   index is `<index>` (20 digits), and `bases/<index>.json` ([`BaseMeta`]: its digest, the
//!   leader's clock at it, the cluster's `-fk`), written after the backup, so a base is
//!   complete when its metadata exists;
//! - `log/<first>-<last>.rlog.zst`: the entries `first..=last` ([`chunk`]).
//!
//! Invariants and how they are kept:
//! - Only applied (so committed) entries are shipped, and a committed entry is the same on
//!   every node, so two leaders that overlap for a moment write the same entries: the
//!   restore takes any chunk that covers the index it needs.
//! - A new leader continues from what the storage holds (the highest shipped index); when its
//!   log no longer has the next entry (purged after a snapshot), it takes a base first.
//! - A load (`/db/load`, `/boot`) is not a log entry that carries its content: at one, the
//!   archiver ships the entries before it, then takes a base that includes it. Points between
//!   the load and that base cannot be restored (documented in `docs/backup.md`).
//! - Retention: after each base, the oldest bases beyond `keep_bases` go, and the chunks that
//!   only they needed.
//!
//! The recovery point: an applied entry waits at most `max_delay` (plus one shipping) before
//! it is in storage; counters under `archiver` in `/debug/vars` (shipped index, bases,
//! chunks, failures, the oldest unshipped entry's age).

pub mod chunk;
pub mod pitr;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;

use crate::auto_backup::config::ArchiveConfig;
use crate::auto_backup::storage::Target;
use crate::raft::log::Record;
use crate::store::types::{Command, Entry};
use crate::store::Store;
use crate::temp_file::TempFile;

/// Most payload bytes in one chunk.
const CHUNK_BYTES: u64 = 16 << 20;

/// What a base's metadata object says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaseMeta {
    /// The applied log index the backup holds.
    pub index: u64,
    /// Its whole log id and the database's lineage: a backup has no state table (see
    /// `store::backup`), so a replay writes them back from here.
    pub log_id: crate::store::node_info::LogId,
    pub lineage: Option<String>,
    /// The leader's clock (Unix ms) at the last stamped entry the backup holds.
    pub stamp: i64,
    /// When the base was taken (Unix ms).
    pub made_ms: i64,
    /// The content digest (`GET /status?digest`'s), to check a restore that ends here.
    pub digest: String,
    /// The cluster's `-fk`: a replay must enforce foreign keys as the cluster did.
    pub foreign_keys: bool,
}

/// The names of the archive's objects.
pub mod names {
    pub fn base_meta(index: u64) -> String {
        format!("bases/{index:020}.json")
    }
    pub fn base_file(index: u64) -> String {
        format!("bases/{index:020}.sqlite.gz")
    }
    pub fn chunk(first: u64, last: u64) -> String {
        format!("log/{first:020}-{last:020}.rlog.zst")
    }
    /// The index of a base's metadata object name (`<index>.json`).
    pub fn parse_base_meta(name: &str) -> Option<u64> {
        parse_index(name.strip_suffix(".json")?)
    }
    /// The range of a chunk's object name (`<first>-<last>.rlog.zst`).
    pub fn parse_chunk(name: &str) -> Option<(u64, u64)> {
        let (first, last) = name.strip_suffix(".rlog.zst")?.split_once('-')?;
        let (first, last) = (parse_index(first)?, parse_index(last)?);
        (first <= last).then_some((first, last))
    }
    fn parse_index(s: &str) -> Option<u64> {
        (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    }
}

/// The archiver's counters (`/debug/vars` `archiver`).
#[derive(Debug, Default)]
pub struct ArchiverStats {
    pub shipped_index: AtomicU64,
    pub chunks: AtomicU64,
    pub entries: AtomicU64,
    pub bases: AtomicU64,
    pub failures: AtomicU64,
    pub deleted_objects: AtomicU64,
    /// When the oldest applied entry not yet in storage was first seen unshipped (Unix ms;
    /// 0 when everything applied is shipped).
    pub unshipped_since_ms: AtomicI64,
}

impl ArchiverStats {
    /// Its figures in a `/metrics` reading.
    pub fn add_to(&self, reading: &mut crate::metrics::NodeReading) {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        reading.archived_index = n(&self.shipped_index);
        reading.archive_chunks = n(&self.chunks);
        reading.archive_bases = n(&self.bases);
        reading.archive_failures = n(&self.failures);
        let since = self.unshipped_since_ms.load(Ordering::Relaxed);
        reading.archive_lag = if since == 0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_millis(u64::try_from(unix_ms() - since).unwrap_or(0))
        };
    }

    pub fn expvar(&self) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "shipped_index": n(&self.shipped_index),
            "chunks_shipped": n(&self.chunks),
            "entries_shipped": n(&self.entries),
            "bases_taken": n(&self.bases),
            "failures": n(&self.failures),
            "objects_deleted": n(&self.deleted_objects),
            "unshipped_since_ms": self.unshipped_since_ms.load(Ordering::Relaxed),
        })
    }
}

/// The running archiver; [`Archiver::shut_down`] ends it.
pub struct Archiver {
    task: tokio::task::JoinHandle<()>,
    wake: Arc<tokio::sync::Notify>,
}

impl Archiver {
    /// Stops the ticks; what is being shipped gets [`crate::auto_backup::STOP_GRACE`] to
    /// finish (an object cut off mid-upload is not in storage, and is shipped again by the
    /// next leader).
    pub async fn shut_down(self) {
        self.wake.notify_one();
        let mut task = self.task;
        if tokio::time::timeout(crate::auto_backup::STOP_GRACE, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// What a leader knows of the storage.
struct Shipped {
    /// The highest index the storage holds (in a chunk or a base).
    index: u64,
    /// The newest base's index and when it was taken (Unix ms).
    last_base: Option<(u64, i64)>,
}

/// Starts the archiver: every `max_delay`, a leader ships what was applied since the last
/// tick, and takes a base when one is due.
pub fn start(
    store: Arc<Store>,
    storage: Arc<Target>,
    config: ArchiveConfig,
    stats: Arc<ArchiverStats>,
) -> Archiver {
    tracing::info!(
        "continuous archiving to {} (entries within {:?}, a base every {:?}, {} kept)",
        storage.describe(),
        config.max_delay,
        config.base_interval,
        config.keep_bases
    );
    let wake = Arc::new(tokio::sync::Notify::new());
    let woken = Arc::clone(&wake);
    let task = tokio::spawn(async move {
        let mut shipped: Option<Shipped> = None;
        let mut ticks = tokio::time::interval(config.max_delay);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = woken.notified() => break,
            }
            if !store.is_leader() {
                // Another node may ship meanwhile: read the storage again when leading again.
                shipped = None;
                continue;
            }
            if let Err(e) = tick(&store, &storage, &config, &stats, &mut shipped).await {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("archiving to {} failed: {e:#}", storage.describe());
                shipped = None;
            }
        }
    });
    Archiver { task, wake }
}

async fn tick(
    store: &Store,
    storage: &Arc<Target>,
    config: &ArchiveConfig,
    stats: &ArchiverStats,
    shipped: &mut Option<Shipped>,
) -> anyhow::Result<()> {
    if shipped.is_none() {
        *shipped = Some(read_shipped(store, storage).await?);
    }
    let state = shipped.as_mut().expect("just read");
    let applied = store.applied_index();
    if applied > state.index && stats.unshipped_since_ms.load(Ordering::Relaxed) == 0 {
        stats.unshipped_since_ms.store(unix_ms(), Ordering::Relaxed);
    }
    // A database no write has touched holds nothing to restore.
    if store.applied_content().lineage.is_none() {
        return Ok(());
    }
    let gap = applied > state.index
        && store
            .log_first_index()
            .is_none_or(|first| first > state.index + 1);
    let due = match state.last_base {
        None => true,
        Some((index, made_ms)) => {
            let age = u64::try_from(unix_ms().saturating_sub(made_ms)).unwrap_or(0);
            applied > index && age >= config.base_interval.as_millis() as u64
        }
    };
    if gap || due {
        take_base(store, storage, config, stats, state).await?;
    }
    while state.index < store.applied_index() {
        let records = {
            let from = state.index + 1;
            store.applied_records(from, u64::MAX, CHUNK_BYTES)?
        };
        if records.is_empty() {
            // Purged meanwhile: the next tick takes a base.
            break;
        }
        let entries: Vec<(Record, Option<Entry>)> = records
            .into_iter()
            .map(|r| {
                let entry = crate::raft::log::openraft::decode_entry_bytes::<Entry>(&r.data).ok();
                (r, entry)
            })
            .collect();
        let load_at = entries.iter().position(|(_, e)| {
            matches!(
                e.as_ref().map(|e| &e.payload),
                Some(openraft::EntryPayload::Normal(
                    Command::Load(_) | Command::LoadSql(_)
                ))
            )
        });
        let ship_upto = load_at.unwrap_or(entries.len());
        if ship_upto > 0 {
            ship_chunk(store, storage, stats, &entries[..ship_upto]).await?;
            state.index = entries[ship_upto - 1].0.index;
        }
        if load_at.is_some() {
            // The load's content is not in the log: a base that holds it follows.
            take_base(store, storage, config, stats, state).await?;
        }
    }
    stats.shipped_index.store(state.index, Ordering::Relaxed);
    if state.index >= store.applied_index() {
        stats.unshipped_since_ms.store(0, Ordering::Relaxed);
    }
    Ok(())
}

/// The highest index the storage holds, and its newest base.
async fn read_shipped(store: &Store, storage: &Arc<Target>) -> anyhow::Result<Shipped> {
    let bases: Vec<u64> = storage
        .list_objects("bases")
        .await?
        .iter()
        .filter_map(|n| names::parse_base_meta(n))
        .collect();
    let chunks_end = storage
        .list_objects("log")
        .await?
        .iter()
        .filter_map(|n| names::parse_chunk(n))
        .map(|(_, last)| last)
        .max();
    let newest_base = bases.iter().copied().max();
    let last_base = match newest_base {
        Some(index) => {
            let file = TempFile::new(store.data_dir().join(format!(
                "archive-{}.part",
                crate::temp_file::unique_suffix()
            )));
            storage
                .get_object(&names::base_meta(index), file.path(), 1 << 20)
                .await?;
            let meta: BaseMeta = serde_json::from_slice(&std::fs::read(file.path())?)
                .with_context(|| format!("read {}", names::base_meta(index)))?;
            Some((index, meta.made_ms))
        }
        None => None,
    };
    Ok(Shipped {
        index: newest_base.max(chunks_end).unwrap_or(0),
        last_base,
    })
}

/// The leader's clock an entry carries, if any.
fn stamp_of(entry: Option<&Entry>) -> Option<i64> {
    match entry.map(|e| &e.payload) {
        Some(openraft::EntryPayload::Normal(Command::Execute { env, .. })) => Some(env.unix_millis),
        Some(openraft::EntryPayload::Normal(Command::ExecuteBatch(items))) => {
            items.last().map(|i| i.env.unix_millis)
        }
        Some(openraft::EntryPayload::Normal(Command::LoadSql(load))) => Some(load.env.unix_millis),
        _ => None,
    }
}

async fn ship_chunk(
    store: &Store,
    storage: &Arc<Target>,
    stats: &ArchiverStats,
    entries: &[(Record, Option<Entry>)],
) -> anyhow::Result<()> {
    let (first, last) = (entries[0].0.index, entries[entries.len() - 1].0.index);
    let file = TempFile::new(store.data_dir().join(format!(
        "archive-{}.part",
        crate::temp_file::unique_suffix()
    )));
    {
        let path = file.path().to_path_buf();
        let records: Vec<Record> = entries.iter().map(|(r, _)| r.clone()).collect();
        let stamps: std::collections::HashMap<u64, i64> = entries
            .iter()
            .filter_map(|(r, e)| stamp_of(e.as_ref()).map(|s| (r.index, s)))
            .collect();
        tokio::task::spawn_blocking(move || {
            let out = std::fs::File::create_new(&path)
                .with_context(|| format!("create {}", path.display()))?;
            chunk::write(std::io::BufWriter::new(out), &records, |r| {
                stamps.get(&r.index).copied()
            })
        })
        .await
        .context("the chunk writer")??;
    }
    storage
        .put_object(&names::chunk(first, last), file.path())
        .await?;
    stats.chunks.fetch_add(1, Ordering::Relaxed);
    stats.entries.fetch_add(last - first + 1, Ordering::Relaxed);
    stats.shipped_index.store(last, Ordering::Relaxed);
    Ok(())
}

/// Takes a base backup of what is applied now, uploads it and its metadata, then applies
/// the retention.
async fn take_base(
    store: &Store,
    storage: &Arc<Target>,
    config: &ArchiveConfig,
    stats: &ArchiverStats,
    state: &mut Shipped,
) -> anyhow::Result<()> {
    let stamp = store.shared().last_apply_millis.load(Ordering::Relaxed);
    let backup = store
        .backups()
        .binary(store.database(), store.applied_index(), false)
        .await
        .map_err(|e| anyhow::anyhow!("make the base backup: {e}"))?;
    let log_id = backup
        .info
        .content
        .log_id
        .context("the backup holds no applied index")?;
    let index = log_id.index;
    let lineage = backup.info.content.lineage.clone();
    let copy: PathBuf = backup
        .finished_file()
        .await
        .map_err(|e| anyhow::anyhow!("read the base backup: {e}"))?;
    let gz = TempFile::new(store.data_dir().join(format!(
        "archive-{}.part",
        crate::temp_file::unique_suffix()
    )));
    let digest = {
        let (copy, gz_path) = (copy.clone(), gz.path().to_path_buf());
        tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            let _background = crate::db::priority::background();
            let digest = pitr::digest_of(&copy)?;
            let out = std::fs::File::create_new(&gz_path)
                .with_context(|| format!("create {}", gz_path.display()))?;
            let mut gz = flate2::write::GzEncoder::new(
                std::io::BufWriter::new(out),
                flate2::Compression::fast(),
            );
            std::io::copy(&mut std::fs::File::open(&copy)?, &mut gz)?;
            gz.finish()?;
            Ok(digest)
        })
        .await
        .context("the base writer")??
    };
    backup.release();
    storage
        .put_object(&names::base_file(index), gz.path())
        .await?;
    let meta = BaseMeta {
        index,
        log_id,
        lineage,
        stamp,
        made_ms: unix_ms(),
        digest,
        foreign_keys: store.database().settings().foreign_keys,
    };
    let meta_file = TempFile::new(store.data_dir().join(format!(
        "archive-{}.part",
        crate::temp_file::unique_suffix()
    )));
    std::fs::write(meta_file.path(), serde_json::to_vec(&meta)?)
        .with_context(|| format!("write {}", meta_file.path().display()))?;
    storage
        .put_object(&names::base_meta(index), meta_file.path())
        .await?;
    stats.bases.fetch_add(1, Ordering::Relaxed);
    state.index = state.index.max(index);
    state.last_base = Some((index, meta.made_ms));
    tracing::info!(
        "archive base at index {index} written to {}",
        storage.describe()
    );
    apply_retention(storage, config.keep_bases, stats).await
}

/// Keeps the newest `keep` bases and the chunks needed from the oldest of them.
async fn apply_retention(
    storage: &Arc<Target>,
    keep: usize,
    stats: &ArchiverStats,
) -> anyhow::Result<()> {
    let mut bases: Vec<u64> = storage
        .list_objects("bases")
        .await?
        .iter()
        .filter_map(|n| names::parse_base_meta(n))
        .collect();
    bases.sort_unstable();
    if bases.len() <= keep {
        return Ok(());
    }
    let oldest_kept = bases[bases.len() - keep];
    for &index in &bases[..bases.len() - keep] {
        // The metadata first: without it the base is not one.
        storage.delete_object(&names::base_meta(index)).await?;
        storage.delete_object(&names::base_file(index)).await?;
        stats.deleted_objects.fetch_add(2, Ordering::Relaxed);
    }
    for name in storage.list_objects("log").await? {
        if let Some((_, last)) = names::parse_chunk(&name) {
            if last <= oldest_kept {
                storage.delete_object(&format!("log/{name}")).await?;
                stats.deleted_objects.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
