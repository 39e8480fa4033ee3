//! Parsing request bodies of `/db/execute`, `/db/query`, `/db/request`: rqlite's JSON array of
//! statements, or (with `Content-Type: text/plain` on execute and query) one SQL string.
//!
//! Each element is a string (SQL, possibly several statements), or an array whose first item
//! is the SQL followed by positional values, or by one object of named values. Value mapping,
//! as rqlite: a JSON integer that fits i64 is INTEGER, any other number REAL, `true`/`false`
//! bind as 1/0, `null` is NULL, an array of integers 0–255 is a BLOB, and a string is TEXT —
//! except a string shaped `X'…'` with valid hex, which rqlite turns into a BLOB.

//!
//! Memory is bounded per request: the body is parsed straight into the request's own types
//! (no JSON tree in between), and the parse counts what it builds against a budget
//! ([`parse_budget`]); a body whose statements and values would take more is refused with
//! [`BodyError::TooLarge`] before it can (60 MB of `1,1,1,…` used to become 2.6 GB).

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::db::request::{ParamValue, Params, SqlStatement};

/// Why a body was refused; every case is a 400 with this text, except [`BodyError::TooLarge`]
/// (413).
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
    #[error("request too large: its statements and values need more than {0} bytes of memory")]
    TooLarge(usize),
}

/// What a parsed request may take in memory: twice the body limit, and never more than a
/// Raft entry may carry (a write is replicated as one entry).
pub fn parse_budget(max_body_size: usize) -> usize {
    max_body_size
        .saturating_mul(2)
        .min(crate::db::request::MAX_REQUEST_BYTES)
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
/// endpoint that accepts a bare SQL string. `budget` bounds the memory the result may take
/// (see [`parse_budget`]).
pub fn parse_statements(
    body: &[u8],
    plain_text: bool,
    budget: usize,
) -> Result<Vec<SqlStatement>, BodyError> {
    if plain_text {
        let sql = std::str::from_utf8(body).map_err(|_| BodyError::InvalidUtf8)?;
        if sql.trim().is_empty() {
            return Err(BodyError::NoStatements);
        }
        if statement_cost(sql) > budget {
            return Err(BodyError::TooLarge(budget));
        }
        return Ok(vec![SqlStatement::new(sql)]);
    }
    if std::str::from_utf8(body).is_err() {
        return Err(BodyError::InvalidUtf8);
    }
    // Syntax first, building nothing: a malformed body is `invalid JSON` whatever else is
    // wrong with it, as when the whole document was parsed before being looked at.
    serde_json::from_slice::<IgnoredAny>(body).map_err(|_| BodyError::InvalidJson)?;
    let refusal = Cell::new(None);
    let spent = Cell::new(0usize);
    let seed = Statements {
        budget: Budget {
            limit: budget,
            spent: &spent,
        },
        refusal: &refusal,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    match seed.deserialize(&mut de) {
        Ok(statements) if statements.is_empty() => Err(BodyError::NoStatements),
        Ok(statements) => Ok(statements),
        Err(_) => Err(refusal.take().unwrap_or(BodyError::InvalidJson)),
    }
}

fn statement_cost(sql: &str) -> usize {
    std::mem::size_of::<SqlStatement>() + sql.len()
}

/// The memory a parse may spend in all; going over is [`BodyError::TooLarge`].
#[derive(Clone, Copy)]
struct Budget<'a> {
    limit: usize,
    spent: &'a Cell<usize>,
}

impl Budget<'_> {
    fn spend(&self, bytes: usize) -> Result<(), BodyError> {
        let total = self.spent.get().saturating_add(bytes);
        self.spent.set(total);
        if total > self.limit {
            Err(BodyError::TooLarge(self.limit))
        } else {
            Ok(())
        }
    }
}

fn map_error() -> BodyError {
    BodyError::UnsupportedType("map[string]interface {}".into())
}

/// The refusal a visitor met, kept aside: serde's own error only carries text.
fn refuse<E: de::Error>(slot: &Cell<Option<BodyError>>, why: BodyError) -> E {
    let text = why.to_string();
    slot.set(Some(why));
    E::custom(text)
}

/// The body: a JSON array of statements.
struct Statements<'a> {
    budget: Budget<'a>,
    refusal: &'a Cell<Option<BodyError>>,
}

impl<'de> DeserializeSeed<'de> for Statements<'_> {
    type Value = Vec<SqlStatement>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Statements<'_> {
    type Value = Vec<SqlStatement>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of statements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(statement) = seq.next_element_seed(Element {
            budget: self.budget,
            refusal: self.refusal,
        })? {
            out.push(statement);
        }
        Ok(out)
    }

    // Anything but an array.
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(refuse(self.refusal, BodyError::InvalidRequest))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(refuse(self.refusal, BodyError::InvalidRequest))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(refuse(self.refusal, BodyError::InvalidRequest))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(refuse(self.refusal, BodyError::InvalidRequest))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(refuse(self.refusal, BodyError::InvalidRequest))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(refuse(self.refusal, BodyError::InvalidRequest))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(refuse(self.refusal, BodyError::InvalidRequest))
    }
}

/// One element: `"SQL"`, `["SQL", v1, v2, …]` or `["SQL", {"name": v}]`.
struct Element<'a> {
    budget: Budget<'a>,
    refusal: &'a Cell<Option<BodyError>>,
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = SqlStatement;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Element<'_> {
    fn sql<E: de::Error>(&self, sql: String) -> Result<SqlStatement, E> {
        self.budget
            .spend(statement_cost(&sql))
            .map_err(|e| refuse(self.refusal, e))?;
        Ok(SqlStatement::new(sql))
    }

    fn invalid<T, E: de::Error>(&self) -> Result<T, E> {
        Err(refuse(self.refusal, BodyError::InvalidRequest))
    }
}

impl<'de> Visitor<'de> for Element<'_> {
    type Value = SqlStatement;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a statement")
    }

    fn visit_str<E: de::Error>(self, sql: &str) -> Result<Self::Value, E> {
        self.sql(sql.to_string())
    }

    fn visit_string<E: de::Error>(self, sql: String) -> Result<Self::Value, E> {
        self.sql(sql)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Some(first) = seq.next_element_seed(FirstItem)? else {
            return self.invalid();
        };
        let Some(sql) = first else {
            return self.invalid();
        };
        let mut statement = self.sql::<A::Error>(sql)?;
        // One object after the SQL is named parameters; among other values an object cannot
        // bind. The first value that cannot bind (in order) is the answer, as it would be for
        // a parse of the whole document.
        let mut positional: Vec<ParamValue> = Vec::new();
        let mut named = None;
        let mut count = 0usize;
        let mut first_error: Option<BodyError> = None;
        while let Some(item) = seq.next_element_seed(ParamOrNamed {
            value: Value {
                budget: self.budget,
                refusal: self.refusal,
            },
        })? {
            count += 1;
            if count == 2 && named.is_some() {
                // The object in first place turned out to be among values.
                first_error.get_or_insert_with(map_error);
            }
            match item {
                ParamItem::Value(Ok(v)) => positional.push(v),
                ParamItem::Value(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                ParamItem::Named(n) if count == 1 => named = Some(n),
                ParamItem::Named(_) => {
                    first_error.get_or_insert_with(map_error);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(refuse(self.refusal, e));
        }
        statement.params = match named {
            Some(named) => Params::Named(named.map_err(|e| refuse(self.refusal, e))?),
            None if count == 0 => Params::None,
            None => Params::Positional(positional),
        };
        Ok(statement)
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        self.invalid()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        self.invalid()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        self.invalid()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        self.invalid()
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        self.invalid()
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.invalid()
    }
}

/// The first item of an array element: the SQL text, or `None` when it is not a string.
struct FirstItem;

impl<'de> DeserializeSeed<'de> for FirstItem {
    type Value = Option<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FirstItem {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the SQL text")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(s.to_string()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Some(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An item after the SQL: a value, or an object of named values (with the first value in it
/// that cannot bind, if any).
enum ParamItem {
    Value(Bound),
    Named(Result<Vec<(String, ParamValue)>, BodyError>),
}

struct ParamOrNamed<'a> {
    value: Value<'a>,
}

impl<'de> DeserializeSeed<'de> for ParamOrNamed<'_> {
    type Value = ParamItem;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamOrNamed<'_> {
    type Value = ParamItem;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a parameter")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut named: Vec<(String, ParamValue)> = Vec::new();
        let mut failed = None;
        while let Some(name) = map.next_key::<String>()? {
            let v = map.next_value_seed(self.value)?;
            self.value
                .budget
                .spend(std::mem::size_of::<(String, ParamValue)>() + name.len())
                .map_err(|e| refuse(self.value.refusal, e))?;
            match v {
                Ok(v) => named.push((name, v)),
                Err(e) => {
                    failed.get_or_insert((name, e));
                }
            }
        }
        // As a JSON object: sorted by name, the last of a repeated name wins, and the first
        // value (by name) that cannot bind is the refusal.
        named.reverse();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named.dedup_by(|later, earlier| later.0 == earlier.0);
        Ok(ParamItem::Named(match failed {
            Some((_, e)) => Err(e),
            None => Ok(named),
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.value.visit_seq(seq).map(ParamItem::Value)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        self.value.visit_str(s).map(ParamItem::Value)
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        self.value.visit_string(s).map(ParamItem::Value)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.value.visit_i64(v).map(ParamItem::Value)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.value.visit_u64(v).map(ParamItem::Value)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.value.visit_f64(v).map(ParamItem::Value)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.value.visit_bool(v).map(ParamItem::Value)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.value.visit_unit().map(ParamItem::Value)
    }
}

/// One bound value, mapped as rqlite maps it (see the module docs). A value of a type that
/// cannot bind is consumed whole and answered as `Err` (the caller decides which refusal comes
/// first, as a whole-document parse would); only going over the budget stops the parse.
#[derive(Clone, Copy)]
struct Value<'a> {
    budget: Budget<'a>,
    refusal: &'a Cell<Option<BodyError>>,
}

type Bound = Result<ParamValue, BodyError>;

impl Value<'_> {
    fn built<E: de::Error>(&self, v: ParamValue) -> Result<Bound, E> {
        let heap = match &v {
            ParamValue::Text(s) => s.len(),
            ParamValue::Blob(b) => b.len(),
            _ => 0,
        };
        self.budget
            .spend(std::mem::size_of::<ParamValue>() + heap)
            .map_err(|e| refuse(self.refusal, e))?;
        Ok(Ok(v))
    }
}

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = Bound;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value<'_> {
    type Value = Bound;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.built(ParamValue::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        self.built(ParamValue::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Self::Value, E> {
        self.built(ParamValue::Integer(i))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Self::Value, E> {
        // An integer literal past i64 is REAL, as in rqlite.
        self.built(match i64::try_from(u) {
            Ok(i) => ParamValue::Integer(i),
            Err(_) => ParamValue::Real(u as f64),
        })
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Self::Value, E> {
        self.built(ParamValue::Real(f))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        self.built(match hex_blob_literal(s) {
            Some(bytes) => ParamValue::Blob(bytes),
            None => ParamValue::Text(s.to_string()),
        })
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        self.built(match hex_blob_literal(&s) {
            Some(bytes) => ParamValue::Blob(bytes),
            None => ParamValue::Text(s),
        })
    }
    /// An array of integers 0–255 is a BLOB.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut bytes = Some(Vec::new());
        while let Some(item) = seq.next_element::<IgnoredOr<u64>>()? {
            match (item, &mut bytes) {
                (IgnoredOr::Value(b), Some(bytes)) if b <= 255 => {
                    self.budget.spend(1).map_err(|e| refuse(self.refusal, e))?;
                    bytes.push(b as u8);
                }
                _ => bytes = None,
            }
        }
        match bytes {
            Some(bytes) => self.built(ParamValue::Blob(bytes)),
            None => Ok(Err(BodyError::UnsupportedType("[]interface {}".into()))),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err(BodyError::UnsupportedType(
            "map[string]interface {}".into(),
        )))
    }
}

/// An integer, or anything else (skipped and reported as not an integer).
enum IgnoredOr<T> {
    Value(T),
    Other,
}

impl<'de> de::Deserialize<'de> for IgnoredOr<u64> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IgnoredOr<u64>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte")
            }
            fn visit_u64<E: de::Error>(self, u: u64) -> Result<Self::Value, E> {
                Ok(IgnoredOr::Value(u))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(IgnoredOr::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(IgnoredOr::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(IgnoredOr::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(IgnoredOr::Other)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(IgnoredOr::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(IgnoredOr::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(IgnoredOr::Other)
            }
        }
        d.deserialize_any(V)
    }
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

    const BUDGET: usize = 1 << 20;

    fn parse(s: &str) -> Result<Vec<SqlStatement>, BodyError> {
        parse_statements(s.as_bytes(), false, BUDGET)
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
            parse_statements(b"[\"\xff\"]", false, BUDGET),
            Err(BodyError::InvalidUtf8)
        );
    }

    #[test]
    fn plain_text_is_one_statement_string() {
        let got = parse_statements(b"SELECT 1; SELECT 2", true, BUDGET).unwrap();
        assert_eq!(got, vec![SqlStatement::new("SELECT 1; SELECT 2")]);
        assert_eq!(
            parse_statements(b"  ", true, BUDGET),
            Err(BodyError::NoStatements)
        );
    }

    #[test]
    fn a_body_that_would_take_too_much_memory_is_refused_as_it_is_parsed() {
        // 1 MB of `1,`: half a million INTEGER parameters, each a whole ParamValue in memory.
        let mut body = String::from(r#"[["INSERT INTO t VALUES(?)""#);
        for _ in 0..500_000 {
            body.push_str(",1");
        }
        body.push_str("]]");
        let budget = 4 << 20;
        assert_eq!(
            parse_statements(body.as_bytes(), false, budget),
            Err(BodyError::TooLarge(budget))
        );
        // The same count fits a budget sized for it.
        let fits = 500_000 * std::mem::size_of::<ParamValue>() + 1024;
        assert!(parse_statements(body.as_bytes(), false, fits).is_ok());
        // Text counts its bytes; plain-text SQL too.
        let long = format!(r#"["{}"]"#, "x".repeat(10_000));
        assert_eq!(
            parse_statements(long.as_bytes(), false, 5_000),
            Err(BodyError::TooLarge(5_000))
        );
        assert_eq!(
            parse_statements("x".repeat(10_000).as_bytes(), true, 5_000),
            Err(BodyError::TooLarge(5_000))
        );
        // A syntax error is still reported as one, even past a refusal.
        assert_eq!(
            parse_statements(b"[[1], ", false, BUDGET),
            Err(BodyError::InvalidJson)
        );
        assert_eq!(parse_budget(64 << 20), 128 << 20);
        assert_eq!(parse_budget(1 << 30), crate::db::request::MAX_REQUEST_BYTES);
    }

    /// The parser before it streamed: the whole body as a JSON tree, then mapped. The streaming
    /// parser must give the same answer on every body.
    fn tree_parse(body: &[u8]) -> Result<Vec<SqlStatement>, BodyError> {
        use serde_json::Value as Json;
        fn value(v: &Json) -> Result<ParamValue, BodyError> {
            Ok(match v {
                Json::Null => ParamValue::Null,
                Json::Bool(b) => ParamValue::Bool(*b),
                Json::Number(n) => match n.as_i64() {
                    Some(i) if !n.to_string().contains(['.', 'e', 'E']) => ParamValue::Integer(i),
                    _ => ParamValue::Real(n.as_f64().unwrap()),
                },
                Json::String(s) => match hex_blob_literal(s) {
                    Some(b) => ParamValue::Blob(b),
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
        items
            .into_iter()
            .map(|item| match item {
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
                                .map(|(k, v)| Ok((k.clone(), value(v)?)))
                                .collect::<Result<_, BodyError>>()?,
                        ),
                        values => {
                            Params::Positional(values.iter().map(value).collect::<Result<_, _>>()?)
                        }
                    };
                    Ok(SqlStatement { sql, params })
                }
                _ => Err(BodyError::InvalidRequest),
            })
            .collect()
    }

    fn json_strategy() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::{json, Value as Json};
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            (0u8..=255).prop_map(|b| json!(b)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "[a-z ?:'x0-9]{0,8}".prop_map(Json::String),
            "[xX]'[0-9a-fA-Fg]{0,6}'".prop_map(Json::String),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
                proptest::collection::btree_map("[a-c]{1,2}", inner, 0..3)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn streaming_parse_answers_as_the_tree_parse(body in json_strategy()) {
            let text = serde_json::to_vec(&body).unwrap();
            proptest::prop_assert_eq!(
                parse_statements(&text, false, usize::MAX),
                tree_parse(&text)
            );
        }

        #[test]
        fn statement_shaped_bodies_parse_alike(
            items in proptest::collection::vec(
                (
                    "[A-Z ?;:]{0,10}",
                    proptest::collection::vec(json_strategy(), 0..4),
                    proptest::bool::ANY,
                ),
                0..4,
            )
        ) {
            let body: Vec<serde_json::Value> = items
                .into_iter()
                .map(|(sql, params, bare)| {
                    if bare && params.is_empty() {
                        serde_json::Value::String(sql)
                    } else {
                        let mut v = vec![serde_json::Value::String(sql)];
                        v.extend(params);
                        serde_json::Value::Array(v)
                    }
                })
                .collect();
            let text = serde_json::to_vec(&body).unwrap();
            proptest::prop_assert_eq!(
                parse_statements(&text, false, usize::MAX),
                tree_parse(&text)
            );
        }
    }
}
