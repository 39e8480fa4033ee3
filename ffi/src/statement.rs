//! `Statement`: one prepared statement, borrowed from its connection and finalized on drop.

use std::borrow::Cow;
use std::ffi::{c_int, CStr, CString};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use libsqlite3_sys as sys;

use crate::connection::Connection;
use crate::error::Result;
use crate::statement_cache::{Home, IdleStatement};
use crate::value::{Value, ValueRef};

/// What one `step()` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A row is available through the column accessors.
    Row,
    /// The statement ran to completion.
    Done,
}

impl Step {
    pub fn is_row(self) -> bool {
        self == Step::Row
    }
}

/// The storage class of a column value in the current row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Integer,
    Real,
    Text,
    Blob,
    Null,
}

/// A prepared statement. It borrows its connection, so the connection outlives it.
pub struct Statement<'c> {
    stmt: *mut sys::sqlite3_stmt,
    conn: &'c Connection,
    /// Running it may change the schema: every step empties the connection's statement cache
    /// (see `statement_cache.rs`).
    flushes_cache: bool,
    // Not Send/Sync: a statement is used where its connection is.
    _not_send: PhantomData<*mut ()>,
}

impl<'c> Statement<'c> {
    /// Wraps a non-null statement of `conn`; the `Statement` finalizes it.
    pub(crate) fn new(
        conn: &'c Connection,
        stmt: *mut sys::sqlite3_stmt,
        flushes_cache: bool,
    ) -> Statement<'c> {
        Statement {
            stmt,
            conn,
            flushes_cache,
            _not_send: PhantomData,
        }
    }

    /// Resets the statement, clears its bindings and hands it to its connection's cache.
    pub(crate) fn return_to_cache(self, home: Home) {
        let me = ManuallyDrop::new(self);
        // SAFETY: `stmt` is valid. reset ends any step in progress (releasing its read or
        // write); its return value repeats the last step's error, which the caller already
        // saw. clear_bindings drops bound values so an idle statement holds none.
        unsafe {
            sys::sqlite3_reset(me.stmt);
            sys::sqlite3_clear_bindings(me.stmt);
        }
        // A `Statement` is only built around a non-null pointer; ownership moves to the cache
        // (`me` is never dropped, so it does not finalize).
        if let Some(stmt) = NonNull::new(me.stmt) {
            me.conn.put_back_cached(home, IdleStatement::new(stmt));
        }
    }

    fn check(&self, rc: c_int) -> Result<()> {
        if rc == sys::SQLITE_OK {
            Ok(())
        } else {
            Err(self.conn.last_error(rc))
        }
    }

    /// The number of SQL parameters (`?`, `?NNN`, `:name`, `@name`, `$name`).
    pub fn parameter_count(&self) -> i32 {
        // SAFETY: `stmt` is a valid prepared statement for the life of `self`.
        unsafe { sys::sqlite3_bind_parameter_count(self.stmt) }
    }

    /// The 1-based index of the parameter named `name` (including its prefix, like `:id`).
    pub fn parameter_index(&self, name: &str) -> Option<i32> {
        let name = CString::new(name).ok()?;
        // SAFETY: `stmt` is valid and `name` is NUL-terminated for the call.
        let i = unsafe { sys::sqlite3_bind_parameter_index(self.stmt, name.as_ptr()) };
        (i > 0).then_some(i)
    }

    /// The name of parameter `index` (1-based) with its prefix, or None for a nameless `?`.
    pub fn parameter_name(&self, index: i32) -> Option<String> {
        // SAFETY: `stmt` is valid; an out-of-range index returns null.
        let p = unsafe { sys::sqlite3_bind_parameter_name(self.stmt, index) };
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-null result is a NUL-terminated UTF-8 string owned by the statement.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    pub fn bind_null(&mut self, index: i32) -> Result<()> {
        // SAFETY: `stmt` is valid; SQLite range-checks `index` and returns SQLITE_RANGE.
        self.check(unsafe { sys::sqlite3_bind_null(self.stmt, index) })
    }

    pub fn bind_i64(&mut self, index: i32, v: i64) -> Result<()> {
        // SAFETY: as for bind_null.
        self.check(unsafe { sys::sqlite3_bind_int64(self.stmt, index, v) })
    }

    pub fn bind_f64(&mut self, index: i32, v: f64) -> Result<()> {
        // SAFETY: as for bind_null.
        self.check(unsafe { sys::sqlite3_bind_double(self.stmt, index, v) })
    }

    pub fn bind_text(&mut self, index: i32, v: &str) -> Result<()> {
        self.bind_text_bytes(index, v.as_bytes())
    }

    /// Binds TEXT from raw bytes (SQLite stores them as given).
    pub fn bind_text_bytes(&mut self, index: i32, v: &[u8]) -> Result<()> {
        let len = u64::try_from(v.len()).unwrap_or(u64::MAX);
        // SAFETY: `v` is valid for `len` bytes during the call, and SQLITE_TRANSIENT makes SQLite
        // copy it before returning. Encoding is UTF-8.
        let rc = unsafe {
            sys::sqlite3_bind_text64(
                self.stmt,
                index,
                v.as_ptr().cast(),
                len,
                sys::SQLITE_TRANSIENT(),
                sys::SQLITE_UTF8 as u8,
            )
        };
        self.check(rc)
    }

    pub fn bind_blob(&mut self, index: i32, v: &[u8]) -> Result<()> {
        if v.is_empty() {
            // A null data pointer would bind NULL; an empty blob must stay a blob.
            // SAFETY: as for bind_null.
            return self.check(unsafe { sys::sqlite3_bind_zeroblob(self.stmt, index, 0) });
        }
        let len = u64::try_from(v.len()).unwrap_or(u64::MAX);
        // SAFETY: `v` is valid for `len` bytes; SQLITE_TRANSIENT makes SQLite copy it.
        let rc = unsafe {
            sys::sqlite3_bind_blob64(
                self.stmt,
                index,
                v.as_ptr().cast(),
                len,
                sys::SQLITE_TRANSIENT(),
            )
        };
        self.check(rc)
    }

    pub fn bind_value(&mut self, index: i32, v: ValueRef<'_>) -> Result<()> {
        match v {
            ValueRef::Null => self.bind_null(index),
            ValueRef::Integer(i) => self.bind_i64(index, i),
            ValueRef::Real(r) => self.bind_f64(index, r),
            ValueRef::Text(t) => self.bind_text_bytes(index, t),
            ValueRef::Blob(b) => self.bind_blob(index, b),
        }
    }

    /// Resets every binding to NULL.
    pub fn clear_bindings(&mut self) -> Result<()> {
        // SAFETY: `stmt` is valid.
        self.check(unsafe { sys::sqlite3_clear_bindings(self.stmt) })
    }

    /// Advances the statement by one row.
    pub fn step(&mut self) -> Result<Step> {
        // SAFETY: `stmt` is valid and not stepped concurrently (`&mut self`).
        let rc = unsafe { sys::sqlite3_step(self.stmt) };
        if self.flushes_cache {
            self.conn.flush_statement_cache();
        }
        match rc {
            sys::SQLITE_ROW => Ok(Step::Row),
            sys::SQLITE_DONE => Ok(Step::Done),
            _ => Err(self.conn.last_error(rc)),
        }
    }

    /// Rewinds the statement so it can run again; bindings are kept.
    pub fn reset(&mut self) -> Result<()> {
        // SAFETY: `stmt` is valid. reset returns the error of the last step, if any, which the
        // caller has already seen; we only fail on a new error.
        let rc = unsafe { sys::sqlite3_reset(self.stmt) };
        self.check(rc)
    }

    /// True when the statement makes no direct change to the database file.
    pub fn readonly(&self) -> bool {
        // SAFETY: `stmt` is valid.
        unsafe { sys::sqlite3_stmt_readonly(self.stmt) != 0 }
    }

    /// 1 for EXPLAIN, 2 for EXPLAIN QUERY PLAN, 0 otherwise.
    pub fn explain_kind(&self) -> i32 {
        // SAFETY: `stmt` is valid.
        unsafe { sys::sqlite3_stmt_isexplain(self.stmt) }
    }

    /// The SQL text the statement was prepared from.
    pub fn sql(&self) -> String {
        self.sql_text().into_owned()
    }

    /// The SQL text the statement was prepared from, borrowed when it is valid UTF-8 (it
    /// then costs no allocation).
    pub fn sql_text(&self) -> Cow<'_, str> {
        // SAFETY: `stmt` is valid; the text is owned by the statement and lives until it is
        // finalized, which the borrow of `self` outlasts.
        let p = unsafe { sys::sqlite3_sql(self.stmt) };
        if p.is_null() {
            return Cow::Borrowed("");
        }
        // SAFETY: non-null and NUL-terminated.
        unsafe { CStr::from_ptr(p) }.to_string_lossy()
    }

    pub fn column_count(&self) -> i32 {
        // SAFETY: `stmt` is valid.
        unsafe { sys::sqlite3_column_count(self.stmt) }
    }

    fn column_in_range(&self, i: i32) -> bool {
        i >= 0 && i < self.column_count()
    }

    /// The name of result column `i` (0-based); empty when out of range.
    pub fn column_name(&self, i: i32) -> String {
        if !self.column_in_range(i) {
            return String::new();
        }
        // SAFETY: `stmt` is valid and `i` in range; the name is copied before the next call.
        let p = unsafe { sys::sqlite3_column_name(self.stmt, i) };
        cstr_to_string(p).unwrap_or_default()
    }

    /// The declared type of result column `i`, as written in CREATE TABLE (None for expressions).
    pub fn column_decltype(&self, i: i32) -> Option<String> {
        if !self.column_in_range(i) {
            return None;
        }
        // SAFETY: `stmt` is valid and `i` in range.
        cstr_to_string(unsafe { sys::sqlite3_column_decltype(self.stmt, i) })
    }

    /// The table a result column comes from, if it is a plain column reference.
    pub fn column_table_name(&self, i: i32) -> Option<String> {
        if !self.column_in_range(i) {
            return None;
        }
        // SAFETY: `stmt` is valid and `i` in range (SQLITE_ENABLE_COLUMN_METADATA is built in).
        cstr_to_string(unsafe { sys::sqlite3_column_table_name(self.stmt, i) })
    }

    /// The storage class of column `i` in the current row (NULL when out of range).
    pub fn column_type(&self, i: i32) -> ColumnType {
        if !self.column_in_range(i) {
            return ColumnType::Null;
        }
        // SAFETY: `stmt` is valid and `i` in range.
        match unsafe { sys::sqlite3_column_type(self.stmt, i) } {
            sys::SQLITE_INTEGER => ColumnType::Integer,
            sys::SQLITE_FLOAT => ColumnType::Real,
            sys::SQLITE_TEXT => ColumnType::Text,
            sys::SQLITE_BLOB => ColumnType::Blob,
            _ => ColumnType::Null,
        }
    }

    pub fn column_i64(&self, i: i32) -> i64 {
        if !self.column_in_range(i) {
            return 0;
        }
        // SAFETY: `stmt` is valid and `i` in range.
        unsafe { sys::sqlite3_column_int64(self.stmt, i) }
    }

    pub fn column_f64(&self, i: i32) -> f64 {
        if !self.column_in_range(i) {
            return 0.0;
        }
        // SAFETY: `stmt` is valid and `i` in range.
        unsafe { sys::sqlite3_column_double(self.stmt, i) }
    }

    /// Column `i` as text bytes (converted by SQLite if it is not TEXT). Valid until the next
    /// step, reset or drop, which the borrow enforces.
    pub fn column_text(&self, i: i32) -> &[u8] {
        if !self.column_in_range(i) {
            return &[];
        }
        // SAFETY: `stmt` is valid and `i` in range. column_text must be called before
        // column_bytes so that the length is of the UTF-8 form.
        let p = unsafe { sys::sqlite3_column_text(self.stmt, i) };
        // SAFETY: as above.
        let n = unsafe { sys::sqlite3_column_bytes(self.stmt, i) };
        raw_slice(p, n)
    }

    /// Column `i` as blob bytes. Valid until the next step, reset or drop.
    pub fn column_blob(&self, i: i32) -> &[u8] {
        if !self.column_in_range(i) {
            return &[];
        }
        // SAFETY: `stmt` is valid and `i` in range; blob before bytes, as documented.
        let p = unsafe { sys::sqlite3_column_blob(self.stmt, i) };
        // SAFETY: as above.
        let n = unsafe { sys::sqlite3_column_bytes(self.stmt, i) };
        raw_slice(p.cast(), n)
    }

    /// Column `i` of the current row, borrowed.
    pub fn column_value(&self, i: i32) -> ValueRef<'_> {
        match self.column_type(i) {
            ColumnType::Null => ValueRef::Null,
            ColumnType::Integer => ValueRef::Integer(self.column_i64(i)),
            ColumnType::Real => ValueRef::Real(self.column_f64(i)),
            ColumnType::Text => ValueRef::Text(self.column_text(i)),
            ColumnType::Blob => ValueRef::Blob(self.column_blob(i)),
        }
    }

    /// Column `i` of the current row, copied.
    pub fn column_owned(&self, i: i32) -> Value {
        self.column_value(i).to_owned_value()
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: `stmt` is valid and finalized exactly once, here.
        unsafe { sys::sqlite3_finalize(self.stmt) };
    }
}

fn cstr_to_string(p: *const std::ffi::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: callers pass pointers SQLite returned as NUL-terminated strings, still valid.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

fn raw_slice<'a>(p: *const u8, n: c_int) -> &'a [u8] {
    if p.is_null() || n <= 0 {
        return &[];
    }
    // SAFETY: SQLite guarantees `p` points to `n` readable bytes until the next step/reset/
    // finalize of the statement, which the caller's borrow of the statement outlasts.
    unsafe { std::slice::from_raw_parts(p, n as usize) }
}
