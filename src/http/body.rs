//! Parsing request bodies of `/db/execute`, `/db/query`, `/db/request`: rqlite's JSON array of
//! statements, or (with `Content-Type: text/plain` on execute and query) one SQL string.
//!
//! Each element is a string (SQL, possibly several statements), or an array whose first item
//! is the SQL followed by positional values, or by one object of named values. Value mapping,
//! as rqlite: a JSON integer that fits i64 is INTEGER, any other number REAL, `true`/`false`
//! bind as 1/0, `null` is NULL, an array of integers 0–255 is a BLOB, and a string is TEXT —
//! except a string shaped `X'…'` with valid hex, which rqlite turns into a BLOB.

use serde_json::Value as Json;

use crate::db::request::{ParamValue, Params, SqlStatement};

/// Why a body was refused; every case is a 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("invalid JSON body")]
    InvalidJson,
    #[error("invalid UTF-8 in request body")]
    InvalidUtf8,
    #[error("invalid request")]
    InvalidRequest,
    #[error("no statements")]
    NoStatements,
    #[error("unsupported type {0}")]
    UnsupportedType(String),
}

/// Whether a `Content-Type` header value asks for a bare SQL body (`text/plain`, any case,
/// with or without parameters). Only execute and query accept one; the caller decides that.
pub fn is_plain_text(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("text/plain")
    })
}

/// Parses a body. `plain_text` is true when the client sent `Content-Type: text/plain` to an
/// endpoint that accepts a bare SQL string.
pub fn parse_statements(body: &[u8], plain_text: bool) -> Result<Vec<SqlStatement>, BodyError> {
    if plain_text {
        let sql = std::str::from_utf8(body).map_err(|_| BodyError::InvalidUtf8)?;
        if sql.trim().is_empty() {
            return Err(BodyError::NoStatements);
        }
        return Ok(vec![SqlStatement::new(sql)]);
    }
    if std::str::from_utf8(body).is_err() {
        return Err(BodyError::InvalidUtf8);
    }
    let json: Json = serde_json::from_slice(body).map_err(|_| BodyError::InvalidJson)?;
    let Json::Array(items) = json else {
        return Err(BodyError::InvalidRequest);
    };
    if items.is_empty() {
        return Err(BodyError::NoStatements);
    }
    items.into_iter().map(parse_element).collect()
}

fn parse_element(item: Json) -> Result<SqlStatement, BodyError> {
    match item {
        Json::String(sql) => Ok(SqlStatement::new(sql)),
        Json::Array(parts) => {
            let mut parts = parts.into_iter();
            let Some(Json::String(sql)) = parts.next() else {
                return Err(BodyError::InvalidRequest);
            };
            let rest: Vec<Json> = parts.collect();
            let params = match rest.as_slice() {
                [] => Params::None,
                [Json::Object(map)] => Params::Named(
                    map.iter()
                        .map(|(k, v)| Ok((k.clone(), param_value(v)?)))
                        .collect::<Result<_, BodyError>>()?,
                ),
                values => {
                    Params::Positional(values.iter().map(param_value).collect::<Result<_, _>>()?)
                }
            };
            Ok(SqlStatement { sql, params })
        }
        _ => Err(BodyError::InvalidRequest),
    }
}

fn param_value(v: &Json) -> Result<ParamValue, BodyError> {
    Ok(match v {
        Json::Null => ParamValue::Null,
        Json::Bool(b) => ParamValue::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) if !n.to_string().contains(['.', 'e', 'E']) => ParamValue::Integer(i),
            _ => ParamValue::Real(
                n.as_f64()
                    .ok_or_else(|| BodyError::UnsupportedType(n.to_string()))?,
            ),
        },
        Json::String(s) => match hex_blob_literal(s) {
            Some(bytes) => ParamValue::Blob(bytes),
            None => ParamValue::Text(s.clone()),
        },
        Json::Array(items) => ParamValue::Blob(
            items
                .iter()
                .map(|i| i.as_u64().filter(|b| *b <= 255).map(|b| b as u8))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| BodyError::UnsupportedType("[]interface {}".into()))?,
        ),
        Json::Object(_) => {
            return Err(BodyError::UnsupportedType("map[string]interface {}".into()))
        }
    })
}

/// `X'0aff'` or `x'0AFF'` with an even number of hex digits.
fn hex_blob_literal(s: &str) -> Option<Vec<u8>> {
    let inner = s
        .strip_prefix(['X', 'x'])?
        .strip_prefix('\'')?
        .strip_suffix('\'')?;
    if inner.len() % 2 != 0 || !inner.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..inner.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&inner[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<SqlStatement>, BodyError> {
        parse_statements(s.as_bytes(), false)
    }

    #[test]
    fn strings_positional_and_named() {
        let got = parse(r#"["CREATE TABLE t(a)", ["INSERT INTO t VALUES(?,?)", "fiona", 20], ["INSERT INTO t VALUES(:n)", {"n": 2.0}]]"#).unwrap();
        assert_eq!(got[0], SqlStatement::new("CREATE TABLE t(a)"));
        assert_eq!(
            got[1].params,
            Params::Positional(vec![
                ParamValue::Text("fiona".into()),
                ParamValue::Integer(20)
            ])
        );
        assert_eq!(
            got[2].params,
            Params::Named(vec![("n".into(), ParamValue::Real(2.0))])
        );
    }

    #[test]
    fn value_mapping() {
        let got = parse(r#"[["?", 1, 1.5, 1e2, 18446744073709551615, true, null, "x'00ff'", "X'0g'", [1, 255], "text"]]"#).unwrap();
        assert_eq!(
            got[0].params,
            Params::Positional(vec![
                ParamValue::Integer(1),
                ParamValue::Real(1.5),
                ParamValue::Real(100.0),
                ParamValue::Real(18446744073709551615.0),
                ParamValue::Bool(true),
                ParamValue::Null,
                ParamValue::Blob(vec![0, 255]),
                ParamValue::Text("X'0g'".into()),
                ParamValue::Blob(vec![1, 255]),
                ParamValue::Text("text".into()),
            ])
        );
    }

    #[test]
    fn errors() {
        assert_eq!(parse("not json"), Err(BodyError::InvalidJson));
        assert_eq!(parse(""), Err(BodyError::InvalidJson));
        assert_eq!(parse(r#"{"a":1}"#), Err(BodyError::InvalidRequest));
        assert_eq!(parse("[1]"), Err(BodyError::InvalidRequest));
        assert_eq!(parse("[[1, 2]]"), Err(BodyError::InvalidRequest));
        assert_eq!(parse("[]"), Err(BodyError::NoStatements));
        assert_eq!(
            parse(r#"[["?", {"a": {"b": 1}}]]"#),
            Err(BodyError::UnsupportedType("map[string]interface {}".into()))
        );
        assert_eq!(
            parse(r#"[["?", [256]]]"#),
            Err(BodyError::UnsupportedType("[]interface {}".into()))
        );
        assert_eq!(
            parse_statements(b"[\"\xff\"]", false),
            Err(BodyError::InvalidUtf8)
        );
    }

    #[test]
    fn plain_text_is_one_statement_string() {
        let got = parse_statements(b"SELECT 1; SELECT 2", true).unwrap();
        assert_eq!(got, vec![SqlStatement::new("SELECT 1; SELECT 2")]);
        assert_eq!(parse_statements(b"  ", true), Err(BodyError::NoStatements));
    }
}
