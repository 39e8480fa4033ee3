//! `DATA_DIR/raft/peers.json` recovery: rewrite the membership of a cluster that lost its
//! quorum for good, before Raft starts.
//!
//! The file is rqlite's (and hashicorp/raft's) format: a JSON array of
//! `{"id": "<node id>", "address": "<raft host:port>", "non_voter": false}`. When it is present
//! at start-up, the node appends **one membership entry** to its own log, at the index after
//! its last entry, listing exactly the nodes in the file; then it renames the file to
//! `peers.info` (as rqlited does), so the recovery happens once.
//!
//! Why this is sound with openraft 0.9, which has no "rewrite membership" call: openraft takes
//! the effective membership from the *last* membership entry in the log, committed or not (the
//! state machine's applied membership only covers what is applied). The entry is written with
//! the leader id of the last entry already in the log and the next index, so the log stays
//! monotonic, exactly as if that leader had appended one more entry. A survivor listed alone
//! is then the only voter of its effective membership: openraft elects it at once, and its
//! first act as leader commits the new membership together with every entry before it — the
//! entries the dead majority may never have acknowledged. That is the operator's explicit
//! choice (the same as hashicorp/raft's `RecoverCluster`, which writes the configuration at
//! the last index and term): entries that only the lost nodes had are gone.
//!
//! With several survivors, each gets the same file; each appends the same membership at its own
//! next index. The election picks the one with the most complete log, and its entry replaces the
//! others' (they carry the same membership, so every node agrees at every point).
//!
//! Refused, with a clear error and nothing changed: a malformed file, an empty list, a list
//! without a voter, duplicate ids or addresses, a list that does not name this node, and a node
//! with no Raft state (recovery rewrites a cluster; a new node is bootstrapped or joined).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use openraft::{EntryPayload, Membership};
use serde::Deserialize;

use super::NodeInfo;
use crate::raft::log::openraft::{
    decode_entry_bytes, encode_entry, RaftLogStore, ENTRY_KIND_BINCODE,
};
use crate::raft::log::record::RecordRef;
use crate::store::types::{numeric_node_id, Entry, LogId, NodeId, StoredMembership, TypeConfig};

/// The file an operator writes to rewrite the membership.
pub const PEERS_FILE: &str = "peers.json";
/// What the file is renamed to once it has been applied (rqlited's name).
pub const PEERS_INFO_FILE: &str = "peers.info";

/// One line of `peers.json`.
#[derive(Debug, Clone, Deserialize)]
struct Peer {
    id: String,
    address: String,
    #[serde(default)]
    non_voter: bool,
}

/// Where `peers.json` is looked for: `DATA_DIR/raft/peers.json`.
pub fn peers_path(data_dir: &Path) -> PathBuf {
    data_dir.join("raft").join(PEERS_FILE)
}

/// Applies `DATA_DIR/raft/peers.json` if it exists; returns whether it did.
///
/// `applied` is the membership the state machine last applied (the fallback source of the
/// other nodes' HTTP addresses), `me` this node's identity as started now.
pub fn recover_if_requested(
    data_dir: &Path,
    log: &RaftLogStore<TypeConfig>,
    applied: &StoredMembership,
    me: &NodeInfo,
) -> anyhow::Result<bool> {
    let path = peers_path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    tracing::warn!("attempting node recovery using {}", path.display());
    let peers: Vec<Peer> = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{}: not a JSON array of {{\"id\",\"address\",\"non_voter\"}}",
            path.display()
        )
    })?;
    let (last, known) = last_log_id_and_membership(log, applied)?;
    let Some(last) = last else {
        bail!(
            "{}: this node has no Raft state to recover; remove the file and bootstrap or join instead",
            path.display()
        );
    };
    let membership = membership_from_peers(&peers, &known, me)
        .with_context(|| format!("{}: invalid peers list", path.display()))?;
    let entry = Entry {
        log_id: LogId::new(last.leader_id, last.index + 1),
        payload: EntryPayload::Membership(membership),
    };
    let data = encode_entry(&entry).context("encode the recovery membership entry")?;
    log.engine()
        .append(&[RecordRef {
            index: entry.log_id.index,
            term: entry.log_id.leader_id.term,
            kind: ENTRY_KIND_BINCODE,
            data: &data,
        }])
        .context("append the recovery membership entry to the Raft log")?;
    let info = data_dir.join("raft").join(PEERS_INFO_FILE);
    std::fs::rename(&path, &info).with_context(|| {
        format!(
            "move {} to {} after recovery (the membership entry is written; remove the file before the next start)",
            path.display(),
            info.display()
        )
    })?;
    tracing::warn!(
        index = entry.log_id.index,
        nodes = peers.len(),
        "node recovered successfully using {}",
        path.display()
    );
    Ok(true)
}

/// The membership the peers list describes. Other nodes keep the HTTP address the cluster
/// last knew for them (they correct it themselves when they rejoin); this node uses the
/// addresses it was started with, whatever the file says.
fn membership_from_peers(
    peers: &[Peer],
    known: &BTreeMap<String, NodeInfo>,
    me: &NodeInfo,
) -> anyhow::Result<Membership<NodeId, NodeInfo>> {
    if peers.is_empty() {
        bail!("the list is empty");
    }
    let mut nodes = BTreeMap::new();
    let mut voters = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    for p in peers {
        if p.id.is_empty() || p.address.is_empty() {
            bail!("every peer needs an \"id\" and an \"address\"");
        }
        if !addresses.insert(p.address.clone()) {
            bail!("address {} is listed twice", p.address);
        }
        let id = numeric_node_id(&p.id);
        let node = if p.id == me.id {
            NodeInfo {
                voter: !p.non_voter,
                ..me.clone()
            }
        } else {
            let mut n = known.get(&p.id).cloned().unwrap_or_default();
            n.id = p.id.clone();
            n.raft_addr = p.address.clone();
            n.voter = !p.non_voter;
            n
        };
        if nodes.insert(id, node).is_some() {
            bail!("node id {:?} is listed twice", p.id);
        }
        if !p.non_voter {
            voters.insert(id);
        }
    }
    if !peers.iter().any(|p| p.id == me.id) {
        bail!("this node ({:?}) is not in the list", me.id);
    }
    if voters.is_empty() {
        bail!("the list has no voter");
    }
    Ok(Membership::new(vec![voters], nodes))
}

/// The last log id (or the purge point of an emptied log) and every node the newest
/// membership in the log (or, failing that, the applied one) knows, by rqlite id.
fn last_log_id_and_membership(
    log: &RaftLogStore<TypeConfig>,
    applied: &StoredMembership,
) -> anyhow::Result<(Option<LogId>, BTreeMap<String, NodeInfo>)> {
    let engine = log.engine();
    let bounds = engine.bounds();
    let mut last: Option<LogId> = match &bounds.purged {
        Some(p) => Some(bincode::deserialize(&p.id).context("decode the purged log id")?),
        None => None,
    };
    let mut newest: Option<Membership<NodeId, NodeInfo>> = None;
    if let (Some(first), Some(last_index)) = (bounds.first_index, bounds.last_index) {
        // In bounded chunks: the live log may be large, its entries never all in memory.
        const CHUNK: u64 = 256;
        let mut from = first;
        while from <= last_index {
            let to = (from + CHUNK).min(last_index + 1);
            for record in engine.read(from..to).context("read the Raft log")? {
                let entry: Entry = decode_entry_bytes(&record.data)
                    .with_context(|| format!("decode log entry {}", record.index))?;
                if let EntryPayload::Membership(m) = &entry.payload {
                    newest = Some(m.clone());
                }
                last = Some(entry.log_id);
            }
            from = to;
        }
    }
    let membership = newest.unwrap_or_else(|| applied.membership().clone());
    let known = membership
        .nodes()
        .map(|(_, n)| (n.id.clone(), n.clone()))
        .collect();
    Ok((last, known))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> NodeInfo {
        NodeInfo {
            id: "a".into(),
            api_addr: "127.0.0.1:4001".into(),
            raft_addr: "127.0.0.1:4102".into(),
            https: false,
            voter: true,
        }
    }

    fn parse(json: &str) -> anyhow::Result<Membership<NodeId, NodeInfo>> {
        let peers: Vec<Peer> = serde_json::from_str(json)?;
        let mut known = BTreeMap::new();
        known.insert(
            "b".to_string(),
            NodeInfo {
                id: "b".into(),
                api_addr: "10.0.0.2:4001".into(),
                raft_addr: "10.0.0.2:4002".into(),
                https: false,
                voter: true,
            },
        );
        membership_from_peers(&peers, &known, &me())
    }

    #[test]
    fn this_node_keeps_its_addresses_and_others_their_api_address() {
        let m = parse(
            r#"[{"id":"a","address":"127.0.0.1:4002"},
                {"id":"b","address":"10.0.0.9:4002","non_voter":false},
                {"id":"c","address":"10.0.0.3:4002","non_voter":true}]"#,
        )
        .unwrap();
        let voters: Vec<NodeId> = m.voter_ids().collect();
        assert_eq!(voters.len(), 2);
        assert!(voters.contains(&numeric_node_id("a")) && voters.contains(&numeric_node_id("b")));
        let nodes: BTreeMap<NodeId, NodeInfo> = m.nodes().map(|(id, n)| (*id, n.clone())).collect();
        assert_eq!(nodes[&numeric_node_id("a")], me());
        let b = &nodes[&numeric_node_id("b")];
        assert_eq!(
            (b.raft_addr.as_str(), b.api_addr.as_str()),
            ("10.0.0.9:4002", "10.0.0.2:4001")
        );
        let c = &nodes[&numeric_node_id("c")];
        assert!(!c.voter && c.api_addr.is_empty());
    }

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        let err = |json: &str| parse(json).unwrap_err().to_string();
        assert_eq!(err("[]"), "the list is empty");
        assert!(err(r#"[{"id":"b","address":"x:1"}]"#).contains("is not in the list"));
        assert!(err(r#"[{"id":"a","address":"x:1","non_voter":true}]"#).contains("no voter"));
        assert!(
            err(r#"[{"id":"a","address":"x:1"},{"id":"a","address":"x:2"}]"#)
                .contains("listed twice")
        );
        assert!(
            err(r#"[{"id":"a","address":"x:1"},{"id":"b","address":"x:1"}]"#)
                .contains("listed twice")
        );
        assert!(err(r#"[{"id":"","address":"x:1"}]"#).contains("needs an \"id\""));
        assert!(parse(r#"{"id":"a"}"#).is_err());
    }
}
