//! The backup engine: every consistent copy of a node's database that leaves it, as a SQLite
//! file or as SQL text, and the copies Raft sends as snapshots. HTTP (`GET /db/backup`), the
//! console's backup jobs and the cluster's snapshot sender all call [`Backups`]; they keep only
//! their parameters, forwarding, encoding and answers.
//!
//! - **Binary** ([`Backups::binary`]): the pages are copied inside one read transaction into
//!   `backup-*.db` in the backup directory (`-backup-tmp-dir`), the state table read (the exact
//!   Raft index the copy reflects) and dropped, `VACUUM` run if asked. A copy is shared by every
//!   backup that arrives while it is made or streamed, provided it reflects at least the index
//!   applied when that backup was asked for: sixteen clients of an idle database get one copy
//!   (`copies.rs`). The file is streamed in 1 MiB chunks. It is in DELETE journal mode.
//! - **SQL** ([`Backups::sql`]): the dumper streams one read snapshot through a bounded channel
//!   (`sql.rs`), capped by [`DumpCaps`].
//! - **Snapshot copies** ([`Backups::snapshot_copy`]): the live database copied to a file to
//!   send to a follower, under the same reserve and priority as a binary backup.
//!
//! Invariants:
//! - Every copy runs at background CPU priority (`db::priority`): writes and queries go first.
//! - No copy eats into the disk reserve (`-disk-reserve`): before it starts the target file
//!   system must have room for the database plus the reserve, and after every step of the copy
//!   the free space is checked again; the copy stops (and its file is removed) as soon as it
//!   would go below. The reserve keeps room for the Raft log and the WAL: a full disk at apply
//!   time stops a node.
//! - At most `max_copies` binary copies are made at once; a backup over the limit gets
//!   [`BackupError::TooManyCopies`] at once rather than queueing (snapshot copies are Raft's
//!   own and never refused for it).
//! - A copy's file lives exactly as long as the copy task or any stream of it (its
//!   [`crate::temp_file::TempFile`]): finished, failed or abandoned downloads all delete it.
//!   Start-up removes leftovers of a crash (names start with [`TEMP_PREFIX`]).
//! - The state table is never part of a backup (neither format).
//! - Errors before the first byte are a [`BackupError`]; errors after it end the stream with an
//!   `Err`, so the client sees a truncated transfer, never a clean short file.

mod copies;
mod one_pass;
mod sql;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use raftlite_ffi::Connection;

use crate::db::backup::{copy_to_file, CopyError, PAGES_PER_STEP};
use crate::db::disk::{check_room, free_bytes};
use crate::db::Database;

pub use copies::{CopyInfo, TEMP_PREFIX};

/// Where copies go, how much disk they may use, and how long a SQL dump may hold its snapshot.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Directory of the binary copies (`-backup-tmp-dir`; the data directory by default).
    pub tmp_dir: PathBuf,
    /// Bytes that must stay free on the file system a copy is written to (`-disk-reserve`).
    pub disk_reserve: u64,
    /// Binary copies that may be in progress at once (`-max-backup-copies`).
    pub max_copies: usize,
    pub dump_caps: DumpCaps,
    /// How long a finished copy is kept after its last use (`-backup-keep`; zero: not kept).
    pub keep_for: std::time::Duration,
    /// Most bytes of finished copies kept at once (`-backup-keep-size`).
    pub keep_bytes: u64,
}

impl BackupOptions {
    /// Copies in `tmp_dir`, no reserve, the default limits (tests and tools).
    pub fn in_dir(tmp_dir: PathBuf) -> BackupOptions {
        BackupOptions {
            tmp_dir,
            disk_reserve: 0,
            max_copies: 16,
            dump_caps: DumpCaps::default(),
            keep_for: std::time::Duration::ZERO,
            keep_bytes: 0,
        }
    }
}

/// Caps on a SQL dump's read snapshot, which pins the WAL while a slow client reads: it may
/// neither let the WAL grow by more than `wal_limit` bytes (`-dump-wal-limit`) nor wait
/// `stall_timeout` for its client to read (`-dump-stall-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct DumpCaps {
    pub wal_limit: Option<u64>,
    pub stall_timeout: std::time::Duration,
}

impl Default for DumpCaps {
    fn default() -> Self {
        DumpCaps {
            wal_limit: Some(1 << 30),
            stall_timeout: std::time::Duration::from_secs(120),
        }
    }
}

/// Why a backup could not start. Each maps to one HTTP status (`http::backup_routes`).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// 503: `max_copies` copies are already being made.
    #[error("too many backups in progress ({0} copies); retry later")]
    TooManyCopies(usize),
    /// 507: the copy would not fit, or stopped at the reserve.
    #[error("{0}")]
    InsufficientStorage(String),
    /// 500: anything else (the copy or the dump failed, the database is closed).
    #[error("{0}")]
    Failed(String),
}

/// A finished binary copy, held: its file lives at least as long as this value or a stream of
/// it (and then as long as [`copies::Retention`] keeps it).
#[derive(Clone)]
pub struct BinaryBackup {
    copy: Arc<copies::SharedCopy>,
    pub info: CopyInfo,
    retention: Arc<copies::Retention>,
}

impl BinaryBackup {
    /// Whether the copy is of a vacuumed database.
    pub fn vacuum(&self) -> bool {
        self.copy.vacuum()
    }

    /// The file's SHA-256 if a complete read has computed it.
    pub fn known_digest(&self) -> Option<[u8; 32]> {
        self.copy.digest()
    }

    /// The file's SHA-256, reading the file (at background priority) if no complete stream
    /// has computed it yet.
    pub async fn digest(&self) -> Result<[u8; 32], BackupError> {
        if let Some(d) = self.copy.digest() {
            return Ok(d);
        }
        // A one-pass copy is handed out while its file is still being written.
        self.copy
            .finished_info()
            .await
            .map_err(|e| BackupError::Failed(e.to_string()))?;
        let path = self.copy.path().to_path_buf();
        let digest = tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 32]> {
            use sha2::Digest as _;
            let _background = crate::db::priority::background();
            let mut file = std::fs::File::open(&path)?;
            let mut hasher = sha2::Sha256::new();
            std::io::copy(&mut file, &mut hasher)?;
            Ok(hasher.finalize().into())
        })
        .await
        .map_err(|e| BackupError::Failed(format!("hash the backup copy: {e}")))?
        .map_err(|e| BackupError::Failed(format!("hash the backup copy: {e}")))?;
        self.copy.set_digest(digest);
        Ok(digest)
    }

    /// Lets the copy go now rather than keeping it for `-backup-keep` (an automatic backup's
    /// copy, which no client asked for); its file goes once no stream reads it.
    pub fn release(self) {
        self.retention.forget(&self.copy);
    }

    /// The copy's file once it is complete, for a reader on a blocking thread (an automatic
    /// backup): it stays on disk at least as long as this value is held.
    pub async fn finished_file(&self) -> Result<std::path::PathBuf, BackupError> {
        self.copy
            .finished_info()
            .await
            .map_err(|e| BackupError::Failed(e.to_string()))?;
        Ok(self.copy.path().to_path_buf())
    }

    /// The bytes `[start, end)` of the copy (all of it with `None`), streamed in [`CHUNK`]s.
    /// A stream of the whole file computes the digest on its way if none has yet. When the
    /// stream ends or is dropped the copy is kept again for `-backup-keep` (so a broken
    /// download can resume from it).
    pub async fn stream(self, range: Option<(u64, u64)>) -> Result<ByteStream, BackupError> {
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        let (start, end) = range.unwrap_or((0, self.info.len));
        let mut file = tokio::fs::File::open(self.copy.path())
            .await
            .map_err(|e| BackupError::Failed(format!("open the backup copy: {e}")))?;
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| BackupError::Failed(format!("seek in the backup copy: {e}")))?;
        }
        let whole = start == 0 && end == self.info.len;
        let hashing = whole && self.copy.claim_hashing();
        // Made before the body, so a body dropped before its first poll still gives the
        // hashing back and keeps the copy (the guard's drop runs either way).
        let mut end_guard = EndOfStream {
            copy: Arc::clone(&self.copy),
            len: self.info.len,
            retention: Arc::clone(&self.retention),
            hashing,
            hashed: false,
        };
        // A copy made in one pass may still be growing: the stream follows its progress.
        let mut progress = self.copy.progress();
        let mut outcome = self.copy.outcome();
        let body = async_stream::stream! {
            let mut hasher = hashing.then(<sha2::Sha256 as sha2::Digest>::new);
            let mut pos = start;
            while pos < end {
                // How far the file is final: all of it once the copy is finished.
                let ready = match &*outcome.borrow_and_update() {
                    Some(Ok(_)) => Ok(end),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Ok(progress.borrow_and_update().written.min(end)),
                };
                let ready = match ready {
                    Ok(r) => r,
                    Err(e) => {
                        yield Err(std::io::Error::other(format!("the backup copy failed: {e}")));
                        break;
                    }
                };
                if pos >= ready {
                    tokio::select! {
                        changed = progress.changed() => {
                            // The writer is gone: its outcome follows (and once it has
                            // come, the whole file is ready, so this waits once at most).
                            if changed.is_err() {
                                let _ = end_guard.copy.finished_info().await;
                                if outcome.borrow().is_none() {
                                    yield Err(std::io::Error::other("the backup copy was abandoned"));
                                    break;
                                }
                            }
                        }
                        changed = outcome.changed() => {
                            if changed.is_err() {
                                yield Err(std::io::Error::other("the backup copy was abandoned"));
                                break;
                            }
                        }
                    }
                    continue;
                }
                let want = usize::try_from((ready - pos).min(CHUNK as u64)).unwrap_or(CHUNK);
                let mut chunk = bytes::BytesMut::zeroed(want);
                if let Err(e) = file.read_exact(&mut chunk).await {
                    yield Err(e);
                    break;
                }
                pos += want as u64;
                if let Some(h) = hasher.as_mut() {
                    sha2::Digest::update(h, &chunk);
                }
                yield Ok(chunk.freeze());
            }
            if let Some(h) = hasher.take() {
                if pos == end {
                    end_guard.copy.set_digest(sha2::Digest::finalize(h).into());
                    end_guard.hashed = true;
                }
            }
            drop(end_guard);
        };
        Ok(Box::pin(body))
    }
}

/// The one direct binary stream a node runs at a time (others share a copy instead).
struct DirectSlot(Arc<std::sync::atomic::AtomicUsize>);

impl DirectSlot {
    /// The slot, if no other direct stream holds it.
    fn take_alone(count: &Arc<std::sync::atomic::AtomicUsize>) -> Option<DirectSlot> {
        count
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| DirectSlot(Arc::clone(count)))
    }
}

impl Drop for DirectSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The direct stream's work on its read connection: one snapshot for the plan and the pages.
/// Sends `None` on `plan_tx` when the database cannot be planned (nothing is sent then).
fn direct_in_snapshot(
    conn: &Connection,
    plan_tx: tokio::sync::oneshot::Sender<Option<(ContentId, u64)>>,
    out: &mut sql::ChannelWriter,
) -> Result<(), String> {
    conn.execute_batch("BEGIN").map_err(|e| e.to_string())?;
    let result = (|| -> Result<(), String> {
        conn.query_i64("SELECT count(*) FROM sqlite_master")
            .map_err(|e| e.to_string())?;
        out.snapshot_began();
        let plan = match one_pass::plan(conn) {
            Ok(Ok(plan)) => plan,
            Ok(Err(one_pass::NotPlanned(reason))) => {
                tracing::debug!("binary backup from a copy: {reason}");
                let _ = plan_tx.send(None);
                return Ok(());
            }
            Err(e) => {
                tracing::warn!("binary backup from a copy: the plan failed: {e:#}");
                let _ = plan_tx.send(None);
                return Ok(());
            }
        };
        let _ = plan_tx.send(Some((plan.content.clone(), plan.len)));
        one_pass::write(conn, &plan, out, |_| Ok(())).map_err(|e| e.to_string())?;
        std::io::Write::flush(out).map_err(|e| e.to_string())
    })();
    // Read only: ending the transaction releases the snapshot.
    let _ = conn.execute_batch("ROLLBACK");
    result
}

/// Runs when a stream of a copy ends or is dropped: keeps the copy for resumes, and gives the
/// hashing back if this stream claimed it and did not finish.
struct EndOfStream {
    copy: Arc<copies::SharedCopy>,
    len: u64,
    retention: Arc<copies::Retention>,
    hashing: bool,
    hashed: bool,
}

impl Drop for EndOfStream {
    fn drop(&mut self) {
        if self.hashing && !self.hashed {
            self.copy.release_hashing();
        }
        self.retention.keep(&self.copy, self.len);
    }
}

/// A SHA-256 as `Repr-Digest` (RFC 9530) spells it: `sha-256=:<base64>:`.
pub fn repr_digest(digest: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The bytes of a backup, as they are read: a failed item ends the transfer.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>>>>;

/// What a backup's bytes are a function of, given its options: the database's lineage and the
/// Raft log id it reflects (see `store::applied_state`). Two backups with the same options and
/// the same `ContentId` are byte for byte the same, on any node of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentId {
    pub lineage: Option<String>,
    pub log_id: Option<crate::store::node_info::LogId>,
}

impl ContentId {
    pub fn of(state: &crate::store::applied_state::AppliedState) -> ContentId {
        ContentId {
            lineage: state.lineage.clone(),
            log_id: state.log_id,
        }
    }

    /// The Raft index reflected (`X-Raftlite-Raft-Index`).
    pub fn raft_index(&self) -> u64 {
        self.log_id.map_or(0, |l| l.index)
    }

    /// The strong entity tag of this content in the representation `variant` (the format and
    /// every option that changes the bytes, spelled by the caller, e.g. `binary;vacuum`):
    /// `"<index>-<16 hex digits of SHA-256 over lineage, log id and variant>"`. The index is
    /// readable; the hash makes the tag change whenever the bytes may.
    pub fn etag(&self, variant: &str) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for part in [
            self.lineage.as_deref().unwrap_or("-"),
            &self.log_id.map_or_else(
                || "-".to_owned(),
                |l| format!("{}.{}", l.leader_id, l.index),
            ),
            variant,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let hash: String = h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("\"{}-{hash}\"", self.raft_index())
    }
}

/// A backup ready to stream: its first byte has not been read, so it could still fail cleanly.
pub struct Backup {
    /// The content it holds (index and `ETag`).
    pub content: ContentId,
    /// Its length when known in advance (a binary copy).
    pub len: Option<u64>,
    pub body: ByteStream,
}

/// Chunk size of a streamed copy. Every read of a `tokio::fs::File` is a hop to the blocking
/// pool, so chunks are large: at 64 KiB the hops, not the disk, set the pace.
pub const CHUNK: usize = 1024 * 1024;

/// The node's backup engine (one per node, owned by the store).
pub struct Backups {
    opts: BackupOptions,
    copies: copies::Copies,
    /// Binary backups streamed straight to their client now (`binary_direct`).
    direct: Arc<std::sync::atomic::AtomicUsize>,
}

impl Backups {
    pub fn new(opts: BackupOptions) -> Backups {
        Backups {
            copies: copies::Copies::new(opts.clone()),
            opts,
            direct: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// Bytes that must stay free (`-disk-reserve`); restores respect it too.
    pub fn disk_reserve(&self) -> u64 {
        self.opts.disk_reserve
    }

    /// Where binary copies are written (`/status`).
    pub fn tmp_dir(&self) -> &Path {
        &self.opts.tmp_dir
    }

    /// Binary copies made since start-up, and backups served by a copy another one made.
    pub fn copies_made_and_shared(&self) -> (u64, u64) {
        (
            self.copies.copies_made.load(Ordering::Relaxed),
            self.copies.copies_shared.load(Ordering::Relaxed),
        )
    }

    /// Binary copies being made now (`/metrics`; `-max-backup-copies` bounds it).
    pub fn copies_in_progress(&self) -> usize {
        self.copies.in_progress()
    }

    /// A binary backup of `db` reflecting at least `applied` (the index applied when it was
    /// asked for): a shared copy if one fits, else a new one.
    pub async fn binary(
        &self,
        db: &Arc<Database>,
        applied: u64,
        vacuum: bool,
    ) -> Result<BinaryBackup, Arc<BackupError>> {
        let (copy, info) = self.copies.acquire(db, applied, vacuum).await?;
        Ok(BinaryBackup {
            copy,
            info,
            retention: Arc::clone(&self.copies.retention),
        })
    }

    /// Whether a whole, plain binary backup goes straight to its client: when finished copies
    /// are not kept (`-backup-keep 0s`), a copy on disk would serve nothing after this one
    /// stream, so none is written (one pass, no file: `binary_direct`).
    pub fn streams_direct(&self) -> bool {
        self.opts.keep_for.is_zero()
    }

    /// A plain binary backup of `db` as of now, streamed straight to the client in one pass
    /// (`one_pass.rs`): planned, then the snapshot's pages sent in order through a bounded
    /// channel, without a file. Its snapshot pins the WAL while the client reads, so the
    /// SQL dump's caps apply (`-dump-wal-limit`, `-dump-stall-timeout`). `Ok(None)`: the
    /// database cannot be planned (`auto_vacuum`...), or another binary backup is being made
    /// or streamed: the caller makes a copy instead, which the backups that arrive together
    /// share (sixteen clients at once read one copy, not sixteen snapshots).
    pub async fn binary_direct(&self, db: &Arc<Database>) -> Result<Option<Backup>, BackupError> {
        if self.copies.in_progress() > 0 {
            return Ok(None);
        }
        let Some(slot) = DirectSlot::take_alone(&self.direct) else {
            return Ok(None);
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(sql::SQL_CHANNEL_DEPTH);
        let (plan_tx, plan_rx) = tokio::sync::oneshot::channel::<Option<(ContentId, u64)>>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let shm_path = crate::db::sibling(db.path(), "-shm");
        let runtime = tokio::runtime::Handle::current();
        let caps = self.opts.dump_caps;
        let db = Arc::clone(db);
        tokio::spawn(async move {
            let _ = db
                .with_reader(move |conn| {
                    let _background = crate::db::priority::background();
                    let mut out = sql::ChannelWriter::new(tx, runtime, caps, shm_path);
                    let result = direct_in_snapshot(conn, plan_tx, &mut out);
                    if let Err(e) = &result {
                        tracing::warn!("binary backup stream stopped: {e}");
                    }
                    let _ = done_tx.send(result);
                })
                .await;
        });
        let (content, len) = match plan_rx.await {
            Ok(Some(planned)) => planned,
            Ok(None) => return Ok(None),
            Err(_) => {
                let reason = match done_rx.await {
                    Ok(Err(e)) => e,
                    _ => "the backup stopped before it began".into(),
                };
                return Err(BackupError::Failed(reason));
            }
        };
        let body = async_stream::stream! {
            // Held for as long as the body is: the stream counts against max_copies.
            let _slot = slot;
            let mut sent = 0u64;
            while let Some(chunk) = rx.recv().await {
                sent += chunk.len() as u64;
                yield Ok(chunk);
            }
            match done_rx.await {
                Ok(Ok(())) if sent == len => {}
                Ok(Ok(())) => yield Err(std::io::Error::other(format!(
                    "the backup stream ended after {sent} of {len} bytes"
                ))),
                Ok(Err(reason)) => yield Err(std::io::Error::other(reason)),
                Err(_) => yield Err(std::io::Error::other("the backup stopped without an outcome")),
            }
        };
        Ok(Some(Backup {
            content,
            len: Some(len),
            body: Box::pin(body),
        }))
    }

    /// A finished binary copy made or kept on this node that `wanted` accepts (given its
    /// content and whether it is vacuumed): what a resumed download (`If-Range`) reads.
    pub fn kept_binary(&self, wanted: impl Fn(&CopyInfo, bool) -> bool) -> Option<BinaryBackup> {
        let (copy, info) = self.copies.find_finished(wanted)?;
        Some(BinaryBackup {
            copy,
            info,
            retention: Arc::clone(&self.copies.retention),
        })
    }

    /// Lets every kept copy go, for good: a restore replaced the content (a copy still being
    /// streamed keeps its file until its streams end, and is not kept after).
    pub fn release_kept(&self) {
        self.copies.retention.forget_replaced();
    }

    /// Lets every finished copy kept for reuse and resumes go (`POST /reap`): each file is
    /// removed once no stream reads it. Returns how many were kept.
    pub fn reap_kept(&self) -> usize {
        self.copies.retention.release_all()
    }

    /// Bytes of finished copies kept for reuse and resumes now (`/status`).
    pub fn kept_bytes(&self) -> u64 {
        self.copies.retention.kept_bytes()
    }

    /// What a plain binary backup made now would be: its content and, unless removing the
    /// state table would shrink the file (`auto_vacuum`), its exact length. One read
    /// transaction, no copy: what `HEAD /db/backup` answers.
    pub async fn binary_head(
        &self,
        db: &Arc<Database>,
    ) -> Result<(ContentId, Option<u64>), BackupError> {
        db.with_reader(|c| -> anyhow::Result<(ContentId, Option<u64>)> {
            c.execute_batch("BEGIN")?;
            let read = (|| -> anyhow::Result<(ContentId, Option<u64>)> {
                let content = ContentId::of(&crate::store::applied_state::read(c)?);
                let pages = c.query_i64("PRAGMA page_count")?.unwrap_or(0);
                let page_size = c.query_i64("PRAGMA page_size")?.unwrap_or(0);
                let auto_vacuum = c.query_i64("PRAGMA auto_vacuum")?.unwrap_or(0);
                let len = (auto_vacuum == 0).then(|| u64::try_from(pages * page_size).unwrap_or(0));
                Ok((content, len))
            })();
            let _ = c.execute_batch("ROLLBACK");
            read
        })
        .await
        .map_err(|e| BackupError::Failed(format!("{e:#}")))?
        .map_err(|e| BackupError::Failed(format!("{e:#}")))
    }

    /// A SQL backup of `db` (only `tables` when given), as `sqlite3 .dump` writes it, from one
    /// read snapshot capped by the node's [`DumpCaps`].
    pub async fn sql(
        &self,
        db: &Arc<Database>,
        tables: Option<Vec<String>>,
    ) -> Result<Backup, BackupError> {
        sql::sql_backup(Arc::clone(db), self.opts.dump_caps, tables)
            .await
            .map_err(|e| BackupError::Failed(format!("{e:#}")))
    }

    /// Copies the live database, as of now, into a new file `dest` for Raft to send as a
    /// snapshot: one read transaction, background priority, and the reserve kept on `dest`'s
    /// file system (a failed copy leaves no file).
    pub async fn snapshot_copy(
        &self,
        db: &Arc<Database>,
        dest: PathBuf,
    ) -> Result<(), BackupError> {
        let dir = dest
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let reserve = self.opts.disk_reserve;
        let needed = database_size(db).await?;
        if check_room(&dir, needed, reserve, "a snapshot copy").is_err() {
            // Kept backup copies give way to Raft's snapshot, then the room is checked again.
            self.copies.retention.release_all();
        }
        check_room(&dir, needed, reserve, "a snapshot copy")
            .map_err(|e| BackupError::InsufficientStorage(e.to_string()))?;
        let file = crate::temp_file::TempFile::new(dest.clone());
        db.with_reader(move |conn| copy_above_reserve(conn, &dest, &dir, reserve))
            .await
            .map_err(|e| BackupError::Failed(format!("{e:#}")))??;
        crate::failpoint::crash_point("snapshot::send_copy_made");
        file.persist();
        Ok(())
    }
}

/// What a copy of `db` would write: its pages as of now (exact unless writes land before the
/// copy's snapshot begins).
async fn database_size(db: &Arc<Database>) -> Result<u64, BackupError> {
    let bytes = db
        .with_reader(|c| -> raftlite_ffi::Result<i64> {
            Ok(c.query_i64("PRAGMA page_count")?.unwrap_or(0)
                * c.query_i64("PRAGMA page_size")?.unwrap_or(0))
        })
        .await
        .map_err(|e| BackupError::Failed(format!("{e:#}")))?
        .map_err(|e| BackupError::Failed(format!("size the database: {e}")))?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// Copies `src` to `dest` in one read transaction at background priority, checking after
/// every step that `dir`'s file system keeps `reserve` bytes free.
fn copy_above_reserve(
    src: &Connection,
    dest: &Path,
    dir: &Path,
    reserve: u64,
) -> Result<(), BackupError> {
    // The copy yields the CPU to writes and queries (see `db::priority`).
    let _background = crate::db::priority::background();
    copy_to_file(src, dest, PAGES_PER_STEP, |_| above_reserve(dir, reserve))
        .map(|_| ())
        .map_err(copy_error)
}

/// Stops a copy whose file system fell below the reserve.
fn above_reserve(dir: &Path, reserve: u64) -> Result<(), CopyError> {
    match free_bytes(dir) {
        Ok(free) if free < reserve => Err(CopyError::Stopped(format!(
            "stopped: free disk space in {} fell to {free} bytes, below the reserve of \
             {reserve} (-disk-reserve)",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

fn copy_error(e: CopyError) -> BackupError {
    match e {
        CopyError::Stopped(_) => BackupError::InsufficientStorage(e.to_string()),
        CopyError::Sqlite(ref s) if s.code() == raftlite_ffi::ErrorCode::Full => {
            BackupError::InsufficientStorage(format!("{e} (disk full)"))
        }
        CopyError::Io(ref io) if io.kind() == std::io::ErrorKind::StorageFull => {
            BackupError::InsufficientStorage(format!("{e} (disk full)"))
        }
        other => BackupError::Failed(other.to_string()),
    }
}

/// How often (in bytes written) a one-pass copy checks the disk reserve: as often as the
/// two-pass copier does (after every step of [`PAGES_PER_STEP`] 4 KiB pages).
const RESERVE_CHECK_EVERY: u64 = 4 << 20;

/// Makes a plain binary copy of `src` at `dest` in one pass (`one_pass.rs`), reporting its
/// plan and every write to `progress`. `Ok(None)`: it could not be planned and nothing was
/// written; the caller copies in two passes.
fn copy_in_one_pass(
    src: &Connection,
    dest: &Path,
    dir: &Path,
    reserve: u64,
    progress: &tokio::sync::watch::Sender<copies::Progress>,
) -> Result<Option<CopyInfo>, BackupError> {
    let _background = crate::db::priority::background();
    let failed = |e: &dyn std::fmt::Display| BackupError::Failed(format!("backup copy: {e}"));
    src.execute_batch("BEGIN").map_err(|e| failed(&e))?;
    let result = (|| -> Result<Option<CopyInfo>, BackupError> {
        src.query_i64("SELECT count(*) FROM sqlite_master")
            .map_err(|e| failed(&e))?;
        let plan = match one_pass::plan(src) {
            Ok(Ok(plan)) => plan,
            Ok(Err(one_pass::NotPlanned(reason))) => {
                tracing::debug!("backup copy in two passes: {reason}");
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!("backup copy in two passes: the plan failed: {e:#}");
                return Ok(None);
            }
        };
        let info = CopyInfo {
            content: plan.content.clone(),
            len: plan.len,
        };
        let mut file = std::fs::File::create_new(dest).map_err(|e| copy_error(e.into()))?;
        progress.send_modify(|p| p.planned = Some(info.clone()));
        let (mut checked, mut announced) = (0u64, 0u64);
        one_pass::write(src, &plan, &mut file, |done| {
            // Streams wake once per chunk they read, not once per write.
            if done - announced >= CHUNK as u64 {
                announced = done;
                progress.send_modify(|p| p.written = done);
            }
            if done - checked >= RESERVE_CHECK_EVERY {
                checked = done;
                above_reserve(dir, reserve)?;
            }
            Ok(())
        })
        .map_err(copy_error)?;
        progress.send_modify(|p| p.written = info.len);
        crate::failpoint::crash_point("backup::copied_before_clean");
        Ok(Some(info))
    })();
    // Read only: ending the transaction releases the snapshot.
    let _ = src.execute_batch("ROLLBACK");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(dir: &Path) -> Arc<Database> {
        let db = Database::open(dir.join("db.sqlite"), Default::default()).unwrap();
        Arc::new(db)
    }

    #[tokio::test]
    async fn a_snapshot_copy_keeps_the_disk_reserve_and_leaves_no_file_when_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path());
        db.with_writer(|c| c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1)"))
            .await
            .unwrap()
            .unwrap();
        let dest = dir.path().join("snapshot-out.db");
        // A reserve no disk has: the copy is refused before it writes anything.
        let greedy = Backups::new(BackupOptions {
            disk_reserve: u64::MAX / 2,
            ..BackupOptions::in_dir(dir.path().to_path_buf())
        });
        match greedy.snapshot_copy(&db, dest.clone()).await {
            Err(BackupError::InsufficientStorage(m)) => assert!(m.contains("snapshot"), "{m}"),
            other => panic!("expected the reserve to refuse the copy, got {other:?}"),
        }
        assert!(!dest.exists());
        // Without a reserve it copies, and the file is the caller's.
        let plain = Backups::new(BackupOptions::in_dir(dir.path().to_path_buf()));
        plain.snapshot_copy(&db, dest.clone()).await.unwrap();
        let copy =
            raftlite_ffi::Connection::open(&dest, raftlite_ffi::OpenFlags::READ_ONLY).unwrap();
        assert_eq!(copy.query_i64("SELECT x FROM t").unwrap(), Some(1));
    }
}
