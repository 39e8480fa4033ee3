//! Binary copies, shared between the backups they satisfy (see the invariants in
//! [`super`]): the registry, the copy task, the clean-up of a finished copy, and the
//! retention of finished copies ([`Retention`]) so that later backups of the same content and
//! resumed downloads (`Range`) are served from them without another copy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use raftlite_ffi::{Connection, OpenFlags};
use tokio::sync::watch;

use crate::db::disk::check_room;
use crate::db::Database;
use crate::db::STATE_TABLE;
use crate::store::applied_state;
use crate::temp_file::{unique_suffix, TempFile};

use super::{copy_above_reserve, BackupError, BackupOptions, ContentId};

/// What a finished copy is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInfo {
    /// The content the copy holds (read from the copy's own state row).
    pub content: ContentId,
    /// Its size in bytes.
    pub len: u64,
}

type CopyOutcome = Option<Result<CopyInfo, Arc<BackupError>>>;

/// How far a copy made in one pass (`one_pass.rs`) is: what it will be once planned, and the
/// bytes of its file that are final. A two-pass copy never reports progress: its file is read
/// once it is finished.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub planned: Option<CopyInfo>,
    pub written: u64,
}

/// One copy on disk, being made or made.
pub struct SharedCopy {
    applied_floor: u64,
    /// The size the copy was expected to reach when it started (the database's size then).
    expected_len: u64,
    vacuum: bool,
    outcome: watch::Receiver<CopyOutcome>,
    progress: watch::Receiver<Progress>,
    file: TempFile,
    /// SHA-256 of the file, once a complete read of it has computed it.
    digest: OnceLock<[u8; 32]>,
    /// Set by the one stream that hashes the file as it sends it (the first full one).
    hashing: AtomicBool,
    /// The [`Retention`] generation it was made in: a copy of content that a load has
    /// replaced since is not kept when its last stream ends.
    generation: u64,
}

impl SharedCopy {
    /// The file's SHA-256, when known.
    pub fn digest(&self) -> Option<[u8; 32]> {
        self.digest.get().copied()
    }

    /// Records the file's SHA-256 (the first caller wins; every caller hashed the same file).
    pub fn set_digest(&self, digest: [u8; 32]) {
        let _ = self.digest.set(digest);
    }

    /// Claims the hashing of the file by a stream that sends all of it: true for one caller
    /// only, while the digest is unknown.
    pub fn claim_hashing(&self) -> bool {
        self.digest.get().is_none() && !self.hashing.swap(true, Ordering::AcqRel)
    }

    /// Gives the hashing back (the stream that claimed it did not reach the end).
    pub fn release_hashing(&self) {
        self.hashing.store(false, Ordering::Release);
    }

    /// Whether the copy is of a vacuumed database.
    pub fn vacuum(&self) -> bool {
        self.vacuum
    }

    fn finished(&self) -> Option<CopyInfo> {
        match &*self.outcome.borrow() {
            Some(Ok(info)) => Some(info.clone()),
            _ => None,
        }
    }

    /// The file to stream.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The copy's outcome, for a stream that follows a copy still being written.
    pub fn outcome(&self) -> watch::Receiver<CopyOutcome> {
        self.outcome.clone()
    }

    /// Waits until the copy is finished (a one-pass copy is handed out once planned, before
    /// its file is whole): what reads the whole file at once must wait for this.
    pub async fn finished_info(&self) -> Result<CopyInfo, Arc<BackupError>> {
        let mut outcome = self.outcome.clone();
        loop {
            match &*outcome.borrow_and_update() {
                Some(Ok(info)) => return Ok(info.clone()),
                Some(Err(e)) => return Err(Arc::clone(e)),
                None => {}
            }
            if outcome.changed().await.is_err() {
                return Err(Arc::new(BackupError::Failed(
                    "the backup copy was abandoned".into(),
                )));
            }
        }
    }

    /// The copy's progress (see [`Progress`]).
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    fn in_progress(&self) -> bool {
        self.outcome.borrow().is_none()
    }

    /// Bytes the copy will still write, if it is being made: a new copy must leave room for
    /// them (a one-pass copy answers before it has written its file, and must not then run
    /// out of room mid-stream).
    fn bytes_to_come(&self) -> u64 {
        if !self.in_progress() {
            return 0;
        }
        let expected = self
            .progress
            .borrow()
            .planned
            .as_ref()
            .map_or(self.expected_len, |p| p.len);
        let written = std::fs::metadata(self.path()).map_or(0, |m| m.len());
        expected.saturating_sub(written)
    }

    fn failed(&self) -> bool {
        matches!(*self.outcome.borrow(), Some(Err(_)))
    }
}

/// Finished copies kept after their last use, for `keep_for` and up to `keep_bytes` in all
/// (`-backup-keep`, `-backup-keep-size`): a later backup of the same content shares one, and
/// a broken download resumes from one with `Range`. Keeping a copy is only holding its `Arc`:
/// a copy let go of is deleted once no stream reads it. Kept copies are let go of first when
/// a new copy needs the room.
pub struct Retention {
    keep_for: Duration,
    keep_bytes: u64,
    kept: Mutex<Vec<Kept>>,
    /// Bumped when the database's content is replaced (a load): copies made before are of
    /// content no request will ask for again.
    generation: AtomicU64,
}

struct Kept {
    copy: Arc<SharedCopy>,
    len: u64,
    since: Instant,
}

impl Retention {
    pub fn new(keep_for: Duration, keep_bytes: u64) -> Arc<Retention> {
        Arc::new(Retention {
            keep_for,
            keep_bytes,
            kept: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
        })
    }

    /// Keeps `copy` (of `len` bytes) for `keep_for` from now, in place of any earlier keep of
    /// it. Called when a copy is made and whenever a stream of it ends.
    pub fn keep(self: &Arc<Self>, copy: &Arc<SharedCopy>, len: u64) {
        if self.keep_for.is_zero() || len > self.keep_bytes {
            return;
        }
        {
            let mut kept = self.kept.lock();
            // Checked under the lock `forget_replaced` takes: a stream that ends just after a
            // load must not keep the replaced content's copy.
            if copy.generation != self.generation.load(Ordering::Acquire) {
                return;
            }
            kept.retain(|k| !Arc::ptr_eq(&k.copy, copy));
            kept.push(Kept {
                copy: Arc::clone(copy),
                len,
                since: Instant::now(),
            });
            self.prune(&mut kept);
        }
        // Let it go when its time is up, even if nothing else happens on this node.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let retention = Arc::downgrade(self);
            let keep_for = self.keep_for;
            runtime.spawn(async move {
                tokio::time::sleep(keep_for).await;
                if let Some(r) = retention.upgrade() {
                    let mut kept = r.kept.lock();
                    r.prune(&mut kept);
                }
            });
        }
    }

    /// Drops the expired, then the oldest until the rest fits `keep_bytes`.
    fn prune(&self, kept: &mut Vec<Kept>) {
        let now = Instant::now();
        kept.retain(|k| now.duration_since(k.since) < self.keep_for);
        let mut total: u64 = kept.iter().map(|k| k.len).sum();
        while total > self.keep_bytes && !kept.is_empty() {
            total -= kept.remove(0).len;
        }
    }

    /// Stops keeping `copy` (if it is kept). The caller holds `copy`, so its file is never
    /// removed under the lock.
    pub fn forget(&self, copy: &Arc<SharedCopy>) {
        self.kept.lock().retain(|k| !Arc::ptr_eq(&k.copy, copy));
    }

    /// Lets every kept copy go (a new copy needs the room, or `POST /reap`). Returns how many
    /// there were.
    pub fn release_all(&self) -> usize {
        let released = std::mem::take(&mut *self.kept.lock());
        released.len()
    }

    /// Lets every kept copy go for good: the content was replaced (a load). Copies of it
    /// still being streamed are not kept when their streams end.
    pub fn forget_replaced(&self) {
        let released = {
            let mut kept = self.kept.lock();
            self.generation.fetch_add(1, Ordering::AcqRel);
            std::mem::take(&mut *kept)
        };
        drop(released);
    }

    /// Bytes of the copies kept now.
    pub fn kept_bytes(&self) -> u64 {
        let mut kept = self.kept.lock();
        self.prune(&mut kept);
        kept.iter().map(|k| k.len).sum()
    }
}

/// The registry of copies (one per node).
pub struct Copies {
    opts: BackupOptions,
    copies: Mutex<Vec<Weak<SharedCopy>>>,
    pub retention: Arc<Retention>,
    /// Copies started since the node started (`/status`: `backup_copies`).
    pub copies_made: AtomicU64,
    /// Requests served by a copy another request made.
    pub copies_shared: AtomicU64,
}

impl Copies {
    pub fn new(opts: BackupOptions) -> Copies {
        Copies {
            retention: Retention::new(opts.keep_for, opts.keep_bytes),
            opts,
            copies: Mutex::new(Vec::new()),
            copies_made: AtomicU64::new(0),
            copies_shared: AtomicU64::new(0),
        }
    }

    /// Copies being made now.
    pub fn in_progress(&self) -> usize {
        self.copies
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|c| c.in_progress())
            .count()
    }

    /// A finished copy of `db` that reflects at least `applied`: a shared one if one fits,
    /// otherwise a new one. The returned `Arc` keeps the file until it is dropped.
    pub async fn acquire(
        &self,
        db: &Arc<Database>,
        applied: u64,
        vacuum: bool,
    ) -> Result<(Arc<SharedCopy>, CopyInfo), Arc<BackupError>> {
        let needed = super::database_size(db).await.map_err(Arc::new)?;
        let copy = match self.find_or_register(needed, applied, vacuum)? {
            Found::Shared(copy) => {
                self.copies_shared.fetch_add(1, Ordering::Relaxed);
                copy
            }
            Found::New(copy, outcome, progress) => {
                self.copies_made.fetch_add(1, Ordering::Relaxed);
                self.start_copy(db, Arc::clone(&copy), outcome, progress);
                copy
            }
        };
        // A copy made in one pass can be streamed once planned; any other once finished.
        let mut outcome = copy.outcome.clone();
        let mut progress = copy.progress.clone();
        loop {
            match &*outcome.borrow_and_update() {
                Some(Ok(info)) => return Ok((copy, info.clone())),
                Some(Err(e)) => return Err(Arc::clone(e)),
                None => {}
            }
            if let Some(info) = &progress.borrow_and_update().planned {
                return Ok((copy, info.clone()));
            }
            let abandoned =
                || Arc::new(BackupError::Failed("the backup copy was abandoned".into()));
            tokio::select! {
                changed = outcome.changed() => changed.map_err(|_| abandoned())?,
                changed = progress.changed() => {
                    if changed.is_err() {
                        // The copy stopped reporting progress (it was not planned in one
                        // pass, or it ended): only its outcome is left to wait for.
                        let info = copy.finished_info().await?;
                        return Ok((copy, info));
                    }
                }
            }
        }
    }

    /// A finished copy that `wanted` accepts (given its content and whether it is vacuumed),
    /// made or kept on this node: a resumed download's copy, found by its entity tag.
    pub fn find_finished(
        &self,
        wanted: impl Fn(&CopyInfo, bool) -> bool,
    ) -> Option<(Arc<SharedCopy>, CopyInfo)> {
        let copies = self.copies.lock();
        copies.iter().filter_map(Weak::upgrade).find_map(|c| {
            let info = c.finished()?;
            wanted(&info, c.vacuum).then(|| (Arc::clone(&c), info))
        })
    }

    fn find_or_register(
        &self,
        needed: u64,
        applied: u64,
        vacuum: bool,
    ) -> Result<Found, Arc<BackupError>> {
        let mut copies = self.copies.lock();
        copies.retain(|w| w.strong_count() > 0);
        let live: Vec<Arc<SharedCopy>> = copies.iter().filter_map(Weak::upgrade).collect();
        if let Some(c) = live
            .iter()
            .find(|c| c.vacuum == vacuum && c.applied_floor >= applied && !c.failed())
        {
            return Ok(Found::Shared(Arc::clone(c)));
        }
        let in_progress = live.iter().filter(|c| c.in_progress()).count();
        if in_progress >= self.opts.max_copies {
            return Err(Arc::new(BackupError::TooManyCopies(in_progress)));
        }
        let to_come: u64 = live.iter().map(|c| c.bytes_to_come()).sum();
        let room_for = needed.saturating_add(to_come);
        // Held here, a kept copy let go of below would keep its file.
        drop(live);
        if let Err(e) = self.check_room(room_for) {
            // Kept copies give way to a new one (their files go once no stream reads them).
            if self.retention.release_all() == 0 {
                return Err(Arc::new(BackupError::InsufficientStorage(e)));
            }
            self.check_room(room_for)
                .map_err(|e| Arc::new(BackupError::InsufficientStorage(e)))?;
        }
        let (tx, rx) = watch::channel(None);
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let copy = Arc::new(SharedCopy {
            applied_floor: applied,
            expected_len: needed,
            vacuum,
            outcome: rx,
            progress: progress_rx,
            file: TempFile::new(temp_path(&self.opts.tmp_dir)),
            digest: OnceLock::new(),
            hashing: AtomicBool::new(false),
            generation: self.retention.generation.load(Ordering::Acquire),
        });
        copies.push(Arc::downgrade(&copy));
        Ok(Found::New(copy, tx, progress_tx))
    }

    /// Room for `needed` bytes plus the reserve, or why not.
    fn check_room(&self, needed: u64) -> Result<(), String> {
        check_room(
            &self.opts.tmp_dir,
            needed,
            self.opts.disk_reserve,
            "a backup copy",
        )
        .map_err(|e| e.to_string())
    }

    /// Makes the copy on a read connection. The task holds the copy until it is finished, so
    /// requests that joined it get their answer even if the one that started it went away.
    fn start_copy(
        &self,
        db: &Arc<Database>,
        copy: Arc<SharedCopy>,
        outcome: watch::Sender<CopyOutcome>,
        progress: watch::Sender<Progress>,
    ) {
        let db = Arc::clone(db);
        let dest = copy.path().to_path_buf();
        let tmp_dir = self.opts.tmp_dir.clone();
        let reserve = self.opts.disk_reserve;
        let vacuum = copy.vacuum;
        let retention = Arc::clone(&self.retention);
        tokio::spawn(async move {
            let made = db
                .with_reader(move |conn| {
                    if !vacuum {
                        match super::copy_in_one_pass(conn, &dest, &tmp_dir, reserve, &progress) {
                            Ok(Some(info)) => return Ok(info),
                            Ok(None) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    copy_and_clean(conn, &dest, vacuum, &tmp_dir, reserve)
                })
                .await;
            let result = match made {
                Ok(Ok(info)) => Ok(info),
                Ok(Err(e)) => Err(Arc::new(e)),
                Err(e) => Err(Arc::new(BackupError::Failed(format!("{e:#}")))),
            };
            match &result {
                Ok(info) => retention.keep(&copy, info.len),
                Err(e) => {
                    tracing::warn!("backup copy failed: {e}");
                    // Free the disk now rather than when the last waiter lets go.
                    copy.file.remove_now();
                }
            }
            let _ = outcome.send(Some(result));
            drop(copy);
        });
    }
}

enum Found {
    Shared(Arc<SharedCopy>),
    New(
        Arc<SharedCopy>,
        watch::Sender<CopyOutcome>,
        watch::Sender<Progress>,
    ),
}

/// Copies `src` to `dest`, stopping at the disk reserve, and removes what a backup must not
/// hold; the Raft index comes from the copy's own state row (exact, unlike a later
/// `applied_index`).
fn copy_and_clean(
    src: &Connection,
    dest: &Path,
    vacuum: bool,
    tmp_dir: &Path,
    reserve: u64,
) -> Result<CopyInfo, BackupError> {
    let failed = |e: &dyn std::fmt::Display| BackupError::Failed(e.to_string());
    copy_above_reserve(src, dest, tmp_dir, reserve)?;
    crate::failpoint::crash_point("backup::copied_before_clean");
    let clean = || -> anyhow::Result<ContentId> {
        let mut copy = Connection::open(dest, OpenFlags::READ_WRITE | OpenFlags::NO_MUTEX)?;
        let content = clean_copy(&copy, vacuum)?;
        copy.close()?;
        Ok(content)
    };
    let content = clean().map_err(|e| BackupError::Failed(format!("{e:#}")))?;
    let len = std::fs::metadata(dest).map_err(|e| failed(&e))?.len();
    Ok(CopyInfo { content, len })
}

/// Removes what a backup must not hold from a finished copy (a file, or the one-pass plan's
/// page store: the same statements, so the same bytes), and `VACUUM`s it if asked. Returns
/// the content the copy holds, from its own state row.
pub(super) fn clean_copy(copy: &Connection, vacuum: bool) -> anyhow::Result<ContentId> {
    let content = ContentId::of(&applied_state::read(copy)?);
    // Scratch file: no journal, no syncs. secure_delete zeroes the state table's freed pages:
    // its log id and the members' addresses stay out of the backup.
    copy.execute_batch(&format!(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA secure_delete=ON; \
         DROP TABLE IF EXISTS {STATE_TABLE};"
    ))?;
    if vacuum {
        copy.execute_batch("VACUUM")?;
    }
    Ok(content)
}

/// Prefix of backup temp files; startup removes leftovers of a crash.
pub const TEMP_PREFIX: &str = "backup-";

fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!("{TEMP_PREFIX}{}.db", unique_suffix()))
}
