//! The suite's two measures: a dump against the reference shell's dump, byte for byte, and a
//! database against another, value for value.
//!
//! Bytes: the only difference allowed is in the digits of REAL literals. Our bundled SQLite
//! (3.54) and the shell (3.40.1) both print a REAL with `%!.20g`, and the last of twenty digits
//! may differ between the two versions; what matters is that both texts parse to the same
//! double. [`compare_dumps`] therefore reads every REAL literal outside quotes and comments as
//! its `f64` bits and compares again; a dump that is equal only that way is
//! [`Bytes::SameValues`], and the report says how many lines differ so.
//!
//! Content: [`Content::read`] takes what a reload must bring back: the rows of
//! `sqlite_schema` (type, name, tbl_name, sql; not rootpage, which a reload renumbers), and
//! every table's rows (virtual tables, shadow tables, `sqlite_sequence` and `sqlite_stat*`
//! included) as storage class plus exact value: INTEGER, REAL by its bit pattern (so
//! `-0.0 != 0.0`), TEXT and BLOB by their bytes. Rowids of tables without an INTEGER PRIMARY KEY
//! are not content: the shell's format does not keep them, so rows are compared as multisets,
//! and a change of row order is a note, not a difference. Header settings that a dump never
//! carries (page size, encoding, user_version, ...) are notes too.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use raftlite_ffi::{Connection, OpenFlags, ValueRef};

// ---------------------------------------------------------------------------------------------
// Bytes

/// How our dump compares with the shell's.
#[derive(Debug, Clone, PartialEq)]
pub enum Bytes {
    Identical,
    /// Equal once REAL literals are read as doubles: `lines` lines differ only in REAL digits.
    SameValues {
        lines: usize,
        first: LineDiff,
    },
    Different(LineDiff),
}

/// A line of our dump and the shell's line at the same place.
#[derive(Debug, Clone, PartialEq)]
pub struct LineDiff {
    /// 1-based.
    pub line: usize,
    pub ours: String,
    pub shell: String,
}

impl fmt::Display for LineDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}:\n      ours : {}\n      shell: {}",
            self.line, self.ours, self.shell
        )
    }
}

/// Compares a dump with the reference shell's dump of the same database.
pub fn compare_dumps(ours: &[u8], shell: &[u8]) -> Bytes {
    if ours == shell {
        return Bytes::Identical;
    }
    let ours_lines: Vec<&[u8]> = ours.split(|&b| b == b'\n').collect();
    let shell_lines: Vec<&[u8]> = shell.split(|&b| b == b'\n').collect();
    let pair = |i: usize| LineDiff {
        line: i + 1,
        ours: shown(ours_lines.get(i).copied()),
        shell: shown(shell_lines.get(i).copied()),
    };
    if reals_as_bits(ours) != reals_as_bits(shell) {
        // Point at the first line that differs by more than REAL digits.
        let first = (0..ours_lines.len().max(shell_lines.len()))
            .find(|&i| {
                let (a, b) = (ours_lines.get(i), shell_lines.get(i));
                match (a, b) {
                    (Some(a), Some(b)) => reals_as_bits(a) != reals_as_bits(b),
                    _ => true,
                }
            })
            .unwrap_or(0);
        return Bytes::Different(pair(first));
    }
    // The REAL-normalized texts are equal and REAL literals hold no newline, so both dumps
    // have the same lines; count those whose digits differ.
    let differing: Vec<usize> = (0..ours_lines.len())
        .filter(|&i| ours_lines[i] != shell_lines[i])
        .collect();
    Bytes::SameValues {
        lines: differing.len(),
        first: pair(differing[0]),
    }
}

/// A dump line for a report: escaped, cut at 300 characters.
fn shown(line: Option<&[u8]>) -> String {
    match line {
        None => "<end of dump>".to_string(),
        Some(l) => {
            let text = l.escape_ascii().to_string();
            if text.len() > 300 {
                format!("{}... ({} bytes)", &text[..300], l.len())
            } else {
                text
            }
        }
    }
}

/// `sql` with every REAL literal outside quotes and comments replaced by `<real:BITS>`, the
/// bits of the double it parses to. A REAL literal is a number token with a `.` or an exponent
/// (`1e999` included: infinity); integers, hex literals and everything else stay as they are.
pub fn reals_as_bits(sql: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sql.len());
    let mut i = 0;
    while i < sql.len() {
        let c = sql[i];
        let end = match c {
            b'\'' | b'"' | b'`' | b'[' => quoted_end(sql, i),
            b'-' if sql.get(i + 1) == Some(&b'-') => {
                memchr_from(sql, i, b'\n').map_or(sql.len(), |j| j + 1)
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                find_from(sql, i + 2, b"*/").map_or(sql.len(), |j| j + 2)
            }
            b'0'..=b'9' | b'.' if !continues_word(sql, i) => {
                let end = number_end(sql, i);
                let token = &sql[i..end];
                let is_real = token.iter().any(|&b| matches!(b, b'.' | b'e' | b'E'))
                    && !token.starts_with(b"0x")
                    && !token.starts_with(b"0X");
                match std::str::from_utf8(token)
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                {
                    Some(v) if is_real => {
                        out.extend_from_slice(format!("<real:{:016x}>", v.to_bits()).as_bytes());
                        i = end;
                        continue;
                    }
                    _ => end,
                }
            }
            _ => i + 1,
        };
        out.extend_from_slice(&sql[i..end]);
        i = end;
    }
    out
}

/// Whether the byte at `i` continues an identifier or number (`t1`, `x2e5`, `$1`).
fn continues_word(sql: &[u8], i: usize) -> bool {
    i > 0 && {
        let p = sql[i - 1];
        p.is_ascii_alphanumeric() || p == b'_' || p == b'$' || p >= 0x80
    }
}

/// The end of the number token starting at `i`: letters, digits, dots, and a sign right after
/// an exponent letter.
fn number_end(sql: &[u8], i: usize) -> usize {
    let mut j = i;
    while j < sql.len() {
        let b = sql[j];
        let sign_of_exponent = matches!(b, b'+' | b'-') && matches!(sql[j - 1], b'e' | b'E');
        if b.is_ascii_alphanumeric() || b == b'.' || sign_of_exponent {
            j += 1;
        } else {
            break;
        }
    }
    j
}

/// The end (exclusive) of the quoted token opening at `i`; a doubled quote stays inside.
fn quoted_end(sql: &[u8], i: usize) -> usize {
    let close = if sql[i] == b'[' { b']' } else { sql[i] };
    let mut j = i + 1;
    while j < sql.len() {
        if sql[j] == close {
            if close != b']' && sql.get(j + 1) == Some(&close) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    sql.len()
}

fn memchr_from(hay: &[u8], from: usize, needle: u8) -> Option<usize> {
    hay[from..]
        .iter()
        .position(|&b| b == needle)
        .map(|p| p + from)
}

fn find_from(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

// ---------------------------------------------------------------------------------------------
// Content

/// One stored value: storage class and exact value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Val {
    Null,
    Int(i64),
    /// The bit pattern, so that `-0.0` and `0.0` differ and every REAL compares exactly.
    Real(u64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Val {
    fn from_ref(v: ValueRef<'_>) -> Val {
        match v {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(i) => Val::Int(i),
            ValueRef::Real(r) => Val::Real(r.to_bits()),
            ValueRef::Text(t) => Val::Text(t.to_vec()),
            ValueRef::Blob(b) => Val::Blob(b.to_vec()),
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = |b: &[u8]| {
            let s = b.escape_ascii().to_string();
            if s.len() > 80 {
                format!("{}...({} bytes)", &s[..80], b.len())
            } else {
                s
            }
        };
        match self {
            Val::Null => write!(f, "NULL"),
            Val::Int(i) => write!(f, "{i}"),
            Val::Real(bits) => write!(f, "real {:e} (0x{bits:016x})", f64::from_bits(*bits)),
            Val::Text(t) => write!(f, "text '{}'", cut(t)),
            Val::Blob(b) => write!(f, "blob x'{}'", cut(&hex(b))),
        }
    }
}

fn hex(b: &[u8]) -> Vec<u8> {
    b.iter()
        .flat_map(|x| format!("{x:02x}").into_bytes())
        .collect()
}

pub type Row = Vec<Val>;

/// A row of `sqlite_schema` without its rootpage: type, name, tbl_name, sql.
pub type SchemaRow = [Val; 4];

/// What a reload of a dump must bring back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Content {
    /// Sorted.
    pub schema: Vec<SchemaRow>,
    /// Every table's rows in rowid order (WITHOUT ROWID and virtual tables: scan order), or why
    /// they could not be read.
    pub tables: BTreeMap<Vec<u8>, Result<Vec<Row>, String>>,
    /// Settings a dump does not carry: only ever reported as notes.
    pub header: Vec<(&'static str, String)>,
}

const HEADER_PRAGMAS: [&str; 6] = [
    "page_size",
    "encoding",
    "auto_vacuum",
    "user_version",
    "application_id",
    "journal_mode",
];

impl Content {
    /// Reads the database at `path` (read-only; a `-wal` beside it is read with it).
    /// `writable_schema` is on, as in the shell's `.dump`, so that a schema row SQLite cannot
    /// parse does not hide the rest.
    pub fn read(path: &Path) -> Result<Content, String> {
        let conn = Connection::open(path, OpenFlags::READ_ONLY)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        conn.execute_batch("PRAGMA writable_schema=ON")
            .map_err(|e| format!("writable_schema: {e}"))?;
        let mut content = Content::default();
        let all = |sql: &[u8], params: &[&[u8]]| query(&conn, sql, params);
        content.schema = all(b"SELECT type, name, tbl_name, sql FROM sqlite_schema", &[])
            .map_err(|e| format!("read sqlite_schema: {e}"))?
            .into_iter()
            .map(|r| <[Val; 4]>::try_from(r).expect("four columns"))
            .collect();
        content.schema.sort();
        let names = all(b"SELECT name FROM sqlite_schema WHERE type='table'", &[])
            .map_err(|e| format!("list tables: {e}"))?;
        for name in names {
            let Some(Val::Text(name)) = name.into_iter().next() else {
                continue;
            };
            let rows = table_rows(&conn, &name);
            content.tables.insert(name, rows);
        }
        for pragma in HEADER_PRAGMAS {
            let value = conn
                .query_text(&format!("PRAGMA {pragma}"))
                .ok()
                .flatten()
                .unwrap_or_default();
            content.header.push((pragma, value));
        }
        Ok(content)
    }

    /// Applies `f` to every value of every table (for known losses that change values).
    pub fn map_values(&mut self, f: impl Fn(&mut Val)) {
        for rows in self.tables.values_mut().flatten() {
            rows.iter_mut().flatten().for_each(&f);
        }
    }

    /// Removes a table: its rows and its schema rows (the table's own and those of objects on
    /// it).
    pub fn drop_table(&mut self, name: &str) {
        self.tables.remove(name.as_bytes());
        let name = Val::Text(name.as_bytes().to_vec());
        self.schema.retain(|row| row[2] != name);
    }
}

/// The rows of one table, ordered by its rowid when it has one under some name.
fn table_rows(conn: &Connection, name: &[u8]) -> Result<Vec<Row>, String> {
    let mut select = b"SELECT * FROM main.".to_vec();
    push_quoted(&mut select, name);
    if let Some(rowid) = rowid_name(conn, name) {
        select.extend_from_slice(b" ORDER BY ");
        select.extend_from_slice(rowid.as_bytes());
    }
    query(conn, &select, &[])
}

/// A name that reaches the rowid of `table` (`rowid`, `_rowid_` or `oid`, whichever no column
/// hides), or None for WITHOUT ROWID and virtual tables.
fn rowid_name(conn: &Connection, table: &[u8]) -> Option<&'static str> {
    let kind = query(
        conn,
        b"SELECT type, wr FROM pragma_table_list WHERE schema='main' AND name=?1",
        &[table],
    )
    .ok()?;
    if kind.first()? != &vec![Val::Text(b"table".to_vec()), Val::Int(0)] {
        return None;
    }
    let columns = query(
        conn,
        b"SELECT lower(name) FROM pragma_table_xinfo(?1)",
        &[table],
    )
    .ok()?;
    ["rowid", "_rowid_", "oid"].into_iter().find(|n| {
        !columns
            .iter()
            .any(|c| c[0] == Val::Text(n.as_bytes().to_vec()))
    })
}

fn push_quoted(sql: &mut Vec<u8>, name: &[u8]) {
    sql.push(b'"');
    for &b in name {
        sql.push(b);
        if b == b'"' {
            sql.push(b'"');
        }
    }
    sql.push(b'"');
}

/// Every row of one statement (SQL as bytes, TEXT parameters as bytes).
fn query(conn: &Connection, sql: &[u8], params: &[&[u8]]) -> Result<Vec<Row>, String> {
    let (stmt, _) = conn.prepare_first_bytes(sql).map_err(|e| e.to_string())?;
    let mut stmt = stmt.ok_or("empty statement")?;
    for (i, p) in params.iter().enumerate() {
        stmt.bind_text_bytes(i as i32 + 1, p)
            .map_err(|e| e.to_string())?;
    }
    let mut rows = Vec::new();
    while stmt.step().map_err(|e| e.to_string())?.is_row() {
        rows.push(
            (0..stmt.column_count())
                .map(|i| Val::from_ref(stmt.column_value(i)))
                .collect(),
        );
    }
    Ok(rows)
}

/// `PRAGMA integrity_check` of the database at `path`: `ok`, or what it found.
pub fn integrity(path: &Path) -> String {
    match Connection::open(path, OpenFlags::READ_ONLY) {
        Ok(c) => match query(&c, b"PRAGMA integrity_check", &[]) {
            Ok(rows) => rows
                .iter()
                .map(|r| r[0].to_string())
                .collect::<Vec<_>>()
                .join("; ")
                .replace("text 'ok'", "ok"),
            Err(e) => e,
        },
        Err(e) => e.to_string(),
    }
}

/// Value equality for [`differences`]: exact, or a documented relaxation.
pub type SameValue = fn(&Val, &Val) -> bool;

pub fn exactly(a: &Val, b: &Val) -> bool {
    a == b
}

/// What differs between `want` and `got`: problems (content lost or changed) and notes
/// (what a dump never carries: header settings, rowid order of tables without an INTEGER
/// PRIMARY KEY).
pub fn differences(want: &Content, got: &Content, same: SameValue) -> (Vec<String>, Vec<String>) {
    let (mut problems, mut notes) = (Vec::new(), Vec::new());
    for row in &want.schema {
        if !got.schema.contains(row) {
            problems.push(format!("schema row lost: {}", show_row(row)));
        }
    }
    for row in &got.schema {
        if !want.schema.contains(row) {
            problems.push(format!("schema row added: {}", show_row(row)));
        }
    }
    for (name, want_rows) in &want.tables {
        let table = String::from_utf8_lossy(name);
        match (want_rows, got.tables.get(name)) {
            (_, None) => problems.push(format!("table {table:?} lost")),
            (Ok(a), Some(Ok(b))) => compare_rows(&table, a, b, same, &mut problems, &mut notes),
            (Err(a), Some(Err(b))) if a == b => {
                notes.push(format!("table {table:?} unreadable on both sides: {a}"))
            }
            (a, Some(b)) => problems.push(format!(
                "table {table:?}: original {}, reloaded {}",
                readable(a),
                readable(b)
            )),
        }
    }
    for name in got.tables.keys() {
        if !want.tables.contains_key(name) {
            problems.push(format!("table {:?} added", String::from_utf8_lossy(name)));
        }
    }
    for ((pragma, a), (_, b)) in want.header.iter().zip(&got.header) {
        if a != b {
            notes.push(format!(
                "PRAGMA {pragma}: {a} -> {b} (a dump does not carry it)"
            ));
        }
    }
    (problems, notes)
}

fn readable(r: &Result<Vec<Row>, String>) -> String {
    match r {
        Ok(rows) => format!("has {} rows", rows.len()),
        Err(e) => format!("is unreadable ({e})"),
    }
}

fn compare_rows(
    table: &str,
    want: &[Row],
    got: &[Row],
    same: SameValue,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let (mut a, mut b) = (want.to_vec(), got.to_vec());
    a.sort();
    b.sort();
    let same_row =
        |x: &Row, y: &Row| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q));
    if a.len() != b.len() || !a.iter().zip(&b).all(|(x, y)| same_row(x, y)) {
        let only = |from: &[Row], other: &[Row]| -> Vec<Row> {
            from.iter()
                .filter(|r| !other.iter().any(|o| same_row(r, o)))
                .cloned()
                .collect()
        };
        let (lost, added) = (only(&a, &b), only(&b, &a));
        problems.push(format!(
            "table {table:?}: {} rows, {} after reload; {} lost, {} added",
            a.len(),
            b.len(),
            lost.len(),
            added.len()
        ));
        if let Some(r) = lost.first() {
            problems.push(format!("    lost : {}", show_row(r)));
        }
        if let Some(r) = added.first() {
            problems.push(format!("    added: {}", show_row(r)));
        }
        return;
    }
    if want.len() == got.len() && !want.iter().zip(got).all(|(x, y)| same_row(x, y)) {
        notes.push(format!("table {table:?}: same rows in another rowid order"));
    }
}

fn show_row(r: &[Val]) -> String {
    let s: Vec<String> = r.iter().map(|v| v.to_string()).collect();
    format!("({})", s.join(", "))
}
