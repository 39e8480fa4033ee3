//! SQL text checks and rewrites at the HTTP edge: rqlite's disallowed PRAGMAs, and what rqlite's
//! rewriting would make of a statement (`/db/sql`).
//!
//! raftlite never rewrites the SQL it replicates: the apply connection is deterministic (every
//! entry carries the leader's clock and a seed, see `raftlite_ffi::ApplyInputs`), which also
//! covers defaults, triggers and views that text rewriting cannot reach, and keeps
//! `UPDATE t SET x = random()` giving each row its own value. [`rewrite`] only exists so that
//! `/db/sql` can show what rqlite would have replicated, with `noparse`, `norwrandom` and
//! `norwtime` turning the corresponding parts off.
//!
//! Both work on tokens (strings, quoted identifiers and comments are never looked into), not
//! on a parse tree: good enough for leading keywords and function calls.

use super::request::ApplyEnv;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Space,
    Word,
    /// `'...'`
    Str,
    /// `"..."`, `` `...` ``, `[...]`
    Quoted,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
}

fn tokens(sql: &str) -> Vec<Token<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let kind = if c.is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            Kind::Space
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            Kind::Space
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = sql[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            Kind::Space
        } else if matches!(c, b'\'' | b'"' | b'`' | b'[') {
            let close = if c == b'[' { b']' } else { c };
            i += 1;
            loop {
                match b.get(i) {
                    None => break,
                    Some(&x) if x == close => {
                        // A doubled quote is an escaped quote (not inside [...]).
                        if close != b']' && b.get(i + 1) == Some(&close) {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            if c == b'\'' {
                Kind::Str
            } else {
                Kind::Quoted
            }
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 || c == b'$' {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80 || b[i] == b'$')
            {
                i += 1;
            }
            Kind::Word
        } else {
            i += 1;
            while i < b.len() && !sql.is_char_boundary(i) {
                i += 1;
            }
            Kind::Other
        };
        out.push(Token {
            kind,
            text: &sql[start..i],
        });
    }
    out
}

/// The name a word or quoted identifier stands for, lower-cased.
fn name_of(t: &Token<'_>) -> Option<String> {
    match t.kind {
        Kind::Word => Some(t.text.to_ascii_lowercase()),
        Kind::Quoted | Kind::Str if t.text.len() >= 2 => {
            Some(t.text[1..t.text.len() - 1].to_ascii_lowercase())
        }
        _ => None,
    }
}

/// PRAGMAs that would make replicas diverge or break the node's own settings. All but
/// `wal_checkpoint` are refused only when they set a value.
const DISALLOWED_PRAGMAS: &[&str] = &[
    "journal_mode",
    "wal_autocheckpoint",
    "synchronous",
    "query_only",
    "writable_schema",
];

/// rqlite's request-level error text for a disallowed PRAGMA.
pub const DISALLOWED_PRAGMA_ERROR: &str = "disallowed pragma";

/// True when any statement in `sql` is a PRAGMA rqlite refuses: one that sets `journal_mode`,
/// `wal_autocheckpoint`, `synchronous`, `query_only` or `writable_schema` (a load may still
/// set `writable_schema`; it does not come through here), or any `wal_checkpoint`.
pub fn has_disallowed_pragma(sql: &str) -> bool {
    let toks = tokens(sql);
    toks.split(|t| t.kind == Kind::Other && t.text == ";")
        .any(|stmt| {
            let sig: Vec<&Token<'_>> = stmt.iter().filter(|t| t.kind != Kind::Space).collect();
            if sig.first().and_then(|t| name_of(t)).as_deref() != Some("pragma")
                || sig.first().is_some_and(|t| t.kind != Kind::Word)
            {
                return false;
            }
            // PRAGMA [schema.]name ...
            let mut at = 1;
            if sig.get(2).is_some_and(|t| t.text == ".") {
                at = 3;
            }
            let Some(name) = sig.get(at).and_then(|t| name_of(t)) else {
                return false;
            };
            let sets = sig
                .get(at + 1)
                .is_some_and(|t| t.text == "=" || t.text == "(");
            name == "wal_checkpoint" || (sets && DISALLOWED_PRAGMAS.contains(&name.as_str()))
        })
}

/// `PRAGMA optimize` without the 0x10000 bit only checks tables this *connection* has used
/// since it opened, so two nodes (one of them restarted) would analyze different tables.
/// Forcing the bit makes it check every table, which depends on content only.
const OPTIMIZE_ALL_TABLES: u32 = 0x10000;
const OPTIMIZE_DEFAULT_MASK: u32 = 0xfffe;

/// `sql` with every `PRAGMA [schema.]optimize[(mask)|=mask]` made deterministic (the mask
/// gets the "every table" bit), or None when there is none. The leader applies it before
/// proposing, so the entry carries the pinned text.
pub fn pin_optimize(sql: &str) -> Option<String> {
    let toks = tokens(sql);
    let mut out = String::with_capacity(sql.len() + 16);
    let mut changed = false;
    for (n, stmt) in toks
        .split(|t| t.kind == Kind::Other && t.text == ";")
        .enumerate()
    {
        if n > 0 {
            out.push(';');
        }
        match pinned_optimize(stmt) {
            Some(text) => {
                changed = true;
                out.push_str(&text);
            }
            None => stmt.iter().for_each(|t| out.push_str(t.text)),
        }
    }
    changed.then_some(out)
}

fn pinned_optimize(stmt: &[Token<'_>]) -> Option<String> {
    let lead: String = stmt
        .iter()
        .take_while(|t| t.kind == Kind::Space)
        .map(|t| t.text)
        .collect();
    let sig: Vec<&Token<'_>> = stmt.iter().filter(|t| t.kind != Kind::Space).collect();
    if sig.first()?.kind != Kind::Word || !sig[0].text.eq_ignore_ascii_case("pragma") {
        return None;
    }
    let (schema, at) = if sig.get(2).is_some_and(|t| t.text == ".") {
        (format!("{}.", sig.get(1)?.text), 3)
    } else {
        (String::new(), 1)
    };
    if name_of(sig.get(at)?)?.as_str() != "optimize" {
        return None;
    }
    let rest = &sig[at + 1..];
    let mask = match rest {
        [] => OPTIMIZE_DEFAULT_MASK,
        [eq, v] if eq.text == "=" => parse_mask(v.text)?,
        [open, v, close] if open.text == "(" && close.text == ")" => parse_mask(v.text)?,
        _ => return None,
    };
    Some(format!(
        "{lead}PRAGMA {schema}optimize(0x{:x})",
        mask | OPTIMIZE_ALL_TABLES
    ))
}

fn parse_mask(v: &str) -> Option<u32> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Which parts of rqlite's rewriting to apply (`noparse` turns both off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewriteOptions {
    pub random: bool,
    pub time: bool,
}

const TIME_FUNCTIONS: &[&str] = &[
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "timediff",
];

/// The largest `randomblob(N)` turned into a literal; larger ones are left as calls.
const MAX_LITERAL_BLOB: i64 = 4096;

/// What rqlite's rewriting would make of `sql` with the clock and seed of `env`: `random()`
/// becomes an integer literal, `randomblob(N)` (N a literal) a blob literal, and `'now'`
/// inside a date and time function the Julian day number of `env`'s clock.
pub fn rewrite(sql: &str, opts: RewriteOptions, env: ApplyEnv) -> String {
    let toks = tokens(sql);
    let mut rng = SplitMix(env.seed);
    let julian = env.unix_millis as f64 / 86_400_000.0 + 2_440_587.5;
    let mut out = String::with_capacity(sql.len());
    // Depth of parentheses inside a time function call, when inside one.
    let mut time_depth: Option<usize> = None;
    let next_sig = |from: usize| -> Option<usize> {
        (from..toks.len()).find(|&j| toks[j].kind != Kind::Space)
    };
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        let prev_dot = (0..i)
            .rev()
            .find(|&j| toks[j].kind != Kind::Space)
            .is_some_and(|j| toks[j].text == ".");
        let call = if t.kind == Kind::Word && !prev_dot {
            next_sig(i + 1).filter(|&j| toks[j].text == "(")
        } else {
            None
        };
        let lower = t.text.to_ascii_lowercase();
        if let (Some(open), true) = (call, opts.random) {
            if lower == "random" {
                if let Some(close) = next_sig(open + 1).filter(|&j| toks[j].text == ")") {
                    let mut r = rng.next() as i64;
                    if r < 0 {
                        r = -(r & i64::MAX);
                    }
                    if r < 0 {
                        out.push_str(&format!("({r})"));
                    } else {
                        out.push_str(&r.to_string());
                    }
                    i = close + 1;
                    continue;
                }
            }
            if lower == "randomblob" {
                let arg = next_sig(open + 1);
                let close = arg
                    .and_then(|a| next_sig(a + 1))
                    .filter(|&j| toks[j].text == ")");
                let n = arg.and_then(|a| toks[a].text.parse::<i64>().ok());
                if let (Some(close), Some(n)) = (close, n) {
                    if n <= MAX_LITERAL_BLOB {
                        out.push_str("x'");
                        for _ in 0..n.max(1) {
                            out.push_str(&format!("{:02x}", rng.next() as u8));
                        }
                        out.push('\'');
                        i = close + 1;
                        continue;
                    }
                }
            }
        }
        if opts.time
            && time_depth.is_none()
            && call.is_some()
            && TIME_FUNCTIONS.contains(&lower.as_str())
        {
            time_depth = Some(0);
        }
        match (t.kind, t.text, time_depth) {
            (Kind::Other, "(", Some(d)) => time_depth = Some(d + 1),
            (Kind::Other, ")", Some(d)) => time_depth = if d <= 1 { None } else { Some(d - 1) },
            (Kind::Str, s, Some(d)) if d >= 1 && s.eq_ignore_ascii_case("'now'") => {
                out.push_str(&format!("{julian:.10}"));
                i += 1;
                continue;
            }
            _ => {}
        }
        out.push_str(t.text);
        i += 1;
    }
    out
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disallowed_pragmas_as_rqlite_lists_them() {
        for sql in [
            "PRAGMA journal_mode=DELETE",
            "pragma main.journal_mode = wal",
            "  /* c */ PRAGMA synchronous=OFF",
            "PRAGMA wal_autocheckpoint=10",
            "PRAGMA wal_checkpoint",
            "PRAGMA wal_checkpoint(TRUNCATE)",
            "PRAGMA query_only=1",
            "PRAGMA writable_schema=ON",
            "PRAGMA \"writable_schema\"=1",
            "PRAGMA journal_mode(DELETE)",
            "SELECT 1; PRAGMA synchronous=0",
        ] {
            assert!(has_disallowed_pragma(sql), "{sql}");
        }
        for sql in [
            "PRAGMA journal_mode",
            "PRAGMA synchronous",
            "PRAGMA foreign_keys=ON",
            "PRAGMA table_info(t)",
            "SELECT 'PRAGMA journal_mode=DELETE'",
            "INSERT INTO pragma VALUES(1)",
            "-- PRAGMA synchronous=0\nSELECT 1",
        ] {
            assert!(!has_disallowed_pragma(sql), "{sql}");
        }
    }

    #[test]
    fn optimize_is_pinned_to_every_table() {
        assert_eq!(
            pin_optimize("PRAGMA optimize").as_deref(),
            Some("PRAGMA optimize(0x1fffe)")
        );
        assert_eq!(
            pin_optimize("SELECT 1; pragma main.optimize=2;").as_deref(),
            Some("SELECT 1; PRAGMA main.optimize(0x10002);")
        );
        assert_eq!(
            pin_optimize("PRAGMA optimize(0x10)").as_deref(),
            Some("PRAGMA optimize(0x10010)")
        );
        assert_eq!(pin_optimize("PRAGMA journal_mode"), None);
        assert_eq!(pin_optimize("SELECT 'PRAGMA optimize'"), None);
    }

    const ENV: ApplyEnv = ApplyEnv {
        // 2021-03-04 05:06:07.891 UTC
        unix_millis: 1_614_834_367_891,
        seed: 7,
        budget: crate::db::request::DEFAULT_WRITE_BUDGET_STEPS,
    };
    const ALL: RewriteOptions = RewriteOptions {
        random: true,
        time: true,
    };

    #[test]
    fn rewrites_random_randomblob_and_now() {
        let r = rewrite(
            "INSERT INTO t VALUES(random(), RandomBlob(4), datetime('now'), 'now', x.random())",
            ALL,
            ENV,
        );
        assert!(!r.contains("(random()"), "{r}");
        assert!(!r.contains("RandomBlob"), "{r}");
        assert!(r.contains("datetime(2459277.71259133"), "{r}");
        assert!(r.contains(", 'now', x.random())"), "{r}");
        assert_eq!(
            rewrite("SELECT random()", ALL, ENV),
            rewrite("SELECT random()", ALL, ENV)
        );
    }

    #[test]
    fn options_turn_parts_off_and_strings_are_left_alone() {
        let sql = "SELECT random(), strftime('%s', 'now', '+1 day'), 'random()'";
        let no_random = rewrite(
            sql,
            RewriteOptions {
                random: false,
                time: true,
            },
            ENV,
        );
        assert!(
            no_random.starts_with("SELECT random(), strftime('%s', 2459277."),
            "{no_random}"
        );
        let no_time = rewrite(
            sql,
            RewriteOptions {
                random: true,
                time: false,
            },
            ENV,
        );
        assert!(
            no_time.contains("'now'") && !no_time.starts_with("SELECT random()"),
            "{no_time}"
        );
        assert!(no_time.ends_with("'random()'"));
        let none = rewrite(
            sql,
            RewriteOptions {
                random: false,
                time: false,
            },
            ENV,
        );
        assert_eq!(none, sql);
    }
}
