//! The leader's sender: reads the queue in index order, sends rqlite's envelopes to the
//! endpoint, and records what was delivered as a high-water mark in the log.
//!
//! It runs on every node with `-cdc-config` and sends only while the node leads. On taking
//! over it starts after the last high-water mark the log recorded, so a new leader resends
//! at most what its predecessor delivered but had not recorded yet (at-least-once, as
//! rqlite). A batch is sent until the endpoint answers 2xx, waiting between attempts as the
//! retry policy says; with `transmit_max_retries` set, a batch still refused after that many
//! retries is given up (counted in `num_dropped`, as rqlite drops it). The mark is proposed
//! at most once per `high_watermark_interval`, and only when it moved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::config::{CdcConfig, Endpoint};
use super::queue::{Queue, Queued};
use crate::store::Store;

/// The most bytes of events one request carries (an entry larger than this goes alone).
const MAX_BATCH_BYTES: usize = 16 << 20;

/// Counters for `/status` (`cdc`).
#[derive(Debug, Default)]
pub struct SenderStats {
    /// The last index delivered by this node while it led (0: none).
    pub sent_through: AtomicU64,
    pub num_transmits: AtomicU64,
    pub num_transmit_failures: AtomicU64,
    /// Entries given up after `transmit_max_retries`.
    pub num_dropped: AtomicU64,
    pub num_high_watermarks_proposed: AtomicU64,
}

/// Where a batch goes.
enum Sink {
    Stdout,
    Http {
        client: reqwest::Client,
        url: reqwest::Url,
    },
}

impl Sink {
    fn new(config: &CdcConfig) -> anyhow::Result<Sink> {
        let url = match &config.endpoint {
            Endpoint::Stdout => return Ok(Sink::Stdout),
            Endpoint::Http(url) => url.clone(),
        };
        let mut builder = reqwest::Client::builder()
            .timeout(config.transmit_timeout)
            .connect_timeout(config.transmit_timeout)
            // The endpoint is the operator's; a redirect elsewhere is not followed with the
            // events.
            .redirect(reqwest::redirect::Policy::none());
        let tls = &config.tls;
        if url.scheme() == "https" {
            let client_tls = crate::tls::ClientTls {
                ca: tls.ca_cert_file.clone(),
                identity: tls.cert_file.clone().zip(tls.key_file.clone()),
                insecure: tls.insecure_skip_verify,
                server_name: tls.server_name.clone(),
            };
            builder = builder.use_preconfigured_tls(
                crate::tls::client_config(&client_tls, "CDC endpoint")
                    .context("the CDC endpoint's TLS settings")?,
            );
        }
        let client = builder.build().context("build the CDC client")?;
        Ok(Sink::Http { client, url })
    }

    async fn send(&self, body: bytes::Bytes) -> Result<(), String> {
        match self {
            Sink::Stdout => {
                // A blocked pipe must not hold a runtime thread.
                let written = tokio::task::spawn_blocking(move || {
                    use std::io::Write as _;
                    let mut out = std::io::stdout().lock();
                    out.write_all(&body)
                        .and_then(|()| out.write_all(b"\n"))
                        .and_then(|()| out.flush())
                })
                .await;
                match written {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("write to stdout: {e}")),
                    Err(e) => Err(format!("write to stdout: {e}")),
                }
            }
            Sink::Http { client, url } => {
                let response = client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("{e}"))?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("the endpoint answered {status}"))
                }
            }
        }
    }
}

/// rqlite's envelope for `batch`: the events are stored as JSON already and go in as they are.
pub fn envelope(service_id: &str, node_id: &str, batch: &[Queued]) -> String {
    let mut body =
        String::with_capacity(64 + batch.iter().map(|q| q.events.len() + 48).sum::<usize>());
    body.push('{');
    if !service_id.is_empty() {
        body.push_str("\"service_id\":");
        body.push_str(&serde_json::Value::from(service_id).to_string());
        body.push(',');
    }
    body.push_str("\"node_id\":");
    body.push_str(&serde_json::Value::from(node_id).to_string());
    body.push_str(",\"payload\":[");
    for (i, q) in batch.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"index\":{},\"commit_timestamp\":{},\"events\":{}}}",
            q.index, q.commit_millis, q.events
        ));
    }
    body.push_str("]}");
    body
}

/// Checks the configuration (TLS files, the endpoint) and starts the sender.
pub fn start(
    store: Arc<Store>,
    queue: Arc<Queue>,
    config: CdcConfig,
    stats: Arc<SenderStats>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let sink = Sink::new(&config)?;
    Ok(tokio::spawn(run(store, queue, config, sink, stats)))
}

async fn run(
    store: Arc<Store>,
    queue: Arc<Queue>,
    config: CdcConfig,
    sink: Sink,
    stats: Arc<SenderStats>,
) {
    let node_id = store.node().id.clone();
    loop {
        if store.is_stopping() {
            return;
        }
        if !store.is_leader() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        lead(&store, &queue, &config, &sink, &stats, &node_id).await;
    }
}

/// Sends while this node leads.
async fn lead(
    store: &Store,
    queue: &Arc<Queue>,
    config: &CdcConfig,
    sink: &Sink,
    stats: &SenderStats,
    node_id: &str,
) {
    let mut sent = queue.high_watermark();
    stats.sent_through.store(sent, Ordering::Relaxed);
    tracing::info!(after = sent, "leading: sending change data capture events");
    let mut last_proposal: Option<Instant> = None;
    while store.is_leader() && !store.is_stopping() {
        // A mark the previous leader recorded may be applied here only after this node took
        // over: nothing at or below it is sent again.
        sent = sent.max(queue.high_watermark());
        let mut batch = match read(store, queue, sent, config.max_batch_size).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!("read the CDC queue: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            propose_mark(store, queue, config, stats, sent, &mut last_proposal).await;
            // A put wakes it; the timeout keeps the mark and the leadership checked.
            let _ = tokio::time::timeout(Duration::from_millis(100), queue.appended()).await;
            continue;
        }
        if batch.len() < config.max_batch_size {
            // Give the batch its delay to fill up, as rqlite's batcher does.
            tokio::time::sleep(config.max_batch_delay).await;
            if !store.is_leader() {
                return;
            }
            drop(batch);
            batch = Vec::new();
            if let Ok(more) = read(store, queue, sent, config.max_batch_size).await {
                batch = more;
            }
        }
        // At most MAX_BATCH_BYTES of events in one request (the read stopped past it), and at
        // least one entry.
        let mut bytes = 0usize;
        let keep = batch
            .iter()
            .take_while(|q| {
                bytes = bytes.saturating_add(q.events.len());
                bytes <= MAX_BATCH_BYTES
            })
            .count()
            .max(1);
        batch.truncate(keep);
        let Some(last) = batch.last().map(|q| q.index) else {
            continue;
        };
        let body = bytes::Bytes::from(envelope(&config.service_id, node_id, &batch));
        match deliver(store, config, sink, stats, body).await {
            Delivery::Delivered => {
                stats.num_transmits.fetch_add(1, Ordering::Relaxed);
            }
            Delivery::GivenUp => {
                stats
                    .num_dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::error!(
                    first = batch[0].index,
                    last,
                    "CDC events given up after {} retries",
                    config.transmit_max_retries.unwrap_or(0)
                );
            }
            Delivery::NotLeading => return,
        }
        sent = last;
        stats.sent_through.store(sent, Ordering::Relaxed);
        propose_mark(store, queue, config, stats, sent, &mut last_proposal).await;
    }
}

/// The next entries to send: queued after `after`, and applied here (an entry's events are
/// queued just before its COMMIT, which may yet be refused).
async fn read(
    store: &Store,
    queue: &Arc<Queue>,
    after: u64,
    limit: usize,
) -> anyhow::Result<Vec<Queued>> {
    let applied = store.shared().applied_index.load(Ordering::Acquire);
    let queue = Arc::clone(queue);
    tokio::task::spawn_blocking(move || queue.read_after(after, applied, limit, MAX_BATCH_BYTES))
        .await
        .context("the queue reader task")?
        .context("read the queue")
}

enum Delivery {
    Delivered,
    GivenUp,
    NotLeading,
}

async fn deliver(
    store: &Store,
    config: &CdcConfig,
    sink: &Sink,
    stats: &SenderStats,
    body: bytes::Bytes,
) -> Delivery {
    let mut retries: u32 = 0;
    loop {
        match sink.send(body.clone()).await {
            Ok(()) => return Delivery::Delivered,
            Err(e) => {
                stats.num_transmit_failures.fetch_add(1, Ordering::Relaxed);
                if config
                    .transmit_max_retries
                    .is_some_and(|max| u64::from(retries) >= max)
                {
                    return Delivery::GivenUp;
                }
                retries = retries.saturating_add(1);
                let wait = config.backoff(retries);
                tracing::warn!(retry = retries, ?wait, "sending CDC events failed: {e}");
                // Waits in short steps, so a lost leadership stops the retries soon.
                let until = Instant::now() + wait;
                while Instant::now() < until {
                    if !store.is_leader() || store.is_stopping() {
                        return Delivery::NotLeading;
                    }
                    let left = until.saturating_duration_since(Instant::now());
                    tokio::time::sleep(left.min(Duration::from_millis(100))).await;
                }
                if !store.is_leader() || store.is_stopping() {
                    return Delivery::NotLeading;
                }
            }
        }
    }
}

/// Proposes `sent` as the high-water mark when it moved and the interval has passed.
async fn propose_mark(
    store: &Store,
    queue: &Queue,
    config: &CdcConfig,
    stats: &SenderStats,
    sent: u64,
    last_proposal: &mut Option<Instant>,
) {
    if sent <= queue.high_watermark()
        || last_proposal.is_some_and(|t| t.elapsed() < config.high_watermark_interval)
    {
        return;
    }
    *last_proposal = Some(Instant::now());
    match store.propose_cdc_high_watermark(sent).await {
        Ok(_) => {
            stats
                .num_high_watermarks_proposed
                .fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => tracing::warn!(sent, "record the CDC high-water mark: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_rqlites() {
        let batch = vec![
            Queued {
                index: 4,
                commit_millis: 1000,
                events: r#"[{"op":"INSERT","table":"t","new_row_id":1}]"#.into(),
            },
            Queued {
                index: 6,
                commit_millis: 1001,
                events: r#"[{"op":"DELETE","table":"t","old_row_id":1}]"#.into(),
            },
        ];
        let body: serde_json::Value =
            serde_json::from_str(&envelope("svc \"1\"", "n1", &batch)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "service_id": "svc \"1\"",
                "node_id": "n1",
                "payload": [
                    {"index": 4, "commit_timestamp": 1000,
                     "events": [{"op": "INSERT", "table": "t", "new_row_id": 1}]},
                    {"index": 6, "commit_timestamp": 1001,
                     "events": [{"op": "DELETE", "table": "t", "old_row_id": 1}]},
                ]
            })
        );
        let without: serde_json::Value =
            serde_json::from_str(&envelope("", "n1", &batch[..1])).unwrap();
        assert!(without.get("service_id").is_none());
    }
}
