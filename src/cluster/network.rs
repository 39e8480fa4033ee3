//! The Raft network, client side: openraft's RPCs as HTTP requests to a peer's `-raft-addr`.
//!
//! Protocol (served by [`super::rpc`]): `POST /raft/append`, `POST /raft/vote` with bincode
//! bodies (`Result<Response, RaftError>` back), and `POST /raft/snapshot`, which streams the
//! snapshot file as the body with the leader's vote and the snapshot metadata in headers. A
//! snapshot is never held in memory: the leader copies the live database into a temporary
//! file with the backup API when a follower needs it, and streams that file.
//!
//! Errors: a refused connection is `Unreachable` (openraft backs off); anything else on the
//! wire is a `NetworkError` (retried at once); an error the peer returned is a `RemoteError`.

use std::path::PathBuf;
use std::time::Duration;

use openraft::error::{
    Fatal, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::protocol::{SNAPSHOT_META_HEADER, VOTE_HEADER};
use crate::store::types::{NodeId, Snapshot, SnapshotData, TypeConfig, Vote};
use crate::store::NodeInfo;
use crate::temp_file::{unique_suffix, TempFile};

/// Creates one client per peer; all share one HTTP connection pool.
#[derive(Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
    /// Streaming client: no total timeout, because a multi-GB snapshot must finish.
    streaming: reqwest::Client,
    tmp_dir: PathBuf,
    /// Who answered an append-entries call last, and when (for `super::reaper`).
    contacts: super::reaper::PeerContacts,
}

impl HttpNetwork {
    pub fn new(tmp_dir: PathBuf) -> anyhow::Result<HttpNetwork> {
        let client = crate::tls::node()
            .client_builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()?;
        let streaming = crate::tls::node()
            .client_builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()?;
        Ok(HttpNetwork {
            client,
            streaming,
            tmp_dir,
            contacts: Default::default(),
        })
    }

    /// The last successful append-entries call to each peer.
    pub fn contacts(&self) -> super::reaper::PeerContacts {
        self.contacts.clone()
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient {
            target,
            addr: node.raft_addr.clone(),
            net: self.clone(),
        }
    }
}

/// The client for one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    net: HttpNetwork,
}

type RpcResult<T> = Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId>>>;

impl PeerClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp> {
        let body = bincode::serialize(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let resp = self
            .net
            .client
            .post(crate::tls::node().url(&self.addr, path))
            .timeout(option.hard_ttl())
            .body(body)
            .send()
            .await
            .map_err(to_rpc_error)?;
        if !resp.status().is_success() {
            let err = std::io::Error::other(refused_rpc_message(path, &self.addr, resp.status()));
            return Err(RPCError::Network(NetworkError::new(&err)));
        }
        let bytes = resp.bytes().await.map_err(to_rpc_error)?;
        let decoded: Result<Resp, RaftError<NodeId>> =
            bincode::deserialize(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// What a refused node-to-node call says: for 401/403, how this node proves membership.
pub fn refused_rpc_message(path: &str, addr: &str, status: reqwest::StatusCode) -> String {
    if matches!(status.as_u16(), 401 | 403) {
        format!(
            "{path} refused by {addr} (HTTP {status}): with -auth, a node proves it is a \
             member with -join-as (a user with the join perm) or node mutual TLS \
             (-node-verify-client)"
        )
    } else {
        format!("{path} on {addr}: HTTP {status}")
    }
}

fn to_rpc_error(e: reqwest::Error) -> RPCError<NodeId, NodeInfo, RaftError<NodeId>> {
    if e.is_connect() {
        RPCError::Unreachable(Unreachable::new(&e))
    } else {
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        // The receiver reads at most MAX_RPC_BODY bytes; a batch that would not fit is sent in
        // smaller pieces (openraft retries at once with at most the hinted number of entries).
        let entries = rpc.entries.len() as u64;
        if entries > 1 {
            let size = bincode::serialized_size(&rpc).unwrap_or(u64::MAX);
            if size > super::protocol::MAX_RPC_BODY as u64 {
                let fitting = (entries * super::protocol::MAX_RPC_BODY as u64 / size.max(1)).max(1);
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(fitting.min(entries - 1)),
                ));
            }
        }
        let answer = self.call("/raft/append", &rpc, &option).await;
        if answer.is_ok() {
            self.net.contacts.heard_from(self.target);
        }
        answer
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call("/raft/vote", &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            sent = self.send_snapshot(vote, snapshot) => sent,
        }
    }
}

impl PeerClient {
    async fn send_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let net_err = |e: &dyn std::fmt::Display| {
            StreamingError::Network(NetworkError::new(&std::io::Error::other(e.to_string())))
        };
        // Materialise the live database into a temporary file, removed when we are done.
        let file = match *snapshot.snapshot {
            SnapshotData::File(p) => TempFile::new(p),
            SnapshotData::Live(live) => {
                let dest = self
                    .net
                    .tmp_dir
                    .join(format!("snapshot-out-{}.db", unique_suffix()));
                let file = TempFile::new(dest.clone());
                live.copy_to(dest)
                    .await
                    .map_err(|e| net_err(&format!("{e:#}")))?;
                file
            }
            SnapshotData::Memory(_) => return Err(net_err(&"in-memory snapshots are not sent")),
        };
        let f = tokio::fs::File::open(file.path())
            .await
            .map_err(|e| net_err(&e))?;
        let len = f.metadata().await.map_err(|e| net_err(&e))?.len();
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024));
        let resp = self
            .net
            .streaming
            .post(crate::tls::node().url(&self.addr, "/raft/snapshot"))
            .header(
                VOTE_HEADER,
                serde_json::to_string(&vote).map_err(|e| net_err(&e))?,
            )
            .header(
                SNAPSHOT_META_HEADER,
                serde_json::to_string(&snapshot.meta).map_err(|e| net_err(&e))?,
            )
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    StreamingError::Unreachable(Unreachable::new(&e))
                } else {
                    net_err(&e)
                }
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| net_err(&e))?;
        if !status.is_success() {
            return Err(net_err(&format!(
                "{}: {}",
                refused_rpc_message("/raft/snapshot", &self.addr, status),
                String::from_utf8_lossy(&bytes)
            )));
        }
        let decoded: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            bincode::deserialize(&bytes).map_err(|e| net_err(&e))?;
        decoded.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}
