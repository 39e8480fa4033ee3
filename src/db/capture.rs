//! Change data capture on the writer: the rows each applied write entry changed, as rqlite's
//! CDC events, taken from SQLite's pre-update hook while the entry runs (never by comparing
//! states).
//!
//! The hook ([`Capture`], registered on the writer with [`install`]) sees each row change
//! before it happens, but a change can still be undone after it: by the statement failing, by
//! `ROLLBACK TO` a savepoint (the user's, or the one each request runs in), by a `ROLLBACK`
//! conflict clause, or by the entry's transaction failing as a whole. So the hook only
//! collects a statement's changes in memory, and after each statement [`after_statement`]
//! decides whether they stayed and moves those that did, as events, into a table of the
//! writer's temporary schema, [`EVENTS_TABLE`], inside the entry's transaction. From then on
//! SQLite itself undoes them together with the rows they describe, whatever undoes those.
//! When the entry is recorded, [`take_entry_events`] reads and empties the table in the same
//! transaction, so the events the caller gets are exactly those of the rows the entry's
//! COMMIT makes durable.
//!
//! Whether a failed statement's changes stayed: SQLite undoes them (conflict clause `ABORT`,
//! the default, and any other error) unless the clause is `FAIL`, which keeps the rows changed
//! before the failing one, and what its triggers did. Either all of the statement's recorded
//! changes stayed or none did, so the last one is looked up: they stayed if its row is there
//! as the change left it (or, for a delete, is gone). Where the row cannot tell (a `WITHOUT
//! ROWID` table, `row_ids_only`, an update to the same values), SQLite's change count decides:
//! a `FAIL` adds the statement's rows to it, an `ABORT` nothing.
//!
//! Invariants:
//! - Only entries the caller arms ([`arm`]) on a configured writer are captured (loads,
//!   `VACUUM` and raftlite's own writes are not); only tables of `main`, never
//!   [`super::STATE_TABLE`], SQLite's own tables or virtual tables' shadow tables.
//! - Users' SQL cannot reach [`EVENTS_TABLE`]: the gate refuses it by name, the temporary
//!   objects a request leaves are dropped without it, and raftlite's own statements on it
//!   never go through the shared statement cache (a user's statement of the same text would
//!   get them without the gate; they have a private one). The table is empty between
//!   entries.
//! - Capture changes nothing users' SQL can see or count: the hook is set, disarmed, on every
//!   connection that runs users' SQL ([`Capture`]), and `last_insert_rowid()` is put back after
//!   raftlite's own statements.
//! - Capture never decides an entry's outcome ([`after_statement`]), and what it holds is
//!   bounded ([`MAX_CAPTURED_BYTES`]).
//! - Events are built from the entry alone, so every node produces the same events for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use raftlite_ffi::{Change, ChangeOp, Connection, PreupdateHook, Value};
use serde_json::Value as Json;

use super::execute::ApplyError;

/// The writer's temporary table holding the events of the entry being applied.
pub const EVENTS_TABLE: &str = "_raftlite_cdc_events";

/// What to capture (rqlite's `table_filter` and `row_ids_only`).
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Only tables whose names this matches (anywhere in the name, as Go's `MatchString`).
    pub table_filter: Option<regex::Regex>,
    /// Events without the rows' values.
    pub row_ids_only: bool,
    /// [`MAX_CAPTURED_BYTES`] (smaller only in tests).
    pub max_bytes: usize,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            table_filter: None,
            row_ids_only: false,
            max_bytes: MAX_CAPTURED_BYTES,
        }
    }
}

/// A row change the hook saw, copied out of SQLite's memory.
#[derive(Debug, Clone, PartialEq)]
struct RowChange {
    op: ChangeOp,
    table: String,
    old_rowid: i64,
    new_rowid: i64,
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
}

/// The most bytes of row images one statement, and one entry, may hold in events (the same on
/// every node, so every node drops the same ones): 128 MiB, as much as one read's answer may
/// hold (`-max-query-result-size`'s default). A statement or an entry over it has one event
/// with an `error` instead of its rows' events. It bounds what capture holds in memory and
/// keeps every queued entry far below SQLite's largest value (a larger one would stop every
/// node at the same entry).
pub const MAX_CAPTURED_BYTES: usize = 128 << 20;

/// The pre-update hook of every connection that runs users' SQL (see the module
/// documentation). Installed everywhere, disarmed: SQLite compiles some statements
/// differently when a hook is set (`DELETE` without `WHERE` deletes row by row instead of
/// clearing the table), and the write budget counts the compiled program's steps, so every
/// node, capturing or not, and every connection that applies entries (a SQL load's prebuilt
/// database, a point-in-time restore) must run the same programs.
#[derive(Debug, Default)]
pub struct Capture {
    /// Set once this node captures (`configure`); until then nothing is recorded.
    options: parking_lot::RwLock<Option<CaptureOptions>>,
    armed: AtomicBool,
    /// The changes of the statement running now.
    statement: Mutex<Statement>,
    /// Whether each table name passes the filter.
    matches: Mutex<HashMap<String, bool>>,
    /// What events need of each table, for the entry being applied, as of the gate's schema
    /// generation (`Gate::schema_generation`).
    tables: Mutex<(u64, HashMap<String, Arc<TableInfo>>)>,
    /// Changes the hook could not record (it panicked): each is a lost event, so the caller
    /// stops rather than go on (see [`after_statement`]).
    lost: AtomicU64,
    /// The size of every row image the entry being applied changed, rolled back or not (so
    /// the same on every node): over the bound, the entry's events give way to one error
    /// event, and no statement records more images.
    entry_bytes: std::sync::atomic::AtomicUsize,
}

/// What the hook recorded of the statement running now.
#[derive(Debug, Default)]
struct Statement {
    changes: Vec<RowChange>,
    /// The size of the row images recorded (see [`MAX_CAPTURED_BYTES`]).
    bytes: usize,
    /// Over [`MAX_CAPTURED_BYTES`]: `changes` stopped growing; `last` still follows.
    overflowed: bool,
    /// Once it overflowed, the statement's last change (whether a failed statement's changes
    /// stayed is read from it); before, that is the last of `changes`.
    last: Option<RowChange>,
}

impl Statement {
    fn last(&self) -> Option<&RowChange> {
        self.last.as_ref().or(self.changes.last())
    }
}

/// What a value takes in an event (a blob in base64), roughly.
fn value_bytes(v: raftlite_ffi::ValueRef<'_>) -> usize {
    match v {
        raftlite_ffi::ValueRef::Text(t) => t.len() + 16,
        raftlite_ffi::ValueRef::Blob(b) => b.len() / 3 * 4 + 20,
        _ => 16,
    }
}

impl PreupdateHook for Capture {
    fn on_change(&self, c: &Change<'_>) {
        if !self.armed.load(Ordering::Relaxed)
            || c.database != "main"
            || c.table.eq_ignore_ascii_case(super::STATE_TABLE)
            // SQLite's own tables (`sqlite_stat1`, which ANALYZE writes) are not users' rows.
            || c.table.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("sqlite_"))
        {
            return;
        }
        let options = self.options.read();
        let Some(options) = options.as_ref() else {
            return;
        };
        if !self.wanted(options, &c.table) {
            return;
        }
        let (has_before, has_after) = match c.op {
            ChangeOp::Insert => (false, true),
            ChangeOp::Update => (true, true),
            ChangeOp::Delete => (true, false),
        };
        // Sized before anything is copied, so one huge row is not copied either.
        let mut size = 64 + c.table.len();
        if !options.row_ids_only {
            for i in 0..c.column_count() {
                if has_before {
                    size = size.saturating_add(c.before(i).map_or(16, value_bytes));
                }
                if has_after {
                    size = size.saturating_add(c.after(i).map_or(16, value_bytes));
                }
            }
        }
        let mut statement = self.statement.lock();
        statement.bytes = statement.bytes.saturating_add(size);
        let entry = self
            .entry_bytes
            .fetch_add(size, Ordering::Relaxed)
            .saturating_add(size);
        if !statement.overflowed
            && (statement.bytes > options.max_bytes || entry > options.max_bytes)
        {
            statement.overflowed = true;
            statement.changes = Vec::new();
        }
        // A column SQLite cannot give (a virtual generated column, which is not stored) reads
        // as NULL; `event_json` leaves such columns out.
        let image = |old: bool| -> Option<Vec<Value>> {
            if options.row_ids_only || statement.overflowed {
                return None;
            }
            Some(
                (0..c.column_count())
                    .map(|i| {
                        let v = if old { c.before(i) } else { c.after(i) };
                        v.map_or(Value::Null, |v| v.to_owned_value())
                    })
                    .collect(),
            )
        };
        let change = RowChange {
            op: c.op,
            table: c.table.to_string(),
            old_rowid: c.old_rowid,
            new_rowid: c.new_rowid,
            before: if has_before { image(true) } else { None },
            after: if has_after { image(false) } else { None },
        };
        if statement.overflowed {
            statement.last = Some(change);
        } else {
            statement.changes.push(change);
        }
    }

    fn panicked(&self) {
        self.lost.fetch_add(1, Ordering::Relaxed);
    }
}

impl Capture {
    fn wanted(&self, options: &CaptureOptions, table: &str) -> bool {
        let Some(filter) = &options.table_filter else {
            return true;
        };
        let mut matches = self.matches.lock();
        if let Some(&m) = matches.get(table) {
            return m;
        }
        let m = filter.is_match(table);
        matches.insert(table.to_string(), m);
        m
    }
}

/// Installs the hook, disarmed, on a connection that runs users' SQL (`db::settings`
/// calls it for every one: see [`Capture`]).
///
/// It creates [`EVENTS_TABLE`] too: what a write can see of the temporary schema
/// (`temp.sqlite_schema`, `pragma_table_list`) must be the same on every node.
pub fn install_disarmed(conn: &mut Connection) -> raftlite_ffi::Result<()> {
    conn.set_preupdate_hook(Some(Arc::new(Capture::default())))?;
    create_events_table(conn)
}

fn create_events_table(conn: &Connection) -> raftlite_ffi::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {EVENTS_TABLE}(seq INTEGER PRIMARY KEY, event TEXT NOT NULL)"
    ))
}

/// Makes this connection (the writer) capture what armed entries change: creates
/// [`EVENTS_TABLE`] (outside any transaction) and sets what to capture. Installs the hook
/// first if the connection has none.
pub fn configure(conn: &mut Connection, options: CaptureOptions) -> raftlite_ffi::Result<()> {
    if conn.preupdate_hook::<Capture>().is_none() {
        install_disarmed(conn)?;
    }
    create_events_table(conn)?;
    if let Some(c) = conn.preupdate_hook::<Capture>() {
        *c.options.write() = Some(options);
    }
    Ok(())
}

/// Whether `conn` captures changes (it was [`configure`]d).
pub fn is_configured(conn: &Connection) -> bool {
    conn.preupdate_hook::<Capture>()
        .is_some_and(|c| c.options.read().is_some())
}

/// Captures (true) or ignores (false) the changes of what runs next: the caller arms it for a
/// write entry and disarms it after. Arming a connection that is not configured does nothing.
pub fn arm(conn: &Connection, on: bool) {
    // Every connection has the hook; one that does not capture has nothing to reset (its hook
    // never records), and this runs for every entry.
    if let Some(c) = conn
        .preupdate_hook::<Capture>()
        .filter(|c| c.options.read().is_some())
    {
        c.armed.store(on, Ordering::Relaxed);
        *c.statement.lock() = Statement::default();
        c.matches.lock().clear();
        c.tables.lock().1.clear();
        c.lost.store(0, Ordering::Relaxed);
        c.entry_bytes.store(0, Ordering::Relaxed);
    }
}

/// Taken before a statement runs: the connection's change count then (None without capture).
#[derive(Debug, Clone, Copy)]
pub struct StatementMark(Option<i64>);

/// Call before each statement of a write.
pub fn before_statement(conn: &Connection) -> Result<StatementMark, ApplyError> {
    match conn.preupdate_hook::<Capture>() {
        Some(c) if c.armed.load(Ordering::Relaxed) => {
            *c.statement.lock() = Statement::default();
            Ok(StatementMark(Some(conn.total_changes()?)))
        }
        _ => Ok(StatementMark(None)),
    }
}

/// Call after each statement of a write, `failed` or not: keeps its changes that stayed as
/// events in [`EVENTS_TABLE`] (see the module documentation).
///
/// Capture never decides an entry's outcome: an error here that is not a local fault (a
/// table the lookups cannot read, a value SQLite refuses) becomes an event with an `error`,
/// the same on every node; only a local fault (I/O, a full disk, memory, the hook failing)
/// is returned, and stops or holds the node as any local fault does.
pub fn after_statement(
    conn: &Connection,
    mark: StatementMark,
    failed: bool,
) -> Result<(), ApplyError> {
    let (Some(capture), Some(changes_before)) = (conn.preupdate_hook::<Capture>(), mark.0) else {
        return Ok(());
    };
    let lost = capture.lost.swap(0, Ordering::Relaxed);
    if lost > 0 {
        // A local fault of this node (its hook failed), not the entry's: stop rather than
        // send a history with holes.
        return Err(raftlite_ffi::Error::new(
            raftlite_ffi::sys::SQLITE_INTERNAL,
            format!("change data capture failed to record {lost} row changes"),
        ));
    }
    let statement = std::mem::take(&mut *capture.statement.lock());
    let Some(last) = statement.last().cloned() else {
        return Ok(());
    };
    if conn.is_autocommit()? {
        // The statement ended the transaction (a ROLLBACK conflict clause, or the budget):
        // everything it held is undone, events included, and any schema change with it.
        capture.tables.lock().1.clear();
        return Ok(());
    }
    // The statements below are raftlite's own: what users' SQL sees of the connection
    // (`last_insert_rowid()`) must not change on the nodes that capture.
    let rowid = conn.last_insert_rowid()?;
    let max_bytes = capture
        .options
        .read()
        .as_ref()
        .map_or(MAX_CAPTURED_BYTES, |o| o.max_bytes);
    let outcome = match keep_statement(conn, &statement, failed, changes_before, max_bytes) {
        Ok(()) => Ok(()),
        Err(e) if super::error::is_local_fault(&e) => Err(e),
        Err(e) => {
            let event = error_event(&last, &format!("change data capture: {e}"), true);
            match insert_event(conn, &event) {
                Err(e) if super::error::is_local_fault(&e) => Err(e),
                // Not even the error event could be written: logged, never the entry's
                // failure (only this node would fail it).
                Err(e) => {
                    tracing::error!("change data capture: an error event could not be kept: {e}");
                    Ok(())
                }
                Ok(()) => Ok(()),
            }
        }
    };
    conn.set_last_insert_rowid(rowid)?;
    outcome
}

fn keep_statement(
    conn: &Connection,
    statement: &Statement,
    failed: bool,
    changes_before: i64,
    max_bytes: usize,
) -> Result<(), ApplyError> {
    let Some(last) = statement.last() else {
        return Ok(());
    };
    if failed {
        let kept = match stayed(conn, last) {
            Some(kept) => kept,
            // SQLite counts the rows of a statement it kept (`FAIL`) and sets the count of one
            // it undid to zero.
            None => conn.changes()? > 0 && conn.total_changes()? != changes_before,
        };
        if !kept {
            return Ok(());
        }
    }
    let mut tables: HashMap<String, Arc<TableInfo>> = HashMap::new();
    if statement.overflowed {
        // Always written (naming the table unless it is a shadow table): the rows it stands
        // for may be in other tables.
        let shadow = cached_table_info(conn, &last.table).shadow;
        let event = error_event(
            last,
            &format!(
                "the row changes are over {max_bytes} bytes of row images (this statement's, or \
                 the entry's so far): their events are left out"
            ),
            !shadow,
        );
        insert_event(conn, &event)?;
        return Ok(());
    }
    for change in &statement.changes {
        let info = tables
            .entry(change.table.clone())
            .or_insert_with(|| cached_table_info(conn, &change.table));
        if info.shadow {
            continue;
        }
        insert_event(conn, &event_json(change, &info.columns))?;
    }
    Ok(())
}

fn insert_event(conn: &Connection, event: &str) -> Result<(), ApplyError> {
    // Never through the shared statement cache: a user's statement of the same text would
    // be handed this one, which the gate never saw. The private one is apart.
    let mut insert = conn.prepare_private_cached(&format!(
        "INSERT INTO temp.{EVENTS_TABLE}(event) VALUES(?1)"
    ))?;
    insert.bind_text(1, event)?;
    while insert.step()?.is_row() {}
    Ok(())
}

/// An event that stands for changes capture could not describe: rqlite's event with `error`.
fn error_event(change: &RowChange, error: &str, with_table: bool) -> String {
    let mut fields: Vec<(&str, Json)> = vec![("op", Json::from(change.op.as_str()))];
    if with_table && !change.table.is_empty() {
        fields.push(("table", Json::from(change.table.as_str())));
    }
    fields.push(("error", Json::from(error)));
    write_fields(&fields)
}

/// Reads and empties [`EVENTS_TABLE`], inside the entry's transaction: the entry's events in
/// the order their rows changed, each one rqlite's JSON event object. Over
/// [`MAX_CAPTURED_BYTES`], one event with an `error` stands for them all.
pub fn take_entry_events(conn: &Connection) -> raftlite_ffi::Result<Vec<String>> {
    let Some(capture) = conn.preupdate_hook::<Capture>() else {
        return Ok(Vec::new());
    };
    let Some(max_bytes) = capture.options.read().as_ref().map(|o| o.max_bytes) else {
        return Ok(Vec::new());
    };
    // Over the bound for the whole entry, rolled-back rows included (the same on every
    // node): at most the first event is read, for the error event's op and table.
    let entry_over = capture.entry_bytes.load(Ordering::Relaxed) > max_bytes;
    let mut events = Vec::new();
    let mut bytes = 0usize;
    let mut over = None;
    {
        // Not through the shared statement cache (see `insert_event`).
        let mut stmt = conn.prepare_private_cached(&format!(
            "SELECT event FROM temp.{EVENTS_TABLE} ORDER BY seq"
        ))?;
        while stmt.step()?.is_row() {
            let event = String::from_utf8_lossy(stmt.column_text(0)).into_owned();
            bytes = bytes.saturating_add(event.len());
            if bytes > max_bytes || entry_over {
                over = events.first().cloned().or(Some(event));
                break;
            }
            events.push(event);
        }
    }
    if let Some(first) = over {
        let first: Json = serde_json::from_str(&first).unwrap_or(Json::Null);
        let mut fields: Vec<(&str, Json)> = vec![("op", first["op"].clone())];
        if first["table"].is_string() {
            fields.push(("table", first["table"].clone()));
        }
        fields.push((
            "error",
            Json::from(format!(
                "the entry's events are over {max_bytes} bytes: they are left out"
            )),
        ));
        events = vec![write_fields(&fields)];
    }
    if !events.is_empty() {
        conn.execute_batch(&format!("DELETE FROM temp.{EVENTS_TABLE}"))?;
    }
    Ok(events)
}

/// Whether a failed statement's last change is still in the database (see the module
/// documentation), or None when the row cannot tell: a `WITHOUT ROWID` table (no rowid to
/// look it up by), no values to compare (`row_ids_only`), an update that left the values as
/// they were, or a lookup that fails (the users' schema decides what it meets: a column named
/// like every rowid alias, a generated column whose expression fails).
fn stayed(conn: &Connection, change: &RowChange) -> Option<bool> {
    let rowid = match change.op {
        ChangeOp::Delete => change.old_rowid,
        ChangeOp::Insert | ChangeOp::Update => change.new_rowid,
    };
    let info = cached_table_info(conn, &change.table);
    let columns = info.columns.as_ref().ok()?;
    // The stored columns, compared by name: a virtual generated column is computed on read
    // (its expression may fail) and the hook has no value for it.
    let stored: Vec<(usize, &Column)> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.virtual_generated)
        .collect();
    let alias = ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|a| !columns.iter().any(|c| c.name.eq_ignore_ascii_case(a)))?;
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let selected = if stored.is_empty() {
        "1".to_string()
    } else {
        stored
            .iter()
            .map(|(_, c)| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = format!(
        "SELECT {selected} FROM main.{} WHERE {alias} = ?1",
        quote(&change.table)
    );
    let mut stmt = conn.prepare(&sql).ok()?;
    stmt.bind_i64(1, rowid).ok()?;
    let found = stmt.step().ok()?.is_row();
    match (change.op, &change.after) {
        (ChangeOp::Delete, _) => Some(!found),
        (_, _) if !found => Some(false),
        (_, None) => None,
        (_, Some(after)) if change.before.as_ref() == Some(after) => None,
        (_, Some(after)) => Some(stored.iter().enumerate().all(|(i, (at, _))| {
            after
                .get(*at)
                .is_some_and(|v| *v == stmt.column_owned(i as i32))
        })),
    }
}

/// A column as the hook counts them: every column but a virtual table's hidden ones.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    /// A generated column computed when read (`AS (...) VIRTUAL`): not stored, so the hook
    /// has no value for it and the event leaves it out.
    virtual_generated: bool,
}

/// What events need of a table: its columns (or why they could not be read), and whether it
/// is a virtual table's shadow table (an FTS index's storage: not users' rows, no events).
#[derive(Debug)]
struct TableInfo {
    columns: Result<Vec<Column>, String>,
    shadow: bool,
}

/// [`table_info`], remembered for the entry until a statement creates, drops or alters a
/// table (the gate counts them); a 1000-statement entry on one table looks it up once.
fn cached_table_info(conn: &Connection, table: &str) -> Arc<TableInfo> {
    let (Some(capture), Some(gate)) = (
        conn.preupdate_hook::<Capture>(),
        super::settings::gate(conn),
    ) else {
        return Arc::new(table_info(conn, table));
    };
    let generation = gate.schema_generation();
    {
        let mut tables = capture.tables.lock();
        if tables.0 != generation {
            *tables = (generation, HashMap::new());
        }
        if let Some(info) = tables.1.get(table) {
            return Arc::clone(info);
        }
    }
    let info = Arc::new(table_info(conn, table));
    let mut tables = capture.tables.lock();
    if tables.0 == generation {
        tables.1.insert(table.to_string(), Arc::clone(&info));
    }
    info
}

fn table_info(conn: &Connection, table: &str) -> TableInfo {
    TableInfo {
        columns: columns(conn, table).map_err(|e| e.to_string()),
        shadow: is_shadow(conn, table).unwrap_or(false),
    }
}

// The table-valued functions qualified with `main.` (a user's temporary table named like
// one cannot stand in for it), through the private statement cache: a PRAGMA statement would
// empty the connection's statement caches each time it ran.
fn columns(conn: &Connection, table: &str) -> raftlite_ffi::Result<Vec<Column>> {
    let mut stmt = conn.prepare_private_cached(
        "SELECT name, hidden FROM main.pragma_table_xinfo(?1, 'main') ORDER BY cid",
    )?;
    stmt.bind_text(1, table)?;
    let mut names = Vec::new();
    while stmt.step()?.is_row() {
        let hidden = stmt.column_i64(1);
        if hidden != 1 {
            names.push(Column {
                name: String::from_utf8_lossy(stmt.column_text(0)).into_owned(),
                virtual_generated: hidden == 2,
            });
        }
    }
    Ok(names)
}

fn is_shadow(conn: &Connection, table: &str) -> raftlite_ffi::Result<bool> {
    let mut stmt = conn.prepare_private_cached(
        "SELECT count(*) FROM main.pragma_table_list(?1) WHERE schema = 'main' AND type = 'shadow'",
    )?;
    stmt.bind_text(1, table)?;
    Ok(stmt.step()?.is_row() && stmt.column_i64(0) > 0)
}

/// rqlite's JSON event, with its fields in rqlite's order: `op`, `table`, `new_row_id`
/// (inserts, updates), `old_row_id` (updates, deletes), `before` and `after` as objects keyed
/// by column name (rqlite's Go maps, whose keys it writes sorted), and `error` when the column
/// names do not match the row; zero ids and absent images are left out, as rqlite's
/// `omitempty` does. Written directly: it runs for every row an entry changes.
fn event_json(change: &RowChange, columns: &Result<Vec<Column>, String>) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(128);
    out.push_str("{\"op\":\"");
    out.push_str(change.op.as_str());
    out.push('"');
    if !change.table.is_empty() {
        out.push_str(",\"table\":");
        push_json_str(&mut out, &change.table);
    }
    let (new_rowid, old_rowid) = match change.op {
        ChangeOp::Insert => (change.new_rowid, 0),
        ChangeOp::Update => (change.new_rowid, change.old_rowid),
        ChangeOp::Delete => (0, change.old_rowid),
    };
    if new_rowid != 0 {
        let _ = write!(out, ",\"new_row_id\":{new_rowid}");
    }
    if old_rowid != 0 {
        let _ = write!(out, ",\"old_row_id\":{old_rowid}");
    }
    let before_images = out.len();
    let error = match columns {
        Err(e) => Some(format!(
            "failed to get column names for table {}: {e}",
            change.table
        )),
        Ok(names) => images(change, names, &mut out).err(),
    };
    if let Some(error) = error {
        out.truncate(before_images);
        out.push_str(",\"error\":");
        push_json_str(&mut out, &error);
    }
    out.push('}');
    out
}

/// A JSON object with its fields in this order.
fn write_fields(fields: &[(&str, Json)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("\"{key}\":{value}"));
    }
    out.push('}');
    out
}

fn push_json_str(out: &mut String, s: &str) {
    // Serializing a str into a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Appends `,"before":{...}` and `,"after":{...}`, or says why the row does not fit the
/// columns.
fn images(change: &RowChange, names: &[Column], out: &mut String) -> Result<(), String> {
    let mut order: Option<Vec<usize>> = None;
    for (key, image, what) in [
        ("before", &change.before, "old"),
        ("after", &change.after, "new"),
    ] {
        let Some(values) = image else { continue };
        if values.len() != names.len() {
            return Err(format!(
                "mismatched column names and {what} CDC row column count"
            ));
        }
        // Sorted by name, as Go writes a map's keys; virtual columns left out.
        let order = order.get_or_insert_with(|| {
            let mut order: Vec<usize> = (0..names.len())
                .filter(|&i| !names[i].virtual_generated)
                .collect();
            order.sort_by(|&a, &b| names[a].name.cmp(&names[b].name));
            order
        });
        if order.is_empty() {
            continue;
        }
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":{");
        for (n, &i) in order.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            push_json_str(out, &names[i].name);
            out.push(':');
            push_value(out, &values[i]);
        }
        out.push('}');
    }
    Ok(())
}

/// A value as rqlite's CDC JSON has it: numbers, text, a blob in base64 (Go's encoding of
/// bytes); an infinite REAL, which JSON cannot hold, as null.
fn push_value(out: &mut String, value: &Value) {
    use base64::Engine as _;
    use std::fmt::Write as _;
    match value {
        Value::Null => out.push_str("null"),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Real(r) => match serde_json::Number::from_f64(*r) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.push_str("null"),
        },
        Value::Text(t) => push_json_str(out, t),
        Value::Blob(b) => {
            out.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(b, out);
            out.push('"');
        }
    }
}

#[cfg(test)]
mod tests;
