//! The cluster: how nodes talk to each other and agree on who is in it. Above the store
//! (it drives a [`crate::store::Store`]), below HTTP and the node.
//!
//! - [`rpc`]: the Raft port's server (Raft's append, vote and snapshot messages, and the
//!   node-to-node calls: join, remove, notify, stepdown, staged-load pulls), every route with
//!   its permission.
//! - [`network`]: the client side of the same messages (openraft's `RaftNetwork`), handed to
//!   [`crate::store::Store::open`].
//! - [`membership`]: forming, joining and leaving a cluster, and the leader's answers to joins
//!   and removals.
//! - [`discovery`]: the peers' addresses from DNS (`-disco-mode dns`, `dns-srv`).
//! - [`stepdown`]: handing leadership to a chosen voter.
//! - [`reaper`]: the leader's removal of members it has not heard from (`-raft-reap-*`).
//! - [`protocol`]: the messages, headers and bounds both ends agree on, and the JSON call.
//!
//! Nothing below this module calls into it: the store knows openraft's network only as the
//! factory it is given, so consensus and the state machine form no circle with the cluster.

pub mod discovery;
pub mod membership;
pub mod network;
pub mod protocol;
pub mod reaper;
pub mod rpc;
pub mod stepdown;
