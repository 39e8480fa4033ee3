//! The pre-update hook (`sqlite3_preupdate_hook`): SQLite calls it before each row it inserts,
//! updates or deletes in a table, with the row's values before and after the change. Change
//! data capture is built on it (the `raftlite` crate's `cdc` module).
//!
//! The bundled SQLite is compiled with `SQLITE_ENABLE_PREUPDATE_HOOK` (`.cargo/config.toml`).
//! SQLite calls the hook for changes to ordinary tables, `WITHOUT ROWID` ones included (their
//! rowids are then meaningless), and not for virtual tables or SQLite's own tables
//! (`sqlite_sequence`, `sqlite_stat1`). It calls it while the statement runs, so a change may
//! still be undone afterwards (a failed statement, `ROLLBACK TO`, `ROLLBACK`): telling what
//! stayed is the caller's part.
//!
//! Invariants: as for the other hooks (`hooks.rs`), a registered hook lives inside its
//! [`Connection`](crate::Connection) at least as long as SQLite may call it, and a panic in the
//! caller's code never unwinds into C (the hook is told with [`PreupdateHook::panicked`]: the
//! change went unrecorded, and the hook decides what that means).
//! [`Change`] is valid only during the call: its values borrow SQLite's memory.

use std::borrow::Cow;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Arc;

use libsqlite3_sys as sys;

use crate::ValueRef;

/// What a change does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Insert,
    Update,
    Delete,
}

impl ChangeOp {
    /// SQLite's name of the operation (`INSERT`, `UPDATE`, `DELETE`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Insert => "INSERT",
            ChangeOp::Update => "UPDATE",
            ChangeOp::Delete => "DELETE",
        }
    }
}

/// One row about to change, as SQLite describes it to the hook.
pub struct Change<'a> {
    db: *mut sys::sqlite3,
    pub op: ChangeOp,
    /// The schema: `main`, `temp` or an attached database's name.
    pub database: Cow<'a, str>,
    pub table: Cow<'a, str>,
    /// The row's rowid before the change (updates and deletes) and after it (inserts and
    /// updates); an update may change it. Meaningless for a `WITHOUT ROWID` table.
    pub old_rowid: i64,
    pub new_rowid: i64,
}

impl Change<'_> {
    /// How many columns the row has (a table's generated virtual columns are not stored and
    /// not counted).
    pub fn column_count(&self) -> i32 {
        // SAFETY: `db` is the connection SQLite is calling the hook for, during the call.
        unsafe { sys::sqlite3_preupdate_count(self.db) }
    }

    /// Column `i` of the row before the change: None for an insert or `i` out of range.
    pub fn before(&self, i: i32) -> Option<ValueRef<'_>> {
        if self.op == ChangeOp::Insert {
            return None;
        }
        self.value(i, sys::sqlite3_preupdate_old)
    }

    /// Column `i` of the row after the change: None for a delete or `i` out of range.
    pub fn after(&self, i: i32) -> Option<ValueRef<'_>> {
        if self.op == ChangeOp::Delete {
            return None;
        }
        self.value(i, sys::sqlite3_preupdate_new)
    }

    fn value(
        &self,
        i: i32,
        read: unsafe extern "C" fn(*mut sys::sqlite3, c_int, *mut *mut sys::sqlite3_value) -> c_int,
    ) -> Option<ValueRef<'_>> {
        if i < 0 || i >= self.column_count() {
            return None;
        }
        let mut value: *mut sys::sqlite3_value = std::ptr::null_mut();
        // SAFETY: called during the hook for its connection, with `i` in range and a valid
        // out-pointer; the operation matches (old values exist for updates and deletes, new
        // ones for inserts and updates, checked by the callers).
        let rc = unsafe { read(self.db, i, &mut value) };
        if rc != sys::SQLITE_OK || value.is_null() {
            return None;
        }
        // SAFETY: SQLite's value is valid until the hook returns, which outlives `&self`.
        Some(unsafe { value_ref(value) })
    }
}

/// Reads a protected `sqlite3_value`.
///
/// # Safety
/// `value` is a valid `sqlite3_value` that stays unchanged for `'a`.
unsafe fn value_ref<'a>(value: *mut sys::sqlite3_value) -> ValueRef<'a> {
    // SAFETY (all calls): guaranteed by the caller. Text and blob pointers are read before
    // their lengths, as SQLite's documentation asks, and are null only for empty values.
    unsafe {
        match sys::sqlite3_value_type(value) {
            sys::SQLITE_INTEGER => ValueRef::Integer(sys::sqlite3_value_int64(value)),
            sys::SQLITE_FLOAT => ValueRef::Real(sys::sqlite3_value_double(value)),
            sys::SQLITE_TEXT => {
                let p = sys::sqlite3_value_text(value);
                let n = usize::try_from(sys::sqlite3_value_bytes(value)).unwrap_or(0);
                ValueRef::Text(if p.is_null() || n == 0 {
                    &[]
                } else {
                    std::slice::from_raw_parts(p, n)
                })
            }
            sys::SQLITE_BLOB => {
                let p = sys::sqlite3_value_blob(value) as *const u8;
                let n = usize::try_from(sys::sqlite3_value_bytes(value)).unwrap_or(0);
                ValueRef::Blob(if p.is_null() || n == 0 {
                    &[]
                } else {
                    std::slice::from_raw_parts(p, n)
                })
            }
            _ => ValueRef::Null,
        }
    }
}

/// Told about every row change on its connection, before it happens. Called on the thread
/// running the statement; it cannot run SQL on that connection.
pub trait PreupdateHook: Send + Sync + 'static {
    fn on_change(&self, change: &Change<'_>);
    /// `on_change` panicked for a change it was told about: that change went unrecorded.
    fn panicked(&self);
}

/// The `xPreUpdate` SQLite calls. `user_data` is a [`Registered::user_data`] pointer.
pub(crate) unsafe extern "C" fn trampoline(
    user_data: *mut c_void,
    db: *mut sys::sqlite3,
    op: c_int,
    database: *const c_char,
    table: *const c_char,
    old_rowid: sys::sqlite3_int64,
    new_rowid: sys::sqlite3_int64,
) {
    // SAFETY: SQLite passes back the pointer given to sqlite3_preupdate_hook, which points at
    // the `Arc` inside a `Registered` the connection keeps alive while it is set.
    let hook = unsafe { &*(user_data as *const Arc<dyn PreupdateHook>) };
    let op = match op {
        sys::SQLITE_INSERT => ChangeOp::Insert,
        sys::SQLITE_UPDATE => ChangeOp::Update,
        sys::SQLITE_DELETE => ChangeOp::Delete,
        _ => return,
    };
    let name = |p: *const c_char| -> Cow<'_, str> {
        if p.is_null() {
            return Cow::Borrowed("");
        }
        // SAFETY: SQLite passes NUL-terminated names valid during the call.
        String::from_utf8_lossy(unsafe { CStr::from_ptr(p) }.to_bytes())
    };
    let change = Change {
        db,
        op,
        database: name(database),
        table: name(table),
        old_rowid,
        new_rowid,
    };
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.on_change(&change)));
    if outcome.is_err() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.panicked()));
    }
}
