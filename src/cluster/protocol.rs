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
    let bytes = read_capped(resp, MAX_ANSWER_BYTES)
        .await
        .with_context(|| format!("the answer of {path} from {raft_addr}"))?;
    if !status.is_success() {
        bail!(
            "{path} on {raft_addr}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    serde_json::from_slice(&bytes)
        .with_context(|| format!("decode the answer of {path} from {raft_addr}"))
}

/// The largest answer a node-to-node JSON call reads: every such answer is a few kilobytes (a
/// node list, a membership answer); an address from discovery may not be a node at all.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// The body of `resp`, refused once it passes `cap` bytes (it is never held whole beyond it).
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > cap {
            bail!("the answer is larger than {cap} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Serves one HTTP answer with a body of `len` bytes; the URL to ask.
    async fn serve_body(len: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&vec![b'x'; len]).await;
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn an_answer_past_the_cap_is_refused() {
        let client = reqwest::Client::new();
        let small = client.get(serve_body(1000).await).send().await.unwrap();
        assert_eq!(read_capped(small, 1000).await.unwrap().len(), 1000);
        let large = client.get(serve_body(1001).await).send().await.unwrap();
        let err = read_capped(large, 1000).await.unwrap_err();
        assert!(err.to_string().contains("larger than 1000 bytes"), "{err}");
    }
}
