//! Running requests on a SQLite connection: the write path (inside the caller's transaction)
//! and the read path (inside one read transaction).
//!
//! Write path. The caller (the state machine, or a test) holds a write transaction open. Each
//! request runs inside a `SAVEPOINT` of its own so that rqlite's `transaction` flag can undo
//! exactly that request. SQLite already makes every statement atomic (a failing statement is
//! undone by its statement journal, as in autocommit mode), which gives rqlite's
//! continue-on-error behaviour without a savepoint per statement.
//!
//! Users' own transaction control (`BEGIN`, `COMMIT`, `END`, `ROLLBACK`) cannot run inside our
//! transaction, so it is mapped onto a savepoint with SQLite's error messages: a dump's outer
//! `BEGIN TRANSACTION; ... COMMIT;` and rqlite clients' `["BEGIN", ..., "COMMIT"]` requests
//! behave as they do on a plain connection. A transaction still open when the request ends is
//! rolled back: a request never leaves the connection inside a user transaction (rqlite does,
//! and every later write then fails).
//!
//! Errors are sorted by [`crate::db::error::is_local_fault`]: a deterministic SQL error
//! becomes the statement's result, and a local fault (I/O, disk full, corruption) is returned
//! as `Err` so the caller can stop the node instead of letting replicas diverge.

use std::time::Instant;

use raftlite_ffi::{CachedStatement, Connection, Statement, Step};

use super::error::{classify, SqlFailure};
use super::literal_insert;
use super::request::{
    ParamValue, Params, Request, ResultOptions, Rows, RowsPolicy, SqlStatement, StatementOutcome,
    StatementResult,
};

const REQUEST_SAVEPOINT: &str = "SAVEPOINT \"raftlite request\"";
const REQUEST_RELEASE: &str = "RELEASE \"raftlite request\"";
const REQUEST_ROLLBACK: &str = "ROLLBACK TO \"raftlite request\"";
const USER_TXN_SAVEPOINT: &str = "SAVEPOINT \"raftlite user transaction\"";
const USER_TXN_RELEASE: &str = "RELEASE \"raftlite user transaction\"";
const USER_TXN_ROLLBACK: &str = "ROLLBACK TO \"raftlite user transaction\"";

/// A local fault: the node must stop rather than apply this entry differently from its peers.
pub type LocalFault = raftlite_ffi::Error;

/// The results of a request, and a request-level error when the request as a whole failed.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RequestResults {
    pub results: Vec<StatementResult>,
    pub error: Option<String>,
    /// A ROLLBACK conflict clause ended the caller's transaction during this request, undoing
    /// everything the transaction held before it too; a new one is open. A caller that ran
    /// other requests in that transaction must redo them (see `store::state_machine`).
    #[serde(skip)]
    pub ended_callers_transaction: bool,
}

/// Runs a write request inside the caller's open transaction.
pub fn execute_request(
    conn: &Connection,
    req: &Request,
    policy: RowsPolicy,
    opts: ResultOptions,
) -> Result<RequestResults, LocalFault> {
    conn.execute_batch(REQUEST_SAVEPOINT)?;
    let mut state = WriteState {
        user_txn_open: false,
    };
    let mut out = RequestResults::default();
    for stmt in &req.statements {
        let started = Instant::now();
        let outcome = run_text(conn, stmt, Some(&mut state), policy, opts, UseCache::Yes);
        let outcome = match outcome {
            Ok(o) => o,
            Err(SqlFailure::Local(e)) => return Err(e),
            Err(SqlFailure::Sql(msg)) => StatementOutcome::Error(msg),
        };
        let failed = matches!(outcome, StatementOutcome::Error(_));
        out.results.push(StatementResult {
            outcome,
            time: started.elapsed().as_secs_f64(),
        });
        if conn.is_autocommit()? {
            // A conflict clause of ROLLBACK (or RAISE(ROLLBACK)) ended the caller's whole
            // transaction. Every node does the same here, so start a new one and stop.
            conn.execute_batch("BEGIN IMMEDIATE")?;
            out.error = Some("transaction rolled back by a ROLLBACK conflict clause".into());
            out.ended_callers_transaction = true;
            return Ok(out);
        }
        if failed && req.transaction {
            conn.execute_batch(REQUEST_ROLLBACK)?;
            conn.execute_batch(REQUEST_RELEASE)?;
            return Ok(out);
        }
    }
    if state.user_txn_open {
        conn.execute_batch(USER_TXN_ROLLBACK)?;
        conn.execute_batch(USER_TXN_RELEASE)?;
        out.error = Some("transaction left open at the end of the request was rolled back".into());
    }
    conn.execute_batch(REQUEST_RELEASE)?;
    Ok(out)
}

/// Opens the read transaction and brings the connection's cached schema up to date with it.
///
/// A pooled reader keeps the schema it loaded earlier. Ordinary statements check it against
/// the file's schema cookie when they start reading (and are re-prepared if it changed), but
/// schema PRAGMAs (`foreign_key_list`, `index_list`, `index_info`, ...) consult the cache
/// without that check, so after another connection's `CREATE TABLE` they answered with no
/// rows. Reading `sqlite_schema` first starts the snapshot with a cookie check, which reloads
/// a stale schema; the PRAGMAs then see the tables of this snapshot. (SQLAlchemy's reflection
/// through sqlalchemy-rqlite found this; see tests/compat.rs.)
const BEGIN_READ_WITH_CURRENT_SCHEMA: &str = "BEGIN; SELECT 1 FROM sqlite_schema LIMIT 0";

/// Runs a read-only request in one read transaction, so every statement sees one snapshot.
pub fn query_request(
    conn: &Connection,
    req: &Request,
    opts: ResultOptions,
) -> Result<RequestResults, LocalFault> {
    conn.execute_batch(BEGIN_READ_WITH_CURRENT_SCHEMA)?;
    let mut out = RequestResults::default();
    for stmt in &req.statements {
        let started = Instant::now();
        let outcome = match run_text(
            conn,
            stmt,
            None,
            RowsPolicy::AllQueries,
            opts,
            UseCache::Yes,
        ) {
            Ok(o) => o,
            Err(SqlFailure::Local(e)) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
            Err(SqlFailure::Sql(msg)) => StatementOutcome::Error(msg),
        };
        out.results.push(StatementResult {
            outcome,
            time: started.elapsed().as_secs_f64(),
        });
    }
    // A read transaction has nothing to commit; ROLLBACK also ends it if a statement failed.
    if !conn.is_autocommit()? {
        conn.execute_batch("ROLLBACK")?;
    }
    Ok(out)
}

/// How a SQL script (a `/db/load` of SQL text) ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptOutcome {
    /// Every statement ran. `last` is the result rqlite reports for a script: that of the last
    /// statement that changed rows (or of the last statement, if none did).
    Done {
        last: StatementOutcome,
        statements: u64,
    },
    /// A statement failed (a deterministic SQL error): the caller rolls the script back.
    Failed(String),
}

impl ScriptOutcome {
    /// What a load of the script answers, as rqlite does: one result, the script's or its error.
    pub fn into_result(self) -> StatementResult {
        match self {
            ScriptOutcome::Done { last, .. } => StatementResult {
                outcome: last,
                time: 0.0,
            },
            ScriptOutcome::Failed(msg) => StatementResult::error(msg),
        }
    }
}

/// Runs a script, statement by statement as `statements` yields them, inside the caller's open
/// transaction. A dump's own `BEGIN TRANSACTION; ... COMMIT;` maps onto a savepoint as in
/// [`execute_request`]. The first SQL error stops the script; the caller undoes everything. A
/// read error of the script (its staged file) is a local fault.
pub fn execute_script(
    conn: &Connection,
    statements: impl Iterator<Item = std::io::Result<String>>,
) -> Result<ScriptOutcome, LocalFault> {
    let mut state = WriteState {
        user_txn_open: false,
    };
    let mut last = StatementOutcome::Executed {
        last_insert_id: 0,
        rows_affected: 0,
    };
    let mut count = 0u64;
    let mut template = String::new();
    for sql in statements {
        let sql = sql.map_err(|e| {
            raftlite_ffi::Error::new(
                raftlite_ffi::sys::SQLITE_IOERR,
                format!("read the staged SQL: {e}"),
            )
        })?;
        count += 1;
        let ran = match run_literal_insert(conn, &sql, &mut template) {
            Some(ran) => ran,
            None => run_text(
                conn,
                &SqlStatement::new(sql),
                Some(&mut state),
                RowsPolicy::ReturningOnly,
                ResultOptions::default(),
                UseCache::No,
            ),
        };
        match ran {
            Ok(StatementOutcome::Error(msg)) | Err(SqlFailure::Sql(msg)) => {
                return Ok(ScriptOutcome::Failed(msg))
            }
            Err(SqlFailure::Local(e)) => return Err(e),
            Ok(outcome) => {
                let changed = matches!(
                    outcome,
                    StatementOutcome::Executed { rows_affected, .. } if rows_affected > 0
                ) || matches!(outcome, StatementOutcome::Rows(_));
                let last_changed = matches!(
                    last,
                    StatementOutcome::Executed { rows_affected, .. } if rows_affected > 0
                );
                if changed || !last_changed {
                    last = outcome;
                }
            }
        }
        if conn.is_autocommit()? {
            // A ROLLBACK conflict clause ended the caller's transaction.
            conn.execute_batch("BEGIN IMMEDIATE")?;
            return Ok(ScriptOutcome::Failed(
                "transaction rolled back by a ROLLBACK conflict clause".into(),
            ));
        }
    }
    if state.user_txn_open {
        return Ok(ScriptOutcome::Failed(
            "the script leaves a transaction open (BEGIN without COMMIT)".into(),
        ));
    }
    Ok(ScriptOutcome::Done {
        last,
        statements: count,
    })
}

/// Runs `sql` through [`literal_insert`] when it is a literal single-row INSERT: its template
/// comes from the statement cache, its values are bound. `None` when the text is not of that
/// shape or its template does not prepare (no such table, a wrong number of values): the text
/// then runs as it is, and SQLite reports its own error for it.
fn run_literal_insert(
    conn: &Connection,
    sql: &str,
    template: &mut String,
) -> Option<Result<StatementOutcome, SqlFailure>> {
    let insert = literal_insert::parse(sql)?;
    insert.template_into(template);
    let mut stmt = conn.prepare_cached(template).ok()?;
    insert.bind(&mut stmt).ok()?;
    Some(run_prepared(
        conn,
        &mut stmt,
        RowsPolicy::ReturningOnly,
        ResultOptions::default(),
    ))
}

/// True when every statement in the request only reads (rqlite's `/db/request` rule). Text that
/// fails to prepare counts as a write: the write path then reports the error.
pub fn is_read_only(conn: &Connection, req: &Request) -> bool {
    req.statements.iter().all(|s| {
        let mut rest = s.sql.as_str();
        loop {
            match conn.prepare_first(rest) {
                Ok((Some(stmt), used)) => {
                    if !stmt.readonly() || txn_control(&stmt.sql()).is_some() {
                        return false;
                    }
                    if used == 0 || used >= rest.len() {
                        return true;
                    }
                    rest = &rest[used..];
                }
                Ok((None, _)) => return true,
                Err(_) => return false,
            }
        }
    })
}

struct WriteState {
    user_txn_open: bool,
}

/// Whether [`run_text`] goes through the connection's statement cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UseCache {
    /// Requests: clients repeat their (parameterised) texts.
    Yes,
    /// SQL loads: a dump's statements are all different (their values are literals), so
    /// caching them would only churn the cache.
    No,
}

/// Runs every statement in one request element; the last statement's outcome is the result.
///
/// A text that is one statement goes through the connection's statement cache (when
/// `cache` says so and the connection has one: the writer does, pooled readers do not), so
/// a text repeated across statements and requests is parsed once. A cached statement is
/// handed back reset with its bindings cleared, and is as current as a fresh prepare (see
/// `raftlite_ffi`'s statement cache), so results do not depend on whether it was cached.
/// The statements of a longer text are prepared one by one, as `positional_used` numbers
/// their parameters across the whole text.
fn run_text(
    conn: &Connection,
    stmt: &SqlStatement,
    mut write: Option<&mut WriteState>,
    policy: RowsPolicy,
    opts: ResultOptions,
    cache: UseCache,
) -> Result<StatementOutcome, SqlFailure> {
    let mut rest = stmt.sql.as_str();
    let mut positional_used = 0usize;
    let mut last = StatementOutcome::Executed {
        last_insert_id: 0,
        rows_affected: 0,
    };
    let mut first = cache == UseCache::Yes;
    loop {
        let (prepared, used) = if std::mem::take(&mut first) {
            conn.prepare_first_cached(rest).map_err(classify)?
        } else {
            let (prepared, used) = conn.prepare_first(rest).map_err(classify)?;
            (prepared.map(CachedStatement::from), used)
        };
        if let Some(mut prepared) = prepared {
            let control = if write.is_some() {
                txn_control(&prepared.sql_text())
            } else {
                None
            };
            last = match (control, write.as_deref_mut()) {
                (Some(c), Some(state)) => run_txn_control(conn, c, state)?,
                _ => {
                    bind_params(&mut prepared, &stmt.params, &mut positional_used)?;
                    run_prepared(conn, &mut prepared, policy, opts)?
                }
            };
        }
        if used == 0 || used >= rest.len() {
            return Ok(last);
        }
        rest = &rest[used..];
    }
}

fn run_prepared(
    conn: &Connection,
    stmt: &mut Statement<'_>,
    policy: RowsPolicy,
    opts: ResultOptions,
) -> Result<StatementOutcome, SqlFailure> {
    let wants_rows =
        stmt.column_count() > 0 && (policy == RowsPolicy::AllQueries || !stmt.readonly());
    if wants_rows {
        return collect_rows(stmt, opts).map(StatementOutcome::Rows);
    }
    // Reset so `last_insert_id` reports only what this statement inserted: rqlite reports the
    // connection-wide value, which differs between nodes after a restart.
    conn.set_last_insert_rowid(0).map_err(classify)?;
    let before = conn.total_changes().map_err(classify)?;
    while stmt.step().map_err(classify)?.is_row() {}
    let changed = conn.total_changes().map_err(classify)? != before;
    Ok(StatementOutcome::Executed {
        last_insert_id: conn.last_insert_rowid().map_err(classify)?,
        // sqlite3_changes keeps the count of the last INSERT/UPDATE/DELETE, so DDL would
        // otherwise report the previous statement's count.
        rows_affected: if changed {
            conn.changes().map_err(classify)?
        } else {
            0
        },
    })
}

fn collect_rows(stmt: &mut Statement<'_>, opts: ResultOptions) -> Result<Rows, SqlFailure> {
    let n = stmt.column_count();
    let columns = (0..n)
        .map(|i| {
            let name = stmt.column_name(i);
            match (opts.qualify_columns, stmt.column_table_name(i)) {
                (true, Some(table)) => format!("{table}.{name}"),
                _ => name,
            }
        })
        .collect();
    let decltypes = (0..n).map(|i| stmt.column_decltype(i)).collect();
    let mut values = Vec::new();
    while stmt.step().map_err(classify)? == Step::Row {
        values.push((0..n).map(|i| stmt.column_owned(i)).collect());
    }
    Ok(Rows {
        columns,
        decltypes,
        values,
    })
}

fn bind_params(
    stmt: &mut Statement<'_>,
    params: &Params,
    positional_used: &mut usize,
) -> Result<(), SqlFailure> {
    let count = stmt.parameter_count();
    if count == 0 {
        return Ok(());
    }
    match params {
        Params::None => Ok(()),
        Params::Positional(values) => {
            let wanted = count as usize;
            let available = values.len().saturating_sub(*positional_used);
            if available < wanted {
                return Err(SqlFailure::Sql(format!(
                    "not enough args to execute query: want {wanted} got {available}"
                )));
            }
            for i in 1..=count {
                let v = &values[*positional_used + i as usize - 1];
                bind_one(stmt, i, v)?;
            }
            *positional_used += wanted;
            Ok(())
        }
        Params::Named(pairs) => {
            for i in 1..=count {
                let Some(name) = stmt.parameter_name(i) else {
                    continue;
                };
                let bare = name.get(1..).unwrap_or("");
                if let Some((_, v)) = pairs.iter().find(|(k, _)| k == bare) {
                    bind_one(stmt, i, v)?;
                }
            }
            Ok(())
        }
    }
}

fn bind_one(stmt: &mut Statement<'_>, i: i32, v: &ParamValue) -> Result<(), SqlFailure> {
    let r = match v {
        ParamValue::Null => stmt.bind_null(i),
        ParamValue::Integer(n) => stmt.bind_i64(i, *n),
        ParamValue::Real(r) => stmt.bind_f64(i, *r),
        ParamValue::Text(t) => stmt.bind_text(i, t),
        ParamValue::Blob(b) => stmt.bind_blob(i, b),
        ParamValue::Bool(b) => stmt.bind_i64(i, i64::from(*b)),
    };
    r.map_err(classify)
}

/// A user's transaction-control statement, recognised by its leading keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnControl {
    Begin,
    Commit,
    Rollback,
}

pub(crate) fn txn_control(sql: &str) -> Option<TxnControl> {
    let mut words = sql_words(sql);
    let first = words.next()?.to_ascii_uppercase();
    match first.as_str() {
        "BEGIN" => Some(TxnControl::Begin),
        "COMMIT" | "END" => Some(TxnControl::Commit),
        "ROLLBACK" => {
            // `ROLLBACK [TRANSACTION] TO [SAVEPOINT] name` is a savepoint operation, which nests
            // fine inside our transaction and runs as written.
            let mut next = words.next().map(|w| w.to_ascii_uppercase());
            if next.as_deref() == Some("TRANSACTION") {
                next = words.next().map(|w| w.to_ascii_uppercase());
            }
            (next.as_deref() != Some("TO")).then_some(TxnControl::Rollback)
        }
        _ => None,
    }
}

/// The words of SQL text, skipping whitespace and comments; good enough for leading keywords.
fn sql_words(sql: &str) -> impl Iterator<Item = &str> {
    let mut rest = sql;
    std::iter::from_fn(move || loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find('\n').map_or("", |i| &r[i + 1..]);
            continue;
        }
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        let (word, tail) = rest.split_at(end);
        rest = tail;
        return Some(word);
    })
}

fn run_txn_control(
    conn: &Connection,
    control: TxnControl,
    state: &mut WriteState,
) -> Result<StatementOutcome, SqlFailure> {
    let executed = StatementOutcome::Executed {
        last_insert_id: 0,
        rows_affected: 0,
    };
    match (control, state.user_txn_open) {
        (TxnControl::Begin, true) => Err(SqlFailure::Sql(
            "cannot start a transaction within a transaction".into(),
        )),
        (TxnControl::Begin, false) => {
            conn.execute_batch(USER_TXN_SAVEPOINT).map_err(classify)?;
            state.user_txn_open = true;
            Ok(executed)
        }
        (TxnControl::Commit, false) => Err(SqlFailure::Sql(
            "cannot commit - no transaction is active".into(),
        )),
        (TxnControl::Rollback, false) => Err(SqlFailure::Sql(
            "cannot rollback - no transaction is active".into(),
        )),
        (TxnControl::Commit, true) => {
            conn.execute_batch(USER_TXN_RELEASE).map_err(classify)?;
            state.user_txn_open = false;
            Ok(executed)
        }
        (TxnControl::Rollback, true) => {
            conn.execute_batch(USER_TXN_ROLLBACK).map_err(classify)?;
            conn.execute_batch(USER_TXN_RELEASE).map_err(classify)?;
            state.user_txn_open = false;
            Ok(executed)
        }
    }
}

#[cfg(test)]
mod tests;
