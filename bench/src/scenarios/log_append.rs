//! `log-append`: the Raft log engine's append throughput (records/s, MB/s, fsyncs per
//! batch) and append latency percentiles.
//!
//! Skipped until the log engine (`src/raft/log`) lands. TODO(log engine): replace the body of
//! [`run`] with: open a `LogSegment`-based log in a scratch directory, append N entries of
//! a realistic size (a 1000-statement request encoded as the store encodes it) in batches of
//! 1, 64 and 1024, timing each batch including its fsync; report records/s and MB/s, and as a
//! reference `dd if=/dev/zero of=FILE bs=SIZE count=N oflag=dsync` (the same bytes, one
//! fsync per batch) run in the same scenario. Add `raftlite = { path = ".." }` to
//! `[dependencies]` for that; the record encoding micro-benchmark goes in `benches/`.

use super::{Context, ScenarioResult};
use crate::report::{Outcome, ScenarioReport};

const GOALS: &[&str] = &["log append: one fsync per batch, not per entry"];

pub fn run(_ctx: &mut Context) -> ScenarioResult {
    let mut report = ScenarioReport::new("log-append", GOALS);
    report.outcome = Outcome::Skipped("the log engine is not in this build yet".into());
    Ok(report)
}
