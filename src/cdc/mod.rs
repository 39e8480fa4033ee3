//! Change data capture (`-cdc-config`, rqlite 9's CDC): the rows each committed write entry
//! changed, sent as rqlite's JSON events to an HTTP endpoint or to stdout.
//!
//! The parts, in the order an event travels:
//! - capture ([`crate::db::capture`]): SQLite's pre-update hook on the writer, kept exact
//!   under every kind of rollback, gives each write entry's events, the same on every node;
//! - the queue ([`queue`]): every node keeps the events of the entries it applies in a
//!   durable queue of its own, written before the entry commits;
//! - the sender ([`sender`]): the leader sends the queue in index order, with batching,
//!   retries and backoff, and records what was delivered as a high-water mark, a log entry
//!   ([`crate::store::types::Command::CdcHighWatermark`]) every node applies to prune its
//!   queue at the same point.
//!
//! Delivery is at least once, ordered by the entries' log index (the `index` of each payload
//! item, by which a receiver can drop repeats): a new leader resends only what its
//! predecessor delivered after the last recorded mark.
//!
//! Left as rqlite leaves it: a node that catches up from a snapshot has no events for the
//! entries the snapshot covers; if it leads before the mark passes them, those entries are
//! not sent. Loads (`/db/load`, `/boot`) and `VACUUM` entries produce no events.

pub mod config;
pub mod queue;
pub mod sender;

use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use config::CdcConfig;

use crate::db::capture::CaptureOptions;

/// What the state machine needs: how to capture, and where the events go.
#[derive(Debug)]
pub struct CdcApply {
    pub capture: CaptureOptions,
    pub queue: Arc<queue::Queue>,
}

impl CdcApply {
    pub fn new(config: &CdcConfig, queue: Arc<queue::Queue>) -> CdcApply {
        CdcApply {
            capture: CaptureOptions {
                table_filter: config.table_filter.clone(),
                row_ids_only: config.row_ids_only,
                ..CaptureOptions::default()
            },
            queue,
        }
    }
}

/// `/status` `cdc`.
pub fn status(
    config: &CdcConfig,
    queue: &queue::Queue,
    stats: &sender::SenderStats,
) -> serde_json::Value {
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    serde_json::json!({
        "endpoint": config.endpoint.to_string(),
        "service_id": config.service_id,
        "high_watermark": queue.high_watermark(),
        "queue_length": queue.queued().unwrap_or(0),
        "last_queued_index": queue.last_index(),
        "sent_through": n(&stats.sent_through),
        "num_transmits": n(&stats.num_transmits),
        "num_transmit_failures": n(&stats.num_transmit_failures),
        "num_dropped": n(&stats.num_dropped),
        "num_high_watermarks_proposed": n(&stats.num_high_watermarks_proposed),
    })
}
