//! The deterministic apply connection: a clock and a random sequence that the caller sets.
//!
//! A Raft entry must change every replica's database in the same way, but SQLite reads the
//! wall clock (`'now'`, `CURRENT_TIMESTAMP` defaults) and a process-global PRNG (`random()`,
//! `randomblob()`), both node-local. A connection opened with
//! [`Connection::open_deterministic`] gets:
//! - its own VFS, a shim registered under a unique name that passes every call through to the
//!   default VFS except `xCurrentTime`/`xCurrentTimeInt64`, which answer the time set with
//!   [`Connection::set_apply_inputs`]. SQLite reads the time through the connection's VFS only
//!   (date functions and profiling), so the clock reaches defaults, triggers and views too;
//! - application-defined `random()` and `randomblob(N)` that replace the built-ins on this
//!   connection. They draw from a xoshiro256** generator seeded from the entry's seed, one step
//!   per call, so `UPDATE t SET x = random()` still gives every row its own value. They are
//!   flagged `SQLITE_INNOCUOUS` (callable from triggers, views and defaults under
//!   `trusted_schema=OFF`) and not `SQLITE_DETERMINISTIC` (so they run once per row).
//!
//! With no inputs set (`set_apply_inputs(None)`), the connection behaves like a plain one: the
//! real clock and SQLite's own randomness. SQLite's PRNG is never reseeded: it is shared by
//! every connection of the process, and WAL salts and temp names draw from it.
//!
//! Invariants: the VFS stays registered, and the shared inputs stay alive, until the
//! connection is closed (the registration is dropped after `sqlite3_close`, and is leaked if
//! the close fails). The callbacks never panic and never unwind into C.

use std::ffi::{c_int, c_void, CString};
use std::ptr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use libsqlite3_sys as sys;

use crate::error::{Error, Result};
use crate::vfs_passthrough;

/// What one Raft entry fixes for its apply: the leader's clock and a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyInputs {
    /// Milliseconds since the Unix epoch, as the leader's clock read them.
    pub unix_millis: i64,
    /// Seeds the sequence `random()` and `randomblob()` return during the entry.
    pub seed: u64,
}

/// Unix epoch in SQLite's time unit (milliseconds since the Julian day epoch).
const UNIX_EPOCH_JULIAN_MS: i64 = 210_866_760_000_000;
/// "No inputs set": use the real clock.
const UNSET: i64 = i64::MIN;

/// The inputs shared between a connection, its VFS shim and its functions.
pub(crate) struct ApplyState {
    julian_millis: AtomicI64,
    rng: Mutex<Option<Xoshiro256>>,
    /// Calls to random()/randomblob() since the connection opened (for tests and status).
    draws: AtomicU64,
}

impl ApplyState {
    fn set(&self, inputs: Option<ApplyInputs>) {
        let (julian, rng) = match inputs {
            Some(i) => (
                i.unix_millis.saturating_add(UNIX_EPOCH_JULIAN_MS),
                Some(Xoshiro256::seeded(i.seed)),
            ),
            None => (UNSET, None),
        };
        *self.rng.lock().unwrap_or_else(|p| p.into_inner()) = rng;
        self.julian_millis.store(julian, Ordering::Release);
    }

    /// Fills `out` from the entry's sequence, or from SQLite's PRNG when none is set.
    fn fill(&self, out: &mut [u8]) {
        self.draws.fetch_add(1, Ordering::Relaxed);
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        match rng.as_mut() {
            Some(r) => r.fill(out),
            None => {
                let n = c_int::try_from(out.len()).unwrap_or(c_int::MAX);
                // SAFETY: `out` is writable for at least `n` bytes.
                unsafe { sys::sqlite3_randomness(n, out.as_mut_ptr() as *mut c_void) };
            }
        }
    }
}

/// xoshiro256** (Blackman and Vigna), seeded through splitmix64. Small, fast, and the same
/// sequence on every machine. Not a cryptographic generator (nor is SQLite's `random()` meant
/// as one).
#[derive(Debug, Clone)]
struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    fn seeded(seed: u64) -> Xoshiro256 {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Xoshiro256 {
            s: [next(), next(), next(), next()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// The VFS shim: `base` and `inner` must stay the first fields, in this order, so SQLite's
/// `sqlite3_vfs*` is also a pointer to the whole shim and to its
/// [`vfs_passthrough::ShimHeader`].
#[repr(C)]
struct ShimVfs {
    base: sys::sqlite3_vfs,
    inner: *mut sys::sqlite3_vfs,
    state: Arc<ApplyState>,
    _name: CString,
}

/// A registered shim and the inputs it shares; owned by the connection that uses it.
pub(crate) struct Registration {
    vfs: *mut ShimVfs,
    pub(crate) state: Arc<ApplyState>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `vfs` was registered by `register` and is unregistered exactly once here;
        // the owning connection is closed (or its registration was leaked, never dropped).
        unsafe {
            sys::sqlite3_vfs_unregister(&mut (*self.vfs).base);
            drop(Box::from_raw(self.vfs));
        }
    }
}

/// Registers a fresh shim over the default VFS and returns it with its name.
pub(crate) fn register() -> Result<(Registration, CString)> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    // SAFETY: sqlite3_initialize is idempotent and thread-safe.
    let rc = unsafe { sys::sqlite3_initialize() };
    if rc != sys::SQLITE_OK {
        return Err(Error::new(rc, "initialize SQLite"));
    }
    // SAFETY: a null name asks for the default VFS; SQLite owns the result for the process.
    let inner = unsafe { sys::sqlite3_vfs_find(ptr::null()) };
    if inner.is_null() {
        return Err(Error::new(sys::SQLITE_ERROR, "no default VFS"));
    }
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name =
        CString::new(format!("raftlite-apply-{n}")).map_err(|_| Error::interior_nul("VFS name"))?;
    let state = Arc::new(ApplyState {
        julian_millis: AtomicI64::new(UNSET),
        rng: Mutex::new(None),
        draws: AtomicU64::new(0),
    });
    // SAFETY: `inner` is a valid, registered VFS that lives for the process.
    let inner_ref = unsafe { &*inner };
    let base = sys::sqlite3_vfs {
        iVersion: 3,
        szOsFile: inner_ref.szOsFile,
        mxPathname: inner_ref.mxPathname,
        pNext: ptr::null_mut(),
        zName: ptr::null(),
        pAppData: ptr::null_mut(),
        xOpen: Some(vfs_passthrough::open),
        xDelete: Some(vfs_passthrough::delete),
        xAccess: Some(vfs_passthrough::access),
        xFullPathname: Some(vfs_passthrough::full_pathname),
        xDlOpen: Some(vfs_passthrough::dl_open),
        xDlError: Some(vfs_passthrough::dl_error),
        xDlSym: Some(vfs_passthrough::dl_sym),
        xDlClose: Some(vfs_passthrough::dl_close),
        xRandomness: Some(vfs_passthrough::randomness),
        xSleep: Some(vfs_passthrough::sleep),
        xCurrentTime: Some(shim_current_time),
        xGetLastError: Some(vfs_passthrough::get_last_error),
        xCurrentTimeInt64: Some(shim_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    };
    let vfs = Box::into_raw(Box::new(ShimVfs {
        base,
        inner,
        state: Arc::clone(&state),
        _name: name.clone(),
    }));
    // SAFETY: `vfs` was just allocated; the name lives in the shim, as long as the shim.
    unsafe { (*vfs).base.zName = (*vfs)._name.as_ptr() };
    // SAFETY: `vfs` points to a fully initialised shim that stays alive until the registration
    // drops, which unregisters it first. `makeDflt = 0`: other connections are unaffected.
    let rc = unsafe { sys::sqlite3_vfs_register(&mut (*vfs).base, 0) };
    if rc != sys::SQLITE_OK {
        // SAFETY: registration failed, so SQLite holds no pointer to `vfs`.
        drop(unsafe { Box::from_raw(vfs) });
        return Err(Error::new(rc, "register the apply VFS"));
    }
    Ok((Registration { vfs, state }, name))
}

/// Installs `random()` and `randomblob()` drawing from `state` on `db`.
///
/// # Safety
/// `db` must be a valid open connection.
pub(crate) unsafe fn install_functions(
    db: *mut sys::sqlite3,
    state: &Arc<ApplyState>,
) -> Result<()> {
    type Func =
        unsafe extern "C" fn(*mut sys::sqlite3_context, c_int, *mut *mut sys::sqlite3_value);
    let funcs: [(&std::ffi::CStr, c_int, Func); 2] = [
        (c"random", 0, random_func),
        (c"randomblob", 1, randomblob_func),
    ];
    for (name, n_arg, f) in funcs {
        let data = Arc::into_raw(Arc::clone(state)) as *mut c_void;
        // SAFETY: `db` is valid (caller); `name` is NUL-terminated; `data` is an owned Arc
        // pointer released by `destroy_state` when SQLite drops the function (also on failure,
        // as documented for sqlite3_create_function_v2).
        let rc = unsafe {
            sys::sqlite3_create_function_v2(
                db,
                name.as_ptr(),
                n_arg,
                sys::SQLITE_UTF8 | sys::SQLITE_INNOCUOUS,
                data,
                Some(f),
                None,
                None,
                Some(destroy_state),
            )
        };
        if rc != sys::SQLITE_OK {
            // SAFETY: `db` is valid.
            return Err(unsafe { crate::connection::error_from_handle(db, rc) });
        }
    }
    Ok(())
}

pub(crate) fn set(reg: &Registration, inputs: Option<ApplyInputs>) {
    reg.state.set(inputs);
}

pub(crate) fn draws(reg: &Registration) -> u64 {
    reg.state.draws.load(Ordering::Relaxed)
}

/// Random bytes from SQLite's own PRNG (ChaCha20 seeded by the OS), for callers that need a
/// seed: the leader seeds each entry with it.
pub fn randomness(out: &mut [u8]) {
    let n = c_int::try_from(out.len()).unwrap_or(c_int::MAX);
    // SAFETY: `out` is writable for at least `n` bytes.
    unsafe { sys::sqlite3_randomness(n, out.as_mut_ptr() as *mut c_void) };
}

unsafe extern "C" fn destroy_state(p: *mut c_void) {
    // SAFETY: `p` came from Arc::into_raw in `install_functions`, and SQLite calls the
    // destructor once per registration.
    drop(unsafe { Arc::from_raw(p as *const ApplyState) });
}

/// The state behind a function's user data.
///
/// # Safety
/// `ctx` must be the context of a call to a function installed by `install_functions`.
unsafe fn state_of<'a>(ctx: *mut sys::sqlite3_context) -> &'a ApplyState {
    // SAFETY: the user data is the Arc pointer installed with the function, alive until the
    // destructor runs, which SQLite does not do during a call.
    unsafe { &*(sys::sqlite3_user_data(ctx) as *const ApplyState) }
}

unsafe extern "C" fn random_func(
    ctx: *mut sys::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut sys::sqlite3_value,
) {
    // SAFETY: called by SQLite for our function.
    let state = unsafe { state_of(ctx) };
    let mut bytes = [0u8; 8];
    state.fill(&mut bytes);
    let mut r = i64::from_le_bytes(bytes);
    if r < 0 {
        // As SQLite's own random(): never i64::MIN, so abs() of the result is defined.
        r = -(r & i64::MAX);
    }
    // SAFETY: `ctx` is the live call context.
    unsafe { sys::sqlite3_result_int64(ctx, r) };
}

unsafe extern "C" fn randomblob_func(
    ctx: *mut sys::sqlite3_context,
    _argc: c_int,
    argv: *mut *mut sys::sqlite3_value,
) {
    // SAFETY: SQLite passes exactly one argument (n_arg = 1).
    let n = unsafe { sys::sqlite3_value_int64(*argv) }.max(1);
    // SAFETY: the context's connection is valid during the call.
    let limit = unsafe {
        sys::sqlite3_limit(
            sys::sqlite3_context_db_handle(ctx),
            sys::SQLITE_LIMIT_LENGTH,
            -1,
        )
    };
    if n > i64::from(limit) {
        // SAFETY: `ctx` is the live call context.
        unsafe { sys::sqlite3_result_error_toobig(ctx) };
        return;
    }
    // SAFETY: called by SQLite for our function.
    let state = unsafe { state_of(ctx) };
    let mut bytes = vec![0u8; n as usize];
    state.fill(&mut bytes);
    // SAFETY: `bytes` is valid for its length during the call; SQLITE_TRANSIENT copies it.
    unsafe {
        sys::sqlite3_result_blob64(
            ctx,
            bytes.as_ptr() as *const c_void,
            bytes.len() as u64,
            sys::SQLITE_TRANSIENT(),
        )
    };
}

/// The shim behind SQLite's `sqlite3_vfs*`, and the VFS it wraps.
///
/// # Safety
/// `vfs` must be the `base` of a registered `ShimVfs`.
unsafe fn shim<'a>(vfs: *mut sys::sqlite3_vfs) -> (&'a ShimVfs, &'a sys::sqlite3_vfs) {
    // SAFETY: `base` is the first field of the repr(C) shim; the wrapped VFS lives for the
    // process.
    unsafe {
        let s = &*(vfs as *const ShimVfs);
        (s, &*s.inner)
    }
}

unsafe extern "C" fn shim_current_time_int64(
    vfs: *mut sys::sqlite3_vfs,
    out: *mut sys::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite calls us with our own VFS pointer and a valid out-pointer.
    let (s, inner) = unsafe { shim(vfs) };
    let t = s.state.julian_millis.load(Ordering::Acquire);
    if t != UNSET {
        // SAFETY: valid out-pointer.
        unsafe { *out = t };
        return sys::SQLITE_OK;
    }
    match inner.xCurrentTimeInt64 {
        // SAFETY: delegating to the wrapped VFS with its own pointer.
        Some(f) if inner.iVersion >= 2 => unsafe { f(s.inner, out) },
        _ => {
            let mut day = 0.0f64;
            // SAFETY: as above; every VFS has xCurrentTime.
            let rc = match inner.xCurrentTime {
                Some(f) => unsafe { f(s.inner, &mut day) },
                None => sys::SQLITE_ERROR,
            };
            // SAFETY: valid out-pointer.
            unsafe { *out = (day * 86_400_000.0) as i64 };
            rc
        }
    }
}

unsafe extern "C" fn shim_current_time(vfs: *mut sys::sqlite3_vfs, out: *mut f64) -> c_int {
    let mut ms: sys::sqlite3_int64 = 0;
    // SAFETY: same contract as ours.
    let rc = unsafe { shim_current_time_int64(vfs, &mut ms) };
    // SAFETY: valid out-pointer.
    unsafe { *out = ms as f64 / 86_400_000.0 };
    rc
}
