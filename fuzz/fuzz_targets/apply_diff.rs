//! Differential fuzzing of the apply path (issue #22): the same write entries applied to two
//! replicas must leave them identical, whatever the SQL and whatever happens to one of them
//! between entries.
//!
//! The input drives a small program: write entries (a request, or a group-commit batch of
//! requests, each with a clock, a seed and a budget), SQL loads, reads, and events that happen
//! to replica B only: its connection closed and reopened (a restart), its database replaced by
//! a copy of A's or of its own (a snapshot sent and installed), or both rebuilt from A's dump
//! (a SQL load into a blank cluster: A runs the script on a writer, B on the builder
//! connection `store::restore::build_once` uses). SQL comes from a grammar over a small set
//! of names (DDL, DML, triggers, views, CTEs, pragmas, EXPLAIN, ATTACH, transaction control,
//! virtual tables, functions that differ between nodes, errors) and from the hostile requests
//! of `tests/data/hostile-requests.jsonl`.
//!
//! Entries go through `raftlite::db::apply` and `db::execute`, the code the state machine runs,
//! on connections opened as the node opens them (`db::settings`), gate included. Checked after
//! every step:
//! - no local fault: applying never returns a fault (which would stop a node);
//! - both replicas answer each entry alike and hold the same content (`content_digest`, which
//!   covers the schema, every row, `user_version` and `application_id`);
//! - no request ran past its budget (the gate's count stops at the first step over it);
//! - a read changes nothing.

#![no_main]

use std::path::{Path, PathBuf};

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use raftlite::db::apply::{apply_batch, apply_entry, ensure_state_table, record_state};
use raftlite::db::digest::content_digest;
use raftlite::db::execute::{
    execute_request, query_request, run_sql_script, ReadLimits, RequestResults, ScriptOutcome,
};
use raftlite::db::request::{
    ApplyEnv, ExecuteItem, Request, ResultOptions, RowsPolicy, SqlStatement, StatementOutcome,
};
use raftlite::db::settings::{gate, open_builder, open_reader, open_writer, DbSettings};
use raftlite::db::STATE_TABLE;
use raftlite_ffi::Connection;

const HOSTILE: &str = include_str!("../../tests/data/hostile-requests.jsonl");

/// The hostile requests, each a list of statements, with `@DIR@` pointing at `dir`.
fn hostile(dir: &Path) -> Vec<Vec<String>> {
    HOSTILE
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| serde_json::from_str::<Vec<String>>(l).ok())
        .map(|stmts| {
            stmts
                .into_iter()
                .map(|s| s.replace("@DIR@", &dir.display().to_string()))
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The grammar.

const TABLES: &[&str] = &[
    "t0",
    "t1",
    "t2",
    "tw",
    "f5",
    "f4",
    "r1",
    "v0",
    "temp.tt",
    "tt",
    "_raftlite_state",
    "sqlite_schema",
    "sqlite_sequence",
    "nosuch",
    "main.t0",
];
const COLUMNS: &[&str] = &["a", "b", "c", "rowid", "x", "k"];
const FUNCTIONS: &[(&str, usize)] = &[
    ("random", 0),
    ("randomblob", 1),
    ("abs", 1),
    ("hex", 1),
    ("length", 1),
    ("typeof", 1),
    ("coalesce", 2),
    ("datetime", 1),
    ("unixepoch", 1),
    ("julianday", 1),
    ("total_changes", 0),
    ("changes", 0),
    ("last_insert_rowid", 0),
    ("sqlite_version", 0),
    ("printf", 2),
    ("zeroblob", 1),
    ("json_array", 2),
    ("upper", 1),
    ("substr", 2),
    ("replace", 3),
    ("instr", 2),
    ("iif", 3),
    ("quote", 1),
    ("sqlite_offset", 1),
    ("load_extension", 1),
    ("fts3_tokenizer", 1),
    ("likely", 1),
    ("unicode", 1),
    ("char", 1),
];
const AGGREGATES: &[&str] = &["count", "max", "min", "sum", "group_concat", "total"];
const PRAGMAS: &[&str] = &[
    "query_only",
    "journal_mode",
    "synchronous",
    "wal_checkpoint",
    "writable_schema",
    "recursive_triggers",
    "case_sensitive_like",
    "reverse_unordered_selects",
    "ignore_check_constraints",
    "defer_foreign_keys",
    "foreign_keys",
    "cache_size",
    "automatic_index",
    "user_version",
    "application_id",
    "page_size",
    "auto_vacuum",
    "schema_version",
    "data_version",
    "database_list",
    "page_count",
    "freelist_count",
    "max_page_count",
    "table_info",
    "index_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
    "optimize",
    "incremental_vacuum",
    "legacy_alter_table",
    "temp_store",
    "locking_mode",
    "count_changes",
    "secure_delete",
    "encoding",
    "no_such_pragma",
    "shrink_memory",
    "cell_size_check",
    "analysis_limit",
];
const PRAGMA_VALUES: &[&str] = &[
    "1",
    "0",
    "ON",
    "OFF",
    "-5",
    "5",
    "t0",
    "'t1'",
    "EXCLUSIVE",
    "TRUNCATE",
    "RESET",
    "FULL",
    "8192",
    "'/tmp'",
    "0x10000",
];
const SAVEPOINTS: &[&str] = &[
    "s1",
    "s2",
    "\"raftlite request\"",
    "raftlite_x",
    "\"raftlite user transaction\"",
];
const MODULES: &[&str] = &[
    "fts5(a, b)",
    "fts4(a)",
    "rtree(id, x0, x1)",
    "dbstat",
    "fts5vocab(f5, 'row')",
    "nosuchmodule",
];

struct Gen<'a, 'b> {
    u: &'a mut Unstructured<'b>,
    hostile: &'a [Vec<String>],
    /// A directory nothing may be created in.
    outside: &'a str,
}

impl Gen<'_, '_> {
    fn pick<T: Copy>(&mut self, items: &[T]) -> Result<T> {
        Ok(*self.u.choose(items)?)
    }

    fn table(&mut self) -> Result<&'static str> {
        self.pick(TABLES)
    }

    fn literal(&mut self) -> Result<String> {
        Ok(match self.u.int_in_range(0..=6)? {
            0 => self.u.int_in_range(-3i64..=1000)?.to_string(),
            1 => format!("{}", self.u.arbitrary::<f32>()?)
                .replace("inf", "9e999")
                .replace("NaN", "NULL"),
            2 => "NULL".into(),
            3 => format!(
                "x'{:02x}{:02x}'",
                self.u.arbitrary::<u8>()?,
                self.u.arbitrary::<u8>()?
            ),
            4 => self
                .pick(&["'hello'", "'a''b'", "''", "'now'", "'2024-01-01'", "'é'"])?
                .into(),
            5 => self
                .pick(&[
                    "9223372036854775807",
                    "-9223372036854775808",
                    "1e308",
                    "0.5",
                ])?
                .into(),
            _ => format!("{}", self.u.int_in_range(0u8..=64)?),
        })
    }

    fn expr(&mut self, depth: u8) -> Result<String> {
        if depth == 0 {
            return match self.u.int_in_range(0..=1)? {
                0 => self.literal(),
                _ => Ok(self.pick(COLUMNS)?.into()),
            };
        }
        Ok(match self.u.int_in_range(0..=8)? {
            0 | 1 => self.literal()?,
            2 => self.pick(COLUMNS)?.into(),
            3 => {
                let (name, arity) = self.pick(FUNCTIONS)?;
                let args: Vec<String> = (0..arity)
                    .map(|i| match (name, i) {
                        ("datetime" | "unixepoch" | "julianday", 0) => Ok("'now'".to_string()),
                        ("randomblob" | "zeroblob", 0) => {
                            Ok(self.u.int_in_range(0u8..=40)?.to_string())
                        }
                        _ => self.expr(depth - 1),
                    })
                    .collect::<Result<_>>()?;
                format!("{name}({})", args.join(", "))
            }
            4 => {
                let op = self.pick(&[
                    "+", "-", "*", "/", "%", "||", "=", "<", "AND", "OR", "LIKE", "GLOB", "IS NOT",
                ])?;
                format!("({} {op} {})", self.expr(depth - 1)?, self.expr(depth - 1)?)
            }
            5 => format!(
                "(SELECT {} FROM {} LIMIT 1)",
                self.expr(depth - 1)?,
                self.table()?
            ),
            6 => format!(
                "CASE WHEN {} THEN {} ELSE {} END",
                self.expr(depth - 1)?,
                self.expr(depth - 1)?,
                self.expr(depth - 1)?
            ),
            7 => format!(
                "CAST({} AS {})",
                self.expr(depth - 1)?,
                self.pick(&["INTEGER", "TEXT", "REAL", "BLOB"])?
            ),
            _ => format!("{}(*)", self.pick(&["count"])?),
        })
    }

    fn select(&mut self, depth: u8) -> Result<String> {
        Ok(match self.u.int_in_range(0..=4)? {
            0 => format!("SELECT {} FROM {}", self.expr(depth)?, self.table()?),
            1 => format!(
                "SELECT {}({}) FROM {} WHERE {}",
                self.pick(AGGREGATES)?,
                self.expr(depth)?,
                self.table()?,
                self.expr(depth)?
            ),
            2 => {
                // A recursive CTE, bounded or not: unbounded ones must stop at the budget.
                let bound = match self.u.int_in_range(0..=2)? {
                    0 => String::new(),
                    1 => format!(" WHERE i < {}", self.u.int_in_range(0u16..=3000)?),
                    _ => format!(" LIMIT {}", self.u.int_in_range(0u16..=3000)?),
                };
                let (head, tail) = bound.split_at(if bound.starts_with(" LIMIT") {
                    0
                } else {
                    bound.len()
                });
                format!(
                    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c{head}){tail} SELECT {} FROM c",
                    self.pick(&["i", "count(*)", "sum(i)", "randomblob(2)", "i % 7"])?
                )
            }
            3 => format!("VALUES({}), ({})", self.expr(depth)?, self.expr(depth)?),
            _ => format!("SELECT * FROM {} ORDER BY 1 LIMIT 3", self.table()?),
        })
    }

    fn pragma(&mut self) -> Result<String> {
        let name = self.pick(PRAGMAS)?;
        let schema = self.pick(&["", "", "main.", "temp."])?;
        Ok(match self.u.int_in_range(0..=3)? {
            0 => format!("PRAGMA {schema}{name}"),
            1 => format!("PRAGMA {schema}{name}={}", self.pick(PRAGMA_VALUES)?),
            2 => format!("PRAGMA {schema}{name}({})", self.pick(PRAGMA_VALUES)?),
            _ => format!("SELECT * FROM pragma_{name}"),
        })
    }

    fn stmt(&mut self, depth: u8) -> Result<String> {
        let t = self.table()?;
        Ok(match self.u.int_in_range(0..=27)? {
            0 => format!(
                "CREATE TABLE IF NOT EXISTS {}(a{}, b, c{})",
                self.pick(&["t0", "t1", "t2", "temp.tt"])?,
                self.pick(&[
                    "",
                    " INTEGER PRIMARY KEY",
                    " PRIMARY KEY ON CONFLICT ROLLBACK",
                    " UNIQUE",
                    " CHECK (a > 0)"
                ])?,
                self.pick(&[
                    "",
                    ", FOREIGN KEY(c) REFERENCES t0(a) DEFERRABLE INITIALLY DEFERRED",
                    ", UNIQUE(b)"
                ])?
            ),
            1 => "CREATE TABLE IF NOT EXISTS tw(k PRIMARY KEY, v) WITHOUT ROWID".into(),
            2 => format!(
                "CREATE VIRTUAL TABLE IF NOT EXISTS {} USING {}",
                self.pick(&["f5", "f4", "r1", "vx"])?,
                self.pick(MODULES)?
            ),
            3 => format!(
                "CREATE INDEX IF NOT EXISTS i{} ON {t}({})",
                self.u.int_in_range(0u8..=3)?,
                self.pick(COLUMNS)?
            ),
            4 => format!("CREATE VIEW IF NOT EXISTS v0 AS {}", self.select(depth)?),
            5 => format!(
                "CREATE {}TRIGGER IF NOT EXISTS tr{} {} {} ON {t} BEGIN {}; END",
                self.pick(&["", "TEMP "])?,
                self.u.int_in_range(0u8..=3)?,
                self.pick(&["AFTER", "BEFORE"])?,
                self.pick(&["INSERT", "UPDATE", "DELETE"])?,
                self.dml(depth)?
            ),
            6 => format!(
                "DROP {} IF EXISTS {}",
                self.pick(&["TABLE", "VIEW", "TRIGGER", "INDEX"])?,
                self.pick(&[
                    "t0",
                    "t1",
                    "v0",
                    "tr0",
                    "i0",
                    "f5",
                    "temp.tt",
                    "_raftlite_state"
                ])?
            ),
            7..=11 => self.dml(depth)?,
            12 | 13 => self.select(depth)?,
            14 | 15 => self.pragma()?,
            16 => format!("EXPLAIN {}", self.stmt(depth.saturating_sub(1))?),
            17 => format!("EXPLAIN QUERY PLAN {}", self.stmt(depth.saturating_sub(1))?),
            18 => {
                let file = format!("'{}/attached.db'", self.outside);
                let target = self.pick(&["':memory:'", "''", "'file:x?mode=memory'", "FILE"])?;
                let target = if target == "FILE" {
                    file.as_str()
                } else {
                    target
                };
                format!("ATTACH {target} AS {}", self.pick(&["m", "main", "temp"])?)
            }
            19 => {
                let into = format!("VACUUM INTO '{}/vacuumed.db'", self.outside);
                let s = self.pick(&[
                    "DETACH m",
                    "VACUUM",
                    "INTO",
                    "ANALYZE",
                    "REINDEX",
                    "PRAGMA optimize",
                ])?;
                if s == "INTO" {
                    into
                } else {
                    s.into()
                }
            }
            20 => self
                .pick(&[
                    "BEGIN",
                    "BEGIN IMMEDIATE",
                    "COMMIT",
                    "END",
                    "ROLLBACK",
                    "BEGIN TRANSACTION",
                ])?
                .into(),
            21 => format!(
                "{} {}",
                self.pick(&["SAVEPOINT", "RELEASE", "ROLLBACK TO"])?,
                self.pick(SAVEPOINTS)?
            ),
            22 => format!(
                "ALTER TABLE {t} {}",
                self.pick(&[
                    "RENAME TO t9",
                    "ADD COLUMN d DEFAULT 1",
                    "RENAME COLUMN a TO z",
                    "DROP COLUMN c"
                ])?
            ),
            23 => format!(
                "INSERT INTO f5(f5{}) VALUES({})",
                self.pick(&["", ", rowid, a"])?,
                self.pick(&[
                    "'rebuild'",
                    "'optimize'",
                    "'integrity-check'",
                    "'delete', 1, 'x'",
                    "'delete-all'"
                ])?
            ),
            24 => {
                // A whole hostile request's statement.
                let request = self.u.choose(self.hostile)?.clone();
                self.u.choose(&request)?.clone()
            }
            25 => format!("{}; {}", self.dml(depth)?, self.dml(depth)?),
            26 => self
                .pick(&[
                    "INSERT INTO",
                    "SELECT FROM",
                    "x",
                    "CREATE TABLE (",
                    "'unterminated",
                    "SELECT RAISE(ROLLBACK, 'r')",
                ])?
                .into(),
            _ => format!(
                "REPLACE INTO t0(rowid, a) VALUES(9223372036854775807, {})",
                self.expr(depth)?
            ),
        })
    }

    fn dml(&mut self, depth: u8) -> Result<String> {
        let t = self.pick(&[
            "t0",
            "t1",
            "t2",
            "tw",
            "f5",
            "f4",
            "r1",
            "temp.tt",
            "v0",
            "_raftlite_state",
        ])?;
        Ok(match self.u.int_in_range(0..=4)? {
            0 => format!(
                "INSERT {}INTO {t} VALUES({}, {}, {})",
                self.pick(&["", "OR REPLACE ", "OR IGNORE ", "OR ROLLBACK "])?,
                self.expr(depth)?,
                self.expr(depth)?,
                self.expr(depth)?
            ),
            1 => format!("INSERT INTO {t} {}", self.select(depth)?),
            2 => format!(
                "UPDATE {t} SET {} = {} WHERE {}",
                self.pick(COLUMNS)?,
                self.expr(depth)?,
                self.expr(depth)?
            ),
            3 => format!("DELETE FROM {t} WHERE {}", self.expr(depth)?),
            _ => format!("INSERT INTO {t}(a) {} RETURNING *", self.select(depth)?),
        })
    }

    fn request(&mut self) -> Result<ExecuteItem> {
        let statements = if self.u.ratio(1, 6)? {
            self.u.choose(self.hostile)?.clone()
        } else {
            (0..self.u.int_in_range(1..=4)?)
                .map(|_| self.stmt(2))
                .collect::<Result<_>>()?
        };
        Ok(ExecuteItem {
            request: Request {
                statements: statements.into_iter().map(SqlStatement::new).collect(),
                transaction: self.u.ratio(1, 4)?,
            },
            policy: if self.u.arbitrary()? {
                RowsPolicy::ReturningOnly
            } else {
                RowsPolicy::AllQueries
            },
            opts: ResultOptions::default(),
            env: ApplyEnv {
                unix_millis: self.u.int_in_range(0i64..=4_000_000_000_000)?,
                seed: self.u.arbitrary()?,
                budget: self.pick(&[500u64, 5_000, 50_000, 200_000])?,
            },
        })
    }
}

// ---------------------------------------------------------------------------------------
// The replicas.

/// One replica: a writer opened as the node opens it, with the state table.
struct Replica {
    path: PathBuf,
    conn: Connection,
    applied: u64,
}

fn settings() -> DbSettings {
    DbSettings::default()
}

impl Replica {
    fn open(path: PathBuf) -> Replica {
        let conn = open_writer(&path, &settings()).expect("open the writer");
        ensure_state_table(&conn).expect("create the state table");
        Replica {
            path,
            conn,
            applied: 0,
        }
    }

    fn record(conn: &Connection, index: u64) -> anyhow::Result<()> {
        record_state(conn, &format!("{{\"index\":{index}}}"), None, None)?;
        Ok(())
    }

    /// Applies one entry as the state machine does; a fault is a bug.
    fn apply(&mut self, items: &[ExecuteItem], batch: bool) -> Vec<RequestResults> {
        self.applied += 1;
        let index = self.applied;
        let out = if batch {
            apply_entry(
                &self.conn,
                |c| apply_batch(c, items, |_| ()),
                |e| vec![failed(e); items.len()],
                |c| Replica::record(c, index),
            )
        } else {
            let item = &items[0];
            self.conn.set_apply_inputs(Some(item.env.inputs())).unwrap();
            let out = apply_entry(
                &self.conn,
                |c| {
                    execute_request(c, &item.request, item.policy, item.opts, item.env.budget)
                        .map(|r| vec![r])
                },
                |e| vec![failed(e)],
                |c| Replica::record(c, index),
            );
            let used = gate(&self.conn).expect("a gate").budget_use();
            assert!(
                used.used <= used.budget.saturating_add(1),
                "a request ran past its budget: {used:?}: {:?}",
                item.request
            );
            out
        };
        self.conn.set_apply_inputs(None).unwrap();
        out.unwrap_or_else(|f| panic!("a local fault while applying: {f}"))
    }

    /// Runs a SQL load's script as the state machine does.
    fn load(&mut self, script: &Path, env: ApplyEnv) -> String {
        self.applied += 1;
        let index = self.applied;
        self.conn.set_apply_inputs(Some(env.inputs())).unwrap();
        let out = run_sql_script(&self.conn, script, false, env.budget, |c| {
            Replica::record(c, index)
        })
        .unwrap_or_else(|e| panic!("a local fault while loading: {e:#}"));
        self.conn.set_apply_inputs(None).unwrap();
        load_answer(&out, &std::fs::read(script).unwrap_or_default())
    }

    fn digest(&self) -> String {
        let d = content_digest(&self.conn, STATE_TABLE).expect("digest");
        format!("{} {} {}", d.digest, d.tables, d.rows)
    }

    /// A restart: a new writer connection on the same file.
    fn reopen(&mut self) {
        let conn = open_writer(&self.path, &settings()).expect("reopen the writer");
        let old = std::mem::replace(&mut self.conn, conn);
        drop(old);
    }

    /// Installs `file` in place of the database (a snapshot install), on a new connection.
    fn install(&mut self, file: &Path) {
        let placeholder =
            Connection::open(":memory:", raftlite_ffi::OpenFlags::READ_WRITE).unwrap();
        let mut old = std::mem::replace(&mut self.conn, placeholder);
        old.close().expect("close before the swap");
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(sibling(&self.path, suffix));
        }
        std::fs::rename(file, &self.path).expect("swap in");
        self.conn = open_writer(&self.path, &settings()).expect("open the installed file");
    }

    /// A read, as the node runs one: it must change nothing.
    fn read(&self, request: &Request) {
        let reader = open_reader(&self.path, &settings()).expect("open a reader");
        let before = self.digest();
        query_request(
            &reader,
            request,
            ResultOptions::default(),
            ReadLimits::steps(200_000),
        )
        .unwrap_or_else(|e| panic!("a local fault while reading: {e}"));
        assert_eq!(before, self.digest(), "a read changed the database");
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn failed(error: &str) -> RequestResults {
    RequestResults {
        error: Some(error.to_string()),
        ..RequestResults::default()
    }
}

/// An answer without its timings, and without the rows of `EXPLAIN` and `PRAGMA` statements:
/// those may show each replica's physical state (the schema cookie, which installing a
/// snapshot with the backup API bumps; page counts), which the gate keeps out of the data
/// but a statement may still report to the client.
fn answer(items: &[ExecuteItem], results: &[RequestResults]) -> String {
    results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let statements = items.get(i).map(|item| item.request.statements.as_slice());
            let outcomes: Vec<String> = r
                .results
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    let sql = statements
                        .and_then(|st| st.get(j))
                        .map(|st| st.sql.trim_start().to_ascii_uppercase())
                        .unwrap_or_default();
                    match &s.outcome {
                        StatementOutcome::Rows(_)
                            if sql.starts_with("EXPLAIN") || sql.starts_with("PRAGMA") =>
                        {
                            "rows".to_string()
                        }
                        other => format!("{other:?}"),
                    }
                })
                .collect();
            format!(
                "{outcomes:?} / {:?} / {}\n",
                r.error, r.ended_callers_transaction
            )
        })
        .collect()
}

/// A load's answer as compared between replicas: its last rows are left out when the script
/// holds an `EXPLAIN` or a `PRAGMA` (they may show the replica's physical state, as for
/// requests: see [`answer`]; found when a load ended with `EXPLAIN CREATE TABLE ...` after B
/// installed a snapshot).
fn load_answer(out: &ScriptOutcome, script: &[u8]) -> String {
    let text = String::from_utf8_lossy(script).to_ascii_uppercase();
    match out {
        ScriptOutcome::Done {
            last: StatementOutcome::Rows(_),
            statements,
        } if text.contains("EXPLAIN") || text.contains("PRAGMA") => {
            format!("Done {{ last: rows, statements: {statements} }}")
        }
        other => format!("{other:?}"),
    }
}

/// A scratch directory of this process, emptied for each input.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("raftlite-fuzz-apply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn copy_of(conn: &Connection, dest: &Path) {
    let _ = std::fs::remove_file(dest);
    raftlite::db::backup::copy_to_file(conn, dest, 64, |_| Ok(())).expect("copy the database");
}

fn run(data: &[u8]) -> Result<()> {
    let dir = scratch();
    let outside = dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let hostile = hostile(&outside);
    let outside_text = outside.display().to_string();
    let mut u = Unstructured::new(data);
    let mut g = Gen {
        u: &mut u,
        hostile: &hostile,
        outside: &outside_text,
    };
    let mut a = Replica::open(dir.join("a.db"));
    let mut b = Replica::open(dir.join("b.db"));
    let mut generation = 0;
    // APPLY_DIFF_TRACE=1 prints each step (to replay a finding by hand).
    let trace = std::env::var_os("APPLY_DIFF_TRACE").is_some();
    for _ in 0..64 {
        if g.u.is_empty() {
            break;
        }
        let step = g.u.int_in_range(0..=11)?;
        if trace {
            eprintln!("step {step}");
        }
        match step {
            0..=4 => {
                let item = g.request()?;
                if trace {
                    eprintln!("  {:?}", item.request);
                }
                let items = [item];
                assert_eq!(
                    answer(&items, &a.apply(&items, false)),
                    answer(&items, &b.apply(&items, false))
                );
            }
            5 => {
                let items = (0..g.u.int_in_range(2..=4)?)
                    .map(|_| g.request())
                    .collect::<Result<Vec<_>>>()?;
                if trace {
                    items.iter().for_each(|i| eprintln!("  {:?}", i.request));
                }
                assert_eq!(
                    answer(&items, &a.apply(&items, true)),
                    answer(&items, &b.apply(&items, true))
                );
            }
            6 => b.reopen(),
            7 => {
                // A snapshot: a copy of the leader's (A's) database, or of B's own.
                generation += 1;
                let copy = dir.join(format!("snapshot-{generation}.db"));
                copy_of(if g.u.arbitrary()? { &a.conn } else { &b.conn }, &copy);
                b.install(&copy);
            }
            8 => {
                // Both rebuilt from A's dump: A runs it on a writer, B on a builder connection.
                generation += 1;
                let script = dir.join(format!("dump-{generation}.sql"));
                let mut text = Vec::new();
                raftlite::db::dump::dump_excluding(&a.conn, None, &[STATE_TABLE], &mut text)
                    .expect("dump");
                std::fs::write(&script, &text).unwrap();
                let env = ApplyEnv::default();
                let fresh_a = Replica::open(dir.join(format!("a-{generation}.db")));
                let built = dir.join(format!("b-{generation}.db"));
                let builder = open_builder(&built, &settings()).expect("open the builder");
                ensure_state_table(&builder).unwrap();
                builder.set_apply_inputs(Some(env.inputs())).unwrap();
                let by_builder = run_sql_script(&builder, &script, false, env.budget, |_| Ok(()))
                    .unwrap_or_else(|e| panic!("a local fault while building: {e:#}"));
                drop(builder);
                let mut fresh_b = Replica::open(built);
                a = fresh_a;
                let by_writer = a.load(&script, env);
                fresh_b.applied = a.applied;
                b = fresh_b;
                assert_eq!(
                    by_writer,
                    load_answer(&by_builder, &text),
                    "{}",
                    String::from_utf8_lossy(&text)
                );
            }
            9 => {
                // A SQL load entry: statements as a script.
                generation += 1;
                let mut text = String::new();
                if g.u.arbitrary()? {
                    text.push_str("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n");
                }
                for _ in 0..g.u.int_in_range(1..=5)? {
                    text.push_str(&g.stmt(2)?);
                    text.push_str(";\n");
                }
                if text.contains("BEGIN TRANSACTION;") {
                    text.push_str("COMMIT;\n");
                }
                let script = dir.join(format!("load-{generation}.sql"));
                std::fs::write(&script, &text).unwrap();
                if trace {
                    eprintln!("  {text}");
                }
                let env = g.request()?.env;
                assert_eq!(a.load(&script, env), b.load(&script, env), "{text}");
            }
            _ => {
                let request = g.request()?.request;
                a.read(&request);
                b.read(&request);
            }
        }
        assert_eq!(a.digest(), b.digest(), "the replicas differ");
        let leftovers: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
        assert!(
            leftovers.is_empty(),
            "files outside the database: {leftovers:?}"
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
