//! Property test of the deterministic apply path (the issue's "fuzz target, or a property
//! test"): arbitrary sequences of entries, each a request of statements full of clock and
//! random calls with the leader's inputs, applied to two independent databases the way the
//! state machine applies them (deterministic writer connection, one transaction per entry,
//! inputs set for the entry), leave identical content: same digest, same SQL dump.
//! Applied through plain connections instead, the same sequences diverge — so the property
//! is not vacuous.

use proptest::prelude::*;
use raftlite::db::digest::content_digest;
use raftlite::db::execute::execute_request;
use raftlite::db::request::{ApplyEnv, Request, ResultOptions, RowsPolicy, SqlStatement};
use raftlite::db::settings::{open_writer, DbSettings};
use raftlite_ffi::{Connection, OpenFlags};

const SCHEMA: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a, b, c DEFAULT CURRENT_TIMESTAMP);\
    CREATE TABLE u (x, y);\
    CREATE TABLE w (k PRIMARY KEY, v) WITHOUT ROWID;\
    CREATE TRIGGER tr AFTER UPDATE ON t BEGIN INSERT INTO u VALUES (random(), datetime('now')); END;\
    CREATE VIEW v AS SELECT random() AS r, randomblob(2) AS b, julianday('now') AS j;";

/// Statement templates: every one calls something non-deterministic, or fails.
fn statement() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..40).prop_map(|n| format!("INSERT INTO t(a, b) VALUES (random(), randomblob({n}))")),
        (1u8..5).prop_map(|m| format!("UPDATE t SET a = random() WHERE id % {m} = 0")),
        (1u8..5).prop_map(|m| format!("DELETE FROM t WHERE abs(a) % {m} = 1")),
        (0u8..10).prop_map(|k| format!("INSERT INTO u SELECT r, j FROM v, (SELECT 1 UNION SELECT 2) LIMIT {k}")),
        (-90i32..90).prop_map(|d| format!("INSERT INTO u VALUES (strftime('%Y-%m-%d %H:%M:%f','now','{d} days'), unixepoch('now','subsec'))")),
        (0u8..6).prop_map(|k| format!("INSERT OR REPLACE INTO w VALUES ({k}, hex(randomblob(4)) || time('now'))")),
        Just("INSERT INTO nosuch VALUES (random())".to_string()),
        Just("INSERT INTO t(id, a) SELECT max(id), 0 FROM t".to_string()),
        Just("UPDATE t SET b = randomblob(abs(random()) % 8), c = CURRENT_TIMESTAMP".to_string()),
    ]
}

#[derive(Debug, Clone)]
struct Entry {
    env: ApplyEnv,
    statements: Vec<String>,
    transaction: bool,
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        0i64..4_000_000_000_000,
        any::<u64>(),
        prop::collection::vec(statement(), 1..5),
        any::<bool>(),
    )
        .prop_map(|(unix_millis, seed, statements, transaction)| Entry {
            env: ApplyEnv {
                unix_millis,
                seed,
                ..ApplyEnv::default()
            },
            statements,
            transaction,
        })
}

/// Applies `entries` as the state machine does; `deterministic=false` uses plain connections
/// and no inputs (what the apply did before).
fn apply(dir: &std::path::Path, name: &str, entries: &[Entry], deterministic: bool) -> Connection {
    let path = dir.join(name);
    let conn = if deterministic {
        open_writer(&path, &DbSettings::default()).unwrap()
    } else {
        let mut plain = Connection::open(&path, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
        raftlite::db::settings::install_gate(&mut plain).unwrap();
        plain
    };
    conn.execute_batch(SCHEMA).unwrap();
    apply_more(conn, entries, deterministic)
}

fn apply_more(conn: Connection, entries: &[Entry], deterministic: bool) -> Connection {
    for e in entries {
        if deterministic {
            conn.set_apply_inputs(Some(e.env.inputs())).unwrap();
        }
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let req = Request {
            statements: e.statements.iter().map(SqlStatement::new).collect(),
            transaction: e.transaction,
        };
        execute_request(
            &conn,
            &req,
            RowsPolicy::ReturningOnly,
            ResultOptions::default(),
            e.env.budget,
        )
        .unwrap();
        conn.execute_batch("COMMIT").unwrap();
        if deterministic {
            conn.set_apply_inputs(None).unwrap();
        }
    }
    conn
}

fn fingerprint(conn: &Connection) -> (String, String) {
    let digest = content_digest(conn, "_raftlite_state").unwrap().digest;
    let mut dump = Vec::new();
    raftlite::db::dump::dump(conn, None, &mut dump).unwrap();
    (digest, String::from_utf8_lossy(&dump).into_owned())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn same_entries_same_content(entries in prop::collection::vec(entry(), 1..16)) {
        let dir = tempfile::tempdir().unwrap();
        let a = fingerprint(&apply(dir.path(), "a.db", &entries, true));
        let b = fingerprint(&apply(dir.path(), "b.db", &entries, true));
        prop_assert_eq!(&a.0, &b.0);
        prop_assert_eq!(&a.1, &b.1);
    }

    /// A node that stops after some entries and replays the rest on a new apply connection
    /// (a restart replaying its log tail) ends where an uninterrupted node ends.
    #[test]
    fn a_restart_between_entries_changes_nothing(
        entries in prop::collection::vec(entry(), 2..12),
        split in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let k = split.index(entries.len());
        let whole = fingerprint(&apply(dir.path(), "a.db", &entries, true));
        drop(apply(dir.path(), "b.db", &entries[..k], true));
        let reopened = open_writer(&dir.path().join("b.db"), &DbSettings::default()).unwrap();
        let resumed = fingerprint(&apply_more(reopened, &entries[k..], true));
        prop_assert_eq!(&whole.0, &resumed.0);
        prop_assert_eq!(&whole.1, &resumed.1);
    }
}

#[test]
fn without_the_deterministic_apply_the_same_entries_diverge() {
    let entries = vec![Entry {
        env: ApplyEnv {
            unix_millis: 1,
            seed: 1,
            ..ApplyEnv::default()
        },
        statements: vec!["INSERT INTO t(a, b) VALUES (random(), randomblob(8))".into()],
        transaction: false,
    }];
    let dir = tempfile::tempdir().unwrap();
    let a = fingerprint(&apply(dir.path(), "a.db", &entries, false));
    let b = fingerprint(&apply(dir.path(), "b.db", &entries, false));
    assert_ne!(a.0, b.0);
    let c = fingerprint(&apply(dir.path(), "c.db", &entries, true));
    let d = fingerprint(&apply(dir.path(), "d.db", &entries, true));
    assert_eq!(c, d);
    assert!(c.1.contains("'1970-01-01 00:00:00'"), "{}", c.1);
}

/// `PRAGMA optimize` looks only at tables the connection used since it opened: a node that
/// restarted would analyze less than its peers. Pinned (as the leader does before proposing),
/// it depends on content only.
#[test]
fn pragma_optimize_is_pinned_to_content() {
    let dir = tempfile::tempdir().unwrap();
    let setup = "CREATE TABLE t (a, b); CREATE INDEX ta ON t(a);\
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 10) INSERT INTO t SELECT i, i FROM n;\
        ANALYZE;\
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 5000) INSERT INTO t SELECT i, i FROM n;";
    let run = |name: &str, used: bool, sql: &str| -> String {
        let path = dir.path().join(name);
        {
            let c = Connection::open(&path, OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap();
            c.execute_batch(setup).unwrap();
        }
        // A fresh connection, as after a restart; `used` runs a query that reads stat1.
        let c = Connection::open(&path, OpenFlags::READ_WRITE).unwrap();
        if used {
            c.query_i64("SELECT count(*) FROM t WHERE a = 3").unwrap();
        }
        c.execute_batch(sql).unwrap();
        c.query_text("SELECT group_concat(stat, '|') FROM sqlite_stat1")
            .unwrap()
            .unwrap_or_default()
    };
    let plain_used = run("a.db", true, "PRAGMA optimize");
    let plain_fresh = run("b.db", false, "PRAGMA optimize");
    assert_ne!(
        plain_used, plain_fresh,
        "unpinned optimize depends on the session"
    );
    let pinned = raftlite::db::rewrite::pin_optimize("PRAGMA optimize").unwrap();
    assert_eq!(run("c.db", true, &pinned), run("d.db", false, &pinned));
}
