//! raftlite: a Raft-replicated SQLite server built for hot backups.
//!
//! The data flows top to bottom: `http` (rqlite's API) → `store` (propose writes, serve reads)
//! → `raft` (openraft on our log engine) and `db` (SQLite: execute, query) → `raftlite_ffi`
//! (the only unsafe code).

// `unsafe` lives only in the raftlite-ffi crate; the compiler holds this crate to that.
#![forbid(unsafe_code)]

#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod cluster;
pub mod config;
pub mod db;
#[cfg(feature = "server")]
pub mod file_stamp;
pub mod flags;
pub mod http;
#[cfg(feature = "server")]
pub mod node;
pub mod raft;
pub mod shell;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod temp_file;
#[cfg(feature = "server")]
pub mod tls;

/// The version reported in `/status`, `X-RQLITE-VERSION` and `-version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
