//! A node's identity (rqlite's string id and its two advertised addresses), and what a node
//! reports about itself to the others (`GET /cluster/node` on the Raft port).

use serde::{Deserialize, Serialize};

/// openraft's id of a node: derived from rqlite's string id (`store::types::numeric_node_id`).
pub type NodeId = u64;
/// A log position, as openraft names it.
pub type LogId = openraft::LogId<NodeId>;
/// The membership as the state machine stores it (with each member's [`NodeInfo`]).
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;

/// What the cluster knows about a node. It travels in Raft membership data later, so it is
/// serializable and small.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// rqlite's `-node-id` (defaults to the advertised Raft address).
    pub id: String,
    /// Advertised HTTP address, `host:port`.
    pub api_addr: String,
    /// Advertised Raft address, `host:port`.
    pub raft_addr: String,
    /// Whether clients reach this node over HTTPS.
    #[serde(default)]
    pub https: bool,
    #[serde(default = "default_voter")]
    pub voter: bool,
}

fn default_voter() -> bool {
    true
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (api {}, raft {})",
            self.id, self.api_addr, self.raft_addr
        )
    }
}

impl NodeInfo {
    /// The API URL, `http://host:port` (or https).
    pub fn api_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.api_addr)
    }
}

/// What `GET /cluster/node` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeReport {
    pub node: NodeInfo,
    pub leader: Option<NodeInfo>,
    pub applied_index: u64,
    pub version: String,
    /// When this node last served a backup (RFC 3339), for the console's Cluster tab.
    #[serde(default)]
    pub last_backup_time: Option<String>,
}
