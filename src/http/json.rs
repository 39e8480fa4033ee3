//! rqlite's JSON, byte for byte: the response envelope, result objects and value encoding.
//!
//! Clients and rqlite's own tests compare raw response text, so this module writes JSON by
//! hand with Go's `encoding/json` conventions rather than through serde:
//! - field order is rqlite's struct order, and zero/empty fields are omitted as its
//!   `omitempty` tags say; associative objects (Go maps) have their keys sorted;
//! - REAL values use Go's float formatting: the shortest text that round-trips, in plain
//!   notation unless the magnitude is below 1e-6 or at least 1e21 (`3`, `1e+21`, `1e-07`);
//!   infinities, which Go cannot encode at all, are written `1e999`/`-1e999`, which JSON
//!   parsers read back as infinity;
//! - strings escape `<`, `>`, `&`, U+2028 and U+2029 as `\u003c`... as Go's encoder does;
//! - BLOBs are base64 (or arrays of byte values with `blob_array`);
//! - columns declared `BOOLEAN` report integers as `true`/`false`, and columns declared
//!   `DATE`/`DATETIME`/`TIMESTAMP` report integers (Unix seconds, or milliseconds past 1e12)
//!   and parsable text as RFC 3339 strings, as rqlite's SQLite driver does. Unlike that
//!   driver, text that does not parse is returned as it is, not as the year-1 zero time.
//! - `pretty` indents with four spaces as Go's `MarshalIndent` does.

use std::fmt::Write as _;

use base64::Engine as _;
use raftlite_ffi::Value;

use crate::db::request::{Rows, StatementOutcome, StatementResult};

/// How results are encoded; all of these come from query parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct EncodeOptions {
    pub associative: bool,
    pub blob_array: bool,
    pub timings: bool,
    pub pretty: bool,
}

impl EncodeOptions {
    /// The options rqlite's query parameters ask for (presence flags).
    pub fn from_params(params: &super::params::QueryParams) -> EncodeOptions {
        EncodeOptions {
            associative: params.has("associative"),
            blob_array: params.has("blob_array"),
            timings: params.has("timings"),
            pretty: params.has("pretty"),
        }
    }
}

/// The envelope of execute/query/request/load responses.
#[derive(Debug, Default)]
pub struct ApiResponse<'a> {
    pub results: &'a [StatementResult],
    pub error: Option<&'a str>,
    pub time: f64,
    pub sequence_number: i64,
    pub raft_index: u64,
}

/// Encodes a whole response.
pub fn encode_response(resp: &ApiResponse<'_>, opts: EncodeOptions) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"results\":[");
    for (i, r) in resp.results.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode_result(&mut out, r, opts);
    }
    out.push(']');
    if let Some(e) = resp.error.filter(|e| !e.is_empty()) {
        out.push_str(",\"error\":");
        write_string(&mut out, e);
    }
    if opts.timings && resp.time != 0.0 {
        out.push_str(",\"time\":");
        write_float(&mut out, resp.time);
    }
    if resp.sequence_number != 0 {
        let _ = write!(out, ",\"sequence_number\":{}", resp.sequence_number);
    }
    if resp.raft_index != 0 {
        let _ = write!(out, ",\"raft_index\":{}", resp.raft_index);
    }
    out.push('}');
    if opts.pretty {
        indent(&out, "    ")
    } else {
        out
    }
}

fn encode_result(out: &mut String, r: &StatementResult, opts: EncodeOptions) {
    let time = if opts.timings { r.time } else { 0.0 };
    match &r.outcome {
        StatementOutcome::Executed {
            last_insert_id,
            rows_affected,
        } => {
            let mut obj = ObjectWriter::new(out);
            if *last_insert_id != 0 {
                obj.key("last_insert_id")
                    .push_str(&last_insert_id.to_string());
            }
            if *rows_affected != 0 {
                obj.key("rows_affected")
                    .push_str(&rows_affected.to_string());
            }
            obj.time(time);
            if opts.associative {
                // rqlite adds `"rows":null` so clients can tell execute results from queries.
                obj.key("rows").push_str("null");
            }
            obj.finish();
        }
        StatementOutcome::Error(e) => {
            let mut obj = ObjectWriter::new(out);
            write_string(obj.key("error"), e);
            obj.time(time);
            obj.finish();
        }
        StatementOutcome::Rows(rows) if opts.associative => {
            encode_rows_associative(out, rows, time, opts)
        }
        StatementOutcome::Rows(rows) => encode_rows(out, rows, time, opts),
    }
}

fn encode_rows(out: &mut String, rows: &Rows, time: f64, opts: EncodeOptions) {
    let types = rows.types();
    let mut obj = ObjectWriter::new(out);
    if !rows.columns.is_empty() {
        write_string_array(obj.key("columns"), &rows.columns);
        write_string_array(obj.key("types"), &types);
    }
    if !rows.values.is_empty() {
        let o = obj.key("values");
        o.push('[');
        for (i, row) in rows.values.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push('[');
            for (j, v) in row.iter().enumerate() {
                if j > 0 {
                    o.push(',');
                }
                write_value(o, v, rows.decltypes[j].as_deref(), opts);
            }
            o.push(']');
        }
        o.push(']');
    }
    obj.time(time);
    obj.finish();
}

fn encode_rows_associative(out: &mut String, rows: &Rows, time: f64, opts: EncodeOptions) {
    // Go encodes maps with sorted keys; a repeated column name keeps its last value.
    let types = rows.types();
    let mut order: Vec<usize> = (0..rows.columns.len()).collect();
    order.sort_by(|&a, &b| rows.columns[a].cmp(&rows.columns[b]).then(b.cmp(&a)));
    order.dedup_by(|a, b| rows.columns[*a] == rows.columns[*b]);
    let mut obj = ObjectWriter::new(out);
    if !order.is_empty() {
        let o = obj.key("types");
        o.push('{');
        for (n, &i) in order.iter().enumerate() {
            if n > 0 {
                o.push(',');
            }
            write_string(o, &rows.columns[i]);
            o.push(':');
            write_string(o, &types[i]);
        }
        o.push('}');
    }
    let o = obj.key("rows");
    o.push('[');
    for (r, row) in rows.values.iter().enumerate() {
        if r > 0 {
            o.push(',');
        }
        o.push('{');
        for (n, &i) in order.iter().enumerate() {
            if n > 0 {
                o.push(',');
            }
            write_string(o, &rows.columns[i]);
            o.push(':');
            write_value(o, &row[i], rows.decltypes[i].as_deref(), opts);
        }
        o.push('}');
    }
    o.push(']');
    obj.time(time);
    obj.finish();
}

/// Writes `{"k":v,...}` with commas in the right places.
struct ObjectWriter<'a> {
    out: &'a mut String,
    fields: usize,
}

impl<'a> ObjectWriter<'a> {
    fn new(out: &'a mut String) -> ObjectWriter<'a> {
        out.push('{');
        ObjectWriter { out, fields: 0 }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if self.fields > 0 {
            self.out.push(',');
        }
        self.fields += 1;
        write_string(self.out, k);
        self.out.push(':');
        self.out
    }

    fn time(&mut self, t: f64) {
        if t != 0.0 {
            write_float(self.key("time"), t);
        }
    }

    fn finish(self) {
        self.out.push('}');
    }
}

fn write_string_array(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, s);
    }
    out.push(']');
}

/// Writes one column value, applying the driver's BOOLEAN and date/time conversions.
pub fn write_value(out: &mut String, v: &Value, decltype: Option<&str>, opts: EncodeOptions) {
    let kind = decltype.map(|d| d.to_ascii_lowercase());
    match (v, kind.as_deref()) {
        (Value::Integer(i), Some("boolean")) => out.push_str(if *i > 0 { "true" } else { "false" }),
        (Value::Integer(i), Some("date" | "datetime" | "timestamp")) => {
            write_string(out, &rfc3339_from_unix(*i));
        }
        (Value::Text(t), Some("date" | "datetime" | "timestamp")) => match parse_sqlite_time(t) {
            Some(ts) => write_string(out, &ts),
            None => write_string(out, t),
        },
        (Value::Null, _) => out.push_str("null"),
        (Value::Integer(i), _) => {
            let _ = write!(out, "{i}");
        }
        (Value::Real(r), _) => write_float(out, *r),
        (Value::Text(t), _) => write_string(out, t),
        (Value::Blob(b), _) if opts.blob_array => {
            out.push('[');
            for (i, byte) in b.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{byte}");
            }
            out.push(']');
        }
        (Value::Blob(b), _) => {
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push('"');
        }
    }
}

/// Go's float formatting: shortest round-trip digits, exponent form outside [1e-6, 1e21).
pub fn write_float(out: &mut String, f: f64) {
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "1e999" } else { "-1e999" });
        return;
    }
    if f.is_nan() {
        out.push_str("null");
        return;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust's `{:e}` gives "1e-7" / "1.5e21"; Go writes a signed exponent of at least two
        // digits: "1e-07", "1.5e+21".
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
    } else {
        let _ = write!(out, "{f}");
    }
}

/// A JSON string with Go's escaping (including its HTML-safe escapes).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '<' => Some("\\u003c"),
            '>' => Some("\\u003e"),
            '&' => Some("\\u0026"),
            '\u{2028}' => Some("\\u2028"),
            '\u{2029}' => Some("\\u2029"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Re-indents compact JSON the way Go's `json.Indent` does (empty containers stay `[]`/`{}`).
pub fn indent(compact: &str, unit: &str) -> String {
    let mut out = String::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = compact.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(unit);
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    out.push(chars.next().unwrap_or(close));
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c => out.push(c),
        }
    }
    out
}

/// `t` as RFC 3339 in UTC, to the second (a time before 1970 shows as 1970).
pub fn rfc3339_from_system_time(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    rfc3339_from_unix(secs)
}

/// Unix seconds (or milliseconds, beyond ±1e12, as the driver assumes) as RFC 3339 in UTC.
pub fn rfc3339_from_unix(v: i64) -> String {
    let (secs, nanos) = if !(-1_000_000_000_000..=1_000_000_000_000).contains(&v) {
        (v.div_euclid(1000), (v.rem_euclid(1000) * 1_000_000) as u32)
    } else {
        (v, 0)
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format_rfc3339(
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        nanos,
        0,
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's method).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn format_rfc3339(
    y: i64,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
    nanos: u32,
    offset_min: i32,
) -> String {
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    if offset_min == 0 {
        out.push('Z');
    } else {
        let sign = if offset_min < 0 { '-' } else { '+' };
        let a = offset_min.unsigned_abs();
        let _ = write!(out, "{sign}{:02}:{:02}", a / 60, a % 60);
    }
    out
}

/// Parses text in one of the driver's timestamp layouts (`YYYY-MM-DD[( |T)HH:MM[:SS[.fff]]]`
/// with an optional `±HH:MM` offset or `Z`) and returns it as RFC 3339.
fn parse_sqlite_time(text: &str) -> Option<String> {
    let s = text.strip_suffix('Z').unwrap_or(text).as_bytes();
    let num = |b: &[u8]| -> Option<u32> {
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(b).ok()?.parse().ok()
    };
    if s.len() < 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(&s[0..4])?, num(&s[5..7])?, num(&s[8..10])?);
    let (mut h, mut mi, mut sec, mut nanos, mut offset) = (0, 0, 0, 0u32, 0i32);
    let mut rest = &s[10..];
    if !rest.is_empty() {
        if !(rest[0] == b' ' || rest[0] == b'T') || rest.len() < 6 || rest[3] != b':' {
            return None;
        }
        h = num(&rest[1..3])?;
        mi = num(&rest[4..6])?;
        rest = &rest[6..];
        if rest.first() == Some(&b':') {
            sec = num(rest.get(1..3)?)?;
            rest = &rest[3..];
            if rest.first() == Some(&b'.') {
                let n = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
                if n == 0 || n > 9 {
                    return None;
                }
                let digits = std::str::from_utf8(&rest[1..1 + n]).ok()?;
                nanos = format!("{digits:0<9}").parse().ok()?;
                rest = &rest[1 + n..];
            }
            if let Some(&sign @ (b'+' | b'-')) = rest.first() {
                if rest.len() != 6 || rest[3] != b':' {
                    return None;
                }
                let minutes = (num(&rest[1..3])? * 60 + num(&rest[4..6])?) as i32;
                offset = if sign == b'-' { -minutes } else { minutes };
                rest = &[];
            }
        }
        if !rest.is_empty() {
            return None;
        }
    }
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > days_in_month || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    Some(format_rfc3339(
        i64::from(y),
        mo,
        d,
        h,
        mi,
        sec,
        nanos,
        offset,
    ))
}

#[cfg(test)]
mod tests;
