//! raftlite: a Raft-replicated SQLite server built for hot backups.
pub mod db;
pub mod http;
pub mod store;
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub mod config;
pub mod flags;
pub mod node;
