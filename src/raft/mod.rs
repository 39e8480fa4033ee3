//! Raft: the replicated log and the pieces openraft needs from us.

pub mod log;
