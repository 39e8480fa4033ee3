//! Continuous archiving for point-in-time recovery: the leader ships the Raft log's applied
//! entries to the automatic backups' storage as they are applied, with base backups named
//! by the log index they hold, so [`pitr`] can rebuild the database as it was at any entry
//! since the oldest base kept (`raftlite restore --from CONFIG --to-index N | --to-time T`).
//!
//! Turned on by the `archive` object of the `-auto-backup` configuration
//! ([`crate::auto_backup::config::ArchiveConfig`]). Objects, under the storage's archive root
//! (`NAME.archive/` beside file backups, `PATH.archive/` in a bucket), in one folder per
//! **history**: the database's lineage, which its first write sets and a binary load or
//! `/boot` replaces, so two clusters (or one before and after a load) sharing a storage never
//! mix their entries:
//! - `<history>/bases/<index>.sqlite.gz`: a backup (the same engine as `GET /db/backup`)
//!   whose applied index is `<index>` (20 digits), and `<history>/bases/<index>.json`
//!   ([`BaseMeta`]: its log id, digest, the latest leader's clock among its entries, the
//!   cluster's `-fk`), written after the backup and after the chunks up to it, so a base is
//!   complete, and the log continuous up to it, once its metadata exists;
//! - `<history>/log/<first>-<last>.rlog.zst`: the entries `first..=last` ([`chunk`]).
//!
//! Invariants and how they are kept:
//! - Only applied (so committed) entries are shipped, and a committed entry is the same on
//!   every node, so two leaders that overlap for a moment write the same entries: the
//!   restore takes any chunk that covers the index it needs.
//! - A new leader continues from what the storage holds (the highest shipped index); when its
//!   log no longer has the next entry (purged after a snapshot), it takes a base first.
//! - A load (`/db/load`, `/boot`) is not a log entry that carries its content: the chunks
//!   hold the entry, and the archiver takes a base right after it (a binary load starts a
//!   new history, whose first object is a base). Points between the load and that base
//!   cannot be restored: a replay refuses a load entry (documented in `docs/backup.md`).
//! - Before a base, everything applied is shipped, and after it, what was applied while it
//!   was taken: the chunks have no gap, and the base's stamp is the latest of its entries'.
//! - Retention: after each base, the oldest bases of the history beyond `keep_bases` go, and
//!   the chunks that only they needed; once the history has `keep_bases` bases, older
//!   histories go.
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

/// What a leader knows of its history in storage.
struct Shipped {
    /// The history (the database's lineage) this is about.
    history: String,
    /// The highest index the history holds (in a chunk or a base).
    index: u64,
    /// The latest leader's clock among the entries the history holds (Unix ms, 0: none).
    stamp: i64,
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

/// A history's name is the database's lineage: letters, digits and dashes only (what
/// `store::applied_state` makes), so it is a plain object-name segment.
pub(crate) fn valid_history(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

async fn tick(
    store: &Store,
    storage: &Arc<Target>,
    config: &ArchiveConfig,
    stats: &ArchiverStats,
    shipped: &mut Option<Shipped>,
) -> anyhow::Result<()> {
    // A database no write has touched holds nothing to restore.
    let Some(history) = store.applied_content().lineage else {
        return Ok(());
    };
    if !valid_history(&history) {
        anyhow::bail!("the database's lineage {history:?} cannot name an archive history");
    }
    // A binary load starts a new lineage: its history starts with a base of its own.
    if shipped.as_ref().is_some_and(|s| s.history != history) {
        *shipped = None;
    }
    if shipped.is_none() {
        *shipped = Some(read_shipped(store, storage, &history).await?);
    }
    let state = shipped.as_mut().expect("just read");
    let applied = store.applied_index();
    if applied > state.index && stats.unshipped_since_ms.load(Ordering::Relaxed) == 0 {
        stats.unshipped_since_ms.store(unix_ms(), Ordering::Relaxed);
    }
    let gap = applied > state.index
        && store
            .log_first_index()
            .is_none_or(|first| first > state.index + 1);
    if state.last_base.is_none() || gap {
        // A history starts with a base (entries before it could restore nothing), and one
        // whose log no longer holds the next entry continues from a new base.
        take_base(store, storage, config, stats, state, false).await?;
    } else {
        let load_seen = ship(store, storage, stats, state, u64::MAX)
            .await?
            .load_seen;
        let due = state.last_base.is_some_and(|(index, made_ms)| {
            let age = u64::try_from(unix_ms().saturating_sub(made_ms)).unwrap_or(0);
            store.applied_index() > index && age >= config.base_interval.as_millis() as u64
        });
        if due || load_seen {
            take_base(store, storage, config, stats, state, true).await?;
        }
    }
    stats.shipped_index.store(state.index, Ordering::Relaxed);
    if state.index >= store.applied_index() {
        stats.unshipped_since_ms.store(0, Ordering::Relaxed);
    }
    Ok(())
}

/// What shipping up to an index found.
struct Shipping {
    /// Every entry up to the index is in storage (false: the log no longer holds the next).
    reached: bool,
    /// One of the entries was a load, whose content is not in the log: a base must follow.
    load_seen: bool,
}

/// Ships the applied entries after `state.index`, up to `upto`, in chunks.
async fn ship(
    store: &Store,
    storage: &Arc<Target>,
    stats: &ArchiverStats,
    state: &mut Shipped,
    upto: u64,
) -> anyhow::Result<Shipping> {
    let mut load_seen = false;
    while state.index < upto.min(store.applied_index()) {
        let records = store.applied_records(state.index + 1, upto, CHUNK_BYTES)?;
        if records.is_empty() {
            return Ok(Shipping {
                reached: false,
                load_seen,
            });
        }
        let entries: Vec<(Record, Option<Entry>)> = records
            .into_iter()
            .map(|r| {
                let entry = crate::raft::log::openraft::decode_entry_bytes::<Entry>(&r.data).ok();
                (r, entry)
            })
            .collect();
        load_seen |= entries.iter().any(|(_, e)| {
            matches!(
                e.as_ref().map(|e| &e.payload),
                Some(openraft::EntryPayload::Normal(
                    Command::Load(_) | Command::LoadSql(_)
                ))
            )
        });
        ship_chunk(store, storage, stats, state, &entries).await?;
    }
    Ok(Shipping {
        reached: true,
        load_seen,
    })
}

/// Fetches and reads the chunk `first..=last` of a history (through the file `scratch`).
pub(crate) async fn fetch_chunk(
    storage: &Arc<Target>,
    history: &str,
    (first, last): (u64, u64),
    scratch: &std::path::Path,
) -> anyhow::Result<Vec<chunk::ArchivedEntry>> {
    let file = TempFile::new(scratch.to_path_buf());
    storage
        .get_object(
            &folder(history, &names::chunk(first, last)),
            file.path(),
            chunk::MAX_CHUNK_BYTES,
        )
        .await?;
    let path = file.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        chunk::read(std::io::BufReader::new(std::fs::File::open(&path)?))
    })
    .await
    .context("the chunk reader")?
}

/// The archive's folder of a history.
pub(crate) fn folder(history: &str, rel: &str) -> String {
    format!("{history}/{rel}")
}

/// The highest index the history holds, its latest stamp, and its newest base.
async fn read_shipped(
    store: &Store,
    storage: &Arc<Target>,
    history: &str,
) -> anyhow::Result<Shipped> {
    let bases: Vec<u64> = storage
        .list_objects(&folder(history, "bases"))
        .await?
        .iter()
        .filter_map(|n| names::parse_base_meta(n))
        .collect();
    let last_chunk = storage
        .list_objects(&folder(history, "log"))
        .await?
        .iter()
        .filter_map(|n| names::parse_chunk(n))
        .max_by_key(|(_, last)| *last);
    let scratch = || {
        TempFile::new(store.data_dir().join(format!(
            "archive-{}.part",
            crate::temp_file::unique_suffix()
        )))
    };
    let newest_base = bases.iter().copied().max();
    let mut stamp = 0;
    let last_base = match newest_base {
        Some(index) => {
            let file = scratch();
            storage
                .get_object(
                    &folder(history, &names::base_meta(index)),
                    file.path(),
                    1 << 20,
                )
                .await?;
            let meta: BaseMeta = serde_json::from_slice(&std::fs::read(file.path())?)
                .with_context(|| format!("read {}", names::base_meta(index)))?;
            stamp = meta.stamp;
            Some((index, meta.made_ms))
        }
        None => None,
    };
    if let Some((first, last)) = last_chunk.filter(|(_, last)| Some(*last) > newest_base) {
        // The newest entries are in the last chunk: its latest stamp is the history's.
        let scratch = store.data_dir().join(format!(
            "archive-{}.part",
            crate::temp_file::unique_suffix()
        ));
        let entries = fetch_chunk(storage, history, (first, last), &scratch).await?;
        stamp = entries.iter().filter_map(|e| e.stamp).fold(stamp, i64::max);
    }
    Ok(Shipped {
        history: history.to_string(),
        index: newest_base.max(last_chunk.map(|c| c.1)).unwrap_or(0),
        stamp,
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
    state: &mut Shipped,
    entries: &[(Record, Option<Entry>)],
) -> anyhow::Result<()> {
    let (first, last) = (entries[0].0.index, entries[entries.len() - 1].0.index);
    let file = TempFile::new(store.data_dir().join(format!(
        "archive-{}.part",
        crate::temp_file::unique_suffix()
    )));
    let stamps: std::collections::HashMap<u64, i64> = entries
        .iter()
        .filter_map(|(r, e)| stamp_of(e.as_ref()).map(|s| (r.index, s)))
        .collect();
    let latest = stamps.values().copied().max();
    {
        let path = file.path().to_path_buf();
        let records: Vec<Record> = entries.iter().map(|(r, _)| r.clone()).collect();
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
        .put_object(
            &folder(&state.history, &names::chunk(first, last)),
            file.path(),
        )
        .await?;
    stats.chunks.fetch_add(1, Ordering::Relaxed);
    stats.entries.fetch_add(last - first + 1, Ordering::Relaxed);
    stats.shipped_index.store(last, Ordering::Relaxed);
    state.index = last;
    if let Some(latest) = latest {
        state.stamp = state.stamp.max(latest);
    }
    Ok(())
}

/// Takes a base backup of what is applied now and uploads it, then ships the entries applied
/// while it was taken (so the chunks have no gap up to it, and the base's stamp is the latest
/// of the entries it holds), then its metadata (a base exists once its metadata does), then
/// applies the retention.
async fn take_base(
    store: &Store,
    storage: &Arc<Target>,
    config: &ArchiveConfig,
    stats: &ArchiverStats,
    state: &mut Shipped,
    continuous: bool,
) -> anyhow::Result<()> {
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
    if lineage.as_deref() != Some(state.history.as_str()) {
        // A binary load started a new history meanwhile: the next tick takes its first base.
        backup.release();
        return Ok(());
    }
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
        .put_object(&folder(&state.history, &names::base_file(index)), gz.path())
        .await?;
    let made_ms = unix_ms();
    // After a base of the same history, the entries applied while this one was taken go out
    // first: the chunks stay continuous, and the stamp is the latest of every entry the base
    // holds. Otherwise (or when the log no longer has them), the time the base was taken
    // bounds their stamps (leaders stamp from their clock).
    let mut stamp = state.stamp;
    if continuous && state.index < index {
        let reached = ship(store, storage, stats, state, index).await?.reached;
        stamp = state.stamp;
        if !reached {
            stamp = stamp.max(made_ms);
        }
    } else if state.index < index {
        // The history's first base, or one after a gap: the entries it holds are not all in
        // storage, so the time it was taken bounds their stamps.
        stamp = stamp.max(made_ms);
    }
    let meta = BaseMeta {
        index,
        log_id,
        lineage,
        stamp,
        made_ms,
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
        .put_object(
            &folder(&state.history, &names::base_meta(index)),
            meta_file.path(),
        )
        .await?;
    stats.bases.fetch_add(1, Ordering::Relaxed);
    state.index = state.index.max(index);
    state.stamp = state.stamp.max(stamp);
    state.last_base = Some((index, made_ms));
    tracing::info!(
        "archive base at index {index} written to {} (history {})",
        storage.describe(),
        state.history
    );
    apply_retention(storage, config.keep_bases, stats, &state.history).await
}

/// Keeps the newest `keep` bases of the history and the chunks needed from the oldest of
/// them; once it has `keep` bases, other (older) histories go entirely.
async fn apply_retention(
    storage: &Arc<Target>,
    keep: usize,
    stats: &ArchiverStats,
    history: &str,
) -> anyhow::Result<()> {
    let mut bases: Vec<u64> = storage
        .list_objects(&folder(history, "bases"))
        .await?
        .iter()
        .filter_map(|n| names::parse_base_meta(n))
        .collect();
    bases.sort_unstable();
    if bases.len() < keep {
        return Ok(());
    }
    for other in storage.list_folders("").await? {
        if other != history && valid_history(&other) {
            for sub in ["bases", "log"] {
                for name in storage.list_objects(&folder(&other, sub)).await? {
                    storage
                        .delete_object(&folder(&other, &format!("{sub}/{name}")))
                        .await?;
                    stats.deleted_objects.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    if bases.len() == keep {
        return Ok(());
    }
    let oldest_kept = bases[bases.len() - keep];
    for &index in &bases[..bases.len() - keep] {
        // The metadata first: without it the base is not one.
        storage
            .delete_object(&folder(history, &names::base_meta(index)))
            .await?;
        storage
            .delete_object(&folder(history, &names::base_file(index)))
            .await?;
        stats.deleted_objects.fetch_add(2, Ordering::Relaxed);
    }
    for name in storage.list_objects(&folder(history, "log")).await? {
        if let Some((_, last)) = names::parse_chunk(&name) {
            if last <= oldest_kept {
                storage
                    .delete_object(&folder(history, &format!("log/{name}")))
                    .await?;
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
