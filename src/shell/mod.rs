//! The `raftlite` command-line shell. Today it only has the offline commands, which work on a
//! local SQLite file without a server; the interactive rqlite-compatible shell comes later.

pub mod offline;
