//! The node-to-node protocol: the messages and headers both ends of the Raft port agree on,
//! the bound on a message, and the one way a node sends a JSON call to another (with the
//! `-join-as` credentials the receiver checks). The server ([`super::rpc`]) and every client
//! ([`super::network`], [`super::membership`], [`super::stepdown`]) take these from here.

use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::store::NodeInfo;

/// Header carrying the leader's vote (JSON) on a snapshot upload.
pub const VOTE_HEADER: &str = "x-raftlite-vote";
/// Header carrying the snapshot metadata (JSON) on a snapshot upload.
pub const SNAPSHOT_META_HEADER: &str = "x-raftlite-snapshot-meta";

/// The largest `/raft/append` or `/raft/vote` body. A single entry is at most
/// [`crate::store::types::MAX_ENTRY_BYTES`]; the sender splits batches that would not fit
/// (`PayloadTooLarge`), so this bounds what a peer (or anyone who reaches the port) can make
/// the node buffer.
pub const MAX_RPC_BODY: usize = crate::store::types::MAX_ENTRY_BYTES + (1 << 20);

/// A join request, sent to any member's Raft address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node: NodeInfo,
    /// The digest of the SQLite extensions the joining node loads (`crate::extensions`; ""
    /// or absent: none): the leader refuses a node whose set differs from its own, since the
    /// two would apply the same entries differently.
    #[serde(default)]
    pub extensions: String,
}

/// A remove request on the Raft port.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveRequest {
    pub id: String,
}

/// The body of `POST /cluster/elect`: who asks the target to campaign.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ElectRequest {
    pub from: String,
}

/// The body of `POST /cluster/removed`: the leader tells a node it removed (which cannot
/// learn it from the log: the leader stops replicating to it as it appends the membership
/// without it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemovedNotice {
    /// The removed node's id.
    pub id: String,
    /// The leader that removed it.
    pub from: String,
    /// The log index of the membership without it: a node that holds a newer membership
    /// with itself in it (it joined again) is not removed.
    pub membership_index: u64,
}

/// POSTs JSON to a peer's Raft address and decodes the JSON answer.
pub async fn post_json<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
    client: &reqwest::Client,
    raft_addr: &str,
    path: &str,
    body: &Req,
) -> anyhow::Result<Resp> {
    let mut out = client
        .post(crate::tls::node().url(raft_addr, path))
        .timeout(Duration::from_secs(120));
    // Cluster requests carry the -join-as user's credentials; the receiving node checks them.
    if let Some(auth) = crate::tls::node().authorization() {
        out = out.header(reqwest::header::AUTHORIZATION, auth);
    }
    let resp = out
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body)?)
        .send()
        .await
        .with_context(|| format!("POST {path} to {raft_addr}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if !status.is_success() {
        bail!(
            "{path} on {raft_addr}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    serde_json::from_slice(&bytes)
        .with_context(|| format!("decode the answer of {path} from {raft_addr}"))
}
