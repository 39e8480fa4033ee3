//! raftlite: a Raft-replicated SQLite server built for hot backups.

pub mod config;
pub mod flags;
