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
//! Invariants: only entries the caller arms ([`arm`]) are captured (loads, `VACUUM` and
//! raftlite's own writes are not); only tables of `main` and never [`super::STATE_TABLE`];
//! users' SQL may not touch [`EVENTS_TABLE`] (the gate refuses it by name, and the temporary
//! objects a request leaves are dropped without it). The table is empty between entries.
//! Events are built from the entry alone, so every node produces the same events for an entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use raftlite_ffi::{Change, ChangeOp, Connection, PreupdateHook, Value};
use serde_json::{Map, Value as Json};

use super::execute::ApplyError;

/// The writer's temporary table holding the events of the entry being applied.
pub const EVENTS_TABLE: &str = "_raftlite_cdc_events";

/// What to capture (rqlite's `table_filter` and `row_ids_only`).
#[derive(Debug, Clone, Default)]
pub struct CaptureOptions {
    /// Only tables whose names this matches (anywhere in the name, as Go's `MatchString`).
    pub table_filter: Option<regex::Regex>,
    /// Events without the rows' values.
    pub row_ids_only: bool,
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

/// The pre-update hook of the writer (see the module documentation).
#[derive(Debug, Default)]
pub struct Capture {
    options: CaptureOptions,
    armed: AtomicBool,
    /// The changes of the statement running now.
    statement: Mutex<Vec<RowChange>>,
    /// Whether each table name passes the filter.
    matches: Mutex<HashMap<String, bool>>,
    /// Changes the hook could not record (it panicked): each is a lost event, so the caller
    /// stops rather than go on (see [`after_statement`]).
    lost: AtomicU64,
}

impl PreupdateHook for Capture {
    fn on_change(&self, c: &Change<'_>) {
        if !self.armed.load(Ordering::Relaxed)
            || c.database != "main"
            || c.table.eq_ignore_ascii_case(super::STATE_TABLE)
            || !self.wanted(&c.table)
        {
            return;
        }
        let (before, after) = if self.options.row_ids_only {
            (None, None)
        } else {
            // A column SQLite cannot give (a virtual generated column, which is not stored)
            // reads as NULL; `event_json` leaves such columns out.
            let image = |old: bool| -> Vec<Value> {
                (0..c.column_count())
                    .map(|i| {
                        let v = if old { c.before(i) } else { c.after(i) };
                        v.map_or(Value::Null, |v| v.to_owned_value())
                    })
                    .collect()
            };
            match c.op {
                ChangeOp::Insert => (None, Some(image(false))),
                ChangeOp::Update => (Some(image(true)), Some(image(false))),
                ChangeOp::Delete => (Some(image(true)), None),
            }
        };
        let change = RowChange {
            op: c.op,
            table: c.table.to_string(),
            old_rowid: c.old_rowid,
            new_rowid: c.new_rowid,
            before,
            after,
        };
        self.statement.lock().push(change);
    }

    fn panicked(&self) {
        self.lost.fetch_add(1, Ordering::Relaxed);
    }
}

impl Capture {
    fn wanted(&self, table: &str) -> bool {
        let Some(filter) = &self.options.table_filter else {
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

/// Registers the capture hook on the writer and creates [`EVENTS_TABLE`] (outside any
/// transaction). Nothing is captured until an entry is armed.
pub fn install(conn: &mut Connection, options: CaptureOptions) -> raftlite_ffi::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {EVENTS_TABLE}(seq INTEGER PRIMARY KEY, event TEXT NOT NULL)"
    ))?;
    conn.set_preupdate_hook(Some(Arc::new(Capture {
        options,
        ..Capture::default()
    })))
}

/// Whether `conn` captures changes.
pub fn is_installed(conn: &Connection) -> bool {
    conn.preupdate_hook::<Capture>().is_some()
}

/// Captures (true) or ignores (false) the changes of what runs next: the caller arms it for a
/// write entry and disarms it after.
pub fn arm(conn: &Connection, on: bool) {
    if let Some(c) = conn.preupdate_hook::<Capture>() {
        c.armed.store(on, Ordering::Relaxed);
        c.statement.lock().clear();
    }
}

/// Taken before a statement runs: the connection's change count then (None without capture).
#[derive(Debug, Clone, Copy)]
pub struct StatementMark(Option<i64>);

/// Call before each statement of a write.
pub fn before_statement(conn: &Connection) -> Result<StatementMark, ApplyError> {
    match conn.preupdate_hook::<Capture>() {
        Some(c) if c.armed.load(Ordering::Relaxed) => {
            c.statement.lock().clear();
            Ok(StatementMark(Some(conn.total_changes()?)))
        }
        _ => Ok(StatementMark(None)),
    }
}

/// Call after each statement of a write, `failed` or not: keeps its changes that stayed as
/// events in [`EVENTS_TABLE`] (see the module documentation).
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
    let changes = std::mem::take(&mut *capture.statement.lock());
    if changes.is_empty() || conn.is_autocommit()? {
        // Nothing changed, or the statement ended the transaction (a ROLLBACK conflict
        // clause, or the budget): everything it held is undone, events included.
        return Ok(());
    }
    if failed {
        let last = &changes[changes.len() - 1];
        let kept = match stayed(conn, last)? {
            Some(kept) => kept,
            None => conn.total_changes()? != changes_before,
        };
        if !kept {
            return Ok(());
        }
    }
    let mut columns: HashMap<String, Result<Vec<Column>, String>> = HashMap::new();
    let mut insert = conn.prepare_cached(&format!(
        "INSERT INTO temp.{EVENTS_TABLE}(event) VALUES(?1)"
    ))?;
    for change in &changes {
        if !columns.contains_key(&change.table) {
            let names = column_names(conn, &change.table).map_err(|e| e.to_string());
            columns.insert(change.table.clone(), names);
        }
        let event = event_json(change, &columns[&change.table]);
        insert.reset()?;
        insert.bind_text(1, &event)?;
        while insert.step()?.is_row() {}
    }
    Ok(())
}

/// Reads and empties [`EVENTS_TABLE`], inside the entry's transaction: the entry's events in
/// the order their rows changed, each one rqlite's JSON event object.
pub fn take_entry_events(conn: &Connection) -> raftlite_ffi::Result<Vec<String>> {
    if !is_installed(conn) {
        return Ok(Vec::new());
    }
    let mut events = Vec::new();
    {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT event FROM temp.{EVENTS_TABLE} ORDER BY seq"
        ))?;
        while stmt.step()?.is_row() {
            events.push(String::from_utf8_lossy(stmt.column_text(0)).into_owned());
        }
    }
    if !events.is_empty() {
        conn.execute_batch(&format!("DELETE FROM temp.{EVENTS_TABLE}"))?;
    }
    Ok(events)
}

/// Whether a failed statement's last change is still in the database (see the module
/// documentation), or None when the row cannot tell: a `WITHOUT ROWID` table (no rowid to
/// look it up by), no values to compare (`row_ids_only`), or an update that left the values
/// as they were.
fn stayed(conn: &Connection, change: &RowChange) -> Result<Option<bool>, ApplyError> {
    let rowid = match change.op {
        ChangeOp::Delete => change.old_rowid,
        ChangeOp::Insert | ChangeOp::Update => change.new_rowid,
    };
    let sql = format!(
        "SELECT * FROM main.\"{}\" WHERE rowid = ?1",
        change.table.replace('"', "\"\"")
    );
    let Ok(mut stmt) = conn.prepare(&sql) else {
        return Ok(None);
    };
    stmt.bind_i64(1, rowid)?;
    let found = stmt.step()?.is_row();
    Ok(match (change.op, &change.after) {
        (ChangeOp::Delete, _) => Some(!found),
        (_, _) if !found => Some(false),
        (_, None) => None,
        (_, Some(after)) if change.before.as_ref() == Some(after) => None,
        (_, Some(after)) => {
            // `SELECT *` leaves out hidden columns; compare the columns it has by name.
            let names = column_names(conn, &change.table)?;
            let now: HashMap<String, Value> = (0..stmt.column_count())
                .map(|i| (stmt.column_name(i).to_string(), stmt.column_owned(i)))
                .collect();
            Some(
                names
                    .iter()
                    .zip(after)
                    .all(|(column, value)| now.get(&column.name).is_none_or(|v| v == value)),
            )
        }
    })
}

/// A column as the hook counts them: every column but a virtual table's hidden ones.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    /// A generated column computed when read (`AS (...) VIRTUAL`): not stored, so the hook
    /// has no value for it and the event leaves it out.
    virtual_generated: bool,
}

fn column_names(conn: &Connection, table: &str) -> raftlite_ffi::Result<Vec<Column>> {
    let mut stmt = conn.prepare("SELECT name, hidden FROM pragma_table_xinfo(?1, 'main')")?;
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

/// rqlite's JSON event, with its fields in rqlite's order: `op`, `table`, `new_row_id`
/// (inserts, updates), `old_row_id` (updates, deletes), `before` and `after` as objects keyed
/// by column name (rqlite's Go maps, whose keys it writes sorted), and `error` when the column
/// names do not match the row; zero ids and absent images are left out, as rqlite's
/// `omitempty` does.
fn event_json(change: &RowChange, columns: &Result<Vec<Column>, String>) -> String {
    let mut fields: Vec<(&str, Json)> = vec![("op", Json::from(change.op.as_str()))];
    if !change.table.is_empty() {
        fields.push(("table", Json::from(change.table.as_str())));
    }
    let (new_rowid, old_rowid) = match change.op {
        ChangeOp::Insert => (change.new_rowid, 0),
        ChangeOp::Update => (change.new_rowid, change.old_rowid),
        ChangeOp::Delete => (0, change.old_rowid),
    };
    if new_rowid != 0 {
        fields.push(("new_row_id", Json::from(new_rowid)));
    }
    if old_rowid != 0 {
        fields.push(("old_row_id", Json::from(old_rowid)));
    }
    let error = match columns {
        Err(e) => Some(format!(
            "failed to get column names for table {}: {e}",
            change.table
        )),
        Ok(names) => images(change, names, &mut fields).err(),
    };
    if let Some(error) = error {
        fields.retain(|(key, _)| !matches!(*key, "before" | "after"));
        fields.push(("error", Json::from(error)));
    }
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

/// Adds `before` and `after` to `fields`, or says why the row does not fit the columns.
fn images(
    change: &RowChange,
    names: &[Column],
    fields: &mut Vec<(&str, Json)>,
) -> Result<(), String> {
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
        // Sorted by name, as Go writes a map's keys (whether or not `serde_json::Map` keeps
        // insertion order in this build).
        let mut pairs: Vec<(String, Json)> = names
            .iter()
            .zip(values)
            .filter(|(column, _)| !column.virtual_generated)
            .map(|(column, value)| (column.name.clone(), value_json(value)))
            .collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let object: Map<String, Json> = pairs.into_iter().collect();
        if !object.is_empty() {
            fields.push((key, Json::Object(object)));
        }
    }
    Ok(())
}

/// A value as rqlite's CDC JSON has it: numbers, text, a blob in base64 (Go's encoding of
/// bytes); an infinite REAL, which JSON cannot hold, as null.
fn value_json(value: &Value) -> Json {
    use base64::Engine as _;
    match value {
        Value::Null => Json::Null,
        Value::Integer(i) => Json::from(*i),
        Value::Real(r) => serde_json::Number::from_f64(*r).map_or(Json::Null, Json::Number),
        Value::Text(t) => Json::from(t.as_str()),
        Value::Blob(b) => Json::from(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

#[cfg(test)]
mod tests;
