//! Tests of the log engine through its public API: append, read, truncate and purge across
//! segments and reopens; group commit; a model-based property test; crash tests with the
//! fault-injecting directory; recovery from damaged segments and from every single flipped bit;
//! and a node that refuses to start on a damaged log.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use raftlite::raft::log::io::{CrashImage, LogDir, OsDir, SimDir, SyncHookDir};
use raftlite::raft::log::segment::segment_file_name;
use raftlite::raft::log::{LogEngine, LogError, LogOptions, Record, RecordRef};

/// Segments of a few records each, so every test crosses segment boundaries.
fn tiny_segments() -> LogOptions {
    LogOptions {
        segment_size: 160,
        ..LogOptions::default()
    }
}

/// The payload every test stores for `(index, term)`: its length varies with the index, and it
/// names both numbers, so a record read back can be checked for integrity.
fn payload(index: u64, term: u64) -> Vec<u8> {
    let mut data = format!("entry {index} term {term} ").into_bytes();
    data.resize(data.len() + (index % 5) as usize * 7, b'.');
    data
}

fn record(index: u64, term: u64) -> Record {
    Record {
        index,
        term,
        kind: 1,
        data: payload(index, term),
    }
}

fn append(
    engine: &LogEngine,
    indexes: std::ops::RangeInclusive<u64>,
    term: u64,
) -> Result<(), LogError> {
    let records: Vec<Record> = indexes.map(|i| record(i, term)).collect();
    let refs: Vec<RecordRef<'_>> = records.iter().map(Record::as_ref).collect();
    engine.append(&refs)
}

fn read_all(engine: &LogEngine) -> Vec<Record> {
    engine.read(0..u64::MAX).expect("read the whole log")
}

fn open_sim(dir: &SimDir) -> Result<LogEngine, LogError> {
    LogEngine::open_in(Arc::new(dir.clone()), tiny_segments())
}

fn segment_names(dir: &SimDir) -> Vec<String> {
    let mut names: Vec<String> = dir
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

#[test]
fn append_and_read_across_segments_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(tmp.path(), tiny_segments()).unwrap();
    for i in 1..=40 {
        append(&engine, i..=i, 1 + i / 10).unwrap();
    }
    let expected: Vec<Record> = (1..=40).map(|i| record(i, 1 + i / 10)).collect();
    assert_eq!(read_all(&engine), expected);
    assert_eq!(engine.read(10..13).unwrap(), expected[9..12].to_vec());
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().count() > 5,
        "expected many segments"
    );
    drop(engine);

    let engine = LogEngine::open(tmp.path(), tiny_segments()).unwrap();
    assert_eq!(read_all(&engine), expected);
    append(&engine, 41..=45, 9).unwrap();
    assert_eq!(engine.bounds().last_index, Some(45));
}

/// Large entries are read into a buffer of their own and small ones in shared reads; reads of
/// any range across both kinds, and across segments, give every entry back exactly.
#[test]
fn large_and_small_entries_read_back_exactly_in_any_range() {
    let tmp = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_size: 1 << 20,
        ..LogOptions::default()
    };
    let engine = LogEngine::open(tmp.path(), options.clone()).unwrap();
    let sizes = [
        10usize, 70_000, 20, 0, 200_000, 5, 65_536, 65_537, 900_000, 3,
    ];
    let records: Vec<Record> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| Record {
            index: i as u64 + 1,
            term: 2,
            kind: 1,
            data: (0..n).map(|b| (b * 31 + i) as u8).collect(),
        })
        .collect();
    for r in &records {
        engine.append(&[r.as_ref()]).unwrap();
    }
    let check = |engine: &LogEngine| {
        for start in 1..=records.len() as u64 {
            for end in start..=records.len() as u64 + 1 {
                let got = engine.read(start..end).unwrap();
                let want = &records[start as usize - 1..end as usize - 1];
                assert_eq!(got.len(), want.len(), "{start}..{end}");
                for (g, w) in got.iter().zip(want) {
                    assert_eq!((g.index, g.term, g.kind), (w.index, w.term, w.kind));
                    assert!(g.data == w.data, "entry {} differs", w.index);
                    assert_eq!(
                        g.data.capacity(),
                        g.data.len(),
                        "entry {}: no spare copy",
                        w.index
                    );
                }
            }
        }
    };
    check(&engine);
    drop(engine);
    check(&LogEngine::open(tmp.path(), options).unwrap());
}

#[test]
fn truncate_cuts_across_segments_and_survives_reopen() {
    let dir = SimDir::new();
    let engine = open_sim(&dir).unwrap();
    append(&engine, 1..=30, 1).unwrap();
    engine.truncate(12).unwrap();
    assert_eq!(engine.bounds().last_index, Some(11));
    append(&engine, 12..=20, 2).unwrap();
    drop(engine);

    let engine = open_sim(&dir.crash_image(CrashImage::DurableOnly)).unwrap();
    let expected: Vec<Record> = (1..=11)
        .map(|i| record(i, 1))
        .chain((12..=20).map(|i| record(i, 2)))
        .collect();
    assert_eq!(read_all(&engine), expected);
    engine.truncate(1).unwrap();
    assert!(read_all(&engine).is_empty());
    append(&engine, 1..=3, 3).unwrap();
    assert_eq!(
        read_all(&engine),
        (1..=3).map(|i| record(i, 3)).collect::<Vec<_>>()
    );
}

#[test]
fn truncate_at_a_segment_start_keeps_the_previous_segment_whole() {
    let dir = SimDir::new();
    let engine = open_sim(&dir).unwrap();
    append(&engine, 1..=30, 1).unwrap();
    let second_segment_start = segment_names(&dir)[1]
        .trim_end_matches(".seg")
        .parse::<u64>()
        .unwrap();
    engine.truncate(second_segment_start).unwrap();
    append(&engine, second_segment_start..=second_segment_start + 2, 2).unwrap();
    drop(engine);
    let engine = open_sim(&dir.crash_image(CrashImage::DurableOnly)).unwrap();
    assert_eq!(engine.bounds().last_index, Some(second_segment_start + 2));
    assert_eq!(
        engine.get(second_segment_start).unwrap(),
        Some(record(second_segment_start, 2))
    );
}

#[test]
fn purge_deletes_whole_segments_only_and_survives_reopen() {
    let dir = SimDir::new();
    let engine = open_sim(&dir).unwrap();
    append(&engine, 1..=30, 1).unwrap();
    let segments_before = segment_names(&dir).len();
    engine.purge(14, b"id 14".to_vec()).unwrap();
    assert!(segment_names(&dir).len() < segments_before);
    let first_left = segment_names(&dir)[0]
        .trim_end_matches(".seg")
        .parse::<u64>()
        .unwrap();
    assert!(first_left <= 15, "a segment holding index 15 was deleted");
    assert_eq!(
        read_all(&engine),
        (15..=30).map(|i| record(i, 1)).collect::<Vec<_>>()
    );
    assert_eq!(engine.get(14).unwrap(), None);
    drop(engine);

    let engine = open_sim(&dir.crash_image(CrashImage::DurableOnly)).unwrap();
    let bounds = engine.bounds();
    assert_eq!(bounds.first_index, Some(15));
    assert_eq!(
        bounds.purged.map(|p| (p.index, p.id)),
        Some((14, b"id 14".to_vec()))
    );
    assert_eq!(
        read_all(&engine),
        (15..=30).map(|i| record(i, 1)).collect::<Vec<_>>()
    );
}

#[test]
fn purge_past_the_end_empties_the_log_and_the_next_append_follows_it() {
    let dir = SimDir::new();
    let engine = open_sim(&dir).unwrap();
    append(&engine, 1..=10, 1).unwrap();
    engine.purge(20, b"id 20".to_vec()).unwrap();
    assert!(read_all(&engine).is_empty());
    assert!(segment_names(&dir).is_empty());
    assert!(matches!(
        append(&engine, 22..=22, 2),
        Err(LogError::NotContiguous {
            expected: 21,
            got: 22
        })
    ));
    // Entries at or below the purge point are covered by the snapshot: they are skipped.
    append(&engine, 11..=11, 2).unwrap();
    assert!(read_all(&engine).is_empty());
    drop(engine);
    let engine = open_sim(&dir.crash_image(CrashImage::DurableOnly)).unwrap();
    append(&engine, 21..=22, 2).unwrap();
    assert_eq!(read_all(&engine), vec![record(21, 2), record(22, 2)]);
}

#[test]
fn appends_must_continue_the_log() {
    let dir = SimDir::new();
    let engine = open_sim(&dir).unwrap();
    append(&engine, 5..=6, 1).unwrap();
    assert!(matches!(
        append(&engine, 8..=8, 1),
        Err(LogError::NotContiguous {
            expected: 7,
            got: 8
        })
    ));
    // A refused append is a caller error: the log stays usable.
    append(&engine, 7..=7, 1).unwrap();
}

#[test]
fn vote_and_committed_survive_reopen() {
    let dir = SimDir::new();
    let engine = open_sim(&dir).unwrap();
    engine.save_vote(b"vote 1".to_vec()).unwrap();
    engine.set_committed(Some(b"commit 1".to_vec()));
    let ops_before = dir.op_count();
    engine.set_committed(Some(b"commit 2".to_vec()));
    assert_eq!(
        dir.op_count(),
        ops_before,
        "saving the committed id must not write"
    );
    engine.flush_meta().unwrap();
    drop(engine);
    let engine = open_sim(&dir.crash_image(CrashImage::DurableOnly)).unwrap();
    assert_eq!(engine.vote(), Some(b"vote 1".to_vec()));
    assert_eq!(engine.committed(), Some(b"commit 2".to_vec()));
}

/// Counts the log's file syncs and holds them while closed: a test can keep an fsync in
/// progress while it queues appends behind it. Installed with [`SyncHookDir`].
#[derive(Debug, Default)]
struct SyncGate {
    /// `sync_data` calls begun.
    begun: AtomicU64,
    closed: Mutex<bool>,
    opened: Condvar,
}

impl SyncGate {
    fn begun(&self) -> u64 {
        self.begun.load(Ordering::SeqCst)
    }

    fn set_closed(&self, closed: bool) {
        *self.closed.lock().unwrap() = closed;
        self.opened.notify_all();
    }

    /// Counts a sync, then waits while the gate is closed (bounded: a test that forgets to
    /// open it fails with an I/O error instead of hanging).
    fn pass(&self) -> std::io::Result<()> {
        self.begun.fetch_add(1, Ordering::SeqCst);
        let closed = self.closed.lock().unwrap();
        let (closed, _) = self
            .opened
            .wait_timeout_while(closed, Duration::from_secs(30), |closed| *closed)
            .unwrap();
        if *closed {
            return Err(std::io::Error::other("the sync gate never opened"));
        }
        Ok(())
    }
}

/// Group commit, counted: while the flusher is inside the fsync of an append, 499 more are
/// appended (each readable at once, none acknowledged); then all 499 share one fsync, and
/// every append is acknowledged, in order, once durable.
#[test]
fn queued_appends_share_fsyncs_and_all_get_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let syncs = Arc::new(SyncGate::default());
    let gate = Arc::clone(&syncs);
    let dir = SyncHookDir::new(
        Arc::new(OsDir::open(tmp.path()).unwrap()),
        Arc::new(move || gate.pass()),
    );
    let engine = LogEngine::open_in(Arc::new(dir), LogOptions::default()).unwrap();
    // The first append creates the segment, with syncs of its own under the writer lock.
    append(&engine, 1..=1, 1).unwrap();
    let before = syncs.begun();
    syncs.set_closed(true);
    let (done, acks) = crossbeam_channel::unbounded();
    let append_one = |i: u64| {
        let done = done.clone();
        let rec = record(i, 1);
        engine
            .append_then(
                &[rec.as_ref()],
                Box::new(move |result| done.send((i, result.is_ok())).unwrap()),
            )
            .unwrap();
        // Appended but not yet durable entries are readable at once, as openraft needs.
        assert_eq!(engine.get(i).unwrap(), Some(rec));
    };
    append_one(2);
    // Handshake: the flusher has begun the first append's fsync, and waits at the gate.
    let deadline = Instant::now() + Duration::from_secs(30);
    while syncs.begun() == before {
        assert!(
            Instant::now() < deadline,
            "the first append was never synced"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 3..=501u64 {
        append_one(i);
    }
    assert!(acks.try_recv().is_err(), "acknowledged before its fsync");
    syncs.set_closed(false);
    let mut acked: Vec<(u64, bool)> = (0..500)
        .map(|_| acks.recv_timeout(Duration::from_secs(30)).expect("an ack"))
        .collect();
    assert_eq!(
        syncs.begun() - before,
        2,
        "one fsync for the first append, one for the 499 queued behind it"
    );
    assert!(acked.iter().all(|(_, ok)| *ok));
    let order: Vec<u64> = acked.iter().map(|(i, _)| *i).collect();
    acked.sort();
    assert_eq!(
        order,
        acked.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        "acks out of order"
    );
}

// ---------------------------------------------------------------------------------------
// Model-based property test.

/// The reference: what the log should hold.
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    entries: BTreeMap<u64, u64>,
    purged: Option<u64>,
    vote: Option<Vec<u8>>,
}

impl Model {
    fn next_index(&self) -> u64 {
        match (self.entries.keys().next_back(), self.purged) {
            (Some(&last), _) => last + 1,
            (None, Some(p)) => p + 1,
            (None, None) => 1,
        }
    }
    fn last_term(&self) -> u64 {
        self.entries.values().next_back().copied().unwrap_or(1)
    }
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append { first, count, term } => {
                for i in *first..*first + *count {
                    self.entries.insert(i, *term);
                }
            }
            Op::Truncate(from) => {
                self.entries.split_off(from);
            }
            Op::Purge(upto) => {
                if self.purged.is_none_or(|p| p < *upto) {
                    self.entries = self.entries.split_off(&(upto + 1));
                    self.purged = Some(*upto);
                }
            }
            Op::Vote(v) => self.vote = Some(vec![*v]),
        }
    }
    fn records(&self) -> Vec<Record> {
        self.entries.iter().map(|(&i, &t)| record(i, t)).collect()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append { first: u64, count: u64, term: u64 },
    Truncate(u64),
    Purge(u64),
    Vote(u8),
}

fn run(engine: &LogEngine, op: &Op) -> Result<(), LogError> {
    match op {
        Op::Append { first, count, term } => append(engine, *first..=*first + *count - 1, *term),
        Op::Truncate(from) => engine.truncate(*from),
        Op::Purge(upto) => engine.purge(*upto, upto.to_le_bytes().to_vec()),
        Op::Vote(v) => engine.save_vote(vec![*v]),
    }
}

/// Abstract steps, turned into concrete operations against the model's current state.
#[derive(Debug, Clone)]
enum Step {
    Append { count: u64, new_term: bool },
    Truncate { back: u64 },
    Purge { ahead: u64 },
    Reopen,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1u64..6, any::<bool>()).prop_map(|(count, new_term)| Step::Append { count, new_term }),
        2 => (0u64..8).prop_map(|back| Step::Truncate { back }),
        1 => (0u64..12).prop_map(|ahead| Step::Purge { ahead }),
        2 => Just(Step::Reopen),
    ]
}

fn concretize(model: &Model, step: &Step) -> Option<Op> {
    let next = model.next_index();
    let first_live = model.purged.map_or(1, |p| p + 1);
    match step {
        Step::Append { count, new_term } => Some(Op::Append {
            first: next,
            count: *count,
            term: model.last_term() + u64::from(*new_term),
        }),
        Step::Truncate { back } => Some(Op::Truncate(next.saturating_sub(*back).max(first_live))),
        Step::Purge { ahead } => Some(Op::Purge(first_live + ahead)),
        Step::Reopen => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn engine_matches_a_btreemap_model(steps in proptest::collection::vec(step_strategy(), 1..60)) {
        let mut dir = SimDir::new();
        let mut engine = open_sim(&dir).unwrap();
        let mut model = Model::default();
        for step in &steps {
            match concretize(&model, step) {
                Some(op) => {
                    run(&engine, &op).unwrap();
                    model.apply(&op);
                }
                None => {
                    // Reopen from what was synced only: everything acknowledged must be there.
                    drop(engine);
                    dir = dir.crash_image(CrashImage::DurableOnly);
                    engine = open_sim(&dir).unwrap();
                }
            }
            prop_assert_eq!(read_all(&engine), model.records());
            let bounds = engine.bounds();
            prop_assert_eq!(bounds.last_index, model.entries.keys().next_back().copied());
            prop_assert_eq!(bounds.purged.map(|p| p.index), model.purged);
            if let Some((&i, &t)) = model.entries.iter().nth(model.entries.len() / 2) {
                prop_assert_eq!(engine.get(i).unwrap(), Some(record(i, t)));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Crash tests.

/// A workload that rolls over segments, truncates (a Raft conflict), purges and votes.
fn crash_workload() -> Vec<Op> {
    let mut ops = Vec::new();
    let mut model = Model::default();
    let mut push = |op: Op, ops: &mut Vec<Op>| {
        model.apply(&op);
        ops.push(op);
    };
    push(Op::Vote(1), &mut ops);
    for (first, count) in [(1, 1), (2, 3), (5, 2), (7, 5), (12, 1), (13, 4)] {
        push(
            Op::Append {
                first,
                count,
                term: 1,
            },
            &mut ops,
        );
    }
    push(Op::Truncate(9), &mut ops);
    push(Op::Vote(2), &mut ops);
    push(
        Op::Append {
            first: 9,
            count: 6,
            term: 2,
        },
        &mut ops,
    );
    push(Op::Purge(6), &mut ops);
    push(
        Op::Append {
            first: 15,
            count: 3,
            term: 2,
        },
        &mut ops,
    );
    push(Op::Truncate(15), &mut ops);
    push(
        Op::Append {
            first: 15,
            count: 2,
            term: 3,
        },
        &mut ops,
    );
    push(Op::Purge(16), &mut ops);
    push(
        Op::Append {
            first: 17,
            count: 2,
            term: 3,
        },
        &mut ops,
    );
    ops
}

/// After a crash during `op`, the recovered log must be explainable by `before` (op not done)
/// or `after` (op done): every entry both agree on is present and intact, and nothing else
/// appears.
fn check_recovered(engine: &LogEngine, before: &Model, after: &Model, context: &str) {
    let bounds = engine.bounds();
    let purged = bounds.purged.as_ref().map(|p| p.index);
    assert!(
        purged == before.purged || purged == after.purged,
        "{context}: purged {purged:?}"
    );
    let vote = engine.vote();
    assert!(
        vote == before.vote || vote == after.vote,
        "{context}: vote {vote:?}"
    );
    let live = read_all(engine);
    for pair in live.windows(2) {
        assert_eq!(
            pair[0].index + 1,
            pair[1].index,
            "{context}: hole in the log"
        );
    }
    for rec in &live {
        let explained = [before, after]
            .iter()
            .any(|m| m.entries.get(&rec.index) == Some(&rec.term));
        assert!(
            explained,
            "{context}: unexpected entry {} term {}",
            rec.index, rec.term
        );
        assert_eq!(
            rec.data,
            payload(rec.index, rec.term),
            "{context}: damaged payload"
        );
    }
    for (&index, &term) in &before.entries {
        let acknowledged = after.entries.get(&index) == Some(&term);
        if acknowledged && purged.is_none_or(|p| index > p) {
            assert_eq!(
                engine.get(index).unwrap(),
                Some(record(index, term)),
                "{context}: lost entry {index}"
            );
        }
    }
}

#[test]
fn every_crash_point_recovers_every_acknowledged_entry() {
    let workload = crash_workload();
    let total_ops = {
        let dir = SimDir::new();
        let engine = open_sim(&dir).unwrap();
        for op in &workload {
            run(&engine, op).unwrap();
        }
        dir.op_count()
    };
    assert!(
        total_ops > 50,
        "the workload should have many write and sync points"
    );

    for crash_at in 0..total_ops {
        let dir = SimDir::new();
        dir.crash_at(crash_at);
        let engine = open_sim(&dir).unwrap();
        let mut before = Model::default();
        let mut after = Model::default();
        for op in &workload {
            after.apply(op);
            if run(&engine, op).is_err() {
                break;
            }
            before = after.clone();
        }
        assert!(
            dir.has_crashed(),
            "crash point {crash_at} was never reached"
        );
        drop(engine);

        for image in [CrashImage::DurableOnly, CrashImage::LiveWithTornWrite] {
            let context = format!("crash at op {crash_at}, {image:?}");
            let restarted = dir.crash_image(image);
            let engine =
                open_sim(&restarted).unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
            check_recovered(&engine, &before, &after, &context);
            // The recovered log must take appends and survive another restart.
            let next = engine.bounds().last_index.map(|l| l + 1);
            if let Some(next) = next {
                append(&engine, next..=next + 1, 9)
                    .unwrap_or_else(|e| panic!("{context}: append: {e}"));
                drop(engine);
                let again = open_sim(&restarted.crash_image(CrashImage::DurableOnly)).unwrap();
                assert_eq!(again.bounds().last_index, Some(next + 1), "{context}");
            }
        }
    }
}

#[test]
fn crash_with_queued_group_commits_keeps_every_acknowledged_append() {
    // Learn how many operations the workload takes, then crash at each of them.
    let run_workload = |dir: &SimDir| -> Vec<u64> {
        let engine = open_sim(dir).unwrap();
        let (done, acks) = crossbeam_channel::unbounded();
        for i in 1..=40u64 {
            let done = done.clone();
            let rec = record(i, 1);
            let callback = Box::new(move |result: Result<(), LogError>| {
                done.send((i, result.is_ok())).unwrap()
            });
            if engine.append_then(&[rec.as_ref()], callback).is_err() {
                break;
            }
        }
        drop(done);
        let acked: Vec<u64> = acks.iter().filter(|(_, ok)| *ok).map(|(i, _)| i).collect();
        acked
    };
    let total_ops = {
        let dir = SimDir::new();
        run_workload(&dir);
        dir.op_count()
    };
    for crash_at in 0..total_ops {
        let dir = SimDir::new();
        dir.crash_at(crash_at);
        let acked = run_workload(&dir);
        for image in [CrashImage::DurableOnly, CrashImage::LiveWithTornWrite] {
            let engine = open_sim(&dir.crash_image(image)).unwrap();
            let live = read_all(&engine);
            let expected: Vec<Record> = (1..=live.len() as u64).map(|i| record(i, 1)).collect();
            assert_eq!(
                live, expected,
                "crash at {crash_at}: not a prefix of what was written"
            );
            if let Some(&max_acked) = acked.iter().max() {
                assert!(
                    live.len() as u64 >= max_acked,
                    "crash at {crash_at}: lost acknowledged entry"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Damaged segments.

/// A log of 30 entries over several segments, synced and closed.
fn damaged_fixture() -> (SimDir, Vec<String>) {
    let dir = SimDir::new();
    let engine = open_sim(&dir).unwrap();
    append(&engine, 1..=30, 1).unwrap();
    drop(engine);
    let names = segment_names(&dir);
    assert!(names.len() >= 3);
    (dir, names)
}

fn rewrite(dir: &SimDir, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = dir.file_bytes(name).unwrap();
    edit(&mut bytes);
    dir.put_file(name, bytes);
}

#[test]
fn a_torn_tail_of_the_last_segment_is_cut() {
    let (dir, names) = damaged_fixture();
    rewrite(&dir, names.last().unwrap(), |b| b.truncate(b.len() - 5));
    let engine = open_sim(&dir).unwrap();
    assert_eq!(
        read_all(&engine),
        (1..=29).map(|i| record(i, 1)).collect::<Vec<_>>()
    );
    append(&engine, 30..=31, 2).unwrap();
    drop(engine);
    let engine = open_sim(&dir.crash_image(CrashImage::DurableOnly)).unwrap();
    assert_eq!(engine.bounds().last_index, Some(31));
}

#[test]
fn a_zero_filled_tail_is_cut() {
    let (dir, names) = damaged_fixture();
    rewrite(&dir, names.last().unwrap(), |b| {
        b.extend_from_slice(&[0; 4096])
    });
    let engine = open_sim(&dir).unwrap();
    assert_eq!(
        read_all(&engine),
        (1..=30).map(|i| record(i, 1)).collect::<Vec<_>>()
    );
    append(&engine, 31..=31, 1).unwrap();
    assert_eq!(engine.get(31).unwrap(), Some(record(31, 1)));
}

#[test]
fn a_bit_flip_in_a_middle_segment_refuses_to_open() {
    let (dir, names) = damaged_fixture();
    rewrite(&dir, &names[1], |b| b[40] ^= 0x08);
    match open_sim(&dir) {
        Err(LogError::Corrupt {
            segment, reason, ..
        }) => {
            assert_eq!(segment, names[1]);
            // The segments after it would go with it: the message says so.
            let later = names.len() - 2;
            let from = names[2].trim_end_matches(".seg").parse::<u64>().unwrap();
            let segments = if later == 1 { "segment" } else { "segments" };
            assert!(
                reason.ends_with(&format!(
                    "; {later} later {segments}, from index {from} on, would be lost with it"
                )),
                "{reason}"
            );
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn a_bit_flip_before_valid_records_of_the_last_segment_refuses_to_open() {
    let (dir, names) = damaged_fixture();
    // The first record's payload: valid records follow it in the same segment.
    rewrite(&dir, names.last().unwrap(), |b| b[32 + 25] ^= 0x01);
    assert!(matches!(open_sim(&dir), Err(LogError::Corrupt { .. })));
}

#[test]
fn a_damaged_header_refuses_to_open() {
    let (dir, names) = damaged_fixture();
    rewrite(&dir, &names[0], |b| b[3] ^= 0xff);
    assert!(matches!(
        open_sim(&dir),
        Err(LogError::Corrupt { offset: 0, .. })
    ));
}

#[test]
fn a_missing_middle_segment_refuses_to_open() {
    let (dir, names) = damaged_fixture();
    dir.delete_file(&names[1]);
    assert!(matches!(open_sim(&dir), Err(LogError::Gap { .. })));
}

#[test]
fn a_missing_first_segment_after_a_purge_refuses_to_open() {
    let dir = SimDir::new();
    let engine = open_sim(&dir).unwrap();
    append(&engine, 1..=30, 1).unwrap();
    engine.purge(3, vec![3]).unwrap();
    drop(engine);
    let names = segment_names(&dir);
    dir.delete_file(&names[0]);
    assert!(matches!(open_sim(&dir), Err(LogError::Gap { .. })));
}

#[test]
fn a_bit_flip_after_open_is_reported_by_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(tmp.path(), tiny_segments()).unwrap();
    append(&engine, 1..=10, 1).unwrap();
    let path = tmp.path().join(segment_file_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(engine.read(1..2), Err(LogError::Corrupt { .. })));
}

#[test]
fn a_segment_file_of_garbage_never_panics() {
    for seed in 0..200u64 {
        let (dir, names) = damaged_fixture();
        let victim = &names[(seed as usize) % names.len()];
        rewrite(&dir, victim, |b| {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for _ in 0..(1 + seed % 4) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % b.len();
                b[at] ^= (x >> 32) as u8 | 1;
            }
            if seed % 3 == 0 {
                b.truncate((x as usize) % b.len());
            }
        });
        // Either outcome is fine; a panic or a record that fails its check is not.
        if let Ok(engine) = open_sim(&dir) {
            for rec in read_all(&engine) {
                assert_eq!(rec.data, payload(rec.index, rec.term));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Bit flips: a flipped bit anywhere never drops or changes an acknowledged entry.

/// Every file of the log directory, by name.
fn snapshot_files(dir: &SimDir) -> BTreeMap<String, Vec<u8>> {
    dir.list()
        .unwrap()
        .into_iter()
        .map(|name| {
            let bytes = dir.file_bytes(&name).unwrap();
            (name, bytes)
        })
        .collect()
}

/// A copy of `dir` with bit `bit` of file `name` flipped.
fn with_flipped_bit(dir: &SimDir, name: &str, bit: usize) -> SimDir {
    let copy = dir.crash_image(CrashImage::DurableOnly);
    rewrite(&copy, name, |b| b[bit / 8] ^= 1 << (bit % 8));
    copy
}

/// Segment start offsets of every record in a segment image, from its header on.
fn frame_starts(image: &[u8]) -> Vec<(usize, usize)> {
    let mut frames = Vec::new();
    let mut at = 32;
    while at < image.len() {
        let (_, used) = raftlite::raft::log::record::decode_record(&image[at..]).unwrap();
        frames.push((at, used));
        at += used;
    }
    frames
}

/// What the operator reads at the end of every refusal.
const ADVICE: &str = raftlite::raft::log::REBUILD_ADVICE;

/// Flips every bit of a small, fully synced (so fully acknowledged) log, one at a time on a
/// copy, and opens it. The log has several segments, a vote, a committed id and a purge point
/// inside its first segment. For every flip the engine either opens with every live entry
/// intact and nothing cut, or refuses with a corruption error that names the file, the byte
/// and what to do. It opens exactly when the flip is in the body of a record at or below the
/// purge point (covered by a snapshot, its length known from its intact head).
#[test]
fn every_bit_flip_of_a_small_log_is_refused_or_harmless() {
    let options = LogOptions {
        segment_size: 200,
        ..LogOptions::default()
    };
    let open = |dir: &SimDir| LogEngine::open_in(Arc::new(dir.clone()), options.clone());
    let dir = SimDir::new();
    let engine = open(&dir).unwrap();
    engine.save_vote(b"vote".to_vec()).unwrap();
    append(&engine, 1..=6, 1).unwrap();
    append(&engine, 7..=14, 2).unwrap();
    // Purge up to the second segment's first record: the first segment goes, the second keeps
    // one purged record before its live ones.
    let purged = segment_names(&dir)[1]
        .trim_end_matches(".seg")
        .parse::<u64>()
        .unwrap();
    engine.purge(purged, b"purged id".to_vec()).unwrap();
    engine.set_committed(Some(b"committed id".to_vec()));
    engine.flush_meta().unwrap();
    drop(engine);
    let segments = segment_names(&dir);
    let files = snapshot_files(&dir);
    let partly_purged = files[&segments[0]].clone();
    assert!(
        segments.len() >= 3 && frame_starts(&partly_purged).len() >= 2,
        "the fixture needs several segments and a partly purged first one: {segments:?}"
    );
    let live: Vec<Record> = (purged + 1..=14)
        .map(|i| record(i, if i <= 6 { 1 } else { 2 }))
        .collect();

    assert_eq!(
        snapshot_files(&dir.crash_image(CrashImage::DurableOnly)),
        files,
        "the fixture is not wholly durable"
    );
    // The bytes whose flip is harmless: the body and end mark of the one purged record, the
    // first of the first segment (its 12-byte head excluded).
    let (purged_start, purged_len) = frame_starts(&partly_purged)[0];
    let harmless: Vec<(String, usize)> = (purged_start + 12..purged_start + purged_len)
        .map(|byte| (segments[0].clone(), byte))
        .collect();

    let mut opened = Vec::new();
    let mut refused = 0;
    for (name, bytes) in &files {
        for bit in 0..bytes.len() * 8 {
            let context = format!("bit {bit} (byte {}) of {name}", bit / 8);
            let damaged = with_flipped_bit(&dir, name, bit);
            let before = snapshot_files(&damaged);
            match open(&damaged) {
                Ok(engine) => {
                    assert_eq!(
                        read_all(&engine),
                        live,
                        "{context}: opened with entries lost or changed"
                    );
                    let bounds = engine.bounds();
                    assert_eq!(bounds.last_index, Some(14), "{context}");
                    assert_eq!(bounds.purged.map(|p| p.index), Some(purged), "{context}");
                    assert_eq!(engine.vote(), Some(b"vote".to_vec()), "{context}");
                    opened.push((name.clone(), bit / 8));
                }
                Err(error) => {
                    let message = error.to_string();
                    match &error {
                        LogError::Corrupt {
                            segment, offset, ..
                        } => {
                            assert_eq!(segment, name, "{context}: {message}");
                            // Damage before the last segment names what would go with it.
                            assert_eq!(
                                message.contains("would be lost with it"),
                                name != segments.last().unwrap(),
                                "{context}: {message}"
                            );
                            assert!(*offset as usize <= bit / 8, "{context}: {message}");
                            assert!(
                                message.contains(&format!("{name} is corrupt at byte {offset}")),
                                "{context}: {message}"
                            );
                        }
                        LogError::CorruptMeta { .. } => assert_eq!(name, "meta", "{context}"),
                        other => panic!("{context}: unexpected error {other:?}"),
                    }
                    assert!(message.contains(ADVICE), "{context}: {message}");
                    refused += 1;
                }
            }
            // A synced log has no torn tail: whatever the outcome, nothing was cut or removed.
            assert_eq!(snapshot_files(&damaged), before, "{context}: files changed");
        }
    }
    opened.dedup();
    assert_eq!(
        opened, harmless,
        "the flips that open are exactly those in purged bodies"
    );
    assert!(refused > 1000, "{refused} refusals");
}

/// The case of issue #24: a flipped bit in the length field of a record in the middle of the
/// last segment. Followed, the damaged length points into garbage; taking that for a torn
/// tail would cut the acknowledged records after it.
#[test]
fn a_flipped_length_in_the_middle_of_the_last_segment_refuses_to_open() {
    let options = LogOptions {
        segment_size: 400,
        ..LogOptions::default()
    };
    let dir = SimDir::new();
    let engine = LogEngine::open_in(Arc::new(dir.clone()), options.clone()).unwrap();
    append(&engine, 1..=12, 1).unwrap();
    drop(engine);
    let last = segment_names(&dir).pop().unwrap();
    let frames = frame_starts(&dir.file_bytes(&last).unwrap());
    assert!(
        frames.len() >= 4,
        "the last segment needs several records after the damaged one"
    );
    // What a cut would lose: the damaged record (the segment's second) and the intact ones
    // after it, found although the damaged length cannot say where they start.
    let first_index = last.trim_end_matches(".seg").parse::<u64>().unwrap();
    let last_index = first_index + frames.len() as u64 - 1;
    let loss = format!(
        "; cutting the segment here would lose it and the {} intact records {} to {last_index} \
         found after it (the first at byte {})",
        frames.len() - 2,
        first_index + 2,
        frames[2].0
    );
    // Byte 0 of the second record's length (a small change: the length then points inside
    // the next record) and byte 3 (a huge length: past the end of the file).
    for byte in [frames[1].0, frames[1].0 + 3] {
        for bit in [0, 7] {
            let damaged = with_flipped_bit(&dir, &last, byte * 8 + bit);
            let before = snapshot_files(&damaged);
            match LogEngine::open_in(Arc::new(damaged.clone()), options.clone()) {
                Err(LogError::Corrupt {
                    segment,
                    offset,
                    reason,
                }) => {
                    assert_eq!(segment, last);
                    assert_eq!(offset, frames[1].0 as u64);
                    assert!(
                        reason.contains(
                            "the record's head fails its checksum, so its length cannot be trusted"
                        ) && reason.ends_with(&loss),
                        "{reason}"
                    );
                }
                Err(other) => {
                    panic!("byte {byte} bit {bit}: expected a corruption error, got {other}")
                }
                Ok(engine) => panic!(
                    "byte {byte} bit {bit}: opened with last index {:?}",
                    engine.bounds().last_index
                ),
            }
            assert_eq!(
                snapshot_files(&damaged),
                before,
                "the refusal changed files"
            );
        }
    }
}

/// A flipped bit in the last record of the log: nothing follows it, but its last byte is in
/// place, so it was written whole (and acknowledged); it is not cut as a torn write.
#[test]
fn a_bit_flip_in_the_last_record_refuses_to_open() {
    let (dir, names) = damaged_fixture();
    let last = names.last().unwrap();
    rewrite(&dir, last, |b| {
        let at = b.len() - 4;
        b[at] ^= 0x02;
    });
    match open_sim(&dir) {
        Err(LogError::Corrupt {
            segment, reason, ..
        }) => {
            assert_eq!(&segment, last);
            assert!(
                reason.contains("no intact record follows it in this segment")
                    && !reason.contains("later segment"),
                "{reason}"
            );
        }
        Err(other) => panic!("expected a corruption error, got {other}"),
        Ok(engine) => panic!("opened with last index {:?}", engine.bounds().last_index),
    }
}

/// What a crash leaves when the file system had already grown the file but not written the
/// last record's bytes: zeros where the record's end should be. That is an interrupted write,
/// never acknowledged: cut, and the log goes on.
#[test]
fn a_zero_filled_last_record_is_cut_as_an_interrupted_write() {
    for zeroed in [1, 10, 40] {
        let (dir, names) = damaged_fixture();
        let last = names.last().unwrap();
        let frames = frame_starts(&dir.file_bytes(last).unwrap());
        let last_start = frames.last().unwrap().0;
        rewrite(&dir, last, |b| {
            let len = b.len();
            b[len - zeroed..].fill(0);
        });
        let engine = open_sim(&dir).unwrap();
        assert_eq!(
            read_all(&engine),
            (1..=29).map(|i| record(i, 1)).collect::<Vec<_>>(),
            "{zeroed} zeros"
        );
        assert_eq!(
            dir.file_bytes(last).unwrap().len(),
            last_start,
            "cut at record 30"
        );
        append(&engine, 30..=31, 2).unwrap();
        drop(engine);
        let engine = open_sim(&dir.crash_image(CrashImage::DurableOnly)).unwrap();
        assert_eq!(engine.get(31).unwrap(), Some(record(31, 2)));
    }
}

/// A crash during a purge can leave segments wholly below the purge point. They are garbage,
/// so damage in them does not stop the node: they are deleted without being read.
#[test]
fn a_damaged_segment_left_by_an_interrupted_purge_is_deleted_unread() {
    let (dir, names) = damaged_fixture();
    let first = dir.file_bytes(&names[0]).unwrap();
    let second_start = names[1].trim_end_matches(".seg").parse::<u64>().unwrap();
    let engine = open_sim(&dir).unwrap();
    engine.purge(second_start, b"id".to_vec()).unwrap();
    drop(engine);
    assert!(!segment_names(&dir).contains(&names[0]));
    // Put the first segment back, as a crash before its removal reached the disk would, and
    // damage it in the middle.
    let mut garbage = first;
    let middle = garbage.len() / 2;
    garbage[middle] ^= 0x40;
    dir.put_file(&names[0], garbage);
    let engine = open_sim(&dir).unwrap();
    assert_eq!(
        read_all(&engine),
        (second_start + 1..=30)
            .map(|i| record(i, 1))
            .collect::<Vec<_>>()
    );
    assert!(!segment_names(&dir).contains(&names[0]), "not deleted");
}

/// Segments of format version 1 (no head checksum, no end mark; only development builds wrote
/// them) are refused by name, even an empty one that could pass for a torn creation.
#[test]
fn a_segment_of_an_older_format_is_refused_with_a_clear_error() {
    let mut header = [0u8; 32];
    header[0..8].copy_from_slice(b"\x89RLOG\r\n\x1a");
    header[8..10].copy_from_slice(&1u16.to_le_bytes());
    header[16..24].copy_from_slice(&1u64.to_le_bytes());
    let crc = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    for records in [&[][..], &[0x11; 40][..]] {
        let dir = SimDir::new();
        let mut image = header.to_vec();
        image.extend_from_slice(records);
        dir.put_file(&segment_file_name(1), image);
        match open_sim(&dir) {
            Err(error @ LogError::UnsupportedFormat { version: 1, .. }) => {
                let message = error.to_string();
                assert!(
                    message.contains("00000000000000000001.seg has format version 1")
                        && message.contains("reads only version 2")
                        && message.contains(ADVICE),
                    "{message}"
                );
            }
            other => panic!("expected an unsupported-format error, got {other:?}"),
        }
        assert!(dir.file_bytes(&segment_file_name(1)).is_some(), "removed");
    }
}

/// The node's side: a node whose log is damaged exits at start-up, with a non-zero status and
/// the engine's message (segment path, byte, what was found, what to do), and changes nothing.
#[test]
fn a_node_with_a_damaged_log_refuses_to_start_and_says_why() {
    let mut node = common::Node::start(&[]);
    node.execute(r#"["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"]"#);
    for i in 0..4 {
        node.execute(&format!(r#"["INSERT INTO t(v) VALUES('row {i}')"]"#));
    }
    let temp = node.take_temp();
    let data_dir = node.data_dir.clone();
    assert!(node.stop().success());
    let mut segments: Vec<std::path::PathBuf> = std::fs::read_dir(data_dir.join("raft"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let last = segments.pop().expect("a log segment");
    let mut bytes = std::fs::read(&last).unwrap();
    let frames = frame_starts(&bytes);
    assert!(frames.len() >= 4, "{} records", frames.len());
    // The length field of the second record: acknowledged records follow it.
    let damaged_at = frames[1].0;
    bytes[damaged_at] ^= 0x02;
    std::fs::write(&last, &bytes).unwrap();

    let (code, out) = common::run_binary(
        &[
            "-http-addr",
            "127.0.0.1:0",
            "-raft-addr",
            "127.0.0.1:0",
            data_dir.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(1), "{out}");
    let expected = format!(
        "raftlited: open the Raft log: log segment {} is corrupt at byte {damaged_at}: record ",
        last.display()
    );
    assert!(out.contains(&expected), "{out}");
    // The records after the damaged one are named as what a cut would lose.
    assert!(
        out.contains("; cutting the segment here would lose it and the ")
            && out.contains(&format!(
                "found after it (the first at byte {})",
                frames[2].0
            )),
        "{out}"
    );
    assert!(out.contains(ADVICE), "{out}");
    assert!(!out.contains("panicked"), "{out}");
    assert_eq!(
        std::fs::read(&last).unwrap(),
        bytes,
        "the refusal changed the log"
    );
    drop(temp);
}

/// An append refused by a full disk (ENOSPC from the write) is not acknowledged, leaves the
/// log as it was, and does not stop the next append once there is room; nothing of it
/// survives a crash either, even where it wrote whole frames before the disk filled.
#[test]
fn an_append_on_a_full_disk_fails_without_poisoning_and_leaves_nothing_behind() {
    let dir = SimDir::new();
    let engine = LogEngine::open_in(Arc::new(dir.clone()), LogOptions::default()).unwrap();
    append(&engine, 1..=5, 1).unwrap();
    dir.set_full(true);
    // Four records: the half that reaches the file holds two whole frames (6 and 7).
    match append(&engine, 6..=9, 1) {
        Err(LogError::NoSpace { .. }) => {}
        other => panic!("an append on a full disk answered {other:?}"),
    }
    assert_eq!(engine.bounds().last_index, Some(5));
    assert_eq!(
        read_all(&engine),
        (1..=5).map(|i| record(i, 1)).collect::<Vec<_>>()
    );
    dir.set_full(false);
    // A shorter append than the failed one, as after a leader change: nothing of 7 remains.
    append(&engine, 6..=6, 2).unwrap();
    assert_eq!(engine.bounds().last_index, Some(6));
    for image in [CrashImage::DurableOnly, CrashImage::LiveWithTornWrite] {
        let reopened = open_sim(&dir.crash_image(image)).unwrap();
        let mut expected: Vec<Record> = (1..=5).map(|i| record(i, 1)).collect();
        expected.push(record(6, 2));
        assert_eq!(read_all(&reopened), expected, "{image:?}");
    }
    // And the engine goes on appending.
    append(&engine, 7..=20, 2).unwrap();
    assert_eq!(read_all(&engine).len(), 20);
}

/// A full disk met while creating a new segment (its header write) leaves no segment file
/// behind: a later, smaller append that fits the old segment continues the log there, and a
/// stale segment would break the chain on the next open.
#[test]
fn a_segment_whose_creation_met_a_full_disk_is_removed() {
    let dir = SimDir::new();
    let engine = open_sim(&dir).unwrap();
    let sized = |index: u64, len: usize| Record {
        index,
        term: 1,
        kind: 1,
        data: vec![b'a' + (index % 26) as u8; len],
    };
    let one = |r: &Record| engine.append(&[r.as_ref()]);
    one(&sized(1, 20)).unwrap();
    dir.set_full(true);
    // Too big for what is left of the segment: the append starts segment 2 and fails there.
    assert!(matches!(one(&sized(2, 100)), Err(LogError::NoSpace { .. })));
    dir.set_full(false);
    let small = sized(2, 10);
    one(&small).unwrap();
    assert_eq!(segment_names(&dir).len(), 1, "{:?}", segment_names(&dir));
    for i in 3..=6 {
        one(&sized(i, 100)).unwrap();
    }
    let reopened = open_sim(&dir.crash_image(CrashImage::LiveWithTornWrite)).unwrap();
    let back = read_all(&reopened);
    assert_eq!(back.len(), 6);
    assert_eq!(back[1], small);
}

/// Metadata writes (the vote, a purge) refused for room change nothing and leave the engine
/// usable: the same write succeeds once there is room, and a reopen finds it.
#[test]
fn a_vote_or_purge_on_a_full_disk_fails_without_poisoning() {
    let dir = SimDir::new();
    let engine = open_sim(&dir).unwrap();
    append(&engine, 1..=10, 1).unwrap();
    engine.save_vote(b"vote 1".to_vec()).unwrap();
    dir.set_full(true);
    assert!(matches!(
        engine.save_vote(b"vote 2".to_vec()),
        Err(LogError::NoSpace { .. })
    ));
    assert!(matches!(
        engine.purge(4, b"purged 4".to_vec()),
        Err(LogError::NoSpace { .. })
    ));
    assert_eq!(engine.vote(), Some(b"vote 1".to_vec()));
    assert_eq!(engine.bounds().first_index, Some(1));
    dir.set_full(false);
    engine.save_vote(b"vote 2".to_vec()).unwrap();
    engine.purge(4, b"purged 4".to_vec()).unwrap();
    append(&engine, 11..=12, 1).unwrap();
    let reopened = open_sim(&dir.crash_image(CrashImage::DurableOnly)).unwrap();
    assert_eq!(reopened.vote(), Some(b"vote 2".to_vec()));
    assert_eq!(reopened.bounds().first_index, Some(5));
    assert_eq!(reopened.bounds().last_index, Some(12));
}
