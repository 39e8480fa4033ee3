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
//! - `<history>/log/<first>-<last>.rlog.zst`: the entries `first..=last` ([`chunk`]);
//! - `<history>/loads/<index>.sql.zst`: the SQL script of the load entry at `<index>`,
//!   which the log only references, uploaded before the chunk that holds the entry.
//!
//! Invariants and how they are kept:
//! - Only applied (so committed) entries are shipped, and a committed entry is the same on
//!   every node, so two leaders that overlap for a moment write the same entries: the
//!   restore takes any chunk that covers the index it needs.
//! - A new leader continues from what the storage holds (the highest shipped index); when its
//!   log no longer has the next entry (purged after a snapshot), it takes a base first.
//! - A load (`/db/load`, `/boot`) is not a log entry that carries its content. While this
//!   node leads and archives, applying a load keeps its content for the archiver (a hard
//!   link; `store::restore::files::keep_load_for_archive`): a SQL script goes to
//!   `loads/<index>` before the chunk that holds its entry, and a replay runs it as the
//!   nodes did; a database file starts a new history, whose first base it is, at the load's
//!   index. A load whose content this node did not keep (it was applied before this node led)
//!   is followed by a base of what is applied then: the points between the load and that
//!   base cannot be restored (documented in `docs/backup.md`).
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
use crate::db::restore_file::LoadKind;
use crate::raft::log::Record;
use crate::store::restore::files::{self, ArchivedLoad};
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
    /// The digest of the SQLite extensions the leader loaded (`crate::extensions`; "" for
    /// none): a replay must load the same, or its writes would fail where the cluster's
    /// succeeded.
    #[serde(default)]
    pub extensions: String,
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
    /// The SQL script of the load entry at `index`.
    pub fn load(index: u64) -> String {
        format!("loads/{index:020}.sql.zst")
    }
    /// The entry index of a load's object name (`<index>.sql.zst`).
    pub fn parse_load(name: &str) -> Option<u64> {
        parse_index(name.strip_suffix(".sql.zst")?)
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
        // However the task ends (a stop, an abort, a panic), loads are no longer kept and
        // the log no longer held for it.
        let _release = ReleaseOnDrop(Arc::clone(&store));
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
                // The leader ships the loads, so none is kept here.
                shipped = None;
                store.set_archive_active(false);
                store.hold_log_for_archive(0);
                files::forget_archived_loads(store.data_dir());
                continue;
            }
            // The log keeps what the archive lacks, through a failed tick too (up to the
            // configured size): an outage loses nothing while it lasts less.
            store.hold_log_for_archive(config.max_log_hold_bytes);
            match tick(&store, &storage, &config, &stats, &mut shipped).await {
                // Loads are kept only while they can be shipped: during an outage their
                // content would pile up on the disk (the archive takes a base after them).
                Ok(()) => store.set_archive_active(true),
                Err(e) => {
                    store.set_archive_active(false);
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("archiving to {} failed: {e:#}", storage.describe());
                    shipped = None;
                }
            }
        }
    });
    Archiver { task, wake }
}

/// Releases what the archiver asked of the store when its task ends.
struct ReleaseOnDrop(Arc<Store>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.set_archive_active(false);
        self.0.hold_log_for_archive(0);
    }
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
    // The applied index before the kept loads are listed: those up to it are complete.
    let applied = store.applied_index();
    let kept = files::archived_loads(store.data_dir(), applied);
    // A binary load starts a new lineage: its history starts with a base of its own.
    let starts_history = |history: &str| {
        kept.iter()
            .find(|l| l.kind == LoadKind::Sqlite && l.lineage.as_deref() == Some(history))
    };
    follow_file_loads(store, storage, config, stats, &kept, &history, shipped).await?;
    shipped.take_if(|s| s.history != history);
    if shipped.is_none() {
        *shipped = Some(read_shipped(store, storage, &history).await?);
    }
    let state = shipped.as_mut().expect("just read");
    // Kept loads another history or an earlier leader has dealt with are not needed.
    for load in &kept {
        let stale = match load.kind {
            LoadKind::Sqlite => load.lineage.as_deref() != Some(history.as_str()),
            LoadKind::Sql => load.log_id.index <= state.index,
        };
        if stale || (load.kind == LoadKind::Sqlite && state.last_base.is_some()) {
            files::forget_archived_load(store.data_dir(), load.log_id.index);
        }
    }
    if applied > state.index && stats.unshipped_since_ms.load(Ordering::Relaxed) == 0 {
        stats.unshipped_since_ms.store(unix_ms(), Ordering::Relaxed);
    }
    let gap = applied > state.index
        && store
            .log_first_index()
            .is_none_or(|first| first > state.index + 1);
    if state.last_base.is_none() {
        // A history starts with a base (entries before it could restore nothing): the
        // database file a load installed, kept at its index, or else a backup of now.
        match starts_history(&history) {
            Some(load) => base_from_load(store, storage, config, stats, state, load).await?,
            None => take_base(store, storage, config, stats, state, false).await?,
        }
    } else if gap {
        // The log no longer holds the next entry: continue from a new base.
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
    store.note_archived(state.index);
    if state.index >= store.applied_index() {
        stats.unshipped_since_ms.store(0, Ordering::Relaxed);
    }
    Ok(())
}

/// What shipping up to an index found.
struct Shipping {
    /// Every entry up to the index is in storage (false: the log no longer holds the next).
    reached: bool,
    /// One of the entries was a load whose content was not kept: a base must follow.
    load_seen: bool,
}

/// Ships the applied entries after `state.index`, up to `upto`, in chunks, each after the
/// SQL scripts of the loads it holds, until it has caught up with the apply.
async fn ship(
    store: &Store,
    storage: &Arc<Target>,
    stats: &ArchiverStats,
    state: &mut Shipped,
    upto: u64,
) -> anyhow::Result<Shipping> {
    let mut load_seen = false;
    while state.index < upto.min(store.applied_index()) {
        // The kept loads are listed against the applied index read first: each chunk holds
        // entries up to it only, so a load among them is kept whole or not at all.
        let applied = store.applied_index();
        let kept = files::archived_loads(store.data_dir(), applied);
        let records = store.applied_records(state.index + 1, upto.min(applied), CHUNK_BYTES)?;
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
        let mut scripts = Vec::new();
        for (record, entry) in &entries {
            let is_load = matches!(
                entry.as_ref().map(|e| &e.payload),
                Some(openraft::EntryPayload::Normal(
                    Command::Load(_) | Command::LoadSql(_)
                ))
            );
            match kept.iter().find(|l| l.log_id.index == record.index) {
                Some(load) if load.kind == LoadKind::Sql => scripts.push(load.log_id.index),
                // A database file: the next history's first base.
                Some(_) => {}
                None => load_seen |= is_load,
            }
        }
        for &index in &scripts {
            ship_script(store, storage, state, index).await?;
        }
        ship_chunk(store, storage, stats, state, &entries).await?;
        for index in scripts {
            files::forget_archived_load(store.data_dir(), index);
        }
    }
    Ok(Shipping {
        reached: true,
        load_seen,
    })
}

/// Uploads the kept SQL script of the load entry at `index`, compressed.
async fn ship_script(
    store: &Store,
    storage: &Arc<Target>,
    state: &Shipped,
    index: u64,
) -> anyhow::Result<()> {
    let zst = scratch_file(store);
    let (from, to) = (
        files::archived_load_content(store.data_dir(), index),
        zst.path().to_path_buf(),
    );
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let _background = crate::db::priority::background();
        let input =
            std::fs::File::open(&from).with_context(|| format!("open {}", from.display()))?;
        let out =
            std::fs::File::create_new(&to).with_context(|| format!("create {}", to.display()))?;
        let mut enc = zstd::Encoder::new(std::io::BufWriter::new(out), 3)?;
        std::io::copy(&mut std::io::BufReader::new(input), &mut enc)?;
        std::io::Write::flush(&mut enc.finish()?)?;
        Ok(())
    })
    .await
    .context("the load's compressor")??;
    storage
        .put_object(&folder(&state.history, &names::load(index)), zst.path())
        .await?;
    tracing::info!(index, "archived the SQL script of the load entry");
    Ok(())
}

/// A scratch file of the archiver in the data directory (startup removes what a crash left).
fn scratch_file(store: &Store) -> TempFile {
    TempFile::new(store.data_dir().join(format!(
        "archive-{}.part",
        crate::temp_file::unique_suffix()
    )))
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
    let newest_base = bases.iter().copied().max();
    let mut stamp = 0;
    let last_base = match newest_base {
        Some(index) => {
            let file = scratch_file(store);
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
        let scratch = scratch_file(store);
        let entries = fetch_chunk(storage, history, (first, last), scratch.path()).await?;
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
    let file = scratch_file(store);
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
    store.note_archived(last);
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
    let (gz, digest) = compress_base(store, copy).await?;
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
        extensions: store.database().settings().extensions_digest.clone(),
    };
    put_base_meta(store, storage, config, stats, state, meta).await
}

/// Follows the database files loaded since the last tick, oldest first. Each load ends the
/// history before it, which gets its entries up to the load, and starts one whose first
/// base is the file. A history that a later load in the same tick ended already (several
/// file loads within `max_delay`) gets that base here, and its entries at the next load's
/// turn; `current`'s base is left to the rest of the tick. A failed shipment fails the tick
/// and the next one tries again: a load stays kept until the history it starts has a base.
async fn follow_file_loads(
    store: &Store,
    storage: &Arc<Target>,
    config: &ArchiveConfig,
    stats: &ArchiverStats,
    kept: &[ArchivedLoad],
    current: &str,
    shipped: &mut Option<Shipped>,
) -> anyhow::Result<()> {
    for load in kept.iter().filter(|l| l.kind == LoadKind::Sqlite) {
        let Some(started) = load.lineage.as_deref().filter(|h| valid_history(h)) else {
            continue;
        };
        let ended = load
            .ends_lineage
            .as_deref()
            .filter(|old| *old != started && valid_history(old));
        if let Some(ended) = ended {
            let mut old = match shipped.take_if(|s| s.history == ended) {
                Some(old) => old,
                None => read_shipped(store, storage, ended).await?,
            };
            let end = load.log_id.index;
            // A history without a base was never archived: nothing to continue.
            if old.last_base.is_some() && old.index < end {
                ship(store, storage, stats, &mut old, end)
                    .await
                    .with_context(|| format!("archive the end of history {ended}"))?;
            }
        }
        if started != current {
            let mut state = read_shipped(store, storage, started).await?;
            if state.last_base.is_none() {
                base_from_load(store, storage, config, stats, &mut state, load).await?;
            }
            *shipped = Some(state);
        }
    }
    Ok(())
}

/// The first base of the history a load of a database file started: the file, kept at the
/// load's apply, is the database at the load's index (less the state table, which the
/// metadata stands for).
async fn base_from_load(
    store: &Store,
    storage: &Arc<Target>,
    config: &ArchiveConfig,
    stats: &ArchiverStats,
    state: &mut Shipped,
    load: &ArchivedLoad,
) -> anyhow::Result<()> {
    let index = load.log_id.index;
    let content = files::archived_load_content(store.data_dir(), index);
    let (gz, digest) = compress_base(store, content).await?;
    storage
        .put_object(&folder(&state.history, &names::base_file(index)), gz.path())
        .await?;
    let meta = BaseMeta {
        index,
        log_id: load.log_id,
        lineage: load.lineage.clone(),
        // The load carries no leader's clock: the leader's when it applied the load.
        stamp: state.stamp.max(load.kept_ms),
        made_ms: unix_ms(),
        digest,
        foreign_keys: store.database().settings().foreign_keys,
        extensions: store.database().settings().extensions_digest.clone(),
    };
    put_base_meta(store, storage, config, stats, state, meta).await?;
    files::forget_archived_load(store.data_dir(), index);
    Ok(())
}

/// The gzip of a database file for a base, and the file's content digest, in one pass each
/// off the async threads.
async fn compress_base(store: &Store, source: PathBuf) -> anyhow::Result<(TempFile, String)> {
    let gz = scratch_file(store);
    let gz_path = gz.path().to_path_buf();
    let digest = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let _background = crate::db::priority::background();
        let digest = pitr::digest_of(&source)?;
        let out = std::fs::File::create_new(&gz_path)
            .with_context(|| format!("create {}", gz_path.display()))?;
        let mut gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(out),
            flate2::Compression::fast(),
        );
        std::io::copy(&mut std::fs::File::open(&source)?, &mut gz)?;
        gz.finish()?;
        Ok(digest)
    })
    .await
    .context("the base writer")??;
    Ok((gz, digest))
}

/// Writes a base's metadata (after its file: a base exists once its metadata does), then
/// applies the retention.
async fn put_base_meta(
    store: &Store,
    storage: &Arc<Target>,
    config: &ArchiveConfig,
    stats: &ArchiverStats,
    state: &mut Shipped,
    meta: BaseMeta,
) -> anyhow::Result<()> {
    let meta_file = scratch_file(store);
    std::fs::write(meta_file.path(), serde_json::to_vec(&meta)?)
        .with_context(|| format!("write {}", meta_file.path().display()))?;
    storage
        .put_object(
            &folder(&state.history, &names::base_meta(meta.index)),
            meta_file.path(),
        )
        .await?;
    stats.bases.fetch_add(1, Ordering::Relaxed);
    state.index = state.index.max(meta.index);
    state.stamp = state.stamp.max(meta.stamp);
    state.last_base = Some((meta.index, meta.made_ms));
    store.note_archived(state.index);
    tracing::info!(
        "archive base at index {} written to {} (history {})",
        meta.index,
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
            for sub in ["bases", "log", "loads"] {
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
    // What a replay from the oldest base kept needs starts after it.
    for sub in ["log", "loads"] {
        for name in storage.list_objects(&folder(history, sub)).await? {
            let last = match sub {
                "log" => names::parse_chunk(&name).map(|(_, last)| last),
                _ => names::parse_load(&name),
            };
            if last.is_some_and(|last| last <= oldest_kept) {
                storage
                    .delete_object(&folder(history, &format!("{sub}/{name}")))
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
