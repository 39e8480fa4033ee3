//! Queued writes (`/db/execute?queue`), as rqlite has them: the request is accepted at once
//! with a `sequence_number`, and a background task sends queued statements to Raft in batches
//! of up to `-write-queue-batch-size` requests, or whatever arrived within
//! `-write-queue-timeout` of the first one. `-write-queue-tx` runs each batch as one
//! transaction. At most `-write-queue-capacity` requests wait; a full queue makes senders wait.
//! `&wait` answers once the request's batch is applied (or failed).
//!
//! Invariants: sequence numbers increase in acceptance order, and batches are proposed in
//! that order by one task, so a batch never overtakes an earlier one. A batch on a node that
//! is not the leader is forwarded to the leader's `/db/execute`. A batch that fails (no leader
//! for a while) is reported to its waiters and logged; the queue is not durable, as in rqlite.
//! With `-auth`, a forwarded batch carries its callers' credentials so the leader checks them:
//! a batch is cut where the `Authorization` header changes, so one caller's statements never
//! travel under another's name.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::db::request::{ParamValue, Params, Request, SqlStatement};
use crate::db::request::{ResultOptions, RowsPolicy};
use crate::store::{Store, StoreError};

/// The `-write-queue-*` settings.
#[derive(Debug, Clone, Copy)]
pub struct QueueOptions {
    pub capacity: usize,
    pub batch_size: usize,
    pub timeout: Duration,
    pub transaction: bool,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            capacity: 1024,
            batch_size: 128,
            timeout: Duration::from_millis(50),
            transaction: false,
        }
    }
}

/// How a queued request's batch ended: Ok, or the error text.
pub type BatchOutcome = Result<(), String>;

struct Queued {
    statements: Vec<SqlStatement>,
    /// The caller's `Authorization` header, passed on when the batch is forwarded.
    authorization: Option<String>,
    done: Option<oneshot::Sender<BatchOutcome>>,
}

/// The queue of one node.
pub struct WriteQueue {
    tx: mpsc::Sender<Queued>,
    next_seq: AtomicI64,
}

impl WriteQueue {
    /// Starts the batching task (on the current tokio runtime).
    pub fn start(store: Arc<Store>, client: reqwest::Client, opts: QueueOptions) -> WriteQueue {
        let (tx, rx) = mpsc::channel(opts.capacity.max(1));
        tokio::spawn(run(store, client, opts, rx));
        WriteQueue {
            tx,
            // rqlite starts from the clock so numbers keep increasing across restarts.
            next_seq: AtomicI64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as i64),
            ),
        }
    }

    /// Queues `statements`; returns the sequence number and, when asked, the batch outcome.
    pub async fn enqueue(
        &self,
        statements: Vec<SqlStatement>,
        wait: bool,
        authorization: Option<String>,
    ) -> Result<(i64, Option<oneshot::Receiver<BatchOutcome>>), String> {
        let (done, outcome) = if wait {
            let (s, r) = oneshot::channel();
            (Some(s), Some(r))
        } else {
            (None, None)
        };
        // Taken while holding the send permit, so numbers follow queue order.
        let permit = self
            .tx
            .reserve()
            .await
            .map_err(|_| "the write queue is closed".to_string())?;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        permit.send(Queued {
            statements,
            authorization,
            done,
        });
        Ok((seq, outcome))
    }
}

async fn run(
    store: Arc<Store>,
    client: reqwest::Client,
    opts: QueueOptions,
    mut rx: mpsc::Receiver<Queued>,
) {
    // A request of another caller that ended the previous batch starts the next one.
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(q) => q,
            None => match rx.recv().await {
                Some(q) => q,
                None => break,
            },
        };
        let authorization = first.authorization.clone();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + opts.timeout;
        while batch.len() < opts.batch_size.max(1) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(q)) if q.authorization == authorization => batch.push(q),
                Ok(Some(q)) => {
                    carried = Some(q);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        let request = Request {
            statements: batch.iter().flat_map(|q| q.statements.clone()).collect(),
            transaction: opts.transaction,
        };
        let outcome = send_batch(&store, &client, request, authorization.as_deref()).await;
        if let Err(e) = &outcome {
            tracing::warn!(requests = batch.len(), "queued writes failed: {e}");
        }
        for q in batch {
            if let Some(done) = q.done {
                let _ = done.send(outcome.clone());
            }
        }
    }
}

/// Proposes the batch here, or forwards it to the leader; retries while there is no leader.
async fn send_batch(
    store: &Store,
    client: &reqwest::Client,
    request: Request,
    authorization: Option<&str>,
) -> BatchOutcome {
    let mut last = String::new();
    for attempt in 0..50 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match store
            .execute(
                request.clone(),
                RowsPolicy::ReturningOnly,
                ResultOptions::default(),
                None,
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::NotLeader {
                leader: Some(leader),
            }) => {
                let url = format!("{}/db/execute", leader.api_url());
                let body = to_rqlite_json(&request);
                let url = if request.transaction {
                    format!("{url}?transaction")
                } else {
                    url
                };
                let mut out = client.post(url).body(body);
                if let Some(auth) = authorization {
                    out = out.header(reqwest::header::AUTHORIZATION, auth);
                }
                match out.send().await {
                    Ok(r) if r.status().is_success() => return Ok(()),
                    Ok(r) => last = format!("leader answered {}", r.status()),
                    Err(e) => last = format!("forward to the leader: {e}"),
                }
            }
            Err(StoreError::NotLeader { leader: None }) => last = "leader not found".into(),
            // Its entry goes on and may be applied: proposing it again could apply it twice.
            Err(e @ StoreError::ApplyTimeout { .. }) => return Err(e.to_string()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// A request as rqlite's JSON body: `[sql]` or `[sql, params...]` or `[sql, {named}]`.
fn to_rqlite_json(request: &Request) -> String {
    use serde_json::Value as J;
    let value = |v: &ParamValue| -> J {
        match v {
            ParamValue::Null => J::Null,
            ParamValue::Integer(i) => J::from(*i),
            ParamValue::Real(r) => J::from(*r),
            ParamValue::Text(t) => J::from(t.clone()),
            ParamValue::Blob(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
            ParamValue::Bool(b) => J::from(*b),
        }
    };
    let items: Vec<J> = request
        .statements
        .iter()
        .map(|s| {
            let mut item = vec![J::from(s.sql.clone())];
            match &s.params {
                Params::None => {}
                Params::Positional(vs) => item.extend(vs.iter().map(value)),
                Params::Named(pairs) => item.push(J::Object(
                    pairs.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
                )),
            }
            J::Array(item)
        })
        .collect();
    J::Array(items).to_string()
}
