//! `log-append`: the Raft log engine's append throughput (entries/s, MB/s) and per-batch
//! latency with fsync on, for batch sizes 1, 16 and 256; group commit under 64 concurrent
//! proposers; and the time to reopen (scan and CRC-check) a log of 1M entries.
//!
//! Every append case has a reference in the same run: a plain `std::fs::File` append loop
//! writing the same number of bytes per batch with one `sync_data` per batch, the floor any
//! log pays. Rows carry the engine/raw throughput ratio.
//!
//! Figures: `stmts/s` is entries/s; MB/s counts frame bytes as written (payload + 30 bytes
//! of framing per entry: `RecordRef::encoded_len`); latency is per batch (per entry for group
//! commit), fsync included. Each case stops at its entry count or its time cap, whichever
//! comes first, so a slow disk cannot make a run unbounded.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftlite::raft::log::io::{OsDir, SyncHookDir};
use raftlite::raft::log::{LogEngine, LogOptions, RecordRef};

use super::{Context, OrFail, ScenarioResult};
use crate::measure::Percentiles;
use crate::report::{Row, ScenarioReport};

const GOALS: &[&str] = &["log append: one fsync per batch, not per entry"];

/// Payload size: a small SQL request as the store encodes it.
const PAYLOAD: usize = 200;
const BATCH_SIZES: &[usize] = &[1, 16, 256];
/// Concurrent proposers in the group-commit case.
const PROPOSERS: usize = 64;
/// Entry kind used for every record (opaque to the engine).
const KIND: u8 = 1;

struct Sizes {
    /// Most entries per append case.
    entries: u64,
    /// Time cap per append case.
    cap: Duration,
    /// Entries in the reopen case.
    reopen_entries: u64,
}

fn sizes(quick: bool) -> Sizes {
    if quick {
        Sizes {
            entries: 2_000,
            cap: Duration::from_millis(300),
            reopen_entries: 20_000,
        }
    } else {
        Sizes {
            entries: 2_000_000,
            cap: Duration::from_secs(4),
            reopen_entries: 1_000_000,
        }
    }
}

/// Bytes one entry takes on disk (frame included).
fn frame_len(payload: &[u8]) -> u64 {
    RecordRef {
        index: 1,
        term: 1,
        kind: KIND,
        data: payload,
    }
    .encoded_len() as u64
}

fn payload() -> Vec<u8> {
    // Text-like bytes, as a SQL statement would be.
    let stmt = b"INSERT INTO events(id, at, kind, body) VALUES (?, ?, ?, ?); ";
    stmt.iter().copied().cycle().take(PAYLOAD).collect()
}

fn io_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

pub fn run(ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("log-append", GOALS);
    let sizes = sizes(ctx.opts.quick);
    let dir = ctx.scratch("log-append").or_fail(&mut report)?;
    let payload = payload();
    let result = run_cases(&mut report, &dir, &sizes, &payload);
    let _ = std::fs::remove_dir_all(&dir);
    result.or_fail(&mut report)?;
    Ok(report)
}

fn run_cases(
    report: &mut ScenarioReport,
    dir: &Path,
    sizes: &Sizes,
    payload: &[u8],
) -> Result<(), String> {
    for &batch in BATCH_SIZES {
        let raw = raw_append(&dir.join(format!("raw-{batch}")), batch, sizes, payload)?;
        let engine = engine_append(&dir.join(format!("engine-{batch}")), batch, sizes, payload)?
            .throughput_ratio_to(&raw);
        report.push(engine);
        report.push(raw);
    }
    let group = group_commit(&dir.join("group"), sizes, payload)?;
    report.push(group);
    report.push(reopen(&dir.join("reopen"), sizes, payload)?);
    Ok(())
}

/// `LogEngine::append` of `batch` entries at a time: one fsync per call.
fn engine_append(dir: &Path, batch: usize, sizes: &Sizes, payload: &[u8]) -> Result<Row, String> {
    let log = LogEngine::open(dir, LogOptions::default()).map_err(|e| io_err("open log", e))?;
    let mut latencies = Vec::new();
    let mut next = 1u64;
    let started = Instant::now();
    while next <= sizes.entries && started.elapsed() < sizes.cap {
        let records: Vec<RecordRef<'_>> = (0..batch as u64)
            .map(|i| RecordRef {
                index: next + i,
                term: 1,
                kind: KIND,
                data: payload,
            })
            .collect();
        let t = Instant::now();
        log.append(&records).map_err(|e| io_err("append", e))?;
        latencies.push(t.elapsed());
        next += batch as u64;
    }
    let wall = started.elapsed().as_secs_f64();
    drop(log);
    let _ = std::fs::remove_dir_all(dir);
    let entries = next - 1;
    let mut row = Row::new(format!("engine append, batch {batch}"))
        .timed(wall, Some(entries * frame_len(payload)), Some(entries))
        .note(format!(
            "{entries} entries, {} fsyncs (per-batch latency)",
            latencies.len()
        ));
    row.latency_ms = Percentiles::of(&mut latencies);
    Ok(row)
}

/// The floor: `write_all` of the same bytes per batch to a plain file, then `sync_data`.
fn raw_append(path: &Path, batch: usize, sizes: &Sizes, payload: &[u8]) -> Result<Row, String> {
    let frame = frame_len(payload) as usize;
    let buf: Vec<u8> = payload
        .iter()
        .copied()
        .cycle()
        .take(frame * batch)
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_err("create raw file", e))?;
    let mut latencies = Vec::new();
    let mut entries = 0u64;
    let started = Instant::now();
    while entries < sizes.entries && started.elapsed() < sizes.cap {
        let t = Instant::now();
        file.write_all(&buf).map_err(|e| io_err("raw write", e))?;
        file.sync_data().map_err(|e| io_err("raw fdatasync", e))?;
        latencies.push(t.elapsed());
        entries += batch as u64;
    }
    let wall = started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(path);
    let mut row = Row::new(format!("raw write+fdatasync, batch {batch}"))
        .timed(wall, Some(entries * frame as u64), Some(entries))
        .note(format!(
            "{entries} entries' bytes, {} fsyncs",
            latencies.len()
        ));
    row.latency_ms = Percentiles::of(&mut latencies);
    Ok(row)
}

/// 64 threads, each proposing one entry at a time with `append_then` and waiting for its own
/// durability callback before proposing the next.
///
/// Entries per fsync is exact: the log runs on a [`SyncHookDir`] that counts the engine's
/// `sync_data` calls.
fn group_commit(dir: &Path, sizes: &Sizes, payload: &[u8]) -> Result<Row, String> {
    let fsyncs = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&fsyncs);
    let counting = SyncHookDir::new(
        Arc::new(OsDir::open(dir).map_err(|e| io_err("create log dir", e))?),
        Arc::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }),
    );
    let log = LogEngine::open_in(Arc::new(counting), LogOptions::default())
        .map_err(|e| io_err("open log", e))?;
    // Indexes must be contiguous, so taking an index and appending it happen under one lock.
    let next = Arc::new(Mutex::new(1u64));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + sizes.cap;
    let limit = sizes.entries;
    let mut handles = Vec::new();
    for _ in 0..PROPOSERS {
        let (log, next, done) = (log.clone(), next.clone(), done.clone());
        let payload = payload.to_vec();
        handles.push(std::thread::spawn(
            move || -> Result<Vec<Duration>, String> {
                let mut latencies = Vec::new();
                loop {
                    if Instant::now() >= deadline || done.load(Ordering::Relaxed) >= limit {
                        return Ok(latencies);
                    }
                    let (tx, rx) = std::sync::mpsc::sync_channel(1);
                    let t = Instant::now();
                    {
                        let mut n = next.lock().map_err(|_| "index lock poisoned")?;
                        let record = RecordRef {
                            index: *n,
                            term: 1,
                            kind: KIND,
                            data: &payload,
                        };
                        log.append_then(
                            &[record],
                            Box::new(move |r| {
                                let _ = tx.send(r);
                            }),
                        )
                        .map_err(|e| io_err("append_then", e))?;
                        *n += 1;
                    }
                    rx.recv()
                        .map_err(|_| "durability callback dropped".to_string())?
                        .map_err(|e| io_err("durability", e))?;
                    latencies.push(t.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            },
        ));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.join().map_err(|_| "proposer thread panicked")??);
    }
    let wall = started.elapsed().as_secs_f64();
    drop(log);
    let _ = std::fs::remove_dir_all(dir);
    let entries = latencies.len() as u64;
    let flushes = fsyncs.load(Ordering::Relaxed).max(1);
    let note = format!(
        "{PROPOSERS} proposers, batch 1, {entries} entries; {:.1} entries/fsync \
         ({flushes} fsyncs, counted); latency per entry",
        entries as f64 / flushes as f64
    );
    let mut row = Row::new(format!("engine append_then x{PROPOSERS} threads"))
        .timed(wall, Some(entries * frame_len(payload)), Some(entries))
        .note(note);
    row.latency_ms = Percentiles::of(&mut latencies);
    Ok(row)
}

/// Builds a log of `reopen_entries` with large batches, closes it, and times `open`.
fn reopen(dir: &Path, sizes: &Sizes, payload: &[u8]) -> Result<Row, String> {
    const BUILD_BATCH: u64 = 4096;
    let log = LogEngine::open(dir, LogOptions::default()).map_err(|e| io_err("open log", e))?;
    let mut next = 1u64;
    while next <= sizes.reopen_entries {
        let n = BUILD_BATCH.min(sizes.reopen_entries - next + 1);
        let records: Vec<RecordRef<'_>> = (0..n)
            .map(|i| RecordRef {
                index: next + i,
                term: 1,
                kind: KIND,
                data: payload,
            })
            .collect();
        log.append(&records).map_err(|e| io_err("append", e))?;
        next += n;
    }
    drop(log);
    let segments = std::fs::read_dir(dir)
        .map_err(|e| io_err("list log dir", e))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .count();
    let bytes = std::fs::read_dir(dir)
        .map_err(|e| io_err("list log dir", e))?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum::<u64>();
    let started = Instant::now();
    let log = LogEngine::open(dir, LogOptions::default()).map_err(|e| io_err("reopen log", e))?;
    let wall = started.elapsed().as_secs_f64();
    let last = log.bounds().last_index;
    drop(log);
    let _ = std::fs::remove_dir_all(dir);
    if last != Some(sizes.reopen_entries) {
        return Err(format!(
            "reopened log ends at {last:?}, expected {}",
            sizes.reopen_entries
        ));
    }
    Ok(
        Row::new(format!("engine reopen, {} entries", sizes.reopen_entries))
            .timed(wall, Some(bytes), Some(sizes.reopen_entries))
            .note(format!(
                "{segments} segments of <= 64 MiB; page cache warm (just written)"
            )),
    )
}
