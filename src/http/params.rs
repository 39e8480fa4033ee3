//! Query parameters: rqlite's presence flags, typed values, and the validation that every
//! request goes through before routing.
//!
//! A presence flag is on when the parameter appears at all, whatever its value: `?pretty`,
//! `?pretty=true` and `?pretty=false` all turn it on, as in rqlite. Unknown parameters are
//! ignored.

use std::time::Duration;

use crate::flags::{parse_go_duration, parse_go_duration_nanos};

/// The decoded query string, in order, with repeated keys kept.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    pub fn parse(query: &str) -> QueryParams {
        QueryParams {
            pairs: form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// The first value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A presence flag.
    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// A duration parameter; validation has already refused a malformed one.
    pub fn duration(&self, key: &str) -> Option<Duration> {
        self.get(key).and_then(|v| parse_go_duration(v).ok())
    }

    pub fn integer(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    /// rqlite's checks, run for every path before routing. The error text is the 400 body.
    pub fn validate(&self) -> Result<(), String> {
        for key in ["timeout", "freshness", "db_timeout", "linearizable_timeout"] {
            if let Some(v) = self.get(key) {
                if parse_go_duration_nanos(v).is_err() {
                    return Err(format!("{key} is not a valid duration"));
                }
            }
        }
        for key in ["retries", "trailing_logs"] {
            if let Some(v) = self.get(key) {
                if v.parse::<i64>().is_err() {
                    return Err(format!("{key} is not a valid integer"));
                }
            }
        }
        if self.has("freshness_strict") && !self.has("freshness") {
            return Err("freshness_strict requires freshness".into());
        }
        if self.get("q") == Some("") {
            return Err("query parameter not set".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_flags_ignore_values() {
        let p = QueryParams::parse("pretty=false&timings&q=SELECT%201&level=none");
        assert!(p.has("pretty"));
        assert!(p.has("timings"));
        assert!(!p.has("associative"));
        assert_eq!(p.get("q"), Some("SELECT 1"));
        assert_eq!(p.get("level"), Some("none"));
    }

    #[test]
    fn validation_messages() {
        let v = |q: &str| QueryParams::parse(q).validate();
        assert_eq!(
            v("timeout=xyz"),
            Err("timeout is not a valid duration".into())
        );
        assert_eq!(
            v("db_timeout=5"),
            Err("db_timeout is not a valid duration".into())
        );
        assert_eq!(v("retries=a"), Err("retries is not a valid integer".into()));
        assert_eq!(
            v("trailing_logs=1.5"),
            Err("trailing_logs is not a valid integer".into())
        );
        assert_eq!(
            v("freshness_strict"),
            Err("freshness_strict requires freshness".into())
        );
        assert_eq!(v("q="), Err("query parameter not set".into()));
        assert_eq!(
            v("timeout=1m30s&freshness=1s&freshness_strict&retries=3&unknown=zz"),
            Ok(())
        );
        assert_eq!(
            QueryParams::parse("timeout=1m30s").duration("timeout"),
            Some(Duration::from_secs(90))
        );
    }
}
