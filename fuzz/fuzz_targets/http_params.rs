//! Fuzz target `http_params`: a request's query string and the body of `/db/execute`,
//! `/db/query` or `/db/request`, parsed by the functions the server's handlers call
//! (`QueryParams::parse` + `validate` in the middleware, `is_plain_text` and
//! `parse_statements` in `read_request`, the typed getters and `ReadLevel::parse`).
//!
//! Input layout (so seeds stay readable and a crash file can be pasted into a test):
//!
//! ```text
//! byte 0            endpoint: value % 4 → 0 execute, 1 query POST, 2 query GET, 3 request
//! up to first '\n'  the raw query string (lossily made UTF-8, as actix hands over a &str)
//! up to next '\n'   the Content-Type header value (empty line = no header)
//! the rest          the body bytes, untouched
//! ```
//!
//! Besides "never panics", it checks what the handlers rely on: validated duration and
//! integer parameters read back through the typed getters, a refused `q=` never reaches
//! the GET handler, plain text becomes exactly one statement with the body as its SQL, a
//! parsed JSON body has at least one statement, and hex/array BLOBs and integers keep
//! their values.

#![no_main]

use libfuzzer_sys::fuzz_target;
use raftlite::db::request::{ParamValue, Params, SqlStatement};
use raftlite::flags::parse_go_duration_nanos;
use raftlite::http::body::{is_plain_text, parse_statements, BodyError};
use raftlite::http::json::EncodeOptions;
use raftlite::http::params::QueryParams;
use raftlite::db::request::ReadLevel;

#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Execute,
    QueryPost,
    QueryGet,
    Request,
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let endpoint = match selector % 4 {
        0 => Endpoint::Execute,
        1 => Endpoint::QueryPost,
        2 => Endpoint::QueryGet,
        _ => Endpoint::Request,
    };
    let (query, rest) = split_line(rest);
    let (content_type, body) = split_line(rest);
    let query = String::from_utf8_lossy(query);
    let content_type = std::str::from_utf8(content_type)
        .ok()
        .filter(|ct| !ct.is_empty());

    // The middleware: every path is validated before routing; an error is a 400.
    let params = QueryParams::parse(&query);
    if params.validate().is_err() {
        return;
    }
    check_typed_getters(&params);
    let _ = EncodeOptions::from_params(&params);
    let _ = ReadLevel::parse(params.get("level"));
    let _ = params.has("transaction");

    match endpoint {
        Endpoint::QueryGet => {
            // `query_get`: the SQL comes from `q`, which validation never lets through empty.
            if let Some(sql) = params.get("q") {
                assert!(!sql.is_empty(), "validate let an empty q= through");
            }
        }
        Endpoint::Execute | Endpoint::QueryPost | Endpoint::Request => {
            let allow_plain_text = !matches!(endpoint, Endpoint::Request);
            let plain = allow_plain_text && is_plain_text(content_type);
            check_body(body, plain);
        }
    }
});

/// Splits at the first `\n` (dropped); no newline means everything is the first part.
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// After `validate` succeeded, the getters the handlers use must agree with it.
fn check_typed_getters(params: &QueryParams) {
    for key in ["timeout", "freshness", "db_timeout", "linearizable_timeout"] {
        if let Some(v) = params.get(key) {
            let nanos = parse_go_duration_nanos(v).expect("validated duration parses");
            // Negative durations are valid (as in Go) but have no `Duration`.
            assert_eq!(params.duration(key).is_some(), nanos >= 0, "{key}={v:?}");
            if let Some(d) = params.duration(key) {
                assert_eq!(d.as_nanos(), nanos as u128, "{key}={v:?}");
            }
        }
    }
    for key in ["retries", "trailing_logs"] {
        if let Some(v) = params.get(key) {
            assert!(params.integer(key).is_some(), "{key}={v:?} validated");
        }
    }
}

fn check_body(body: &[u8], plain: bool) {
    let parsed = parse_statements(body, plain, 1 << 24);
    let statements = match parsed {
        Ok(s) => s,
        Err(BodyError::InvalidUtf8) => {
            assert!(std::str::from_utf8(body).is_err(), "valid UTF-8 refused");
            return;
        }
        Err(_) => return,
    };
    assert!(!statements.is_empty(), "a parsed request has no statements");
    if plain {
        let text = std::str::from_utf8(body).expect("plain body was UTF-8");
        assert_eq!(statements, vec![SqlStatement::new(text)]);
        assert!(!text.trim().is_empty());
        return;
    }
    check_numbers_exact(body, &statements);
    for st in &statements {
        let values: Vec<&ParamValue> = match &st.params {
            Params::None => Vec::new(),
            Params::Positional(v) => v.iter().collect(),
            Params::Named(v) => v.iter().map(|(_, v)| v).collect(),
        };
        for v in values {
            check_value(v);
        }
    }
}

/// Numbers must bind exactly as Go's `strconv` reads them (rqlite's behaviour): an integer as
/// that integer, anything else as the correctly rounded double, which Rust's `str::parse`
/// also gives. Positional parameters are the only numbers at nesting depth 2 of the body
/// (named values are inside an object, BLOB bytes inside a third array), so the Nth such
/// number token is the Nth numeric positional parameter.
fn check_numbers_exact(body: &[u8], statements: &[SqlStatement]) {
    let tokens = depth2_number_tokens(std::str::from_utf8(body).expect("parsed body is UTF-8"));
    let mut numbers = statements
        .iter()
        .filter_map(|st| match &st.params {
            Params::Positional(v) => Some(v),
            _ => None,
        })
        .flatten()
        .filter(|v| matches!(v, ParamValue::Integer(_) | ParamValue::Real(_)));
    for token in &tokens {
        let got = numbers
            .next()
            .expect("a number token without a numeric parameter");
        match got {
            ParamValue::Integer(i) => assert_eq!(token.parse::<i64>().ok(), Some(*i), "{token}"),
            ParamValue::Real(f) => {
                let want: f64 = token.parse().expect("JSON number parses as f64");
                assert_eq!(
                    f.to_bits(),
                    want.to_bits(),
                    "{token} bound as {f:e}, want {want:e}"
                );
            }
            _ => unreachable!(),
        }
    }
    assert!(
        numbers.next().is_none(),
        "more numeric parameters than number tokens"
    );
}

/// The number tokens at array depth 2, outside strings, in order.
fn depth2_number_tokens(json: &str) -> Vec<&str> {
    let bytes = json.as_bytes();
    let (mut depth, mut i, mut out) = (0i32, 0usize, Vec::new());
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth -= 1,
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                if depth == 2 {
                    out.push(&json[start..i]);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn check_value(v: &ParamValue) {
    match v {
        // JSON numbers are finite or overflow to an error; NaN cannot come out of JSON.
        ParamValue::Real(f) => assert!(!f.is_nan(), "NaN parameter"),
        // A TEXT value shaped like a valid hex literal would have been a BLOB.
        ParamValue::Text(s) => {
            if let Some(inner) = s
                .strip_prefix(['x', 'X'])
                .and_then(|r| r.strip_prefix('\''))
                .and_then(|r| r.strip_suffix('\''))
            {
                assert!(
                    inner.len() % 2 != 0 || !inner.bytes().all(|b| b.is_ascii_hexdigit()),
                    "hex literal {s:?} kept as TEXT"
                );
            }
        }
        ParamValue::Null | ParamValue::Integer(_) | ParamValue::Blob(_) | ParamValue::Bool(_) => {}
    }
}
