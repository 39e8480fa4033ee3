//! Group commit for write requests: concurrent writes share one Raft entry.
//!
//! openraft 0.9 appends each proposed entry on its core task and waits for that entry's log
//! flush before it looks at the next proposal, so N writes proposed at once cost N fsyncs in
//! series (about 2k writes/s on the benchmark machine, whatever the client concurrency). The
//! batcher sits in front of openraft: a write that finds a free proposal slot (at most
//! [`MAX_IN_FLIGHT`] proposals are outstanding) is proposed at once as an ordinary `Execute`
//! entry, so an idle node adds no latency. Writes that arrive while every slot is busy wait,
//! and the next free slot takes all of them, up to [`MAX_ITEMS`] and [`MAX_BYTES`], as one
//! `ExecuteBatch` entry: one append, one fsync, one replication round and one SQLite
//! transaction for the lot. The state machine applies the items exactly as separate entries
//! would run (see `state_machine::apply_batch`).
//!
//! Invariants: one task forms the entries and hands them to openraft in arrival order; every
//! caller gets exactly one answer, with its own results and the index of the entry that carried
//! its write; a proposal that fails fails each of its callers alike (`NotLeader` lets the HTTP
//! layer forward or redirect, as for a single write).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use openraft::error::ClientWriteError;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::{StoreError, WriteResults};
use crate::db::request::{ParamValue, Params, Request};
use crate::metrics::Metrics;
use crate::store::types::{Command, CommandResponse, ExecuteItem, NodeId, Raft, TypeConfig};
use crate::store::NodeInfo;

/// Proposals outstanding at once: one replicating while the next gathers writes. Measured on
/// the benchmark (3 nodes, 64 clients): 1 and 2 slots give the same throughput, 2 a lower
/// latency at 8 clients; 3 and 6 split the waiting writes into smaller entries and lose
/// 5–25%, because openraft flushes and replicates entries one after another.
pub const MAX_IN_FLIGHT: usize = 2;
/// Most writes in one entry: bounds an entry's apply time (one SQLite transaction).
pub const MAX_ITEMS: usize = 1024;
/// Most SQL and parameter bytes in one entry, so entries stay small next to openraft's batching
/// of entries into AppendEntries. A larger request is proposed alone.
pub const MAX_BYTES: usize = 1 << 20;

/// Counters for `/debug/vars` (`store.write_entries`, `store.batched_writes`).
#[derive(Debug, Default)]
pub struct BatchCounters {
    /// Entries proposed for writes (an `Execute` or an `ExecuteBatch`).
    pub entries: AtomicU64,
    /// Writes that shared their entry with at least one other.
    pub batched_writes: AtomicU64,
}

type Reply = oneshot::Sender<Result<WriteResults, StoreError>>;

struct Pending {
    item: ExecuteItem,
    bytes: usize,
    reply: Reply,
}

/// The handle writes are submitted through; the forming task stops when it is dropped.
pub struct WriteBatcher {
    pending: mpsc::UnboundedSender<Pending>,
    pub counters: Arc<BatchCounters>,
}

impl WriteBatcher {
    /// Starts the task that forms entries and proposes them to `raft`.
    /// Each write's commit latency goes to `metrics`.
    pub fn start(raft: Raft, metrics: Arc<Metrics>) -> WriteBatcher {
        let (pending, queue) = mpsc::unbounded_channel();
        let counters = Arc::new(BatchCounters::default());
        tokio::spawn(form_entries(raft, queue, Arc::clone(&counters), metrics));
        WriteBatcher { pending, counters }
    }

    /// Proposes `item` (alone or with others) and returns its results once applied here.
    pub async fn write(&self, item: ExecuteItem) -> Result<WriteResults, StoreError> {
        let (reply, answer) = oneshot::channel();
        let bytes = approx_bytes(&item.request);
        self.pending
            .send(Pending { item, bytes, reply })
            .map_err(|_| internal("the write batcher stopped"))?;
        answer
            .await
            .unwrap_or_else(|_| Err(internal("the write batcher dropped a write")))
    }
}

async fn form_entries(
    raft: Raft,
    mut queue: mpsc::UnboundedReceiver<Pending>,
    counters: Arc<BatchCounters>,
    metrics: Arc<Metrics>,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match queue.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        // Everything that queued while the slots were busy goes into this entry.
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_ITEMS {
            match queue.try_recv() {
                Ok(p) if bytes + p.bytes > MAX_BYTES => {
                    carried = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.bytes;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        counters.entries.fetch_add(1, Ordering::Relaxed);
        if batch.len() > 1 {
            counters
                .batched_writes
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        let (items, replies): (Vec<ExecuteItem>, Vec<Reply>) =
            batch.into_iter().map(|p| (p.item, p.reply)).unzip();
        let command = if items.len() == 1 {
            let ExecuteItem {
                request,
                policy,
                opts,
                env,
            } = items.into_iter().next().expect("one item");
            Command::Execute {
                request,
                policy,
                opts,
                env,
            }
        } else {
            Command::ExecuteBatch(items)
        };
        // Sent from this task, in order; the answers are awaited elsewhere.
        let proposed = Instant::now();
        match raft.client_write_ff(command).await {
            Ok(answer) => {
                let committed = Committed {
                    proposed,
                    metrics: Arc::clone(&metrics),
                };
                tokio::spawn(deliver(answer, replies, slot, committed));
            }
            Err(fatal) => {
                for reply in replies {
                    let _ = reply.send(Err(internal(&format!("write through Raft: {fatal}"))));
                }
            }
        }
    }
}

type Answer = openraft::raft::responder::OneshotResponder<TypeConfig>;

/// Where a proposal's commit latency is recorded, and when it was proposed.
struct Committed {
    proposed: Instant,
    metrics: Arc<Metrics>,
}

/// Waits for the entry to be applied here and hands each caller its part.
async fn deliver(
    answer: <Answer as openraft::raft::responder::Responder<TypeConfig>>::Receiver,
    replies: Vec<Reply>,
    slot: OwnedSemaphorePermit,
    committed: Committed,
) {
    let outcome = answer.await;
    drop(slot);
    let resp = match outcome {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            for reply in replies {
                let _ = reply.send(Err(write_error(&e)));
            }
            return;
        }
        Err(_) => {
            for reply in replies {
                let _ = reply.send(Err(internal("Raft stopped before the write was applied")));
            }
            return;
        }
    };
    let raft_index = resp.log_id.index;
    let CommandResponse {
        results,
        batch,
        apply_started,
    } = resp.data;
    if let Some(at) = apply_started {
        committed.metrics.write_committed(committed.proposed, at);
    }
    if replies.len() == 1 && batch.is_empty() {
        let reply = replies.into_iter().next().expect("one reply");
        let _ = reply.send(Ok(WriteResults {
            results,
            raft_index,
        }));
        return;
    }
    if batch.len() != replies.len() {
        let msg = format!(
            "a batch of {} writes was applied with {} results",
            replies.len(),
            batch.len()
        );
        for reply in replies {
            let _ = reply.send(Err(internal(&msg)));
        }
        return;
    }
    for (reply, results) in replies.into_iter().zip(batch) {
        let _ = reply.send(Ok(WriteResults {
            results,
            raft_index,
        }));
    }
}

/// The store's answer for a proposal openraft refused.
pub fn write_error(e: &ClientWriteError<NodeId, NodeInfo>) -> StoreError {
    match e {
        ClientWriteError::ForwardToLeader(f) => StoreError::NotLeader {
            leader: f.leader_node.clone(),
        },
        other => internal(&format!("write through Raft: {other}")),
    }
}

fn internal(msg: &str) -> StoreError {
    StoreError::Internal(anyhow::anyhow!("{msg}"))
}

/// About how many bytes a request adds to an entry (SQL text and parameters).
pub(crate) fn approx_bytes(request: &Request) -> usize {
    let value = |v: &ParamValue| match v {
        ParamValue::Text(t) => t.len() + 8,
        ParamValue::Blob(b) => b.len() + 8,
        _ => 9,
    };
    request
        .statements
        .iter()
        .map(|s| {
            s.sql.len()
                + 16
                + match &s.params {
                    Params::None => 0,
                    Params::Positional(vs) => vs.iter().map(value).sum(),
                    Params::Named(ns) => ns.iter().map(|(n, v)| n.len() + value(v)).sum(),
                }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::request::SqlStatement;

    #[test]
    fn size_counts_sql_and_parameters() {
        let req = Request {
            statements: vec![
                SqlStatement {
                    sql: "INSERT INTO t VALUES(?, ?)".into(),
                    params: Params::Positional(vec![
                        ParamValue::Integer(1),
                        ParamValue::Text("x".repeat(100)),
                    ]),
                },
                SqlStatement {
                    sql: "SELECT 1".into(),
                    params: Params::Named(vec![("n".into(), ParamValue::Blob(vec![0; 50]))]),
                },
            ],
            transaction: false,
        };
        assert_eq!(approx_bytes(&req), (26 + 16 + 9 + 108) + (8 + 16 + 1 + 58));
    }
}
