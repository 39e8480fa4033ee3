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
//! | `POST /cluster/elect` | JSON `{"from": "<leader id>"}` | JSON bool: an election was started (stepdown, see `cluster::stepdown`) |
//! | `POST /cluster/removed` | JSON `{"id": "...", "from": "<leader id>"}` | JSON bool: the notice was for this node (`-raft-remove-shutdown`) |
//! | `GET /raft/staged/<id>` | | the staged content of a load, streamed (see `store::restore`) |
//!
//! Every route declares its access ([`routes`]) and passes the same gate as the HTTP API
//! ([`crate::auth::gate`]). With `-auth`, every route needs a member of the cluster: a node
//! proves it with node mutual TLS (`-node-verify-client`: the connection itself is
//! authenticated) or with the credentials of its `-join-as` user, which every node-to-node
//! request carries ([`crate::tls::NodeTransport`]). The Raft RPCs and `elect` need a user who
//! may join as a voter (`join`); pulling staged loads and the node report also accept the
//! non-voter perms (`join-read-only`, `join-read-replica`). Cluster operations need their
//! perms whatever the transport, as in rqlite's cluster service: a join needs `join` (a
//! non-voter also gets in with `join-read-only` or `join-read-replica`), a notify
//! (`-bootstrap-expect`) needs `join`, a remove needs `remove`. Without `-auth` the port is
//! open, as rqlite's is: keep it on a private network.
//!
//! Limits: `/raft/append` and `/raft/vote` bodies are read to at most [`MAX_RPC_BODY`] bytes
//! as they arrive and are never decompressed (a body with a `Content-Encoding` is refused);
//! a snapshot upload must declare its length, which must fit above `-disk-reserve`, and it
//! may not send more than it declared. An append that a newer term refuses is not leader
//! contact.
//!
//! A received snapshot is written to a temporary file in the data directory as it arrives
//! (never held in memory), then handed to openraft, which installs it through the state
//! machine. The file is removed if anything fails.

use std::sync::Arc;

use actix_web::http::{Method, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt as _;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use serde::Serialize;
use tokio::io::AsyncWriteExt as _;

use super::protocol::{
    ElectRequest, JoinRequest, RemoveRequest, MAX_RPC_BODY, SNAPSHOT_META_HEADER, VOTE_HEADER,
};
use crate::auth::gate::{Gate, Routes};
use crate::auth::{self as perms, Access, Auth};
use crate::cluster::membership;
use crate::store::types::{NodeId, Snapshot, SnapshotData, SnapshotMeta, TypeConfig, Vote};
use crate::store::{NodeInfo, NodeReport, Store};
use crate::temp_file::{unique_suffix, TempFile};

fn bincode_response<T: Serialize>(value: &T) -> HttpResponse {
    match bincode::serialize(value) {
        Ok(bytes) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(bytes),
        Err(e) => HttpResponse::InternalServerError().body(format!("encode response: {e}")),
    }
}

/// Reads a Raft RPC body: at most `limit` bytes, counted as they arrive, and never
/// decompressed (an encoded body is refused: nothing legitimate sends one).
async fn read_rpc_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, HttpResponse> {
    if req
        .headers()
        .get(actix_web::http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity")
    {
        return Err(
            HttpResponse::UnsupportedMediaType().body("encoded Raft RPC bodies are refused")
        );
    }
    let too_large = || {
        HttpResponse::PayloadTooLarge().body(format!("a Raft RPC body is at most {limit} bytes"))
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| HttpResponse::BadRequest().body(format!("read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A bincode Raft message (`what`: its name in the 400 answer), read within [`MAX_RPC_BODY`];
/// the body's bytes are gone once it is decoded.
async fn read_rpc_message<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    what: &str,
) -> Result<T, HttpResponse> {
    let body = read_rpc_body(req, payload, MAX_RPC_BODY).await?;
    bincode::deserialize(&body)
        .map_err(|e| HttpResponse::BadRequest().body(format!("decode {what} request: {e}")))
}

async fn append(
    store: web::Data<Arc<Store>>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let req: AppendEntriesRequest<TypeConfig> =
        match read_rpc_message(&req, payload, "append").await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
    let result = store.raft().append_entries(req).await;
    // Only a leader of the current term counts as contact: one whose term is behind ours is
    // refused with our vote, and must not keep this node from noticing the leader is gone.
    if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
        store.note_leader_contact();
    }
    bincode_response(&result)
}

async fn vote(
    store: web::Data<Arc<Store>>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let req: VoteRequest<NodeId> = match read_rpc_message(&req, payload, "vote").await {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    bincode_response(&store.raft().vote(req).await)
}

async fn snapshot(
    store: web::Data<Arc<Store>>,
    port: web::Data<RaftPortOptions>,
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
    if header(actix_web::http::header::CONTENT_ENCODING.as_str()).is_some_and(|v| v != "identity") {
        return HttpResponse::UnsupportedMediaType().body("encoded snapshot uploads are refused");
    }
    // The sender always declares the length: it bounds what is written here, and is checked
    // against the room above the reserve before the first byte.
    let Some(declared) = header(actix_web::http::header::CONTENT_LENGTH.as_str())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return HttpResponse::LengthRequired().body("a snapshot upload must declare its length");
    };
    let dir = store.data_dir().to_path_buf();
    if let Err(e) = crate::db::disk::check_room(&dir, declared, port.disk_reserve, "a snapshot") {
        tracing::warn!("snapshot refused: {e}");
        return HttpResponse::InsufficientStorage().body(e.to_string());
    }
    let path = dir.join(format!("snapshot-in-{}.db", unique_suffix()));
    let guard = TempFile::new(path.clone());
    let mut file = match tokio::fs::File::create(&path).await {
        Ok(f) => f,
        Err(e) => {
            return HttpResponse::InternalServerError()
                .body(format!("create {}: {e}", path.display()))
        }
    };
    let mut received: u64 = 0;
    let mut since_check: u64 = 0;
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return HttpResponse::BadRequest().body(format!("snapshot upload cut off: {e}"))
            }
        };
        received += chunk.len() as u64;
        if received > declared {
            return HttpResponse::BadRequest().body(format!(
                "snapshot upload longer than its declared {declared} bytes"
            ));
        }
        since_check += chunk.len() as u64;
        if since_check >= crate::db::disk::CHECK_EVERY {
            since_check = 0;
            if let Err(e) =
                crate::db::disk::check_room(&dir, 0, port.disk_reserve, "more snapshot data")
            {
                tracing::warn!("snapshot upload stopped: {e}");
                return HttpResponse::InsufficientStorage().body(e.to_string());
            }
        }
        if let Err(e) = file.write_all(&chunk).await {
            return HttpResponse::InternalServerError().body(format!("write snapshot: {e}"));
        }
    }
    if received != declared {
        return HttpResponse::BadRequest().body(format!(
            "snapshot upload cut off: {received} of {declared} bytes"
        ));
    }
    if let Err(e) = file.sync_all().await {
        return HttpResponse::InternalServerError().body(format!("fsync snapshot: {e}"));
    }
    drop(file);
    tracing::info!(bytes = received, snapshot = %meta.snapshot_id, "received snapshot");
    crate::failpoint::crash_point("snapshot::received_before_install");
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
    if !crate::store::restore::files::valid_id(&id) {
        return HttpResponse::BadRequest().body("invalid staged id");
    }
    let Some(path) = crate::store::restore::files::local_copy(store.data_dir(), &id) else {
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

/// What the Raft port needs besides the store.
#[derive(Debug, Clone)]
pub struct RaftPortOptions {
    /// `-auth`; `None`: the port is open (as rqlite's is).
    pub auth: Option<Arc<Auth>>,
    /// `-node-verify-client`: every connection presented a certificate of the node CA, which
    /// proves membership on its own.
    pub members_by_tls: bool,
    /// `-disk-reserve`: what a received snapshot must leave free.
    pub disk_reserve: u64,
}

async fn join(
    store: web::Data<Arc<Store>>,
    port: web::Data<RaftPortOptions>,
    req: HttpRequest,
    body: web::Json<JoinRequest>,
) -> HttpResponse {
    // The gate let in any join perm; only `join` may add (or move) a voter.
    let may_vote = match &port.auth {
        None => true,
        Some(auth) => {
            let authorization = req
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            auth.permits(authorization, Access::AllOf(&[perms::JOIN]), false)
                .await
        }
    };
    let ours = &store.database().settings().extensions_digest;
    if &body.extensions != ours {
        tracing::warn!(node = %body.node, "join refused: it loads other SQLite extensions");
        return HttpResponse::Ok().json(membership::MembershipAnswer::Refused(format!(
            "the node loads other SQLite extensions than this cluster (digest {:?}, the \
             leader's {ours:?}; see /status extensions): both would apply the same writes \
             differently",
            body.extensions
        )));
    }
    if body.node.voter && !may_vote {
        tracing::warn!(node = %body.node, "join as a voter refused: the caller may only join as a non-voter");
        return HttpResponse::new(StatusCode::UNAUTHORIZED);
    }
    HttpResponse::Ok().json(membership::handle_join(&store, body.into_inner().node, may_vote).await)
}

async fn remove(store: web::Data<Arc<Store>>, body: web::Json<RemoveRequest>) -> HttpResponse {
    HttpResponse::Ok().json(membership::handle_remove(&store, &body.id).await)
}

async fn notify(store: web::Data<Arc<Store>>, body: web::Json<NodeInfo>) -> HttpResponse {
    HttpResponse::Ok().json(membership::handle_notify(&store, body.into_inner()))
}

async fn elect(store: web::Data<Arc<Store>>, body: web::Json<ElectRequest>) -> HttpResponse {
    HttpResponse::Ok().json(crate::cluster::stepdown::handle_elect(&store, &body.from).await)
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

/// Every route of the Raft port, each with the access it needs (see the module docs).
pub fn routes() -> Routes {
    use crate::auth::Access::{AllOf, AnyOf, Member};
    const VOTER: &[&str] = &[perms::JOIN];
    const ANY_MEMBER: &[&str] = &[perms::JOIN, perms::JOIN_READ_ONLY, perms::JOIN_READ_REPLICA];
    let mut r = Routes::new();
    r.add("/raft/append", Method::POST, Member(VOTER), append)
        .add("/raft/vote", Method::POST, Member(VOTER), vote)
        .add("/raft/snapshot", Method::POST, Member(VOTER), snapshot)
        .add("/raft/staged/{id}", Method::GET, Member(ANY_MEMBER), staged)
        .add("/cluster/join", Method::POST, AnyOf(ANY_MEMBER), join)
        .add(
            "/cluster/remove",
            Method::POST,
            AllOf(&[perms::REMOVE]),
            remove,
        )
        .add(
            "/cluster/notify",
            Method::POST,
            AllOf(&[perms::JOIN]),
            notify,
        )
        .add(
            "/cluster/node",
            Method::GET,
            Member(ANY_MEMBER),
            node_report,
        )
        .add("/cluster/elect", Method::POST, Member(VOTER), elect)
        .add("/cluster/removed", Method::POST, Member(VOTER), removed);
    r
}

async fn removed(
    store: web::Data<Arc<Store>>,
    body: web::Json<super::protocol::RemovedNotice>,
) -> HttpResponse {
    let mine = body.id == store.node().id;
    if mine {
        tracing::warn!(leader = %body.from, "this node was removed from the cluster");
        store.note_removed(body.membership_index);
    }
    HttpResponse::Ok().json(mine)
}

/// The Raft port's app around the routes `register` adds: the gate, then the routes; a path
/// with no route is 404. The server and the routing fuzz target build it the same way.
pub fn app(
    gate: Arc<Gate>,
    register: impl FnOnce(&mut web::ServiceConfig),
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap(from_fn(move |req, next| Arc::clone(&gate).guard(req, next)))
        .configure(register)
        .default_service(web::to(|| async {
            HttpResponse::new(StatusCode::NOT_FOUND)
        }))
}

/// Starts the Raft-port HTTP service (over TLS when `tls` is given).
pub fn serve(
    listener: std::net::TcpListener,
    store: Arc<Store>,
    tls: Option<rustls::ServerConfig>,
    options: RaftPortOptions,
) -> std::io::Result<actix_web::dev::Server> {
    let gate = Arc::new(Gate {
        table: Arc::new(routes().table().clone()),
        auth: options.auth.clone(),
        members_by_tls: options.members_by_tls,
    });
    let data = web::Data::new(store);
    let options = web::Data::new(options);
    let server = HttpServer::new(move || {
        app(Arc::clone(&gate), |cfg| {
            routes().register(cfg);
        })
        .app_data(data.clone())
        .app_data(options.clone())
        .app_data(web::JsonConfig::default().limit(1024 * 1024))
    });
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    let server = server.disable_signals().shutdown_timeout(2).run();
    Ok(server)
}
