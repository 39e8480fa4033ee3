//! Dead-node reaping, as rqlited's `-raft-reap-node-timeout` and
//! `-raft-reap-read-only-node-timeout`: the leader removes from the cluster a member it has
//! not heard from for longer than the timeout of the member's kind (a voter, or a non-voter).
//!
//! Heard from: the last append-entries call to the member that succeeded (heartbeats
//! included), as the Raft network records it ([`PeerContacts`]). A member this leader has
//! never reached counts from when this node began leading or when the member appeared in the
//! configuration, whichever is later: a new leader does not reap the whole cluster at once,
//! and a node that has just joined gets its full timeout. The removal is the one `/remove`
//! makes ([`super::membership::handle_remove`]); each one is counted in `/debug/vars`
//! (`store.nodes_reaped_ok`, `store.nodes_reaped_failed`, rqlite's names).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::types::NodeId;
use crate::store::Store;

/// How recently a voter must have answered to count towards the quorum a removal needs.
const RECENT_CONTACT: Duration = Duration::from_secs(5);

/// The longest a removal may take before it counts as failed.
const REMOVAL_LIMIT: Duration = Duration::from_secs(10);

/// The last time each peer answered an append-entries call (shared by every peer client).
#[derive(Clone, Default)]
pub struct PeerContacts(Arc<parking_lot::Mutex<HashMap<NodeId, Instant>>>);

impl PeerContacts {
    /// `peer` answered now.
    pub fn heard_from(&self, peer: NodeId) {
        self.0.lock().insert(peer, Instant::now());
    }

    fn last(&self, peer: NodeId) -> Option<Instant> {
        self.0.lock().get(&peer).copied()
    }
}

/// The timeouts (`None`: that kind is never reaped).
#[derive(Debug, Clone, Copy)]
pub struct ReapTimeouts {
    pub voter: Option<Duration>,
    pub non_voter: Option<Duration>,
}

/// Runs the leader's reaping for as long as the store lives; returns at once when neither
/// kind is reaped.
pub async fn run(store: Arc<Store>, contacts: PeerContacts, timeouts: ReapTimeouts) {
    let Some(shortest) = [timeouts.voter, timeouts.non_voter]
        .into_iter()
        .flatten()
        .min()
    else {
        return;
    };
    let mut tick = tokio::time::interval(
        (shortest / 4).clamp(Duration::from_millis(100), Duration::from_secs(1)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading_since: Option<Instant> = None;
    // When each member was first seen in the configuration (while this node leads).
    let mut seen: HashMap<NodeId, Instant> = HashMap::new();
    loop {
        tick.tick().await;
        if store.is_stopping() {
            return;
        }
        if !store.is_leader() {
            leading_since = None;
            seen.clear();
            continue;
        }
        let now = Instant::now();
        let since = *leading_since.get_or_insert(now);
        let members = store.members();
        let voters = store.voter_ids();
        let me = members
            .iter()
            .find(|(_, n)| n.id == store.node().id)
            .map(|(id, _)| *id);
        seen.retain(|id, _| members.contains_key(id));
        for (id, node) in &members {
            if node.id == store.node().id {
                continue;
            }
            let first_seen = *seen.entry(*id).or_insert(now);
            let timeout = if voters.contains(id) {
                timeouts.voter
            } else {
                timeouts.non_voter
            };
            let Some(timeout) = timeout else { continue };
            let counted_from = contacts
                .last(*id)
                .unwrap_or(since)
                .max(since)
                .max(first_seen);
            if now.duration_since(counted_from) <= timeout {
                continue;
            }
            let kind = if voters.contains(id) {
                "voting node"
            } else {
                "non-voting node"
            };
            // openraft's leader keeps leading without a quorum: a removal it cannot commit
            // would wait, and commit later, when the silent node is back, and remove a node
            // that answers. So a removal needs a majority of the voters that stay, this one
            // included, heard from just now.
            let staying: Vec<NodeId> = voters.iter().copied().filter(|v| v != id).collect();
            let heard = staying
                .iter()
                .filter(|v| {
                    Some(**v) == me
                        || contacts
                            .last(**v)
                            .is_some_and(|t| now.duration_since(t) <= RECENT_CONTACT)
                })
                .count();
            if heard * 2 <= staying.len() {
                tracing::debug!(node = %node.id, "not reaped: no quorum of the voters that stay answers");
                continue;
            }
            let removal = tokio::time::timeout(
                REMOVAL_LIMIT,
                super::membership::handle_remove(&store, &node.id),
            )
            .await
            .unwrap_or(super::membership::MembershipAnswer::Refused(
                "the removal did not commit in time".into(),
            ));
            match removal {
                super::membership::MembershipAnswer::Ok => {
                    store
                        .counters
                        .nodes_reaped_ok
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        node = %node.id,
                        unreachable_secs = now.duration_since(counted_from).as_secs(),
                        "reaped {kind}: not heard from for longer than its reap timeout"
                    );
                    seen.remove(id);
                }
                other => {
                    store
                        .counters
                        .nodes_reaped_failed
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %node.id, "failed to reap {kind}: {other:?}");
                }
            }
        }
    }
}
