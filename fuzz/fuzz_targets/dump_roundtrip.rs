//! Model-based round trip of the SQL dumper: build a database from arbitrary operations
//! (arbitrary table and column names, declared types, WITHOUT ROWID, AUTOINCREMENT, values of
//! every storage class), dump it (whole, or a `tables=` subset), load the dump into a fresh
//! database, and require the same content: the same schema rows, and in every table the same
//! rows with the same storage classes, REAL bit patterns and TEXT/BLOB bytes.
//!
//! Excluded, because the `sqlite3` shell's format itself loses them and the dumper copies the
//! shell byte for byte:
//! - NUL bytes in TEXT (the shell cuts TEXT at the first NUL): NULs are removed from generated
//!   text before it is stored.
//! - -0.0 (the shell prints it as `0.0`): it is stored as 0.0 instead.
//!   Names never contain NUL either (SQL text cannot carry them).
//!
//! Rowids of tables without an INTEGER PRIMARY KEY are not kept by the format (nor by the
//! shell); rows are compared in rowid order, which the dump does keep.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use raftlite::db::dump::dump;
use raftlite_ffi::{Connection, OpenFlags, Value};

#[derive(Arbitrary, Debug)]
struct Input {
    tables: Vec<Table>,
    /// Dump only the tables whose index (mod the table count) is listed, by a case-flipped name.
    subset: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
struct Table {
    name: String,
    columns: Vec<Column>,
    key: Key,
    rows: Vec<Vec<Val>>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Key {
    None,
    IntegerPrimaryKey,
    AutoIncrement,
    WithoutRowid,
}

#[derive(Arbitrary, Debug)]
struct Column {
    name: String,
    decl: Decl,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Decl {
    None,
    Integer,
    Int,
    Real,
    Text,
    Blob,
    Numeric,
    Varchar,
    Double,
}

impl Decl {
    fn sql(self) -> &'static str {
        match self {
            Decl::None => "",
            Decl::Integer => " INTEGER",
            Decl::Int => " INT",
            Decl::Real => " REAL",
            Decl::Text => " TEXT",
            Decl::Blob => " BLOB",
            Decl::Numeric => " NUMERIC",
            Decl::Varchar => " VARCHAR(10)",
            Decl::Double => " DOUBLE PRECISION",
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    TextBytes(Vec<u8>),
    Blob(Vec<u8>),
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn clean_name(s: &str) -> String {
    s.chars().filter(|&c| c != '\0').take(40).collect()
}

fn mem() -> Connection {
    Connection::open(":memory:", OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap()
}

/// Creates one table and inserts its rows; returns its name if it exists afterwards.
fn build_table(db: &Connection, t: &Table) -> Option<String> {
    let name = clean_name(&t.name);
    let mut cols: Vec<String> = Vec::new();
    for (i, c) in t.columns.iter().take(8).enumerate() {
        let mut def = format!("{}{}", quote(&clean_name(&c.name)), c.decl.sql());
        if i == 0 {
            match t.key {
                Key::None => {}
                Key::IntegerPrimaryKey => {
                    def = format!("{} INTEGER PRIMARY KEY", quote(&clean_name(&c.name)))
                }
                Key::AutoIncrement => {
                    def = format!(
                        "{} INTEGER PRIMARY KEY AUTOINCREMENT",
                        quote(&clean_name(&c.name))
                    )
                }
                Key::WithoutRowid => def.push_str(" PRIMARY KEY"),
            }
        }
        cols.push(def);
    }
    if cols.is_empty() {
        return None;
    }
    let without = if matches!(t.key, Key::WithoutRowid) {
        " WITHOUT ROWID"
    } else {
        ""
    };
    let create = format!(
        "CREATE TABLE {}({}){}",
        quote(&name),
        cols.join(", "),
        without
    );
    db.execute_batch(&create).ok()?;
    let placeholders = vec!["?"; cols.len()].join(",");
    let mut ins = db
        .prepare(&format!(
            "INSERT INTO {} VALUES({placeholders})",
            quote(&name)
        ))
        .ok()?;
    for row in t.rows.iter().take(20) {
        ins.clear_bindings().unwrap();
        for (i, v) in row.iter().take(cols.len()).enumerate() {
            let i = i as i32 + 1;
            match v {
                Val::Null => ins.bind_null(i),
                Val::Int(n) => ins.bind_i64(i, *n),
                // Lossy in the shell's format: -0.0 is written as 0.0.
                Val::Real(r) if *r == 0.0 => ins.bind_f64(i, 0.0),
                Val::Real(r) => ins.bind_f64(i, *r),
                // Lossy in the shell's format: TEXT is cut at its first NUL.
                Val::Text(s) => ins.bind_text(i, &s.replace('\0', "")),
                Val::TextBytes(b) => {
                    let b: Vec<u8> = b.iter().copied().filter(|&c| c != 0).collect();
                    ins.bind_text_bytes(i, &b)
                }
                Val::Blob(b) => ins.bind_blob(i, b),
            }
            .unwrap();
        }
        let _ = ins.step(); // constraint failures (duplicate keys, non-integer rowids) are fine
        let _ = ins.reset();
    }
    Some(name)
}

/// Everything the dump must carry: schema rows, then each listed table's rows in rowid order.
fn content(db: &Connection, tables: &[String]) -> Vec<(String, Vec<Vec<Value>>)> {
    let mut out = Vec::new();
    let mut schema = db
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name, type")
        .unwrap();
    let mut rows = Vec::new();
    while schema.step().unwrap().is_row() {
        rows.push((0..4).map(|i| schema.column_owned(i)).collect());
    }
    out.push(("sqlite_schema".to_string(), rows));
    let mut rows = Vec::new();
    if let Ok(mut seq) = db.prepare("SELECT name, seq FROM sqlite_sequence ORDER BY name") {
        while seq.step().unwrap().is_row() {
            let name = seq.column_owned(0);
            if matches!(&name, Value::Text(n) if tables.contains(n)) {
                rows.push(vec![name, seq.column_owned(1)]);
            }
        }
    }
    out.push(("sqlite_sequence".to_string(), rows));
    for t in tables {
        let mut stmt = db.prepare(&format!("SELECT * FROM {}", quote(t))).unwrap();
        let mut rows = Vec::new();
        while stmt.step().unwrap().is_row() {
            rows.push(
                (0..stmt.column_count())
                    .map(|i| exact(stmt.column_owned(i)))
                    .collect(),
            );
        }
        out.push((t.clone(), rows));
    }
    out
}

/// REALs compared by bit pattern (so 0.0 != -0.0 and NaN == NaN); TEXT compared as bytes
/// (`column_owned` would replace invalid UTF-8 in both, hiding differences).
fn exact(v: Value) -> Value {
    match v {
        Value::Real(r) => Value::Blob([b"real:".as_slice(), &r.to_bits().to_be_bytes()].concat()),
        other => other,
    }
}

fn text_bytes(db: &Connection, table: &str) -> Vec<Vec<u8>> {
    let mut stmt = db
        .prepare(&format!("SELECT * FROM {}", quote(table)))
        .unwrap();
    let mut out = Vec::new();
    while stmt.step().unwrap().is_row() {
        for i in 0..stmt.column_count() {
            out.push(stmt.column_text(i).to_vec());
        }
    }
    out
}

fuzz_target!(|input: Input| {
    let db = mem();
    let mut made: Vec<String> = Vec::new();
    for t in input.tables.iter().take(5) {
        if let Some(name) = build_table(&db, t) {
            made.push(name);
        }
    }
    let (names, compared): (Option<Vec<String>>, Vec<String>) = match &input.subset {
        Some(pick) if !made.is_empty() => {
            let mut chosen: Vec<String> = pick
                .iter()
                .map(|&i| made[i as usize % made.len()].clone())
                .collect();
            chosen.sort();
            chosen.dedup();
            // Ask with ASCII case flipped: matching is case-insensitive.
            let asked = chosen
                .iter()
                .map(|n| {
                    n.chars()
                        .map(|c| {
                            if c.is_ascii_lowercase() {
                                c.to_ascii_uppercase()
                            } else {
                                c.to_ascii_lowercase()
                            }
                        })
                        .collect()
                })
                .collect();
            (Some(asked), chosen)
        }
        _ => (None, made.clone()),
    };
    let mut text = Vec::new();
    let stats = dump(&db, names.as_deref(), &mut text).expect("dump of a healthy database");
    assert_eq!(stats.errors, 0);
    // The dump is loaded as bytes: a TEXT literal may hold invalid UTF-8 (SQLite stores such
    // values as they are), and the dump must carry them back exactly.
    let fresh = mem();
    let shown = String::from_utf8_lossy(&text);
    fresh
        .execute_batch_bytes(&text)
        .unwrap_or_else(|e| panic!("dump does not load: {e}\n{shown}"));
    // The model: what the original holds, restricted to the dumped tables.
    let want = content(&db, &compared);
    let got = content(&fresh, &compared);
    if names.is_none() {
        assert_eq!(want, got, "dump:\n{shown}");
    } else {
        // Schema rows of other tables are not in a subset; compare the data only.
        assert_eq!(want[1..], got[1..], "dump:\n{shown}");
    }
    for t in &compared {
        assert_eq!(
            text_bytes(&db, t),
            text_bytes(&fresh, t),
            "TEXT bytes of {t}"
        );
    }
});
