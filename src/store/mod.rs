//! The store: the narrow interface between the HTTP layer and the replicated database.
//!
//! Writes go through [`Store::execute`]: a proposal to Raft, answered once the entry is
//! committed on a majority and applied here. Reads go through [`Store::query`], which checks
//! the consistency level first (`none` reads locally, `weak` requires local leadership,
//! `linearizable` and `strong` confirm it with a quorum and wait until this node has applied
//! everything committed when they started). Local leadership holds only under a leader lease:
//! a leader that no quorum has acknowledged for an election timeout stops acting as one
//! ([`Store::is_leader`]). A store that is
//! not the leader answers [`StoreError::NotLeader`] with the leader it knows, and the HTTP
//! layer forwards, redirects or answers 503.
//!
//! A backup a follower serves from its own copy is bounded the same way as a `level=none`
//! read: [`Store::ensure_fresh`] (last contact with a leader, and an applied index waited for
//! a bounded time) answers [`NotFresh`] with the numbers.
//!
//! Restores (`/db/load`, `/boot`, the console's) are [`restore`]'s: staging, the proposal,
//! and each node's pull and install.
//!
//! Apply rule (docs/error-handling.md): a deterministic SQL error is part of the result; a
//! local fault stops the node ([`stop_on_local_fault_msg`]) instead of letting replicas diverge
//! (a full disk is waited out instead). Writes are refused with
//! [`StoreError::InsufficientStorage`] while the data directory is nearly full, and the
//! process ends if Raft stops on a fatal error.

pub mod applied_state;
pub mod backup;
pub mod batcher;
pub mod housekeeping;
pub mod node_info;
pub mod ops;
pub mod recovery;
pub mod restore;
pub mod state_machine;
pub mod types;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use openraft::error::RaftError;
use openraft::{ServerState, SnapshotPolicy};
use parking_lot::Mutex;

use crate::db::digest::{content_digest, ContentDigest};
use crate::db::execute::{self, RequestResults};
use crate::db::request::{ApplyEnv, Request, ResultOptions, RowsPolicy, StatementOutcome};
use crate::db::{Database, DbError, DbSettings, DB_FILE_NAME};
use crate::raft::log::openraft::{PurgeGate, RaftLogStore};
use crate::raft::log::{LogEngine, LogOptions};
use crate::store::types::{numeric_node_id, Command, ExecuteItem, NodeId, Raft, TypeConfig};

pub use crate::db::request::ReadLevel;
pub use node_info::{NodeInfo, NodeReport};
pub use state_machine::SharedState;

/// How stale, and how slow, a read may be: `freshness` (with `freshness_strict`) for
/// `level=none`, `linearizable_timeout` for `linearizable` and `strong`, `db_timeout` for the
/// statements themselves.
#[derive(Debug, Clone, Copy)]
pub struct ReadBounds {
    pub freshness: Option<Duration>,
    pub freshness_strict: bool,
    pub linearizable_timeout: Duration,
    pub db_timeout: Option<Duration>,
}

/// rqlite's default `linearizable_timeout`.
pub const DEFAULT_LINEARIZABLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the store could not serve a request. Each variant maps to one HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// This node is not the leader; the caller forwards, redirects or answers 503.
    #[error("not leader")]
    NotLeader { leader: Option<NodeInfo> },
    /// A `level=none` read with `freshness` on a node that has not heard from the leader
    /// recently enough, or (`freshness_strict`) has not applied what it knows to be committed
    /// within that time (rqlite's `stale read`).
    #[error("stale read")]
    StaleRead,
    /// A linearizable (or strong) read whose leadership check and apply did not finish
    /// within `linearizable_timeout` (rqlite's words for it).
    #[error("index {read_index}: timeout waiting for fsm")]
    LinearizableTimeout { read_index: u64 },
    /// The database itself failed (see [`DbError`]): a fault of this node, or a node that
    /// is shutting down.
    #[error(transparent)]
    Database(#[from] DbError),
    /// An internal failure that is not the client's fault.
    #[error("{0:#}")]
    Internal(anyhow::Error),
    /// The leader's data directory has too little free space for the write: it was refused
    /// before reaching the log (HTTP 507).
    #[error("{0}")]
    InsufficientStorage(String),
    /// The write was not applied within `-raft-apply-timeout`. Its entry goes on: it may
    /// still be applied.
    #[error(
        "timed out waiting for the write to be applied (-raft-apply-timeout {}); it may still be applied",
        crate::flags::format_go_duration(*.limit)
    )]
    ApplyTimeout { limit: Duration },
}

/// Why this node's own state is not recent enough for a request that bounded it
/// (`freshness`, `min_index`; see [`Store::ensure_fresh`]). The message names the numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFresh {
    /// This follower's last contact with a leader is older than `freshness` (or it never had
    /// one): rqlite's stale read.
    #[error(
        "stale: last contact with the leader {}, more than freshness {}",
        contact_age_text(*.age),
        crate::flags::format_go_duration(*.freshness)
    )]
    LeaderContact {
        age: Option<Duration>,
        freshness: Duration,
    },
    /// The applied index did not reach `min_index` within the wait.
    #[error(
        "behind: applied index {applied} is below min_index {min_index} after waiting {}",
        crate::flags::format_go_duration(*.waited)
    )]
    Behind {
        applied: u64,
        min_index: u64,
        waited: Duration,
    },
}

fn contact_age_text(age: Option<Duration>) -> String {
    match age {
        Some(age) => format!("{} ago", crate::flags::format_go_duration(age)),
        None => "never (since this node started)".into(),
    }
}

/// `d` without its sub-millisecond part, for messages.
fn whole_millis(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

/// How often a wait for the applied index looks at it (an atomic load).
const APPLY_POLL: Duration = Duration::from_millis(10);

/// Results of a write, with the log index it was applied at.
#[derive(Debug, Clone, Default)]
pub struct WriteResults {
    pub results: RequestResults,
    pub raft_index: u64,
}

/// Everything needed to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub data_dir: PathBuf,
    pub node: NodeInfo,
    pub db: DbSettings,
    pub log_segment_size: u64,
    /// Log entries since the last snapshot that trigger a new one (`-raft-snap`).
    pub snapshot_threshold: u64,
    /// Log entries kept behind a snapshot, so lagging followers can catch up from the log.
    pub trailing_logs: u64,
    /// `-raft-apply-timeout`: the longest a write's caller waits for it to be applied.
    pub apply_timeout: Duration,
    /// `-raft-snap-int` and `-raft-snap-wal-size`: how often the WAL is measured, and the
    /// bytes of it in use that start a snapshot (`None`: never, as `-raft-snap-wal-size 0`).
    pub wal_snapshot: Option<(Duration, u64)>,
    pub election_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Where backup copies go and what they may use.
    pub backup: backup::BackupOptions,
    /// `-cdc-config`: write entries are captured and queued as they apply (`crate::cdc`).
    pub cdc: Option<crate::cdc::CdcConfig>,
}

/// A node's store.
pub struct Store {
    db: Arc<Database>,
    node: NodeInfo,
    node_id: NodeId,
    raft: Raft,
    /// Group commit: concurrent writes share an entry.
    writes: batcher::WriteBatcher,
    shared: Arc<SharedState>,
    data_dir: PathBuf,
    /// When this node last heard from a leader (AppendEntries), for `freshness`.
    last_leader_contact: Mutex<Option<Instant>>,
    /// The term this node was first seen leading and when, for the lease of a leader that no
    /// quorum has acknowledged yet ([`Store::lease_holds`]).
    leading_since: Mutex<Option<(u64, Instant)>>,
    /// Whether the log held Raft state when the node opened it.
    opened_with_state: bool,
    pub counters: StoreCounters,
    /// Nodes that announced themselves while waiting for `-bootstrap-expect` peers.
    discovered: Mutex<BTreeMap<String, NodeInfo>>,
    backups: Arc<backup::Backups>,
    /// The Raft log (openraft owns its adapter): its size and committed index for `/metrics`.
    log: LogEngine,
    /// The purges the archiver holds back run when it ships more (see `PurgeGate`).
    purge_gate: Arc<PurgeGate>,
    /// Set when the leader said it removed this node (`cluster::membership`).
    removed: tokio::sync::watch::Sender<Option<u64>>,
    /// `-raft-apply-timeout` (see [`StoreOptions::apply_timeout`]).
    apply_timeout: Duration,
}

/// Counters shown in `/status` and `/debug/vars`.
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub executions: AtomicU64,
    pub queries: AtomicU64,
    pub join_requests: AtomicU64,
    pub ignored_joins: AtomicU64,
    /// `GET /db/backup` answers that started streaming (proxied ones are counted by the leader).
    pub backups: AtomicU64,
    /// `/db/load` and `/boot` requests that were applied (`http.loads`).
    pub loads: AtomicU64,
    /// When the last of those started (RFC 3339), if any.
    pub last_backup_time: Mutex<Option<String>>,
    /// `/boot` requests that were applied (`http.boot`; also counted in `loads`).
    pub boots: AtomicU64,
    /// Joins of a known id at a new address: the member was updated (rqlite's
    /// `num_removed_before_joins`).
    pub updated_joins: AtomicU64,
    /// `POST /snapshot` and `POST /reap` requests served (`http.user_snapshots`, `http.user_reaps`).
    pub user_snapshots: AtomicU64,
    pub user_reaps: AtomicU64,
    /// `-auto-restore` (`auto_backup::restore`): downloads (rqlite's `downloader` map) and
    /// what became of them (`store.num_auto_restores*`).
    pub downloads_ok: AtomicU64,
    pub downloads_fail: AtomicU64,
    pub download_bytes: AtomicU64,
    pub auto_restores: AtomicU64,
    pub auto_restores_skipped: AtomicU64,
    pub auto_restores_failed: AtomicU64,
    /// Members the leader removed for silence (`cluster::reaper`), and removals that failed
    /// (rqlite's `nodes_reaped_ok`, `nodes_reaped_failed`).
    pub nodes_reaped_ok: AtomicU64,
    pub nodes_reaped_failed: AtomicU64,
    /// `PRAGMA optimize` runs the leader proposed (`housekeeping`; rqlite's
    /// `num_auto_optimizes`, `num_auto_optimizes_failed`).
    pub auto_optimizes: AtomicU64,
    pub auto_optimizes_failed: AtomicU64,
    /// `-auto-vacuum-int` runs this leader proposed, and those that failed (rqlite's
    /// `num_auto_vacuums`, `num_auto_vacuums_failed`).
    pub auto_vacuums: AtomicU64,
    pub auto_vacuums_failed: AtomicU64,
}

impl Store {
    /// Opens the database, the log and the state machine, and starts Raft, which reaches
    /// other nodes through `network` (the cluster's client: `cluster::network`). The node is
    /// not yet part of a cluster: see `cluster::membership::form_or_join`.
    pub async fn open<N>(opts: StoreOptions, network: N) -> anyhow::Result<Arc<Store>>
    where
        N: openraft::network::RaftNetworkFactory<TypeConfig>,
    {
        let db = Arc::new(Database::open(
            opts.data_dir.join(DB_FILE_NAME),
            opts.db.clone(),
        )?);
        let (sm, shared) =
            state_machine::SqliteStateMachine::open(Arc::clone(&db), opts.data_dir.clone()).await?;
        if let Some(config) = &opts.cdc {
            let queue = crate::cdc::queue::Queue::open(&opts.data_dir)
                .context("open the change data capture queue")?;
            let apply = crate::cdc::CdcApply::new(config, Arc::new(queue));
            let _ = shared.cdc.set(Arc::new(apply));
        }
        let backups = Arc::new(backup::Backups::new(opts.backup.clone()));
        let sm = sm
            .with_raft_addr(opts.node.raft_addr.clone())
            .with_backups(Arc::clone(&backups));
        sm.resume_retirements();
        let log_options = LogOptions {
            segment_size: opts.log_segment_size,
            ..LogOptions::default()
        };
        let log = RaftLogStore::<TypeConfig>::open(opts.data_dir.join("raft"), log_options)
            .context("open the Raft log")?
            .with_stopping(Arc::clone(&shared.stopping));
        let applied_membership = shared.applied.lock().membership.clone();
        if recovery::recover_if_requested(&opts.data_dir, &log, &applied_membership, &opts.node)
            .context("peers.json recovery")?
        {
            shared.num_recoveries.fetch_add(1, Ordering::Relaxed);
        }
        let bounds = log.engine().bounds();
        sm.record_snapshot_if_ahead(bounds.last_index, bounds.purged.map(|p| p.index))
            .await?;
        // A purge past the durable snapshot waits for it, and while this node leads and
        // archives, a purge past what the archive holds waits for the archiver (see
        // `PurgeGate`), as long as the log is under its hold limit and the disk keeps
        // `-disk-reserve` free: a full disk must not stop every write for the archive's sake.
        let durable = {
            let shared = Arc::clone(&shared);
            move || shared.snapshot_index()
        };
        let archived = {
            let shared = Arc::clone(&shared);
            let engine = log.engine().clone();
            let data_dir = opts.data_dir.clone();
            let reserve = opts.backup.disk_reserve;
            move || {
                let hold = shared.archive_log_hold.load(Ordering::Relaxed);
                let holding = hold > 0
                    && shared.leading.load(Ordering::Relaxed)
                    && engine.disk_bytes() < hold
                    && crate::db::disk::free_bytes(&data_dir).is_ok_and(|free| free > reserve);
                holding.then(|| shared.archived_index.load(Ordering::Relaxed))
            }
        };
        let purge_gate = PurgeGate::new(durable, archived);
        let log = log.with_purge_gate(Arc::clone(&purge_gate));
        let log_engine = log.engine().clone();
        let sm = sm.with_purge_gate(Arc::clone(&purge_gate), log.engine().clone());
        let election_ms = opts.election_timeout.as_millis().max(150) as u64;
        let config = openraft::Config {
            cluster_name: "raftlite".into(),
            election_timeout_min: election_ms,
            election_timeout_max: election_ms * 2,
            heartbeat_interval: (opts.heartbeat_interval.as_millis() as u64)
                .clamp(20, election_ms / 3),
            install_snapshot_timeout: 60_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_threshold.max(1)),
            max_in_snapshot_log_to_keep: opts.trailing_logs,
            ..Default::default()
        }
        .validate()
        .context("Raft configuration")?;
        let node_id = numeric_node_id(&opts.node.id);
        let raft = Raft::new(node_id, Arc::new(config), network, log, sm)
            .await
            .context("start Raft")?;
        // Read before the Raft port serves: entries a leader sends once it does must not make
        // a node that lost its data look like one that kept it.
        let opened_with_state = raft.is_initialized().await.context("read Raft state")?;
        let (load_tx, load_rx) = tokio::sync::mpsc::unbounded_channel();
        *shared.load_applied.lock() = Some(load_tx);
        tokio::spawn(snapshot_after_loads(raft.clone(), load_rx));
        tokio::spawn(track_raft_metrics(raft.clone(), Arc::clone(&shared)));
        tokio::spawn(stop_when_raft_fails(raft.clone()));
        tokio::spawn(checkpoint_wal(Arc::downgrade(&db)));
        if let Some((every, bytes)) = opts.wal_snapshot {
            tokio::spawn(snapshot_on_wal_size(
                raft.clone(),
                db.path().to_path_buf(),
                Arc::clone(&shared),
                every,
                bytes,
            ));
        }
        Ok(Arc::new(Store {
            db,
            node: opts.node,
            node_id,
            writes: batcher::WriteBatcher::start(raft.clone(), Arc::clone(&shared.metrics)),
            log: log_engine,
            purge_gate,
            removed: tokio::sync::watch::channel(None).0,
            apply_timeout: opts.apply_timeout,
            raft,
            shared,
            data_dir: opts.data_dir,
            last_leader_contact: Mutex::new(None),
            leading_since: Mutex::new(None),
            opened_with_state,
            counters: StoreCounters::default(),
            discovered: Mutex::new(BTreeMap::new()),
            backups,
        }))
    }

    /// Nodes heard of through `/raft/notify` while waiting to form a cluster
    /// (`-bootstrap-expect`; see `cluster::membership`).
    pub fn discovered(&self) -> &Mutex<BTreeMap<String, NodeInfo>> {
        &self.discovered
    }

    /// The backup engine: every copy of the database that leaves this node.
    pub fn backups(&self) -> &backup::Backups {
        &self.backups
    }

    /// The node's Prometheus metrics (`GET /metrics`; see [`crate::metrics`]).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.shared.metrics
    }

    /// The node as `/metrics` shows it now: Raft's state and indexes, the log's size, the
    /// backup copies.
    pub fn metrics_reading(&self) -> crate::metrics::NodeReading {
        use crate::metrics::RaftRole;
        let raft = self.raft.metrics().borrow().clone();
        let applied = self.applied_index();
        // openraft tells the log its committed id; nothing applied can be uncommitted, so the
        // applied index is a floor (a node that has not been told yet since it started).
        let committed = self.committed_index();
        let (copies_made, copies_shared) = self.backups.copies_made_and_shared();
        crate::metrics::NodeReading {
            raft_role: match raft.state {
                ServerState::Leader => RaftRole::Leader,
                ServerState::Follower => RaftRole::Follower,
                ServerState::Candidate => RaftRole::Candidate,
                ServerState::Learner => RaftRole::Learner,
                ServerState::Shutdown => RaftRole::Shutdown,
            },
            term: raft.current_term,
            commit_index: committed,
            applied_index: applied,
            last_log_index: raft.last_log_index.unwrap_or(0),
            log_bytes: self.log.disk_bytes(),
            copies_in_progress: self.backups.copies_in_progress() as u64,
            copies_made,
            copies_shared,
            // The HTTP side adds the automatic backups' and the archive's figures.
            ..Default::default()
        }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn shared(&self) -> &Arc<SharedState> {
        &self.shared
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// This node's identity and addresses.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The members of the cluster (voters and non-voters), by openraft id.
    pub fn members(&self) -> BTreeMap<NodeId, NodeInfo> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.nodes().map(|(id, n)| (*id, n.clone())).collect()
    }

    /// The ids of the voters.
    pub fn voter_ids(&self) -> Vec<NodeId> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().voter_ids().collect()
    }

    /// The leader, if one is known.
    pub fn leader(&self) -> Option<NodeInfo> {
        let metrics = self.raft.metrics().borrow().clone();
        let id = metrics.current_leader?;
        if id == self.node_id {
            // A leader cut off from the majority knows no leader once its lease runs out.
            // Our own addresses may have changed since the membership recorded them.
            return self.lease_holds(&metrics).then(|| self.node.clone());
        }
        let membership = metrics.membership_config.clone();
        let found = membership
            .nodes()
            .find(|(nid, _)| **nid == id)
            .map(|(_, n)| n.clone());
        found
    }

    /// Whether this node leads: Raft made it leader and a quorum of voters has acknowledged
    /// it within the leader lease (see [`Store::lease_holds`]). Writes, `weak` reads,
    /// `/readyz` and `/status` go by this.
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        Self::raft_leads(&metrics, self.node_id) && self.lease_holds(&metrics)
    }

    /// Whether Raft itself has this node as leader, lease or not (stepdown, which pauses the
    /// heartbeats that renew the lease on purpose, goes by this).
    pub fn raft_is_leader(&self) -> bool {
        Self::raft_leads(&self.raft.metrics().borrow(), self.node_id)
    }

    fn raft_leads(metrics: &openraft::RaftMetrics<NodeId, NodeInfo>, me: NodeId) -> bool {
        metrics.state == ServerState::Leader && metrics.current_leader == Some(me)
    }

    /// The leader lease, as in rqlite (hashicorp/raft steps a leader down when it has not
    /// heard from a quorum for `LeaderLeaseTimeout`). openraft 0.9 keeps a leader cut off
    /// from the majority a leader until it hears of a newer term, so without a lease such a
    /// node served `weak` reads, said `[+]leader ok` and named itself leader for as long as
    /// the partition lasted. The lease is the election timeout's lower bound: a quorum
    /// acknowledged the leader at `millis_since_quorum_ack` (openraft counts from when the
    /// acknowledged heartbeat or entry was sent), and its members refuse to vote for anyone
    /// else for the maximum election timeout after that, so no other leader can exist while
    /// the lease holds (openraft's metrics are refreshed at least every 1.5 heartbeat
    /// intervals, a third of the gap between the two bounds). Before the first
    /// acknowledgement of its term, a new leader counts from when it was first seen leading.
    fn lease_holds(&self, metrics: &openraft::RaftMetrics<NodeId, NodeInfo>) -> bool {
        let lease = Duration::from_millis(self.raft.config().election_timeout_min);
        match metrics.millis_since_quorum_ack {
            Some(ms) => Duration::from_millis(ms) < lease,
            None => {
                let mut since = self.leading_since.lock();
                match *since {
                    Some((term, at)) if term == metrics.current_term => at.elapsed() < lease,
                    _ => {
                        *since = Some((metrics.current_term, Instant::now()));
                        true
                    }
                }
            }
        }
    }

    /// Whether applying a load keeps its content for the archiver (`archive`: on while this
    /// node leads and its last shipment succeeded).
    pub fn set_archive_active(&self, on: bool) {
        self.shared.archive_active.store(on, Ordering::Relaxed);
    }

    /// While this node leads and archives (`archive`), its log is not purged past what the
    /// archive holds until it takes `max_bytes` (0: no hold). Released, the purges that
    /// waited run.
    pub fn hold_log_for_archive(&self, max_bytes: u64) {
        let was = self
            .shared
            .archive_log_hold
            .swap(max_bytes, Ordering::Relaxed);
        if max_bytes == 0 && was != 0 {
            self.run_deferred_purge();
        }
    }

    /// The archiver has everything up to `index` in storage: the log may be purged to it.
    pub fn note_archived(&self, index: u64) {
        self.shared.archived_index.store(index, Ordering::Relaxed);
        self.run_deferred_purge();
    }

    fn run_deferred_purge(&self) {
        if let Err(e) = self.purge_gate.run_deferred(&self.log) {
            tracing::warn!("the log's purge held back for the archive: {e}");
        }
    }

    pub fn is_voter(&self) -> bool {
        self.voter_ids().contains(&self.node_id) || self.members().is_empty()
    }

    /// The content a backup made now would hold (its lineage and applied log id): what
    /// conditional backups compare with.
    pub fn applied_content(&self) -> backup::ContentId {
        backup::ContentId::of(&self.shared.applied.lock())
    }

    /// The highest index this node knows to be committed (at least its applied index).
    pub fn committed_index(&self) -> u64 {
        crate::raft::log::openraft::committed_id::<TypeConfig>(&self.log)
            .map_or(0, |l| l.index)
            .max(self.applied_index())
    }

    /// The index of the last entry applied to the database.
    pub fn applied_index(&self) -> u64 {
        self.shared.applied_index.load(Ordering::Acquire)
    }

    /// Applied entries of the log from `from`, as the log stores them, up to `upto` and at
    /// most `max_bytes` of payload (one at least): what continuous archiving ships. Empty when
    /// `from` is no longer in the log (purged after a snapshot) or not yet applied.
    pub fn applied_records(
        &self,
        from: u64,
        upto: u64,
        max_bytes: u64,
    ) -> anyhow::Result<Vec<crate::raft::log::Record>> {
        let upto = upto.min(self.applied_index());
        let first = self.log.bounds().first_index;
        if from > upto || first.is_none_or(|f| f > from) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut next = from;
        while next <= upto && (out.is_empty() || bytes < max_bytes) {
            // In steps, so a long stretch is never read at once.
            let end = (next + 256).min(upto + 1);
            let records = self.log.read(next..end).context("read the log")?;
            if records.is_empty() {
                break;
            }
            for r in records {
                next = r.index + 1;
                bytes += r.data.len() as u64;
                out.push(r);
                if bytes >= max_bytes {
                    break;
                }
            }
        }
        // The log skips what a purge removed meanwhile: a run that does not start at `from`
        // is no run from `from`.
        if out.first().is_some_and(|r| r.index != from) {
            return Ok(Vec::new());
        }
        Ok(out)
    }

    /// Whether the node started with Raft state on disk (it was a member before), as read
    /// before any other node could reach it.
    pub fn opened_with_state(&self) -> bool {
        self.opened_with_state
    }

    /// The first index the log still holds, if any.
    pub fn log_first_index(&self) -> Option<u64> {
        self.log.bounds().first_index
    }

    /// `Some(why)` when this node is a follower whose last contact with a leader is older
    /// than `freshness` (or that never had one); a leader is always fresh. The one notion of
    /// staleness, for `level=none` reads and for backups.
    fn stale_contact(&self, freshness: Duration) -> Option<NotFresh> {
        if self.is_leader() {
            return None;
        }
        let elapsed = self.last_leader_contact.lock().map(|t| t.elapsed());
        contact_too_old(elapsed, freshness)
    }

    /// Whether this node's own state is recent enough to answer from, for a request that
    /// bounds it (a backup served by a follower): its last contact with a leader within
    /// `freshness` (a leader: always), and its applied index at least `min_index`, waiting
    /// up to `wait` for the apply to get there. Contact is checked before the wait (a node
    /// cut off from the leader says so at once) and again after it (contact may have been
    /// lost meanwhile).
    pub async fn ensure_fresh(
        &self,
        freshness: Option<Duration>,
        min_index: Option<u64>,
        wait: Duration,
    ) -> Result<(), NotFresh> {
        let contact = || match freshness {
            Some(limit) => self.stale_contact(limit).map_or(Ok(()), Err),
            None => Ok(()),
        };
        contact()?;
        if let Some(min_index) = min_index {
            let started = tokio::time::Instant::now();
            let deadline = started + wait;
            loop {
                let applied = self.applied_index();
                if applied >= min_index {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(NotFresh::Behind {
                        applied,
                        min_index,
                        waited: whole_millis(started.elapsed()),
                    });
                }
                tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + APPLY_POLL))
                    .await;
            }
        }
        contact()
    }

    /// Records that a leader just sent us entries (or a heartbeat).
    pub fn note_leader_contact(&self) {
        *self.last_leader_contact.lock() = Some(Instant::now());
    }

    fn not_leader(&self) -> StoreError {
        StoreError::NotLeader {
            leader: self.leader(),
        }
    }

    /// Proposes a write request and returns its results once it is applied here. Its budget
    /// (see `db::gate`) is the node's `-write-budget-steps`, lowered to what `db_timeout` buys
    /// when the client gave one.
    pub async fn execute(
        &self,
        request: Request,
        policy: RowsPolicy,
        opts: ResultOptions,
        db_timeout: Option<Duration>,
    ) -> Result<WriteResults, StoreError> {
        self.counters.executions.fetch_add(1, Ordering::Relaxed);
        self.propose_write(request, policy, opts, db_timeout).await
    }

    /// A write through Raft as [`Store::execute`] makes it, without counting it as a user's
    /// (`housekeeping` proposes its own).
    pub(crate) async fn propose_write(
        &self,
        request: Request,
        policy: RowsPolicy,
        opts: ResultOptions,
        db_timeout: Option<Duration>,
    ) -> Result<WriteResults, StoreError> {
        let mut request = request;
        for stmt in &mut request.statements {
            if let Some(pinned) = crate::db::rewrite::pin_optimize(&stmt.sql) {
                stmt.sql = pinned;
            }
        }
        let not_before = self.shared.last_apply_millis.load(Ordering::Relaxed);
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        self.check_room_for_write(&request)?;
        let write = self.while_leading(self.writes.write(ExecuteItem {
            request,
            policy,
            opts,
            env: ApplyEnv::stamp(not_before).with_budget(crate::db::request::write_budget(
                self.db.settings().write_budget_steps,
                db_timeout,
            )),
        }));
        // The entry goes on whatever the caller is told: only the wait is bounded (0: not
        // at all, as in rqlited).
        let limit = self.apply_timeout;
        if limit.is_zero() {
            return write.await;
        }
        tokio::time::timeout(limit, write)
            .await
            .unwrap_or(Err(StoreError::ApplyTimeout { limit }))
    }

    /// Refuses a write when the data directory's file system has less free space than
    /// [`WRITE_HEADROOM`] plus twice the request: a write that met a full disk in the log
    /// would stop Raft on this node, and one that met it in SQLite would stall applying until
    /// space returns. A free space that cannot be read refuses nothing.
    fn check_room_for_write(&self, request: &Request) -> Result<(), StoreError> {
        let needed = WRITE_HEADROOM + 2 * batcher::approx_bytes(request) as u64;
        match crate::db::disk::free_bytes(&self.data_dir) {
            Ok(free) if free < needed => Err(StoreError::InsufficientStorage(format!(
                "not enough disk space for the write: {free} bytes free on the file system of \
                 {}, {needed} needed; nothing was written",
                self.data_dir.display()
            ))),
            _ => Ok(()),
        }
    }

    /// Waits for a proposed write while this node leads. A leader cut off from the majority
    /// cannot learn whether its entry commits until the partition heals, which may be never:
    /// once its lease has run out ([`Store::lease_holds`]) the caller is answered instead,
    /// with hashicorp/raft's words (what rqlite answers then): the write may or may not be
    /// applied. Without this, such a write's request stayed open for as long as the
    /// partition lasted.
    async fn while_leading<T>(
        &self,
        write: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let mut write = std::pin::pin!(write);
        let period = Duration::from_millis(self.raft.config().heartbeat_interval.max(10));
        loop {
            tokio::select! {
                out = &mut write => return out,
                () = tokio::time::sleep(period) => {
                    if !self.is_leader() {
                        return Err(StoreError::Internal(anyhow::anyhow!(
                            "leadership lost while committing log"
                        )));
                    }
                }
            }
        }
    }

    /// Write entries proposed and writes that shared one (see [`batcher`]).
    pub fn batch_counters(&self) -> &batcher::BatchCounters {
        &self.writes.counters
    }

    async fn propose(&self, command: Command) -> Result<WriteResults, StoreError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let write = async {
            self.raft.client_write(command).await.map_err(|e| match e {
                RaftError::APIError(e) => batcher::write_error(&e),
                e => StoreError::Internal(anyhow::anyhow!("write through Raft: {e}")),
            })
        };
        let resp = self.while_leading(write).await?;
        Ok(WriteResults {
            results: resp.data.results,
            raft_index: resp.log_id.index,
        })
    }

    /// Proposes a `VACUUM` entry (`-auto-vacuum-int`, see [`housekeeping`]) and returns once it
    /// is applied on this node.
    pub async fn propose_vacuum(&self) -> Result<WriteResults, StoreError> {
        self.propose(Command::Vacuum).await
    }

    /// Proposes a change data capture high-water mark (see [`crate::cdc`]) and returns once
    /// it is applied on this node.
    pub async fn propose_cdc_high_watermark(&self, index: u64) -> Result<WriteResults, StoreError> {
        self.propose(Command::CdcHighWatermark(index)).await
    }

    /// Proposes a load entry for content staged here (see [`restore`]) and returns once it is
    /// applied on this node.
    pub async fn propose_load(
        &self,
        cmd: crate::store::types::LoadCommand,
    ) -> Result<WriteResults, StoreError> {
        self.propose(Command::Load(cmd)).await
    }

    /// Proposes a SQL load (see [`restore`] and [`restore::build_once`]) and returns once it is
    /// applied on this node.
    pub async fn propose_sql_load(
        &self,
        load: crate::store::types::SqlLoad,
    ) -> Result<WriteResults, StoreError> {
        self.propose(Command::LoadSql(load)).await
    }

    /// A clock, seed and budget for a new entry proposed here (see [`ApplyEnv::stamp`]).
    pub fn stamp(&self) -> ApplyEnv {
        ApplyEnv::stamp(self.shared.last_apply_millis.load(Ordering::Relaxed))
            .with_budget(self.db.settings().write_budget_steps)
    }

    /// True when this node is the only member of its cluster (`/boot`).
    pub fn is_single_node(&self) -> bool {
        self.members().len() == 1
    }

    /// Runs a read-only request at the given consistency level, within `bounds`.
    pub async fn query(
        &self,
        request: Request,
        level: ReadLevel,
        opts: ResultOptions,
        bounds: ReadBounds,
    ) -> Result<RequestResults, StoreError> {
        let ReadBounds {
            freshness,
            freshness_strict,
            linearizable_timeout,
            db_timeout,
        } = bounds;
        self.counters.queries.fetch_add(1, Ordering::Relaxed);
        let level = match level {
            ReadLevel::Auto if self.is_voter() => ReadLevel::Weak,
            ReadLevel::Auto => ReadLevel::None,
            l => l,
        };
        match level {
            ReadLevel::None => {
                if let Some(limit) = freshness {
                    // Strict: also everything this node knows to be committed must be in the
                    // database, waiting for the apply no longer than `freshness` (rqlite
                    // compares the timestamps of the last applied entry instead; see
                    // docs/compatibility.md). `ensure_fresh` checks the contact too.
                    let fresh = if freshness_strict && !self.is_leader() {
                        let committed = self.committed_index();
                        self.ensure_fresh(Some(limit), Some(committed), limit)
                            .await
                            .is_ok()
                    } else {
                        self.stale_contact(limit).is_none()
                    };
                    if !fresh {
                        return Err(StoreError::StaleRead);
                    }
                }
            }
            ReadLevel::Weak | ReadLevel::Auto => {
                if !self.is_leader() {
                    return Err(self.not_leader());
                }
            }
            // A strong read used to go through the log (rqlite's way), which made it a write:
            // it ran on the writer, with whatever the text held. It now does what the log
            // gave it: openraft's read index (leadership confirmed by a quorum, then this
            // node's state machine applied at least up to the commit index of that moment),
            // then a local read on a read-only connection.
            //
            // A leader whose lease ran out is no leader here either (rqlite's deposed leader
            // answers `leader not found`), and neither is one that could not get a quorum to
            // confirm it: both answer as a node without a leader, never with a value.
            ReadLevel::Linearizable | ReadLevel::Strong => {
                if !self.is_leader() {
                    return Err(self.not_leader());
                }
                let read_index = self.committed_index();
                let confirmed =
                    tokio::time::timeout(linearizable_timeout, self.raft.ensure_linearizable())
                        .await
                        .map_err(|_| StoreError::LinearizableTimeout { read_index })?;
                match confirmed {
                    Ok(_) => {}
                    Err(RaftError::APIError(
                        openraft::error::CheckIsLeaderError::ForwardToLeader(f),
                    )) => {
                        return Err(StoreError::NotLeader {
                            leader: f.leader_node,
                        })
                    }
                    Err(RaftError::APIError(
                        openraft::error::CheckIsLeaderError::QuorumNotEnough(e),
                    )) => {
                        tracing::info!("a linearizable read found no quorum: {e}");
                        return Err(StoreError::NotLeader { leader: None });
                    }
                    Err(e) => {
                        return Err(StoreError::Internal(anyhow::anyhow!(
                            "confirm leadership: {e}"
                        )))
                    }
                }
            }
        }
        let limits = execute::ReadLimits {
            budget_steps: self.db.settings().write_budget_steps,
            max_result_bytes: self.db.settings().max_query_result_bytes,
        };
        self.db
            .with_reader(move |conn| {
                let deadline = db_timeout.map(|d| ReadDeadline::start(conn.interrupt_handle(), d));
                let mut out = execute::query_request(conn, &request, opts, limits);
                if deadline.is_some_and(ReadDeadline::finish) {
                    // The interrupt may have landed after the last statement: a statement run
                    // now absorbs it, so the pooled connection is clean for its next reader.
                    let _ = conn.query_i64("SELECT 1");
                    if let Ok(r) = &mut out {
                        for res in &mut r.results {
                            if matches!(&res.outcome, StatementOutcome::Error(m) if m == "interrupted") {
                                res.outcome = StatementOutcome::Error(QUERY_TIMEOUT.into());
                            }
                        }
                    }
                }
                out
            })
            .await?
            .map_err(|e| StoreError::Internal(anyhow::anyhow!("query: {e}")))
    }

    /// A digest of this node's database content and the applied index it reflects, both read
    /// in one read transaction on a read connection: it never blocks the writer.
    pub async fn content_digest(&self) -> Result<(u64, ContentDigest), StoreError> {
        self.db
            .with_reader(|conn| -> anyhow::Result<(u64, ContentDigest)> {
                conn.execute_batch("BEGIN")?;
                let read = (|| -> anyhow::Result<(u64, ContentDigest)> {
                    let applied = applied_state::read(conn)?;
                    let digest = content_digest(conn, crate::db::STATE_TABLE)?;
                    Ok((applied.log_id.map_or(0, |l| l.index), digest))
                })();
                let _ = conn.execute_batch("ROLLBACK");
                read
            })
            .await?
            .map_err(StoreError::Internal)
    }

    /// True when every statement of `req` only reads (`/db/request` routing). The request is
    /// handed back: it is the caller's to run next, and a copy would double its memory.
    pub async fn is_read_only(&self, req: Request) -> Result<(Request, bool), StoreError> {
        self.db
            .with_reader(move |conn| {
                let read_only = execute::is_read_only(conn, &req);
                (req, read_only)
            })
            .await
            .map_err(StoreError::Database)
    }

    /// Marks the node as stopping, first thing on a stop signal: an entry waiting for disk
    /// space gives up (and the node stops with it) instead of holding the stop forever.
    pub fn begin_stopping(&self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
    }

    /// The leader removed this node from the cluster with the membership at `index` (it said
    /// so: `/cluster/removed`).
    pub fn note_removed(&self, index: u64) {
        self.removed.send_replace(Some(index));
    }

    /// Returns once the leader has said it removed this node, unless this node holds a newer
    /// membership with itself in it a moment later (it joined again: a notice can reach a
    /// node that restarted and rejoined).
    pub async fn removed_from_cluster(&self) {
        let mut removed = self.removed.subscribe();
        loop {
            let Ok(notice) = removed.wait_for(|r| r.is_some()).await.map(|r| *r) else {
                return std::future::pending().await;
            };
            let index = notice.unwrap_or(0);
            // A rejoin's membership reaches this node from the leader within heartbeats.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rejoined = {
                let metrics = self.raft.metrics();
                let m = metrics.borrow();
                m.membership_config
                    .log_id()
                    .is_some_and(|l| l.index > index)
                    && m.membership_config
                        .nodes()
                        .any(|(id, _)| *id == self.node_id)
            };
            if !rejoined {
                return;
            }
            tracing::info!("a removal notice is older than this node's membership; ignored");
            self.removed.send_replace(None);
        }
    }

    /// Whether the node is stopping ([`Store::begin_stopping`]).
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::Relaxed)
    }

    /// Stops Raft and closes the database.
    pub async fn shutdown(&self) {
        self.begin_stopping();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("stop Raft: {e}");
        }
        self.db.close();
    }
}

/// The per-statement error of a read cut short by `db_timeout` (rqlite's).
pub const QUERY_TIMEOUT: &str = crate::db::gate::QUERY_TIMEOUT_ERROR;

/// `db_timeout` for a read: interrupts the reader's connection when the time is up, unless the
/// read finished first. (A read also has the node's budget of steps, as writes do; a write's
/// `db_timeout` becomes a budget of steps instead, the same on every node.)
struct ReadDeadline {
    state: Arc<(std::sync::Mutex<(bool, bool)>, std::sync::Condvar)>,
}

impl ReadDeadline {
    fn start(handle: raftlite_ffi::InterruptHandle, limit: Duration) -> ReadDeadline {
        // (finished, fired)
        let state = Arc::new((
            std::sync::Mutex::new((false, false)),
            std::sync::Condvar::new(),
        ));
        let timer = Arc::clone(&state);
        std::thread::spawn(move || {
            let (lock, cvar) = &*timer;
            let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            let (mut guard, _) = cvar
                .wait_timeout_while(guard, limit, |s| !s.0)
                .unwrap_or_else(|p| p.into_inner());
            if !guard.0 {
                // Under the lock: `finish` cannot return, and the connection cannot go back
                // to the pool, while the interrupt is being delivered.
                handle.interrupt();
                guard.1 = true;
            }
        });
        ReadDeadline { state }
    }

    /// Stops the timer; true when it fired.
    fn finish(self) -> bool {
        let (lock, cvar) = &*self.state;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        guard.0 = true;
        cvar.notify_all();
        guard.1
    }
}

/// Keeps [`SharedState::member_addrs`] current with the newest membership in the log, and
/// [`SharedState::leading`] with the Raft state.
async fn track_raft_metrics(raft: Raft, shared: Arc<SharedState>) {
    let mut metrics = raft.metrics();
    loop {
        let (addrs, leading) = {
            let m = metrics.borrow();
            let addrs: Vec<String> = m
                .membership_config
                .nodes()
                .map(|(_, n)| n.raft_addr.clone())
                .collect();
            (addrs, m.state == openraft::ServerState::Leader)
        };
        *shared.member_addrs.lock() = addrs;
        shared.leading.store(leading, Ordering::Relaxed);
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// After each applied load: take a snapshot, then purge the log up to the load entry, so a
/// node that joins (or falls behind) later receives the loaded database as a snapshot instead
/// of replaying an entry whose staged content may be gone. While this node archives, the log
/// itself keeps the entries the archive lacks (`PurgeGate`).
async fn snapshot_after_loads(raft: Raft, mut applied: tokio::sync::mpsc::UnboundedReceiver<u64>) {
    while let Some(index) = applied.recv().await {
        if let Err(e) = raft.trigger().snapshot().await {
            tracing::warn!("snapshot after a load: {e}");
            continue;
        }
        let mut metrics = raft.metrics();
        let done = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if metrics.borrow().snapshot.is_some_and(|s| s.index >= index) {
                    return true;
                }
                if metrics.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await;
        if done != Ok(true) {
            tracing::warn!(index, "no snapshot covered the load; the log is not purged");
            continue;
        }
        if let Err(e) = raft.trigger().purge_log(index).await {
            tracing::warn!("purge the log after a load: {e}");
        }
    }
}

/// Stops the process when openraft stops Raft on a fatal error (a storage error of the log or
/// the state machine it cannot go on from, such as a failed fsync): without Raft the node
/// can neither write nor catch up, and its metrics would go on naming the last leader, so it
/// would look ready while it can do nothing. A restart reopens the log, which re-reads the
/// disk. A shutdown asked for (`Fatal::Stopped`) is not a failure.
async fn stop_when_raft_fails(raft: Raft) {
    let mut metrics = raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow().running_state {
            if !matches!(fatal, openraft::error::Fatal::Stopped) {
                tracing::error!(
                    "Raft stopped on a fatal error: {fatal}; stopping the node (restart it once \
                     the cause is dealt with)"
                );
                eprintln!("raftlited: Raft stopped on a fatal error: {fatal}; stopping");
                std::process::exit(70)
            }
            return;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Stops the process after a local fault during apply: continuing would let this replica
/// diverge from the others. Recovery is a restart (the log replays from the last durable
/// point) or, if the fault persists, an operator's attention.
pub fn stop_on_local_fault_msg(fault: &str) -> ! {
    tracing::error!(
        "local fault while applying: {fault}; stopping the node so replicas cannot diverge"
    );
    eprintln!("raftlited: local fault while applying: {fault}; stopping");
    std::process::exit(70)
}

/// Free bytes a write needs on the leader's data directory beyond twice its own size: room for
/// its log entry, the WAL frames it adds and the metadata written around them.
pub const WRITE_HEADROOM: u64 = 1 << 20;

/// How often the WAL is checked for a checkpoint (see [`Database::checkpoint_if_due`]).
const CHECKPOINT_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Keeps the WAL short from outside the writer thread, for as long as the database lives.
async fn checkpoint_wal(db: std::sync::Weak<Database>) {
    let mut tick = tokio::time::interval(CHECKPOINT_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warning: Option<Instant> = None;
    loop {
        tick.tick().await;
        let Some(db) = db.upgrade() else { return };
        if let Err(e) = db.checkpoint_if_due().await {
            if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                tracing::warn!("checkpoint the WAL: {e:#}");
                last_warning = Some(Instant::now());
            }
        }
    }
}

/// rqlited's WAL-size snapshots (`-raft-snap-wal-size`, checked every `-raft-snap-int`): a
/// snapshot starts when the WAL holds at least `threshold` bytes of frames (`mxFrame` times
/// the frame size, what rqlite's truncated WAL file measures), besides the `-raft-snap`
/// entry count. Counted in `store.num_wal_snapshots` and `store.num_wal_snapshots_failed`.
async fn snapshot_on_wal_size(
    raft: Raft,
    db_path: PathBuf,
    shared: Arc<SharedState>,
    every: Duration,
    threshold: u64,
) {
    let shm = crate::db::sibling(&db_path, "-shm");
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let in_use = match crate::db::wal::wal_use(&shm) {
            Ok(Some(wal)) => u64::from(wal.frames) * wal.frame_bytes,
            Ok(None) => 0,
            Err(e) => {
                tracing::debug!("measure the WAL: {e}");
                continue;
            }
        };
        // SQLite restarts the WAL only at the next write after a checkpoint: an idle node's
        // WAL keeps its size, and a snapshot of nothing new would only repeat.
        let snapshot = shared.snapshot_index().unwrap_or(0);
        if in_use < threshold || snapshot >= shared.applied_index.load(Ordering::Acquire) {
            continue;
        }
        match raft.trigger().snapshot().await {
            Ok(()) => shared.num_wal_snapshots.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!("snapshot for the WAL's size ({in_use} bytes): {e}");
                shared
                    .num_wal_snapshots_failed
                    .fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Whether a last leader contact `elapsed` ago (None: never) is older than `freshness`.
/// Compared exactly; rounded to whole milliseconds only for the message (rounded first, a
/// contact under a millisecond old passed any freshness below one).
fn contact_too_old(elapsed: Option<Duration>, freshness: Duration) -> Option<NotFresh> {
    elapsed
        .is_none_or(|elapsed| elapsed > freshness)
        .then(|| NotFresh::LeaderContact {
            age: elapsed.map(whole_millis),
            freshness,
        })
}

#[cfg(test)]
mod contact_tests {
    use super::*;

    #[test]
    fn a_contact_under_a_millisecond_old_is_older_than_a_nanosecond() {
        let sub_ms = Some(Duration::from_micros(300));
        assert_eq!(
            contact_too_old(sub_ms, Duration::from_nanos(1)),
            Some(NotFresh::LeaderContact {
                age: Some(Duration::ZERO),
                freshness: Duration::from_nanos(1)
            })
        );
        assert_eq!(contact_too_old(sub_ms, Duration::from_millis(1)), None);
        assert!(contact_too_old(None, Duration::from_secs(60)).is_some());
    }
}
