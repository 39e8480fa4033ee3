//! The actix-web service: routes, cross-cutting middleware, shared state.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::{Server, Service as _, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpServer};
use futures_util::future::{ready, Either};

use super::params::QueryParams;
use super::response::{self, method_not_allowed, not_found, text_error};
use super::{
    backup_routes, cluster_routes, console, db_routes, load_routes, ops_routes, status_routes,
};
use crate::store::Store;

/// Size limits for request bodies.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest JSON/SQL body accepted by execute, query and request (`-max-body-size`).
    pub max_body_size: usize,
    /// The largest `/db/load` or `/boot` body, decompressed (`-max-load-size`); `None`: no
    /// limit but the disk.
    pub max_load_size: Option<u64>,
    /// How long a SQL dump may pin the WAL (see `backup_routes`).
    pub dump_caps: DumpCaps,
}

/// Caps on a SQL dump's read snapshot, which pins the WAL while a slow client reads: it may
/// neither let the WAL grow by more than `wal_limit` bytes nor wait `stall_timeout` for its
/// client to read.
#[derive(Debug, Clone, Copy)]
pub struct DumpCaps {
    pub wal_limit: Option<u64>,
    pub stall_timeout: std::time::Duration,
}

impl Default for DumpCaps {
    fn default() -> Self {
        DumpCaps {
            wal_limit: Some(1 << 30),
            stall_timeout: std::time::Duration::from_secs(120),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_size: 64 * 1024 * 1024,
            max_load_size: None,
            dump_caps: DumpCaps::default(),
        }
    }
}

/// What every handler can reach.
pub struct AppState {
    pub store: Arc<Store>,
    /// Pooled client for forwarding requests to the leader.
    pub forward_client: reqwest::Client,
    pub limits: Limits,
    pub data_dir: String,
    pub http_bind_addr: String,
    pub started: Instant,
    pub start_time_rfc3339: String,
    /// Binary backup copies, shared between the requests they satisfy.
    pub backup_copies: super::backup_copies::BackupCopies,
    /// Queued writes (`/db/execute?queue`).
    pub write_queue: super::write_queue::WriteQueue,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/db/execute")
            .route(web::post().to(db_routes::execute))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/db/query")
            .route(web::get().to(db_routes::query_get))
            .route(web::post().to(db_routes::query_post))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/db/request")
            .route(web::post().to(db_routes::request))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/db/sql")
            .route(web::get().to(db_routes::sql))
            .route(web::post().to(db_routes::sql))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/db/backup")
            .route(web::get().to(backup_routes::backup))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/db/load")
            .route(web::post().to(load_routes::load))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/boot")
            .route(web::post().to(load_routes::boot))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/status")
            .route(web::get().to(status_routes::status))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(status_routes::readyz))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/nodes")
            .route(web::get().to(status_routes::nodes))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/remove")
            .route(web::delete().to(cluster_routes::remove))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/leader")
            .route(web::get().to(status_routes::leader_get))
            .route(web::post().to(ops_routes::leader_post))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/snapshot")
            .route(web::post().to(ops_routes::snapshot))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/reap")
            .route(web::post().to(ops_routes::reap))
            .default_service(web::to(method_not_allowed)),
    )
    // rqlite serves expvar for any method.
    .service(web::resource("/debug/vars").to(ops_routes::debug_vars))
    .configure(console::configure);
}

/// Starts the HTTP server on an already bound listener (so port 0 is resolved by the caller).
pub fn serve(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let console_state = web::Data::new(super::console_restore::ConsoleState::default());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(console_state.clone())
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
            // Registered last, so it is the outermost layer and early answers carry it too.
            .wrap(
                DefaultHeaders::new()
                    .add(("X-RQLITE-VERSION", crate::VERSION))
                    .add(("Access-Control-Allow-Methods", "OPTIONS, GET, POST"))
                    .add(("Access-Control-Allow-Headers", "Content-Type")),
            )
            .configure(configure)
            .default_service(web::to(not_found))
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(5)
    .run();
    Ok(server)
}
