//! Leader stepdown (`POST /leader`, and on shutdown with `-raft-shutdown-stepdown`): hand the
//! leadership to another voter, best effort.
//!
//! openraft 0.9 has no leadership transfer, and its voters refuse a vote while their leader's
//! lease runs (openraft's "leader stickiness": a vote request is refused until
//! `election_timeout_max` has passed since the voter last heard from its leader). So a
//! stepdown is done in three moves, all with openraft's public runtime switches:
//!
//! 1. The leader stops sending heartbeats and stops itself from campaigning
//!    (`runtime_config().heartbeat(false)`, `.elect(false)`).
//! 2. It waits until every voter's lease has run out (`election_timeout_max` plus a margin),
//!    then asks the target, over the Raft port (`POST /cluster/elect`), to start an election
//!    at once. The target is the given node, or else the voter whose replicated log is the most
//!    complete. The other followers would only start their own elections an election timeout
//!    later, so the target, whose log is complete, is the one that wins, short of message
//!    loss.
//! 3. When this node sees another leader (bounded wait), or the wait runs out, heartbeats and
//!    elections are switched back on.
//!
//! What is not guaranteed: while writes keep arriving, the old leader keeps replicating them,
//! which renews the followers' leases, so the election can fail and this node stays the
//! leader (the request then answers 503). If the target is slow or unreachable, another voter
//! may win instead. Either way nothing is lost: only the normal Raft election runs.

use std::collections::BTreeSet;
use std::time::Duration;

use super::protocol::ElectRequest;

use crate::store::types::NodeId;
use crate::store::{NodeInfo, Store};

/// Why a stepdown did not happen. Each maps to one HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum StepdownError {
    /// Not the leader: the HTTP layer forwards the request to the leader.
    #[error("not leader")]
    NotLeader { leader: Option<NodeInfo> },
    /// A cluster of one voter has no one to hand leadership to.
    #[error("cannot step down: no other voter in the cluster")]
    NoOtherVoter,
    /// The requested target is not another voting member.
    #[error("cannot step down to {0:?}: not another voting member of the cluster")]
    BadTarget(String),
    /// The election did not produce another leader in time.
    #[error("stepdown failed: {0}")]
    Failed(String),
}

/// Only one stepdown at a time in a process (there is one store per process).
static STEPDOWN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Hands leadership to `target` (an rqlite node id) or to the most up-to-date other voter,
/// and returns the new leader once this node has seen it.
pub async fn step_down(store: &Store, target: Option<&str>) -> Result<NodeInfo, StepdownError> {
    let _one_at_a_time = STEPDOWN.lock().await;
    if !store.is_leader() {
        return Err(StepdownError::NotLeader {
            leader: store.leader(),
        });
    }
    let me = store.node_id();
    let members = store.members();
    let voters: BTreeSet<NodeId> = store
        .voter_ids()
        .into_iter()
        .filter(|id| *id != me)
        .collect();
    if voters.is_empty() {
        return Err(StepdownError::NoOtherVoter);
    }
    let target_id = match target {
        Some(name) => members
            .iter()
            .find(|(id, n)| n.id == name && voters.contains(id))
            .map(|(id, _)| *id)
            .ok_or_else(|| StepdownError::BadTarget(name.to_string()))?,
        None => most_up_to_date(store, &voters),
    };
    let Some(target_node) = members.get(&target_id).cloned() else {
        return Err(StepdownError::BadTarget(format!("{target_id}")));
    };
    let raft = store.raft();
    let lease = Duration::from_millis(raft.config().election_timeout_max);
    let margin = Duration::from_millis(raft.config().election_timeout_min / 5).min(lease / 5);
    tracing::info!(target = %target_node, "stepping down: pausing heartbeats until the followers' leases run out");
    raft.runtime_config().heartbeat(false);
    raft.runtime_config().elect(false);
    let outcome = async {
        tokio::time::sleep(lease + margin).await;
        if let Err(e) = ask_to_campaign(store, &target_node).await {
            tracing::warn!(
                "stepdown: {} did not start an election: {e:#}",
                target_node.id
            );
        }
        wait_for_other_leader(store, lease * 4).await
    }
    .await;
    raft.runtime_config().heartbeat(true);
    raft.runtime_config().elect(true);
    match outcome {
        Some(leader) => {
            tracing::info!(new_leader = %leader, "stepped down");
            Ok(leader)
        }
        // The paused heartbeats let the lease run out: Raft's own view says who leads.
        None if store.raft_is_leader() => Err(StepdownError::Failed(
            "no other node took over (writes during the stepdown keep the followers' leases alive); this node is still the leader".into(),
        )),
        None => Err(StepdownError::Failed(
            "this node is no longer the leader, but no new leader is known yet".into(),
        )),
    }
}

/// The voter whose replicated log reaches furthest, by the leader's replication metrics.
fn most_up_to_date(store: &Store, voters: &BTreeSet<NodeId>) -> NodeId {
    let metrics = store.raft().metrics().borrow().clone();
    let matched = |id: &NodeId| {
        metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(id).cloned().flatten())
            .map_or(0, |l| l.index)
    };
    let first = *voters.iter().next().unwrap_or(&store.node_id());
    voters
        .iter()
        .copied()
        .max_by_key(|id| (matched(id), std::cmp::Reverse(*id)))
        .unwrap_or(first)
}

async fn ask_to_campaign(store: &Store, target: &NodeInfo) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()?;
    let started: bool = super::protocol::post_json(
        &client,
        &target.raft_addr,
        "/cluster/elect",
        &ElectRequest {
            from: store.node().id.clone(),
        },
    )
    .await?;
    if !started {
        anyhow::bail!("it declined (it is not a voter, or it already leads)");
    }
    Ok(())
}

/// Waits (bounded) until this node knows a leader other than itself.
async fn wait_for_other_leader(store: &Store, limit: Duration) -> Option<NodeInfo> {
    let me = store.node_id();
    let mut metrics = store.raft().metrics();
    tokio::time::timeout(limit, async {
        loop {
            let leader = metrics.borrow().current_leader;
            if leader.is_some_and(|l| l != me) {
                if let Some(l) = store.leader() {
                    return Some(l);
                }
            }
            if metrics.changed().await.is_err() {
                return None;
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// On the target, `POST /cluster/elect`: start an election now. Declined by a non-voter and
/// by the leader itself.
pub async fn handle_elect(store: &Store, from: &str) -> bool {
    if store.raft_is_leader() || !store.voter_ids().contains(&store.node_id()) {
        return false;
    }
    tracing::info!(
        from,
        "starting an election at the leader's request (stepdown)"
    );
    store.raft().trigger().elect().await.is_ok()
}
