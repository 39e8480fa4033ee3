//! The Raft network, server side: the HTTP service on `-raft-addr`.
//!
//! | Route | Body | Answer |
//! |---|---|---|
//! | `POST /raft/append` | bincode `AppendEntriesRequest` | bincode `Result<AppendEntriesResponse, RaftError>` |
//! | `POST /raft/vote` | bincode `VoteRequest` | bincode `Result<VoteResponse, RaftError>` |
//! | `POST /raft/snapshot` | the snapshot file, streamed; vote and metadata in headers | bincode `Result<SnapshotResponse, Fatal>` |
//! | `POST /cluster/join` | JSON `JoinRequest` | JSON `MembershipAnswer` |
//! | `POST /cluster/remove` | JSON `{"id": "..."}` | JSON `MembershipAnswer` |
//! | `POST /cluster/notify` | JSON `NodeInfo` | JSON list of known nodes (bootstrap-expect) |
//! | `GET /cluster/node` | | JSON: this node's info, leader, applied index (for `/nodes`) |
//! | `POST /cluster/elect` | JSON `{"from": "<leader id>"}` | JSON bool: an election was started (stepdown, see `store::stepdown`) |
//! | `GET /raft/staged/<id>` | | the staged content of a load, streamed (see `store::load`) |
//!
//! With `-auth`, the cluster requests need perms, as in rqlite's cluster service: a join
//! needs `join` (a non-voter also gets in with `join-read-only` or `join-read-replica`), a
//! notify (`-bootstrap-expect`) needs `join`, a remove needs `remove`; the joining node sends
//! the credentials of its `-join-as` user. The Raft RPCs themselves (`/raft/*`) and the node
//! report carry no user: as in rqlite they are protected by inter-node mutual TLS
//! (`-node-verify-client`), which the README tells operators to turn on with `-auth`.
//!
//! A received snapshot is written to a temporary file in the data directory as it arrives
//! (never held in memory), then handed to openraft, which installs it through the state
//! machine. The file is removed if anything fails.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt as _;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

use super::network::{unique_suffix, TempFile, SNAPSHOT_META_HEADER, VOTE_HEADER};
use super::types::{NodeId, Snapshot, SnapshotData, SnapshotMeta, TypeConfig, Vote};
use crate::auth::{self as perms, Auth};
use crate::store::cluster::{self, JoinRequest};
use crate::store::{NodeInfo, Store};

/// A remove request on the Raft port.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveRequest {
    pub id: String,
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

fn bincode_response<T: Serialize>(value: &T) -> HttpResponse {
    match bincode::serialize(value) {
        Ok(bytes) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(bytes),
        Err(e) => HttpResponse::InternalServerError().body(format!("encode response: {e}")),
    }
}

async fn append(store: web::Data<Arc<Store>>, body: web::Bytes) -> HttpResponse {
    let req: AppendEntriesRequest<TypeConfig> = match bincode::deserialize(&body) {
        Ok(r) => r,
        Err(e) => return HttpResponse::BadRequest().body(format!("decode append request: {e}")),
    };
    store.note_leader_contact();
    bincode_response(&store.raft().append_entries(req).await)
}

async fn vote(store: web::Data<Arc<Store>>, body: web::Bytes) -> HttpResponse {
    let req: VoteRequest<NodeId> = match bincode::deserialize(&body) {
        Ok(r) => r,
        Err(e) => return HttpResponse::BadRequest().body(format!("decode vote request: {e}")),
    };
    bincode_response(&store.raft().vote(req).await)
}

async fn snapshot(
    store: web::Data<Arc<Store>>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(vote_json), Some(meta_json)) = (header(VOTE_HEADER), header(SNAPSHOT_META_HEADER))
    else {
        return HttpResponse::BadRequest().body("snapshot upload without vote or metadata headers");
    };
    let (vote, meta): (Vote, SnapshotMeta) = match (
        serde_json::from_str(&vote_json),
        serde_json::from_str(&meta_json),
    ) {
        (Ok(v), Ok(m)) => (v, m),
        _ => return HttpResponse::BadRequest().body("malformed snapshot headers"),
    };
    let path = store
        .data_dir()
        .join(format!("snapshot-in-{}.db", unique_suffix()));
    let guard = TempFile(path.clone());
    let mut file = match tokio::fs::File::create(&path).await {
        Ok(f) => f,
        Err(e) => {
            return HttpResponse::InternalServerError()
                .body(format!("create {}: {e}", path.display()))
        }
    };
    let mut received: u64 = 0;
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return HttpResponse::BadRequest().body(format!("snapshot upload cut off: {e}"))
            }
        };
        received += chunk.len() as u64;
        if let Err(e) = file.write_all(&chunk).await {
            return HttpResponse::InternalServerError().body(format!("write snapshot: {e}"));
        }
    }
    if let Err(e) = file.sync_all().await {
        return HttpResponse::InternalServerError().body(format!("fsync snapshot: {e}"));
    }
    drop(file);
    tracing::info!(bytes = received, snapshot = %meta.snapshot_id, "received snapshot");
    // From here the state machine owns the file (it renames it into place or removes it).
    std::mem::forget(guard);
    let snapshot = Snapshot {
        meta,
        snapshot: Box::new(SnapshotData::File(path.clone())),
    };
    let result = store.raft().install_full_snapshot(vote, snapshot).await;
    if path.exists() {
        // Not installed (a stale vote, or an error): nothing else will remove it.
        let _ = std::fs::remove_file(&path);
    }
    bincode_response(&result)
}

/// Streams the local copy of a load's content (staged here, or pulled) to a node that is
/// applying the load entry.
async fn staged(store: web::Data<Arc<Store>>, id: web::Path<String>) -> HttpResponse {
    if !crate::store::load::valid_id(&id) {
        return HttpResponse::BadRequest().body("invalid staged id");
    }
    let Some(path) = crate::store::load::local_copy(store.data_dir(), &id) else {
        return HttpResponse::NotFound().body(format!("staged load {id}: not here"));
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return HttpResponse::NotFound().body(format!("staged load {id}: {e}")),
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return HttpResponse::InternalServerError().body(format!("stat: {e}")),
    };
    let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(actix_web::body::SizedStream::new(len, body))
}

/// `-auth` for the cluster requests; `None`: no checks.
struct ClusterAuth(Option<Arc<Auth>>);

impl ClusterAuth {
    /// Whether the request holds one of `perms`.
    fn allows_any(&self, req: &HttpRequest, perms: &[&str]) -> bool {
        let Some(auth) = &self.0 else {
            return true;
        };
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        perms.iter().any(|p| auth.allows(header, &[p]))
    }
}

fn unauthorized() -> HttpResponse {
    HttpResponse::new(StatusCode::UNAUTHORIZED)
}

async fn join(
    store: web::Data<Arc<Store>>,
    auth: web::Data<ClusterAuth>,
    req: HttpRequest,
    body: web::Json<JoinRequest>,
) -> HttpResponse {
    let perms: &[&str] = if body.node.voter {
        &[perms::JOIN]
    } else {
        &[perms::JOIN, perms::JOIN_READ_ONLY, perms::JOIN_READ_REPLICA]
    };
    if !auth.allows_any(&req, perms) {
        tracing::warn!(node = %body.node, "join refused: not authorized");
        return unauthorized();
    }
    HttpResponse::Ok().json(cluster::handle_join(&store, body.into_inner().node).await)
}

async fn remove(
    store: web::Data<Arc<Store>>,
    auth: web::Data<ClusterAuth>,
    req: HttpRequest,
    body: web::Json<RemoveRequest>,
) -> HttpResponse {
    if !auth.allows_any(&req, &[perms::REMOVE]) {
        return unauthorized();
    }
    HttpResponse::Ok().json(cluster::handle_remove(&store, &body.id).await)
}

async fn notify(
    store: web::Data<Arc<Store>>,
    auth: web::Data<ClusterAuth>,
    req: HttpRequest,
    body: web::Json<NodeInfo>,
) -> HttpResponse {
    if !auth.allows_any(&req, &[perms::JOIN]) {
        return unauthorized();
    }
    HttpResponse::Ok().json(cluster::handle_notify(&store, body.into_inner()))
}

async fn elect(
    store: web::Data<Arc<Store>>,
    body: web::Json<crate::store::stepdown::ElectRequest>,
) -> HttpResponse {
    HttpResponse::Ok().json(crate::store::stepdown::handle_elect(&store, &body.from).await)
}

async fn node_report(store: web::Data<Arc<Store>>) -> HttpResponse {
    HttpResponse::Ok().json(NodeReport {
        node: store.node().clone(),
        leader: store.leader(),
        applied_index: store.applied_index(),
        version: crate::VERSION.to_string(),
        last_backup_time: store.counters.last_backup_time.lock().clone(),
    })
}

/// Starts the Raft-port HTTP service (over TLS when `tls` is given).
pub fn serve(
    listener: std::net::TcpListener,
    store: Arc<Store>,
    tls: Option<rustls::ServerConfig>,
    auth: Option<Arc<Auth>>,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(store);
    let auth = web::Data::new(ClusterAuth(auth));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(auth.clone())
            // AppendEntries batches can be large (many 1000-statement requests).
            .app_data(web::PayloadConfig::new(512 * 1024 * 1024))
            .app_data(web::JsonConfig::default().limit(1024 * 1024))
            .route("/raft/append", web::post().to(append))
            .route("/raft/vote", web::post().to(vote))
            .route("/raft/snapshot", web::post().to(snapshot))
            .route("/raft/staged/{id}", web::get().to(staged))
            .route("/cluster/join", web::post().to(join))
            .route("/cluster/remove", web::post().to(remove))
            .route("/cluster/notify", web::post().to(notify))
            .route("/cluster/node", web::get().to(node_report))
            .route("/cluster/elect", web::post().to(elect))
            .default_service(web::to(|| async {
                HttpResponse::new(StatusCode::NOT_FOUND)
            }))
    });
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    let server = server.disable_signals().shutdown_timeout(2).run();
    Ok(server)
}
