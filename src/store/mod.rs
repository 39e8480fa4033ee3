//! The store: the narrow interface between the HTTP layer and the replicated database.
//!
//! Writes go through [`Store::execute`] (a proposal: today applied directly on the single
//! node's writer, later through Raft) and reads through [`Store::query`] (the local database,
//! after the consistency level's checks). Nothing above this module touches SQLite directly,
//! so replacing the single-node apply with Raft changes no caller.
//!
//! Apply rule (docs/error-handling.md): a deterministic SQL error is part of the result; a
//! local fault stops the node ([`stop_on_local_fault`]) instead of letting replicas diverge.

pub mod node;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::db::execute::{self, RequestResults};
use crate::db::request::{Request, ResultOptions, RowsPolicy};
use crate::db::Database;

pub use node::NodeInfo;

/// rqlite's read consistency levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadLevel {
    None,
    #[default]
    Weak,
    Linearizable,
    Strong,
    Auto,
}

impl ReadLevel {
    /// Parses `level=`, case-insensitively; unknown or absent means `weak`, as in rqlite.
    pub fn parse(s: Option<&str>) -> ReadLevel {
        match s.map(str::to_ascii_lowercase).as_deref() {
            Some("none") => ReadLevel::None,
            Some("linearizable") => ReadLevel::Linearizable,
            Some("strong") => ReadLevel::Strong,
            Some("auto") => ReadLevel::Auto,
            _ => ReadLevel::Weak,
        }
    }
}

/// Why the store could not serve a request. Each variant maps to one HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// This node is not the leader; the caller forwards, redirects or answers 503.
    #[error("not leader")]
    NotLeader { leader: Option<NodeInfo> },
    /// The store is not open yet or is shutting down.
    #[error("store not ready")]
    NotReady,
    /// An internal failure that is not the client's fault (500).
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

/// Counters shown in `/status` and `/debug/vars`.
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub executions: AtomicU64,
    pub queries: AtomicU64,
}

/// A node's store.
pub struct Store {
    db: Arc<Database>,
    node: NodeInfo,
    applied: AtomicU64,
    pub counters: StoreCounters,
}

impl Store {
    pub fn new(db: Arc<Database>, node: NodeInfo) -> Store {
        Store {
            db,
            node,
            applied: AtomicU64::new(0),
            counters: StoreCounters::default(),
        }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// This node's identity and addresses.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    /// The leader, if one is known. A single node is its own leader.
    pub fn leader(&self) -> Option<NodeInfo> {
        Some(self.node.clone())
    }

    pub fn is_leader(&self) -> bool {
        true
    }

    /// The index of the last write applied to the database.
    pub fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Proposes a write request and returns its results once it is applied.
    pub async fn execute(
        &self,
        req: Request,
        policy: RowsPolicy,
        opts: ResultOptions,
    ) -> Result<RequestResults, StoreError> {
        self.counters.executions.fetch_add(1, Ordering::Relaxed);
        let results = self
            .db
            .with_writer(move |conn| {
                conn.execute_batch("BEGIN IMMEDIATE")?;
                let out = execute::execute_request(conn, &req, policy, opts)?;
                conn.execute_batch("COMMIT")?;
                Ok::<_, raftlite_ffi::Error>(out)
            })
            .await
            .map_err(StoreError::Internal)?;
        match results {
            Ok(r) => {
                self.applied.fetch_add(1, Ordering::AcqRel);
                Ok(r)
            }
            Err(fault) => stop_on_local_fault(&fault),
        }
    }

    /// Runs a read-only request at the given consistency level.
    pub async fn query(
        &self,
        req: Request,
        level: ReadLevel,
        opts: ResultOptions,
    ) -> Result<RequestResults, StoreError> {
        self.counters.queries.fetch_add(1, Ordering::Relaxed);
        let results = if level == ReadLevel::Strong {
            // A strong read is ordered with the writes: it runs on the writer, after them.
            self.db
                .with_writer(move |conn| execute::query_request(conn, &req, opts))
                .await
        } else {
            self.db
                .with_reader(move |conn| execute::query_request(conn, &req, opts))
                .await
        };
        results
            .map_err(StoreError::Internal)?
            .map_err(|e| StoreError::Internal(anyhow::anyhow!("query: {e}")))
    }

    /// True when every statement of `req` only reads (`/db/request` routing).
    pub async fn is_read_only(&self, req: Request) -> Result<bool, StoreError> {
        self.db
            .with_reader(move |conn| execute::is_read_only(conn, &req))
            .await
            .map_err(StoreError::Internal)
    }
}

/// Stops the process after a local fault during apply: continuing would let this replica
/// diverge from the others. Recovery is a restart (the log replays from the last durable
/// point) or, if the fault persists, an operator's attention.
pub fn stop_on_local_fault(fault: &raftlite_ffi::Error) -> ! {
    tracing::error!(
        code = fault.extended_code,
        "local fault while applying a write: {fault}; stopping the node so replicas cannot diverge"
    );
    std::process::exit(70)
}
