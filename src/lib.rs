//! raftlite: a Raft-replicated SQLite server built for hot backups.
pub mod db;
pub mod shell;
