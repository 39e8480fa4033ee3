//! The HTTP API (actix-web): rqlite's endpoints, parameters, JSON shapes and status codes.
//!
//! Cross-cutting behaviour, as rqlite has it: every response carries `X-RQLITE-VERSION` and
//! the CORS method/header lists; `OPTIONS` on any path answers 200 with an empty body; query
//! parameters are validated for every path before routing (400 with rqlite's message); a wrong
//! method is 405 and an unknown path 404, both with empty bodies.

pub mod body;
pub mod json;
pub mod params;

#[cfg(feature = "server")]
#[cfg(feature = "server")]
pub mod backup_routes;
#[cfg(feature = "server")]
pub mod cluster_routes;
#[cfg(feature = "server")]
pub mod console;
#[cfg(feature = "server")]
pub mod console_backup;
#[cfg(feature = "server")]
pub mod console_cluster;
#[cfg(feature = "server")]
pub mod console_restore;
#[cfg(feature = "server")]
pub mod content_coding;
#[cfg(feature = "server")]
pub mod db_routes;
#[cfg(feature = "server")]
pub mod error_status;
#[cfg(feature = "server")]
pub mod forward;
#[cfg(feature = "server")]
pub mod load_routes;
#[cfg(feature = "server")]
pub mod ops_routes;
#[cfg(feature = "server")]
pub mod response;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub mod status_routes;
#[cfg(feature = "server")]
pub mod write_queue;

#[cfg(feature = "server")]
pub use server::{app, routes, serve, AppState, CdcState, HeaderOptions, Limits};
