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
//! Users' statements run through the connection's [`gate`](super::gate): in `Write` mode on
//! the write path, `Load` for scripts, `Read` for queries, and raftlite's own statements
//! (savepoints, resets) in `Internal` mode between them. A query runs only statements SQLite
//! reports read-only, without transaction control. A write request has a budget of progress
//! steps ([`super::gate::Gate::start_budget`]); going over it answers rqlite's
//! `execute timeout` and undoes the request. When a request ends, whatever it left on the
//! connection (a setting it may change for itself, temporary objects) is undone, and deferred
//! foreign key violations fail it (they would otherwise fail the entry's COMMIT).
//!
//! Errors are sorted by [`crate::db::error::is_local_fault`]: a deterministic SQL error
//! becomes the statement's result, and a local fault (I/O, disk full, corruption) is returned
//! as `Err` so the caller can stop the node instead of letting replicas diverge. A failure of
//! raftlite's own statements is returned as `Err` too; the caller sorts it the same way.

use std::time::Instant;

use raftlite_ffi::{CachedStatement, Connection, Statement, Step, Value};

use super::apply::Refused;
use super::error::{classify, SqlFailure};
use super::gate::{
    Gate, Mode, EXECUTE_TIMEOUT_ERROR, QUERY_TIMEOUT_ERROR, QUERY_WRITE_ERROR,
    RESULT_TOO_LARGE_ERROR,
};
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

/// A failure of raftlite's own statements around users' SQL (savepoints, resets), or a local
/// fault of a user's statement. The caller sorts it with [`super::error::is_local_fault`]: a
/// local fault stops the node; anything else the entry caused, the same on every node.
pub type ApplyError = raftlite_ffi::Error;

/// The gate of a connection that runs users' SQL; a connection without one (not opened by
/// [`super::settings`]) runs none: the gate fails closed.
fn gate_of(conn: &Connection) -> Result<&Gate, ApplyError> {
    super::settings::gate(conn).ok_or_else(|| {
        raftlite_ffi::Error::new(
            raftlite_ffi::sys::SQLITE_MISUSE,
            "this connection has no gate: users' SQL runs only on connections from db::settings",
        )
    })
}

/// The request-level error of a request that went over its budget.
fn over_budget_error(gate: &Gate) -> String {
    format!(
        "{EXECUTE_TIMEOUT_ERROR}: the request went over its budget of {} steps and was undone",
        gate.budget_use().budget
    )
}

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

/// Runs a write request inside the caller's open transaction, with a budget of `budget`
/// progress steps (see [`super::gate`]).
pub fn execute_request(
    conn: &Connection,
    req: &Request,
    policy: RowsPolicy,
    opts: ResultOptions,
    budget: u64,
) -> Result<RequestResults, ApplyError> {
    let gate = gate_of(conn)?;
    gate.take_cleanup();
    gate.start_budget(budget);
    let out = run_request(conn, gate, req, policy, opts);
    let cleaned = clean_up(conn, gate);
    let out = out?;
    cleaned?;
    Ok(out)
}

fn run_request(
    conn: &Connection,
    gate: &Gate,
    req: &Request,
    policy: RowsPolicy,
    opts: ResultOptions,
) -> Result<RequestResults, ApplyError> {
    conn.execute_batch(REQUEST_SAVEPOINT)?;
    let mut state = WriteState {
        user_txn_open: false,
    };
    let mut out = RequestResults::default();
    for stmt in &req.statements {
        let started = Instant::now();
        let outcome = run_text(
            conn,
            gate,
            Mode::Write,
            stmt,
            Some(&mut state),
            policy,
            opts,
            UseCache::Yes,
        );
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
        let over_budget = gate.exhausted();
        if conn.is_autocommit()? {
            // A conflict clause of ROLLBACK (or RAISE(ROLLBACK)), or a write statement stopped
            // by the budget, ended the caller's whole transaction. Every node does the same
            // here, so start a new one and stop.
            conn.execute_batch("BEGIN IMMEDIATE")?;
            out.error = Some(if over_budget {
                over_budget_error(gate)
            } else {
                "transaction rolled back by a ROLLBACK conflict clause".into()
            });
            out.ended_callers_transaction = true;
            return Ok(out);
        }
        if over_budget {
            conn.execute_batch(REQUEST_ROLLBACK)?;
            conn.execute_batch(REQUEST_RELEASE)?;
            out.error = Some(over_budget_error(gate));
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
    // COMMIT would refuse these at the end of the entry, where they would be the fault of
    // every request in it; they are this request's.
    if conn.has_deferred_foreign_key_violations()? {
        conn.execute_batch(REQUEST_ROLLBACK)?;
        conn.execute_batch(REQUEST_RELEASE)?;
        out.error = Some(DEFERRED_FK_ERROR.into());
        return Ok(out);
    }
    if let Some(table) = table_at_largest_rowid(conn, gate.written_tables())? {
        conn.execute_batch(REQUEST_ROLLBACK)?;
        conn.execute_batch(REQUEST_RELEASE)?;
        // The request's own answers may hold the rowids SQLite drew at random.
        out.results.clear();
        out.error = Some(largest_rowid_error(&table));
        return Ok(out);
    }
    conn.execute_batch(REQUEST_RELEASE)?;
    Ok(out)
}

/// The largest rowid SQLite allows. Once a table holds it, SQLite picks each new rowid at
/// random, from the process-wide PRNG: the replicas would store different rowids.
const LARGEST_ROWID: i64 = i64::MAX;

fn largest_rowid_error(table: &str) -> String {
    format!(
        "table {table} would hold rowid {LARGEST_ROWID}, after which SQLite picks new rowids \
         at random, differently on each node: the request is undone (AUTOINCREMENT tables \
         fail instead)"
    )
}

/// The first of the `written` tables (see [`Gate::written_tables`]; `None`: every table) that
/// now holds the largest rowid, if any. Only ordinary and shadow rowid tables are looked at:
/// a view's `max(rowid)` would run its query, a virtual table's its module.
fn table_at_largest_rowid(
    conn: &Connection,
    written: Option<Vec<(String, String)>>,
) -> Result<Option<String>, ApplyError> {
    const ROWID_TABLES: &str = "SELECT schema, name FROM pragma_table_list \
         WHERE type IN ('table', 'shadow') AND wr = 0 AND schema IN ('main', 'temp') \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'";
    // A request's few tables go through the statement cache (the next request usually writes
    // the same); a load's look at every table does not fill it.
    let cached = written.is_some();
    let mut candidates = Vec::new();
    let mut collect = |stmt: &mut Statement<'_>| -> Result<(), ApplyError> {
        while stmt.step()?.is_row() {
            candidates.push((
                String::from_utf8_lossy(stmt.column_text(0)).into_owned(),
                String::from_utf8_lossy(stmt.column_text(1)).into_owned(),
            ));
        }
        Ok(())
    };
    match written {
        Some(written) => {
            for (schema, name) in written {
                let mut stmt = conn.prepare_cached(&format!(
                    "{ROWID_TABLES} AND schema = ?1 AND name = ?2 COLLATE NOCASE"
                ))?;
                stmt.bind_text(1, &schema)?;
                stmt.bind_text(2, &name)?;
                collect(&mut stmt)?;
            }
        }
        None => collect(&mut conn.prepare(ROWID_TABLES)?)?,
    }
    for (schema, name) in candidates {
        let sql = format!(
            "SELECT max(_rowid_) = {LARGEST_ROWID} FROM {schema}.\"{}\"",
            name.replace('"', "\"\"")
        );
        let mut max = if cached {
            conn.prepare_cached(&sql)?
        } else {
            CachedStatement::from(conn.prepare(&sql)?)
        };
        if max.step()?.is_row() && max.column_i64(0) == 1 {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Whether the database holds virtual tables (see [`Gate::has_virtual_tables`]), asked of
/// `sqlite_schema` when the gate does not know.
fn has_virtual_tables(conn: &Connection, gate: &Gate) -> Result<bool, ApplyError> {
    if let Some(known) = gate.has_virtual_tables() {
        return Ok(known);
    }
    let any = conn.query_i64(
        "SELECT EXISTS(SELECT 1 FROM main.sqlite_schema \
         WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%')",
    )? == Some(1);
    gate.set_has_virtual_tables(Some(any));
    Ok(any)
}

/// Reloads the schema: virtual tables are disconnected and their modules' caches dropped, as
/// on a connection that just opened (see [`Gate::has_virtual_tables`]). Prepared statements
/// are prepared again when next used.
fn reload_schema(conn: &Connection, gate: &Gate) -> Result<(), ApplyError> {
    conn.execute_batch("PRAGMA writable_schema=RESET")?;
    gate.set_has_virtual_tables(None);
    Ok(())
}

/// SQLite's message when COMMIT finds a foreign key violation.
const DEFERRED_FK_ERROR: &str = "FOREIGN KEY constraint failed";

/// Undoes what the request that just ended left on the connection (see
/// [`super::gate::Cleanup`]): settings it changed for itself go back to their defaults, and
/// temporary tables, views and triggers are dropped, so the next request, on this node or a
/// node that restarted since, starts from the same connection.
fn clean_up(conn: &Connection, gate: &Gate) -> Result<(), ApplyError> {
    let cleanup = gate.take_cleanup();
    for reset in &cleanup.resets {
        conn.execute_batch(reset)?;
    }
    if cleanup.schema_changed {
        gate.set_has_virtual_tables(None);
    }
    if cleanup.tables_used && has_virtual_tables(conn, gate)? {
        reload_schema(conn, gate)?;
    }
    if cleanup.temp_objects {
        let mut objects = Vec::new();
        {
            // Triggers and views before tables; indexes go with their tables.
            let mut stmt = conn.prepare(&format!(
                "SELECT type, name FROM temp.sqlite_schema \
                     WHERE type IN ('trigger', 'view', 'table') AND name != '{}' \
                     ORDER BY type = 'table', name",
                super::capture::EVENTS_TABLE
            ))?;
            while stmt.step()?.is_row() {
                let kind = String::from_utf8_lossy(stmt.column_text(0)).to_ascii_uppercase();
                let name = String::from_utf8_lossy(stmt.column_text(1)).into_owned();
                objects.push((kind, name));
            }
        }
        for (kind, name) in objects {
            conn.execute_batch(&format!(
                "DROP {kind} IF EXISTS temp.\"{}\"",
                name.replace('"', "\"\"")
            ))?;
        }
    }
    Ok(())
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
/// What one read may cost: SQLite progress steps, and bytes of rows held for its answer.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub budget_steps: u64,
    pub max_result_bytes: u64,
}

impl ReadLimits {
    /// A budget of steps and no cap on the rows.
    pub fn steps(budget_steps: u64) -> ReadLimits {
        ReadLimits {
            budget_steps,
            max_result_bytes: u64::MAX,
        }
    }
}

const BEGIN_READ_WITH_CURRENT_SCHEMA: &str = "BEGIN; SELECT 1 FROM sqlite_schema LIMIT 0";

/// Runs a read-only request in one read transaction, so every statement sees one snapshot.
/// Only statements SQLite reports read-only run, without transaction control, and the gate
/// refuses anything that would change the connection (see [`super::gate`], `Mode::Read`).
/// The request may take `limits.budget_steps` progress steps, as a write may (a read that
/// never ends would hold a reader and a core for good); past it, the statement running and
/// those after it answer rqlite's `query timeout`. A statement whose rows would hold more than
/// `limits.max_result_bytes` fails with [`RESULT_TOO_LARGE_ERROR`] (the others still run).
pub fn query_request(
    conn: &Connection,
    req: &Request,
    opts: ResultOptions,
    limits: ReadLimits,
) -> Result<RequestResults, ApplyError> {
    let gate = gate_of(conn)?;
    gate.start_budget(limits.budget_steps);
    gate.cap_result_bytes(limits.max_result_bytes);
    conn.execute_batch(BEGIN_READ_WITH_CURRENT_SCHEMA)?;
    let mut out = RequestResults::default();
    for stmt in &req.statements {
        if gate.exhausted() {
            out.results
                .push(StatementResult::error(QUERY_TIMEOUT_ERROR));
            continue;
        }
        let started = Instant::now();
        let outcome = match run_text(
            conn,
            gate,
            Mode::Read,
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
/// transaction, in the gate's `Load` mode, each statement with a budget of `budget` progress
/// steps. A dump's own `BEGIN TRANSACTION; ... COMMIT;` maps onto a savepoint as in
/// [`execute_request`]. The first SQL error stops the script; the caller undoes everything. A
/// read error of the script (its staged file) is a local fault.
///
/// A dump of a database with virtual tables (the `sqlite3` shell's and ours) writes each one
/// into `sqlite_schema` between `PRAGMA writable_schema=ON;` and `OFF;` lines, which the gate
/// and SQLite's defensive mode refuse. The runner recognises exactly those lines
/// (`schema_row`), checks the row (a virtual table of an allowed module, nothing else), writes
/// it itself, and at the end reloads the schema and runs `integrity_check` on each such table:
/// a row that does not load, or a table whose contents do not match, fails the script, the
/// same way on every node.
pub fn execute_script(
    conn: &Connection,
    statements: impl Iterator<Item = std::io::Result<String>>,
    budget: u64,
) -> Result<ScriptOutcome, ApplyError> {
    let gate = gate_of(conn)?;
    gate.take_cleanup();
    let out = run_script(conn, gate, statements, budget);
    let cleaned = clean_up(conn, gate);
    let out = out?;
    cleaned?;
    Ok(out)
}

fn run_script(
    conn: &Connection,
    gate: &Gate,
    statements: impl Iterator<Item = std::io::Result<String>>,
    budget: u64,
) -> Result<ScriptOutcome, ApplyError> {
    let mut state = WriteState {
        user_txn_open: false,
    };
    let mut last = StatementOutcome::Executed {
        last_insert_id: 0,
        rows_affected: 0,
    };
    let mut count = 0u64;
    let mut template = String::new();
    let mut writable_schema = false;
    let mut virtual_tables: Vec<String> = Vec::new();
    for sql in statements {
        let sql = sql.map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::StorageFull {
                raftlite_ffi::sys::SQLITE_FULL
            } else {
                raftlite_ffi::sys::SQLITE_IOERR
            };
            raftlite_ffi::Error::new(code, format!("read the staged SQL: {e}"))
        })?;
        count += 1;
        gate.start_budget(budget);
        if let Some(on) = writable_schema_line(&sql) {
            writable_schema = on;
            continue;
        }
        if writable_schema {
            if let Some(row) = schema_row(&sql) {
                match write_schema_row(conn, &row) {
                    Ok(()) => virtual_tables.push(row.name),
                    Err(msg) => return Ok(ScriptOutcome::Failed(msg)),
                }
                continue;
            }
        }
        let ran = match run_literal_insert(conn, gate, &sql, &mut template) {
            Some(ran) => ran,
            None => run_text(
                conn,
                gate,
                Mode::Load,
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
            // A ROLLBACK conflict clause, or a write statement stopped by the budget, ended
            // the caller's transaction.
            conn.execute_batch("BEGIN IMMEDIATE")?;
            return Ok(ScriptOutcome::Failed(if gate.exhausted() {
                EXECUTE_TIMEOUT_ERROR.into()
            } else {
                "transaction rolled back by a ROLLBACK conflict clause".into()
            }));
        }
    }
    if state.user_txn_open {
        return Ok(ScriptOutcome::Failed(
            "the script leaves a transaction open (BEGIN without COMMIT)".into(),
        ));
    }
    let checked = check_virtual_tables(conn, &virtual_tables);
    if !virtual_tables.is_empty() {
        // Checking them connected them: disconnect them again (see `Gate::has_virtual_tables`).
        reload_schema(conn, gate)?;
    }
    if let Err(msg) = checked {
        return Ok(ScriptOutcome::Failed(msg));
    }
    if conn.has_deferred_foreign_key_violations()? {
        return Ok(ScriptOutcome::Failed(DEFERRED_FK_ERROR.into()));
    }
    // Every rowid table: a dump's rows go through cached templates, which the gate does not
    // see again. Once per load.
    if let Some(table) = table_at_largest_rowid(conn, None)? {
        return Ok(ScriptOutcome::Failed(largest_rowid_error(&table)));
    }
    Ok(ScriptOutcome::Done {
        last,
        statements: count,
    })
}

/// Runs a staged SQL script file in one transaction on `conn`: all of it, or (on an SQL
/// error) none of it, each statement with a budget of `budget` steps. Leading
/// `PRAGMA foreign_keys` statements (a dump's first line) run before the transaction opens,
/// where SQLite honours them, as the `sqlite3` shell does; `foreign_keys` (the node's own
/// setting) is restored afterwards. `record` runs inside the transaction, whatever the
/// script's outcome, just before the commit (the state machine records the applied index
/// there). An `Err` is a fault of this node (I/O, disk full), not of the script.
pub fn run_sql_script(
    conn: &Connection,
    path: &std::path::Path,
    foreign_keys: bool,
    budget: u64,
    record: impl FnMut(&Connection) -> anyhow::Result<()>,
) -> anyhow::Result<ScriptOutcome> {
    use anyhow::Context as _;
    let file = std::fs::File::open(path).context("open the staged SQL")?;
    run_sql_source(conn, file, foreign_keys, budget, record)
}

/// [`run_sql_script`] on a script read from `source` (a build reads a staged file while it is
/// still arriving). A read error ends the load as a fault of this node; `StorageFull` from the
/// reader is reported as SQLite's `SQLITE_FULL`, so a caller tells a full disk apart.
pub fn run_sql_source(
    conn: &Connection,
    source: impl std::io::Read + Send,
    foreign_keys: bool,
    budget: u64,
    record: impl FnMut(&Connection) -> anyhow::Result<()>,
) -> anyhow::Result<ScriptOutcome> {
    use anyhow::Context as _;
    std::thread::scope(|scope| {
        let statements = super::restore_file::SqlStatements::new(
            std::io::BufReader::with_capacity(256 * 1024, source),
        );
        let statements = super::restore_file::read_ahead(scope, statements)
            .context("start the SQL load's reader thread")?;
        run_statements(conn, statements, foreign_keys, budget, record)
    })
}

/// [`run_sql_source`] on statements already split.
fn run_statements(
    conn: &Connection,
    statements: impl Iterator<Item = std::io::Result<String>>,
    foreign_keys: bool,
    budget: u64,
    mut record: impl FnMut(&Connection) -> anyhow::Result<()>,
) -> anyhow::Result<ScriptOutcome> {
    use anyhow::Context as _;
    let gate = gate_of(conn)?;
    let mut statements = statements.peekable();
    while let Some(Ok(sql)) = statements.peek() {
        let lower = sql.trim_start().to_ascii_lowercase();
        if !lower.starts_with("pragma foreign_keys") {
            break;
        }
        // A malformed pragma is an error every node reports alike; it is the script's result
        // (the gate, in `Load` mode, lets only `foreign_keys` itself through).
        {
            let _load = gate.enter(Mode::Load);
            let _ = conn.execute_batch(sql);
        }
        statements.next();
    }
    conn.execute_batch("BEGIN IMMEDIATE")
        .context("begin the load transaction")?;
    let mut outcome = execute_script(conn, statements, budget).context("run the SQL load")?;
    if let ScriptOutcome::Done { .. } = outcome {
        record(conn)?;
        match super::apply::commit_or_roll_back(conn) {
            Ok(()) => {}
            Err(Refused::Fault(e)) => {
                return Err(anyhow::Error::new(e).context("commit the load transaction"))
            }
            Err(Refused::ByEntry(e)) => {
                outcome = ScriptOutcome::Failed(format!("commit refused: {e}"));
            }
        }
    } else {
        // The statement that failed may have ended the transaction itself (a ROLLBACK
        // conflict clause, a write stopped by the budget): then there is nothing to roll back.
        super::apply::roll_back_if_open(conn).context("roll back the load")?;
    }
    if let ScriptOutcome::Failed(_) = outcome {
        conn.execute_batch("BEGIN IMMEDIATE")
            .context("begin the load transaction")?;
        record(conn)?;
        conn.execute_batch("COMMIT")
            .context("commit the load transaction")?;
    }
    conn.execute_batch(if foreign_keys {
        "PRAGMA foreign_keys=ON"
    } else {
        "PRAGMA foreign_keys=OFF"
    })
    .context("restore foreign_keys")?;
    Ok(outcome)
}

/// `Some(on)` when `sql` is a dump's `PRAGMA writable_schema=ON;` or `=OFF;` line.
fn writable_schema_line(sql: &str) -> Option<bool> {
    // Compared as it is read, without whitespace and ';' and in lower case, stopping at the
    // first difference: a load asks this of every statement, and nearly all are long rows
    // (copying each into a new string was an eighth of a 1.5 GB load's time).
    let squeezed = || {
        sql.chars()
            .filter(|c| !c.is_whitespace() && *c != ';')
            .map(|c| c.to_ascii_lowercase())
    };
    if squeezed().eq("pragmawritable_schema=on".chars()) {
        Some(true)
    } else if squeezed().eq("pragmawritable_schema=off".chars()) {
        Some(false)
    } else {
        None
    }
}

/// A virtual table's row as a dump writes it into `sqlite_schema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaRow {
    pub(crate) name: String,
    pub(crate) sql: String,
}

/// The row of a dump line `INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)
/// VALUES('table','N','N',0,'CREATE VIRTUAL TABLE ...');` (`sqlite_master` is accepted too),
/// when it has exactly that shape and describes a virtual table of an allowed module
/// ([`super::gate::WRITE_MODULES`]) whose name is not reserved.
pub(crate) fn schema_row(sql: &str) -> Option<SchemaRow> {
    let mut rest = sql.trim();
    rest = rest.strip_suffix(';').unwrap_or(rest).trim_end();
    let head_len = "INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)VALUES(".len();
    let head = rest.get(..head_len)?;
    let expected = ["sqlite_schema", "sqlite_master"].iter().any(|t| {
        head.eq_ignore_ascii_case(&format!(
            "INSERT INTO {t}(type,name,tbl_name,rootpage,sql)VALUES("
        ))
    });
    if !expected {
        return None;
    }
    let mut values = &rest[head_len..];
    values = values.strip_suffix(')')?;
    let (kind, values) = sql_string(values)?;
    let (name, values) = sql_string(values.strip_prefix(',')?)?;
    let (tbl_name, values) = sql_string(values.strip_prefix(',')?)?;
    let values = values.strip_prefix(",0,")?;
    let (create, values) = sql_string(values)?;
    if !values.is_empty() || kind != "table" || name != tbl_name {
        return None;
    }
    let lower_name = name.to_ascii_lowercase();
    if lower_name.starts_with("sqlite_") || lower_name == super::STATE_TABLE {
        return None;
    }
    let mut words = create.split_whitespace();
    let prefix: Vec<String> = words
        .by_ref()
        .take(3)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    if prefix != ["CREATE", "VIRTUAL", "TABLE"] || !raftlite_ffi::complete(&format!("{create};")) {
        return None;
    }
    // `... USING module(args)` or `... USING module`: the module is the word after USING.
    let upper = create.to_ascii_uppercase();
    let using = upper.find(" USING ")?;
    let module: String = create[using + 7..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if !super::gate::WRITE_MODULES
        .iter()
        .any(|m| m.eq_ignore_ascii_case(&module))
    {
        return None;
    }
    Some(SchemaRow { name, sql: create })
}

/// A single-quoted SQL string at the start of `s` (with `''` escapes) and the rest.
fn sql_string(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if body[i + 1..].starts_with('\'') {
                out.push('\'');
                chars.next();
            } else {
                return Some((out, &body[i + 1..]));
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// Writes a checked virtual table row into `sqlite_schema`: the one write to the schema table
/// the gate ever lets through, with defensive mode off only for it.
fn write_schema_row(conn: &Connection, row: &SchemaRow) -> Result<(), String> {
    let write = || -> raftlite_ffi::Result<()> {
        conn.set_defensive(false)?;
        conn.execute_batch("PRAGMA writable_schema=ON")?;
        let mut stmt = conn.prepare(
            "INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql) VALUES('table',?1,?1,0,?2)",
        )?;
        stmt.bind_text(1, &row.name)?;
        stmt.bind_text(2, &row.sql)?;
        stmt.step()?;
        Ok(())
    };
    let written = write();
    let restored = conn
        .execute_batch("PRAGMA writable_schema=OFF")
        .and_then(|()| conn.set_defensive(true));
    written
        .and(restored)
        .map_err(|e| format!("write virtual table {} into the schema: {e}", row.name))
}

/// After a script wrote virtual tables into the schema: reloads the schema (as the next
/// connection to open the file would) and checks each table, so a row that does not load or a
/// table whose shadow tables do not match its definition fails the script instead of every
/// statement that later touches it.
fn check_virtual_tables(conn: &Connection, tables: &[String]) -> Result<(), String> {
    if tables.is_empty() {
        return Ok(());
    }
    conn.execute_batch("PRAGMA writable_schema=RESET")
        .map_err(|e| format!("reload the schema: {e}"))?;
    for name in tables {
        let quoted = name.replace('"', "\"\"");
        conn.execute_batch(&format!("SELECT 1 FROM \"{quoted}\" LIMIT 0"))
            .map_err(|e| format!("virtual table {name} does not load: {e}"))?;
        let check = conn
            .query_text(&format!("PRAGMA integrity_check(\"{quoted}\")"))
            .map_err(|e| format!("check virtual table {name}: {e}"))?
            .unwrap_or_default();
        if check != "ok" {
            return Err(format!("virtual table {name} is damaged: {check}"));
        }
    }
    Ok(())
}

/// Runs `sql` through [`literal_insert`] when it is a literal single-row INSERT: its template
/// comes from the statement cache, its values are bound. `None` when the text is not of that
/// shape or its template does not prepare (no such table, a wrong number of values): the text
/// then runs as it is, and SQLite reports its own error for it.
fn run_literal_insert(
    conn: &Connection,
    gate: &Gate,
    sql: &str,
    template: &mut String,
) -> Option<Result<StatementOutcome, SqlFailure>> {
    let insert = literal_insert::parse(sql)?;
    insert.template_into(template);
    let _load = gate.enter(Mode::Load);
    let mut stmt = conn.prepare_cached(template).ok()?;
    insert.bind(&mut stmt).ok()?;
    Some(run_prepared(
        conn,
        gate,
        &mut stmt,
        RowsPolicy::ReturningOnly,
        ResultOptions::default(),
    ))
}

/// True when every statement in the request only reads (rqlite's `/db/request` rule). Text that
/// fails to prepare, or that the gate refuses in a query, counts as a write: the write path
/// then answers it. The statements are prepared in the gate's `Read` mode, so preparing them
/// (which is enough for SQLite to apply some pragmas) changes nothing on the reader.
pub fn is_read_only(conn: &Connection, req: &Request) -> bool {
    let Ok(gate) = gate_of(conn) else {
        return false;
    };
    let _read = gate.enter(Mode::Read);
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
/// The statements are prepared and run in the gate's `mode`; transaction control on the write
/// path is mapped onto raftlite's savepoints, which run in `Internal` mode. In `Read` mode a
/// statement SQLite does not report read-only is refused before it runs.
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
    gate: &Gate,
    mode: Mode,
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
        gate.statement_starts();
        let prepared = {
            let _user = gate.enter(mode);
            if std::mem::take(&mut first) {
                conn.prepare_first_cached(rest)
            } else {
                conn.prepare_first(rest)
                    .map(|(prepared, used)| (prepared.map(CachedStatement::from), used))
            }
            .map_err(|e| failure(gate, e))
        };
        let (prepared, used) = prepared?;
        if let Some(mut prepared) = prepared {
            if mode == Mode::Read && !prepared.readonly() {
                return Err(SqlFailure::Sql(QUERY_WRITE_ERROR.into()));
            }
            let control = if write.is_some() {
                txn_control(&prepared.sql_text())
            } else {
                None
            };
            last = match (control, write.as_deref_mut()) {
                (Some(c), Some(state)) => run_txn_control(conn, c, state)?,
                _ => {
                    let _user = gate.enter(mode);
                    bind_params(gate, &mut prepared, &stmt.params, &mut positional_used)?;
                    let mark = super::capture::before_statement(conn).map_err(SqlFailure::Local)?;
                    let ran = run_prepared(conn, gate, &mut prepared, policy, opts);
                    gate.statement_ran(&prepared.sql_text());
                    if mode == Mode::Write {
                        drop(_user);
                        super::capture::after_statement(conn, mark, ran.is_err())
                            .map_err(SqlFailure::Local)?;
                    }
                    ran?
                }
            };
            if gate.exhausted() {
                return Ok(last);
            }
        }
        if used == 0 || used >= rest.len() {
            return Ok(last);
        }
        rest = &rest[used..];
    }
}

/// Sorts an error of a user's statement: the gate's reason when the gate refused it, rqlite's
/// `execute timeout` when the budget stopped it, else as [`classify`] does.
fn failure(gate: &Gate, e: raftlite_ffi::Error) -> SqlFailure {
    if let Some(reason) = gate.take_denial() {
        return SqlFailure::Sql(reason);
    }
    if e.code() == raftlite_ffi::ErrorCode::Interrupt && gate.exhausted() {
        return SqlFailure::Sql(
            match gate.mode() {
                Mode::Read => QUERY_TIMEOUT_ERROR,
                _ => EXECUTE_TIMEOUT_ERROR,
            }
            .into(),
        );
    }
    classify(e)
}

fn run_prepared(
    conn: &Connection,
    gate: &Gate,
    stmt: &mut Statement<'_>,
    policy: RowsPolicy,
    opts: ResultOptions,
) -> Result<StatementOutcome, SqlFailure> {
    let wants_rows =
        stmt.column_count() > 0 && (policy == RowsPolicy::AllQueries || !stmt.readonly());
    let _counting = gate.count();
    if wants_rows {
        return collect_rows(gate, stmt, opts).map(StatementOutcome::Rows);
    }
    let fail = |e| failure(gate, e);
    // Reset so `last_insert_id` reports only what this statement inserted: rqlite reports the
    // connection-wide value, which differs between nodes after a restart.
    conn.set_last_insert_rowid(0).map_err(fail)?;
    let before = conn.total_changes().map_err(fail)?;
    while stmt.step().map_err(fail)?.is_row() {}
    let changed = conn.total_changes().map_err(fail)? != before;
    Ok(StatementOutcome::Executed {
        last_insert_id: conn.last_insert_rowid().map_err(fail)?,
        // sqlite3_changes keeps the count of the last INSERT/UPDATE/DELETE, so DDL would
        // otherwise report the previous statement's count.
        rows_affected: if changed {
            conn.changes().map_err(fail)?
        } else {
            0
        },
    })
}

fn collect_rows(
    gate: &Gate,
    stmt: &mut Statement<'_>,
    opts: ResultOptions,
) -> Result<Rows, SqlFailure> {
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
    let cap = gate.result_cap();
    let mut held: u64 = 0;
    let mut values = Vec::new();
    while stmt.step().map_err(|e| failure(gate, e))? == Step::Row {
        let row: Vec<Value> = (0..n).map(|i| stmt.column_owned(i)).collect();
        held = held.saturating_add(row.iter().map(held_bytes).sum::<u64>());
        if held > cap {
            return Err(SqlFailure::Sql(format!(
                "{RESULT_TOO_LARGE_ERROR}: its rows take more than {cap} bytes \
                 (-max-query-result-size); select fewer rows or columns (LIMIT), or take a \
                 backup (/db/backup)"
            )));
        }
        values.push(row);
    }
    Ok(Rows {
        columns,
        decltypes,
        values,
    })
}

/// What a value costs while a result is held and encoded: its bytes plus the fixed cost of a
/// value (roughly its size in the JSON answer, where a BLOB is base64, a third larger).
fn held_bytes(v: &Value) -> u64 {
    const PER_VALUE: u64 = 16;
    PER_VALUE
        + match v {
            Value::Null | Value::Integer(_) | Value::Real(_) => 8,
            Value::Text(s) => s.len() as u64,
            Value::Blob(b) => (b.len() as u64).div_ceil(3) * 4,
        }
}

fn bind_params(
    gate: &Gate,
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
                bind_one(gate, stmt, i, v)?;
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
                    bind_one(gate, stmt, i, v)?;
                }
            }
            Ok(())
        }
    }
}

fn bind_one(
    gate: &Gate,
    stmt: &mut Statement<'_>,
    i: i32,
    v: &ParamValue,
) -> Result<(), SqlFailure> {
    let r = match v {
        ParamValue::Null => stmt.bind_null(i),
        ParamValue::Integer(n) => stmt.bind_i64(i, *n),
        ParamValue::Real(r) => stmt.bind_f64(i, *r),
        ParamValue::Text(t) => stmt.bind_text(i, t),
        ParamValue::Blob(b) => stmt.bind_blob(i, b),
        ParamValue::Bool(b) => stmt.bind_i64(i, i64::from(*b)),
    };
    r.map_err(|e| failure(gate, e))
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
