//! raftlite: a Raft-replicated SQLite server built for hot backups.
//!
//! Layers, each importing only those below it: `node` (start-up) → `http` (rqlite's API) →
//! `cluster` (the Raft port: node-to-node messages, membership, stepdown) → `store` (propose
//! writes, serve reads, restores, the state machine and the commands the log carries) →
//! `raft::log` (our log engine, under openraft) and `db` (SQLite: execute, query, backup,
//! dump) → `raftlite_ffi` (the only unsafe code). `auth`, `tls`, `config`, `temp_file` serve the
//! layers above `db`; `metrics` (Prometheus, `GET /metrics`) is held by the store and rendered
//! by `http`; `shell` is the client binary's.

// `unsafe` lives only in the raftlite-ffi crate; the compiler holds this crate to that.
#![forbid(unsafe_code)]

#[cfg(feature = "server")]
pub mod archive;
#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod auto_backup;
#[cfg(feature = "server")]
pub mod cdc;
#[cfg(feature = "server")]
pub mod cluster;
pub mod config;
pub mod db;
#[cfg(feature = "server")]
pub mod extensions;
pub mod failpoint;
#[cfg(feature = "server")]
pub mod file_stamp;
pub mod flags;
pub mod http;
#[cfg(feature = "server")]
pub mod metrics;
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
