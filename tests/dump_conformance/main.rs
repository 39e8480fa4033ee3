//! The SQL dump conformance suite: `raftlite dump` measured against the `.dump` of the
//! `sqlite3` 3.40.1 shell, on databases built to be hard to dump.
//!
//! For every database (the hand-written [`cases`], then seeded [`random`] ones):
//! 1. `raftlite dump FILE` (the real binary) and `sqlite3 FILE .dump` each run on a private
//!    copy of the file and its `-wal` (the shell's connection checkpoints the WAL when it
//!    closes), and the two dumps must be the same bytes. A line whose only difference is the
//!    digits of REAL literals that parse to the same double counts as the same; the report
//!    says SAME-VALUES and how many lines differ so ([`compare`]).
//! 2. Our dump is loaded with the shell into a fresh database, and its content must equal the
//!    original's: schema rows, every row with its storage class and exact value,
//!    `sqlite_sequence`, and a clean `PRAGMA integrity_check`; the reload prints nothing.
//!    Databases that the shell's own format cannot round-trip carry a [`cases::Loss`]: the
//!    reload must lose exactly that, and must still lose it.
//!
//! A third test loads some of the cases into a real `raftlited` (`POST /db/load`) and requires
//! `GET /db/backup?fmt=sql` to match the shell's dump of the same file, byte for byte.
//!
//! Without `sqlite3` 3.40.x on PATH the comparisons are skipped with a loud line, or fail under
//! CI (see `tests/common/reference_shell.rs`). Knobs, all optional:
//! - `RAFTLITE_DUMP_CASES=a,b`: only these cases (and no random databases unless
//!   `RAFTLITE_DUMP_SEEDS` is set too);
//! - `RAFTLITE_DUMP_SEEDS=1-500` or `=7,9`: the random databases' seeds (default 1-24);
//! - `RAFTLITE_DUMP_KEEP=1`: keep the work directory (dumps, copies, reloaded databases) and
//!   print where it is. It is kept anyway when a case fails.

#[path = "../common/mod.rs"]
mod common;

mod cases;
mod compare;
mod random;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cases::{wal_of, Case, Loss};
use common::reference_shell::{reference_shell, ReferenceShell};
use compare::{compare_dumps, differences, exactly, integrity, Bytes, Content};

const RAFTLITE: &str = env!("CARGO_BIN_EXE_raftlite");

/// A small deterministic generator (splitmix64): the same seed gives the same sequence on every
/// machine and with every version of every crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn every_case_matches_the_reference_shell() {
    let Some(shell) = reference_shell("dump_conformance::every_case_matches_the_reference_shell")
    else {
        return;
    };
    let only = list_from_env("RAFTLITE_DUMP_CASES");
    let all = cases::cases();
    if let Some(only) = &only {
        let unknown: Vec<&String> = only
            .iter()
            .filter(|n| !all.iter().any(|c| c.name == n.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "RAFTLITE_DUMP_CASES names unknown cases: {unknown:?}"
        );
    }
    let chosen: Vec<&Case> = all
        .iter()
        .filter(|c| only.as_ref().is_none_or(|o| o.iter().any(|n| n == c.name)))
        .collect();
    let work = Work::new();
    let outcomes = in_parallel(&chosen, |case| {
        let mut outcome = run_case(
            &shell,
            work.path(),
            case.name,
            case.build,
            case.loss.as_ref(),
        );
        if !outcome.failures.is_empty() {
            outcome
                .details
                .insert(0, format!("    covers: {}", case.covers));
        }
        outcome
    });
    finish("hand-written cases", &shell, work, &outcomes);
}

#[test]
fn seeded_random_databases_match_the_reference_shell() {
    let Some(shell) =
        reference_shell("dump_conformance::seeded_random_databases_match_the_reference_shell")
    else {
        return;
    };
    let seeds = match std::env::var("RAFTLITE_DUMP_SEEDS") {
        Ok(spec) => parse_seeds(&spec),
        // Asking for some cases by name means: just those.
        Err(_) if std::env::var_os("RAFTLITE_DUMP_CASES").is_some() => Vec::new(),
        Err(_) => (1..=24).collect(),
    };
    let work = Work::new();
    let outcomes = in_parallel(&seeds, |seed| {
        let described = Mutex::new(String::new());
        let mut outcome = run_case(
            &shell,
            work.path(),
            &format!("random_{seed}"),
            |p| *described.lock().unwrap() = random::build(*seed, p),
            None,
        );
        if !outcome.failures.is_empty() {
            outcome
                .details
                .insert(0, format!("    built: {}", described.lock().unwrap()));
        }
        outcome
    });
    finish("seeded random databases", &shell, work, &outcomes);
}

/// The cases the server test loads: values of every kind, names, sequences, virtual tables,
/// statistics, the names that are not UTF-8.
const SERVER_CASES: [&str; 10] = [
    "storage_classes",
    "text_escapes",
    "text_invalid_utf8",
    "reals",
    "quoted_names",
    "names_invalid_utf8",
    "autoincrement",
    "fts5",
    "stat1",
    "object_order",
];

#[test]
fn server_sql_backup_matches_the_reference_shell() {
    let Some(shell) =
        reference_shell("dump_conformance::server_sql_backup_matches_the_reference_shell")
    else {
        return;
    };
    let all = cases::cases();
    let node = common::Node::start(&[]);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let work = Work::new();
    let mut outcomes = Vec::new();
    for name in SERVER_CASES {
        let case = all.iter().find(|c| c.name == name).expect("a known case");
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let built = dir.join("built.db");
        (case.build)(&built);
        let shell_copy = private_copy(&built, &dir.join("shell"));
        let want = shell_dump(&shell, &shell_copy);

        let load = client
            .post(node.url("/db/load"))
            .header("Content-Type", "application/octet-stream")
            .body(std::fs::read(&built).unwrap())
            .send()
            .expect("POST /db/load");
        let status = load.status().as_u16();
        let body = load.text().unwrap_or_default();
        assert!(
            status == 200 && !body.contains("\"error\""),
            "{name}: POST /db/load answered {status}: {body}"
        );
        let t0 = Instant::now();
        let backup = client
            .get(node.url("/db/backup?fmt=sql"))
            .send()
            .expect("GET /db/backup?fmt=sql");
        assert_eq!(backup.status().as_u16(), 200, "{name}: backup");
        let got = backup.bytes().unwrap().to_vec();
        let ms = t0.elapsed().as_millis();
        std::fs::write(dir.join("server.sql"), &got).unwrap();
        let mut outcome = Outcome::new(name);
        outcome.bytes(&compare_dumps(&got, &want));
        outcome.line = format!("{name:<28} {:<11} {ms:>6} ms", outcome.bytes_word);
        outcomes.push(outcome);
    }
    finish(
        "GET /db/backup?fmt=sql after POST /db/load",
        &shell,
        work,
        &outcomes,
    );
}

// ---------------------------------------------------------------------------------------------
// Running one database

/// The result of one database: its report line, details under it, and why it failed, if it did.
struct Outcome {
    name: String,
    line: String,
    bytes_word: &'static str,
    content_word: &'static str,
    details: Vec<String>,
    failures: Vec<String>,
}

impl Outcome {
    fn new(name: &str) -> Outcome {
        Outcome {
            name: name.to_string(),
            line: String::new(),
            bytes_word: "",
            content_word: "",
            details: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn fail(&mut self, why: String) {
        self.failures.push(why);
    }

    /// Records the byte comparison.
    fn bytes(&mut self, bytes: &Bytes) {
        match bytes {
            Bytes::Identical => self.bytes_word = "IDENTICAL",
            Bytes::SameValues { lines, first } => {
                self.bytes_word = "SAME-VALUES";
                self.details.push(format!(
                    "    {lines} line(s) differ only in the digits of REAL literals that parse \
                     to the same doubles; the first, {first}"
                ));
            }
            Bytes::Different(diff) => {
                self.bytes_word = "DIFFERENT";
                self.fail(format!("the dump differs from the shell's at {diff}"));
            }
        }
    }
}

/// Builds one database and puts it through both measures (see the module doc).
fn run_case(
    shell: &ReferenceShell,
    work: &Path,
    name: &str,
    build: impl FnOnce(&Path),
    loss: Option<&Loss>,
) -> Outcome {
    let mut outcome = Outcome::new(name);
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let built = dir.join("built.db");
    let built_ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(&built)));
    if let Err(panic) = built_ok {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        outcome.bytes_word = "NOT-BUILT";
        outcome.fail(format!("building the database failed: {why}"));
        outcome.line = line(&outcome, 0);
        return outcome;
    }
    let ours_copy = private_copy(&built, &dir.join("ours"));
    let shell_copy = private_copy(&built, &dir.join("shell"));
    let original_copy = private_copy(&built, &dir.join("original"));

    // 1. Byte for byte.
    let t0 = Instant::now();
    let ours = Command::new(RAFTLITE)
        .arg("dump")
        .arg(&ours_copy)
        .output()
        .expect("run raftlite dump");
    let ms = t0.elapsed().as_millis();
    std::fs::write(dir.join("ours.sql"), &ours.stdout).unwrap();
    if !ours.status.success() {
        outcome.fail(format!(
            "raftlite dump exited with {}: {}",
            ours.status,
            String::from_utf8_lossy(&ours.stderr).trim()
        ));
    }
    let want = shell_dump(shell, &shell_copy);
    std::fs::write(dir.join("shell.sql"), &want).unwrap();
    outcome.bytes(&compare_dumps(&ours.stdout, &want));

    // 2. Reload our dump with the shell, compare content.
    let restored = dir.join("restored.db");
    std::fs::write(&restored, b"").unwrap();
    let reload = shell
        .command()
        .arg(&restored)
        .stdin(std::fs::File::open(dir.join("ours.sql")).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run sqlite3 to reload the dump");
    let reload_said = String::from_utf8_lossy(&reload.stderr).trim().to_string();
    let back = match Content::read(&restored) {
        Ok(back) => back,
        Err(e) => {
            outcome.content_word = "UNREADABLE";
            outcome.fail(format!("the reloaded database is unreadable: {e}"));
            outcome.line = line(&outcome, ms);
            return outcome;
        }
    };
    // An original whose schema cannot be read counts as empty, and as a difference of its own.
    let (original, unreadable) = match Content::read(&original_copy) {
        Ok(original) => (original, None),
        Err(e) => (
            Content::default(),
            Some(format!("the original is unreadable: {e}")),
        ),
    };
    let checked = integrity(&restored);
    if checked != "ok" {
        outcome.fail(format!(
            "integrity_check of the reloaded database: {checked}"
        ));
    }
    let (mut problems, notes) = differences(&original, &back, exactly);
    problems.extend(unreadable);
    match loss {
        None => {
            outcome.content_word = if problems.is_empty() {
                "EQUIVALENT"
            } else {
                "NOT-EQUIVALENT"
            };
            for p in problems {
                outcome.fail(p);
            }
            if !reload_said.is_empty() {
                outcome.fail(format!("the reload printed: {}", cut(&reload_said)));
            }
        }
        Some(loss) => {
            let mut expected = original.clone();
            (loss.expect)(&mut expected);
            let (unexplained, _) = differences(&expected, &back, loss.same);
            outcome.content_word = if problems.is_empty() {
                "LOSS-GONE"
            } else if unexplained.is_empty() {
                "KNOWN-LOSSY"
            } else {
                "NOT-EQUIVALENT"
            };
            outcome
                .details
                .push(format!("    known loss, the shell's own: {}", loss.why));
            if problems.is_empty() {
                outcome.fail(
                    "the reload lost nothing, but the case documents a loss: update the case"
                        .to_string(),
                );
            }
            for p in unexplained {
                outcome.fail(format!("beyond the documented loss: {p}"));
            }
            match loss.reload_error {
                Some(expected) if !reload_said.contains(expected) => outcome.fail(format!(
                    "the reload should have printed {expected:?}, it printed: {}",
                    cut(&reload_said)
                )),
                None if !reload_said.is_empty() => {
                    outcome.fail(format!("the reload printed: {}", cut(&reload_said)))
                }
                _ => {}
            }
        }
    }
    outcome
        .details
        .extend(notes.into_iter().map(|n| format!("    note: {n}")));
    outcome.line = line(&outcome, ms);
    outcome
}

fn line(o: &Outcome, ms: u128) -> String {
    format!(
        "{:<28} {:<11} {:<14} {ms:>6} ms",
        o.name, o.bytes_word, o.content_word
    )
}

fn cut(s: &str) -> String {
    if s.len() > 400 {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

/// The shell's dump of `db`.
fn shell_dump(shell: &ReferenceShell, db: &Path) -> Vec<u8> {
    let out = shell
        .command()
        .arg(db)
        .arg(".dump")
        .output()
        .expect("run sqlite3 .dump");
    out.stdout
}

/// Copies the database at `built` (and its `-wal`) into `dir`; returns the copy's path.
fn private_copy(built: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let copy = dir.join("db.sqlite");
    std::fs::copy(built, &copy).unwrap();
    if wal_of(built).exists() {
        std::fs::copy(wal_of(built), wal_of(&copy)).unwrap();
    }
    copy
}

/// Runs `each` over `items` on two threads (the machine's builds and tests share two cores),
/// returning the results in the items' order.
fn in_parallel<T: Sync, R: Send>(items: &[T], each: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                let r = each(&items[i]);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// Prints the report and fails the test when some database failed.
fn finish(title: &str, shell: &ReferenceShell, work: Work, outcomes: &[Outcome]) {
    let mut report = format!(
        "\nSQL dump conformance, {title}: raftlite against sqlite3 {}\n",
        shell.version
    );
    for o in outcomes {
        report.push_str(&o.line);
        report.push('\n');
        for d in &o.details {
            report.push_str(d);
            report.push('\n');
        }
        for f in &o.failures {
            report.push_str(&format!("    FAIL: {f}\n"));
        }
    }
    let count = |word: &str| outcomes.iter().filter(|o| o.bytes_word == word).count();
    let content = |word: &str| outcomes.iter().filter(|o| o.content_word == word).count();
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.failures.is_empty())
        .map(|o| o.name.as_str())
        .collect();
    let reloaded = if outcomes.iter().any(|o| !o.content_word.is_empty()) {
        format!(
            "{} equivalent after reload, {} known-lossy; ",
            content("EQUIVALENT"),
            content("KNOWN-LOSSY")
        )
    } else {
        String::new()
    };
    report.push_str(&format!(
        "{} databases: {} identical, {} same values (REAL digits), {} different; {reloaded}\
         {} failed\n",
        outcomes.len(),
        count("IDENTICAL"),
        count("SAME-VALUES"),
        count("DIFFERENT"),
        failed.len()
    ));
    let keep = std::env::var_os("RAFTLITE_DUMP_KEEP").is_some() || !failed.is_empty();
    if keep {
        report.push_str(&format!("work directory kept: {}\n", work.keep().display()));
    }
    // One write, so that parallel tests do not interleave their reports.
    let _ = std::io::stderr().write_all(report.as_bytes());
    assert!(
        failed.is_empty(),
        "SQL dump conformance failed for: {failed:?}"
    );
}

/// The suite's scratch directory.
struct Work(tempfile::TempDir);

impl Work {
    fn new() -> Work {
        Work(
            tempfile::Builder::new()
                .prefix("dump-conformance-")
                .tempdir()
                .unwrap(),
        )
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn keep(self) -> PathBuf {
        self.0.keep()
    }
}

fn list_from_env(var: &str) -> Option<Vec<String>> {
    let v = std::env::var(var).ok()?;
    Some(
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// `1-24`, `7,9`, `3,10-12`.
fn parse_seeds(spec: &str) -> Vec<u64> {
    let mut seeds = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || panic!("RAFTLITE_DUMP_SEEDS: {part:?} is not N or N-M");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (
                    a.trim().parse().unwrap_or_else(|_| bad()),
                    b.trim().parse().unwrap_or_else(|_| bad()),
                );
                seeds.extend(a..=b);
            }
            None => seeds.push(part.parse().unwrap_or_else(|_| bad())),
        }
    }
    seeds
}

// ---------------------------------------------------------------------------------------------
// The suite's own machinery: each measure must be able to fail.

#[test]
fn real_digits_alone_count_as_the_same_values() {
    let ours = b"BEGIN;\nINSERT INTO t VALUES(1,0.1000000000000000056,'x');\nINSERT INTO t VALUES(2,1.0e+100);\nCOMMIT;\n";
    let shell = b"BEGIN;\nINSERT INTO t VALUES(1,0.10000000000000000555,'x');\nINSERT INTO t VALUES(2,1.000000000000000016e+100);\nCOMMIT;\n";
    match compare_dumps(ours, shell) {
        Bytes::SameValues { lines, first } => {
            assert_eq!((lines, first.line), (2, 2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(compare_dumps(ours, ours), Bytes::Identical);
    assert!(matches!(
        compare_dumps(b"VALUES(1e999)", b"VALUES(1e9999)"),
        Bytes::SameValues { lines: 1, .. }
    ));
    let different = |a: &[u8], b: &[u8]| matches!(compare_dumps(a, b), Bytes::Different(_));
    // Another double, or another storage class.
    assert!(different(b"VALUES(0.1)", b"VALUES(0.2)"));
    assert!(different(b"VALUES(0.1)", b"VALUES(0.10000000000000002)"));
    assert!(different(b"VALUES(1)", b"VALUES(1.0)"));
    assert!(different(b"VALUES(1.0)", b"VALUES(-1.0)"));
    // Digits inside quotes, identifiers and comments are not REAL literals.
    assert!(different(b"VALUES('0.10')", b"VALUES('0.1')"));
    assert!(different(
        b"CREATE TABLE \"t0.10\"(x)",
        b"CREATE TABLE \"t0.1\"(x)"
    ));
    assert!(different(b"CREATE TABLE x1.50(a)", b"CREATE TABLE x1.5(a)"));
    assert!(different(b"-- 0.10\nX", b"-- 0.1\nX"));
    assert!(different(b"/* 0.10 */", b"/* 0.1 */"));
    // Extra or missing lines.
    assert!(different(b"A;\nB;\n", b"A;\n"));
    match compare_dumps(b"A;\nB;\nC;\n", b"A;\nX;\nC;\n") {
        Bytes::Different(d) => {
            assert_eq!((d.line, d.ours.as_str(), d.shell.as_str()), (2, "B;", "X;"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn content_comparison_sees_every_kind_of_change() {
    let dir = tempfile::tempdir().unwrap();
    let base: Vec<raftlite_ffi::ValueRef> = vec![
        raftlite_ffi::ValueRef::Real(0.0),
        raftlite_ffi::ValueRef::Text(b"ab"),
        raftlite_ffi::ValueRef::Blob(&[1]),
        raftlite_ffi::ValueRef::Integer(1),
        raftlite_ffi::ValueRef::Null,
    ];
    let make = |name: &str, values: &[raftlite_ffi::ValueRef], extra: &str| -> Content {
        let path = dir.path().join(name);
        let db = cases::Db::create(&path);
        db.sql(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v);
             CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, x);
             INSERT INTO a(x) VALUES(1);
             CREATE TABLE plain(x);
             INSERT INTO plain VALUES(1), (2);",
        );
        db.rows(
            "INSERT INTO t(v) VALUES(?1)",
            values.iter().map(|v| vec![*v]),
        );
        db.sql(extra);
        drop(db);
        Content::read(&path).unwrap()
    };
    let original = make("original.db", &base, "");
    assert_eq!(
        differences(&original, &make("same.db", &base, ""), exactly).0,
        Vec::<String>::new()
    );

    let with = |i: usize, v: raftlite_ffi::ValueRef<'static>| {
        let mut values = base.clone();
        values[i] = v;
        values
    };
    let changes: Vec<(&str, Content)> = vec![
        (
            "-0.0 for 0.0",
            make(
                "negzero.db",
                &with(0, raftlite_ffi::ValueRef::Real(-0.0)),
                "",
            ),
        ),
        (
            "a TEXT byte",
            make(
                "text.db",
                &with(1, raftlite_ffi::ValueRef::Text(b"a\xff")),
                "",
            ),
        ),
        (
            "a NUL after TEXT",
            make(
                "nul.db",
                &with(1, raftlite_ffi::ValueRef::Text(b"ab\0")),
                "",
            ),
        ),
        (
            "TEXT for BLOB",
            make("class.db", &with(2, raftlite_ffi::ValueRef::Text(&[1])), ""),
        ),
        (
            "a BLOB byte",
            make("blob.db", &with(2, raftlite_ffi::ValueRef::Blob(&[2])), ""),
        ),
        (
            "REAL for INTEGER",
            make("real.db", &with(3, raftlite_ffi::ValueRef::Real(1.0)), ""),
        ),
        (
            "'' for NULL",
            make("empty.db", &with(4, raftlite_ffi::ValueRef::Text(b"")), ""),
        ),
        ("a row less", make("fewer.db", &base[..4], "")),
        (
            "a counter",
            make("seq.db", &base, "UPDATE sqlite_sequence SET seq = 5"),
        ),
        (
            "a rowid alias",
            make("ipk.db", &base, "UPDATE t SET id = 10 WHERE id = 1"),
        ),
        (
            "an index",
            make("index.db", &base, "CREATE INDEX tv ON t(v)"),
        ),
        (
            "a schema text",
            make("schema.db", &base, "ALTER TABLE plain RENAME TO other"),
        ),
        (
            "an empty table",
            make("table.db", &base, "CREATE TABLE more(x)"),
        ),
    ];
    for (what, changed) in &changes {
        let (problems, _) = differences(&original, changed, exactly);
        assert!(!problems.is_empty(), "{what}: no difference seen");
    }
    // Rowids of a table without INTEGER PRIMARY KEY are not content: a new order is a note.
    let reordered = make(
        "reordered.db",
        &base,
        "DELETE FROM plain; INSERT INTO plain VALUES(2), (1);",
    );
    let (problems, notes) = differences(&original, &reordered, exactly);
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(
        notes,
        vec!["table \"plain\": same rows in another rowid order".to_string()]
    );
}

#[test]
fn a_missing_or_wrong_reference_shell_fails_under_ci_and_is_announced_otherwise() {
    let exe = std::env::current_exe().unwrap();
    let nothing = tempfile::tempdir().unwrap();
    let wrong = tempfile::tempdir().unwrap();
    let fake = wrong.path().join("sqlite3");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho '3.45.1 2024-01-30 16:01:20 e876e51a0ed5c5b3126f52e532044363a014bc594cfefa87ffb5b82257cc467a'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for (path, why) in [
        (nothing.path(), "`sqlite3` could not be started"),
        (wrong.path(), "printed \"3.45.1 2024-01-30"),
    ] {
        let run = |ci: Option<&str>| {
            let mut cmd = Command::new(&exe);
            cmd.args([
                "--exact",
                "every_case_matches_the_reference_shell",
                "--nocapture",
            ])
            .env("PATH", path)
            .env("RAFTLITE_DUMP_CASES", "empty")
            .env_remove("CI");
            if let Some(ci) = ci {
                cmd.env("CI", ci);
            }
            let out = cmd.output().unwrap();
            let said = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.success(), said)
        };
        let (passed, said) = run(Some("true"));
        assert!(
            !passed,
            "under CI a missing shell must fail the test:\n{said}"
        );
        assert!(
            said.contains("prerequisite missing under CI")
                && said.contains("no reference sqlite3 shell")
                && said.contains(why),
            "{said}"
        );
        for not_ci in [None, Some("false"), Some("")] {
            let (passed, said) = run(not_ci);
            assert!(passed, "CI={not_ci:?}: {said}");
            assert!(
                said.contains("SKIPPED: ")
                    && said.contains("no reference sqlite3 shell")
                    && said.contains(why),
                "CI={not_ci:?}: the skip must say why:\n{said}"
            );
        }
    }
}
