//! Command-line parsing with the semantics of Go's `flag` package.
//!
//! `raftlited` must accept `rqlited`'s command line unchanged, and `rqlited` parses it with Go's
//! standard `flag` package. clap cannot express those rules (single-dash long names, `-f=false`
//! booleans, "the first positional ends flag parsing"), so this module reimplements them over a
//! declarative table of [`FlagSpec`]s. It owns only the generic mechanics; which flags exist and
//! what they mean belongs to `config`.
//!
//! Rules, as in Go's `FlagSet.Parse`:
//! - `-name value`, `-name=value`, `--name value`, `--name=value` are all the same.
//! - A bool flag never takes the next argument: `-fk` means true, otherwise write `-fk=false`.
//!   Accepted spellings are Go's `strconv.ParseBool`: 1 t T TRUE true True, 0 f F FALSE false False.
//! - A non-bool flag without `=` takes the next argument whatever it looks like (`-join -x`
//!   sets `join` to `-x`).
//! - `--` ends the flags and is dropped; the first non-flag argument (including a lone `-`)
//!   ends the flags and is kept. Everything after is positional.
//! - `-h`, `-help` and `--help` (unless defined) give [`ParseResult::Help`].
//! - Setting a flag twice is allowed; the last value wins.
//! - Integers use Go's base prefixes (`0x1f`, `0o17`, `017`, `0b101`) and `_` digit separators.
//! - Durations use Go's syntax ([`parse_go_duration`]).
//!
//! Error messages are Go's, word for word, so scripts and docs written for rqlited still apply.
//!
//! Deviation from Go: a negative duration (`-1s`) is refused when given to a flag, because every
//! duration flag is a timeout or an interval and `std::time::Duration` is unsigned.
//! [`parse_go_duration_nanos`] still parses negative durations exactly as Go does.

use std::collections::BTreeMap;
use std::time::Duration;

/// The type of a flag's value. Names in `-h` output follow Go (`int`, `uint`, `duration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    Bool,
    String,
    /// Go `int`/`int64`.
    I64,
    /// Go `uint64`.
    U64,
    /// Go `uint`.
    Usize,
    /// Go `time.Duration`, non-negative.
    Duration,
}

impl FlagKind {
    /// The word Go's `PrintDefaults` shows after the flag name (nothing for bools).
    fn type_name(self) -> &'static str {
        match self {
            FlagKind::Bool => "",
            FlagKind::String => "string",
            FlagKind::I64 => "int",
            FlagKind::U64 | FlagKind::Usize => "uint",
            FlagKind::Duration => "duration",
        }
    }
}

/// A parsed flag value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagValue {
    Bool(bool),
    String(String),
    I64(i64),
    U64(u64),
    Usize(usize),
    Duration(Duration),
}

impl FlagValue {
    /// Parses `text` as a value of `kind`, with Go's rules for that type.
    pub fn parse(kind: FlagKind, text: &str) -> Result<FlagValue, ValueError> {
        Ok(match kind {
            FlagKind::Bool => FlagValue::Bool(parse_go_bool(text)?),
            FlagKind::String => FlagValue::String(text.to_string()),
            FlagKind::I64 => FlagValue::I64(parse_go_int(text)?),
            FlagKind::U64 => FlagValue::U64(parse_go_uint(text, u64::MAX)?),
            FlagKind::Usize => {
                let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
                let v = parse_go_uint(text, max)?;
                FlagValue::Usize(usize::try_from(v).map_err(|_| ValueError::OutOfRange)?)
            }
            FlagKind::Duration => match parse_go_duration(text) {
                Ok(d) => FlagValue::Duration(d),
                Err(DurationError::Negative(_)) => return Err(ValueError::NegativeDuration),
                Err(_) => return Err(ValueError::Parse),
            },
        })
    }

    /// Go's `Value.String()`: how `-h` shows the value (`2m0s` for 120 seconds).
    pub fn to_go_string(&self) -> String {
        match self {
            FlagValue::Bool(b) => b.to_string(),
            FlagValue::String(s) => s.clone(),
            FlagValue::I64(v) => v.to_string(),
            FlagValue::U64(v) => v.to_string(),
            FlagValue::Usize(v) => v.to_string(),
            FlagValue::Duration(d) => format_go_duration(*d),
        }
    }

    /// Whether this is the zero value of its type; Go's usage text omits such defaults.
    fn is_zero(&self) -> bool {
        match self {
            FlagValue::Bool(b) => !b,
            FlagValue::String(s) => s.is_empty(),
            FlagValue::I64(v) => *v == 0,
            FlagValue::U64(v) => *v == 0,
            FlagValue::Usize(v) => *v == 0,
            FlagValue::Duration(d) => d.is_zero(),
        }
    }
}

/// One row of a flag table. `default` is written as a user would type it and is parsed with
/// the same rules as the command line, so the table reads like rqlited's `flags.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagSpec {
    pub name: &'static str,
    pub kind: FlagKind,
    pub default: &'static str,
    pub help: &'static str,
}

/// Why a flag's value text was refused. The `Display` texts are Go's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("parse error")]
    Parse,
    #[error("value out of range")]
    OutOfRange,
    #[error("negative durations are not accepted")]
    NegativeDuration,
}

/// A command-line error. The `Display` texts are Go's `flag` package messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// `-=x`, `---x` and the like.
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
    #[error("flag provided but not defined: -{0}")]
    NotDefined(String),
    /// A non-bool flag was the last argument.
    #[error("flag needs an argument: -{0}")]
    NeedsArgument(String),
    #[error("invalid boolean value {value:?} for -{name}: {reason}")]
    InvalidBool {
        name: String,
        value: String,
        reason: ValueError,
    },
    #[error("invalid value {value:?} for flag -{name}: {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: ValueError,
    },
}

/// What a successful parse produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseResult {
    Parsed(ParsedFlags),
    /// `-h`, `-help` or `--help` was given; the caller prints [`FlagSet::usage`].
    Help,
}

/// A set of flag definitions: the table plus the parser.
#[derive(Debug, Clone)]
pub struct FlagSet {
    /// Sorted by name, as Go's usage lists them.
    specs: Vec<FlagSpec>,
    defaults: BTreeMap<&'static str, FlagValue>,
}

impl FlagSet {
    /// Builds a flag set from a table.
    ///
    /// # Panics
    /// If two rows share a name or a default does not parse: both are mistakes in the table,
    /// not in user input (Go panics with `flag redefined` for the first one too).
    pub fn new(specs: impl IntoIterator<Item = FlagSpec>) -> FlagSet {
        let mut specs: Vec<FlagSpec> = specs.into_iter().collect();
        specs.sort_by_key(|s| s.name);
        let mut defaults = BTreeMap::new();
        for spec in &specs {
            let value = FlagValue::parse(spec.kind, spec.default).unwrap_or_else(|e| {
                panic!("default {:?} of flag -{}: {e}", spec.default, spec.name)
            });
            if defaults.insert(spec.name, value).is_some() {
                panic!("flag redefined: {}", spec.name);
            }
        }
        FlagSet { specs, defaults }
    }

    /// The definition of `name`, if any.
    pub fn spec(&self, name: &str) -> Option<&FlagSpec> {
        self.specs
            .binary_search_by_key(&name, |s| s.name)
            .ok()
            .map(|i| &self.specs[i])
    }

    /// Parses `args` (without the program name).
    pub fn parse(&self, args: &[String]) -> Result<ParseResult, FlagError> {
        let mut parsed = ParsedFlags {
            values: self.defaults.clone(),
            defaults: self.defaults.clone(),
            set: Vec::new(),
            positional: Vec::new(),
        };
        let mut rest = args;
        while let Some((arg, tail)) = rest.split_first() {
            rest = tail;
            let Some(name_and_value) = flag_text(arg) else {
                // Not a flag: it and everything after it are positional.
                parsed.positional.push(arg.clone());
                break;
            };
            if name_and_value.is_empty() {
                break; // "--"
            }
            if name_and_value.starts_with(['-', '=']) {
                return Err(FlagError::BadSyntax(arg.clone()));
            }
            // Go looks for '=' from the second character, so a name is never empty here.
            let equals = name_and_value
                .char_indices()
                .skip(1)
                .find_map(|(i, c)| (c == '=').then_some(i));
            let (name, inline_value) = match equals {
                Some(i) => (&name_and_value[..i], Some(&name_and_value[i + 1..])),
                None => (name_and_value, None),
            };
            let Some(spec) = self.spec(name) else {
                if name == "h" || name == "help" {
                    return Ok(ParseResult::Help);
                }
                return Err(FlagError::NotDefined(name.to_string()));
            };
            let value = if spec.kind == FlagKind::Bool {
                let text = inline_value.unwrap_or("true");
                FlagValue::parse(spec.kind, text).map_err(|reason| FlagError::InvalidBool {
                    name: name.to_string(),
                    value: text.to_string(),
                    reason,
                })?
            } else {
                let text = match inline_value {
                    Some(v) => v,
                    None => {
                        let (next, tail) = rest
                            .split_first()
                            .ok_or_else(|| FlagError::NeedsArgument(name.to_string()))?;
                        rest = tail;
                        next.as_str()
                    }
                };
                FlagValue::parse(spec.kind, text).map_err(|reason| FlagError::InvalidValue {
                    name: name.to_string(),
                    value: text.to_string(),
                    reason,
                })?
            };
            parsed.values.insert(spec.name, value);
            if !parsed.set.contains(&spec.name) {
                parsed.set.push(spec.name);
            }
        }
        parsed.positional.extend(rest.iter().cloned());
        Ok(ParseResult::Parsed(parsed))
    }

    /// `header` followed by [`FlagSet::defaults_text`], as Go's default `Usage` prints it.
    pub fn usage(&self, header: &str) -> String {
        format!("{header}{}", self.defaults_text())
    }

    /// Go's `PrintDefaults`: one entry per flag, sorted by name, with its type, its help and
    /// its default unless that is the type's zero value. Each entry is `"  -name type"`, then a
    /// new line, four spaces and a tab before the help, e.g. for `-join-interval`:
    /// `"  -join-interval duration\n    \tPeriod between join attempts (default 3s)\n"`.
    pub fn defaults_text(&self) -> String {
        let mut out = String::new();
        for spec in &self.specs {
            let mut entry = format!("  -{}", spec.name);
            let type_name = spec.kind.type_name();
            if !type_name.is_empty() {
                entry.push(' ');
                entry.push_str(type_name);
            }
            // Go puts the help of one-letter bools on the same line.
            if entry.len() <= 4 {
                entry.push('\t');
            } else {
                entry.push_str("\n    \t");
            }
            entry.push_str(&spec.help.replace('\n', "\n    \t"));
            let default = &self.defaults[spec.name];
            if !default.is_zero() {
                match default {
                    FlagValue::String(s) => entry.push_str(&format!(" (default {s:?})")),
                    other => entry.push_str(&format!(" (default {})", other.to_go_string())),
                }
            }
            out.push_str(&entry);
            out.push('\n');
        }
        out
    }
}

/// Returns the text after the leading dashes if `arg` is a flag, `Some("")` for `--`, and
/// `None` for a positional argument (anything not starting with `-`, and a lone `-`).
fn flag_text(arg: &str) -> Option<&str> {
    if arg.len() < 2 || !arg.starts_with('-') {
        return None;
    }
    Some(arg.strip_prefix("--").unwrap_or(&arg[1..]))
}

/// The outcome of a parse: every flag's value (default or given) and the positionals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFlags {
    values: BTreeMap<&'static str, FlagValue>,
    defaults: BTreeMap<&'static str, FlagValue>,
    /// Flags given on the command line, in first-appearance order.
    set: Vec<&'static str>,
    positional: Vec<String>,
}

impl ParsedFlags {
    /// The value of `name`.
    ///
    /// # Panics
    /// If `name` is not in the table: a programming error, caught by any test that parses.
    pub fn get(&self, name: &str) -> &FlagValue {
        self.values
            .get(name)
            .unwrap_or_else(|| panic!("flag -{name} is not defined"))
    }

    /// The value of bool flag `name`. Panics if `name` is undefined or not a bool.
    pub fn bool(&self, name: &str) -> bool {
        match self.get(name) {
            FlagValue::Bool(v) => *v,
            other => wrong_kind(name, "bool", other),
        }
    }

    /// The value of string flag `name`. Panics if `name` is undefined or not a string.
    pub fn string(&self, name: &str) -> &str {
        match self.get(name) {
            FlagValue::String(v) => v,
            other => wrong_kind(name, "string", other),
        }
    }

    /// The value of string flag `name`, or `None` when it is empty (Go's "not set").
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        Some(self.string(name)).filter(|s| !s.is_empty())
    }

    /// The value of int flag `name`. Panics if `name` is undefined or not an int.
    pub fn i64(&self, name: &str) -> i64 {
        match self.get(name) {
            FlagValue::I64(v) => *v,
            other => wrong_kind(name, "int", other),
        }
    }

    /// The value of uint64 flag `name`. Panics if `name` is undefined or not a u64.
    pub fn u64(&self, name: &str) -> u64 {
        match self.get(name) {
            FlagValue::U64(v) => *v,
            other => wrong_kind(name, "u64", other),
        }
    }

    /// The value of uint flag `name`. Panics if `name` is undefined or not a usize.
    pub fn usize(&self, name: &str) -> usize {
        match self.get(name) {
            FlagValue::Usize(v) => *v,
            other => wrong_kind(name, "usize", other),
        }
    }

    /// The value of duration flag `name`. Panics if `name` is undefined or not a duration.
    pub fn duration(&self, name: &str) -> Duration {
        match self.get(name) {
            FlagValue::Duration(v) => *v,
            other => wrong_kind(name, "duration", other),
        }
    }

    /// Whether `name` appeared on the command line (even with its default value).
    pub fn is_set(&self, name: &str) -> bool {
        self.set.contains(&name)
    }

    /// Flags given on the command line, in first-appearance order.
    pub fn set_flags(&self) -> &[&'static str] {
        &self.set
    }

    /// Flags given on the command line whose final value differs from the default.
    pub fn changed_flags(&self) -> Vec<&'static str> {
        self.set
            .iter()
            .copied()
            .filter(|n| self.values[n] != self.defaults[n])
            .collect()
    }

    /// Arguments after the flags.
    pub fn positional(&self) -> &[String] {
        &self.positional
    }
}

fn wrong_kind(name: &str, wanted: &str, got: &FlagValue) -> ! {
    panic!("flag -{name} holds {got:?}, not a {wanted}")
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Result<bool, ValueError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(ValueError::Parse),
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, then [`parse_go_uint`]'s syntax.
fn parse_go_int(s: &str) -> Result<i64, ValueError> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_go_uint(digits, u64::MAX)?;
    let limit = 1u64 << 63;
    if negative {
        if magnitude > limit {
            return Err(ValueError::OutOfRange);
        }
        Ok(0i64.wrapping_sub_unsigned(magnitude))
    } else {
        i64::try_from(magnitude).map_err(|_| ValueError::OutOfRange)
    }
}

/// Go's `strconv.ParseUint(s, 0, bits)` with `max` = the largest value of `bits`: base from
/// the prefix (`0x`, `0o`, `0b`, a leading `0` for octal, else decimal) and `_` allowed
/// between digits. Like Go, overflow is reported as soon as it happens.
fn parse_go_uint(s: &str, max: u64) -> Result<u64, ValueError> {
    if s.is_empty() {
        return Err(ValueError::Parse);
    }
    let bytes = s.as_bytes();
    let (base, digits) = match bytes {
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'x') => (16, &bytes[2..]),
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'o') => (8, &bytes[2..]),
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'b') => (2, &bytes[2..]),
        [b'0', ..] => (8, &bytes[1..]),
        _ => (10, bytes),
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    for &c in digits {
        let d = match c {
            b'_' => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' | b'A'..=b'Z' => c.to_ascii_lowercase() - b'a' + 10,
            _ => return Err(ValueError::Parse),
        };
        if u64::from(d) >= base {
            return Err(ValueError::Parse);
        }
        n = n
            .checked_mul(base)
            .and_then(|n| n.checked_add(u64::from(d)))
            .filter(|n| *n <= max)
            .ok_or(ValueError::OutOfRange)?;
    }
    if underscores && !underscores_ok(s) {
        return Err(ValueError::Parse);
    }
    Ok(n)
}

/// Go's `strconv.underscoreOK`: `_` only between digits, or between a base prefix and a digit.
fn underscores_ok(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    // What came last: '^' start, '0' digit or base prefix, '_' underscore, '!' anything else.
    let mut saw = b'^';
    let mut hex = false;
    let mut i = 0;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    for &c in &s[i..] {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// Why a duration string was refused. Texts follow Go's `time.ParseDuration`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("time: unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
    /// Valid Go syntax, but a negative value where only non-negative ones make sense.
    #[error("time: negative duration {0:?} is not allowed")]
    Negative(String),
}

/// Parses a Go duration string (`500ms`, `1m30s`, `1.5h`, `0`) as a non-negative
/// [`Duration`]. Syntax, units (`ns us µs μs ms s m h`), rounding and overflow limits are
/// Go's `time.ParseDuration`; a negative result (`-1s`) is [`DurationError::Negative`].
/// `-0` is zero and accepted.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let nanos = parse_go_duration_nanos(s)?;
    let nanos = u64::try_from(nanos).map_err(|_| DurationError::Negative(s.to_string()))?;
    Ok(Duration::from_nanos(nanos))
}

/// Go's `time.ParseDuration`, exactly: the result in nanoseconds, negative values included,
/// limited to the range of an `i64`.
pub fn parse_go_duration_nanos(input: &str) -> Result<i64, DurationError> {
    const LIMIT: u64 = 1 << 63;
    let invalid = || DurationError::Invalid(input.to_string());
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix(['-', '+']) {
        negative = s.starts_with('-');
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let (whole, rest) = leading_int(s).ok_or_else(invalid)?;
        let has_whole = rest.len() != s.len();
        s = rest;
        let mut fraction = (0u64, 1f64);
        let mut has_fraction = false;
        if let Some(rest) = s.strip_prefix('.') {
            let (f, scale, rest2) = leading_fraction(rest);
            has_fraction = rest2.len() != rest.len();
            fraction = (f, scale);
            s = rest2;
        }
        if !has_whole && !has_fraction {
            return Err(invalid()); // ".s", "-.": no digits
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let (unit_text, rest) = s.split_at(unit_len);
        s = rest;
        let unit = unit_nanos(unit_text).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit_text.to_string(),
            input: input.to_string(),
        })?;
        if whole > LIMIT / unit {
            return Err(invalid());
        }
        let mut v = whole * unit;
        let (f, scale) = fraction;
        if f > 0 {
            // Go computes this in float64 to stay nanosecond-accurate for fractions of hours.
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total = total
            .checked_add(v)
            .filter(|t| *t <= LIMIT)
            .ok_or_else(invalid)?;
    }
    if negative {
        // `total` may be exactly 2^63, which is i64::MIN once negated.
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| invalid())
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000, // U+00B5 micro sign and U+03BC Greek mu
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return None,
    })
}

/// Go's `leadingInt`: consumes `[0-9]*`; `None` on overflow past 2^63.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut x: u64 = 0;
    for c in s[..end].bytes() {
        if x > (1 << 63) / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > 1 << 63 {
            return None;
        }
    }
    Some((x, &s[end..]))
}

/// Go's `leadingFraction`: consumes `[0-9]*`, returning the digits as an integer and the power
/// of ten to divide it by. Digits past 63 bits of precision are consumed but ignored.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (mut x, mut scale, mut overflow) = (0u64, 1f64, false);
    for c in s[..end].bytes() {
        if overflow {
            continue;
        }
        if x > (i64::MAX as u64) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > 1 << 63 {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[end..])
}

/// Go's `Duration.String()`: `0s`, `1.5ms`, `100µs`, `2m0s`, `24h0m0s`, `1h2m3.004s`.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, digits) = match nanos {
            n if n < 1_000 => ("ns", 0),
            n if n < 1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        return format!("{}{unit}", fixed_point(nanos, digits));
    }
    let seconds = fixed_point(nanos % 60_000_000_000, 9);
    let minutes_total = nanos / 60_000_000_000;
    match (minutes_total / 60, minutes_total % 60) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// `value / 10^digits` in decimal, without trailing zeros in the fraction (Go's `fmtFrac`).
fn fixed_point(value: u128, digits: u32) -> String {
    let scale = 10u128.pow(digits);
    let (whole, frac) = (value / scale, value % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0width$}", width = digits as usize);
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: i64 = 1;
    const US: i64 = 1_000;
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;

    fn table() -> FlagSet {
        let spec = |name, kind, default| FlagSpec {
            name,
            kind,
            default,
            help: "help text",
        };
        FlagSet::new([
            spec("node-id", FlagKind::String, ""),
            spec("http-addr", FlagKind::String, "localhost:4001"),
            spec("fk", FlagKind::Bool, "false"),
            spec("stepdown", FlagKind::Bool, "true"),
            spec("raft-snap", FlagKind::U64, "8192"),
            spec("attempts", FlagKind::I64, "5"),
            spec("copies", FlagKind::Usize, "16"),
            spec("interval", FlagKind::Duration, "3s"),
            spec("x", FlagKind::Bool, "false"),
        ])
    }

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    fn parse(line: &str) -> ParsedFlags {
        match table().parse(&args(line)) {
            Ok(ParseResult::Parsed(p)) => p,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    fn parse_err(line: &str) -> String {
        match table().parse(&args(line)) {
            Err(e) => e.to_string(),
            other => panic!("{line:?} should fail, got {other:?}"),
        }
    }

    #[test]
    fn defaults_when_no_flags() {
        let p = parse("");
        assert_eq!(p.string("node-id"), "");
        assert_eq!(p.non_empty("node-id"), None);
        assert_eq!(p.string("http-addr"), "localhost:4001");
        assert!(!p.bool("fk"));
        assert!(p.bool("stepdown"));
        assert_eq!(p.u64("raft-snap"), 8192);
        assert_eq!(p.i64("attempts"), 5);
        assert_eq!(p.usize("copies"), 16);
        assert_eq!(p.duration("interval"), Duration::from_secs(3));
        assert!(p.set_flags().is_empty());
        assert!(p.positional().is_empty());
    }

    #[test]
    fn all_four_value_forms_are_equivalent() {
        for line in ["-node-id 7", "-node-id=7", "--node-id 7", "--node-id=7"] {
            let p = parse(line);
            assert_eq!(p.string("node-id"), "7", "{line}");
            assert!(p.is_set("node-id"), "{line}");
        }
    }

    #[test]
    fn value_may_contain_equals_and_start_with_dash() {
        assert_eq!(parse("-node-id=a=b").string("node-id"), "a=b");
        assert_eq!(parse("-node-id= /d").string("node-id"), "");
        assert_eq!(parse("-node-id -fk").string("node-id"), "-fk");
        assert_eq!(parse("-attempts -3").i64("attempts"), -3);
    }

    #[test]
    fn bool_alone_is_true_and_never_takes_next_argument() {
        let p = parse("-fk false");
        assert!(p.bool("fk"));
        assert_eq!(p.positional(), ["false"]);
        assert!(!parse("--stepdown=false").bool("stepdown"));
    }

    #[test]
    fn bool_accepts_go_spellings() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert!(parse(&format!("-fk={t}")).bool("fk"), "{t}");
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert!(!parse(&format!("-stepdown={f}")).bool("stepdown"), "{f}");
        }
        for bad in ["maybe", "yes", "tRUE", "2", ""] {
            assert_eq!(
                parse_err(&format!("-fk={bad}")),
                format!("invalid boolean value {bad:?} for -fk: parse error")
            );
        }
    }

    #[test]
    fn double_dash_ends_flags_and_is_dropped() {
        let p = parse("-fk -- -node-id x");
        assert!(p.bool("fk"));
        assert_eq!(p.string("node-id"), "");
        assert_eq!(p.positional(), ["-node-id", "x"]);
    }

    #[test]
    fn first_positional_ends_flags() {
        let p = parse("-fk /data -node-id x");
        assert_eq!(p.positional(), ["/data", "-node-id", "x"]);
        assert_eq!(p.string("node-id"), "");
        // A lone "-" is positional too.
        assert_eq!(parse("- -fk").positional(), ["-", "-fk"]);
    }

    #[test]
    fn last_value_wins_and_set_flags_are_recorded_once() {
        let p = parse("-node-id a -fk -node-id b");
        assert_eq!(p.string("node-id"), "b");
        assert_eq!(p.set_flags(), ["node-id", "fk"]);
    }

    #[test]
    fn changed_flags_ignores_values_equal_to_default() {
        let p = parse("-fk=false -stepdown=false -raft-snap 8192 -attempts 0x5 -interval 2s");
        assert_eq!(p.changed_flags(), ["stepdown", "interval"]);
    }

    #[test]
    fn non_ascii_flag_names_are_reported_not_panicked_on() {
        assert_eq!(parse_err("-µ=1"), "flag provided but not defined: -µ");
        assert_eq!(parse_err("--µs"), "flag provided but not defined: -µs");
        assert_eq!(
            parse_err("-node-id=µ -fk=µ"),
            r#"invalid boolean value "µ" for -fk: parse error"#
        );
    }

    #[test]
    fn help_flags() {
        for line in ["-h", "-help", "--help", "--h", "-fk -help /data", "-help=1"] {
            assert_eq!(table().parse(&args(line)), Ok(ParseResult::Help), "{line}");
        }
        // After the flags end, -h is just a positional.
        assert_eq!(parse("/data -h").positional(), ["/data", "-h"]);
    }

    #[test]
    fn go_error_messages() {
        assert_eq!(parse_err("-y"), "flag provided but not defined: -y");
        assert_eq!(
            parse_err("--nope=1"),
            "flag provided but not defined: -nope"
        );
        assert_eq!(parse_err("-node-id"), "flag needs an argument: -node-id");
        assert_eq!(
            parse_err("-fk -interval"),
            "flag needs an argument: -interval"
        );
        assert_eq!(
            parse_err("-raft-snap abc"),
            r#"invalid value "abc" for flag -raft-snap: parse error"#
        );
        assert_eq!(
            parse_err("-raft-snap=18446744073709551616"),
            r#"invalid value "18446744073709551616" for flag -raft-snap: value out of range"#
        );
        assert_eq!(
            parse_err("-interval 5"),
            r#"invalid value "5" for flag -interval: parse error"#
        );
        assert_eq!(
            parse_err("-interval=-1s"),
            r#"invalid value "-1s" for flag -interval: negative durations are not accepted"#
        );
        assert_eq!(parse_err("---fk"), "bad flag syntax: ---fk");
        assert_eq!(parse_err("-=x"), "bad flag syntax: -=x");
        assert_eq!(parse_err("--=x"), "bad flag syntax: --=x");
    }

    #[test]
    fn integers_follow_go_base_prefixes_and_underscores() {
        let ok: &[(&str, i64)] = &[
            ("0", 0),
            ("42", 42),
            ("+42", 42),
            ("-42", -42),
            ("0x1F", 31),
            ("0X1f", 31),
            ("0o17", 15),
            ("017", 15),
            ("0b101", 5),
            ("1_000", 1000),
            ("0x_1F", 31),
            ("-9223372036854775808", i64::MIN),
            ("9223372036854775807", i64::MAX),
        ];
        for (text, want) in ok {
            assert_eq!(parse_go_int(text), Ok(*want), "{text}");
        }
        let bad: &[(&str, ValueError)] = &[
            ("", ValueError::Parse),
            ("-", ValueError::Parse),
            ("0x", ValueError::Parse),
            ("08", ValueError::Parse),
            ("1__0", ValueError::Parse),
            ("_1", ValueError::Parse),
            ("1_", ValueError::Parse),
            ("+-1", ValueError::Parse),
            ("1.5", ValueError::Parse),
            (" 1", ValueError::Parse),
            ("9223372036854775808", ValueError::OutOfRange),
            ("-9223372036854775809", ValueError::OutOfRange),
        ];
        for (text, want) in bad {
            assert_eq!(parse_go_int(text), Err(*want), "{text}");
        }
        assert_eq!(
            parse_go_uint("18446744073709551615", u64::MAX),
            Ok(u64::MAX)
        );
        assert_eq!(parse_go_uint("-1", u64::MAX), Err(ValueError::Parse));
        assert_eq!(parse_go_uint("+1", u64::MAX), Err(ValueError::Parse));
        assert_eq!(parse_go_uint("256", 255), Err(ValueError::OutOfRange));
        assert_eq!(parse("-copies 0b11").usize("copies"), 3);
    }

    /// Go's `parseDurationTests` (time/time_test.go), valid cases.
    #[test]
    fn duration_go_table_valid() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            ("-5s", -5 * S),
            ("+5s", 5 * S),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600 * MS),
            ("5.s", 5 * S),
            (".5s", 500 * MS),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4 * MS),
            ("1.0040s", S + 4 * MS),
            ("100.00100s", 100 * S + MS),
            ("10ns", 10 * NS),
            ("11us", 11 * US),
            ("12µs", 12 * US),
            ("12μs", 12 * US),
            ("13ms", 13 * MS),
            ("14s", 14 * S),
            ("15m", 15 * M),
            ("16h", 16 * H),
            ("3h30m", 3 * H + 30 * M),
            ("10.5s4m", 4 * M + 10 * S + 500 * MS),
            ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
            (
                "1h2m3s4ms5us6ns",
                H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS,
            ),
            ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
            ("52763797000ns", 52763797000 * NS),
            ("0.3333333333333333333h", 20 * M),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * M),
            ("0.830103483285477580700h", 49 * M + 48 * S + 372539827 * NS),
        ];
        for (text, want) in cases {
            assert_eq!(parse_go_duration_nanos(text), Ok(*want), "{text}");
        }
    }

    /// Go's `parseDurationErrorTests`, plus the unit and overflow cases.
    #[test]
    fn duration_go_table_errors() {
        for text in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "1.5",
            "3000000h",
            "9223372036854775808ns",
            "9223372036854775.808us",
            "9223372036s854ms775us808ns",
            "-9223372036854775809ns",
            "1 s",
            " 1s",
            "1S",
        ] {
            assert!(
                parse_go_duration_nanos(text).is_err(),
                "{text:?} should fail"
            );
        }
    }

    #[test]
    fn duration_error_messages_are_go_s() {
        let msg = |s| parse_go_duration_nanos(s).unwrap_err().to_string();
        assert_eq!(msg(""), r#"time: invalid duration """#);
        assert_eq!(msg("3"), r#"time: missing unit in duration "3""#);
        assert_eq!(msg(".s"), r#"time: invalid duration ".s""#);
        assert_eq!(msg("1d"), r#"time: unknown unit "d" in duration "1d""#);
        assert_eq!(msg("3000000h"), r#"time: invalid duration "3000000h""#);
    }

    #[test]
    fn unsigned_duration_refuses_negative_values_only() {
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("-0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("0h"), Ok(Duration::ZERO));
        assert_eq!(
            parse_go_duration("-1s"),
            Err(DurationError::Negative("-1s".into()))
        );
        assert_eq!(
            parse_go_duration("1d"),
            Err(DurationError::UnknownUnit {
                unit: "d".into(),
                input: "1d".into()
            })
        );
    }

    #[test]
    fn duration_formats_like_go() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (50_000_000, "50ms"),
            (3_300_000_000, "3.3s"),
            (120_000_000_000, "2m0s"),
            (4 * 60_000_000_000 + 5_000_000_000, "4m5s"),
            (24 * 3_600_000_000_000, "24h0m0s"),
            (
                3_600_000_000_000 + 2 * 60_000_000_000 + 3_004_000_000,
                "1h2m3.004s",
            ),
            (i64::MAX as u64, "2562047h47m16.854775807s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(format_go_duration(Duration::from_nanos(*nanos)), *want);
        }
    }

    #[test]
    fn defaults_text_is_go_style() {
        let text = table().defaults_text();
        let want = "  -attempts int\n    \thelp text (default 5)\n\
                    \x20 -copies uint\n    \thelp text (default 16)\n\
                    \x20 -fk\n    \thelp text\n\
                    \x20 -http-addr string\n    \thelp text (default \"localhost:4001\")\n\
                    \x20 -interval duration\n    \thelp text (default 3s)\n\
                    \x20 -node-id string\n    \thelp text\n\
                    \x20 -raft-snap uint\n    \thelp text (default 8192)\n\
                    \x20 -stepdown\n    \thelp text (default true)\n\
                    \x20 -x\thelp text\n";
        assert_eq!(text, want);
        assert!(table()
            .usage("Usage: t\n")
            .starts_with("Usage: t\n  -attempts"));
    }

    #[test]
    #[should_panic(expected = "flag redefined: a")]
    fn duplicate_names_panic() {
        let spec = FlagSpec {
            name: "a",
            kind: FlagKind::Bool,
            default: "false",
            help: "",
        };
        FlagSet::new([spec, spec]);
    }

    #[test]
    #[should_panic(expected = "default \"soon\" of flag -a")]
    fn unparsable_default_panics() {
        FlagSet::new([FlagSpec {
            name: "a",
            kind: FlagKind::Duration,
            default: "soon",
            help: "",
        }]);
    }
}
