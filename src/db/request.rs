//! What clients ask the database to run: statements with their parameters, and the results.
//!
//! These types are the contract between the HTTP layer (which parses rqlite's JSON into them),
//! the store (which replicates requests through Raft) and the executor (which runs them). They
//! are plain data, serializable, with no SQLite handles inside. Those a write entry carries
//! are encoded into the Raft log (docs/log-format.md, "Payload"): their variant and field
//! order is an on-disk format, pinned by `tests/log_payload.rs`.

use serde::{Deserialize, Serialize};

/// The most memory a parsed request may take (see `http::body::parse_budget`). A write is
/// replicated as one Raft entry, whose encoding is never larger than the parsed request, so
/// this also bounds every write entry (`store::types::MAX_ENTRY_BYTES`).
pub const MAX_REQUEST_BYTES: usize = 128 << 20;

/// One bound parameter value, as a client sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ParamValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    /// JSON `true`/`false`; SQLite sees 1 or 0.
    Bool(bool),
}

/// The parameters of one statement: none, by position (`?`, `?NNN`), or by name (`:n`, `@n`, `$n`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum Params {
    #[default]
    None,
    Positional(Vec<ParamValue>),
    /// Names as the client wrote them, without the `:`/`@`/`$` prefix.
    Named(Vec<(String, ParamValue)>),
}

/// One element of a request: SQL text (which may hold several statements) and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlStatement {
    pub sql: String,
    #[serde(default)]
    pub params: Params,
}

impl SqlStatement {
    pub fn new(sql: impl Into<String>) -> SqlStatement {
        SqlStatement {
            sql: sql.into(),
            params: Params::None,
        }
    }
}

/// A request: statements run in order, optionally as one all-or-nothing transaction.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Request {
    pub statements: Vec<SqlStatement>,
    /// rqlite's `transaction` flag: stop at the first error and undo the whole request.
    #[serde(default)]
    pub transaction: bool,
}

/// Which statements return rows when they run on the write path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowsPolicy {
    /// `/db/execute`: only writes that produce rows (`RETURNING`) return them; a plain SELECT
    /// sent to execute reports an execute-shaped result, as rqlite does.
    ReturningOnly,
    /// `/db/request` and strong reads: every statement that produces columns returns rows.
    AllQueries,
}

/// Options that change how results are collected (not how the SQL runs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultOptions {
    /// Column names as `table.column` (rqlite's `qualify_columns`).
    pub qualify_columns: bool,
}

/// The rows a statement produced.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rows {
    pub columns: Vec<String>,
    /// Declared column types as written in the schema (None for expressions).
    pub decltypes: Vec<Option<String>>,
    pub values: Vec<Vec<raftlite_ffi::Value>>,
}

impl Rows {
    /// rqlite's `types`: the lower-cased declared type, or for an expression the storage class
    /// of the first row's value (`""` when that is NULL or there are no rows).
    pub fn types(&self) -> Vec<String> {
        use raftlite_ffi::Value;
        (0..self.columns.len())
            .map(|i| match &self.decltypes[i] {
                Some(t) => t.to_ascii_lowercase(),
                None => match self.values.first().map(|row| &row[i]) {
                    Some(Value::Integer(_)) => "integer".into(),
                    Some(Value::Real(_)) => "real".into(),
                    Some(Value::Text(_)) => "text".into(),
                    Some(Value::Blob(_)) => "blob".into(),
                    Some(Value::Null) | None => String::new(),
                },
            })
            .collect()
    }
}

/// The outcome of one request element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StatementOutcome {
    /// A write: the rowid it inserted (0 if none) and the rows it changed.
    Executed {
        last_insert_id: i64,
        rows_affected: i64,
    },
    /// A query, or a write with `RETURNING`.
    Rows(Rows),
    /// A deterministic SQL error (syntax, constraint, no such table...).
    Error(String),
}

/// One result with the time it took, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementResult {
    pub outcome: StatementOutcome,
    pub time: f64,
}

impl StatementResult {
    pub fn error(message: impl Into<String>) -> StatementResult {
        StatementResult {
            outcome: StatementOutcome::Error(message.into()),
            time: 0.0,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self.outcome, StatementOutcome::Error(_))
    }
}

/// rqlite's read consistency levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadLevel {
    None,
    #[default]
    Weak,
    Linearizable,
    Strong,
    Auto,
}

impl ReadLevel {
    /// Parses `level=`, case-insensitively; unknown or absent means `weak`, as in rqlite.
    pub fn parse(s: Option<&str>) -> ReadLevel {
        match s.map(str::to_ascii_lowercase).as_deref() {
            Some("none") => ReadLevel::None,
            Some("linearizable") => ReadLevel::Linearizable,
            Some("strong") => ReadLevel::Strong,
            Some("auto") => ReadLevel::Auto,
            _ => ReadLevel::Weak,
        }
    }
}

/// One write request as an entry carries it: the request, how its results are shaped, and
/// the inputs its apply sees (a `Command::Execute`'s fields, and an item of a
/// `Command::ExecuteBatch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteItem {
    pub request: Request,
    pub policy: RowsPolicy,
    pub opts: ResultOptions,
    pub env: ApplyEnv,
}

/// The budget of a write request when the leader is given none (`-write-budget-steps`), in
/// the gate's progress steps (see `db::gate`): about one per loop iteration of a running
/// statement. This machine (docs/architecture.md, "Budgets") runs 13 to 55 million a second,
/// so this is 10 to 40 seconds of work.
pub const DEFAULT_WRITE_BUDGET_STEPS: u64 = 500_000_000;

/// How many steps a second of `db_timeout` buys a write: a fixed rate, so the budget is the
/// same on every node whatever its speed (the middle of this machine's range).
pub const WRITE_STEPS_PER_SECOND: u64 = 25_000_000;

/// A write's budget: `default` (the node's `-write-budget-steps`), lowered to what `db_timeout`
/// buys at [`WRITE_STEPS_PER_SECOND`] when the client gave one (at least one step).
pub fn write_budget(default: u64, db_timeout: Option<std::time::Duration>) -> u64 {
    match db_timeout {
        Some(t) => {
            let steps = t.as_secs_f64() * WRITE_STEPS_PER_SECOND as f64;
            (steps as u64).clamp(1, default.max(1))
        }
        None => default,
    }
}

/// What a write entry fixes for its apply on every node: the leader's clock, a seed for
/// `random()`/`randomblob()` (see `raftlite_ffi::ApplyInputs` and docs/architecture.md,
/// "Deterministic apply"), and the budget of work each request may do (`db::gate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyEnv {
    /// Milliseconds since the Unix epoch on the leader when it proposed the entry.
    pub unix_millis: i64,
    pub seed: u64,
    /// Progress steps each request of the entry may take (for a SQL load: each statement).
    pub budget: u64,
}

impl Default for ApplyEnv {
    fn default() -> Self {
        ApplyEnv {
            unix_millis: 0,
            seed: 0,
            budget: DEFAULT_WRITE_BUDGET_STEPS,
        }
    }
}

impl ApplyEnv {
    /// Stamps a new entry on the leader: its clock, never earlier than `not_before` (the last
    /// time applied, so `'now'` does not go backwards when leadership moves to a node whose
    /// clock is behind), a fresh seed from SQLite's CSPRNG, and the default budget (see
    /// [`ApplyEnv::with_budget`]).
    pub fn stamp(not_before: i64) -> ApplyEnv {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut seed = [0u8; 8];
        raftlite_ffi::randomness(&mut seed);
        ApplyEnv {
            unix_millis: now.max(not_before),
            seed: u64::from_le_bytes(seed),
            budget: DEFAULT_WRITE_BUDGET_STEPS,
        }
    }

    /// The same inputs with another budget.
    pub fn with_budget(self, budget: u64) -> ApplyEnv {
        ApplyEnv { budget, ..self }
    }

    /// The inputs for an entry that carries none (a command that runs SQL without a stamp):
    /// derived from its log position alone, so still the same on every node, with the clock
    /// at the Unix epoch and the default budget. A command that runs users' SQL should carry
    /// a stamp instead.
    pub fn derived(term: u64, index: u64) -> ApplyEnv {
        ApplyEnv {
            unix_millis: 0,
            seed: term.rotate_left(32) ^ index ^ 0x5851_f42d_4c95_7f2d,
            budget: DEFAULT_WRITE_BUDGET_STEPS,
        }
    }

    pub fn inputs(self) -> raftlite_ffi::ApplyInputs {
        raftlite_ffi::ApplyInputs {
            unix_millis: self.unix_millis,
            seed: self.seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn db_timeout_lowers_the_budget_and_never_raises_it() {
        assert_eq!(write_budget(1_000, None), 1_000);
        assert_eq!(
            write_budget(u64::MAX, Some(Duration::from_secs(2))),
            50_000_000
        );
        assert_eq!(write_budget(1_000, Some(Duration::from_secs(2))), 1_000);
        assert_eq!(write_budget(1_000, Some(Duration::ZERO)), 1);
        assert_eq!(write_budget(0, None), 0);
    }
}
