//! Dump rows without SQLite's parser: the fast path of a SQL load.
//!
//! A SQL dump (ours or `sqlite3 .dump`) is almost all `INSERT INTO t VALUES(<literal>,...);`,
//! one row per statement. Run as text, each row costs SQLite a tokenize, a parse and a code
//! generation before the insert itself: loading a 256 MiB data set's dump with the `sqlite3`
//! shell took 14.7 s, while inserting the same rows with `INSERT ... SELECT` took 2.9 s. This
//! module recognises exactly that statement shape and splits it into a parameter template,
//! `INSERT INTO t VALUES(?1,...)`, which the writer prepares once and keeps in its statement
//! cache, and the values to bind.
//!
//! Invariant: the template with the values bound changes the database, and answers, exactly
//! as the text would. Whatever this parser is not sure of yields `None`, and the statement
//! goes to SQLite as text. In detail:
//! - Only `INSERT INTO <name> VALUES(<v>,...,<v>);` with single spaces, as dumpers write it
//!   (keywords in any case, whitespace around the statement). The name, bare
//!   (`[A-Za-z_][A-Za-z0-9_]*`) or double-quoted, is reused verbatim in the template, so it
//!   resolves as it does in the text.
//! - `NULL` binds NULL; `'text'` (with `''` escapes) binds TEXT; `X'hex'` binds a BLOB.
//! - An integer that SQLite reads as a 64-bit integer binds as one (including
//!   `-9223372036854775808`, which SQLite folds to the smallest integer).
//! - Every other number (a `.`, an exponent, or too large) binds as its text under
//!   `CAST(?N AS REAL)`: SQLite converts text to REAL with the same routine its parser uses
//!   for the literal, so the double is the same bit for bit, whatever its digits.
//! - The shell's escapes for line breaks, `replace(<text>,'<pattern>',char(<n>))` nested to any
//!   depth up to [`MAX_REPLACE_DEPTH`], are evaluated as SQLite's `replace()` (no change for an
//!   empty pattern) and `char()` do; `n` must be an ASCII code point other than 0.

use std::borrow::Cow;
use std::fmt::Write as _;

use raftlite_ffi::Statement;

/// Deeper `replace(...)` nesting than this is left to SQLite (the shell nests two).
pub const MAX_REPLACE_DEPTH: usize = 8;

/// One value of the row, as it will be bound.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal<'a> {
    Null,
    Integer(i64),
    /// A number SQLite reads as REAL: its text, bound under `CAST(?N AS REAL)`.
    Real(&'a str),
    Text(Cow<'a, str>),
    Blob(Vec<u8>),
}

/// A recognised single-row literal INSERT.
#[derive(Debug, Clone, PartialEq)]
pub struct LiteralInsert<'a> {
    /// The table name as written (bare or double-quoted).
    pub table: &'a str,
    pub values: Vec<Literal<'a>>,
}

impl LiteralInsert<'_> {
    /// Writes the parameter template into `out` (cleared first). Rows of one table with REAL
    /// values in the same columns share a template, hence a prepared statement.
    pub fn template_into(&self, out: &mut String) {
        out.clear();
        out.push_str("INSERT INTO ");
        out.push_str(self.table);
        out.push_str(" VALUES(");
        for (i, v) in self.values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let n = i + 1;
            // Writing into a String cannot fail.
            let _ = match v {
                Literal::Real(_) => write!(out, "CAST(?{n} AS REAL)"),
                _ => write!(out, "?{n}"),
            };
        }
        out.push(')');
    }

    /// Binds the values to a statement prepared from [`LiteralInsert::template_into`].
    pub fn bind(&self, stmt: &mut Statement<'_>) -> raftlite_ffi::Result<()> {
        for (i, v) in self.values.iter().enumerate() {
            let index = i32::try_from(i + 1).unwrap_or(i32::MAX);
            match v {
                Literal::Null => stmt.bind_null(index)?,
                Literal::Integer(n) => stmt.bind_i64(index, *n)?,
                Literal::Real(text) => stmt.bind_text(index, text)?,
                Literal::Text(text) => stmt.bind_text(index, text)?,
                Literal::Blob(bytes) => stmt.bind_blob(index, bytes)?,
            }
        }
        Ok(())
    }
}

/// Recognises `sql` as a literal single-row INSERT, or `None` (see the module doc).
pub fn parse(sql: &str) -> Option<LiteralInsert<'_>> {
    let mut values = Vec::new();
    let table = walk::<true>(sql, &mut values)?;
    Some(LiteralInsert { table, values })
}

/// True when `sql` has the shape [`parse`] looks for, as one complete statement; checked
/// without decoding or allocating, so a script reader can end a statement here without
/// `sqlite3_complete`. (Hex digits are not checked: a bad blob still ends the statement,
/// which [`parse`] then leaves to SQLite.)
pub fn is_literal_insert(sql: &str) -> bool {
    walk::<false>(sql, &mut Vec::new()).is_some()
}

/// Walks `INSERT INTO <name> VALUES(...);`, pushing the values when `DECODE`; the table name.
fn walk<'a, const DECODE: bool>(sql: &'a str, values: &mut Vec<Literal<'a>>) -> Option<&'a str> {
    let s = sql.trim_matches(|c: char| c.is_ascii_whitespace());
    let s = s.strip_suffix(';')?;
    let rest = strip_keyword(s, "INSERT INTO ")?;
    let (table, rest) = table_name(rest)?;
    let mut rest = strip_keyword(rest, " VALUES(")?;
    loop {
        let (value, after) = literal::<DECODE>(rest, 0)?;
        if DECODE {
            values.push(value);
        }
        match after.as_bytes().first()? {
            b',' => rest = &after[1..],
            b')' if after.len() == 1 => return Some(table),
            _ => return None,
        }
    }
}

/// `s` without its ASCII case-insensitive prefix `keyword`.
fn strip_keyword<'a>(s: &'a str, keyword: &str) -> Option<&'a str> {
    let head = s.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &s[keyword.len()..])
}

/// A bare or double-quoted identifier at the start of `s`, verbatim, and the rest.
fn table_name(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    match b.first()? {
        b'"' => {
            let end = quoted_end(b, b'"')?;
            Some((&s[..end], &s[end..]))
        }
        c if c.is_ascii_alphabetic() || *c == b'_' => {
            let end = b
                .iter()
                .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                .unwrap_or(b.len());
            Some((&s[..end], &s[end..]))
        }
        _ => None,
    }
}

/// For `b` starting with the quote `q`: the index just past the closing quote, where a
/// doubled quote is part of the content.
fn quoted_end(b: &[u8], q: u8) -> Option<usize> {
    let mut i = 1;
    loop {
        let at = i + memchr::memchr(q, b.get(i..)?)?;
        if b.get(at + 1) == Some(&q) {
            i = at + 2;
        } else {
            return Some(at + 1);
        }
    }
}

/// One value at the start of `s` (only its shape unless `DECODE`), and the rest of `s`.
fn literal<const DECODE: bool>(s: &str, depth: usize) -> Option<(Literal<'_>, &str)> {
    let b = s.as_bytes();
    match b.first()? {
        b'\'' => {
            let (text, rest) = string::<DECODE>(s)?;
            Some((Literal::Text(text), rest))
        }
        b'X' | b'x' if b.get(1) == Some(&b'\'') => {
            let end = 2 + memchr::memchr(b'\'', &b[2..])?;
            let bytes = if DECODE {
                decode_hex(&b[2..end])?
            } else {
                Vec::new()
            };
            Some((Literal::Blob(bytes), &s[end + 1..]))
        }
        b'N' | b'n' => {
            let rest = strip_keyword(s, "NULL")?;
            Some((Literal::Null, rest))
        }
        b'R' | b'r' => {
            let (text, rest) = replace_call::<DECODE>(s, depth)?;
            Some((Literal::Text(text), rest))
        }
        b'-' | b'0'..=b'9' => number(s),
        _ => None,
    }
}

/// The bytes of an even number of hex digits (either case), or `None`. A table lookup per
/// digit: blobs are a large share of a dump's bytes.
fn decode_hex(digits: &[u8]) -> Option<Vec<u8>> {
    const INVALID: u8 = 0xff;
    const NIBBLE: [u8; 256] = {
        let mut t = [INVALID; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            t[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };
    if digits.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() / 2);
    for pair in digits.chunks_exact(2) {
        let (hi, lo) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
        if hi == INVALID || lo == INVALID {
            return None;
        }
        out.push(hi << 4 | lo);
    }
    Some(out)
}

/// A `'...'` string literal at the start of `s` (unescaped when `DECODE`), and the rest.
fn string<const DECODE: bool>(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let end = quoted_end(s.as_bytes(), b'\'')?;
    let inner = &s[1..end - 1];
    let text = if DECODE && inner.contains('\'') {
        Cow::Owned(inner.replace("''", "'"))
    } else {
        Cow::Borrowed(inner)
    };
    Some((text, &s[end..]))
}

/// `replace(<text>,'<pattern>',char(<n>))` at the start of `s` (evaluated when `DECODE`).
fn replace_call<const DECODE: bool>(s: &str, depth: usize) -> Option<(Cow<'_, str>, &str)> {
    if depth >= MAX_REPLACE_DEPTH {
        return None;
    }
    let rest = strip_keyword(s, "replace(")?;
    let (text, rest) = match rest.as_bytes().first()? {
        b'\'' => string::<DECODE>(rest)?,
        _ => replace_call::<DECODE>(rest, depth + 1)?,
    };
    let rest = rest.strip_prefix(',')?;
    let (pattern, rest) = string::<DECODE>(rest)?;
    let rest = strip_keyword(rest.strip_prefix(',')?, "char(")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let code: u8 = rest[..digits].parse().ok()?;
    if code == 0 || !code.is_ascii() {
        return None;
    }
    let rest = rest[digits..].strip_prefix("))")?;
    if !DECODE || pattern.is_empty() || !text.contains(&*pattern) {
        return Some((text, rest));
    }
    let with = char::from(code).to_string();
    Some((Cow::Owned(text.replace(&*pattern, &with)), rest))
}

/// A number at the start of `s`: `-?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?`, followed by `,` or
/// `)` (anything else, such as `0x1f` or `1_000`, is SQLite's to read).
fn number(s: &str) -> Option<(Literal<'_>, &str)> {
    let b = s.as_bytes();
    let digits_from = |i: usize| b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let negative = b[0] == b'-';
    let int_start = usize::from(negative);
    let int_len = digits_from(int_start);
    if int_len == 0 {
        return None;
    }
    let mut end = int_start + int_len;
    let mut real = false;
    if b.get(end) == Some(&b'.') {
        real = true;
        end += 1 + digits_from(end + 1);
    }
    if matches!(b.get(end), Some(b'e' | b'E')) {
        real = true;
        let mut at = end + 1;
        if matches!(b.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exp_len = digits_from(at);
        if exp_len == 0 {
            return None;
        }
        end = at + exp_len;
    }
    if !matches!(b.get(end), Some(b',' | b')')) {
        return None;
    }
    let (token, rest) = s.split_at(end);
    if !real {
        if let Some(n) = integer(&token[int_start..], negative) {
            return Some((Literal::Integer(n), rest));
        }
    }
    Some((Literal::Real(token), rest))
}

/// The integer SQLite makes of these decimal digits (with a minus applied), or `None` when it
/// makes a REAL of them (the magnitude is too large).
fn integer(digits: &str, negative: bool) -> Option<i64> {
    let magnitude: u64 = digits.parse().ok()?;
    if negative {
        // 9223372036854775808 negated is the smallest integer; SQLite folds it too.
        (magnitude <= 1 << 63).then(|| (magnitude as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests;
