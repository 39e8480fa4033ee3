//! Cluster membership: forming a cluster at start-up, joining one, and adding or removing
//! nodes on the leader.
//!
//! Start-up (rqlited's rules):
//! - A node with Raft state already on disk is a member: it simply restarts and rejoins.
//! - No `-join`, no state: it bootstraps a single-node cluster of itself.
//! - `-join ADDR,...` without `-bootstrap-expect`: it asks each address (any member; a
//!   follower forwards to its leader) to add it, `-join-attempts` times, `-join-interval`
//!   apart. A repeated join with the same id and addresses is a no-op; the same id with new
//!   addresses updates the node.
//! - `-bootstrap-expect N -join ADDR,...`, or `-disco-mode dns|dns-srv` (the addresses from
//!   DNS, looked up each round: [`super::discovery`]): each round a node first tries to join
//!   through the addresses (a cluster that already runs takes it in), then announces itself to
//!   them; once a node knows N voters it initialises Raft with exactly those N. Every node
//!   computes the same set, and openraft allows several nodes to initialise with the same
//!   membership.
//!
//! Joins and removals run on the leader. Node ids: openraft's numeric id is a hash of
//! rqlite's string id ([`numeric_node_id`]); a join whose hash matches a member with another
//! string id is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context as _};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use super::discovery::etcd::{self, EtcdKv, LeaderRecord};
use super::discovery::Discovery;
use super::protocol::{post_json, JoinRequest};
use crate::store::types::{numeric_node_id, NodeId};
use crate::store::{NodeInfo, Store};

/// Runs a membership change again while another one is still in progress (two nodes joining
/// at once), bounded: about 10 s, then the last error is returned.
macro_rules! retry_while_in_progress {
    ($change:expr) => {{
        let mut tries = 0;
        loop {
            match $change.await {
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    openraft::error::ChangeMembershipError::InProgress(_),
                ))) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => break other,
            }
        }
    }};
}

/// How a node joins.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    pub join: Vec<String>,
    pub attempts: usize,
    pub interval: Duration,
    pub bootstrap_expect: usize,
    pub bootstrap_expect_timeout: Duration,
    /// `-disco-mode`: the addresses to ask come from DNS (`dns`, `dns-srv`) instead of
    /// `join`, or the leader to join from etcd (`etcd-kv`).
    pub discovery: Option<std::sync::Arc<Discovery>>,
}

impl JoinOptions {
    /// Whether this node is to find its cluster through others (`-join` or discovery).
    fn asks_peers(&self) -> bool {
        !self.join.is_empty() || self.discovery.is_some()
    }
}

/// The answer to a join or remove request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum MembershipAnswer {
    Ok,
    /// Nothing changed: the node was already a member with these addresses.
    Unchanged,
    NotLeader {
        leader: Option<NodeInfo>,
    },
    NotFound,
    Refused(String),
}

/// Makes this node part of a cluster, as its flags and its state on disk say.
pub async fn form_or_join(store: &Store, opts: &JoinOptions) -> anyhow::Result<()> {
    // A node that started without state joins even if a leader that still counts it as a
    // member has sent it entries since (it lost its data): the leader sees a known member
    // and changes nothing, as rqlite's ignored join. Without -join, such entries do make it a
    // member: bootstrapping a cluster of its own would split it from theirs.
    let initialized = store.opened_with_state()
        || (!opts.asks_peers()
            && store
                .raft()
                .is_initialized()
                .await
                .context("read Raft state")?);
    if initialized {
        let members = store.members();
        // As rqlite: only a plain `-join` says "join another cluster"; with -bootstrap-expect
        // or discovery a one-node cluster may be what was formed (-bootstrap-expect 1).
        if !opts.join.is_empty()
            && opts.bootstrap_expect == 0
            && members.len() == 1
            && members.contains_key(&store.node_id())
        {
            bail!("this node is already the leader of a single-node cluster; it cannot join another (remove -join, or start from an empty data directory)");
        }
        tracing::info!(
            members = members.len(),
            "restarting as a member of an existing cluster"
        );
        if members.get(&store.node_id()) != Some(store.node()) {
            tracing::info!(
                "this node's addresses changed since it last ran; updating the membership"
            );
            update_own_addresses(store).await;
        }
        return Ok(());
    }
    if !opts.asks_peers() {
        if !store.node().voter {
            bail!("a non-voting node cannot bootstrap a cluster: give -join");
        }
        return bootstrap_alone(store).await;
    }
    if let Some(Discovery::EtcdKv(kv)) = opts.discovery.as_deref() {
        return register_with_etcd(store, kv).await;
    }
    if opts.bootstrap_expect > 0 || opts.discovery.is_some() {
        return bootstrap_with_peers(store, opts).await;
    }
    join_existing(store, opts).await
}

/// After a restart with new addresses: ask the leader to record them, so peers can reach us.
/// The leader cannot reach us at the old address, so we may never hear of it: then ask every
/// other member, and follow their leader hints. Bounded: gives up after about a minute (the
/// next restart tries again).
async fn update_own_addresses(store: &Store) {
    let Ok(client) = short_connect_client() else {
        return;
    };
    let request = JoinRequest {
        node: store.node().clone(),
        extensions: store.database().settings().extensions_digest.clone(),
    };
    for _ in 0..60 {
        if store.is_leader() {
            // A restarted node may believe it still leads (its vote is on disk) while the
            // others moved on: a change it proposes then never commits, so bound the wait.
            let answer = tokio::time::timeout(
                Duration::from_secs(3),
                handle_join(store, store.node().clone(), true),
            )
            .await;
            if matches!(
                answer,
                Ok(MembershipAnswer::Ok | MembershipAnswer::Unchanged)
            ) {
                return;
            }
        } else {
            let mut targets: Vec<String> = match store.leader() {
                Some(l) if l.id != store.node().id => vec![l.raft_addr],
                _ => store
                    .members()
                    .into_values()
                    .filter(|n| n.id != store.node().id)
                    .map(|n| n.raft_addr)
                    .collect(),
            };
            let mut hops = 0;
            while let Some(target) = targets.pop() {
                match post_json::<_, MembershipAnswer>(&client, &target, "/cluster/join", &request)
                    .await
                {
                    Ok(MembershipAnswer::Ok | MembershipAnswer::Unchanged) => {
                        tracing::info!("recorded this node's new addresses through {target}");
                        return;
                    }
                    Ok(MembershipAnswer::NotLeader { leader: Some(l) })
                        if hops < 5 && l.id != store.node().id =>
                    {
                        hops += 1;
                        targets.push(l.raft_addr);
                    }
                    other => tracing::debug!("address update through {target}: {other:?}"),
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::warn!("could not record this node's new addresses in the membership");
}

/// What one pass over a list of join addresses came to.
enum JoinPass {
    Joined,
    /// A member refused this node for good (an id clash, other extensions): stop.
    Refused(String),
    /// Nobody could add it now (no leader yet, no answer): the last reason.
    NotNow(String),
}

/// Asks each address in turn to add this node, following a few leader hints per address.
async fn join_pass(store: &Store, client: &reqwest::Client, addresses: &[String]) -> JoinPass {
    let request = JoinRequest {
        node: store.node().clone(),
        extensions: store.database().settings().extensions_digest.clone(),
    };
    let mut last_error = String::from("no join address answered");
    for addr in addresses {
        if addr == &store.node().raft_addr {
            continue;
        }
        let mut target = addr.clone();
        for _ in 0..3 {
            match post_json::<_, MembershipAnswer>(client, &target, "/cluster/join", &request).await
            {
                Ok(MembershipAnswer::Ok | MembershipAnswer::Unchanged) => {
                    tracing::info!("joined the cluster through {target}");
                    return JoinPass::Joined;
                }
                Ok(MembershipAnswer::NotLeader { leader: Some(l) }) => target = l.raft_addr,
                Ok(MembershipAnswer::NotLeader { leader: None }) => {
                    last_error = format!("{target}: the cluster has no leader");
                    break;
                }
                Ok(MembershipAnswer::Refused(why)) => {
                    return JoinPass::Refused(format!("join refused by {target}: {why}"))
                }
                Ok(MembershipAnswer::NotFound) => {
                    last_error = format!("{target}: unexpected answer");
                    break;
                }
                Err(e) => {
                    last_error = format!("{target}: {e:#}");
                    break;
                }
            }
        }
    }
    JoinPass::NotNow(last_error)
}

async fn join_existing(store: &Store, opts: &JoinOptions) -> anyhow::Result<()> {
    let client = crate::tls::node()
        .client_builder()
        .connect_timeout(Duration::from_secs(2))
        .build()?;
    if opts.join.contains(&store.node().raft_addr) {
        bail!(
            "-join {} is this node's own Raft address",
            store.node().raft_addr
        );
    }
    let mut last_error = String::new();
    for attempt in 0..opts.attempts.max(1) {
        match join_pass(store, &client, &opts.join).await {
            JoinPass::Joined => return Ok(()),
            JoinPass::Refused(why) => bail!(why),
            JoinPass::NotNow(why) => last_error = why,
        }
        tracing::warn!(attempt = attempt + 1, "join failed: {last_error}");
        if store.raft().is_initialized().await.unwrap_or(false) {
            // Another path (a leader that added us) already made us a member.
            return Ok(());
        }
        tokio::time::sleep(opts.interval).await;
    }
    bail!(
        "failed to join the cluster after {} attempts: {last_error}",
        opts.attempts.max(1)
    )
}

/// `-bootstrap-expect` with `-join` addresses, or `-disco-mode dns|dns-srv` (addresses looked
/// up again each round). Each round first asks the addresses to add this node, so a node
/// started beside a cluster that already runs joins it rather than forming another (as
/// rqlite's bootstrapper); a voter that could not join announces itself, and the first node
/// to know `-bootstrap-expect` voters forms the cluster with them. A non-voter only joins.
async fn bootstrap_with_peers(store: &Store, opts: &JoinOptions) -> anyhow::Result<()> {
    let client = crate::tls::node()
        .client_builder()
        .connect_timeout(Duration::from_secs(1))
        .build()?;
    store
        .discovered()
        .lock()
        .insert(store.node().raft_addr.clone(), store.node().clone());
    // A DNS lookup per round: once a second is plenty for records that change in seconds.
    let round = if opts.discovery.is_some() {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(200)
    };
    let deadline = tokio::time::Instant::now() + opts.bootstrap_expect_timeout;
    loop {
        if store.raft().is_initialized().await.unwrap_or(false) {
            tracing::info!("the cluster was formed by a peer");
            return Ok(());
        }
        let targets = match &opts.discovery {
            None => opts.join.clone(),
            Some(d) => match &**d {
                Discovery::Lookup(dns) => dns.lookup().await.unwrap_or_else(|e| {
                    tracing::warn!("discovery lookup failed: {e:#}");
                    Vec::new()
                }),
                Discovery::EtcdKv(_) => bail!("etcd-kv discovery has no addresses to look up"),
            },
        };
        // One round, bounded by the deadline (a peer that accepts a connection and never
        // answers must not hold the node past -bootstrap-expect-timeout).
        let round_result = tokio::time::timeout_at(deadline, async {
            match join_pass(store, &client, &targets).await {
                JoinPass::Joined => return Some(Ok(())),
                // Several nodes joining at once can be refused for a while (a membership
                // change in progress): asked again next round, as rqlite's bootstrapper does.
                JoinPass::Refused(why) | JoinPass::NotNow(why) => {
                    tracing::debug!("join through discovered addresses: {why}")
                }
            }
            if !(store.node().voter && opts.bootstrap_expect > 0) {
                return None;
            }
            match announce(store, &client, &targets, opts.bootstrap_expect).await {
                Announced::Form(members) => {
                    if store.raft().is_initialized().await.unwrap_or(false) {
                        tracing::info!("the cluster was formed by a peer");
                        return Some(Ok(()));
                    }
                    match store.raft().initialize(members.clone()).await {
                        Ok(()) => {
                            tracing::info!(voters = members.len(), "bootstrapped the cluster")
                        }
                        Err(e) => tracing::info!("cluster already initialised: {e}"),
                    }
                    Some(Ok(()))
                }
                Announced::ClusterExists => {
                    tracing::info!(
                        "a discovered node is already in a cluster: joining it, not forming one"
                    );
                    None
                }
                Announced::Waiting => None,
            }
        })
        .await;
        if let Ok(Some(done)) = round_result {
            return done;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "bootstrap-expect: found {} of {} nodes before the timeout",
                store.discovered().lock().len(),
                opts.bootstrap_expect
            );
        }
        tokio::time::sleep(round).await;
    }
}

/// `-disco-mode etcd-kv` for a node without state, as rqlite's disco service: join the
/// leader the key names; with no key, a voter that creates it forms the cluster alone, and
/// everyone else asks again after a while. Runs until it succeeds (a stop signal ends it).
async fn register_with_etcd(store: &Store, kv: &EtcdKv) -> anyhow::Result<()> {
    let client = crate::tls::node()
        .client_builder()
        .connect_timeout(Duration::from_secs(2))
        .build()?;
    let me = LeaderRecord::of(store.node());
    loop {
        // A leader that reached this node while it waited made it a member.
        if store.raft().is_initialized().await.unwrap_or(false) {
            tracing::info!("the cluster's leader added this node");
            return Ok(());
        }
        match kv.get_leader().await {
            Ok(Some(leader)) if leader.addr != me.addr => {
                tracing::info!(
                    "discovery: etcd names {} as the leader; joining",
                    leader.addr
                );
                match join_pass(store, &client, std::slice::from_ref(&leader.addr)).await {
                    JoinPass::Joined => return Ok(()),
                    // A refusal may pass (a membership change in progress): ask again, as
                    // rqlite does.
                    JoinPass::Refused(why) | JoinPass::NotNow(why) => {
                        tracing::warn!("join through etcd's leader failed: {why}")
                    }
                }
                tokio::time::sleep(jitter(Duration::from_secs(1))).await;
                continue;
            }
            Ok(Some(_)) => {
                // The key names this node, which has no state (it lost its data, or the
                // cluster under this key is gone). Forming a cluster now could split a live
                // one whose leader has not recorded itself yet; as rqlite, wait.
                tracing::warn!(
                    "discovery: etcd's {} names this node, which has no state, as the leader; \
                     waiting for the cluster's leader to record itself (if that cluster is gone, \
                     delete the key)",
                    kv.leader_key()
                );
            }
            Ok(None) if store.node().voter => match kv.initialize_leader(&me).await {
                Ok(true) => {
                    tracing::info!("discovery: registered as the leader in etcd");
                    return bootstrap_alone(store).await;
                }
                // Another node registered first: read its record next round.
                Ok(false) => {}
                Err(e) => tracing::warn!("discovery: could not register in etcd: {e:#}"),
            },
            Ok(None) => tracing::info!("discovery: no leader in etcd yet"),
            Err(e) => tracing::warn!("discovery: could not read the leader from etcd: {e:#}"),
        }
        tokio::time::sleep(jitter(etcd::REGISTER_INTERVAL)).await;
    }
}

/// `base` to twice `base`, so nodes started together do not ask in step.
fn jitter(base: Duration) -> Duration {
    use std::hash::BuildHasher as _;
    // A fresh RandomState is randomly keyed: enough to spread nodes apart.
    let r = std::collections::hash_map::RandomState::new().hash_one(0u8);
    base + base.mul_f64((r % 1000) as f64 / 1000.0)
}

async fn bootstrap_alone(store: &Store) -> anyhow::Result<()> {
    let mut members = BTreeMap::new();
    members.insert(store.node_id(), store.node().clone());
    store
        .raft()
        .initialize(members)
        .await
        .context("bootstrap a single-node cluster")?;
    tracing::info!("bootstrapped a single-node cluster");
    Ok(())
}

/// What announcing this node to its peers came to.
enum Announced {
    /// `expect` voters are known: the cluster to form.
    Form(BTreeMap<NodeId, NodeInfo>),
    /// A peer is already in a cluster: join it rather than form another.
    ClusterExists,
    /// Not enough voters known yet.
    Waiting,
}

/// Announces this node to `targets` and gathers the voters they know.
async fn announce(
    store: &Store,
    client: &reqwest::Client,
    targets: &[String],
    expect: usize,
) -> Announced {
    for addr in targets {
        if addr == &store.node().raft_addr {
            continue;
        }
        match post_json::<_, Vec<NodeInfo>>(client, addr, "/cluster/notify", store.node()).await {
            Ok(known) if known.is_empty() => return Announced::ClusterExists,
            Ok(known) => {
                let mut d = store.discovered().lock();
                for n in known {
                    d.entry(n.raft_addr.clone()).or_insert(n);
                }
            }
            Err(e) => tracing::debug!("announce to {addr}: {e:#}"),
        }
    }
    let found: Vec<NodeInfo> = store
        .discovered()
        .lock()
        .values()
        .filter(|n| n.voter)
        .cloned()
        .collect();
    if found.len() < expect {
        return Announced::Waiting;
    }
    Announced::Form(
        found
            .into_iter()
            .map(|n| (numeric_node_id(&n.id), n))
            .collect(),
    )
}

/// Records a peer's announcement (bootstrap-expect) and returns the nodes known here.
///
/// A node that is already in a cluster (it has a membership) answers an empty list: the
/// announcer must join that cluster, never form one with nodes that belong to it. (A node not
/// in one always lists at least itself, so an empty answer cannot mean anything else; rqlite's
/// nodes likewise ignore announcements once they are bootstrapped.)
pub fn handle_notify(store: &Store, node: NodeInfo) -> Vec<NodeInfo> {
    if !store.members().is_empty() {
        return Vec::new();
    }
    let mut d = store.discovered().lock();
    d.insert(node.raft_addr.clone(), node);
    d.insert(store.node().raft_addr.clone(), store.node().clone());
    d.values().cloned().collect()
}

/// Adds (or updates) a node, on the leader.
/// `may_vote`: the caller holds `join` (not only the non-voter perms). A caller without it can
/// add a non-voter, but neither change an existing voter (move it to another address) nor
/// turn a member into a voter.
pub async fn handle_join(store: &Store, node: NodeInfo, may_vote: bool) -> MembershipAnswer {
    store.counters.join_requests.fetch_add(1, Ordering::Relaxed);
    if !store.is_leader() {
        return MembershipAnswer::NotLeader {
            leader: store.leader(),
        };
    }
    if node.id.is_empty() || node.raft_addr.is_empty() {
        return MembershipAnswer::Refused("a joining node needs an id and a Raft address".into());
    }
    let id = numeric_node_id(&node.id);
    let members = store.members();
    if let Some((other_id, other)) = members
        .iter()
        .find(|(nid, n)| n.raft_addr == node.raft_addr && **nid != id)
    {
        return MembershipAnswer::Refused(format!(
            "Raft address {} is already used by node {} ({other_id})",
            node.raft_addr, other.id
        ));
    }
    let voters: BTreeSet<NodeId> = store.voter_ids().into_iter().collect();
    if let Some(existing) = members.get(&id) {
        if existing.id != node.id {
            return MembershipAnswer::Refused(format!(
                "node id {:?} collides with member {:?} (same numeric id {id}); choose another -node-id",
                node.id, existing.id
            ));
        }
        let is_voter = voters.contains(&id);
        if existing == &node && is_voter == node.voter {
            store.counters.ignored_joins.fetch_add(1, Ordering::Relaxed);
            return MembershipAnswer::Unchanged;
        }
        if is_voter && !may_vote {
            return MembershipAnswer::Refused(format!(
                "node {:?} is a voter: changing it needs the join perm",
                node.id
            ));
        }
        if node.voter && !is_voter {
            return MembershipAnswer::Refused(format!(
                "node {:?} is a non-voter: a join does not make it a voter",
                node.id
            ));
        }
        // Same id, new addresses: the node moved (a restart elsewhere) — unless the member is
        // still running at its old address, in which case this is a second node claiming
        // its id.
        if existing.raft_addr != node.raft_addr
            && is_running_as(&existing.raft_addr, &existing.id).await
        {
            return MembershipAnswer::Refused(format!(
                "node id {:?} is already in use by a running node at {}",
                node.id, existing.raft_addr
            ));
        }
        store.counters.updated_joins.fetch_add(1, Ordering::Relaxed);
        let mut update = BTreeMap::new();
        update.insert(id, node.clone());
        if let Err(e) = retry_while_in_progress!(store
            .raft()
            .change_membership(ChangeMembers::SetNodes(update.clone()), true))
        {
            return change_error(store, e);
        }
        return MembershipAnswer::Ok;
    }
    if let Err(e) = retry_while_in_progress!(store.raft().add_learner(id, node.clone(), true)) {
        return change_error(store, e);
    }
    if node.voter {
        let mut ids = BTreeSet::new();
        ids.insert(id);
        if let Err(e) = retry_while_in_progress!(store
            .raft()
            .change_membership(ChangeMembers::AddVoterIds(ids.clone()), false))
        {
            return change_error(store, e);
        }
    }
    tracing::info!(node = %node, "node joined");
    MembershipAnswer::Ok
}

/// `-raft-cluster-remove-shutdown`: on a graceful stop, asks the leader to remove this node
/// from the cluster (following leader hints, bounded). The last voter of a cluster is never
/// removed: there would be no cluster left to remove it from.
pub async fn leave_cluster(store: &Store) {
    let me = store.node().id.clone();
    if store.members().len() <= 1 {
        return;
    }
    // The node-to-node client: TLS to the other nodes as configured (`post_json` adds the
    // -join-as credentials).
    let Ok(client) = short_connect_client() else {
        return;
    };
    let request = super::protocol::RemoveRequest { id: me.clone() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let answer = if store.is_leader() {
            handle_remove(store, &me).await
        } else {
            match store.leader() {
                Some(l) => post_json::<_, MembershipAnswer>(
                    &client,
                    &l.raft_addr,
                    "/cluster/remove",
                    &request,
                )
                .await
                .unwrap_or(MembershipAnswer::NotLeader { leader: None }),
                None => MembershipAnswer::NotLeader { leader: None },
            }
        };
        match answer {
            MembershipAnswer::Ok | MembershipAnswer::Unchanged | MembershipAnswer::NotFound => {
                tracing::info!("removed this node from the cluster before shutting down");
                return;
            }
            MembershipAnswer::Refused(why) => {
                tracing::warn!("could not remove this node from the cluster: {why}");
                return;
            }
            MembershipAnswer::NotLeader { .. } => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
        }
    }
    tracing::warn!("could not remove this node from the cluster: no leader answered");
}

/// True when a node answers at `raft_addr` with the id `id`.
async fn is_running_as(raft_addr: &str, id: &str) -> bool {
    let Ok(client) = crate::tls::node()
        .client_builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    let Ok(resp) = client
        .get(crate::tls::node().url(raft_addr, "/cluster/node"))
        .send()
        .await
    else {
        return false;
    };
    let Ok(bytes) = resp.bytes().await else {
        return false;
    };
    serde_json::from_slice::<crate::store::NodeReport>(&bytes).is_ok_and(|r| r.node.id == id)
}

/// Removes a node by rqlite id, on the leader.
pub async fn handle_remove(store: &Store, string_id: &str) -> MembershipAnswer {
    if !store.is_leader() {
        return MembershipAnswer::NotLeader {
            leader: store.leader(),
        };
    }
    let Some((id, _)) = store.members().into_iter().find(|(_, n)| n.id == string_id) else {
        return MembershipAnswer::NotFound;
    };
    let mut ids = BTreeSet::new();
    ids.insert(id);
    let change = if store.voter_ids().contains(&id) {
        ChangeMembers::RemoveVoters(ids)
    } else {
        ChangeMembers::RemoveNodes(ids)
    };
    let removed = store.members().get(&id).cloned();
    match retry_while_in_progress!(store.raft().change_membership(change.clone(), false)) {
        Ok(done) => {
            tracing::info!(node = string_id, "node removed");
            if let Some(node) = removed {
                tokio::spawn(tell_removed(
                    node,
                    store.node().id.clone(),
                    done.log_id.index,
                ));
            }
            MembershipAnswer::Ok
        }
        Err(e) => change_error(store, e),
    }
}

fn change_error(
    store: &Store,
    e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>,
) -> MembershipAnswer {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => MembershipAnswer::NotLeader {
            leader: f.leader_node,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            MembershipAnswer::Refused(c.to_string())
        }
        other => {
            tracing::warn!("membership change failed: {other}");
            MembershipAnswer::NotLeader {
                leader: store.leader().filter(|l| l.id != store.node().id),
            }
        }
    }
}

/// Tells a removed node so (best effort, a few seconds at most): the log cannot, since the
/// leader stops replicating to it as it appends the membership without it. A node started
/// with `-raft-remove-shutdown` then stops.
async fn tell_removed(node: NodeInfo, leader: String, membership_index: u64) {
    let Ok(client) = short_connect_client() else {
        return;
    };
    let notice = super::protocol::RemovedNotice {
        id: node.id.clone(),
        from: leader,
        membership_index,
    };
    let sent = tokio::time::timeout(
        Duration::from_secs(5),
        post_json::<_, bool>(&client, &node.raft_addr, "/cluster/removed", &notice),
    )
    .await;
    if !matches!(sent, Ok(Ok(true))) {
        tracing::debug!(node = %node.id, "the removed node was not told");
    }
}

/// The node-to-node client for membership calls: TLS to the other nodes as configured, and a
/// short connect timeout (a member that does not answer is tried again later).
fn short_connect_client() -> reqwest::Result<reqwest::Client> {
    crate::tls::node()
        .client_builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
}
