//! The file backend the engine writes through: a small trait, the real directory, and a
//! simulated one that injects crashes.
//!
//! The engine never touches `std::fs` directly. Everything goes through [`LogDir`] (one flat
//! directory) and [`LogFile`] (positional I/O on one file), so tests and the benchmark can
//! watch its fsyncs ([`SyncHookDir`]) and the crash tests can swap in [`SimDir`], an in-memory
//! file system that keeps two images:
//!
//! - the **live** image: what a process would read back right now;
//! - the **durable** image: what survives power loss. File contents reach it at `sync_data`,
//!   directory entries (create, rename, remove) at `sync_dir`.
//!
//! A [`SimDir`] can be told to fail at its Nth mutating operation (write, set_len, sync,
//! create, rename, remove, sync_dir). From then on every operation fails, as if the machine
//! had died, and [`SimDir::crash_image`] builds the directory a restarted process would find.
//! It can also be made **full** ([`SimDir::set_full`]): while it is, every write stores the
//! first half of its bytes and fails with `StorageFull` (ENOSPC), and everything else works,
//! as on a real file system that has run out of blocks.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// One open file of the log directory. All methods take `&self` so the writer, the flusher
/// thread and readers can share a file behind an `Arc`.
pub trait LogFile: Send + Sync + std::fmt::Debug {
    /// Reads exactly `buf.len()` bytes at `offset`, or fails.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Current size of the file in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data (and the metadata needed to read it, such as its length) durable:
    /// `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
}

/// One flat directory holding the log's files.
pub trait LogDir: Send + Sync + std::fmt::Debug {
    /// Names of the regular files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>>;
    /// Creates a file (emptying it if it exists) for reading and writing.
    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>>;
    /// Reads a whole file.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Removes a file.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// How error messages name the file `name`: its path, where the directory has one, so an
    /// operator knows which file is meant.
    fn file_path(&self, name: &str) -> String {
        name.to_owned()
    }
}

/// The real directory on disk.
#[derive(Debug)]
pub struct OsDir {
    path: PathBuf,
}

impl OsDir {
    /// Uses `path` as the log directory, creating it if needed.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug)]
struct OsFile(File);

impl LogFile for OsFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl LogDir for OsDir {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path.join(name))?;
        Ok(Arc::new(OsFile(file)))
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.path.join(name))?;
        Ok(Arc::new(OsFile(file)))
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.path.join(name))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path.join(name))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path.join(from), self.path.join(to))
    }
    fn sync_dir(&self) -> io::Result<()> {
        // On Linux a directory opened read-only can be fsynced; that persists its entries.
        File::open(&self.path)?.sync_all()
    }
    fn file_path(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }
}

/// A hook [`SyncHookDir`] runs before every file sync; an error fails the sync.
pub type SyncHook = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// A directory that passes every call to another and runs a hook before each file's
/// `sync_data`: the benchmark counts the engine's fsyncs with it, the group-commit test holds
/// one in progress while it queues appends behind it.
pub struct SyncHookDir {
    inner: Arc<dyn LogDir>,
    before_sync: SyncHook,
}

impl SyncHookDir {
    pub fn new(inner: Arc<dyn LogDir>, before_sync: SyncHook) -> Self {
        Self { inner, before_sync }
    }

    fn wrap(&self, inner: Arc<dyn LogFile>) -> Arc<dyn LogFile> {
        Arc::new(SyncHookFile {
            inner,
            before_sync: Arc::clone(&self.before_sync),
        })
    }
}

impl std::fmt::Debug for SyncHookDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHookDir")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

struct SyncHookFile {
    inner: Arc<dyn LogFile>,
    before_sync: SyncHook,
}

impl std::fmt::Debug for SyncHookFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHookFile")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl LogFile for SyncHookFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        (self.before_sync)()?;
        self.inner.sync_data()
    }
}

impl LogDir for SyncHookDir {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        self.inner.open(name).map(|f| self.wrap(f))
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        self.inner.create(name).map(|f| self.wrap(f))
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.inner.read(name)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
    fn file_path(&self, name: &str) -> String {
        self.inner.file_path(name)
    }
}

/// Which image of a crashed [`SimDir`] a restarted process finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashImage {
    /// Only what was synced: the pessimistic disk.
    DurableOnly,
    /// Everything that was written, as if the kernel flushed it all just before the power went,
    /// except that the operation that failed (if it was a write) persisted only its first half.
    LiveWithTornWrite,
}

#[derive(Debug, Clone, Default)]
struct SimInode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct SimState {
    inodes: Vec<SimInode>,
    live_dir: BTreeMap<String, usize>,
    durable_dir: BTreeMap<String, usize>,
    /// Mutating operations performed so far.
    ops: u64,
    /// Fail the operation with this number (0-based), and everything after it.
    crash_at: Option<u64>,
    crashed: bool,
    /// Writes fail with `StorageFull` after storing half their bytes.
    full: bool,
}

impl SimState {
    /// Counts one mutating operation; fails it if the crash point is reached.
    fn step(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(crashed_error());
        }
        let op = self.ops;
        self.ops += 1;
        if self.crash_at == Some(op) {
            self.crashed = true;
            return Err(crashed_error());
        }
        Ok(())
    }
}

fn crashed_error() -> io::Error {
    io::Error::other("simulated crash")
}

/// An in-memory directory with a live and a durable image and a programmable crash point.
#[derive(Debug, Clone, Default)]
pub struct SimDir {
    state: Arc<Mutex<SimState>>,
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<SimState>>,
    inode: usize,
}

impl SimDir {
    /// An empty directory that never crashes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the mutating operation number `op` (0-based, counted from now on the whole
    /// directory's history) fail, and every operation after it.
    pub fn crash_at(&self, op: u64) {
        self.state.lock().crash_at = Some(op);
    }

    /// Mutating operations performed so far (including a failed one).
    pub fn op_count(&self) -> u64 {
        self.state.lock().ops
    }

    /// Makes the directory full (every write fails with `StorageFull`), or gives it room again.
    pub fn set_full(&self, full: bool) {
        self.state.lock().full = full;
    }

    /// Whether the crash point was hit.
    pub fn has_crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// The directory a restarted process would see, as a fresh, healthy [`SimDir`].
    pub fn crash_image(&self, image: CrashImage) -> SimDir {
        let state = self.state.lock();
        let dir = match image {
            CrashImage::DurableOnly => &state.durable_dir,
            CrashImage::LiveWithTornWrite => &state.live_dir,
        };
        let mut fresh = SimState::default();
        for (name, &inode) in dir {
            let bytes = match image {
                CrashImage::DurableOnly => state.inodes[inode].durable.clone(),
                CrashImage::LiveWithTornWrite => state.inodes[inode].live.clone(),
            };
            fresh.inodes.push(SimInode {
                live: bytes.clone(),
                durable: bytes,
            });
            let new_inode = fresh.inodes.len() - 1;
            fresh.live_dir.insert(name.clone(), new_inode);
            fresh.durable_dir.insert(name.clone(), new_inode);
        }
        SimDir {
            state: Arc::new(Mutex::new(fresh)),
        }
    }

    /// Replaces a file's bytes in both images (to plant corruption in tests).
    pub fn put_file(&self, name: &str, bytes: Vec<u8>) {
        let mut state = self.state.lock();
        state.inodes.push(SimInode {
            live: bytes.clone(),
            durable: bytes,
        });
        let inode = state.inodes.len() - 1;
        state.live_dir.insert(name.to_owned(), inode);
        state.durable_dir.insert(name.to_owned(), inode);
    }

    /// A file's live bytes, if it exists.
    pub fn file_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.state.lock();
        state
            .live_dir
            .get(name)
            .map(|&i| state.inodes[i].live.clone())
    }

    /// Removes a file from both images (to simulate a lost file in tests).
    pub fn delete_file(&self, name: &str) {
        let mut state = self.state.lock();
        state.live_dir.remove(name);
        state.durable_dir.remove(name);
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl LogDir for SimDir {
    fn list(&self) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        if state.crashed {
            return Err(crashed_error());
        }
        Ok(state.live_dir.keys().cloned().collect())
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let state = self.state.lock();
        if state.crashed {
            return Err(crashed_error());
        }
        let inode = *state.live_dir.get(name).ok_or_else(|| not_found(name))?;
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            inode,
        }))
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let mut state = self.state.lock();
        state.step()?;
        // A new inode each time, like O_TRUNC on a fresh file; its directory entry is durable
        // only after `sync_dir`.
        state.inodes.push(SimInode::default());
        let inode = state.inodes.len() - 1;
        state.live_dir.insert(name.to_owned(), inode);
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            inode,
        }))
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let state = self.state.lock();
        if state.crashed {
            return Err(crashed_error());
        }
        let inode = *state.live_dir.get(name).ok_or_else(|| not_found(name))?;
        Ok(state.inodes[inode].live.clone())
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.state.lock();
        state.step()?;
        state
            .live_dir
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.state.lock();
        state.step()?;
        let inode = state.live_dir.remove(from).ok_or_else(|| not_found(from))?;
        state.live_dir.insert(to.to_owned(), inode);
        Ok(())
    }
    fn sync_dir(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        state.step()?;
        state.durable_dir = state.live_dir.clone();
        Ok(())
    }
}

impl LogFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let state = self.state.lock();
        if state.crashed {
            return Err(crashed_error());
        }
        let data = &state.inodes[self.inode].live;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| data.get(start..end))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file"))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let was_crashed = state.crashed;
        let mut result = state.step();
        // (Writing nothing needs no room, as on a real file system.)
        if result.is_ok() && state.full && !buf.is_empty() {
            result = Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "simulated full disk",
            ));
        }
        let written = match result {
            Ok(()) => buf,
            // A full disk takes what fits: the first half, here.
            Err(_) if state.full && !was_crashed => &buf[..buf.len() / 2],
            // The write that hits the crash point lands half-way in the live image: that is
            // the torn write `CrashImage::LiveWithTornWrite` shows.
            Err(_) if !was_crashed => &buf[..buf.len() / 2],
            Err(e) => return Err(e),
        };
        let data = &mut state.inodes[self.inode].live;
        if data.len() < start + written.len() {
            data.resize(start + written.len(), 0);
        }
        data[start..start + written.len()].copy_from_slice(written);
        result
    }
    fn size(&self) -> io::Result<u64> {
        let state = self.state.lock();
        Ok(state.inodes[self.inode].live.len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.step()?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        state.inodes[self.inode].live.resize(len, 0);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        state.step()?;
        let inode = &mut state.inodes[self.inode];
        inode.durable = inode.live.clone();
        Ok(())
    }
}
