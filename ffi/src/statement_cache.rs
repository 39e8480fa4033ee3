//! The prepared-statement cache of one connection ([`Connection::prepare_first_cached`]).
//!
//! Running the same SQL text again skips SQLite's parser and planner: the cache keeps idle
//! prepared statements keyed by their exact SQL text, at most `capacity` of them, and evicts
//! the least recently used. A statement handed out leaves the cache while it is in use (the
//! same text in use twice gets two statements) and comes back when its [`CachedStatement`]
//! drops, reset and with its bindings cleared, on every path (success, error, early drop), so
//! an idle statement never holds a read transaction, a half-done write or a bound value.
//!
//! Invariants:
//! - Only a text of at most [`MAX_CACHED_SQL_LEN`] bytes that SQLite parses as exactly one
//!   statement (the rest is whitespace or comments) whose statement is a query or plain DML (`SELECT`, `VALUES`, `WITH`, `INSERT`,
//!   `REPLACE`, `UPDATE`, `DELETE`) is cached. Those check the schema cookie every time they
//!   run. Other kinds (`PRAGMA`, DDL, transaction control, `ATTACH`) may compile to programs
//!   that read no cookie, so a cached copy could answer from an old schema.
//! - A cached statement is never older than the connection's own last schema change. Stepping
//!   a statement that may change the schema (anything but a query, DML or transaction
//!   control: `CREATE`, `DROP`, `ALTER`, `ATTACH`, `DETACH`, `PRAGMA`, `VACUUM`, ...) empties
//!   the cache, as does becoming the destination of a backup; and a statement SQLite expired
//!   (a rollback that undid DDL, a new function) is prepared afresh instead of handed out. So
//!   what a caller reads before the first step (column count, names, declared types) is what
//!   a fresh prepare would give. Changes made by *other* connections to the same file are not
//!   seen this way (SQLite still re-prepares at the first step, but the metadata read before
//!   it would be stale): a connection that shares its file with a writer, such as a pooled
//!   reader, keeps the cache off, which is the default (capacity 0).
//! - A flush bumps an epoch; a statement handed out before the flush is finalized when it
//!   comes back instead of being kept.
//! - Every idle statement is finalized before the connection closes (`sqlite3_close` fails
//!   with `SQLITE_BUSY` while any statement is alive).

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use libsqlite3_sys as sys;

use crate::statement::Statement;

/// The capacity raftlite gives its write connection.
pub const DEFAULT_STATEMENT_CACHE_CAPACITY: usize = 64;

/// Longer texts are not cached. Texts that repeat are parameterised and short; a long one is
/// usually full of literals (a dump's INSERT), and an idle statement holds a copy of its text
/// and of its literals, so this bounds the cache's memory to about `capacity` times a few
/// times this.
pub const MAX_CACHED_SQL_LEN: usize = 16 * 1024;

/// What the cache holds and how it has been used, for tests and status pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatementCacheStats {
    pub capacity: usize,
    /// Idle statements held now.
    pub len: usize,
    /// Statements handed out from the cache.
    pub hits: u64,
    /// Cacheable texts that had to be prepared.
    pub misses: u64,
}

/// A prepared statement owned by the cache while nobody uses it; finalized on drop.
pub(crate) struct IdleStatement(NonNull<sys::sqlite3_stmt>);

impl IdleStatement {
    /// Takes ownership of `stmt`, which must be a live statement nothing else will finalize.
    pub(crate) fn new(stmt: NonNull<sys::sqlite3_stmt>) -> IdleStatement {
        IdleStatement(stmt)
    }

    /// Gives up ownership: the caller finalizes the statement (by wrapping it in a
    /// `Statement`).
    pub(crate) fn into_raw(self) -> *mut sys::sqlite3_stmt {
        let me = ManuallyDrop::new(self);
        me.0.as_ptr()
    }

    /// True when SQLite marked the statement for re-preparation (`sqlite3_expired`).
    fn expired(&self) -> bool {
        // SAFETY: the statement is valid until this value is dropped or turned into a raw
        // pointer. sqlite3_expired only reads a flag; it is deprecated in SQLite's docs but
        // compiled in (the bundled build does not set SQLITE_OMIT_DEPRECATED).
        unsafe { sys::sqlite3_expired(self.0.as_ptr()) != 0 }
    }
}

impl Drop for IdleStatement {
    fn drop(&mut self) {
        // SAFETY: the cache owns the statement alone (it was taken out of its `Statement`),
        // so it is finalized exactly once, here; the connection is still open because it
        // finalizes its cache before closing.
        unsafe { sys::sqlite3_finalize(self.0.as_ptr()) };
    }
}

struct Idle {
    stmt: IdleStatement,
    last_used: u64,
}

/// The cache itself. The connection keeps it in a `RefCell` and borrows it only inside these
/// short methods; the only SQLite call made under the borrow is `sqlite3_finalize`, which
/// calls back into nothing of ours.
#[derive(Default)]
pub(crate) struct StatementCache {
    capacity: usize,
    idle: HashMap<Box<str>, Idle>,
    /// The caller's own statements ([`crate::Connection::prepare_private_cached`]), apart
    /// from `idle`: a statement of the same text prepared by anyone else (a user, through
    /// the gate) never gets one of these. A handful of texts: not counted, never evicted.
    private: HashMap<Box<str>, IdleStatement>,
    tick: u64,
    epoch: u64,
    hits: u64,
    misses: u64,
}

/// Where a handed-out statement goes back to.
pub(crate) struct Home {
    key: Box<str>,
    epoch: u64,
    private: bool,
}

impl StatementCache {
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn stats(&self) -> StatementCacheStats {
        StatementCacheStats {
            capacity: self.capacity,
            len: self.idle.len(),
            hits: self.hits,
            misses: self.misses,
        }
    }

    /// Takes the idle statement for `sql` out of the cache. An expired one is finalized and
    /// not returned (the caller prepares the text afresh).
    pub(crate) fn take(&mut self, sql: &str) -> Option<(IdleStatement, Home)> {
        if self.idle.is_empty() {
            // Not even a hash of the text when the cache is off or empty.
            return None;
        }
        let (key, idle) = self.idle.remove_entry(sql)?;
        if idle.stmt.expired() {
            return None;
        }
        self.hits += 1;
        Some((
            idle.stmt,
            Home {
                key,
                epoch: self.epoch,
                private: false,
            },
        ))
    }

    /// [`StatementCache::take`] among the private statements.
    pub(crate) fn take_private(&mut self, sql: &str) -> Option<(IdleStatement, Home)> {
        if self.capacity == 0 {
            return None;
        }
        let (key, stmt) = self.private.remove_entry(sql)?;
        if stmt.expired() {
            return None;
        }
        Some((
            stmt,
            Home {
                key,
                epoch: self.epoch,
                private: true,
            },
        ))
    }

    /// Where a freshly prepared private statement goes back to (caching must be on).
    pub(crate) fn home_for_private(&mut self, sql: &str) -> Option<Home> {
        (self.capacity > 0).then(|| Home {
            key: sql.into(),
            epoch: self.epoch,
            private: true,
        })
    }

    /// Where a freshly prepared statement for `sql` will go back to (caching must be on).
    pub(crate) fn home_for_new(&mut self, sql: &str) -> Option<Home> {
        if self.capacity == 0 {
            return None;
        }
        self.misses += 1;
        Some(Home {
            key: sql.into(),
            epoch: self.epoch,
            private: false,
        })
    }

    /// Keeps `stmt` (already reset, bindings cleared) for its text. It is finalized instead
    /// if the cache was flushed since it left, or is off now; keeping it may evict the least
    /// recently used entry. A statement already idle under the same text (the text was in use
    /// twice at once) is replaced.
    pub(crate) fn put_back(&mut self, home: Home, stmt: IdleStatement) {
        if home.epoch != self.epoch || self.capacity == 0 {
            return;
        }
        if home.private {
            self.private.insert(home.key, stmt);
            return;
        }
        self.tick += 1;
        let fresh = Idle {
            stmt,
            last_used: self.tick,
        };
        self.idle.insert(home.key, fresh);
        self.shrink_to_capacity();
    }

    /// Sets the capacity, evicting down to it.
    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        if capacity == 0 {
            self.private.clear();
        }
        self.shrink_to_capacity();
    }

    /// Finalizes every idle statement and bumps the epoch, so that statements in use now are
    /// finalized when they come back.
    pub(crate) fn flush(&mut self) {
        self.epoch += 1;
        self.idle.clear();
        self.private.clear();
    }

    /// Evicts least recently used entries until at most `capacity` remain. Linear in the
    /// capacity per eviction, which is small (tens of entries) and only paid on a miss.
    fn shrink_to_capacity(&mut self) {
        while self.idle.len() > self.capacity {
            let Some(oldest) = self.idle.values().map(|idle| idle.last_used).min() else {
                break;
            };
            // Ticks are unique, so this removes exactly one entry.
            self.idle.retain(|_, idle| idle.last_used != oldest);
        }
    }
}

/// A statement from [`Connection::prepare_first_cached`]: use it as a [`Statement`]. When it
/// drops, a cacheable statement is reset, its bindings cleared, and it goes back to the
/// connection's cache; any other is finalized, as a plain `Statement` is.
///
/// [`Connection::prepare_first_cached`]: crate::Connection::prepare_first_cached
pub struct CachedStatement<'c> {
    stmt: ManuallyDrop<Statement<'c>>,
    home: Option<Home>,
}

impl<'c> CachedStatement<'c> {
    pub(crate) fn new(stmt: Statement<'c>, home: Option<Home>) -> CachedStatement<'c> {
        CachedStatement {
            stmt: ManuallyDrop::new(stmt),
            home,
        }
    }

    /// True when the statement goes back to the cache on drop (it was cached or will be).
    pub fn is_cacheable(&self) -> bool {
        self.home.is_some()
    }
}

/// A plain statement in the same guard type, finalized on drop; lets a caller mix cached and
/// uncached statements.
impl<'c> From<Statement<'c>> for CachedStatement<'c> {
    fn from(stmt: Statement<'c>) -> CachedStatement<'c> {
        CachedStatement::new(stmt, None)
    }
}

impl<'c> Deref for CachedStatement<'c> {
    type Target = Statement<'c>;
    fn deref(&self) -> &Statement<'c> {
        &self.stmt
    }
}

impl<'c> DerefMut for CachedStatement<'c> {
    fn deref_mut(&mut self) -> &mut Statement<'c> {
        &mut self.stmt
    }
}

impl Drop for CachedStatement<'_> {
    fn drop(&mut self) {
        // SAFETY: `stmt` is taken exactly once, here, and never used again.
        let stmt = unsafe { ManuallyDrop::take(&mut self.stmt) };
        match self.home.take() {
            Some(home) => stmt.return_to_cache(home),
            None => drop(stmt),
        }
    }
}

/// The first keyword of `sql`, skipping whitespace, comments and empty statements (`;`).
/// Empty when the text starts with something else (a quote, a digit, nothing).
pub(crate) fn leading_keyword(sql: &[u8]) -> &[u8] {
    let mut rest = sql;
    loop {
        match rest {
            [b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | b';', tail @ ..] => rest = tail,
            [b'-', b'-', tail @ ..] => {
                rest = match tail.iter().position(|&b| b == b'\n') {
                    Some(i) => &tail[i + 1..],
                    None => &[],
                }
            }
            [b'/', b'*', tail @ ..] => {
                rest = match tail.windows(2).position(|w| w == b"*/") {
                    Some(i) => &tail[i + 2..],
                    None => &[],
                }
            }
            _ => break,
        }
    }
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .unwrap_or(rest.len());
    &rest[..end]
}

fn keyword_in(keyword: &[u8], set: &[&str]) -> bool {
    set.iter()
        .any(|k| keyword.eq_ignore_ascii_case(k.as_bytes()))
}

/// Statement kinds that read through the schema cookie check: safe to keep prepared.
const CACHEABLE: &[&str] = &[
    "SELECT", "VALUES", "WITH", "INSERT", "REPLACE", "UPDATE", "DELETE",
];

/// Statement kinds that cannot change the schema by running (a rollback that undoes DDL
/// expires every statement, which the cache checks).
const SCHEMA_PRESERVING: &[&str] = &["BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"];

/// True when a statement starting with `keyword` may be cached.
pub(crate) fn is_cacheable_kind(keyword: &[u8]) -> bool {
    keyword_in(keyword, CACHEABLE)
}

/// True when running a statement starting with `keyword` may change the schema (unknown
/// kinds count as changing it).
pub(crate) fn may_change_schema(keyword: &[u8]) -> bool {
    !keyword_in(keyword, CACHEABLE) && !keyword_in(keyword, SCHEMA_PRESERVING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_keyword_skips_blanks_comments_and_empty_statements() {
        assert_eq!(leading_keyword(b"  insert into t"), b"insert");
        assert_eq!(leading_keyword(b"-- a\n/* b */ ;\x0b\tSELECT 1"), b"SELECT");
        assert_eq!(leading_keyword(b"/* unterminated"), b"");
        assert_eq!(leading_keyword(b"'x'"), b"");
        assert_eq!(leading_keyword(b""), b"");
    }

    #[test]
    fn kinds() {
        assert!(is_cacheable_kind(b"Insert"));
        assert!(is_cacheable_kind(b"with"));
        assert!(!is_cacheable_kind(b"PRAGMA"));
        assert!(!is_cacheable_kind(b"BEGIN"));
        assert!(may_change_schema(b"create"));
        assert!(may_change_schema(b"ATTACH"));
        assert!(may_change_schema(b"pragma"));
        assert!(may_change_schema(b""));
        assert!(!may_change_schema(b"ROLLBACK"));
        assert!(!may_change_schema(b"update"));
    }
}
