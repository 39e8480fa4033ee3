//! `Connection`: one `sqlite3*` handle, opened with explicit flags, closed exactly once.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;
use std::ptr;
use std::sync::{Arc, Mutex};

use libsqlite3_sys as sys;

use crate::error::{Error, Result};
use crate::hooks::{Authorizer, ProgressHandler, Registered};
use crate::preupdate::PreupdateHook;
use crate::statement::Statement;
use crate::statement_cache::{
    is_cacheable_kind, leading_keyword, may_change_schema, CachedStatement, IdleStatement,
    StatementCache, StatementCacheStats, MAX_CACHED_SQL_LEN,
};

/// Flags for [`Connection::open`]; combine them with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags(pub(crate) c_int);

impl OpenFlags {
    pub const READ_ONLY: OpenFlags = OpenFlags(sys::SQLITE_OPEN_READONLY);
    pub const READ_WRITE: OpenFlags = OpenFlags(sys::SQLITE_OPEN_READWRITE);
    pub const CREATE: OpenFlags = OpenFlags(sys::SQLITE_OPEN_CREATE);
    pub const URI: OpenFlags = OpenFlags(sys::SQLITE_OPEN_URI);
    /// The connection is used by one thread at a time (the caller guarantees it), so SQLite
    /// may skip its per-connection mutex.
    pub const NO_MUTEX: OpenFlags = OpenFlags(sys::SQLITE_OPEN_NOMUTEX);
    pub const FULL_MUTEX: OpenFlags = OpenFlags(sys::SQLITE_OPEN_FULLMUTEX);
    pub const MEMORY: OpenFlags = OpenFlags(sys::SQLITE_OPEN_MEMORY);
    /// `O_NOFOLLOW`: refuse to open a symbolic link.
    pub const NO_FOLLOW: OpenFlags = OpenFlags(sys::SQLITE_OPEN_NOFOLLOW);

    pub fn bits(self) -> c_int {
        self.0
    }
}

impl std::ops::BitOr for OpenFlags {
    type Output = OpenFlags;
    fn bitor(self, rhs: OpenFlags) -> OpenFlags {
        OpenFlags(self.0 | rhs.0)
    }
}

/// The transaction state of one schema of a connection (`sqlite3_txn_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    None,
    Read,
    Write,
}

/// The pointer an [`InterruptHandle`] shares with its connection. The connection nulls it,
/// under the lock, before it closes the handle, so an interrupt can never reach freed memory.
type SharedHandle = Arc<Mutex<usize>>;

/// A SQLite database connection.
///
/// `Send` but not `Sync`: it may move between threads, and one thread uses it at a time.
pub struct Connection {
    db: *mut sys::sqlite3,
    interrupt: SharedHandle,
    /// The apply VFS and functions of a deterministic connection; dropped after the handle
    /// is closed (field drop order runs after `Drop::drop`).
    apply: Option<crate::deterministic::Registration>,
    /// Idle prepared statements (see `statement_cache.rs`); finalized before the handle
    /// is closed.
    cache: RefCell<StatementCache>,
    /// The authorizer and the progress handler SQLite calls (see `hooks.rs`); dropped after
    /// the handle is closed, like `apply`.
    authorizer: Option<Registered<dyn Authorizer>>,
    progress: Option<Registered<dyn ProgressHandler>>,
    preupdate: Option<Registered<dyn PreupdateHook>>,
}

// SAFETY: SQLite is built with SQLITE_THREADSAFE=1 (serialized). A connection may be used from
// any thread as long as calls are not concurrent, which `&mut`/`!Sync` enforce for the parts
// that need it; `sqlite3_interrupt` is documented as safe from any thread. The cached
// statements belong to the connection and move with it; they are only touched through it.
unsafe impl Send for Connection {}

impl Connection {
    /// Opens `path` with `flags`. The path is passed as bytes; it must not contain NUL.
    pub fn open(path: impl AsRef<Path>, flags: OpenFlags) -> Result<Connection> {
        Connection::open_with_vfs(path.as_ref(), flags, None)
    }

    /// Opens `path` as a deterministic apply connection (see [`crate::deterministic`]): its
    /// clock and its `random()`/`randomblob()` follow [`Connection::set_apply_inputs`], and
    /// behave as on a plain connection while no inputs are set.
    pub fn open_deterministic(path: impl AsRef<Path>, flags: OpenFlags) -> Result<Connection> {
        let (registration, vfs_name) = crate::deterministic::register()?;
        let mut conn = Connection::open_with_vfs(path.as_ref(), flags, Some(&vfs_name))?;
        // SAFETY: `conn.db` is a valid open handle.
        unsafe { crate::deterministic::install_functions(conn.db, &registration.state) }?;
        conn.apply = Some(registration);
        Ok(conn)
    }

    /// Sets (or with `None`, clears) the clock and the random seed the next statements see.
    /// Fails with [`ErrorCode::Misuse`](crate::ErrorCode) on a connection not opened with
    /// [`Connection::open_deterministic`].
    pub fn set_apply_inputs(&self, inputs: Option<crate::ApplyInputs>) -> Result<()> {
        self.handle()?;
        match &self.apply {
            Some(reg) => {
                crate::deterministic::set(reg, inputs);
                Ok(())
            }
            None => Err(Error::new(
                sys::SQLITE_MISUSE,
                "not a deterministic apply connection",
            )),
        }
    }

    /// How many times this connection's own `random()`/`randomblob()` ran (0 on a plain one).
    pub fn apply_random_draws(&self) -> u64 {
        self.apply.as_ref().map_or(0, crate::deterministic::draws)
    }

    pub(crate) fn open_with_vfs(
        path: &Path,
        flags: OpenFlags,
        vfs: Option<&CStr>,
    ) -> Result<Connection> {
        use std::os::unix::ffi::OsStrExt;
        let path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::interior_nul("database path"))?;
        let mut db: *mut sys::sqlite3 = ptr::null_mut();
        let vfs = vfs.map_or(ptr::null(), CStr::as_ptr);
        // SAFETY: `path` (and `vfs`, when given) are valid NUL-terminated strings that outlive
        // the call; `db` is a valid out-pointer. A null VFS name selects the default VFS.
        let rc = unsafe { sys::sqlite3_open_v2(path.as_ptr(), &mut db, flags.0, vfs) };
        if rc != sys::SQLITE_OK {
            let err = if db.is_null() {
                Error::new(rc, "out of memory opening the database")
            } else {
                // SAFETY: on failure SQLite still hands back a handle (unless out of memory) whose
                // message explains the failure; it must be closed by the caller.
                let e = unsafe { error_from_handle(db, rc) };
                // SAFETY: `db` came from sqlite3_open_v2 and is not used after this.
                unsafe { sys::sqlite3_close(db) };
                e
            };
            return Err(err);
        }
        // Extended codes tell SQLITE_IOERR_FSYNC from SQLITE_IOERR_WRITE, and so on.
        // SAFETY: `db` is a valid open handle.
        unsafe { sys::sqlite3_extended_result_codes(db, 1) };
        Ok(Connection {
            db,
            interrupt: Arc::new(Mutex::new(db as usize)),
            apply: None,
            cache: RefCell::new(StatementCache::default()),
            authorizer: None,
            progress: None,
            preupdate: None,
        })
    }

    /// The raw handle, or the "closed" error.
    pub(crate) fn handle(&self) -> Result<*mut sys::sqlite3> {
        if self.db.is_null() {
            Err(Error::closed())
        } else {
            Ok(self.db)
        }
    }

    /// The last error on this connection, as an [`Error`] with the given result code.
    pub(crate) fn last_error(&self, rc: c_int) -> Error {
        match self.handle() {
            // SAFETY: `db` is a valid open handle owned by `self`.
            Ok(db) => unsafe { error_from_handle(db, rc) },
            Err(e) => e,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.db.is_null()
    }

    /// Closes the connection. Later calls on it return a "connection is closed" error.
    /// Closing twice is harmless.
    pub fn close(&mut self) -> Result<()> {
        if self.db.is_null() {
            return Ok(());
        }
        self.flush_statement_cache();
        let mut shared = self.interrupt.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: no `Statement` or `Backup` can be alive (they borrow `self`, and `close` takes
        // `&mut self`), and the cache's statements were just finalized, so the handle has no
        // dependents and may be closed.
        let rc = unsafe { sys::sqlite3_close(self.db) };
        if rc != sys::SQLITE_OK {
            return Err(self.last_error(rc));
        }
        *shared = 0;
        self.db = ptr::null_mut();
        Ok(())
    }

    /// Prepares the first statement of `sql`. Returns the statement (None when that part of the
    /// text holds only whitespace or comments) and the byte offset where the rest begins.
    pub fn prepare_first<'c>(&'c self, sql: &str) -> Result<(Option<Statement<'c>>, usize)> {
        self.prepare_first_bytes(sql.as_bytes())
    }

    /// [`Connection::prepare_first`] over raw bytes. SQLite takes any bytes as SQL text: a TEXT
    /// literal may hold invalid UTF-8 (a dump of such a value does), and it is stored as is.
    /// The offset returned is just past the statement's `;` (or the end), so for UTF-8 input it
    /// always falls on a character boundary.
    pub fn prepare_first_bytes<'c>(&'c self, sql: &[u8]) -> Result<(Option<Statement<'c>>, usize)> {
        let db = self.handle()?;
        let len = c_int::try_from(sql.len())
            .map_err(|_| Error::new(sys::SQLITE_TOOBIG, "SQL text is too long"))?;
        let mut stmt: *mut sys::sqlite3_stmt = ptr::null_mut();
        let mut tail: *const c_char = ptr::null();
        let start = sql.as_ptr() as *const c_char;
        // SAFETY: `start..start+len` is owned by `sql` for the whole call; SQLite reads at most
        // `len` bytes and needs no terminator. `stmt` and `tail` are valid out-pointers.
        let rc = unsafe { sys::sqlite3_prepare_v2(db, start, len, &mut stmt, &mut tail) };
        if rc != sys::SQLITE_OK {
            return Err(self.last_error(rc));
        }
        let consumed = if tail.is_null() {
            sql.len()
        } else {
            // SAFETY: SQLite sets `tail` to a pointer into the same buffer, at or after `start`.
            unsafe { tail.offset_from(start) as usize }
        };
        let consumed = consumed.min(sql.len());
        let stmt = if stmt.is_null() {
            None
        } else {
            let flushes_cache = may_change_schema(leading_keyword(&sql[..consumed]));
            Some(Statement::new(self, stmt, flushes_cache))
        };
        Ok((stmt, consumed))
    }

    /// [`Connection::prepare_first`] through the connection's statement cache (see
    /// `statement_cache.rs`). When `sql` holds exactly one statement of a cacheable
    /// kind and of at most [`MAX_CACHED_SQL_LEN`](crate::MAX_CACHED_SQL_LEN) bytes, the
    /// statement comes from the cache when it is there, and goes back to it (reset,
    /// bindings cleared) when the returned guard drops; the offset is then `sql.len()`.
    /// Anything else (several statements, DDL, PRAGMA, a cache of capacity 0) is prepared as
    /// `prepare_first` does and finalized on drop.
    pub fn prepare_first_cached<'c>(
        &'c self,
        sql: &str,
    ) -> Result<(Option<CachedStatement<'c>>, usize)> {
        self.handle()?;
        let taken = self.cache.borrow_mut().take(sql);
        if let Some((idle, home)) = taken {
            let stmt = Statement::new(self, idle.into_raw(), false);
            return Ok((Some(CachedStatement::new(stmt, Some(home))), sql.len()));
        }
        let (stmt, used) = self.prepare_first(sql)?;
        let Some(stmt) = stmt else {
            return Ok((None, used));
        };
        let cacheable = self.statement_cache_capacity() > 0
            && sql.len() <= MAX_CACHED_SQL_LEN
            && is_cacheable_kind(leading_keyword(sql.as_bytes()))
            && is_blank(sql.get(used..).unwrap_or(""));
        let home = if cacheable {
            self.cache.borrow_mut().home_for_new(sql)
        } else {
            None
        };
        let used = if home.is_some() { sql.len() } else { used };
        Ok((Some(CachedStatement::new(stmt, home)), used))
    }

    /// Prepares exactly one statement of the caller's own through a cache of its own, apart
    /// from [`Connection::prepare_first_cached`]'s: a statement of the same text prepared
    /// there (a user's, which the caller's authorizer checks) is never handed one of these,
    /// nor these one of those. Off when the statement cache is off.
    pub fn prepare_private_cached<'c>(&'c self, sql: &str) -> Result<CachedStatement<'c>> {
        self.handle()?;
        let taken = self.cache.borrow_mut().take_private(sql);
        if let Some((idle, home)) = taken {
            let stmt = Statement::new(self, idle.into_raw(), false);
            return Ok(CachedStatement::new(stmt, Some(home)));
        }
        let (stmt, used) = self.prepare_first(sql)?;
        let stmt = stmt.ok_or_else(|| Error::new(sys::SQLITE_MISUSE, "empty SQL statement"))?;
        if !is_blank(sql.get(used..).unwrap_or("")) {
            return Err(Error::new(
                sys::SQLITE_MISUSE,
                "more than one SQL statement",
            ));
        }
        // Only statements that cannot change the schema come back (as in the shared cache).
        let keyword = leading_keyword(sql.as_bytes());
        let home = if is_cacheable_kind(keyword) {
            self.cache.borrow_mut().home_for_private(sql)
        } else {
            None
        };
        Ok(CachedStatement::new(stmt, home))
    }

    /// Prepares exactly one statement through the statement cache (see
    /// [`Connection::prepare_first_cached`]). Text after it is an error, as is empty text.
    pub fn prepare_cached<'c>(&'c self, sql: &str) -> Result<CachedStatement<'c>> {
        let (stmt, used) = self.prepare_first_cached(sql)?;
        let stmt = stmt.ok_or_else(|| Error::new(sys::SQLITE_MISUSE, "empty SQL statement"))?;
        if !is_blank(sql.get(used..).unwrap_or("")) {
            return Err(Error::new(
                sys::SQLITE_MISUSE,
                "more than one SQL statement",
            ));
        }
        Ok(stmt)
    }

    /// How many idle statements the cache may hold; 0 (the default) turns it off. Shrinking
    /// finalizes the least recently used ones. Only turn it on for a connection whose file's
    /// schema no other connection changes (see `statement_cache.rs`).
    pub fn set_statement_cache_capacity(&self, capacity: usize) {
        self.cache.borrow_mut().set_capacity(capacity);
    }

    pub fn statement_cache_capacity(&self) -> usize {
        self.cache.borrow().capacity()
    }

    /// Finalizes every idle cached statement; statements in use now are finalized when they
    /// are dropped instead of going back.
    pub fn flush_statement_cache(&self) {
        self.cache.borrow_mut().flush();
    }

    pub fn statement_cache_stats(&self) -> StatementCacheStats {
        self.cache.borrow().stats()
    }

    pub(crate) fn put_back_cached(&self, home: crate::statement_cache::Home, stmt: IdleStatement) {
        self.cache.borrow_mut().put_back(home, stmt);
    }

    /// Prepares exactly one statement. Text after it is an error, as is empty text.
    pub fn prepare<'c>(&'c self, sql: &str) -> Result<Statement<'c>> {
        let (stmt, used) = self.prepare_first(sql)?;
        let stmt = stmt.ok_or_else(|| Error::new(sys::SQLITE_MISUSE, "empty SQL statement"))?;
        if !is_blank(&sql[used..]) {
            return Err(Error::new(
                sys::SQLITE_MISUSE,
                "more than one SQL statement",
            ));
        }
        Ok(stmt)
    }

    /// Runs every statement in `sql`, stepping each to completion and discarding rows.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        self.execute_batch_bytes(sql.as_bytes())
    }

    /// [`Connection::execute_batch`] over raw bytes (see [`Connection::prepare_first_bytes`]).
    pub fn execute_batch_bytes(&self, sql: &[u8]) -> Result<()> {
        let mut rest = sql;
        loop {
            let (stmt, used) = self.prepare_first_bytes(rest)?;
            if let Some(mut stmt) = stmt {
                while stmt.step()?.is_row() {}
            }
            if used == 0 || used >= rest.len() {
                return Ok(());
            }
            rest = &rest[used..];
        }
    }

    /// Runs one statement and returns its first column of the first row, as an integer.
    pub fn query_i64(&self, sql: &str) -> Result<Option<i64>> {
        let mut stmt = self.prepare(sql)?;
        Ok(if stmt.step()?.is_row() {
            Some(stmt.column_i64(0))
        } else {
            None
        })
    }

    /// Runs one statement and returns its first column of the first row, as text.
    pub fn query_text(&self, sql: &str) -> Result<Option<String>> {
        let mut stmt = self.prepare(sql)?;
        Ok(if stmt.step()?.is_row() {
            Some(String::from_utf8_lossy(stmt.column_text(0)).into_owned())
        } else {
            None
        })
    }

    /// Rows changed by the most recent INSERT, UPDATE or DELETE (`sqlite3_changes64`).
    pub fn changes(&self) -> Result<i64> {
        let db = self.handle()?;
        // SAFETY: `db` is a valid open handle.
        Ok(unsafe { sys::sqlite3_changes64(db) })
    }

    /// Rows changed since the connection opened (`sqlite3_total_changes64`).
    pub fn total_changes(&self) -> Result<i64> {
        let db = self.handle()?;
        // SAFETY: `db` is a valid open handle.
        Ok(unsafe { sys::sqlite3_total_changes64(db) })
    }

    /// The rowid of the most recent successful INSERT on this connection.
    pub fn last_insert_rowid(&self) -> Result<i64> {
        let db = self.handle()?;
        // SAFETY: `db` is a valid open handle.
        Ok(unsafe { sys::sqlite3_last_insert_rowid(db) })
    }

    /// Sets the value `last_insert_rowid` reports until the next INSERT. Resetting it to 0
    /// before a statement tells whether that statement inserted a row.
    pub fn set_last_insert_rowid(&self, rowid: i64) -> Result<()> {
        let db = self.handle()?;
        // SAFETY: `db` is a valid open handle.
        unsafe { sys::sqlite3_set_last_insert_rowid(db, rowid) };
        Ok(())
    }

    /// Sets how long SQLite retries on a locked database before returning `SQLITE_BUSY`.
    pub fn busy_timeout(&self, millis: i32) -> Result<()> {
        let db = self.handle()?;
        // SAFETY: `db` is a valid open handle.
        let rc = unsafe { sys::sqlite3_busy_timeout(db, millis) };
        if rc != sys::SQLITE_OK {
            return Err(self.last_error(rc));
        }
        Ok(())
    }

    /// True when the open transaction holds foreign key violations that COMMIT would refuse
    /// (deferred constraints, or immediate ones under `PRAGMA defer_foreign_keys`):
    /// `SQLITE_DBSTATUS_DEFERRED_FKS`.
    pub fn has_deferred_foreign_key_violations(&self) -> Result<bool> {
        let db = self.handle()?;
        let (mut current, mut highest) = (0, 0);
        // SAFETY: `db` is valid and the out-pointers are valid for the call.
        let rc = unsafe {
            sys::sqlite3_db_status(
                db,
                sys::SQLITE_DBSTATUS_DEFERRED_FKS,
                &mut current,
                &mut highest,
                0,
            )
        };
        if rc != sys::SQLITE_OK {
            return Err(self.last_error(rc));
        }
        Ok(current != 0)
    }

    /// True when no transaction is open (`sqlite3_get_autocommit`).
    pub fn is_autocommit(&self) -> Result<bool> {
        let db = self.handle()?;
        // SAFETY: `db` is a valid open handle.
        Ok(unsafe { sys::sqlite3_get_autocommit(db) } != 0)
    }

    /// The transaction state of schema `schema` ("main", "temp", ...).
    pub fn txn_state(&self, schema: &str) -> Result<TxnState> {
        let db = self.handle()?;
        let schema = CString::new(schema).map_err(|_| Error::interior_nul("schema name"))?;
        // SAFETY: `db` is valid and `schema` is NUL-terminated for the call.
        let state = unsafe { sys::sqlite3_txn_state(db, schema.as_ptr()) };
        Ok(match state {
            sys::SQLITE_TXN_READ => TxnState::Read,
            sys::SQLITE_TXN_WRITE => TxnState::Write,
            _ => TxnState::None,
        })
    }

    /// Allows or forbids double-quoted string literals in DML and DDL. SQLite's default allows
    /// them, and rqlite clients rely on it (`VALUES("fiona")`).
    pub fn set_double_quoted_strings(&self, allow: bool) -> Result<()> {
        self.db_config(sys::SQLITE_DBCONFIG_DQS_DML, allow)?;
        self.db_config(sys::SQLITE_DBCONFIG_DQS_DDL, allow)?;
        Ok(())
    }

    /// Turns SQLite's "defensive" mode on or off: it forbids writes to the schema and other
    /// operations that can corrupt a database, even through `PRAGMA writable_schema`.
    pub fn set_defensive(&self, on: bool) -> Result<()> {
        self.db_config(sys::SQLITE_DBCONFIG_DEFENSIVE, on)
            .map(|_| ())
    }

    /// Whether the schema is trusted: with `false`, functions with side effects cannot run
    /// from triggers, views or defaults unless they are flagged innocuous.
    pub fn set_trusted_schema(&self, on: bool) -> Result<()> {
        self.db_config(sys::SQLITE_DBCONFIG_TRUSTED_SCHEMA, on)
            .map(|_| ())
    }

    /// Whether `load_extension()` may be called from SQL or the C API.
    pub fn set_load_extension(&self, on: bool) -> Result<()> {
        self.db_config(sys::SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, on)
            .map(|_| ())
    }

    /// Loads the SQLite extension at `path` into this connection with its default entry
    /// point (`sqlite3_load_extension`). Loading is allowed for this call only, through the C
    /// API: SQL's `load_extension()` stays refused, before, during and after.
    pub fn load_extension(&self, path: &Path) -> Result<()> {
        let db = self.handle()?;
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::interior_nul("extension path"))?;
        self.set_load_extension(true)?;
        let mut message: *mut c_char = ptr::null_mut();
        // SAFETY: `db` is a valid open handle; `c_path` is a NUL-terminated string that lives
        // across the call; a null entry point asks for the default one; `message` is a valid
        // out-pointer that SQLite sets to NULL or to a string it allocated.
        let rc =
            unsafe { sys::sqlite3_load_extension(db, c_path.as_ptr(), ptr::null(), &mut message) };
        let text = if message.is_null() {
            None
        } else {
            // SAFETY: a non-null `message` is a NUL-terminated string from sqlite3_malloc,
            // read once, then freed with sqlite3_free as the documentation requires.
            unsafe {
                let text = CStr::from_ptr(message).to_string_lossy().into_owned();
                sys::sqlite3_free(message.cast());
                Some(text)
            }
        };
        let off = self.set_load_extension(false);
        if rc != sys::SQLITE_OK {
            return Err(Error::new(
                rc,
                format!(
                    "load extension {}: {}",
                    path.display(),
                    text.unwrap_or_else(|| "failed".into())
                ),
            ));
        }
        off
    }

    /// One boolean `sqlite3_db_config` option; returns the value now in force.
    fn db_config(&self, op: c_int, on: bool) -> Result<bool> {
        let db = self.handle()?;
        let mut now: c_int = 0;
        // SAFETY: every op passed here takes (int, int*) variadic arguments, as documented for
        // the boolean SQLITE_DBCONFIG_* options; `now` is a valid out-pointer.
        let rc = unsafe { sys::sqlite3_db_config(db, op, c_int::from(on), &mut now as *mut c_int) };
        if rc != sys::SQLITE_OK {
            return Err(self.last_error(rc));
        }
        Ok(now != 0)
    }

    /// Sets (or with `None`, removes) the authorizer SQLite asks while it prepares statements
    /// on this connection (see `hooks.rs`). Statements prepared before keep the decisions made
    /// then; SQLite asks again when it re-prepares one after a schema change.
    pub fn set_authorizer<A: Authorizer>(&mut self, authorizer: Option<Arc<A>>) -> Result<()> {
        let db = self.handle()?;
        let registered = authorizer.map(|a| Registered::<dyn Authorizer>::new(a.clone(), a));
        let rc = match &registered {
            // SAFETY: `db` is valid; the user data points into `registered`, which is stored in
            // `self` below and outlives every call SQLite makes with it (it is replaced only
            // after SQLite holds the new pointer, and dropped after the handle is closed).
            Some(r) => unsafe {
                sys::sqlite3_set_authorizer(
                    db,
                    Some(crate::hooks::authorizer_trampoline),
                    r.user_data(),
                )
            },
            // SAFETY: `db` is valid; a null callback removes the authorizer.
            None => unsafe { sys::sqlite3_set_authorizer(db, None, ptr::null_mut()) },
        };
        if rc != sys::SQLITE_OK {
            return Err(self.last_error(rc));
        }
        self.authorizer = registered;
        Ok(())
    }

    /// The authorizer set with [`Connection::set_authorizer`], if it is an `A`.
    pub fn authorizer<A: Authorizer>(&self) -> Option<&A> {
        self.authorizer.as_ref()?.any.downcast_ref::<A>()
    }

    /// Sets (or with `None`, removes) the progress handler, called every `every_steps`
    /// virtual-machine instructions of this connection's running statements (see `hooks.rs`).
    pub fn set_progress_handler<P: ProgressHandler>(
        &mut self,
        every_steps: u32,
        handler: Option<Arc<P>>,
    ) -> Result<()> {
        let db = self.handle()?;
        let steps = c_int::try_from(every_steps.max(1)).unwrap_or(c_int::MAX);
        let registered = handler.map(|p| Registered::<dyn ProgressHandler>::new(p.clone(), p));
        match &registered {
            // SAFETY: as in `set_authorizer`: the user data outlives SQLite's use of it.
            Some(r) => unsafe {
                sys::sqlite3_progress_handler(
                    db,
                    steps,
                    Some(crate::hooks::progress_trampoline),
                    r.user_data(),
                )
            },
            // SAFETY: `db` is valid; a null callback removes the handler.
            None => unsafe { sys::sqlite3_progress_handler(db, 0, None, ptr::null_mut()) },
        }
        self.progress = registered;
        Ok(())
    }

    /// Sets (or with `None`, removes) the pre-update hook SQLite calls before each row a
    /// statement of this connection changes (see `preupdate.rs`).
    pub fn set_preupdate_hook<H: PreupdateHook>(&mut self, hook: Option<Arc<H>>) -> Result<()> {
        let db = self.handle()?;
        let registered = hook.map(|h| Registered::<dyn PreupdateHook>::new(h.clone(), h));
        match &registered {
            // SAFETY: as in `set_authorizer`: the user data outlives SQLite's use of it.
            Some(r) => unsafe {
                sys::sqlite3_preupdate_hook(db, Some(crate::preupdate::trampoline), r.user_data())
            },
            // SAFETY: `db` is valid; a null callback removes the hook.
            None => unsafe { sys::sqlite3_preupdate_hook(db, None, ptr::null_mut()) },
        };
        self.preupdate = registered;
        Ok(())
    }

    /// The pre-update hook set with [`Connection::set_preupdate_hook`], if it is an `H`.
    pub fn preupdate_hook<H: PreupdateHook>(&self) -> Option<&H> {
        self.preupdate.as_ref()?.any.downcast_ref::<H>()
    }

    /// Runs a WAL checkpoint on "main" in `mode` (`sys::SQLITE_CHECKPOINT_*`). Returns the WAL
    /// size in frames and the number of frames checkpointed.
    pub fn wal_checkpoint(&self, mode: c_int) -> Result<(i32, i32)> {
        let db = self.handle()?;
        let (mut log, mut done) = (0, 0);
        // SAFETY: `db` is valid, the schema name is a static C string, out-pointers are valid.
        let rc = unsafe {
            sys::sqlite3_wal_checkpoint_v2(db, c"main".as_ptr(), mode, &mut log, &mut done)
        };
        if rc != sys::SQLITE_OK {
            return Err(self.last_error(rc));
        }
        Ok((log, done))
    }

    /// The file name of schema `schema`, or None for an in-memory or temp database.
    pub fn filename(&self, schema: &str) -> Result<Option<String>> {
        let db = self.handle()?;
        let schema = CString::new(schema).map_err(|_| Error::interior_nul("schema name"))?;
        // SAFETY: `db` and `schema` are valid for the call; the result is owned by SQLite and
        // copied before we return.
        let p = unsafe { sys::sqlite3_db_filename(db, schema.as_ptr()) };
        if p.is_null() {
            return Ok(None);
        }
        // SAFETY: a non-null result is a NUL-terminated string owned by the connection.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        Ok(if s.is_empty() { None } else { Some(s) })
    }

    /// Whether an interrupt is pending on this connection (`sqlite3_is_interrupted`): set
    /// by [`InterruptHandle::interrupt`] until no statement is running. Lets work that runs
    /// no statement of its own for a while (a dump gathering other connections' output) stop
    /// when asked to.
    pub fn is_interrupted(&self) -> bool {
        let Ok(db) = self.handle() else {
            return false;
        };
        // SAFETY: `db` is a valid open handle; the call only reads a flag.
        unsafe { sys::sqlite3_is_interrupted(db) != 0 }
    }

    /// A handle that can interrupt this connection's running statement from another thread.
    pub fn interrupt_handle(&self) -> InterruptHandle {
        InterruptHandle {
            db: Arc::clone(&self.interrupt),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.db.is_null() {
            return;
        }
        self.flush_statement_cache();
        let mut shared = self.interrupt.lock().unwrap_or_else(|p| p.into_inner());
        *shared = 0;
        // SAFETY: the handle is valid, no statement or backup outlives `self` (they borrow
        // it), and the cache's statements were just finalized, so nothing depends on the
        // handle any more.
        let rc = unsafe { sys::sqlite3_close(self.db) };
        if rc != sys::SQLITE_OK {
            // The handle stays open and may still use the apply VFS and call the hooks: keep
            // them registered.
            std::mem::forget(self.apply.take());
            std::mem::forget(self.authorizer.take());
            std::mem::forget(self.progress.take());
            std::mem::forget(self.preupdate.take());
        }
        self.db = ptr::null_mut();
    }
}

/// Interrupts the statement a connection is running, from any thread. After the connection
/// closes, `interrupt()` does nothing.
#[derive(Clone)]
pub struct InterruptHandle {
    db: SharedHandle,
}

impl InterruptHandle {
    pub fn interrupt(&self) {
        let guard = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if *guard != 0 {
            // SAFETY: the pointer is non-zero only while the connection is open: the connection
            // zeroes it under this same lock before closing. sqlite3_interrupt is thread-safe.
            unsafe { sys::sqlite3_interrupt(*guard as *mut sys::sqlite3) };
        }
    }
}

/// Builds an `Error` from a handle's current message.
///
/// # Safety
/// `db` must be a valid (possibly failed-open) SQLite handle.
pub(crate) unsafe fn error_from_handle(db: *mut sys::sqlite3, rc: c_int) -> Error {
    // SAFETY: the caller guarantees `db` is valid; errmsg returns a NUL-terminated string owned
    // by SQLite, copied immediately.
    let msg = unsafe { CStr::from_ptr(sys::sqlite3_errmsg(db)) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: as above.
    let ext = unsafe { sys::sqlite3_extended_errcode(db) };
    // Prefer the code the failing call returned; the handle's code can be stale for misuse
    // errors that SQLite reports without recording them.
    let code = if rc & 0xff == ext & 0xff { ext } else { rc };
    Error::new(code, msg)
}

/// True when `s` holds only whitespace and SQL comments (what SQLite prepares to nothing).
fn is_blank(s: &str) -> bool {
    let mut rest = s.trim_start();
    loop {
        if rest.is_empty() {
            return true;
        }
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find('\n').map_or("", |i| &r[i + 1..]).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]).trim_start();
        } else if let Some(r) = rest.strip_prefix(';') {
            rest = r.trim_start();
        } else {
            return false;
        }
    }
}
