//! The VFS methods raftlite's VFS shims (`deterministic.rs`, `page_store.rs`) pass straight
//! through to the VFS they wrap, with that VFS's own pointer. Files a shim opens through them
//! are the wrapped VFS's files (same `szOsFile`, same io methods).
//!
//! Invariant: every shim struct is `#[repr(C)]` and starts with the fields of [`ShimHeader`]
//! (`base`, then `inner`), so the `sqlite3_vfs*` SQLite passes is a pointer to a header.

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use libsqlite3_sys as sys;

/// The start of every shim: the VFS SQLite sees, then the VFS it wraps.
#[repr(C)]
pub(crate) struct ShimHeader {
    pub(crate) base: sys::sqlite3_vfs,
    pub(crate) inner: *mut sys::sqlite3_vfs,
}

/// The wrapped VFS of a shim.
///
/// # Safety
/// `vfs` must point to a registered shim that starts with a [`ShimHeader`]; the wrapped VFS
/// lives for the process.
pub(crate) unsafe fn inner_of<'a>(
    vfs: *mut sys::sqlite3_vfs,
) -> (*mut sys::sqlite3_vfs, &'a sys::sqlite3_vfs) {
    // SAFETY: the caller's contract.
    unsafe {
        let inner = (*(vfs as *const ShimHeader)).inner;
        (inner, &*inner)
    }
}

pub(crate) unsafe extern "C" fn open(
    vfs: *mut sys::sqlite3_vfs,
    name: sys::sqlite3_filename,
    file: *mut sys::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: our VFS pointer; arguments are SQLite's, passed on unchanged.
    let (wrapped, inner) = unsafe { inner_of(vfs) };
    match inner.xOpen {
        // SAFETY: delegation with the wrapped VFS's pointer.
        Some(f) => unsafe { f(wrapped, name, file, flags, out_flags) },
        None => sys::SQLITE_ERROR,
    }
}

pub(crate) unsafe extern "C" fn delete(
    vfs: *mut sys::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    // SAFETY: as in `open`.
    let (wrapped, inner) = unsafe { inner_of(vfs) };
    match inner.xDelete {
        // SAFETY: delegation.
        Some(f) => unsafe { f(wrapped, name, sync_dir) },
        None => sys::SQLITE_ERROR,
    }
}

pub(crate) unsafe extern "C" fn access(
    vfs: *mut sys::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    // SAFETY: as in `open`.
    let (wrapped, inner) = unsafe { inner_of(vfs) };
    match inner.xAccess {
        // SAFETY: delegation.
        Some(f) => unsafe { f(wrapped, name, flags, out) },
        None => sys::SQLITE_ERROR,
    }
}

pub(crate) unsafe extern "C" fn full_pathname(
    vfs: *mut sys::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: as in `open`.
    let (wrapped, inner) = unsafe { inner_of(vfs) };
    match inner.xFullPathname {
        // SAFETY: delegation.
        Some(f) => unsafe { f(wrapped, name, n_out, out) },
        None => sys::SQLITE_ERROR,
    }
}

pub(crate) unsafe extern "C" fn dl_open(
    vfs: *mut sys::sqlite3_vfs,
    name: *const c_char,
) -> *mut c_void {
    // SAFETY: as in `open`.
    let (wrapped, inner) = unsafe { inner_of(vfs) };
    match inner.xDlOpen {
        // SAFETY: delegation.
        Some(f) => unsafe { f(wrapped, name) },
        None => ptr::null_mut(),
    }
}

pub(crate) unsafe extern "C" fn dl_error(vfs: *mut sys::sqlite3_vfs, n: c_int, msg: *mut c_char) {
    // SAFETY: as in `open`.
    let (wrapped, inner) = unsafe { inner_of(vfs) };
    if let Some(f) = inner.xDlError {
        // SAFETY: delegation.
        unsafe { f(wrapped, n, msg) }
    }
}

pub(crate) type DlSym = unsafe extern "C" fn(*mut sys::sqlite3_vfs, *mut c_void, *const c_char);

pub(crate) unsafe extern "C" fn dl_sym(
    vfs: *mut sys::sqlite3_vfs,
    handle: *mut c_void,
    symbol: *const c_char,
) -> Option<DlSym> {
    // SAFETY: as in `open`.
    let (wrapped, inner) = unsafe { inner_of(vfs) };
    match inner.xDlSym {
        // SAFETY: delegation.
        Some(f) => unsafe { f(wrapped, handle, symbol) },
        None => None,
    }
}

pub(crate) unsafe extern "C" fn dl_close(vfs: *mut sys::sqlite3_vfs, handle: *mut c_void) {
    // SAFETY: as in `open`.
    let (wrapped, inner) = unsafe { inner_of(vfs) };
    if let Some(f) = inner.xDlClose {
        // SAFETY: delegation.
        unsafe { f(wrapped, handle) }
    }
}

pub(crate) unsafe extern "C" fn randomness(
    vfs: *mut sys::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: as in `open`.
    let (wrapped, inner) = unsafe { inner_of(vfs) };
    match inner.xRandomness {
        // SAFETY: delegation.
        Some(f) => unsafe { f(wrapped, n, out) },
        None => 0,
    }
}

pub(crate) unsafe extern "C" fn sleep(vfs: *mut sys::sqlite3_vfs, micros: c_int) -> c_int {
    // SAFETY: as in `open`.
    let (wrapped, inner) = unsafe { inner_of(vfs) };
    match inner.xSleep {
        // SAFETY: delegation.
        Some(f) => unsafe { f(wrapped, micros) },
        None => 0,
    }
}

pub(crate) unsafe extern "C" fn get_last_error(
    vfs: *mut sys::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: as in `open`.
    let (wrapped, inner) = unsafe { inner_of(vfs) };
    match inner.xGetLastError {
        // SAFETY: delegation.
        Some(f) => unsafe { f(wrapped, n, out) },
        None => 0,
    }
}

pub(crate) unsafe extern "C" fn current_time(vfs: *mut sys::sqlite3_vfs, out: *mut f64) -> c_int {
    // SAFETY: as in `open`.
    let (wrapped, inner) = unsafe { inner_of(vfs) };
    match inner.xCurrentTime {
        // SAFETY: delegation.
        Some(f) => unsafe { f(wrapped, out) },
        None => sys::SQLITE_ERROR,
    }
}
