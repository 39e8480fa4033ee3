//! Recorded client operations and their check for linearizability.
//!
//! Every operation a client thread makes is recorded with its process, call and return times
//! and what it saw. The model is one register per key (linearizability is local: a history is
//! linearizable when the history of each object is, so each key is checked alone). The check
//! itself is `todc-utils`' Wing–Gong–Lowe checker; this module only turns the recorded
//! operations into its histories:
//!
//! - a write that answered 200 without an error took effect, between its call and its return;
//! - a write whose outcome is unknown (a timeout, a dropped connection, any other answer: a
//!   write refused after it was proposed can still commit) may or may not have taken effect:
//!   it gets a return at the end of the history, so the checker may order it anywhere after
//!   its call, including after every read (never applied). Its process makes no further
//!   operation: the client continues as a new process, as Jepsen's do;
//! - a read that did not answer 200 with a value constrains nothing and is left out.
//!
//! The reads at `strong` and `linearizable` are checked with all writes, and must pass. The
//! reads at `weak` and `none` make no such promise: each is checked on its own against the
//! writes and the linearizable reads, and counted as stale when it does not fit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use todc_utils::specifications::register::{RegisterOperation, RegisterSpecification};
use todc_utils::{Action, History, WGLChecker};

/// A register holding the value of one key: `None` while the key has no row.
type KeySpec = RegisterSpecification<Option<u64>>;
type Checker = WGLChecker<KeySpec>;
type KeyOp = RegisterOperation<Option<u64>>;

/// The read consistency levels of rqlite's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    None,
    Weak,
    Linearizable,
    Strong,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Weak => "weak",
            Level::Linearizable => "linearizable",
            Level::Strong => "strong",
        }
    }

    /// Whether this level promises linearizable reads (asserted by the suite).
    pub fn is_linearizable(self) -> bool {
        matches!(self, Level::Linearizable | Level::Strong)
    }
}

/// What an operation asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Write { key: usize, value: u64 },
    Read { key: usize, level: Level },
}

impl Op {
    pub fn key(&self) -> usize {
        match self {
            Op::Write { key, .. } | Op::Read { key, .. } => *key,
        }
    }
}

/// What an operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A write that answered 200 without an error.
    Written,
    /// A read that answered 200 with this value (`None`: no row).
    Read(Option<u64>),
    /// Definitely no effect: a read that failed, whatever the reason, or a write that
    /// surely was not applied (see `workload::perform`).
    Failed(String),
    /// A write that may or may not have taken effect.
    Unknown(String),
}

/// One recorded operation.
#[derive(Debug, Clone)]
pub struct Record {
    /// The client process; a process makes one operation at a time, and none after an
    /// [`Outcome::Unknown`].
    pub process: usize,
    /// The node the request was sent to.
    pub node: usize,
    pub op: Op,
    pub call: Instant,
    pub ret: Instant,
    pub outcome: Outcome,
}

/// The result of checking a history.
#[derive(Debug, Default)]
pub struct Report {
    pub operations: usize,
    pub writes_ok: usize,
    pub writes_unknown: usize,
    pub writes_failed: usize,
    /// Reads that returned a value, by level.
    pub reads_ok: BTreeMap<Level, usize>,
    /// Reads that failed (no value), by level.
    pub reads_failed: BTreeMap<Level, usize>,
    /// Keys whose writes plus `strong` and `linearizable` reads are not linearizable.
    pub violating_keys: Vec<usize>,
    /// `weak` and `none` reads that do not fit a linearizable history, by level.
    pub stale_reads: BTreeMap<Level, usize>,
    /// `weak` and `none` reads checked (the rest were past the per-run budget).
    pub weak_reads_checked: usize,
}

impl Report {
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "operations {}, writes ok {}, writes unknown {}, writes failed {}, reads ok {:?}, reads failed {:?}, \
             linearizability violations (keys) {:?}, stale weak/none reads {:?} of {} checked",
            self.operations,
            self.writes_ok,
            self.writes_unknown,
            self.writes_failed,
            self.reads_ok,
            self.reads_failed,
            self.violating_keys,
            self.stale_reads,
            self.weak_reads_checked,
        );
        s
    }
}

/// Builds the checker's history for `records` (all on one key).
fn history_of(records: &[&Record]) -> Option<History<KeyOp>> {
    // (time, order at equal times: calls first, so ops that touch in time count as concurrent)
    let mut events: Vec<(Instant, u8, usize, Action<KeyOp>)> = Vec::new();
    let mut pending = Vec::new();
    // An unknown write that no read saw can be left out: if it took effect, the next write
    // hid it before any read, so removing it leaves a valid order, and if it did not, there
    // is nothing to remove. Leaving it in would cost the checker a factor of two for each
    // (values are unique per run, so "saw" is exact).
    let observed: std::collections::HashSet<Option<u64>> = records
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Read(v) => Some(*v),
            _ => None,
        })
        .collect();
    for r in records {
        match (&r.op, &r.outcome) {
            (Op::Write { value, .. }, Outcome::Written) => {
                events.push((
                    r.call,
                    0,
                    r.process,
                    Action::Call(RegisterOperation::Write(Some(*value))),
                ));
                events.push((
                    r.ret,
                    1,
                    r.process,
                    Action::Response(RegisterOperation::Write(Some(*value))),
                ));
            }
            (Op::Write { value, .. }, Outcome::Unknown(_)) if observed.contains(&Some(*value)) => {
                events.push((
                    r.call,
                    0,
                    r.process,
                    Action::Call(RegisterOperation::Write(Some(*value))),
                ));
                pending.push((
                    r.process,
                    Action::Response(RegisterOperation::Write(Some(*value))),
                ));
            }
            (Op::Read { .. }, Outcome::Read(v)) => {
                events.push((
                    r.call,
                    0,
                    r.process,
                    Action::Call(RegisterOperation::Read(None)),
                ));
                events.push((
                    r.ret,
                    1,
                    r.process,
                    Action::Response(RegisterOperation::Read(Some(*v))),
                ));
            }
            // A failed write or read had no effect and saw nothing.
            _ => {}
        }
    }
    if events.is_empty() {
        return None;
    }
    events.sort_by_key(|(t, order, _, _)| (*t, *order));
    let mut actions: Vec<_> = events.into_iter().map(|(_, _, p, a)| (p, a)).collect();
    actions.extend(pending);
    Some(History::from_actions(actions))
}

/// Whether `records` (all on one key) are linearizable as a register.
pub fn linearizable(records: &[&Record]) -> bool {
    history_of(records).is_none_or(Checker::is_linearizable)
}

/// Checks a whole run: asserts nothing, reports everything. `weak_budget` bounds the time
/// spent checking `weak`/`none` reads one by one (each is a checker run on the key's whole
/// history); the report says how many were checked.
pub fn check(records: &[Record], keys: usize, weak_budget: Duration) -> Report {
    let mut report = Report {
        operations: records.len(),
        ..Report::default()
    };
    for r in records {
        match (&r.op, &r.outcome) {
            (Op::Write { .. }, Outcome::Written) => report.writes_ok += 1,
            (Op::Write { .. }, Outcome::Unknown(_)) => report.writes_unknown += 1,
            (Op::Write { .. }, _) => report.writes_failed += 1,
            (Op::Read { level, .. }, Outcome::Read(_)) => {
                *report.reads_ok.entry(*level).or_default() += 1
            }
            (Op::Read { level, .. }, _) => *report.reads_failed.entry(*level).or_default() += 1,
        }
    }
    let deadline = Instant::now() + weak_budget;
    for key in 0..keys {
        let base: Vec<&Record> = records
            .iter()
            .filter(|r| r.op.key() == key)
            .filter(|r| match r.op {
                Op::Write { .. } => true,
                Op::Read { level, .. } => level.is_linearizable(),
            })
            .collect();
        if !linearizable(&base) {
            report.violating_keys.push(key);
            continue;
        }
        for r in records.iter().filter(|r| r.op.key() == key) {
            let Op::Read { level, .. } = r.op else {
                continue;
            };
            if level.is_linearizable()
                || !matches!(r.outcome, Outcome::Read(_))
                || Instant::now() > deadline
            {
                continue;
            }
            report.weak_reads_checked += 1;
            let mut with_read = base.clone();
            with_read.push(r);
            if !linearizable(&with_read) {
                *report.stale_reads.entry(level).or_default() += 1;
            }
        }
    }
    report
}

/// The operations on `key`, one a line, in call order: what to look at after a violation.
pub fn dump(records: &[Record], key: usize, start: Instant) -> String {
    let mut on_key: Vec<&Record> = records.iter().filter(|r| r.op.key() == key).collect();
    on_key.sort_by_key(|r| r.call);
    let mut s = String::new();
    for r in on_key {
        let _ = writeln!(
            s,
            "p{:<3} node{} {:>8.3}s..{:>8.3}s {:?} -> {:?}",
            r.process,
            r.node + 1,
            (r.call - start).as_secs_f64(),
            (r.ret - start).as_secs_f64(),
            r.op,
            r.outcome
        );
    }
    s
}
