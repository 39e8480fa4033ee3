//! `cdc` (issue #28): what change data capture costs writes.
//!
//! The P9 case (single-statement requests at c=64) and the P6 case (1000-statement requests
//! at c=1) on a 3-node cluster with `-cdc-config` off and on, in alternating rounds, a new
//! cluster each round; the median round of each side, and on/off as the ratio. With it on,
//! every node captures each write entry's rows and writes them to its queue (an fsync) before
//! the entry commits, and the leader sends them to a receiver in this process that answers
//! 200 at once. The round then checks that the receiver got an INSERT event for every row
//! (a benchmark of a sender that loses events would be worthless).

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::writes::{drive, BATCH};
use super::{cost_on_writes, Context, ScenarioResult};
use crate::node::{post, Cluster};
use crate::report::{Row, ScenarioReport};

const GOALS: &[&str] =
    &["C1: change data capture on >= 0.8x the write throughput with it off (P9's and P6's cases)"];
const ROUNDS: usize = 3;
const NODES: usize = 3;

struct Counts {
    single: usize,
    batches: usize,
}
const QUICK: Counts = Counts {
    single: 1_600,
    batches: 10,
};
const FULL: Counts = Counts {
    single: 32_000,
    batches: 100,
};

/// An HTTP endpoint that answers 200 to every POST and keeps the ids of inserted rows.
struct Receiver {
    port: u16,
    ids: Arc<Mutex<HashSet<i64>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Result<Receiver, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let ids = Arc::new(Mutex::new(HashSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ids2, stop2) = (Arc::clone(&ids), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let ids = Arc::clone(&ids2);
                        std::thread::spawn(move || serve(stream, &ids));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Receiver { port, ids, stop })
    }

    fn received(&self) -> usize {
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves one keep-alive connection: Content-Length bodies only (what the node sends).
fn serve(stream: std::net::TcpStream, ids: &Mutex<HashSet<i64>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        // The rows' ids, scanned rather than parsed: the receiver shares the machine's two
        // cores with the nodes, and a real one would run elsewhere (every event here is an
        // INSERT, the only write the cases make).
        let mut found = Vec::new();
        let key = b"\"new_row_id\":";
        let mut at = 0;
        while let Some(pos) = body[at..].windows(key.len()).position(|w| w == key) {
            let start = at + pos + key.len();
            let end = body[start..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(body.len(), |n| start + n);
            if let Some(id) = std::str::from_utf8(&body[start..end])
                .ok()
                .and_then(|d| d.parse::<i64>().ok())
            {
                found.push(id);
            }
            at = end;
        }
        ids.lock().unwrap_or_else(|p| p.into_inner()).extend(found);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(ok).is_err() {
            return;
        }
    }
}

struct Round {
    single: Row,
    batched: Row,
}

fn round(ctx: &Context, counts: &Counts, capturing: bool, n: usize) -> Result<Round, String> {
    let side = if capturing { "on" } else { "off" };
    let work = ctx.scratch(&format!("cdc-{side}-{n}"))?;
    let receiver = Receiver::start()?;
    let mut extra = Vec::new();
    if capturing {
        extra = vec![
            "-cdc-config".to_string(),
            format!("http://127.0.0.1:{}/cdc", receiver.port),
        ];
    }
    let cluster = Cluster::start_with(&ctx.opts.bin_dir, &work.join("nodes"), NODES, &extra)?;
    let node = cluster.leader();
    let create = r#"["CREATE TABLE bench (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)"]"#;
    post(
        &ctx.agent,
        &node.url("/db/execute"),
        "application/json",
        create,
    )?;
    let mut next_key = 0;
    let (single_wall, _) = drive(&ctx.agent, node, 64, counts.single, &mut next_key, 1)?;
    let (batch_wall, _) = drive(&ctx.agent, node, 1, counts.batches, &mut next_key, BATCH)?;
    if capturing {
        let rows = counts.single + counts.batches * BATCH;
        // Bounded: the sender has a minute to catch up after the last write.
        let deadline = Instant::now() + Duration::from_secs(60);
        while receiver.received() < rows && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if receiver.received() != rows {
            return Err(format!(
                "the receiver got INSERT events for {} of {rows} rows",
                receiver.received()
            ));
        }
    }
    cluster.stop()?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(Round {
        single: Row::new(format!("change data capture {side}: 1 stmt/request, c=64")).timed(
            single_wall.as_secs_f64(),
            None,
            Some(counts.single as u64),
        ),
        batched: Row::new(format!(
            "change data capture {side}: {BATCH} stmts/request, c=1"
        ))
        .timed(
            batch_wall.as_secs_f64(),
            None,
            Some((counts.batches * BATCH) as u64),
        ),
    })
}

pub fn run(ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("cdc", GOALS);
    let counts = if ctx.opts.quick { &QUICK } else { &FULL };
    let rounds = if ctx.opts.quick { 1 } else { ROUNDS };
    let n = std::cell::Cell::new(0);
    let ctx_ref = &*ctx;
    cost_on_writes(
        &mut report,
        rounds,
        || {
            n.set(n.get() + 1);
            round(ctx_ref, counts, false, n.get())
        },
        || {
            n.set(n.get() + 1);
            round(ctx_ref, counts, true, n.get())
        },
        [|r: &Round| r.single.clone(), |r: &Round| r.batched.clone()],
    )?;
    Ok(report)
}
