//! Raft: the replicated log and the pieces openraft needs from us.

pub mod log;
#[cfg(feature = "server")]
pub mod network;
#[cfg(feature = "server")]
pub mod rpc;
#[cfg(feature = "server")]
pub mod types;
