//! `Database`: the writer thread and the reader pool (see the module above for the invariants).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel as channel;
use parking_lot::Mutex;
use raftlite_ffi::{Connection, InterruptHandle};
use tokio::sync::{oneshot, Semaphore};

use super::error::{DbError, SwapStep};
use super::settings::{self, DbSettings};
use super::sibling;

type WriterJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// A node's database: the writer thread and the reader pool.
pub struct Database {
    path: PathBuf,
    settings: DbSettings,
    writer_tx: Mutex<Option<channel::Sender<WriterJob>>>,
    writer_thread: Mutex<Option<thread::JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_slots: Arc<Semaphore>,
    /// Readers hold it shared; swapping the file holds it exclusively (see `replace_with_file`).
    swap_gate: Arc<tokio::sync::RwLock<()>>,
    /// Interrupt handles of the readers running now, so a swap can cut long ones short.
    running_readers: Arc<Mutex<HashMap<u64, InterruptHandle>>>,
    next_reader_id: AtomicU64,
    /// Checkpoints run by [`Database::checkpoint_if_due`] (`/debug/vars`).
    pub wal_checkpoints: AtomicU64,
    writer_activity: Arc<WriterActivity>,
}

/// What the writer thread is doing (`/debug/vars`): how many jobs it has begun, and how long
/// the one it runs now has been running. One job can take long (a large SQL load, a
/// snapshot's fsyncs) and everything that needs the writer queues behind it.
#[derive(Debug)]
pub struct WriterActivity {
    epoch: Instant,
    jobs: AtomicU64,
    /// Milliseconds from `epoch` to the start of the running job, plus one; 0 when idle.
    running_since: AtomicU64,
}

impl WriterActivity {
    fn new() -> WriterActivity {
        WriterActivity {
            epoch: Instant::now(),
            jobs: AtomicU64::new(0),
            running_since: AtomicU64::new(0),
        }
    }

    /// Jobs the writer thread has begun.
    pub fn jobs(&self) -> u64 {
        self.jobs.load(Ordering::Relaxed)
    }

    /// How long the running job has been running; zero when the writer is idle.
    pub fn busy_for(&self) -> Duration {
        match self.running_since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => self
                .epoch
                .elapsed()
                .saturating_sub(Duration::from_millis(since - 1)),
        }
    }

    fn begin(&self) {
        let since = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.running_since.store(since + 1, Ordering::Relaxed);
        self.jobs.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        self.running_since.store(0, Ordering::Relaxed);
    }
}

/// WAL frames not yet in the database file at which [`Database::checkpoint_if_due`] copies
/// them back: SQLite's own auto-checkpoint threshold, which the writer turns off.
pub const CHECKPOINT_FRAMES: u32 = 1000;

impl Database {
    /// Opens (creating if needed) the database at `path` and starts the writer thread.
    pub fn open(path: impl AsRef<Path>, settings: DbSettings) -> Result<Database, DbError> {
        let path = path.as_ref().to_path_buf();
        let writer = settings::open_writer(&path, &settings).map_err(|source| DbError::Open {
            what: "the database",
            path: path.clone(),
            source,
        })?;
        let (writer_tx, writer_rx) = channel::unbounded::<WriterJob>();
        let writer_activity = Arc::new(WriterActivity::new());
        let handle = thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let mut conn = writer;
                for job in writer_rx {
                    job(&mut conn);
                }
                if let Err(e) = conn.close() {
                    tracing::warn!("close the writer connection: {e}");
                }
            })
            .map_err(DbError::StartWriter)?;
        let max_readers = settings.max_readers.max(1);
        Ok(Database {
            path,
            settings,
            writer_tx: Mutex::new(Some(writer_tx)),
            writer_thread: Mutex::new(Some(handle)),
            readers: Arc::new(Mutex::new(Vec::new())),
            reader_slots: Arc::new(Semaphore::new(max_readers)),
            swap_gate: Arc::new(tokio::sync::RwLock::new(())),
            running_readers: Arc::new(Mutex::new(HashMap::new())),
            next_reader_id: AtomicU64::new(1),
            wal_checkpoints: AtomicU64::new(0),
            writer_activity,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn settings(&self) -> &DbSettings {
        &self.settings
    }

    /// What the writer thread is doing (see `WriterActivity`).
    pub fn writer_activity(&self) -> &WriterActivity {
        &self.writer_activity
    }

    /// Runs `f` on the writer thread, after every job submitted before it.
    pub async fn with_writer<R, F>(&self, f: F) -> Result<R, DbError>
    where
        F: FnOnce(&mut Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let activity = Arc::clone(&self.writer_activity);
        let job: WriterJob = Box::new(move |conn| {
            activity.begin();
            let result = f(conn);
            // Idle before the caller hears back: what it reads next is not this job.
            activity.end();
            let _ = tx.send(result);
        });
        let sender = self.writer_tx.lock().clone();
        sender
            .ok_or(DbError::Closed)?
            .send(job)
            .map_err(|_| DbError::Closed)?;
        rx.await.map_err(|_| DbError::WriterStopped)
    }

    /// A reader slot (`-db-max-ro-conns`) for a connection opened outside the pool (a
    /// dump's helpers), if one is free now; the connection must not outlive it.
    pub fn try_reader_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.reader_slots).try_acquire_owned().ok()
    }

    /// Runs `f` with a read-only connection on a blocking thread.
    pub async fn with_reader<R, F>(&self, f: F) -> Result<R, DbError>
    where
        F: FnOnce(&Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        let permit = Arc::clone(&self.reader_slots)
            .acquire_owned()
            .await
            .map_err(|_| DbError::Closed)?;
        let gate = Arc::clone(&self.swap_gate).read_owned().await;
        let pool = Arc::clone(&self.readers);
        let running = Arc::clone(&self.running_readers);
        let reader_id = self.next_reader_id.fetch_add(1, Ordering::Relaxed);
        let path = self.path.clone();
        let settings = self.settings.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _gate = gate;
            let pooled = pool.lock().pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    settings::open_reader(&path, &settings).map_err(|source| DbError::Open {
                        what: "a read connection",
                        path: path.clone(),
                        source,
                    })?
                }
            };
            running.lock().insert(reader_id, conn.interrupt_handle());
            let out = f(&conn);
            running.lock().remove(&reader_id);
            // A connection left inside a transaction by a failed reader is not reused.
            if conn.is_autocommit().unwrap_or(false) {
                pool.lock().push(conn);
            }
            Ok(out)
        })
        .await
        .map_err(DbError::ReadTask)?
    }

    /// Replaces the database file with `new_file` (on the same file system), following the
    /// swap protocol (docs/architecture.md, "Install"): stop handing out read connections, wait
    /// for the running readers (interrupting those still running after `grace`), close every
    /// connection, remove the `-wal`/`-shm` files, rename the new file into place, fsync the
    /// directory, and reopen. Writes queued meanwhile run against the new file.
    ///
    /// A failure after the old file is gone leaves the node without a database: that is a
    /// local fault, and the caller must stop the node.
    pub async fn replace_with_file(
        &self,
        new_file: PathBuf,
        grace: Duration,
    ) -> Result<(), DbError> {
        let exclusive =
            match tokio::time::timeout(grace, Arc::clone(&self.swap_gate).write_owned()).await {
                Ok(g) => g,
                Err(_) => {
                    let running: Vec<_> = self.running_readers.lock().values().cloned().collect();
                    tracing::warn!(
                        readers = running.len(),
                        "interrupting readers to swap the database file"
                    );
                    for h in running {
                        h.interrupt();
                    }
                    Arc::clone(&self.swap_gate).write_owned().await
                }
            };
        self.readers.lock().clear();
        let path = self.path.clone();
        let settings = self.settings.clone();
        let swapped = self
            .with_writer(move |conn| -> Result<(), DbError> {
                let failed = |step| move |source| DbError::Swap { step, source };
                conn.close()
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .map_err(failed(SwapStep::CloseWriter))?;
                for suffix in ["-wal", "-shm"] {
                    match std::fs::remove_file(sibling(&path, suffix)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(failed(SwapStep::RemoveWal)(e)),
                    }
                }
                crate::failpoint::crash_point("swap::before_rename");
                std::fs::rename(&new_file, &path).map_err(failed(SwapStep::Rename))?;
                crate::failpoint::crash_point("swap::after_rename_before_dir_fsync");
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(failed(SwapStep::SyncDirectory))?;
                }
                *conn =
                    settings::open_writer(&path, &settings).map_err(|source| DbError::Open {
                        what: "the database after the swap",
                        path: path.clone(),
                        source,
                    })?;
                Ok(())
            })
            .await;
        drop(exclusive);
        swapped?
    }

    /// Copies the WAL back into the database file (a PASSIVE checkpoint) when at least
    /// `CHECKPOINT_FRAMES` frames wait, on a connection of its own, off the writer thread.
    ///
    /// SQLite's auto-checkpoint would run inside the commit that crosses the threshold, on the
    /// writer: the apply of that entry, and every write queued behind it, would wait for the
    /// copy and its two fsyncs, which take hundreds of milliseconds while a backup or a load
    /// writes to the same disk. A PASSIVE checkpoint takes no write lock, so the writer keeps
    /// appending to the WAL meanwhile; it stops at the oldest reader's snapshot. The swap gate
    /// is held shared, so a file swap never finds this connection open. Returns whether it ran.
    pub async fn checkpoint_if_due(&self) -> Result<bool, DbError> {
        self.checkpoint_from(CHECKPOINT_FRAMES).await
    }

    /// A PASSIVE checkpoint now, if any frame waits to be copied back (`POST /reap`).
    /// Returns whether it ran.
    pub async fn checkpoint_now(&self) -> Result<bool, DbError> {
        self.checkpoint_from(1).await
    }

    /// The checkpoint of [`Database::checkpoint_if_due`] when at least `min_frames` wait.
    async fn checkpoint_from(&self, min_frames: u32) -> Result<bool, DbError> {
        let failed = |source| DbError::Checkpoint {
            path: self.path.clone(),
            source,
        };
        let shm = sibling(&self.path, "-shm");
        let pending = super::wal::frames_to_backfill(&shm)
            .with_context(|| format!("read {}", shm.display()))
            .map_err(failed)?;
        if pending < min_frames {
            return Ok(false);
        }
        let gate = Arc::clone(&self.swap_gate).read_owned().await;
        let path = self.path.clone();
        let ran = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
            let _gate = gate;
            let mut conn = Connection::open(
                &path,
                raftlite_ffi::OpenFlags::READ_WRITE
                    | raftlite_ffi::OpenFlags::NO_MUTEX
                    | raftlite_ffi::OpenFlags::NO_FOLLOW,
            )
            .with_context(|| format!("open {} to checkpoint", path.display()))?;
            // A connection finds the WAL when it first reads; before that a checkpoint is a
            // no-op.
            conn.query_text("PRAGMA schema_version")
                .context("read the database header")?;
            let ran = match conn.wal_checkpoint(raftlite_ffi::sys::SQLITE_CHECKPOINT_PASSIVE) {
                Ok(_) => true,
                // Another connection is checkpointing (the snapshot builder, on the writer):
                // the WAL is being taken care of; try again at the next tick.
                Err(e) if e.code() == raftlite_ffi::ErrorCode::Busy => false,
                Err(e) => return Err(e).context("checkpoint the WAL"),
            };
            conn.close().context("close the checkpoint connection")?;
            Ok(ran)
        })
        .await
        .map_err(DbError::ReadTask)?
        .map_err(failed)?;
        if ran {
            self.wal_checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        Ok(ran)
    }

    /// Stops the writer thread after the jobs already queued, closes every connection and
    /// waits for the writer to finish. Later calls fail with "the database is closed".
    pub fn close(&self) {
        self.writer_tx.lock().take();
        if let Some(h) = self.writer_thread.lock().take() {
            if h.join().is_err() {
                tracing::error!("the writer thread panicked");
            }
        }
        self.readers.lock().clear();
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a connection of this process holds SQLite's checkpoint lock on the database
    /// whose wal-index is `shm`: a POSIX write lock over byte 121 of that file (the lock bytes
    /// start at 120: the write lock, the checkpoint lock, the recovery lock, then the read
    /// marks), as `/proc/locks` lists it. The kernel merges adjacent locks of one process, so
    /// the writer's lock on byte 120 may show in the same range.
    fn checkpoint_lock_held(shm: &Path) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(inode) = std::fs::metadata(shm).map(|m| m.ino().to_string()) else {
            return false;
        };
        let pid = std::process::id().to_string();
        let locks = std::fs::read_to_string("/proc/locks").expect("read /proc/locks");
        locks.lines().any(|line| {
            // `1: POSIX  ADVISORY  WRITE 4242 fe:00:1234 120 121` (`->` marks a waiter).
            let f: Vec<&str> = line.split_whitespace().filter(|w| *w != "->").collect();
            let covers = |start: &str, end: &str| {
                start.parse::<u64>().is_ok_and(|s| s <= 121)
                    && (end == "EOF" || end.parse::<u64>().is_ok_and(|e| e >= 121))
            };
            f.len() == 8
                && !line.contains("->")
                && f[3] == "WRITE"
                && f[4] == pid
                && f[5].rsplit(':').next() == Some(inode.as_str())
                && covers(f[6], f[7])
        })
    }

    /// `writer_activity` counts the job the writer begins and says how long it has been
    /// running, then zero once it ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writer_activity_shows_the_running_job() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            Arc::new(Database::open(dir.path().join("db.sqlite"), DbSettings::default()).unwrap());
        db.with_writer(|_| ()).await.unwrap();
        let activity = || (db.writer_activity().jobs(), db.writer_activity().busy_for());
        let (jobs_before, idle) = activity();
        assert_eq!(idle, Duration::ZERO);
        let (release, released) = std::sync::mpsc::channel::<()>();
        let job = {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                db.with_writer(move |_| released.recv_timeout(Duration::from_secs(20)))
                    .await
                    .unwrap()
            })
        };
        // Bounded: the job begins, then its running time grows while it waits for the test.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while activity().1 < Duration::from_millis(20) {
            assert!(std::time::Instant::now() < deadline, "{:?}", activity());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(activity().0, jobs_before + 1);
        release.send(()).unwrap();
        job.await.unwrap().unwrap();
        assert_eq!(activity(), (jobs_before + 1, Duration::ZERO));
    }

    /// While another connection checkpoints (the snapshot builder does, on the writer), the
    /// background checkpoint finds SQLite's checkpoint lock taken: that is "not now", not an
    /// error (it used to log "database is locked" after every large load).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkpoint_running_elsewhere_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let db = Database::open(&path, DbSettings::default()).unwrap();
        db.with_writer(|conn| {
            conn.execute_batch(
                "CREATE TABLE t(x); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 \
                 FROM c WHERE i < 3000) INSERT INTO t SELECT randomblob(3000) FROM c;",
            )
        })
        .await
        .unwrap()
        .unwrap();
        // The writer holds the write lock; another connection's FULL checkpoint takes the
        // checkpoint lock, then waits for the write lock.
        db.with_writer(|conn| conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES(1)"))
            .await
            .unwrap()
            .unwrap();
        let other = {
            let path = path.clone();
            std::thread::spawn(move || {
                let conn = Connection::open(&path, raftlite_ffi::OpenFlags::READ_WRITE).unwrap();
                conn.busy_timeout(20_000).unwrap();
                conn.query_text("PRAGMA schema_version").unwrap();
                conn.wal_checkpoint(raftlite_ffi::sys::SQLITE_CHECKPOINT_FULL)
            })
        };
        // Handshake: the other connection holds the checkpoint lock (then it waits for the
        // writer, which keeps its transaction open until the end of the test).
        let shm = sibling(&path, "-shm");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !checkpoint_lock_held(&shm) {
            assert!(
                std::time::Instant::now() < deadline && !other.is_finished(),
                "the other connection never took the checkpoint lock"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            !other.is_finished(),
            "the other checkpoint waits for the writer"
        );
        assert!(!db.checkpoint_if_due().await.unwrap(), "not now");
        assert_eq!(db.wal_checkpoints.load(Ordering::Relaxed), 0);
        db.with_writer(|conn| conn.execute_batch("COMMIT"))
            .await
            .unwrap()
            .unwrap();
        other.join().unwrap().unwrap();
        db.close();
    }
}
