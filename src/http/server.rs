//! The actix-web service: routes, cross-cutting middleware, shared state.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::{Server, Service as _, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpServer};
use futures_util::future::{ready, Either};

use super::params::QueryParams;
use super::response::{self, not_found, text_error};
use super::{
    backup_routes, cluster_routes, console, db_routes, load_routes, ops_routes, status_routes,
};
use crate::auth::gate::{Gate, Routes};
use crate::store::Store;

/// Size limits for request bodies.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest JSON/SQL body accepted by execute, query and request (`-max-body-size`).
    pub max_body_size: usize,
    /// The largest `/db/load` or `/boot` body, decompressed (`-max-load-size`); `None`: no
    /// limit but the disk.
    pub max_load_size: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_size: 64 * 1024 * 1024,
            max_load_size: None,
        }
    }
}

/// What every handler can reach.
pub struct AppState {
    pub store: Arc<Store>,
    /// Pooled client for forwarding requests to the leader's HTTP API (HTTPS when this node
    /// serves HTTPS: it trusts `-http-ca-cert` and presents this node's HTTP certificate).
    pub forward_client: reqwest::Client,
    /// Pooled client for other nodes' Raft ports (`/nodes` probes), see [`crate::tls::node`].
    pub node_client: reqwest::Client,
    /// `-auth`: who may do what; `None` lets every request through.
    pub auth: Option<Arc<crate::auth::Auth>>,
    pub limits: Limits,
    pub data_dir: String,
    pub http_bind_addr: String,
    pub started: Instant,
    pub start_time_rfc3339: String,
    /// Queued writes (`/db/execute?queue`).
    pub write_queue: super::write_queue::WriteQueue,
    /// The writer connection's settings as `/status` last read them: shown when the writer
    /// is busy (a SQL load's transaction, a snapshot's fsync) rather than waiting for it.
    pub writer_pragmas: parking_lot::Mutex<serde_json::Value>,
    /// The automatic backups' counters (`/debug/vars` `uploader`; zeros without `-auto-backup`).
    pub uploader: std::sync::Arc<crate::auto_backup::UploaderStats>,
    /// Continuous archiving's counters (`/debug/vars` `archiver`; zeros without it).
    pub archiver: std::sync::Arc<crate::archive::ArchiverStats>,
    /// `-http-allow-origin`: sent as `Access-Control-Allow-Origin` on every answer.
    pub allow_origin: Option<String>,
    /// `-auto-vacuum-int`: `/status` shows `store.auto_vacuum` while it is set.
    pub auto_vacuum: Option<std::time::Duration>,
    /// `-cdc-config`: `/status` shows `cdc` while it is set.
    pub cdc: Option<CdcState>,
    /// `-disco-mode`: shown in `/status` `disco`.
    pub discovery: Option<Arc<crate::cluster::discovery::Discovery>>,
}

/// What `/status` shows of change data capture.
pub struct CdcState {
    pub config: crate::cdc::CdcConfig,
    pub queue: Arc<crate::cdc::queue::Queue>,
    pub stats: Arc<crate::cdc::sender::SenderStats>,
}

/// Every route of the HTTP API, each with the access it needs (rqlite's perms). A route cannot
/// be added without declaring it, and the gate refuses anything this table does not declare
/// (see [`crate::auth::gate`]).
pub fn routes() -> Routes {
    use crate::auth::{self as perm, Access::AllOf};
    let mut r = Routes::new();
    r.add(
        "/db/execute",
        Method::POST,
        AllOf(&[perm::EXECUTE]),
        db_routes::execute,
    )
    .add(
        "/db/query",
        Method::GET,
        AllOf(&[perm::QUERY]),
        db_routes::query_get,
    )
    .add(
        "/db/query",
        Method::POST,
        AllOf(&[perm::QUERY]),
        db_routes::query_post,
    )
    .add(
        "/db/request",
        Method::POST,
        AllOf(&[perm::EXECUTE, perm::QUERY]),
        db_routes::request,
    )
    .add(
        "/db/sql",
        Method::GET,
        AllOf(&[perm::EXECUTE, perm::QUERY]),
        db_routes::sql,
    )
    .add(
        "/db/sql",
        Method::POST,
        AllOf(&[perm::EXECUTE, perm::QUERY]),
        db_routes::sql,
    )
    .add(
        "/db/backup",
        Method::GET,
        AllOf(&[perm::BACKUP]),
        backup_routes::backup,
    )
    .add(
        "/db/backup",
        Method::HEAD,
        AllOf(&[perm::BACKUP]),
        backup_routes::backup,
    )
    .add(
        "/db/load",
        Method::POST,
        AllOf(&[perm::LOAD]),
        load_routes::load,
    )
    .add(
        "/boot",
        Method::POST,
        AllOf(&[perm::LOAD]),
        load_routes::boot,
    )
    .add(
        "/status",
        Method::GET,
        AllOf(&[perm::STATUS]),
        status_routes::status,
    )
    // Each node reports itself: never forwarded.
    .add(
        "/metrics",
        Method::GET,
        AllOf(&[perm::STATUS]),
        status_routes::metrics,
    )
    .add(
        "/readyz",
        Method::GET,
        AllOf(&[perm::READY]),
        status_routes::readyz,
    )
    .add(
        "/nodes",
        Method::GET,
        AllOf(&[perm::STATUS]),
        status_routes::nodes,
    )
    .add(
        "/remove",
        Method::DELETE,
        AllOf(&[perm::REMOVE]),
        cluster_routes::remove,
    )
    .add(
        "/leader",
        Method::GET,
        AllOf(&[perm::STATUS]),
        status_routes::leader_get,
    )
    .add(
        "/leader",
        Method::POST,
        AllOf(&[perm::LEADER_OPS]),
        ops_routes::leader_post,
    )
    .add(
        "/snapshot",
        Method::POST,
        AllOf(&[perm::SNAPSHOT]),
        ops_routes::snapshot,
    )
    .add(
        "/reap",
        Method::POST,
        AllOf(&[perm::SNAPSHOT]),
        ops_routes::reap,
    )
    // rqlite serves expvar for any method.
    .any_method(
        "/debug/vars",
        AllOf(&[perm::STATUS]),
        ops_routes::debug_vars,
    );
    console::routes(&mut r);
    r
}

/// How long an idle keep-alive connection stays open, and how long a client may take to
/// send a request's head, so idle or stalled connections do not pile up (actix's defaults,
/// stated here so they are a decision; a TLS handshake has actix-tls's 3 s).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Sent by the web console on each of its requests (see `serve`).
pub const CONSOLE_REQUEST_HEADER: &str = "x-raftlite-console";

/// What the headers on every answer depend on.
#[derive(Debug, Clone, Default)]
pub struct HeaderOptions {
    /// `-auth` is on: rqlite then adds the credentials CORS headers and its challenge.
    pub auth_on: bool,
    /// `-http-allow-origin`.
    pub allow_origin: Option<String>,
}

/// The HTTP API's app around the routes `register` adds: every layer a request passes, outermost
/// first: the console's challenge removal, rqlite's headers, `OPTIONS` and parameter
/// validation (before routing, for every path, as rqlite does), then the gate (see
/// [`crate::auth::gate`]), then the routes; a path with no route is 404. The server and the
/// routing fuzz target build it the same way.
pub fn app(
    gate: Arc<Gate>,
    options: &HeaderOptions,
    register: impl FnOnce(&mut web::ServiceConfig),
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let mut headers = DefaultHeaders::new()
        .add(("X-RQLITE-VERSION", crate::VERSION))
        .add(("Access-Control-Allow-Methods", "OPTIONS, GET, POST"));
    if let Some(origin) = &options.allow_origin {
        headers = headers.add(("Access-Control-Allow-Origin", origin.clone()));
    }
    headers = if options.auth_on {
        headers
            .add((
                "Access-Control-Allow-Headers",
                "Content-Type, Authorization",
            ))
            .add(("Access-Control-Allow-Credentials", "true"))
            .add(("WWW-Authenticate", "Basic realm=\"rqlite\""))
    } else {
        headers.add(("Access-Control-Allow-Headers", "Content-Type"))
    };
    App::new()
        // Every request passes the gate: the route it will reach, and the access that route
        // declares.
        .wrap(from_fn(move |req, next| Arc::clone(&gate).guard(req, next)))
        .wrap_fn(|req, srv| {
            // OPTIONS and parameter validation come before routing, for every path.
            let early = if req.method() == Method::OPTIONS {
                Some(response::empty(StatusCode::OK))
            } else {
                QueryParams::parse(req.query_string())
                    .validate()
                    .err()
                    .map(|msg| text_error(StatusCode::BAD_REQUEST, msg))
            };
            match early {
                Some(resp) => {
                    let resp: ServiceResponse<EitherBody<BoxBody>> =
                        req.into_response(resp).map_into_right_body();
                    Either::Left(ready(Ok(resp)))
                }
                None => Either::Right({
                    let fut = srv.call(req);
                    async move { fut.await.map(|r| r.map_into_left_body()) }
                }),
            }
        })
        // Registered after the other layers, so early answers carry these headers too.
        .wrap(headers)
        .wrap_fn(|req, srv| {
            // The console's own requests get no `WWW-Authenticate` challenge: a browser meets a
            // challenged 401 with its login dialog (or, headless, a request that never ends)
            // instead of handing it to the console, which asks for credentials in its own form.
            // Every other client sees rqlite's headers unchanged.
            let from_console = req.headers().contains_key(CONSOLE_REQUEST_HEADER);
            let fut = srv.call(req);
            async move {
                let mut resp = fut.await?;
                if from_console {
                    resp.headers_mut().remove(header::WWW_AUTHENTICATE);
                }
                Ok(resp)
            }
        })
        .configure(register)
        .default_service(web::to(not_found))
}

/// Starts the HTTP server on an already bound listener (so port 0 is resolved by the caller),
/// over HTTPS when `tls` is given.
pub fn serve(
    listener: TcpListener,
    state: AppState,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<Server> {
    let headers = HeaderOptions {
        auth_on: state.auth.is_some(),
        allow_origin: state.allow_origin.clone(),
    };
    let gate = Arc::new(Gate {
        table: Arc::new(routes().table().clone()),
        auth: state.auth.clone(),
        members_by_tls: false,
    });
    let state = web::Data::new(state);
    let staged_restores =
        web::Data::new(crate::store::restore::pending::PendingRestores::default());
    let backup_jobs = web::Data::new(super::console_backup::BackupJobs::default());
    let server = HttpServer::new(move || {
        app(Arc::clone(&gate), &headers, |cfg| {
            routes().register(cfg);
        })
        .app_data(state.clone())
        .app_data(staged_restores.clone())
        .app_data(backup_jobs.clone())
    })
    .keep_alive(KEEP_ALIVE)
    .client_request_timeout(REQUEST_HEAD_TIMEOUT);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    let server = server.disable_signals().shutdown_timeout(5).run();
    Ok(server)
}
