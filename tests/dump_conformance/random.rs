//! Seeded random databases, on top of the hand-written cases: a few tables with names that need
//! quoting, declared types of every affinity, every kind of key (none, INTEGER PRIMARY KEY,
//! AUTOINCREMENT, compound WITHOUT ROWID, STRICT), rows of edge-biased values of every storage
//! class, and now and then an index, a view, a table dropped and made again, `sqlite_stat1`.
//!
//! The same seed always builds the same database ([`crate::Rng`] is a fixed algorithm, and
//! nothing else is random). Values stay inside what the shell's format round-trips: no NUL in
//! TEXT, no -0.0, no REAL below [`SMALLEST_SAFE_REAL`] (those are the known-lossy cases).

use std::path::Path;

use raftlite_ffi::ValueRef;

use crate::cases::{Db, SMALLEST_SAFE_REAL};
use crate::Rng;

const TABLE_NAMES: [&str; 18] = [
    "t",
    "order",
    "Group",
    "my table",
    "a\"b",
    "it's",
    "\u{65e5}\u{672c}",
    "x-y",
    "select",
    "_t",
    "T2",
    "rowid",
    "trailing ",
    "\u{e9}t\u{e9}",
    "1st",
    "[b]",
    "`c`",
    "values",
];

const COLUMN_NAMES: [&str; 16] = [
    "a", "b", "value", "order", "key", "Key2", "col umn", "q\"q", "s'q", "\u{5217}", "rowid",
    "oid", "_rowid_", "x1", "desc", "from",
];

const DECLARED_TYPES: [&str; 11] = [
    "",
    " INTEGER",
    " INT",
    " REAL",
    " TEXT",
    " BLOB",
    " NUMERIC",
    " VARCHAR(10)",
    " DOUBLE PRECISION",
    " BOOLEAN",
    " FLOATING POINT",
];

const STRICT_TYPES: [&str; 6] = [" INT", " INTEGER", " REAL", " TEXT", " BLOB", " ANY"];

const TEXT_PIECES: [&[u8]; 36] = [
    b"a",
    b"Z",
    b" ",
    b"'",
    b"''",
    b"\"",
    b"\n",
    b"\r",
    b"\r\n",
    b"\\n",
    b"\\012",
    b"(\\n0)",
    b"\\r",
    b"\\015",
    b"\t",
    b"--",
    b"/*",
    b";",
    "\u{e9}".as_bytes(),
    "\u{65e5}\u{672c}".as_bytes(),
    "\u{1f600}".as_bytes(),
    "\u{feff}".as_bytes(),
    b"\x01",
    b"\x7f",
    b"NULL",
    b"1.5",
    b"0x1F",
    b"-0",
    b"42",
    b" 7 ",
    b"\xff",
    b"\xc3",
    b"\x80",
    b"\xed\xa0\x80",
    b"X'00'",
    b"char(10)",
];

#[derive(Clone, Copy, PartialEq)]
enum Key {
    None,
    RowidAlias,
    AutoIncrement,
    WithoutRowid(usize),
}

/// The kind of value a column accepts.
#[derive(Clone, Copy, PartialEq)]
enum Slot {
    Any,
    Rowid,
    NotNull,
    Strict(&'static str),
}

/// Builds the database of `seed` at `path`; returns a one-line description.
pub fn build(seed: u64, path: &Path) -> String {
    let mut rng = Rng::new(seed);
    let db = Db::create(path);
    db.sql("PRAGMA foreign_keys=OFF");
    let mut used: Vec<String> = Vec::new();
    let mut summary = Vec::new();
    let tables = 1 + rng.below(4);
    for _ in 0..tables {
        let name = unique(&mut rng, &TABLE_NAMES, &mut used);
        let strict = rng.below(5) == 0;
        let key = match rng.below(5) {
            0 => Key::RowidAlias,
            1 => Key::AutoIncrement,
            2 if !strict || rng.below(2) == 0 => Key::WithoutRowid(1 + rng.below(2)),
            _ => Key::None,
        };
        let (create, slots, columns) = table_sql(&mut rng, &name, key, strict);
        db.sql(&create);
        let rows = rng.below(40);
        let placeholders: Vec<String> = (1..=slots.len()).map(|i| format!("?{i}")).collect();
        let insert = format!(
            "INSERT OR IGNORE INTO {} ({}) VALUES({})",
            quote(&name),
            columns.join(", "),
            placeholders.join(", ")
        );
        let data: Vec<Vec<Owned>> = (0..rows)
            .map(|_| slots.iter().map(|s| value(&mut rng, *s)).collect())
            .collect();
        db.rows(
            &insert,
            data.iter().map(|r| r.iter().map(Owned::as_ref).collect()),
        );
        if key == Key::AutoIncrement && rng.below(2) == 0 {
            db.sql(&format!(
                "DELETE FROM {} WHERE rowid IN (SELECT max(rowid) FROM {0})",
                quote(&name)
            ));
        }
        if rng.below(3) == 0 {
            let column = &columns[rng.below(columns.len())];
            let index = unique(&mut rng, &["idx", "Index", "i x", "i\"x"], &mut used);
            db.sql(&format!(
                "CREATE INDEX {} ON {}({column})",
                quote(&index),
                quote(&name)
            ));
        }
        if rng.below(4) == 0 {
            let view = unique(&mut rng, &["v", "view", "v w"], &mut used);
            db.sql(&format!(
                "CREATE VIEW {} AS SELECT * FROM {} -- every column\n",
                quote(&view),
                quote(&name)
            ));
        }
        summary.push(format!(
            "{:?} ({} columns, {}{}, {} rows)",
            name,
            slots.len(),
            match key {
                Key::None => "no key".to_string(),
                Key::RowidAlias => "INTEGER PRIMARY KEY".to_string(),
                Key::AutoIncrement => "AUTOINCREMENT".to_string(),
                Key::WithoutRowid(n) => format!("WITHOUT ROWID, {n}-column key"),
            },
            if strict { ", STRICT" } else { "" },
            rows
        ));
    }
    if rng.below(4) == 0 {
        // A table made, dropped and made again: sqlite_schema's rowid order then differs
        // from the order of creation of the others.
        db.sql("CREATE TABLE churn(a); CREATE TABLE keep_after(b); DROP TABLE churn;");
        db.sql(
            "CREATE TABLE churn(c); INSERT INTO churn VALUES(1); INSERT INTO keep_after VALUES(2);",
        );
    }
    if rng.below(5) == 0 {
        db.sql("ANALYZE; DROP TABLE IF EXISTS sqlite_stat4;");
    }
    format!("{} table(s): {}", tables, summary.join("; "))
}

/// A name from `pool` not yet used (SQLite compares names without regard to ASCII case).
fn unique(rng: &mut Rng, pool: &[&str], used: &mut Vec<String>) -> String {
    let mut name = pool[rng.below(pool.len())].to_string();
    let mut n = 2;
    while used.iter().any(|u| u.eq_ignore_ascii_case(&name)) {
        name = format!("{}{n}", pool[rng.below(pool.len())]);
        n += 1;
    }
    used.push(name.clone());
    name
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The CREATE TABLE statement, the value slot of each inserted column, and the quoted names
/// of the inserted columns.
fn table_sql(
    rng: &mut Rng,
    name: &str,
    key: Key,
    strict: bool,
) -> (String, Vec<Slot>, Vec<String>) {
    let mut used = Vec::new();
    let mut defs = Vec::new();
    let mut slots = Vec::new();
    let mut columns = Vec::new();
    let count = 1 + rng.below(6);
    let key_at = rng.below(count);
    for i in 0..count {
        let column = unique(rng, &COLUMN_NAMES, &mut used);
        let quoted = quote(&column);
        if i == key_at && matches!(key, Key::RowidAlias | Key::AutoIncrement) {
            let auto = if key == Key::AutoIncrement {
                " AUTOINCREMENT"
            } else {
                ""
            };
            defs.push(format!("{quoted} INTEGER PRIMARY KEY{auto}"));
            slots.push(Slot::Rowid);
        } else if strict {
            let t = STRICT_TYPES[rng.below(STRICT_TYPES.len())];
            defs.push(format!("{quoted}{t}"));
            slots.push(Slot::Strict(t));
        } else {
            defs.push(format!(
                "{quoted}{}",
                DECLARED_TYPES[rng.below(DECLARED_TYPES.len())]
            ));
            slots.push(Slot::Any);
        }
        columns.push(quoted);
    }
    let mut options = Vec::new();
    if let Key::WithoutRowid(n) = key {
        let n = n.min(count);
        defs.push(format!("PRIMARY KEY({})", columns[..n].join(", ")));
        for s in &mut slots[..n] {
            if *s == Slot::Any {
                *s = Slot::NotNull;
            }
        }
        options.push("WITHOUT ROWID");
    }
    if strict {
        options.push("STRICT");
    }
    let create = format!(
        "CREATE TABLE {}({}) {}",
        quote(name),
        defs.join(", "),
        options.join(", ")
    );
    (create, slots, columns)
}

/// An owned value to bind.
enum Owned {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Owned {
    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Owned::Null => ValueRef::Null,
            Owned::Int(i) => ValueRef::Integer(*i),
            Owned::Real(r) => ValueRef::Real(*r),
            Owned::Text(t) => ValueRef::Text(t),
            Owned::Blob(b) => ValueRef::Blob(b),
        }
    }
}

fn value(rng: &mut Rng, slot: Slot) -> Owned {
    match slot {
        // Not i64::MAX: after it, AUTOINCREMENT has no rowid left (SQLITE_FULL).
        Slot::Rowid => match (rng.below(3), integer(rng)) {
            (0, _) | (_, i64::MAX) => Owned::Null,
            (_, v) => Owned::Int(v),
        },
        Slot::Strict(" INT" | " INTEGER") => match rng.below(4) {
            0 => Owned::Null,
            _ => Owned::Int(integer(rng)),
        },
        Slot::Strict(" REAL") => match rng.below(4) {
            0 => Owned::Null,
            1 => Owned::Int(integer(rng)),
            _ => Owned::Real(real(rng)),
        },
        Slot::Strict(" TEXT") => match rng.below(4) {
            0 => Owned::Null,
            _ => Owned::Text(text(rng)),
        },
        Slot::Strict(" BLOB") => match rng.below(4) {
            0 => Owned::Null,
            _ => Owned::Blob(blob(rng)),
        },
        Slot::NotNull => loop {
            let v = any(rng);
            if !matches!(v, Owned::Null) {
                return v;
            }
        },
        Slot::Strict(_) | Slot::Any => any(rng),
    }
}

fn any(rng: &mut Rng) -> Owned {
    match rng.below(100) {
        0..=9 => Owned::Null,
        10..=29 => Owned::Int(integer(rng)),
        30..=54 => Owned::Real(real(rng)),
        55..=79 => Owned::Text(text(rng)),
        _ => Owned::Blob(blob(rng)),
    }
}

fn integer(rng: &mut Rng) -> i64 {
    const EDGES: [i64; 10] = [
        0,
        1,
        -1,
        i64::MAX,
        i64::MIN,
        i32::MAX as i64,
        1 << 53,
        -(1 << 53),
        255,
        1000,
    ];
    match rng.below(3) {
        0 => EDGES[rng.below(EDGES.len())],
        // Every magnitude: shift a random value right by a random amount.
        _ => (rng.next_u64() as i64) >> rng.below(64),
    }
}

fn real(rng: &mut Rng) -> f64 {
    const EDGES: [f64; 12] = [
        0.0,
        0.5,
        -1.5,
        3.0,
        0.1,
        1e15,
        1e16 + 2.0,
        1e17,
        1e300,
        f64::MAX,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    match rng.below(4) {
        0 => EDGES[rng.below(EDGES.len())],
        1 => (rng.next_u64() % 200_001) as f64 / 8.0 - 12500.0,
        _ => loop {
            let v = f64::from_bits(rng.next_u64());
            if v.is_finite() && v.abs() >= SMALLEST_SAFE_REAL {
                return v;
            }
        },
    }
}

fn text(rng: &mut Rng) -> Vec<u8> {
    let mut t = Vec::new();
    for _ in 0..rng.below(9) {
        t.extend_from_slice(TEXT_PIECES[rng.below(TEXT_PIECES.len())]);
    }
    t
}

fn blob(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(40)).map(|_| rng.next_u64() as u8).collect()
}
