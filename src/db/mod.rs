//! The SQLite database a node owns: one writer connection and a pool of read-only connections.
//!
//! Invariants:
//! - Exactly one connection writes: the writer, owned by a dedicated thread. Every write runs
//!   there, in the order it was submitted, so the apply order is the submission order.
//! - Readers are read-only connections (WAL mode lets them read while the writer writes). They
//!   are handed out from a pool, at most `max_readers` at a time, and run on tokio's blocking
//!   threads.
//! - Every connection gets the same settings (see [`settings`]): foreign keys as configured
//!   (off by default, as in rqlite, although the bundled build turns them on), double-quoted
//!   strings allowed, `trusted_schema` off, extension loading off, `mmap_size=0` so that RSS
//!   measures what we allocate.

pub mod error;
pub mod execute;
pub mod request;
pub mod settings;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use anyhow::Context as _;
use crossbeam_channel as channel;
use parking_lot::Mutex;
use raftlite_ffi::Connection;
use tokio::sync::{oneshot, Semaphore};

pub use settings::DbSettings;

/// The name of the database file inside the data directory (rqlite uses the same).
pub const DB_FILE_NAME: &str = "db.sqlite";

type WriterJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// A node's database: the writer thread and the reader pool.
pub struct Database {
    path: PathBuf,
    settings: DbSettings,
    writer_tx: Mutex<Option<channel::Sender<WriterJob>>>,
    writer_thread: Mutex<Option<thread::JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_slots: Arc<Semaphore>,
}

impl Database {
    /// Opens (creating if needed) the database at `path` and starts the writer thread.
    pub fn open(path: impl AsRef<Path>, settings: DbSettings) -> anyhow::Result<Database> {
        let path = path.as_ref().to_path_buf();
        let writer = settings::open_writer(&path, &settings)
            .with_context(|| format!("open database {}", path.display()))?;
        let (writer_tx, writer_rx) = channel::unbounded::<WriterJob>();
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
            .context("start the writer thread")?;
        let max_readers = settings.max_readers.max(1);
        Ok(Database {
            path,
            settings,
            writer_tx: Mutex::new(Some(writer_tx)),
            writer_thread: Mutex::new(Some(handle)),
            readers: Arc::new(Mutex::new(Vec::new())),
            reader_slots: Arc::new(Semaphore::new(max_readers)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn settings(&self) -> &DbSettings {
        &self.settings
    }

    /// Runs `f` on the writer thread, after every job submitted before it.
    pub async fn with_writer<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        F: FnOnce(&mut Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: WriterJob = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        let sender = self.writer_tx.lock().clone();
        sender
            .ok_or_else(|| anyhow::anyhow!("the database is closed"))?
            .send(job)
            .map_err(|_| anyhow::anyhow!("the database is closed"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the writer thread stopped"))
    }

    /// Runs `f` with a read-only connection on a blocking thread.
    pub async fn with_reader<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        F: FnOnce(&Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        let permit = Arc::clone(&self.reader_slots)
            .acquire_owned()
            .await
            .map_err(|_| anyhow::anyhow!("the database is closed"))?;
        let pool = Arc::clone(&self.readers);
        let path = self.path.clone();
        let settings = self.settings.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = pool.lock().pop();
            let conn = match pooled {
                Some(c) => c,
                None => settings::open_reader(&path, &settings)
                    .with_context(|| format!("open a read connection to {}", path.display()))?,
            };
            let out = f(&conn);
            // A connection left inside a transaction by a failed reader is not reused.
            if conn.is_autocommit().unwrap_or(false) {
                pool.lock().push(conn);
            }
            Ok(out)
        })
        .await
        .context("reader task")?
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
