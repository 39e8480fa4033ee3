//! The authorizer and the progress handler (`hooks.rs`): what SQLite asks, when, and what the
//! answers do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use raftlite_ffi::{
    AuthAction, AuthRequest, Authorization, Authorizer, Connection, ErrorCode, OpenFlags,
    ProgressHandler,
};

fn mem() -> Connection {
    Connection::open(":memory:", OpenFlags::READ_WRITE | OpenFlags::CREATE).unwrap()
}

/// One question the authorizer was asked: the action, `arg1`, `arg2` and the accessor.
type Seen = (AuthAction, Option<String>, Option<String>, Option<String>);

/// Records every question and denies the pragmas and functions it is told to.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    deny_pragmas: Vec<&'static str>,
    deny_functions: Vec<&'static str>,
}

impl Authorizer for Recorder {
    fn authorize(&self, r: &AuthRequest<'_>) -> Authorization {
        let own = |s: &Option<std::borrow::Cow<'_, str>>| s.as_ref().map(|s| s.to_string());
        self.seen
            .lock()
            .unwrap()
            .push((r.action, own(&r.arg1), own(&r.arg2), own(&r.accessor)));
        let arg1 = r.arg1.as_deref().unwrap_or("");
        let arg2 = r.arg2.as_deref().unwrap_or("");
        match r.action {
            AuthAction::Pragma if self.deny_pragmas.contains(&arg1) => Authorization::Deny,
            AuthAction::Function if self.deny_functions.contains(&arg2) => Authorization::Deny,
            _ => Authorization::Allow,
        }
    }
}

/// The motivating case: SQLite applies a flag pragma while it compiles the statement, so
/// `EXPLAIN PRAGMA query_only=1` switched the connection to read-only although it never ran.
/// The authorizer is asked at compile time and stops it there.
#[test]
fn a_denied_pragma_does_not_take_effect_even_under_explain() {
    let mut c = mem();
    // Without an authorizer, compiling is enough to change the setting.
    c.prepare("EXPLAIN PRAGMA query_only=1").unwrap();
    assert_eq!(c.query_i64("PRAGMA query_only").unwrap(), Some(1));
    c.execute_batch("PRAGMA query_only=0").unwrap();

    c.set_authorizer(Some(Arc::new(Recorder {
        deny_pragmas: vec!["query_only"],
        ..Recorder::default()
    })))
    .unwrap();
    for sql in [
        "PRAGMA query_only=1",
        "EXPLAIN PRAGMA query_only=1",
        "EXPLAIN QUERY PLAN PRAGMA query_only=1",
    ] {
        let err = c.prepare(sql).err().unwrap();
        assert_eq!(err.code(), ErrorCode::Auth, "{sql}: {err}");
        assert_eq!(err.message, "not authorized");
    }
    c.set_authorizer::<Recorder>(None).unwrap();
    assert_eq!(c.query_i64("PRAGMA query_only").unwrap(), Some(0));
}

/// Trigger bodies are compiled into the statements that fire them: the authorizer sees their
/// actions then, with the trigger's name as the accessor, and a denial there stops the outer
/// statement.
#[test]
fn trigger_bodies_are_authorized_when_the_firing_statement_is_prepared() {
    let mut c = mem();
    c.execute_batch(
        "CREATE TABLE t(a); CREATE TABLE log(n);
         CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES(total_changes()); END;",
    )
    .unwrap();
    let recorder = Arc::new(Recorder {
        deny_functions: vec!["total_changes"],
        ..Recorder::default()
    });
    c.set_authorizer(Some(Arc::clone(&recorder))).unwrap();
    let err = c.prepare("INSERT INTO t VALUES(1)").err().unwrap();
    // SQLite reports a denied function as a plain error with its own message.
    assert_eq!(err.code(), ErrorCode::Error);
    assert_eq!(err.message, "not authorized to use function: total_changes");
    let seen = recorder.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|(a, _, f, acc)| *a == AuthAction::Function
            && f.as_deref() == Some("total_changes")
            && acc.as_deref() == Some("tr")),
        "{seen:?}"
    );
    assert!(seen
        .iter()
        .any(|(a, t, _, _)| *a == AuthAction::Insert && t.as_deref() == Some("log")));
    assert_eq!(c.query_i64("SELECT count(*) FROM t").unwrap(), Some(0));
}

/// The registered value can be reached again by its type, and only by its type.
#[test]
fn the_authorizer_is_found_by_its_type() {
    struct Other;
    impl Authorizer for Other {
        fn authorize(&self, _: &AuthRequest<'_>) -> Authorization {
            Authorization::Allow
        }
    }
    let mut c = mem();
    assert!(c.authorizer::<Recorder>().is_none());
    c.set_authorizer(Some(Arc::new(Recorder::default())))
        .unwrap();
    c.execute_batch("SELECT 1").unwrap();
    let found = c.authorizer::<Recorder>().expect("registered");
    assert!(!found.seen.lock().unwrap().is_empty());
    assert!(c.authorizer::<Other>().is_none());
    c.set_authorizer(Some(Arc::new(Other))).unwrap();
    assert!(c.authorizer::<Recorder>().is_none());
}

/// A panic in the policy denies the action instead of unwinding into SQLite.
#[test]
fn a_panicking_authorizer_denies() {
    struct Panics;
    impl Authorizer for Panics {
        fn authorize(&self, r: &AuthRequest<'_>) -> Authorization {
            if r.action == AuthAction::Select {
                panic!("policy bug");
            }
            Authorization::Allow
        }
    }
    let mut c = mem();
    c.set_authorizer(Some(Arc::new(Panics))).unwrap();
    let err = c.query_i64("SELECT 1").err().unwrap();
    assert_eq!(err.code(), ErrorCode::Auth);
    // The connection still works once the authorizer is gone.
    c.set_authorizer::<Panics>(None).unwrap();
    assert_eq!(c.query_i64("SELECT 1").unwrap(), Some(1));
}

/// `Ignore` on a column read gives NULL instead of failing.
#[test]
fn ignore_reads_null() {
    struct HideB;
    impl Authorizer for HideB {
        fn authorize(&self, r: &AuthRequest<'_>) -> Authorization {
            if r.action == AuthAction::Read && r.arg2.as_deref() == Some("b") {
                Authorization::Ignore
            } else {
                Authorization::Allow
            }
        }
    }
    let mut c = mem();
    c.execute_batch("CREATE TABLE t(a, b); INSERT INTO t VALUES(1, 2)")
        .unwrap();
    c.set_authorizer(Some(Arc::new(HideB))).unwrap();
    assert_eq!(
        c.query_text("SELECT a || ',' || coalesce(b, 'null') FROM t")
            .unwrap()
            .as_deref(),
        Some("1,null")
    );
}

/// Counts calls and stops after `limit` of them.
struct Budget {
    calls: AtomicU64,
    limit: u64,
}

impl ProgressHandler for Budget {
    fn keep_going(&self) -> bool {
        self.calls.fetch_add(1, Ordering::Relaxed) < self.limit
    }
}

const ENDLESS: &str = "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) \
                       SELECT count(*) FROM c";

/// The progress handler stops an endless statement, and the point where it stops depends only
/// on the statement and the data: the same run twice calls it the same number of times.
#[test]
fn the_progress_handler_stops_an_endless_statement_at_the_same_point() {
    let run = || {
        let mut c = mem();
        c.execute_batch(
            "CREATE TABLE t(x); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 \
             FROM c WHERE i < 500) INSERT INTO t SELECT i FROM c;",
        )
        .unwrap();
        let budget = Arc::new(Budget {
            calls: AtomicU64::new(0),
            limit: 300,
        });
        c.set_progress_handler(100, Some(Arc::clone(&budget)))
            .unwrap();
        let err = c
            .execute_batch(
                "CREATE TABLE out(n); INSERT INTO out \
                 SELECT (SELECT count(*) FROM t AS a, t AS b WHERE a.x < b.x) FROM t",
            )
            .err()
            .unwrap();
        assert_eq!(err.code(), ErrorCode::Interrupt);
        assert_eq!(err.message, "interrupted");
        let calls = budget.calls.load(Ordering::Relaxed);
        c.set_progress_handler::<Budget>(0, None).unwrap();
        // Nothing of the interrupted INSERT remains.
        assert_eq!(c.query_i64("SELECT count(*) FROM out").unwrap(), Some(0));
        calls
    };
    let first = run();
    assert_eq!(first, 301, "stopped at the first call past the limit");
    assert_eq!(run(), first);

    let mut c = mem();
    c.set_progress_handler(
        1000,
        Some(Arc::new(Budget {
            calls: AtomicU64::new(0),
            limit: 1000,
        })),
    )
    .unwrap();
    let err = c.query_i64(ENDLESS).err().unwrap();
    assert_eq!(err.code(), ErrorCode::Interrupt);
}

/// How fast this machine runs the progress handler's ticks (one per loop iteration of a
/// running statement when it is called at every instruction, as raftlite's write budget is),
/// and what calling it costs, on statements that never end
/// (`cargo test -p raftlite-ffi --release --test hooks -- --ignored --nocapture ticks`):
/// the figures the default write budget is set from (docs/architecture.md, "Budgets").
#[test]
#[ignore = "a measurement, not a check"]
fn ticks_per_second() {
    let workloads = [
        ("recursive CTE", ENDLESS),
        (
            "cross join count",
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 100000) \
             SELECT count(*) FROM c AS a, c AS b WHERE a.i + b.i > 0",
        ),
        (
            "trigger chain",
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) \
             INSERT INTO t SELECT i, printf('%08d', i) FROM c",
        ),
    ];
    for (name, sql) in workloads {
        for every in [1u32, 1000] {
            let mut c = mem();
            c.execute_batch("CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT UNIQUE)")
                .unwrap();
            let limit = if every == 1 { 200_000_000 } else { 2_000_000 };
            let budget = Arc::new(Budget {
                calls: AtomicU64::new(0),
                limit,
            });
            c.set_progress_handler(every, Some(Arc::clone(&budget)))
                .unwrap();
            let started = std::time::Instant::now();
            let _ = c.execute_batch(sql);
            let secs = started.elapsed().as_secs_f64();
            let calls = budget.calls.load(Ordering::Relaxed) as f64;
            println!(
                "{name}: every {every}: {calls:.0} calls in {secs:.2} s: {:.2} M calls/s, {:.1} M instructions/s at least",
                calls / secs / 1e6,
                calls * f64::from(every) / secs / 1e6
            );
        }
    }
}

/// A deferred foreign key violation is only seen at COMMIT; the status call sees it before.
#[test]
fn deferred_foreign_key_violations_are_visible_before_commit() {
    let c = mem();
    c.execute_batch(
        "PRAGMA foreign_keys=ON; CREATE TABLE p(id INTEGER PRIMARY KEY);
         CREATE TABLE ch(p REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED);",
    )
    .unwrap();
    c.execute_batch("BEGIN; INSERT INTO ch VALUES(7)").unwrap();
    assert!(c.has_deferred_foreign_key_violations().unwrap());
    let err = c.execute_batch("COMMIT").err().unwrap();
    assert_eq!(err.code(), ErrorCode::Constraint, "{err}");
    c.execute_batch("INSERT INTO p VALUES(7); COMMIT").unwrap();
    assert!(!c.has_deferred_foreign_key_violations().unwrap());
}
