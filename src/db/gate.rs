//! The gate: what users' SQL may do on a node's connections, decided by SQLite itself.
//!
//! Every write is applied on every node, so a statement that does something a replica cannot
//! repeat (a file outside the database, a setting of one connection, a value that differs
//! between nodes) or that never ends is a fault of the whole cluster. The gate is an
//! [`Authorizer`] and a [`ProgressHandler`] installed on every connection that applies entries,
//! runs loads or serves reads (see [`super::settings`]). SQLite asks the authorizer about each
//! action while it compiles a statement, including the bodies of the triggers and views the
//! statement reaches and the statements a virtual table or a pragma table-valued function
//! prepares for it, so the decision holds whatever the text looks like (`EXPLAIN PRAGMA ...`, a
//! trigger, a CTE). The connections also run with `SQLITE_DBCONFIG_DEFENSIVE` (no writes to the
//! schema table, to shadow tables or through `writable_schema`).
//!
//! The gate has a [`Mode`], set by the code that runs users' SQL for exactly as long as it
//! does ([`Gate::enter`]):
//! - [`Mode::Internal`], the default: raftlite's own statements (the state table, savepoints,
//!   digests, dumps, backups). Everything is allowed.
//! - [`Mode::Write`]: a write request applied from the log. Allowed: what gives the same result
//!   on every node and leaves nothing behind on the connection but the data. Refused:
//!   `ATTACH`/`DETACH`; pragmas not in [`PRAGMAS`] or used in a way the table does not allow;
//!   functions whose value differs between nodes ([`WRITE_DENIED_FUNCTIONS`]); virtual tables of
//!   modules that expose the file's layout or the connection ([`WRITE_MODULES`] lists the
//!   allowed ones); touching the state table or savepoints named like raftlite's own. A few
//!   settings may be set for one request ([`Set::ForOneRequest`]) and temporary objects may be
//!   created: the gate notes them and [`Gate::take_cleanup`] says what to undo when the request
//!   ends.
//! - [`Mode::Load`]: a SQL load's script. As `Write`; the script runner handles the dump's
//!   `writable_schema` lines itself (see `db::execute::execute_script`).
//! - [`Mode::Read`]: a query. Only reading: no writes (not even to temporary tables), no
//!   transaction control, no `ATTACH`, pragmas only to read. So a pooled reader starts every
//!   checkout with the settings it was opened with.
//!
//! The progress handler is the write budget ([`Gate::start_budget`]): while a write request's
//! statements run it counts SQLite's progress calls, which SQLite makes at every loop
//! iteration of a running program (the handler is set to be called at every instruction
//! check). The count depends only on the statement and the data, never on the machine or the
//! time, so a request over its budget fails at the same point on every node.
//!
//! When the gate refuses something it records why; [`Gate::take_denial`] gives that reason to
//! the caller, which answers it instead of SQLite's "not authorized".

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use raftlite_ffi::{AuthAction, AuthRequest, Authorization, Authorizer, ProgressHandler};

use super::STATE_TABLE;

/// Savepoints raftlite uses around requests start with this (case-insensitive); users' may not.
pub const RESERVED_SAVEPOINT_PREFIX: &str = "raftlite";

/// rqlite's answer to a statement that would write, sent as a query.
pub const QUERY_WRITE_ERROR: &str = "attempt to change database via query operation";

/// rqlite's answer to a write statement cut short by its time limit (`db_timeout`); raftlite
/// answers it when a request runs out of its budget.
pub const EXECUTE_TIMEOUT_ERROR: &str = "execute timeout";

/// rqlite's answer to a read cut short by its time limit; raftlite answers it for a read cut
/// short by `db_timeout` or by its budget.
pub const QUERY_TIMEOUT_ERROR: &str = "query timeout";

/// The start of the error of a read statement whose rows went over `-max-query-result-size`.
pub const RESULT_TOO_LARGE_ERROR: &str = "query result too large";

/// What the connection is running now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Internal,
    Write,
    Load,
    Read,
}

/// What a pragma may do in a write (the `set` rule) and whether a write may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// Takes an object name or a count, not a value to set: allowed in any form.
    Inspect,
    /// A value stored in the database file, replicated with the data: writes may set it.
    Stored,
    /// Changes the content the same way on every node: writes may run it.
    Action,
    /// A setting of the connection: writes may set it, and it is reset to the given statement's
    /// value when the request ends, so the next request (another client's, in the same entry
    /// or the next) starts from the default.
    ForOneRequest(&'static str),
    /// A setting of the connection that no one may change.
    Never,
    /// rqlite's own refusals (`db::rewrite::has_disallowed_pragma` answers them at the edge):
    /// setting it is refused with rqlite's text.
    Rqlite,
    /// rqlite's refusal in any form, reading included (`wal_checkpoint` runs a checkpoint).
    RqliteAlways,
    /// Does nothing inside the apply transaction (SQLite ignores it there); a load's leading
    /// form runs before the transaction and is restored after it.
    InertInTransaction,
    /// Fixes the layout of a database that does not exist yet: on ours (which always exists)
    /// SQLite only keeps the value on the connection for a later VACUUM, which cannot run in
    /// a write. Setting it in a write is skipped, as if SQLite ignored it outright.
    Layout,
}

/// One pragma of the allow-list.
#[derive(Debug, Clone, Copy)]
pub struct PragmaRule {
    pub name: &'static str,
    pub set: Set,
    /// Whether a write may use its value as data (through its table-valued function
    /// `pragma_NAME`): false when the value differs between nodes (file paths, page counts,
    /// counters), which would make replicas store different data. (A `PRAGMA` statement's
    /// own value only goes back to the client, so reading it is always allowed.)
    pub read_in_writes: bool,
}

const fn rule(name: &'static str, set: Set, read_in_writes: bool) -> PragmaRule {
    PragmaRule {
        name,
        set,
        read_in_writes,
    }
}

/// Every pragma SQLite has (`pragma_list`), and what the gate lets a request do with it: any
/// of them may be read by a query (client libraries read settings such as `read_uncommitted`
/// on connect), setting follows the rule. A pragma not listed (a later SQLite's) is refused
/// everywhere until it is given a rule.
pub const PRAGMAS: &[PragmaRule] = &[
    rule("analysis_limit", Set::Never, true),
    rule("application_id", Set::Stored, true),
    rule("auto_vacuum", Set::Layout, true),
    rule("automatic_index", Set::Never, true),
    rule("busy_timeout", Set::Never, true),
    rule("cache_size", Set::Never, true),
    rule("cache_spill", Set::Never, true),
    rule(
        "case_sensitive_like",
        Set::ForOneRequest("PRAGMA case_sensitive_like=0"),
        true,
    ),
    rule("cell_size_check", Set::Never, true),
    rule("checkpoint_fullfsync", Set::Never, false),
    rule("collation_list", Set::Inspect, true),
    rule("compile_options", Set::Inspect, true),
    rule("count_changes", Set::Never, false),
    rule("data_version", Set::Never, false),
    rule("database_list", Set::Inspect, false),
    rule("default_cache_size", Set::Never, false),
    rule(
        "defer_foreign_keys",
        Set::ForOneRequest("PRAGMA defer_foreign_keys=0"),
        true,
    ),
    rule("empty_result_callbacks", Set::Never, false),
    rule("encoding", Set::Layout, true),
    rule("foreign_key_check", Set::Inspect, true),
    rule("foreign_key_list", Set::Inspect, true),
    rule("foreign_keys", Set::InertInTransaction, true),
    rule("freelist_count", Set::Never, false),
    rule("full_column_names", Set::Never, false),
    rule("fullfsync", Set::Never, false),
    rule("function_list", Set::Inspect, true),
    rule("hard_heap_limit", Set::Never, false),
    rule(
        "ignore_check_constraints",
        Set::ForOneRequest("PRAGMA ignore_check_constraints=0"),
        true,
    ),
    rule("incremental_vacuum", Set::Action, true),
    rule("index_info", Set::Inspect, true),
    rule("index_list", Set::Inspect, true),
    rule("index_xinfo", Set::Inspect, true),
    rule("integrity_check", Set::Inspect, true),
    rule("journal_mode", Set::Rqlite, true),
    rule("journal_size_limit", Set::Never, false),
    rule(
        "legacy_alter_table",
        Set::ForOneRequest("PRAGMA legacy_alter_table=0"),
        true,
    ),
    rule("locking_mode", Set::Never, true),
    rule("max_page_count", Set::Never, false),
    rule("mmap_size", Set::Never, false),
    rule("module_list", Set::Inspect, true),
    rule("optimize", Set::Action, true),
    rule("page_count", Set::Never, false),
    // Part of the file (every replica has the same): full-text and R-tree tables read it.
    rule("page_size", Set::Layout, true),
    rule("pragma_list", Set::Inspect, true),
    rule("query_only", Set::Rqlite, true),
    rule("quick_check", Set::Inspect, true),
    rule("read_uncommitted", Set::Never, false),
    rule(
        "recursive_triggers",
        Set::ForOneRequest("PRAGMA recursive_triggers=0"),
        true,
    ),
    rule(
        "reverse_unordered_selects",
        Set::ForOneRequest("PRAGMA reverse_unordered_selects=0"),
        true,
    ),
    rule("schema_version", Set::Never, false),
    rule("secure_delete", Set::Never, true),
    rule("short_column_names", Set::Never, false),
    rule("shrink_memory", Set::Never, false),
    rule("soft_heap_limit", Set::Never, false),
    rule("synchronous", Set::Rqlite, true),
    rule("table_info", Set::Inspect, true),
    rule("table_list", Set::Inspect, true),
    rule("table_xinfo", Set::Inspect, true),
    rule("temp_store", Set::Never, true),
    rule("temp_store_directory", Set::Never, false),
    rule("threads", Set::Never, true),
    rule("trusted_schema", Set::Never, true),
    rule("user_version", Set::Stored, true),
    rule("wal_autocheckpoint", Set::Rqlite, true),
    rule("wal_checkpoint", Set::RqliteAlways, false),
    rule("writable_schema", Set::Rqlite, true),
];

/// Functions a write may not call: their value depends on the connection or the file's
/// layout, not on the data, so replicas would store different values. (`random()`,
/// `randomblob()` and the clock follow the entry's inputs instead: see `raftlite_ffi`'s
/// deterministic connection.)
pub const WRITE_DENIED_FUNCTIONS: &[&str] = &[
    // Counts since the connection opened or of its last statement.
    "changes",
    "total_changes",
    // The byte offset of a row in the file.
    "sqlite_offset",
    // A pointer of this process (and, with two arguments, a way to install one).
    "fts3_tokenizer",
];

/// Virtual table modules a write may create a table with. Others (`dbstat`, the bytecode and
/// statement tables...) show the file's layout or the connection's state.
pub const WRITE_MODULES: &[&str] = &[
    "fts3",
    "fts4",
    "fts4aux",
    "fts3tokenize",
    "fts5",
    "fts5vocab",
    "rtree",
    "rtree_i32",
    "geopoly",
];

/// Tables (eponymous virtual tables) a write may not read, for the same reason.
const WRITE_DENIED_TABLES: &[&str] = &[
    "dbstat",
    "sqlite_dbpage",
    "sqlite_stmt",
    "bytecode",
    "tables_used",
];

/// What a request left on the connection that must be undone before the next one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleanup {
    /// Statements that reset the settings the request changed.
    pub resets: Vec<&'static str>,
    /// The request may have created temporary tables, views, triggers or indexes.
    pub temp_objects: bool,
    /// The request read or wrote a table, so it may have used a virtual table, whose module
    /// keeps caches on the connection (see [`Gate::has_virtual_tables`]).
    pub tables_used: bool,
    /// The request may have created, dropped or renamed a virtual table.
    pub schema_changed: bool,
}

/// At most this many written tables are remembered per request (beyond it, the request is
/// treated as having written every table: see [`Gate::written_tables`]).
const MAX_WRITTEN_TABLES: usize = 64;

impl Cleanup {
    pub fn is_empty(&self) -> bool {
        self.resets.is_empty() && !self.temp_objects && !self.tables_used && !self.schema_changed
    }
}

#[derive(Debug)]
struct State {
    mode: Mode,
    denial: Option<String>,
    cleanup: Cleanup,
    /// Tables (schema, name) the running request inserted into or updated; `None` once more
    /// than [`MAX_WRITTEN_TABLES`].
    written: Option<Vec<(String, String)>>,
    /// The same for the running statement alone (see [`Gate::statement_ran`]).
    statement_writes: Vec<(String, String)>,
    /// Whether the database holds virtual tables, when known (see `has_virtual_tables`).
    virtual_tables: Option<bool>,
    /// The tables each statement text wrote when it was last prepared: a statement from the
    /// connection's cache is not authorized again, so its writes are recalled from here (see
    /// [`Gate::statement_ran`]).
    writes_by_text: std::collections::HashMap<String, Vec<(String, String)>>,
}

/// At most this many statement texts are remembered (the writer caches 64 statements).
const MAX_REMEMBERED_TEXTS: usize = 512;

/// The gate of one connection (see the module documentation).
#[derive(Debug)]
pub struct Gate {
    state: Mutex<State>,
    /// Progress calls a request may make; counted only while `counting`.
    budget: AtomicU64,
    used: AtomicU64,
    counting: AtomicBool,
    exhausted: AtomicBool,
    /// The most bytes of rows a read may hold before it fails (`-max-query-result-size`);
    /// `u64::MAX` for writes, whose answers must not depend on a node's flag.
    result_cap: AtomicU64,
    /// Grows whenever a statement that creates, drops or alters a table is prepared: what
    /// is cached about tables' columns (`db::capture`) is stale once it moved.
    schema_generation: AtomicU64,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            state: Mutex::new(State {
                mode: Mode::Internal,
                denial: None,
                cleanup: Cleanup::default(),
                written: Some(Vec::new()),
                statement_writes: Vec::new(),
                virtual_tables: None,
                writes_by_text: std::collections::HashMap::new(),
            }),
            budget: AtomicU64::new(u64::MAX),
            used: AtomicU64::new(0),
            counting: AtomicBool::new(false),
            exhausted: AtomicBool::new(false),
            result_cap: AtomicU64::new(u64::MAX),
            schema_generation: AtomicU64::new(0),
        }
    }
}

/// Puts the gate back in its previous mode when dropped.
#[must_use = "the mode lasts as long as the guard"]
pub struct ModeGuard<'g> {
    gate: &'g Gate,
    previous: Mode,
}

impl Drop for ModeGuard<'_> {
    fn drop(&mut self) {
        self.gate.state.lock().mode = self.previous;
    }
}

/// Stops counting the budget when dropped.
#[must_use = "counting lasts as long as the guard"]
pub struct Counting<'g> {
    gate: &'g Gate,
}

impl Drop for Counting<'_> {
    fn drop(&mut self) {
        self.gate.counting.store(false, Ordering::Relaxed);
    }
}

/// How a request used its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetUse {
    pub used: u64,
    pub budget: u64,
    pub exhausted: bool,
}

impl Gate {
    /// The mode now.
    pub fn mode(&self) -> Mode {
        self.state.lock().mode
    }

    /// Switches to `mode` until the guard drops.
    pub fn enter(&self, mode: Mode) -> ModeGuard<'_> {
        let mut state = self.state.lock();
        let previous = std::mem::replace(&mut state.mode, mode);
        state.denial = None;
        ModeGuard {
            gate: self,
            previous,
        }
    }

    /// The reason for the last refusal since the last call, if any.
    pub fn take_denial(&self) -> Option<String> {
        self.state.lock().denial.take()
    }

    /// What the request running now must undo when it ends; clears it (and the written
    /// tables).
    pub fn take_cleanup(&self) -> Cleanup {
        let mut state = self.state.lock();
        state.written = Some(Vec::new());
        std::mem::take(&mut state.cleanup)
    }

    /// The tables (schema, name) the running request inserted into or updated, including from
    /// triggers; `None` when there were too many to list (the caller then checks them all).
    pub fn written_tables(&self) -> Option<Vec<(String, String)>> {
        self.state.lock().written.clone()
    }

    /// Called before a user's statement is prepared (see [`Gate::statement_ran`]).
    pub fn statement_starts(&self) {
        self.state.lock().statement_writes.clear();
    }

    /// Called after a user's statement ran: the tables it wrote are remembered under its text
    /// when SQLite asked the authorizer about them (a fresh prepare, or a re-prepare while it
    /// ran), and recalled into the request's when it did not (a statement handed out again by
    /// the statement cache, whose actions are those of its prepare).
    pub fn statement_ran(&self, sql: &str) {
        let mut state = self.state.lock();
        let state = &mut *state;
        if !state.statement_writes.is_empty() {
            if state.writes_by_text.len() >= MAX_REMEMBERED_TEXTS {
                state.writes_by_text.clear();
            }
            state
                .writes_by_text
                .insert(sql.to_string(), state.statement_writes.clone());
        } else if let Some(recalled) = state.writes_by_text.get(sql) {
            for entry in recalled {
                note_table(&mut state.written, entry.clone());
            }
        }
    }

    /// Whether the database holds virtual tables, as last recorded with
    /// [`Gate::set_has_virtual_tables`]; `None` when unknown (a new connection, or after a
    /// request that may have created or dropped one).
    ///
    /// Why it matters: full-text and R-tree modules keep caches on the connection (their
    /// configuration, FTS5's structure record) and fill them with programs of their own, which
    /// the budget counts. A connection that just opened (a restarted node) would count those
    /// steps where a warm one does not. So after a request that used a table of a database
    /// holding virtual tables, the schema is reloaded, which disconnects them: every request
    /// starts with the same, empty caches on every node.
    pub fn has_virtual_tables(&self) -> Option<bool> {
        self.state.lock().virtual_tables
    }

    pub fn set_has_virtual_tables(&self, known: Option<bool>) {
        self.state.lock().virtual_tables = known;
    }

    /// Starts a request's budget: `budget` progress calls, none used yet.
    pub fn start_budget(&self, budget: u64) {
        self.budget.store(budget, Ordering::Relaxed);
        self.used.store(0, Ordering::Relaxed);
        self.exhausted.store(false, Ordering::Relaxed);
        self.counting.store(false, Ordering::Relaxed);
        self.result_cap.store(u64::MAX, Ordering::Relaxed);
    }

    /// Caps the rows a read's statement may return, in bytes of values (call after
    /// [`Gate::start_budget`], which lifts the cap: writes are never capped, since a write's
    /// outcome must not depend on one node's setting).
    pub fn cap_result_bytes(&self, cap: u64) {
        self.result_cap.store(cap, Ordering::Relaxed);
    }

    pub fn result_cap(&self) -> u64 {
        self.result_cap.load(Ordering::Relaxed)
    }

    /// Counts progress calls against the budget until the guard drops (around the steps of
    /// users' statements only, so raftlite's own statements, and schema loads during a
    /// prepare, which happen on one node and not another, never count).
    pub fn count(&self) -> Counting<'_> {
        self.counting.store(true, Ordering::Relaxed);
        Counting { gate: self }
    }

    /// True once the running request went over its budget.
    pub fn exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Relaxed)
    }

    pub fn budget_use(&self) -> BudgetUse {
        BudgetUse {
            used: self.used.load(Ordering::Relaxed),
            budget: self.budget.load(Ordering::Relaxed),
            exhausted: self.exhausted(),
        }
    }

    /// No budget: counting never stops anything (the default).
    pub fn unlimited(&self) {
        self.start_budget(u64::MAX);
    }

    fn deny(state: &mut State, reason: String) -> Authorization {
        state.denial = Some(reason);
        Authorization::Deny
    }
}

impl ProgressHandler for Gate {
    fn keep_going(&self) -> bool {
        if !self.counting.load(Ordering::Relaxed) {
            return true;
        }
        // Once over, every program still running is stopped at once (a virtual table that
        // cleans up after its interrupted statement runs a few); none of that is work.
        if self.exhausted.load(Ordering::Relaxed) {
            return false;
        }
        // One thread uses the connection at a time: plain loads and stores suffice.
        let used = self.used.load(Ordering::Relaxed).saturating_add(1);
        self.used.store(used, Ordering::Relaxed);
        if used > self.budget.load(Ordering::Relaxed) {
            self.exhausted.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl Gate {
    /// See the field: compared, never read for its value.
    pub fn schema_generation(&self) -> u64 {
        self.schema_generation.load(Ordering::Relaxed)
    }
}

impl Authorizer for Gate {
    fn authorize(&self, r: &AuthRequest<'_>) -> Authorization {
        if matches!(
            r.action,
            AuthAction::CreateTable
                | AuthAction::CreateTempTable
                | AuthAction::DropTable
                | AuthAction::DropTempTable
                | AuthAction::AlterTable
                | AuthAction::CreateVtable
                | AuthAction::DropVtable
        ) || (matches!(r.action, AuthAction::Savepoint | AuthAction::Transaction)
            && r.arg1
                .as_deref()
                .is_some_and(|op| op.eq_ignore_ascii_case("ROLLBACK")))
        {
            // A rollback can undo a schema change as surely as DDL makes one.
            self.schema_generation.fetch_add(1, Ordering::Relaxed);
        }
        let mut state = self.state.lock();
        match state.mode {
            Mode::Internal => Authorization::Allow,
            Mode::Read => match read_decision(r) {
                Ok(()) => Authorization::Allow,
                Err(reason) => Gate::deny(&mut state, reason),
            },
            Mode::Write | Mode::Load => match write_decision(r, &mut state.cleanup) {
                Ok(answer) => {
                    if matches!(r.action, AuthAction::Insert | AuthAction::Update) {
                        note_written(&mut state, r);
                    }
                    answer
                }
                Err(reason) => Gate::deny(&mut state, reason),
            },
        }
    }
}

fn note_written(state: &mut State, r: &AuthRequest<'_>) {
    let schema = r.database.as_deref().unwrap_or("main").to_ascii_lowercase();
    let table = r.arg1.as_deref().unwrap_or("").to_string();
    // SQLite's own tables (the schema, written by DDL; sequences; statistics) have no rowid
    // to pick.
    if table
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("sqlite_"))
    {
        return;
    }
    let entry = (schema, table);
    if !state.statement_writes.contains(&entry) && state.statement_writes.len() < MAX_WRITTEN_TABLES
    {
        state.statement_writes.push(entry.clone());
    }
    note_table(&mut state.written, entry);
}

/// Adds a table to a request's written tables, which become `None` (every table) past
/// [`MAX_WRITTEN_TABLES`].
fn note_table(written: &mut Option<Vec<(String, String)>>, entry: (String, String)) {
    let Some(list) = written else { return };
    if list
        .iter()
        .any(|(s, t)| *s == entry.0 && t.eq_ignore_ascii_case(&entry.1))
    {
        return;
    }
    if list.len() >= MAX_WRITTEN_TABLES {
        *written = None;
    } else {
        list.push(entry);
    }
}

fn lower(s: &Option<std::borrow::Cow<'_, str>>) -> String {
    s.as_deref().unwrap_or("").to_ascii_lowercase()
}

/// The first of `names` that is one of raftlite's own tables: the state table, and the
/// writer's temporary table of captured changes (`db::capture`).
fn own_table(names: &[&str]) -> Option<&'static str> {
    names.iter().find_map(|name| {
        [STATE_TABLE, super::capture::EVENTS_TABLE]
            .into_iter()
            .find(|own| name.eq_ignore_ascii_case(own))
    })
}

/// The rule for pragma `name`, if it is on the list.
pub fn pragma_rule(name: &str) -> Option<&'static PragmaRule> {
    PRAGMAS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

fn own_table_refusal(table: &str) -> String {
    format!("table {table} is raftlite's own and cannot be used in a write")
}

fn write_decision(r: &AuthRequest<'_>, cleanup: &mut Cleanup) -> Result<Authorization, String> {
    write_check(r, cleanup).map(|ignore| {
        if ignore {
            Authorization::Ignore
        } else {
            Authorization::Allow
        }
    })
}

/// `Ok(true)`: skip the action silently (a layout pragma); `Ok(false)`: allow it.
fn write_check(r: &AuthRequest<'_>, cleanup: &mut Cleanup) -> Result<bool, String> {
    use AuthAction as A;
    let arg1 = r.arg1.as_deref().unwrap_or("");
    let arg2 = r.arg2.as_deref().unwrap_or("");
    let database = r.database.as_deref().unwrap_or("main");
    match r.action {
        A::Pragma => write_pragma(arg1, r.arg2.is_some(), database, cleanup),
        A::Attach | A::Detach => Err(
            "ATTACH and DETACH are not allowed: a database outside the replicated one would \
             differ between nodes"
                .into(),
        ),
        A::Function => {
            let name = lower(&r.arg2);
            if name == "load_extension" {
                return Err("load_extension() is not allowed".into());
            }
            if WRITE_DENIED_FUNCTIONS.contains(&name.as_str()) {
                return Err(format!(
                    "function {name}() is not allowed in a write: its value differs between nodes"
                ));
            }
            Ok(false)
        }
        A::Insert | A::Update | A::Delete => {
            cleanup.tables_used = true;
            if let Some(own) = own_table(&[arg1]) {
                return Err(own_table_refusal(own));
            }
            // Writes to the schema table itself are refused by SQLite (and its defensive
            // mode); DDL is authorized as a write to it, so it is not refused here.
            if database.eq_ignore_ascii_case("temp") {
                cleanup.temp_objects = true;
            }
            Ok(false)
        }
        A::Read => {
            cleanup.tables_used = true;
            if let Some(own) = own_table(&[arg1]) {
                return Err(own_table_refusal(own));
            }
            let lower_table = arg1.to_ascii_lowercase();
            if let Some(pragma) = lower_table.strip_prefix("pragma_") {
                if !pragma_rule(pragma).is_some_and(|p| p.read_in_writes) {
                    return Err(local_report(pragma));
                }
            }
            if WRITE_DENIED_TABLES
                .iter()
                .any(|t| t.eq_ignore_ascii_case(arg1))
            {
                return Err(format!(
                    "table {arg1} is not allowed in a write: it shows what differs between nodes"
                ));
            }
            Ok(false)
        }
        A::CreateVtable => {
            cleanup.schema_changed = true;
            if let Some(own) = own_table(&[arg1]) {
                return Err(own_table_refusal(own));
            }
            if !WRITE_MODULES.iter().any(|m| m.eq_ignore_ascii_case(arg2)) {
                return Err(format!(
                    "virtual table module {arg2} is not allowed in a write (allowed: {})",
                    WRITE_MODULES.join(", ")
                ));
            }
            if database.eq_ignore_ascii_case("temp") {
                cleanup.temp_objects = true;
            }
            Ok(false)
        }
        A::CreateTempTable | A::CreateTempView | A::CreateTempTrigger | A::CreateTempIndex => {
            // arg1 is the new object; arg2, for triggers and indexes, the table it is on.
            if let Some(own) = own_table(&[arg1, arg2]) {
                return Err(own_table_refusal(own));
            }
            cleanup.temp_objects = true;
            Ok(false)
        }
        // ANALYZE of every table (`ANALYZE`, `PRAGMA optimize`) reaches the state table too:
        // it is skipped (SQLite's ANALYZE passes over a table the authorizer ignores), so
        // the statement works and leaves no statistics of raftlite's own table.
        A::Analyze if own_table(&[arg1]).is_some() => Ok(true),
        A::CreateTable | A::CreateView | A::DropTable | A::DropVtable | A::Analyze | A::Reindex => {
            if matches!(r.action, A::DropTable | A::DropVtable) {
                cleanup.schema_changed = true;
            }
            if let Some(own) = own_table(&[arg1]) {
                return Err(own_table_refusal(own));
            }
            Ok(false)
        }
        A::CreateIndex | A::CreateTrigger | A::DropIndex | A::DropTrigger | A::AlterTable => {
            if r.action == A::AlterTable {
                cleanup.schema_changed = true;
            }
            // The table is arg2 (for ALTER TABLE, arg1 is the schema).
            if let Some(own) = own_table(&[arg1, arg2]) {
                return Err(own_table_refusal(own));
            }
            Ok(false)
        }
        A::Savepoint => {
            if arg2
                .get(..RESERVED_SAVEPOINT_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_SAVEPOINT_PREFIX))
            {
                return Err(format!(
                    "savepoint names starting with \"{RESERVED_SAVEPOINT_PREFIX}\" are reserved"
                ));
            }
            Ok(false)
        }
        A::Select
        | A::Recursive
        | A::Transaction
        | A::DropView
        | A::DropTempTable
        | A::DropTempView
        | A::DropTempTrigger
        | A::DropTempIndex => Ok(false),
        A::Other(code) => Err(format!("statement not allowed (authorizer action {code})")),
    }
}

fn write_pragma(
    name: &str,
    sets: bool,
    database: &str,
    cleanup: &mut Cleanup,
) -> Result<bool, String> {
    let Some(rule) = pragma_rule(name) else {
        return Err(format!("disallowed pragma: {name} is not supported"));
    };
    let on_main = database.eq_ignore_ascii_case("main");
    match (rule.set, sets) {
        (Set::RqliteAlways, _) => Err(crate::db::rewrite::DISALLOWED_PRAGMA_ERROR.into()),
        // Reading: a PRAGMA statement's value only goes back to the client (a table-valued
        // `pragma_*` function, whose value can be stored, is checked as a table read).
        (Set::Inspect, _) | (_, false) => Ok(false),
        (Set::Stored | Set::Action, true) if on_main => Ok(false),
        (Set::Stored | Set::Action, true) => Err(format!(
            "disallowed pragma: {} can only be set on the main database",
            rule.name
        )),
        (Set::ForOneRequest(reset), true) => {
            if !cleanup.resets.contains(&reset) {
                cleanup.resets.push(reset);
            }
            Ok(false)
        }
        (Set::InertInTransaction, true) => Ok(false),
        (Set::Layout, true) => Ok(true),
        (Set::Rqlite, true) => Err(crate::db::rewrite::DISALLOWED_PRAGMA_ERROR.into()),
        (Set::Never, true) => Err(format!(
            "disallowed pragma: {} cannot be set (it would change this node's connection, \
             not the replicated database)",
            rule.name
        )),
    }
}

fn local_report(name: &str) -> String {
    format!("disallowed pragma: {name} is not allowed in a write: its value differs between nodes")
}

fn read_decision(r: &AuthRequest<'_>) -> Result<(), String> {
    use AuthAction as A;
    match r.action {
        // The raw pages hold what the state table keeps out of reads (and every freed page).
        A::Read
            if r.arg1
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("sqlite_dbpage")) =>
        {
            Err("table sqlite_dbpage is not allowed: it reads the file's raw pages".into())
        }
        A::Select | A::Read | A::Recursive => Ok(()),
        A::Function => {
            if lower(&r.arg2) == "load_extension" {
                Err("load_extension() is not allowed".into())
            } else {
                Ok(())
            }
        }
        A::Pragma => {
            let name = r.arg1.as_deref().unwrap_or("");
            match pragma_rule(name) {
                None => Err(format!("disallowed pragma: {name} is not supported")),
                Some(rule) => match (rule.set, r.arg2.is_some()) {
                    (Set::RqliteAlways, _) => {
                        Err(crate::db::rewrite::DISALLOWED_PRAGMA_ERROR.into())
                    }
                    // These change the database when they run, with or without a value.
                    (Set::Action, _) | (Set::Stored, true) => Err(QUERY_WRITE_ERROR.into()),
                    (Set::Inspect, _) | (_, false) => Ok(()),
                    (_, true) => Err(format!(
                        "disallowed pragma: {} cannot be set in a query",
                        rule.name
                    )),
                },
            }
        }
        _ => Err(QUERY_WRITE_ERROR.into()),
    }
}

#[cfg(test)]
mod tests;
