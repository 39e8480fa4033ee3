//! Databases whose main file is a Rust object: [`Connection::open_page_store`] opens a
//! connection on a [`PageStore`] instead of a file, through one VFS (`raftlite-pages`)
//! registered once per process.
//!
//! The backup engine uses it to run SQLite's own page copier and clean-up against a store
//! that keeps only the pages it needs (see `raftlite::store::backup::one_pass`): SQLite
//! decides every byte, the store decides what is kept.
//!
//! Scope, and the invariants the VFS keeps:
//! - Only the main database file is a store. Journals, statement journals and temporary files
//!   are the default VFS's (opened through it, in the same file memory). A store connection
//!   is meant for `journal_mode=OFF` and a rollback-mode header: the store has no shared
//!   memory, so a WAL-mode header cannot be opened (SQLite reports `SQLITE_CANTOPEN`).
//! - Locks are no-ops: one connection uses a store at a time (the caller's contract), and no
//!   other process can reach it.
//! - Sector size and device characteristics are those of the default unix VFS (4096,
//!   powersafe overwrite), so the pager makes the same decisions as on a file.
//! - A store file owns an `Arc` of its store from `xOpen` to `xClose`; the name a connection
//!   is opened with is registered only during `sqlite3_open_v2`. The callbacks never panic
//!   into C: a store error becomes `SQLITE_IOERR_*`.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use libsqlite3_sys as sys;

use crate::connection::{Connection, OpenFlags};
use crate::error::{Error, Result};
use crate::vfs_passthrough::{self, ShimHeader};

/// The main file of a database opened with [`Connection::open_page_store`]. SQLite reads and
/// writes whole pages (and the 100-byte header); offsets are in bytes.
pub trait PageStore: Send + Sync {
    /// Fills `buf` from `offset`. Returns how many bytes were there: fewer than `buf.len()`
    /// past the end of the file (SQLite zero-fills the rest). An error fails SQLite's read.
    fn read(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Writes `data` at `offset`, growing the file if needed.
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()>;
    /// Cuts the file to `size` bytes.
    fn truncate(&self, size: u64) -> std::io::Result<()>;
    /// The file's size in bytes.
    fn size(&self) -> u64;
}

/// Names of stores reachable through the VFS, only while a connection opens on them.
fn opening() -> &'static Mutex<HashMap<CString, Arc<dyn PageStore>>> {
    static OPENING: OnceLock<Mutex<HashMap<CString, Arc<dyn PageStore>>>> = OnceLock::new();
    OPENING.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Store names start with this: a directory that never exists, so the default VFS finds no
/// journal or WAL beside a store.
const NAME_PREFIX: &str = "/raftlite-page-store/";

const VFS_NAME: &CStr = c"raftlite-pages";

impl Connection {
    /// Opens a read-write connection whose main database file is `store` (see the module
    /// docs for what such a connection supports).
    pub fn open_page_store(store: Arc<dyn PageStore>) -> Result<Connection> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        register_vfs()?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NAME_PREFIX}{n}");
        let key = CString::new(name.clone()).map_err(|_| Error::interior_nul("store name"))?;
        lock(opening()).insert(key.clone(), store);
        let opened = Connection::open_with_vfs(
            Path::new(&name),
            OpenFlags::READ_WRITE | OpenFlags::CREATE | OpenFlags::NO_MUTEX,
            Some(VFS_NAME),
        );
        // The open file (if any) holds its own reference from here on.
        lock(opening()).remove(&key);
        opened
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A store's file: `base` first, so SQLite's `sqlite3_file*` is a pointer to it.
#[repr(C)]
struct StoreFile {
    base: sys::sqlite3_file,
    /// From `Box::into_raw(Box::new(arc))`, released by `xClose`.
    store: *mut Arc<dyn PageStore>,
}

fn register_vfs() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), c_int>> = OnceLock::new();
    let registered = REGISTERED.get_or_init(|| {
        // SAFETY: idempotent and thread-safe.
        let rc = unsafe { sys::sqlite3_initialize() };
        if rc != sys::SQLITE_OK {
            return Err(rc);
        }
        // SAFETY: a null name asks for the default VFS, which lives for the process.
        let inner = unsafe { sys::sqlite3_vfs_find(ptr::null()) };
        if inner.is_null() {
            return Err(sys::SQLITE_ERROR);
        }
        // SAFETY: `inner` is valid (above).
        let inner_ref = unsafe { &*inner };
        let size =
            std::mem::size_of::<StoreFile>().max(usize::try_from(inner_ref.szOsFile).unwrap_or(0));
        let base = sys::sqlite3_vfs {
            iVersion: 1,
            szOsFile: c_int::try_from(size).unwrap_or(c_int::MAX),
            mxPathname: inner_ref.mxPathname,
            pNext: ptr::null_mut(),
            zName: VFS_NAME.as_ptr(),
            pAppData: ptr::null_mut(),
            xOpen: Some(vfs_open),
            xDelete: Some(vfs_passthrough::delete),
            xAccess: Some(vfs_access),
            xFullPathname: Some(vfs_full_pathname),
            xDlOpen: None,
            xDlError: None,
            xDlSym: None,
            xDlClose: None,
            xRandomness: Some(vfs_passthrough::randomness),
            xSleep: Some(vfs_passthrough::sleep),
            xCurrentTime: Some(vfs_passthrough::current_time),
            xGetLastError: None,
            xCurrentTimeInt64: None,
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        };
        // The VFS is a bare header: everything but the main file goes to `inner`.
        let vfs = Box::into_raw(Box::new(ShimHeader { base, inner }));
        // SAFETY: `vfs` is fully initialised and leaked: it outlives every connection.
        // `makeDflt = 0`: only connections that name it use it.
        let rc = unsafe { sys::sqlite3_vfs_register(&mut (*vfs).base, 0) };
        if rc != sys::SQLITE_OK {
            return Err(rc);
        }
        Ok(())
    });
    match registered {
        Ok(_) => Ok(()),
        Err(rc) => Err(Error::new(*rc, "register the page store VFS")),
    }
}

static STORE_METHODS: sys::sqlite3_io_methods = sys::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(store_close),
    xRead: Some(store_read),
    xWrite: Some(store_write),
    xTruncate: Some(store_truncate),
    xSync: Some(store_sync),
    xFileSize: Some(store_file_size),
    xLock: Some(store_lock),
    xUnlock: Some(store_lock),
    xCheckReservedLock: Some(store_check_reserved_lock),
    xFileControl: Some(store_file_control),
    xSectorSize: Some(store_sector_size),
    xDeviceCharacteristics: Some(store_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn vfs_open(
    vfs: *mut sys::sqlite3_vfs,
    name: sys::sqlite3_filename,
    file: *mut sys::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    if flags & sys::SQLITE_OPEN_MAIN_DB == 0 || name.is_null() {
        // Journals and temporary files: the default VFS's, in the memory SQLite gave us
        // (`szOsFile` is at least the default VFS's).
        // SAFETY: registered VFS; arguments passed on unchanged.
        return unsafe { vfs_passthrough::open(vfs, name, file, flags, out_flags) };
    }
    // SAFETY: SQLite passes a NUL-terminated name that lives as long as the file.
    let key = unsafe { CStr::from_ptr(name) };
    let Some(store) = lock(opening()).get(key).cloned() else {
        return sys::SQLITE_CANTOPEN;
    };
    let boxed = Box::into_raw(Box::new(store));
    // SAFETY: `file` points to at least `szOsFile` writable bytes, enough for a StoreFile;
    // setting pMethods tells SQLite to call xClose.
    unsafe {
        ptr::write(
            file as *mut StoreFile,
            StoreFile {
                base: sys::sqlite3_file {
                    pMethods: &STORE_METHODS,
                },
                store: boxed,
            },
        );
        if !out_flags.is_null() {
            *out_flags = flags;
        }
    }
    sys::SQLITE_OK
}

unsafe extern "C" fn vfs_access(
    vfs: *mut sys::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes a NUL-terminated name.
    if unsafe { CStr::from_ptr(name) }
        .to_bytes()
        .starts_with(NAME_PREFIX.as_bytes())
    {
        // No journal, WAL or anything else exists beside a store.
        // SAFETY: valid out-pointer.
        unsafe { *out = 0 };
        return sys::SQLITE_OK;
    }
    // SAFETY: registered VFS; delegation.
    unsafe { vfs_passthrough::access(vfs, name, flags, out) }
}

unsafe extern "C" fn vfs_full_pathname(
    vfs: *mut sys::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: SQLite passes a NUL-terminated name.
    let given = unsafe { CStr::from_ptr(name) }.to_bytes_with_nul();
    if given.starts_with(NAME_PREFIX.as_bytes()) {
        // A store's name is already its full name.
        if given.len() > usize::try_from(n_out).unwrap_or(0) {
            return sys::SQLITE_CANTOPEN;
        }
        // SAFETY: `out` has room for `n_out` bytes, checked above.
        unsafe { ptr::copy_nonoverlapping(given.as_ptr() as *const c_char, out, given.len()) };
        return sys::SQLITE_OK;
    }
    // SAFETY: registered VFS; delegation.
    unsafe { vfs_passthrough::full_pathname(vfs, name, n_out, out) }
}

/// # Safety
/// `file` must be a `StoreFile` opened by `vfs_open` and not yet closed.
unsafe fn store_of<'a>(file: *mut sys::sqlite3_file) -> &'a dyn PageStore {
    // SAFETY: the caller's contract; the Arc lives until xClose.
    unsafe { &**(*(file as *mut StoreFile)).store }
}

unsafe extern "C" fn store_close(file: *mut sys::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file once; the box came from `vfs_open`.
    unsafe {
        let f = file as *mut StoreFile;
        drop(Box::from_raw((*f).store));
        (*f).store = ptr::null_mut();
    }
    sys::SQLITE_OK
}

unsafe extern "C" fn store_read(
    file: *mut sys::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: sys::sqlite3_int64,
) -> c_int {
    let len = usize::try_from(amount).unwrap_or(0);
    // SAFETY: SQLite gives a buffer of `amount` writable bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, len) };
    let Ok(offset) = u64::try_from(offset) else {
        return sys::SQLITE_IOERR_READ;
    };
    // SAFETY: an open store file.
    match unsafe { store_of(file) }.read(offset, out) {
        Ok(n) if n >= len => sys::SQLITE_OK,
        Ok(n) => {
            out[n..].fill(0);
            sys::SQLITE_IOERR_SHORT_READ
        }
        Err(_) => sys::SQLITE_IOERR_READ,
    }
}

unsafe extern "C" fn store_write(
    file: *mut sys::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: sys::sqlite3_int64,
) -> c_int {
    let len = usize::try_from(amount).unwrap_or(0);
    // SAFETY: SQLite gives `amount` readable bytes.
    let data = unsafe { std::slice::from_raw_parts(buf as *const u8, len) };
    let Ok(offset) = u64::try_from(offset) else {
        return sys::SQLITE_IOERR_WRITE;
    };
    // SAFETY: an open store file.
    match unsafe { store_of(file) }.write(offset, data) {
        Ok(()) => sys::SQLITE_OK,
        Err(_) => sys::SQLITE_IOERR_WRITE,
    }
}

unsafe extern "C" fn store_truncate(
    file: *mut sys::sqlite3_file,
    size: sys::sqlite3_int64,
) -> c_int {
    let Ok(size) = u64::try_from(size) else {
        return sys::SQLITE_IOERR_TRUNCATE;
    };
    // SAFETY: an open store file.
    match unsafe { store_of(file) }.truncate(size) {
        Ok(()) => sys::SQLITE_OK,
        Err(_) => sys::SQLITE_IOERR_TRUNCATE,
    }
}

unsafe extern "C" fn store_sync(_file: *mut sys::sqlite3_file, _flags: c_int) -> c_int {
    sys::SQLITE_OK
}

unsafe extern "C" fn store_file_size(
    file: *mut sys::sqlite3_file,
    out: *mut sys::sqlite3_int64,
) -> c_int {
    // SAFETY: an open store file; `out` is a valid out-pointer.
    unsafe { *out = i64::try_from(store_of(file).size()).unwrap_or(i64::MAX) };
    sys::SQLITE_OK
}

unsafe extern "C" fn store_lock(_file: *mut sys::sqlite3_file, _level: c_int) -> c_int {
    sys::SQLITE_OK
}

unsafe extern "C" fn store_check_reserved_lock(
    _file: *mut sys::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    // SAFETY: valid out-pointer.
    unsafe { *out = 0 };
    sys::SQLITE_OK
}

unsafe extern "C" fn store_file_control(
    _file: *mut sys::sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    sys::SQLITE_NOTFOUND
}

unsafe extern "C" fn store_sector_size(_file: *mut sys::sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn store_device_characteristics(_file: *mut sys::sqlite3_file) -> c_int {
    sys::SQLITE_IOCAP_POWERSAFE_OVERWRITE
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole file in memory: enough to check SQLite runs on a store.
    #[derive(Default)]
    struct MemStore(Mutex<Vec<u8>>);

    impl PageStore for MemStore {
        fn read(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
            let data = lock(&self.0);
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            Ok(n)
        }
        fn write(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
            let mut data = lock(&self.0);
            let start = usize::try_from(offset).expect("offset");
            if data.len() < start + bytes.len() {
                data.resize(start + bytes.len(), 0);
            }
            data[start..start + bytes.len()].copy_from_slice(bytes);
            Ok(())
        }
        fn truncate(&self, size: u64) -> std::io::Result<()> {
            lock(&self.0).truncate(usize::try_from(size).expect("size"));
            Ok(())
        }
        fn size(&self) -> u64 {
            lock(&self.0).len() as u64
        }
    }

    #[test]
    fn a_database_lives_in_its_store_across_connections() {
        let store = Arc::new(MemStore::default());
        let mut conn = Connection::open_page_store(store.clone()).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode=OFF; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);",
        )
        .expect("write");
        conn.close().expect("close");
        assert!(store.size() >= 2 * 4096, "two pages: {}", store.size());
        assert_eq!(&lock(&store.0)[..16], b"SQLite format 3\0");
        let again = Connection::open_page_store(store.clone()).expect("reopen");
        assert_eq!(
            again.query_i64("SELECT sum(x) FROM t").expect("sum"),
            Some(6)
        );
        // Nothing was written beside the store.
        assert!(!Path::new("/raftlite-page-store").exists());
    }

    /// A store whose reads fail: SQLite reports an I/O error instead of reading garbage.
    struct Failing;
    impl PageStore for Failing {
        fn read(&self, _: u64, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("no"))
        }
        fn write(&self, _: u64, _: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
        fn truncate(&self, _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn size(&self) -> u64 {
            8192
        }
    }

    #[test]
    fn a_failing_store_fails_the_statement() {
        // SQLite may read the header while opening, or at the first statement.
        let err = match Connection::open_page_store(Arc::new(Failing)) {
            Err(e) => e,
            Ok(conn) => conn
                .query_i64("SELECT count(*) FROM sqlite_schema")
                .expect_err("read fails"),
        };
        assert_eq!(err.primary_code(), sys::SQLITE_IOERR, "{err}");
    }
}
