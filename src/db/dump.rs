//! The SQL text dumper: `GET /db/backup?fmt=sql`, the shell's `.dump` and `raftlite dump`.
//!
//! It writes the same bytes as the `.dump` command of the `sqlite3` shell, version 3.40.1,
//! except for the digits of REAL literals (see below). It owns the dump format and nothing
//! else: opening connections, HTTP and channels belong to its callers. The conformance suite
//! `tests/dump_conformance/` holds it to that on tricky databases (`docs/backup.md`).
//!
//! # How the shell's `.dump` works, and how we follow it
//!
//! The shell writes `PRAGMA foreign_keys=OFF;` and `BEGIN TRANSACTION;`, then makes two passes
//! over `sqlite_schema`:
//!
//! 1. Tables: `SELECT name, type, sql FROM sqlite_schema WHERE type=='table' AND sql NOT NULL
//!    ORDER BY tbl_name='sqlite_sequence', rowid` (we run the very same query, so the order is
//!    the same: creation order, `sqlite_sequence` last). For each row:
//!    - `sqlite_sequence`: writes `DELETE FROM sqlite_sequence;`, then its rows.
//!    - `sqlite_stat1`..`sqlite_stat4` (glob `sqlite_stat?`): writes `ANALYZE sqlite_schema;`
//!      (which creates the stat tables), then their rows.
//!    - other `sqlite_*` tables: skipped.
//!    - virtual tables (`sql` starts with `CREATE VIRTUAL TABLE`): the first one writes
//!      `PRAGMA writable_schema=ON;`; each one writes `INSERT INTO
//!      sqlite_schema(type,name,tbl_name,rootpage,sql)VALUES('table',...,0,...);` and no rows.
//!      Their shadow tables are ordinary tables and are dumped as such.
//!    - ordinary tables: the `CREATE` text, then one `INSERT INTO t VALUES(...);` per row.
//!      `CREATE TABLE "x"` / `CREATE TABLE 'x'` become `CREATE TABLE IF NOT EXISTS ...` (so that a
//!      dump of FTS shadow tables loads after the virtual table made them). A `CREATE` text
//!      with a comment in it gets the shortest of `""`, `"*/"`, `"\n"` appended that makes
//!      `text;` complete (`sqlite3_complete`).
//! 2. Indexes, triggers and views: `SELECT sql FROM sqlite_schema WHERE sql NOT NULL AND type
//!    IN ('index','trigger','view')`, in table scan (rowid) order, each followed by `;\n`, or by
//!    `\n;\n` when the text contains `--` anywhere.
//!
//! Then `PRAGMA writable_schema=OFF;` if it was turned on, and `COMMIT;`, or `ROLLBACK; -- due
//! to errors` when some table could not be read.
//!
//! Rows: the column list is `PRAGMA table_info`, which leaves out generated columns, so their
//! values are not dumped and `INSERT INTO t VALUES(...)` without a column list is valid. Rowids of
//! tables without an INTEGER PRIMARY KEY are not kept (the shell's default, no
//! `--preserve-rowids`). Values are written as the shell writes them:
//! - NULL as `NULL`, INTEGER in decimal, BLOB as `X'..'` (lowercase hex).
//! - REAL: `1e999` / `-1e999` for the infinities; a value equal to `(double)(int64)v` (C cast,
//!   so out-of-range values never are) as that integer plus `.0`; any other value as SQLite's
//!   `%!.20g`. -0.0 thus becomes `0.0`, as in the shell (it loses the sign).
//! - TEXT: cut at the first NUL byte (the shell handles C strings; it loses the rest), quoted
//!   with `'` doubled. Text with a newline or carriage return becomes
//!   `replace(replace('..\r..\n..','\r',char(13)),'\n',char(10))`, where the markers are `\n`
//!   and `\r`, or `\012` / `\015` when the text already holds the first form, or `(\n0)`,
//!   `(\n1)`, ... when it holds both. Bytes go out as stored (invalid UTF-8 included).
//! - Identifiers after `INSERT INTO` are double-quoted only when needed: not
//!   `[A-Za-z_][A-Za-z0-9_]*`, or one of SQLite 3.40's 147 keywords.
//!
//! The one allowed difference: REAL digits. We format with the bundled SQLite's `%!.20g`
//! (3.54), whose last digits can differ from 3.40.1's; both parse back to the same double.
//!
//! # Snapshot and streaming
//!
//! [`dump`] opens a savepoint (`SAVEPOINT raftlite_dump`; a deferred read transaction when the
//! connection is in autocommit mode) before the first read and releases it after the last, so
//! the whole dump is one consistent snapshot: a write committed by another connection meanwhile
//! never shows up half-way. The connection may be read-only.
//!
//! Rows are formatted straight from the column values of one prepared `SELECT` per table into
//! a 64 KiB buffer that is handed to the writer whenever it fills; a value larger than the
//! buffer is written through in pieces. Memory stays bounded by the buffer, the current row
//! (which SQLite holds anyway) and the schema. Backpressure comes from the writer blocking. A
//! writer error stops the dump at once with [`DumpError::Write`].
//!
//! # `tables=` subsets
//!
//! `dump(conn, Some(names), out)` dumps exactly the named tables: a table is chosen when its
//! name equals one of `names` under SQLite's case-insensitive (ASCII) comparison; there are no
//! LIKE wildcards, and unknown names are skipped. A chosen virtual table brings its shadow
//! tables (`<name>_*`, as the shell's own pattern dump does). The dump holds, in the full dump's
//! order and format: the chosen tables and their rows, the indexes and triggers whose
//! `tbl_name` is a chosen table, and, when a chosen table has a `sqlite_sequence` row, that row
//! as `DELETE FROM sqlite_sequence WHERE name='t';` plus `INSERT INTO sqlite_sequence
//! VALUES('t',N);` (a subset must not wipe other tables' counters when loaded into a live
//! database). Views and `sqlite_stat*` tables are never part of a subset. The shell's `.dump
//! PATTERN` differs (LIKE matching, no indexes), so subsets are tested against golden text.
//!
//! # IMPLEMENTATION CAVEATS
//!
//! - The shell sets `PRAGMA writable_schema=ON` while dumping so that it can read databases
//!   with schema rows SQLite cannot parse. The dumper leaves the setting to its caller:
//!   `raftlite dump FILE` turns it on on its private read-only connection
//!   (`src/shell/offline.rs`) and matches the shell on such files; the server keeps it off on
//!   its shared connections, so there a schema that cannot be read fails with
//!   [`DumpError::Sqlite`].
//! - Corrupt table pages: like the shell, we write `/****** CORRUPTION ERROR *******/`, read the
//!   table again backwards (`PRAGMA reverse_unordered_selects`), and end with `ROLLBACK; --
//!   due to errors`. Which rows come out before the damage depends on the SQLite version that
//!   reads them (ours is 3.54), so the output may differ from 3.40.1's on the same file.
//! - Other errors while reading one table (SQLITE_ERROR and the like) count as dump errors, as
//!   in the shell, but their messages go nowhere: the shell prints them to stderr; callers get
//!   the count in [`DumpStats::errors`]. Errors that say the dump itself cannot go on
//!   (interrupt, I/O, out of memory, busy/locked) abort with [`DumpError::Sqlite`].
//! - The shell's `run_table_dump_query` prints an error context after a failed prepare of the
//!   index/trigger/view query; we print the error line only.

use std::io::{self, Write};

use raftlite_ffi::{Connection, ErrorCode, Statement, ValueRef};

mod parallel;
pub use parallel::{helper_count, share_snapshot};

/// Why a dump stopped. The caller must tell a failing database from a failing client.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The database could not be read (or the snapshot could not be opened).
    #[error("read database for dump: {0}")]
    Sqlite(#[from] raftlite_ffi::Error),
    /// The writer failed: for HTTP, usually a client that went away.
    #[error("write dump: {0}")]
    Write(#[from] io::Error),
}

/// What a finished dump wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Bytes handed to the writer.
    pub bytes: u64,
    /// `INSERT` statements written (rows of every table, `sqlite_sequence` included).
    pub rows: u64,
    /// Tables whose `CREATE` (or virtual-table schema row) was written.
    pub tables: u64,
    /// Errors recorded in the dump, as the shell counts them; > 0 means it ends in `ROLLBACK`.
    pub errors: u64,
}

/// Writes a SQL text dump of the `main` database of `conn` to `out`, the same bytes as the
/// `sqlite3` 3.40.1 shell's `.dump` (see the module doc). `tables` limits it to those tables.
/// The whole dump is one read snapshot; `out` is flushed at the end.
pub fn dump(
    conn: &Connection,
    tables: Option<&[String]>,
    out: &mut dyn Write,
) -> Result<DumpStats, DumpError> {
    dump_excluding(conn, tables, &[], out)
}

/// [`dump`], leaving out the tables named in `exclude` (exact names, ASCII case-insensitive,
/// as SQLite compares them), with their indexes and triggers. The server uses it to keep its
/// internal state table out of `GET /db/backup?fmt=sql`; with an empty `exclude` the output is
/// exactly [`dump`]'s, so `raftlite dump FILE` stays identical to the shell.
pub fn dump_excluding(
    conn: &Connection,
    tables: Option<&[String]>,
    exclude: &[&str],
    out: &mut dyn Write,
) -> Result<DumpStats, DumpError> {
    dump_with_helpers(conn, &mut [], tables, exclude, out)
}

/// [`dump_excluding`], with `helpers` reading the rows of large tables in parallel (see
/// `parallel.rs`): the same bytes, sooner. Every helper must read the very state `conn`
/// reads, so `conn` must already be inside a transaction that has read, and the helpers
/// inside transactions on its snapshot: [`share_snapshot`] opens them so.
pub fn dump_with_helpers(
    conn: &Connection,
    helpers: &mut [Connection],
    tables: Option<&[String]>,
    exclude: &[&str],
    out: &mut dyn Write,
) -> Result<DumpStats, DumpError> {
    let outer = conn.is_autocommit()?;
    conn.execute_batch("SAVEPOINT raftlite_dump")?;
    let mut dumper = Dumper {
        conn,
        helpers,
        exclude,
        sink: Sink::new(out),
        stats: DumpStats::default(),
        damage_reported: false,
    };
    let result = dumper
        .run(tables)
        .and_then(|()| dumper.sink.finish().map_err(DumpError::from));
    let stats = DumpStats {
        bytes: dumper.sink.bytes,
        ..dumper.stats
    };
    // Nothing was written to the database: releasing or rolling back only ends the snapshot.
    let released = match &result {
        Ok(()) => conn.execute_batch("RELEASE raftlite_dump"),
        Err(_) => conn.execute_batch("ROLLBACK TO raftlite_dump; RELEASE raftlite_dump"),
    };
    if released.is_err() && outer && !conn.is_autocommit().unwrap_or(true) {
        // RELEASE can fail after SQLITE_CORRUPT; the read transaction must end all the same.
        let _ = conn.execute_batch("ROLLBACK");
    }
    result?;
    match released {
        // A database that already reported corruption may fail to end the snapshot cleanly
        // (RELEASE reads the schema again); the dump itself is complete and says so, in its
        // corruption markers and, when a table could not be read, its final ROLLBACK.
        Err(e) if stats.errors == 0 && !dumper.damage_reported => Err(e.into()),
        _ => Ok(stats),
    }
}

/// The table pass's query, the shell's own: its order is the dump's order.
const TABLES_SQL: &str = "SELECT name, type, sql FROM sqlite_schema AS o \
     WHERE (true) AND type=='table' AND sql NOT NULL \
     ORDER BY tbl_name='sqlite_sequence', rowid";

/// The second pass's query, also the shell's (no ORDER BY: table scan order).
const OTHERS_SQL: &str = "SELECT sql, tbl_name FROM sqlite_schema AS o \
     WHERE (true) AND sql NOT NULL AND type IN ('index','trigger','view')";

/// Which tables a `tables=` subset chose, by their exact schema names.
struct Subset {
    tables: Vec<Vec<u8>>,
}

impl Subset {
    /// Resolves the requested names against the schema: SQLite's ASCII case-insensitive match,
    /// plus the shadow tables of chosen virtual tables.
    fn resolve(conn: &Connection, wanted: &[String]) -> Result<Subset, DumpError> {
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_schema WHERE type='table' AND sql NOT NULL")?;
        let mut all = Vec::new();
        while stmt.step()?.is_row() {
            let name = stmt.column_text(0).to_vec();
            let is_virtual = stmt.column_text(1).starts_with(b"CREATE VIRTUAL TABLE");
            all.push((name, is_virtual));
        }
        let chosen = |n: &[u8]| wanted.iter().any(|w| w.as_bytes().eq_ignore_ascii_case(n));
        let mut tables: Vec<Vec<u8>> = Vec::new();
        for (name, is_virtual) in &all {
            if !chosen(name) || name.starts_with(b"sqlite_") {
                continue;
            }
            tables.push(name.clone());
            if *is_virtual {
                let mut prefix = name.clone();
                prefix.push(b'_');
                for (shadow, _) in &all {
                    if shadow.starts_with(&prefix) && !tables.contains(shadow) {
                        tables.push(shadow.clone());
                    }
                }
            }
        }
        Ok(Subset { tables })
    }

    fn contains(&self, name: &[u8]) -> bool {
        self.tables.iter().any(|t| t.as_slice() == name)
    }
}

struct Dumper<'c, 'w> {
    conn: &'c Connection,
    /// Connections on the same snapshot that read large tables in parallel; may be empty.
    helpers: &'c mut [Connection],
    /// Tables (and their indexes and triggers) never written.
    exclude: &'c [&'c str],
    sink: Sink<'w>,
    stats: DumpStats,
    /// The dump holds a report of SQLITE_CORRUPT (a marker or an error line).
    damage_reported: bool,
}

impl Dumper<'_, '_> {
    fn run(&mut self, tables: Option<&[String]>) -> Result<(), DumpError> {
        let subset = tables.map(|t| Subset::resolve(self.conn, t)).transpose()?;
        self.sink
            .put(b"PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n")?;
        let mut writable_schema = false;
        let mut schema = self.conn.prepare(TABLES_SQL)?;
        loop {
            match schema.step() {
                Ok(step) if !step.is_row() => break,
                Ok(_) => {}
                Err(e) if is_fatal(&e) => return Err(e.into()),
                Err(e) => {
                    self.schema_corruption(&e)?;
                    break;
                }
            }
            let name = until_nul(schema.column_text(0)).to_vec();
            let sql = until_nul(schema.column_text(2)).to_vec();
            if self.is_excluded(&name) {
                continue;
            }
            match &subset {
                None => self.table_entry(&name, &sql, &mut writable_schema)?,
                Some(s) if name == b"sqlite_sequence" => self.subset_sequence(s)?,
                Some(s) if s.contains(&name) => {
                    self.table_entry(&name, &sql, &mut writable_schema)?
                }
                Some(_) => {}
            }
        }
        drop(schema);
        self.indexes_triggers_views(subset.as_ref())?;
        if writable_schema {
            self.sink.put(b"PRAGMA writable_schema=OFF;\n")?;
        }
        let end: &[u8] = if self.stats.errors > 0 {
            b"ROLLBACK; -- due to errors\n"
        } else {
            b"COMMIT;\n"
        };
        self.sink.put(end)?;
        Ok(())
    }

    /// One row of the table pass (the shell's `dump_callback`).
    fn table_entry(
        &mut self,
        name: &[u8],
        sql: &[u8],
        writable_schema: &mut bool,
    ) -> Result<(), DumpError> {
        if name == b"sqlite_sequence" {
            self.sink.put(b"DELETE FROM sqlite_sequence;\n")?;
        } else if is_stat_table(name) {
            self.sink.put(b"ANALYZE sqlite_schema;\n")?;
        } else if name.starts_with(b"sqlite_") {
            return Ok(());
        } else if sql.starts_with(b"CREATE VIRTUAL TABLE") {
            if !*writable_schema {
                self.sink.put(b"PRAGMA writable_schema=ON;\n")?;
                *writable_schema = true;
            }
            let s = &mut self.sink;
            s.put(b"INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)VALUES('table','")?;
            s.put_escaped(name, b'\'')?;
            s.put(b"','")?;
            s.put_escaped(name, b'\'')?;
            s.put(b"',0,'")?;
            s.put_escaped(sql, b'\'')?;
            s.put(b"');\n")?;
            self.stats.tables += 1;
            return Ok(());
        } else {
            self.put_create_table(sql)?;
            self.stats.tables += 1;
        }
        self.table_rows(name)
    }

    /// `CREATE TABLE` text as the shell's `printSchemaLine` writes it.
    fn put_create_table(&mut self, sql: &[u8]) -> Result<(), DumpError> {
        let mut text = sql.to_vec();
        if contains(sql, b"/*") || contains(sql, b"--") {
            let lossy = String::from_utf8_lossy(sql);
            for term in ["", "*/", "\n"] {
                if raftlite_ffi::complete(&format!("{lossy}{term};")) {
                    text.extend_from_slice(term.as_bytes());
                    break;
                }
            }
        }
        if text.starts_with(b"CREATE TABLE ") && matches!(text.get(13), Some(b'\'' | b'"')) {
            self.sink.put(b"CREATE TABLE IF NOT EXISTS ")?;
            self.sink.put(&text[13..])?;
        } else {
            self.sink.put(&text)?;
        }
        self.sink.put(b";\n")?;
        Ok(())
    }

    /// The rows of one table, with the shell's retry on corruption.
    fn table_rows(&mut self, name: &[u8]) -> Result<(), DumpError> {
        let columns = match self.table_columns(name) {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => {
                self.stats.errors += 1;
                return Ok(());
            }
            Err(DumpError::Sqlite(e)) if !is_fatal(&e) => {
                self.stats.errors += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut select = b"SELECT ".to_vec();
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                select.push(b',');
            }
            push_quoted_ident(&mut select, c);
        }
        select.extend_from_slice(b" FROM main.");
        push_quoted_ident(&mut select, name);
        let mut prefix = b"INSERT INTO ".to_vec();
        push_shell_ident(&mut prefix, name);
        prefix.extend_from_slice(b" VALUES(");

        // In rowid ranges by the helpers when the one query's order allows it; an error
        // planning that is met again, and handled, by the one query.
        let ranges = if self.helpers.is_empty() {
            None
        } else {
            parallel::plan(self.conn, name, &select).unwrap_or(None)
        };
        let read = match ranges {
            Some(plan) => parallel::rows(
                self.conn,
                self.helpers,
                &plan,
                &select,
                &prefix,
                &mut self.sink,
                &mut self.stats.rows,
            )
            .and_then(|done| {
                if done {
                    Ok(())
                } else {
                    self.select_rows(&select, &prefix)
                }
            }),
            None => self.select_rows(&select, &prefix),
        };
        match read {
            Ok(()) => Ok(()),
            Err(DumpError::Sqlite(e)) if e.code() == ErrorCode::Corrupt => {
                self.damage_reported = true;
                self.sink.put(b"/****** CORRUPTION ERROR *******/\n")?;
                self.toggle_select_order()?;
                let again = self.select_rows(&select, &prefix);
                self.toggle_select_order()?;
                match again {
                    Err(DumpError::Write(w)) => return Err(w.into()),
                    Err(DumpError::Sqlite(e)) if is_fatal(&e) => return Err(e.into()),
                    _ => {}
                }
                self.stats.errors += 1;
                Ok(())
            }
            Err(DumpError::Sqlite(e)) if !is_fatal(&e) => {
                self.stats.errors += 1;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Column names as `PRAGMA table_info` lists them (generated columns left out), as bytes:
    /// like table names, they need not be UTF-8.
    fn table_columns(&self, name: &[u8]) -> Result<Vec<Vec<u8>>, DumpError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM pragma_table_info(?1, 'main')")?;
        stmt.bind_text_bytes(1, name)?;
        let mut cols = Vec::new();
        while stmt.step()?.is_row() {
            cols.push(stmt.column_text(0).to_vec());
        }
        Ok(cols)
    }

    /// Runs `select` and writes one INSERT per row, as it reads them.
    fn select_rows(&mut self, select: &[u8], prefix: &[u8]) -> Result<(), DumpError> {
        let Some(mut stmt) = self.conn.prepare_first_bytes(select)?.0 else {
            return Ok(());
        };
        // Counted as they go: rows written before an error are in the dump.
        let mut rows = 0;
        let result = write_rows(&mut stmt, prefix, &mut self.sink, &mut rows);
        self.stats.rows += rows;
        result
    }

    /// The shell's `toggleSelectOrder`: flips `PRAGMA reverse_unordered_selects`.
    fn toggle_select_order(&self) -> Result<(), DumpError> {
        let on = self
            .conn
            .query_i64("PRAGMA reverse_unordered_selects")?
            .unwrap_or(0)
            != 0;
        let sql = if on {
            "PRAGMA reverse_unordered_selects=OFF"
        } else {
            "PRAGMA reverse_unordered_selects=ON"
        };
        self.conn.execute_batch(sql)?;
        Ok(())
    }

    /// The shell's reaction to an error while scanning `sqlite_schema` itself: it reports the
    /// corruption and retries with `ORDER BY rowid DESC` appended to a query that already has
    /// an ORDER BY, which is always a syntax error.
    fn schema_corruption(&mut self, e: &raftlite_ffi::Error) -> Result<(), DumpError> {
        if e.code() != ErrorCode::Corrupt {
            return Ok(());
        }
        self.damage_reported = true;
        self.sink.put(b"/****** CORRUPTION ERROR *******/\n")?;
        self.sink
            .put(format!("/****** {} ******/\n", e.message).as_bytes())?;
        self.sink
            .put(b"/****** ERROR: near \"ORDER\": syntax error ******/\n")?;
        Ok(())
    }

    /// Subset form of the `sqlite_sequence` block: only the chosen tables' rows, each replacing
    /// its own counter.
    fn subset_sequence(&mut self, subset: &Subset) -> Result<(), DumpError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, seq FROM main.sqlite_sequence")?;
        while stmt.step()?.is_row() {
            let name = until_nul(stmt.column_text(0));
            if !subset.contains(name) {
                continue;
            }
            self.sink.put(b"DELETE FROM sqlite_sequence WHERE name=")?;
            self.sink.put_text(name)?;
            self.sink.put(b";\nINSERT INTO sqlite_sequence VALUES(")?;
            put_value(&mut self.sink, &stmt, 0)?;
            self.sink.put(b",")?;
            put_value(&mut self.sink, &stmt, 1)?;
            self.sink.put(b");\n")?;
            self.stats.rows += 1;
        }
        Ok(())
    }

    fn is_excluded(&self, name: &[u8]) -> bool {
        self.exclude
            .iter()
            .any(|e| e.as_bytes().eq_ignore_ascii_case(name))
    }

    /// The second pass (the shell's `run_table_dump_query`).
    fn indexes_triggers_views(&mut self, subset: Option<&Subset>) -> Result<(), DumpError> {
        let mut stmt = match self.conn.prepare(OTHERS_SQL) {
            Ok(s) => s,
            Err(e) if is_fatal(&e) => return Err(e.into()),
            Err(e) => return self.second_pass_error(&e),
        };
        loop {
            match stmt.step() {
                Ok(step) if !step.is_row() => return Ok(()),
                Ok(_) => {}
                Err(e) if is_fatal(&e) => return Err(e.into()),
                Err(e) => return self.second_pass_error(&e),
            }
            if self.is_excluded(stmt.column_text(1)) {
                continue;
            }
            if let Some(s) = subset {
                // Views have their own name as tbl_name, so they never match a chosen table...
                // unless a view shares a table's name, which SQLite forbids.
                let is_view = stmt.column_text(0).starts_with(b"CREATE VIEW");
                if is_view || !s.contains(stmt.column_text(1)) {
                    continue;
                }
            }
            let sql = until_nul(stmt.column_text(0));
            self.sink.put(sql)?;
            let end: &[u8] = if contains(sql, b"--") {
                b"\n;\n"
            } else {
                b";\n"
            };
            self.sink.put(end)?;
        }
    }

    fn second_pass_error(&mut self, e: &raftlite_ffi::Error) -> Result<(), DumpError> {
        let line = format!("/**** ERROR: ({}) {} *****/\n", e.primary_code(), e.message);
        self.sink.put(line.as_bytes())?;
        if e.code() == ErrorCode::Corrupt {
            self.damage_reported = true;
        } else {
            self.stats.errors += 1;
        }
        Ok(())
    }
}

/// Errors after which a dump must not go on: the shell would carry on, a server must not.
fn is_fatal(e: &raftlite_ffi::Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::Interrupt
            | ErrorCode::IoErr
            | ErrorCode::NoMemory
            | ErrorCode::Busy
            | ErrorCode::Locked
            | ErrorCode::Full
            | ErrorCode::Misuse
            | ErrorCode::Abort
    )
}

/// `sqlite3_strglob("sqlite_stat?", name)`.
fn is_stat_table(name: &[u8]) -> bool {
    name.len() == 12 && name.starts_with(b"sqlite_stat")
}

/// The part of a C string the shell sees.
fn until_nul(s: &[u8]) -> &[u8] {
    match memchr::memchr(0, s) {
        Some(i) => &s[..i],
        None => s,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Always-quoted identifier for the SELECT we run (never written to the dump). The name's
/// bytes go in as they are: a name that is not UTF-8 must still name its table.
fn push_quoted_ident(sql: &mut Vec<u8>, name: &[u8]) {
    sql.push(b'"');
    for &c in name {
        sql.push(c);
        if c == b'"' {
            sql.push(b'"');
        }
    }
    sql.push(b'"');
}

/// An identifier as the shell writes it after `INSERT INTO` (its `quoteChar`): bare when it is
/// `[A-Za-z_][A-Za-z0-9_]*` and not a keyword, else in double quotes.
fn push_shell_ident(out: &mut Vec<u8>, name: &[u8]) {
    let plain = match name.first() {
        Some(&c) if c.is_ascii_alphabetic() || c == b'_' => {
            name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_') && !is_keyword(name)
        }
        _ => false,
    };
    if plain {
        out.extend_from_slice(name);
    } else {
        push_quoted_ident(out, name);
    }
}

/// SQLite 3.40's keywords (`sqlite3_keyword_check`), sorted, upper case.
const KEYWORDS: [&str; 147] = [
    "ABORT",
    "ACTION",
    "ADD",
    "AFTER",
    "ALL",
    "ALTER",
    "ALWAYS",
    "ANALYZE",
    "AND",
    "AS",
    "ASC",
    "ATTACH",
    "AUTOINCREMENT",
    "BEFORE",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CASCADE",
    "CASE",
    "CAST",
    "CHECK",
    "COLLATE",
    "COLUMN",
    "COMMIT",
    "CONFLICT",
    "CONSTRAINT",
    "CREATE",
    "CROSS",
    "CURRENT",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "DATABASE",
    "DEFAULT",
    "DEFERRABLE",
    "DEFERRED",
    "DELETE",
    "DESC",
    "DETACH",
    "DISTINCT",
    "DO",
    "DROP",
    "EACH",
    "ELSE",
    "END",
    "ESCAPE",
    "EXCEPT",
    "EXCLUDE",
    "EXCLUSIVE",
    "EXISTS",
    "EXPLAIN",
    "FAIL",
    "FILTER",
    "FIRST",
    "FOLLOWING",
    "FOR",
    "FOREIGN",
    "FROM",
    "FULL",
    "GENERATED",
    "GLOB",
    "GROUP",
    "GROUPS",
    "HAVING",
    "IF",
    "IGNORE",
    "IMMEDIATE",
    "IN",
    "INDEX",
    "INDEXED",
    "INITIALLY",
    "INNER",
    "INSERT",
    "INSTEAD",
    "INTERSECT",
    "INTO",
    "IS",
    "ISNULL",
    "JOIN",
    "KEY",
    "LAST",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MATCH",
    "MATERIALIZED",
    "NATURAL",
    "NO",
    "NOT",
    "NOTHING",
    "NOTNULL",
    "NULL",
    "NULLS",
    "OF",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OTHERS",
    "OUTER",
    "OVER",
    "PARTITION",
    "PLAN",
    "PRAGMA",
    "PRECEDING",
    "PRIMARY",
    "QUERY",
    "RAISE",
    "RANGE",
    "RECURSIVE",
    "REFERENCES",
    "REGEXP",
    "REINDEX",
    "RELEASE",
    "RENAME",
    "REPLACE",
    "RESTRICT",
    "RETURNING",
    "RIGHT",
    "ROLLBACK",
    "ROW",
    "ROWS",
    "SAVEPOINT",
    "SELECT",
    "SET",
    "TABLE",
    "TEMP",
    "TEMPORARY",
    "THEN",
    "TIES",
    "TO",
    "TRANSACTION",
    "TRIGGER",
    "UNBOUNDED",
    "UNION",
    "UNIQUE",
    "UPDATE",
    "USING",
    "VACUUM",
    "VALUES",
    "VIEW",
    "VIRTUAL",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
    "WITHOUT",
];

fn is_keyword(name: &[u8]) -> bool {
    let mut upper = [0u8; 17];
    if name.len() > upper.len() {
        return false;
    }
    for (u, c) in upper.iter_mut().zip(name) {
        *u = c.to_ascii_uppercase();
    }
    let upper = &upper[..name.len()];
    KEYWORDS
        .binary_search_by(|k| k.as_bytes().cmp(upper))
        .is_ok()
}

/// Column `i` of the current row as the shell's insert mode writes it.
/// Steps `stmt` to its end, writing `prefix`, the row's values and `);` for each row and
/// counting them in `rows`.
fn write_rows(
    stmt: &mut Statement<'_>,
    prefix: &[u8],
    sink: &mut Sink<'_>,
    rows: &mut u64,
) -> Result<(), DumpError> {
    let n = stmt.column_count();
    while stmt.step()?.is_row() {
        sink.put(prefix)?;
        for i in 0..n {
            if i > 0 {
                sink.put(b",")?;
            }
            put_value(sink, stmt, i)?;
        }
        sink.put(b");\n")?;
        *rows += 1;
    }
    Ok(())
}

fn put_value(sink: &mut Sink<'_>, stmt: &Statement<'_>, i: i32) -> io::Result<()> {
    match stmt.column_value(i) {
        ValueRef::Null => sink.put(b"NULL"),
        ValueRef::Integer(v) => sink.put(itoa::Buffer::new().format(v).as_bytes()),
        ValueRef::Real(v) => sink.put_real(v),
        ValueRef::Text(t) => sink.put_text(t),
        ValueRef::Blob(b) => sink.put_blob(b),
    }
}

const SINK_CAPACITY: usize = 64 * 1024;

/// The two lowercase hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    pairs
};

/// The output buffer: gathers small pieces, hands full buffers to the writer, counts bytes.
struct Sink<'w> {
    buf: Vec<u8>,
    out: &'w mut dyn Write,
    bytes: u64,
}

impl<'w> Sink<'w> {
    fn new(out: &'w mut dyn Write) -> Sink<'w> {
        Sink {
            buf: Vec::with_capacity(SINK_CAPACITY),
            out,
            bytes: 0,
        }
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        if self.buf.len() + b.len() > SINK_CAPACITY {
            self.drain()?;
            if b.len() >= SINK_CAPACITY {
                self.out.write_all(b)?;
                self.bytes += b.len() as u64;
                return Ok(());
            }
        }
        self.buf.extend_from_slice(b);
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf)?;
            self.bytes += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.drain()?;
        self.out.flush()
    }

    /// `s` with every `quote` doubled (SQLite's `%q` for `'`).
    fn put_escaped(&mut self, s: &[u8], quote: u8) -> io::Result<()> {
        let mut rest = s;
        while let Some(i) = rest.iter().position(|&c| c == quote) {
            self.put(&rest[..=i])?;
            self.put(&[quote])?;
            rest = &rest[i + 1..];
        }
        self.put(rest)
    }

    fn put_real(&mut self, v: f64) -> io::Result<()> {
        const POS_INF: u64 = 0x7ff0_0000_0000_0000;
        const NEG_INF: u64 = 0xfff0_0000_0000_0000;
        match v.to_bits() {
            POS_INF => return self.put(b"1e999"),
            NEG_INF => return self.put(b"-1e999"),
            _ => {}
        }
        // The shell tests `r==(double)(sqlite3_int64)r`. On x86-64 the C cast of a NaN or an
        // out-of-range value gives INT64_MIN (Rust's `as` saturates instead).
        let as_int = if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&v) {
            v as i64
        } else {
            i64::MIN
        };
        if as_int as f64 == v {
            self.put(itoa::Buffer::new().format(as_int).as_bytes())?;
            return self.put(b".0");
        }
        let mut buf = [0u8; 64];
        self.put(raftlite_ffi::format_real_20g_into(v, &mut buf).as_bytes())
    }

    /// A BLOB as `X'hex'`, hex written straight into the buffer (two digits per byte from a
    /// table), in pieces that fit it.
    fn put_blob(&mut self, b: &[u8]) -> io::Result<()> {
        self.put(b"X'")?;
        for part in b.chunks(SINK_CAPACITY / 4) {
            if self.buf.len() + 2 * part.len() > SINK_CAPACITY {
                self.drain()?;
            }
            let start = self.buf.len();
            self.buf.resize(start + 2 * part.len(), 0);
            for (digits, &byte) in self.buf[start..].chunks_exact_mut(2).zip(part) {
                digits.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
            }
        }
        self.put(b"'")
    }

    /// TEXT as the shell's `output_quoted_escaped_string` writes it (cut at NUL).
    fn put_text(&mut self, t: &[u8]) -> io::Result<()> {
        let t = until_nul(t);
        if memchr::memchr3(b'\'', b'\n', b'\r', t).is_none() {
            self.put(b"'")?;
            self.put(t)?;
            return self.put(b"'");
        }
        let has_nl = t.contains(&b'\n');
        let has_cr = t.contains(&b'\r');
        let nl = if has_nl {
            unused_marker(t, "\\n", "\\012")
        } else {
            Vec::new()
        };
        let cr = if has_cr {
            unused_marker(t, "\\r", "\\015")
        } else {
            Vec::new()
        };
        if has_nl {
            self.put(b"replace(")?;
        }
        if has_cr {
            self.put(b"replace(")?;
        }
        self.put(b"'")?;
        let mut rest = t;
        while let Some(i) = memchr::memchr3(b'\'', b'\n', b'\r', rest) {
            self.put(&rest[..i])?;
            match rest[i] {
                b'\'' => self.put(b"''")?,
                b'\n' => self.put(&nl)?,
                _ => self.put(&cr)?,
            }
            rest = &rest[i + 1..];
        }
        self.put(rest)?;
        self.put(b"'")?;
        if has_cr {
            self.put(b",'")?;
            self.put(&cr)?;
            self.put(b"',char(13))")?;
        }
        if has_nl {
            self.put(b",'")?;
            self.put(&nl)?;
            self.put(b"',char(10))")?;
        }
        Ok(())
    }
}

/// The shell's `unused_string`: `a`, else `b`, else the first `(a0)`, `(a1)`, ... not in `text`.
fn unused_marker(text: &[u8], a: &str, b: &str) -> Vec<u8> {
    if !contains(text, a.as_bytes()) {
        return a.as_bytes().to_vec();
    }
    if !contains(text, b.as_bytes()) {
        return b.as_bytes().to_vec();
    }
    (0u32..)
        .map(|i| format!("({a}{i})").into_bytes())
        .find(|m| !contains(text, m))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &[u8]) -> String {
        let mut out = Vec::new();
        let mut s = Sink::new(&mut out);
        s.put_text(t).unwrap();
        s.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_forms_follow_the_shell() {
        assert_eq!(text(b"plain"), "'plain'");
        assert_eq!(text(b"it's"), "'it''s'");
        assert_eq!(text(b"a\nb"), "replace('a\\nb','\\n',char(10))");
        assert_eq!(
            text(b"a\r\nb"),
            "replace(replace('a\\r\\nb','\\r',char(13)),'\\n',char(10))"
        );
        assert_eq!(text(b"\\n x\ny"), "replace('\\n x\\012y','\\012',char(10))");
        assert_eq!(
            text(b"\\n \\012\n"),
            "replace('\\n \\012(\\n0)','(\\n0)',char(10))"
        );
        assert_eq!(text(b"cut\0here"), "'cut'");
    }

    #[test]
    fn identifiers_are_quoted_like_the_shell() {
        let q = |n: &str| {
            let mut v = Vec::new();
            push_shell_ident(&mut v, n.as_bytes());
            String::from_utf8(v).unwrap()
        };
        assert_eq!(q("person"), "person");
        assert_eq!(q("order"), "\"order\"");
        assert_eq!(q("Order"), "\"Order\"");
        assert_eq!(q("rowid"), "rowid");
        assert_eq!(q("a\"b"), "\"a\"\"b\"");
        assert_eq!(q("my table"), "\"my table\"");
        assert_eq!(q("1abc"), "\"1abc\"");
        assert_eq!(q(""), "\"\"");
        assert!(
            KEYWORDS.windows(2).all(|w| w[0] < w[1]),
            "KEYWORDS must stay sorted"
        );
    }

    #[test]
    fn reals_follow_the_shell() {
        let real = |v: f64| {
            let mut out = Vec::new();
            let mut s = Sink::new(&mut out);
            s.put_real(v).unwrap();
            s.finish().unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(real(f64::INFINITY), "1e999");
        assert_eq!(real(f64::NEG_INFINITY), "-1e999");
        assert_eq!(real(-0.0), "0.0");
        assert_eq!(real(3.0), "3.0");
        assert_eq!(real(-9.223_372_036_854_776e18), "-9223372036854775808.0");
        assert_eq!(
            real(9.223_372_036_854_776e18).parse::<f64>().unwrap(),
            9.223_372_036_854_776e18
        );
        assert_ne!(real(9.223_372_036_854_776e18), "9223372036854775807.0");
        assert_eq!(real(0.5), "0.5");
    }
}
