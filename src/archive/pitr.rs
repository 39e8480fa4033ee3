//! Point-in-time recovery from a continuous archive (see the module above): the database as
//! it was after log entry N, or after the last entry the leader stamped at or before a time.
//!
//! The nearest base at or before the point is downloaded and decompressed into `OUT.part`,
//! then the archived entries after it are applied in order by the state machine's own apply
//! ([`crate::store::state_machine::replay_entries`]: the same transaction, clock, seed and
//! budget a node used), so the result is the cluster's database at that entry, byte for byte
//! in content. The result is checked against the digest recorded with a base at the same
//! index when there is one (a mismatch is an error and leaves no file), checkpointed into a
//! single file, fsynced and renamed to `OUT`; it can be booted (`/boot`) or loaded.
//!
//! Memory: one chunk (at most 16 MiB of entries) at a time.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use raftlite_ffi::{Connection, OpenFlags};

use super::{names, BaseMeta};
use crate::auto_backup::storage::Target;
use crate::db::STATE_TABLE;
use crate::store::types::Entry;

/// Where to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// After the entry at this index.
    Index(u64),
    /// After the last entry stamped at or before this time (Unix ms).
    Time(i64),
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    /// The history restored from (the database's lineage; see the archive's module).
    pub history: String,
    pub base_index: u64,
    pub index: u64,
    pub entries_applied: u64,
    pub digest: String,
    /// The index of the recorded digest the result matched, if one was recorded there.
    pub verified_at: Option<u64>,
    /// A `--to-time` restore that ran out of archive before the time: the result is the
    /// newest state the archive holds, and writes after it (not yet archived when the
    /// cluster was lost) are not in it.
    pub end_of_archive: bool,
}

/// The content digest of a database file (`GET /status?digest`'s).
pub fn digest_of(path: &Path) -> anyhow::Result<String> {
    let conn = Connection::open(path, OpenFlags::READ_ONLY)
        .with_context(|| format!("open {}", path.display()))?;
    conn.execute_batch("BEGIN")?;
    let d = crate::db::digest::content_digest(&conn, STATE_TABLE)
        .with_context(|| format!("digest {}", path.display()))?;
    conn.execute_batch("COMMIT")?;
    Ok(d.digest)
}

/// Rebuilds the database at `point` from the archive in `storage` into `out` (which must not
/// exist), using `out`'s directory for its work files. `extensions`: the SQLite extensions
/// the cluster loaded (`-extensions-path`), which its entries may call; a base that records
/// another set is refused.
pub async fn restore(
    storage: Arc<Target>,
    point: RestorePoint,
    history: Option<String>,
    out: &Path,
    extensions: crate::extensions::Extensions,
) -> anyhow::Result<Restored> {
    let work = |suffix: &str| {
        let mut name = out.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        out.with_file_name(name)
    };
    for path in [out.to_path_buf(), work(".part")] {
        if path.exists() {
            bail!("{} exists; choose a new file", path.display());
        }
    }
    let part = crate::temp_file::TempFile::new(work(".part"));
    let (history, metas) = match history {
        Some(h) if super::valid_history(&h) => {
            let metas = base_metas(&storage, &h, &work(".meta")).await?;
            (h, metas)
        }
        Some(h) => bail!("{h:?} is not a history name"),
        None => history_for(&storage, point, &work(".meta")).await?,
    };
    let base = choose_base(&storage, &metas, point).await?;
    if base.extensions != extensions.digest {
        bail!(
            "the cluster loaded SQLite extensions (digest {:?}) that this restore does not \
             (digest {:?}): give --extensions-path as the nodes had -extensions-path, or its \
             writes would not replay as they ran",
            base.extensions,
            extensions.digest
        );
    }
    let foreign_keys = base.foreign_keys;
    {
        let gz = crate::temp_file::TempFile::new(work(".base.gz"));
        storage
            .get_object(
                &super::folder(&history, &names::base_file(base.index)),
                gz.path(),
                u64::MAX,
            )
            .await?;
        let (from, to) = (gz.path().to_path_buf(), part.path().to_path_buf());
        tokio::task::spawn_blocking(move || gunzip(&from, &to))
            .await
            .context("the base reader")??;
    }
    let mut conn = crate::db::settings::open_writer(
        part.path(),
        &crate::db::DbSettings {
            foreign_keys: base.foreign_keys,
            extensions: extensions.files.into(),
            ..Default::default()
        },
    )
    .context("open the base")?;
    // The applied state the replay carries on (a node keeps it in memory beside the table).
    let shared = Arc::new(crate::store::SharedState::default());
    // A full disk ends the restore with its error: a node waits for room, a tool must not.
    shared.stopping.store(true, Ordering::Relaxed);
    // A backup holds no state table: the base's metadata gives what it would say.
    let applied = crate::store::applied_state::AppliedState {
        log_id: Some(base.log_id),
        membership: Default::default(),
        lineage: base.lineage.clone(),
    };
    // A base made from a loaded file holds whatever state table the file had: the base's
    // metadata says what it should, as the install on the nodes rewrote it.
    conn.execute_batch(&format!("DROP TABLE IF EXISTS \"{STATE_TABLE}\""))
        .context("drop the loaded file's state table")?;
    crate::store::applied_state::ensure_table(&conn).context("create the state table")?;
    crate::store::applied_state::write(&conn, &base.log_id, None, base.lineage.as_deref())
        .context("record the base's log id")?;
    shared.applied_index.store(base.index, Ordering::Release);
    *shared.applied.lock() = applied;

    let mut chunks: Vec<(u64, u64)> = storage
        .list_objects(&super::folder(&history, "log"))
        .await?
        .iter()
        .filter_map(|n| names::parse_chunk(n))
        .collect();
    chunks.sort_unstable();
    let mut next = base.index + 1;
    let mut applied_count = 0u64;
    let mut end_of_archive = false;
    'chunks: loop {
        if let RestorePoint::Index(n) = point {
            if next > n {
                break;
            }
        }
        // Any chunk that holds `next`; the longest reach first (overlaps are the same entries).
        let Some(&(first, last)) = chunks
            .iter()
            .filter(|(f, l)| *f <= next && next <= *l)
            .max_by_key(|(_, l)| *l)
        else {
            // Anything archived past `next` means entries are missing here, not that the
            // archive ends: a time restore must not stop short silently.
            let later = chunks.iter().any(|c| c.0 > next) || metas.iter().any(|m| m.index >= next);
            match point {
                RestorePoint::Index(n) => bail!(
                    "the archive has no entry {next} (needed to reach {n}); it holds up to {}",
                    chunks.iter().map(|c| c.1).max().unwrap_or(base.index)
                ),
                RestorePoint::Time(_) if later => bail!(
                    "the archive has no entry {next}, but holds later ones: a gap; restore to \
                     an index or time before it, or from a later base"
                ),
                RestorePoint::Time(_) => {
                    end_of_archive = true;
                    break;
                }
            }
        };
        let entries =
            super::fetch_chunk(&storage, &history, (first, last), &work(".chunk")).await?;
        let mut batch: Vec<Entry> = Vec::new();
        let mut taken = 0u64;
        let mut stop = false;
        let from = next;
        for e in entries.into_iter().filter(|e| e.index >= from) {
            match point {
                RestorePoint::Index(n) if e.index > n => {
                    stop = true;
                    break;
                }
                RestorePoint::Time(t) if e.stamp.is_some_and(|s| s > t) => {
                    stop = true;
                    break;
                }
                _ => {}
            }
            if let RestorePoint::Time(_) = point {
                if is_file_load(&e) {
                    // A load of a database file ends this history; it has no clock, and the
                    // next history starts at it, stamped when the leader applied it.
                    stop = true;
                    break;
                }
            }
            if e.index != next {
                bail!(
                    "chunk {first}-{last} does not hold entry {next} (it has {})",
                    e.index
                );
            }
            if e.kind != crate::raft::log::openraft::ENTRY_KIND_BINCODE {
                bail!("entry {}: unknown kind {}", e.index, e.kind);
            }
            let entry: Entry = crate::raft::log::openraft::decode_entry_bytes(&e.payload)
                .with_context(|| format!("decode entry {}", e.index))?;
            if entry.log_id.index != e.index {
                bail!(
                    "chunk {first}-{last}: the entry at {} says it is {}",
                    e.index,
                    entry.log_id.index
                );
            }
            next = e.index + 1;
            taken += 1;
            if let Some(content) = crate::store::state_machine::sql_load_content(&entry)? {
                // The entries before it, then the load from its archived script.
                conn = replay(conn, &shared, std::mem::take(&mut batch)).await?;
                let script = crate::temp_file::TempFile::new(work(".load"));
                fetch_script(
                    &storage,
                    &history,
                    e.index,
                    content,
                    script.path(),
                    &work(".zst"),
                )
                .await?;
                let (shared, path) = (Arc::clone(&shared), script.path().to_path_buf());
                conn = tokio::task::spawn_blocking(move || {
                    crate::store::state_machine::replay_sql_load(
                        &mut conn,
                        &shared,
                        &entry,
                        &path,
                        foreign_keys,
                    )
                    .map(|()| conn)
                })
                .await
                .context("the load's replay")??;
                continue;
            }
            batch.push(entry);
        }
        if taken == 0 && !stop {
            bail!("chunk {first}-{last} holds no entry {next}");
        }
        applied_count += taken;
        conn = replay(conn, &shared, batch).await?;
        if stop {
            break 'chunks;
        }
    }
    let reached = next - 1;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE")
        .context("checkpoint the result")?;
    drop(conn);
    let digest = digest_of(part.path())?;
    let verified_at = match metas.iter().find(|m| m.index == reached) {
        Some(m) if m.digest != digest => bail!(
            "the result at index {reached} has digest {digest}, but the archive recorded {} \
             there; no file written",
            m.digest
        ),
        Some(m) => Some(m.index),
        None => None,
    };
    std::fs::File::open(part.path())
        .and_then(|f| f.sync_all())
        .context("fsync the result")?;
    let mut part = part;
    part.rename_to(out)
        .with_context(|| format!("rename the result to {}", out.display()))?;
    part.persist();
    Ok(Restored {
        history,
        end_of_archive,
        base_index: base.index,
        index: reached,
        entries_applied: applied_count,
        digest,
        verified_at,
    })
}

/// Whether an archived entry is the load of a database file.
fn is_file_load(e: &super::chunk::ArchivedEntry) -> bool {
    crate::raft::log::openraft::decode_entry_bytes::<Entry>(&e.payload)
        .is_ok_and(|entry| crate::store::state_machine::sql_load_content(&entry).is_err())
}

/// Applies `batch` (no load among them) on a blocking thread.
async fn replay(
    mut conn: Connection,
    shared: &Arc<crate::store::SharedState>,
    batch: Vec<Entry>,
) -> anyhow::Result<Connection> {
    if batch.is_empty() {
        return Ok(conn);
    }
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        crate::store::state_machine::replay_entries(&mut conn, &shared, batch).map(|()| conn)
    })
    .await
    .context("the replay")?
}

/// Downloads the archived script of the SQL load entry at `index` into `to`, checked against
/// the entry's size and CRC-32C (`zst`: the compressed download's scratch file).
async fn fetch_script(
    storage: &Arc<Target>,
    history: &str,
    index: u64,
    (size, crc32c): (u64, u32),
    to: &Path,
    zst: &Path,
) -> anyhow::Result<()> {
    let compressed = crate::temp_file::TempFile::new(zst.to_path_buf());
    storage
        .get_object(
            &super::folder(history, &names::load(index)),
            compressed.path(),
            // zstd never grows its input by more than a little.
            size.saturating_add(size / 64).saturating_add(1 << 20),
        )
        .await
        .with_context(|| {
            format!(
                "the archive lacks the SQL script of the load entry {index} (it was applied \
                 before its leader archived; restore a point before it, or from a base after it)"
            )
        })?;
    let (from, to) = (compressed.path().to_path_buf(), to.to_path_buf());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let input = std::fs::File::open(&from)?;
        let mut out =
            std::fs::File::create_new(&to).with_context(|| format!("create {}", to.display()))?;
        let mut reader = crc_reader(zstd::Decoder::new(input)?);
        // One byte past the size tells a longer script from the right one.
        let limit = size.saturating_add(1);
        let written = std::io::copy(&mut std::io::Read::take(&mut reader, limit), &mut out)
            .context("decompress the load's script")?;
        if written != size || reader.crc != crc32c {
            bail!(
                "the archived script of load entry {index} is {written} bytes with CRC-32C \
                 {:08x}; the entry says {size} bytes, {crc32c:08x}",
                reader.crc
            );
        }
        Ok(())
    })
    .await
    .context("the load's reader")?
}

/// A reader that computes the CRC-32C of what it reads.
struct CrcReader<R> {
    inner: R,
    crc: u32,
}

fn crc_reader<R>(inner: R) -> CrcReader<R> {
    CrcReader { inner, crc: 0 }
}

impl<R: std::io::Read> std::io::Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }
}

/// The history to restore `point` from, and its bases: of those with a base at or before
/// the point (and, for an index, entries up to it), the one whose newest such base is the
/// latest (by index, or by stamp for a time). So a point before a load of a database file
/// comes from the history the load ended, a point after it from the one it started, and of
/// two clusters sharing a storage, the one that reached the index. Ties go to the base taken
/// last.
async fn history_for(
    storage: &Arc<Target>,
    point: RestorePoint,
    scratch: &Path,
) -> anyhow::Result<(String, Vec<BaseMeta>)> {
    // ((reaches the index, the base's index or stamp, when it was made), history, bases)
    type Candidate = ((bool, i64, i64), String, Vec<BaseMeta>);
    let mut best: Option<Candidate> = None;
    let mut oldest: Option<BaseMeta> = None;
    for history in storage.list_folders("").await? {
        if !super::valid_history(&history) {
            continue;
        }
        let metas = base_metas(storage, &history, scratch).await?;
        if let Some(first) = metas.first() {
            if oldest.as_ref().is_none_or(|o| first.made_ms < o.made_ms) {
                oldest = Some(first.clone());
            }
        }
        let Some(base) = metas.iter().rev().find(|m| at_or_before(m, point)) else {
            continue;
        };
        let key = match point {
            RestorePoint::Index(n) => {
                let reach = storage
                    .list_objects(&super::folder(&history, "log"))
                    .await?
                    .iter()
                    .filter_map(|c| names::parse_chunk(c))
                    .map(|(_, last)| last)
                    .fold(base.index, u64::max);
                (reach >= n, base.index as i64, base.made_ms)
            }
            RestorePoint::Time(_) => (true, base.stamp, base.made_ms),
        };
        if best.as_ref().is_none_or(|(k, _, _)| key > *k) {
            best = Some((key, history, metas));
        }
    }
    match (best, oldest) {
        (Some((_, history, metas)), _) => Ok((history, metas)),
        (None, Some(oldest)) => bail!(
            "the oldest base the archive keeps is at index {} (stamped {} ms); nothing older \
             can be restored",
            oldest.index,
            oldest.stamp
        ),
        (None, None) => bail!("{} holds no archive base", storage.describe()),
    }
}

fn at_or_before(meta: &BaseMeta, point: RestorePoint) -> bool {
    match point {
        RestorePoint::Index(n) => meta.index <= n,
        RestorePoint::Time(t) => meta.stamp <= t,
    }
}

/// Every base's metadata in a history, oldest first (small objects: each is read).
async fn base_metas(
    storage: &Arc<Target>,
    history: &str,
    scratch: &Path,
) -> anyhow::Result<Vec<BaseMeta>> {
    let mut indexes: Vec<u64> = storage
        .list_objects(&super::folder(history, "bases"))
        .await?
        .iter()
        .filter_map(|n| names::parse_base_meta(n))
        .collect();
    indexes.sort_unstable();
    let mut metas = Vec::with_capacity(indexes.len());
    for index in indexes {
        let file = crate::temp_file::TempFile::new(scratch.to_path_buf());
        storage
            .get_object(
                &super::folder(history, &names::base_meta(index)),
                file.path(),
                1 << 20,
            )
            .await?;
        let meta: BaseMeta = serde_json::from_slice(&std::fs::read(file.path())?)
            .with_context(|| format!("read {}", names::base_meta(index)))?;
        if meta.index != index {
            bail!("{} says index {}", names::base_meta(index), meta.index);
        }
        metas.push(meta);
    }
    Ok(metas)
}

/// The newest base at or before `point`.
async fn choose_base(
    storage: &Arc<Target>,
    metas: &[BaseMeta],
    point: RestorePoint,
) -> anyhow::Result<BaseMeta> {
    let found = metas.iter().rev().find(|m| at_or_before(m, point));
    match found {
        Some(m) => Ok(m.clone()),
        None if metas.is_empty() => bail!("{} holds no archive base", storage.describe()),
        None => bail!(
            "the oldest base the archive keeps is at index {} (stamped {} ms); nothing older \
             can be restored",
            metas[0].index,
            metas[0].stamp
        ),
    }
}

fn gunzip(from: &Path, to: &Path) -> anyhow::Result<()> {
    let input = std::fs::File::open(from).with_context(|| format!("open {}", from.display()))?;
    let mut out =
        std::fs::File::create_new(to).with_context(|| format!("create {}", to.display()))?;
    std::io::copy(
        &mut flate2::read::GzDecoder::new(std::io::BufReader::new(input)),
        &mut out,
    )
    .context("decompress the base")?;
    Ok(())
}
