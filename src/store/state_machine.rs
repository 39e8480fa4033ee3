//! The Raft state machine: committed entries applied to the node's SQLite database.
//!
//! Apply. Entries run on the writer thread, in log order, each in one SQLite transaction that
//! also records the entry's log id (and the membership, when it changes) in `_raftlite_state`
//! (see [`super::applied_state`]). An entry at or below the recorded index is skipped, so
//! applying is idempotent: a restart, or a snapshot fresher than its metadata says, never
//! applies an entry twice. A deterministic SQL error is part of the entry's result; a local fault stops the node,
//! except a full disk (`SQLITE_FULL`), which an ordinary entry waits out: it is rolled back and
//! applied again once there is room (or until the node is told to stop).
//!
//! Snapshots. The live database *is* the state machine, so building a snapshot copies nothing:
//! it makes everything applied so far durable in the database file (a WAL checkpoint, then an
//! fsync of the WAL and the database file) and records the applied log id and membership, so
//! openraft may purge the log up to there. A build that fails returns the previous snapshot
//! (nothing new, for openraft) rather than an error, which would stop Raft on the node. The bytes are materialised only when a follower
//! needs them: the network layer copies the live database then (see `cluster::network`). A copy
//! can be fresher than the snapshot's metadata; the follower applies nothing twice, because
//! the copy carries its own applied index.
//!
//! Install. A received file is checked (`PRAGMA quick_check`, and the state table must be
//! there and at least as fresh as the metadata), then swapped in with the database swap
//! protocol ([`crate::db::Database::replace_with_file`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, RaftLogId, StorageIOError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::applied_state::{self, AppliedState};
use super::backup::{BackupOptions, Backups};
use super::restore::{build_once, files, replicate};
use crate::db::execute::{self, RequestResults};
use crate::db::request::ApplyEnv;
use crate::db::restore_file::LoadKind;
use crate::db::{sibling, Database};
use crate::raft::log::openraft::PurgeGate;
use crate::raft::log::LogEngine;
use crate::store::types::{
    Command, CommandResponse, Entry, LiveDatabase, LoadCommand, LogId, Snapshot, SnapshotData,
    SnapshotMeta, SqlLoad, StorageError, StoredMembership, TypeConfig,
};

/// State shared between the state machine (owned by openraft) and the store (for `/status`).
#[derive(Debug, Default)]
pub struct SharedState {
    pub applied: Mutex<AppliedState>,
    pub applied_index: AtomicU64,
    pub last_snapshot: Mutex<Option<SnapshotMeta>>,
    pub num_snapshots: AtomicU64,
    /// Snapshots started for the WAL's size (`-raft-snap-wal-size`), and those that could
    /// not start (rqlite's `num_wal_snapshots`, `num_wal_snapshots_failed`).
    pub num_wal_snapshots: AtomicU64,
    pub num_wal_snapshots_failed: AtomicU64,
    pub num_restores: AtomicU64,
    /// Start-ups that rewrote the membership from `peers.json` (0 or 1 per process).
    pub num_recoveries: AtomicU64,
    /// The latest leader clock (Unix ms) an applied entry carried: a new leader never stamps
    /// an earlier one.
    pub last_apply_millis: std::sync::atomic::AtomicI64,
    /// Loads applied on this node (`/status`).
    pub num_loads: AtomicU64,
    /// Prebuilt SQL loads (`store::restore::build_once`) applied by installing the built
    /// database, and by running the script (the database was not blank at the entry).
    pub num_prebuilt_installs: AtomicU64,
    pub num_prebuilt_scripts: AtomicU64,
    /// Told the index of every applied load entry, so the store snapshots and purges the log
    /// up to it (see `store::restore::replicate`).
    pub load_applied: Mutex<Option<tokio::sync::mpsc::UnboundedSender<u64>>>,
    /// The Raft addresses of the members in the newest membership this node knows (from the
    /// log, not only the applied part): where a load's content may be pulled from while
    /// applying is blocked on it. Kept current by the store.
    pub member_addrs: Mutex<Vec<String>>,
    /// Snapshot builds that failed (a full disk, an fsync): each left the previous snapshot in
    /// place, and the reason of the last one is kept for `POST /snapshot`.
    pub snapshot_failures: AtomicU64,
    /// Set when the node begins to stop: an entry waiting for disk space stops waiting.
    /// The Raft log store holds it too ([`RaftLogStore::with_stopping`]).
    ///
    /// [`RaftLogStore::with_stopping`]: crate::raft::log::openraft::RaftLogStore::with_stopping
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    pub last_snapshot_failure: Mutex<Option<SnapshotFailure>>,
    /// The node's Prometheus metrics (`GET /metrics`); the state machine records each entry's
    /// apply time, the store everything else.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Set by the archiver while this node leads and its last shipment succeeded (`archive`):
    /// each load's content is then kept for it at apply ([`files::keep_load_for_archive`]),
    /// since the log only references it.
    pub archive_active: std::sync::atomic::AtomicBool,
    /// The highest index the archiver has in storage (0: none, or not archiving): while
    /// `archive_log_hold` is set, the log's purges wait for it (`PurgeGate`), so the log
    /// still holds what the archive lacks.
    pub archived_index: AtomicU64,
    /// Set by the archiver while this node leads (`archive`): the size the log may grow to
    /// while it waits for the archive (0: no hold). Kept through a failed shipment, so an
    /// outage shorter than that loses no entry.
    pub archive_log_hold: AtomicU64,
    /// Whether Raft says this node leads (kept by the store from openraft's metrics): the
    /// archive's hold on the log applies only then.
    pub leading: std::sync::atomic::AtomicBool,
    /// Change data capture (`-cdc-config`), set once when the store opens: write entries
    /// are captured and queued as they apply, high-water marks prune the queue.
    pub cdc: std::sync::OnceLock<Arc<crate::cdc::CdcApply>>,
}

impl SharedState {
    /// The last index the durable snapshot covers (`None`: no snapshot yet).
    pub fn snapshot_index(&self) -> Option<u64> {
        self.last_snapshot
            .lock()
            .as_ref()
            .and_then(|m| m.last_log_id)
            .map(|l| l.index)
    }
}

/// Why the last snapshot build failed.
#[derive(Debug, Clone)]
pub struct SnapshotFailure {
    pub message: String,
    /// The disk was full (`SQLITE_FULL` or `ENOSPC` somewhere in the cause).
    pub disk_full: bool,
}

/// The file that remembers the last snapshot's metadata across restarts.
const SNAPSHOT_META_FILE: &str = "snapshot-meta.json";
/// The metadata being written, renamed over [`SNAPSHOT_META_FILE`] once synced; start-up
/// removes one a crash left.
pub const SNAPSHOT_META_TEMP: &str = "snapshot-meta.json.tmp";

#[derive(Serialize, Deserialize)]
struct PersistedSnapshotMeta {
    meta: SnapshotMeta,
}

/// The SQLite state machine.
pub struct SqliteStateMachine {
    db: Arc<Database>,
    shared: Arc<SharedState>,
    data_dir: PathBuf,
    /// This node's Raft address: a load entry naming it as the source finds its file here.
    raft_addr: Option<String>,
    /// Pulls staged load content from other nodes (streaming: no total timeout).
    client: reqwest::Client,
    /// Makes the copies a snapshot sends (with the reserve and the priority of a backup).
    backups: Arc<Backups>,
    /// The log's purges held back until an installed snapshot is durable, and the log they
    /// purge (see `raft::log::openraft::PurgeGate`).
    purge_gate: Option<(Arc<PurgeGate>, LogEngine)>,
}

impl SqliteStateMachine {
    /// Opens the state machine on `db`: creates the state table if needed and loads the
    /// applied state and the last snapshot's metadata.
    pub async fn open(
        db: Arc<Database>,
        data_dir: PathBuf,
    ) -> anyhow::Result<(Self, Arc<SharedState>)> {
        let applied = db
            .with_writer(|conn| -> anyhow::Result<AppliedState> {
                applied_state::ensure_table(conn).context("create the state table")?;
                applied_state::read(conn)
            })
            .await??;
        let shared = Arc::new(SharedState::default());
        shared
            .applied_index
            .store(applied.log_id.map_or(0, |l| l.index), Ordering::Release);
        *shared.applied.lock() = applied;
        let meta_path = data_dir.join(SNAPSHOT_META_FILE);
        if let Ok(bytes) = std::fs::read(&meta_path) {
            let persisted: PersistedSnapshotMeta = serde_json::from_slice(&bytes)
                .with_context(|| format!("read {}", meta_path.display()))?;
            *shared.last_snapshot.lock() = Some(persisted.meta);
        }
        let backups = Arc::new(Backups::new(BackupOptions::in_dir(data_dir.clone())));
        Ok((
            SqliteStateMachine {
                db,
                shared: Arc::clone(&shared),
                data_dir,
                raft_addr: None,
                backups,
                purge_gate: None,
                client: crate::tls::node()
                    .client_builder()
                    .connect_timeout(Duration::from_secs(5))
                    .tcp_nodelay(true)
                    .build()
                    .context("build the load client")?,
            },
            shared,
        ))
    }

    /// The backup engine whose reserve and priority snapshot copies follow (by default one
    /// with no reserve, in the data directory).
    pub fn with_backups(mut self, backups: Arc<Backups>) -> Self {
        self.backups = backups;
        self
    }

    /// Runs the log's purges that wait for an installed snapshot once it is durable.
    pub fn with_purge_gate(mut self, gate: Arc<PurgeGate>, log: LogEngine) -> Self {
        self.purge_gate = Some((gate, log));
        self
    }

    /// Sets this node's Raft address (the source of the loads it stages).
    pub fn with_raft_addr(mut self, addr: String) -> Self {
        self.raft_addr = Some(addr);
        self
    }

    /// At start-up, when the database is ahead of the log (`log_last`: the log's last index;
    /// `log_purged`: where it was purged to): a snapshot received from the leader was swapped
    /// in, and the node stopped before it recorded the snapshot's metadata. openraft would
    /// then see applied entries that neither the log nor a snapshot holds and refuse to start;
    /// the database is recorded as a snapshot (made durable first) instead, as it would have
    /// been.
    pub async fn record_snapshot_if_ahead(
        &self,
        log_last: Option<u64>,
        log_purged: Option<u64>,
    ) -> anyhow::Result<()> {
        let applied = self.shared.applied_index.load(Ordering::Acquire);
        let snapshot = self.shared.snapshot_index().unwrap_or(0);
        let ahead = applied > snapshot
            && (log_last.unwrap_or(0) < applied || log_purged.unwrap_or(0) > snapshot);
        if !ahead {
            return Ok(());
        }
        tracing::info!(
            applied,
            snapshot,
            ?log_last,
            "the database is ahead of the log: recording it as a snapshot"
        );
        let mut builder = RaftStateMachine::get_snapshot_builder(&mut self.clone_handle()).await;
        builder
            .build_snapshot()
            .await
            .map_err(|e| anyhow::anyhow!("record the database as a snapshot: {e}"))?;
        Ok(())
    }

    /// A second handle on the same state (for the snapshot builder at start-up).
    fn clone_handle(&self) -> SqliteStateMachine {
        SqliteStateMachine {
            db: Arc::clone(&self.db),
            shared: Arc::clone(&self.shared),
            data_dir: self.data_dir.clone(),
            raft_addr: self.raft_addr.clone(),
            client: self.client.clone(),
            backups: Arc::clone(&self.backups),
            purge_gate: self.purge_gate.clone(),
        }
    }

    /// Retires the staged load content whose entry was applied before the node stopped
    /// (`store::restore::replicate::resume_retirements`). Call once, at start-up.
    pub fn resume_retirements(&self) {
        replicate::resume_retirements(
            &self.client,
            &self.data_dir,
            self.shared.applied_index.load(Ordering::Acquire),
            &self.shared,
            self.raft_addr.as_deref(),
        );
    }

    /// Applies a run of ordinary entries on the writer.
    async fn apply_run(&self, entries: Vec<Entry>) -> Result<Vec<CommandResponse>, StorageError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let shared = Arc::clone(&self.shared);
        let out = self
            .db
            .with_writer(move |conn| apply_entries(conn, &shared, entries))
            .await
            .map_err(io_error)?;
        match out {
            Ok(responses) => Ok(responses),
            Err(ApplyFault(e)) => super::stop_on_local_fault_msg(&e),
        }
    }

    /// Applies a load entry (see `store::restore::replicate`): obtain the staged content, then
    /// run it (SQL, with the clock and seed `env`, or ones derived from the position) or swap
    /// it in (a database file).
    async fn apply_load(
        &self,
        log_id: LogId,
        cmd: &LoadCommand,
        env: Option<ApplyEnv>,
    ) -> Result<CommandResponse, StorageError> {
        if self.already_applied(log_id) {
            return Ok(CommandResponse::default());
        }
        let membership = self.shared.applied.lock().membership.clone();
        // A crash between moving the content to its install file and the swap: that file may
        // be the only copy left, and it is used as it is.
        let left = match cmd.kind {
            LoadKind::Sqlite => replicate::recover_install(&self.data_dir, cmd, &log_id),
            LoadKind::Sql => None,
        };
        // A staged file that is here before `obtain` was staged here (this node is the source,
        // perhaps restarted on another address): other nodes may be pulling it from us, so it
        // is kept, not consumed. (Pulled copies do not survive a restart.)
        let staged_here = files::staged_path(&self.data_dir, &cmd.id).exists();
        let (staged, prepared) = match left {
            Some(replicate::LeftInstall::Content(path)) => (path, false),
            Some(replicate::LeftInstall::Prepared(path)) => (path, true),
            None => {
                let staged = replicate::obtain(
                    &self.client,
                    &self.data_dir,
                    cmd,
                    &self.shared,
                    self.raft_addr.as_deref(),
                )
                .await;
                (staged, false)
            }
        };
        let recovered = staged == files::install_path(&self.data_dir, &cmd.id);
        if staged == files::staged_path(&self.data_dir, &cmd.id) {
            // Whatever happens to the file after the apply (removed, or retired once every
            // member has the load), a restart after the apply must still do it.
            replicate::record_entry(&self.data_dir, &cmd.id, log_id.index);
        }
        let is_source = self.raft_addr.as_deref() == Some(cmd.source.as_str());
        let started = std::time::Instant::now();
        // A recovered install file is consumed: nobody can pull it.
        let mut keep = !recovered && cmd.shared && (is_source || staged_here);
        if keep && is_source && cmd.kind == LoadKind::Sqlite {
            // Copying the file so the others can still pull it writes the whole database once
            // more, on the disk they are pulling to. Once they all have it, it can move.
            let limit = Duration::from_secs(10 + cmd.size / (50 << 20));
            keep = !replicate::wait_for_members_to_apply(
                &self.client,
                &self.shared,
                self.raft_addr.as_deref(),
                log_id.index,
                limit,
            )
            .await;
            tracing::info!(
                index = log_id.index,
                waited_secs = started.elapsed().as_secs_f64(),
                copy = keep,
                "load source: waited for the other members to apply the entry"
            );
        }
        // Continuous archiving ships the content with the entry: a hard link to it, made
        // before the apply (a SQL script is only read; a database file is then copied to its
        // install file, not moved, since the install file is changed in place).
        // A database file is copied, so the disk must hold it twice (and some): when it
        // cannot, the archive takes a base after the load instead.
        let room_to_copy = || {
            cmd.kind == LoadKind::Sql
                || crate::db::disk::free_bytes(&self.data_dir)
                    .is_ok_and(|free| free / 2 > cmd.size.saturating_add(64 << 20))
        };
        let kept_for_archive = !recovered
            && !prepared
            && self.shared.archive_active.load(Ordering::Relaxed)
            && room_to_copy()
            && files::keep_load_for_archive(
                &self.data_dir,
                &staged,
                &files::ArchivedLoad::now(
                    log_id,
                    cmd,
                    (cmd.kind == LoadKind::Sqlite)
                        .then(|| applied_state::lineage_from_load(&cmd.id, log_id.index)),
                    self.shared.applied.lock().lineage.clone(),
                ),
            );
        if !kept_for_archive {
            // A link kept before a crash (the entry applies again) may share its file with
            // the content, which a move would now make the database: it must not stay.
            files::forget_archived_load(&self.data_dir, log_id.index);
        }
        let response = match cmd.kind {
            LoadKind::Sql => {
                let shared = Arc::clone(&self.shared);
                let fk = self.db.settings().foreign_keys;
                let path = staged.clone();
                let env =
                    env.unwrap_or_else(|| ApplyEnv::derived(log_id.leader_id.term, log_id.index));
                let out = self
                    .db
                    .with_writer(move |conn| apply_sql_load(conn, &shared, log_id, env, &path, fk))
                    .await
                    .map_err(io_error)?;
                match out {
                    Ok(r) => r,
                    Err(ApplyFault(e)) => super::stop_on_local_fault_msg(&e),
                }
            }
            LoadKind::Sqlite => {
                let copy = keep || kept_for_archive;
                self.install_database(log_id, &cmd.id, &staged, copy, prepared, membership)
                    .await?
            }
        };
        crate::failpoint::crash_point("restore::after_apply");
        if !keep {
            crate::db::disk::remove_in_background(vec![
                staged,
                files::entry_path(&self.data_dir, &cmd.id),
            ]);
        } else {
            tokio::spawn(replicate::retire_when_applied(
                self.client.clone(),
                self.data_dir.clone(),
                cmd.id.clone(),
                log_id.index,
                Arc::clone(&self.shared),
                self.raft_addr.clone(),
            ));
        }
        self.shared.num_loads.fetch_add(1, Ordering::Relaxed);
        if let Some(tx) = self.shared.load_applied.lock().as_ref() {
            let _ = tx.send(log_id.index);
        }
        tracing::info!(
            index = log_id.index,
            kind = cmd.kind.as_str(),
            bytes = cmd.size,
            secs = started.elapsed().as_secs_f64(),
            "applied load"
        );
        Ok(response)
    }

    /// Applies a SQL load: installs the database the leader built from the script if this
    /// node's database is blank with the layout it was built for (see
    /// `store::restore::build_once`), else runs the script. Every node decides on the same
    /// database, so all decide alike.
    async fn apply_sql_load_entry(
        &self,
        log_id: LogId,
        load: &SqlLoad,
    ) -> Result<CommandResponse, StorageError> {
        if self.already_applied(log_id) {
            return Ok(CommandResponse::default());
        }
        let Some(built) = &load.built else {
            return self.apply_load(log_id, &load.script, Some(load.env)).await;
        };
        let current = self
            .db
            .with_writer(|conn| build_once::blank_layout(conn))
            .await
            .map_err(io_error)?
            .unwrap_or_else(|e| {
                super::stop_on_local_fault_msg(&format!("check the database is blank: {e}"))
            });
        let chosen = load.choose(current.as_ref());
        let install = chosen.id == built.database.id;
        tracing::info!(
            index = log_id.index,
            install_built_database = install,
            "applying a SQL load built in advance"
        );
        // Nobody needs the other content: every node takes the same branch.
        if let Some(unused) = load.unused(chosen) {
            let staged = files::staged_path(&self.data_dir, &unused.id);
            if staged.exists() {
                crate::db::disk::remove_in_background(vec![staged]);
            }
        }
        let counter = if install {
            &self.shared.num_prebuilt_installs
        } else {
            &self.shared.num_prebuilt_scripts
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.apply_load(log_id, chosen, Some(load.env)).await
    }

    fn already_applied(&self, log_id: LogId) -> bool {
        self.shared
            .applied
            .lock()
            .log_id
            .is_some_and(|a| a.index >= log_id.index)
    }

    /// Installs the database load `id` from `staged` (moved, or copied when `keep` is set);
    /// `prepared`: `staged` is the install file, already prepared for this entry.
    async fn install_database(
        &self,
        log_id: LogId,
        id: &str,
        staged: &std::path::Path,
        keep: bool,
        prepared: bool,
        membership: StoredMembership,
    ) -> Result<CommandResponse, StorageError> {
        let install = files::install_path(&self.data_dir, id);
        let (src, dest) = (staged.to_path_buf(), install.clone());
        // The loaded file replaces the state table: it starts a lineage of its own.
        let lineage = applied_state::lineage_from_load(id, log_id.index);
        let new_lineage = lineage.clone();
        let outcome = if prepared {
            Ok(())
        } else {
            tokio::task::spawn_blocking(move || {
                replicate::prepare_install(&src, &dest, keep, &log_id, &membership, &new_lineage)
            })
            .await
            .map_err(io_error)?
        };
        match outcome {
            Ok(()) => {}
            Err(replicate::PrepareError::Local(e)) => {
                let _ = std::fs::remove_file(&install);
                super::stop_on_local_fault_msg(&e)
            }
            Err(replicate::PrepareError::Deterministic(e)) => {
                // Every node fails the same way: the entry applies as a no-op with the error.
                let _ = std::fs::remove_file(&install);
                let blank = Entry {
                    log_id,
                    payload: EntryPayload::Blank,
                };
                self.apply_run(vec![blank]).await?;
                let mut response = CommandResponse::default();
                response.results.results = vec![crate::db::request::StatementResult::error(e)];
                return Ok(response);
            }
        }
        if let Err(e) = self
            .db
            .replace_with_file(install, Duration::from_secs(10))
            .await
        {
            super::stop_on_local_fault_msg(&format!("swap in the loaded database: {e:#}"));
        }
        {
            let mut applied = self.shared.applied.lock();
            applied.log_id = Some(log_id);
            applied.lineage = Some(lineage);
        }
        self.shared
            .applied_index
            .store(log_id.index, Ordering::Release);
        Ok(CommandResponse::default())
    }

    fn remember_snapshot(&self, meta: &SnapshotMeta) -> anyhow::Result<()> {
        persist_snapshot_meta(&self.data_dir, meta)?;
        *self.shared.last_snapshot.lock() = Some(meta.clone());
        Ok(())
    }
}

fn persist_snapshot_meta(data_dir: &std::path::Path, meta: &SnapshotMeta) -> anyhow::Result<()> {
    let path = data_dir.join(SNAPSHOT_META_FILE);
    let tmp = data_dir.join(SNAPSHOT_META_TEMP);
    let bytes = serde_json::to_vec(&PersistedSnapshotMeta { meta: meta.clone() })?;
    {
        use std::io::Write as _;
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    crate::failpoint::crash_point("snapshot::meta_written_before_rename");
    std::fs::rename(&tmp, &path).with_context(|| format!("rename {}", tmp.display()))?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .context("fsync the data directory")?;
    Ok(())
}

fn io_error(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

impl RaftStateMachine<TypeConfig> for SqliteStateMachine {
    type SnapshotBuilder = SqliteSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let a = self.shared.applied.lock().clone();
        Ok((a.log_id, a.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        // Runs of ordinary entries go to the writer in one job; a load entry between them
        // is applied on its own, after everything before it and before everything after.
        let mut responses = Vec::new();
        let mut run = Vec::new();
        for entry in entries {
            match &entry.payload {
                EntryPayload::Normal(Command::Load(cmd)) => {
                    responses.extend(self.apply_run(std::mem::take(&mut run)).await?);
                    responses.push(self.apply_load(entry.log_id, cmd, None).await?);
                }
                EntryPayload::Normal(Command::LoadSql(load)) => {
                    responses.extend(self.apply_run(std::mem::take(&mut run)).await?);
                    responses.push(self.apply_sql_load_entry(entry.log_id, load).await?);
                }
                _ => run.push(entry),
            }
        }
        responses.extend(self.apply_run(run).await?);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SqliteSnapshotBuilder {
            db: Arc::clone(&self.db),
            shared: Arc::clone(&self.shared),
            data_dir: self.data_dir.clone(),
            backups: Arc::clone(&self.backups),
            purge_gate: self.purge_gate.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        // Snapshots arrive through our own streaming transport, which writes a file and then
        // calls `install_full_snapshot`; this chunked entry point only serves test suites.
        Ok(Box::new(SnapshotData::Memory(std::io::Cursor::new(
            Vec::new(),
        ))))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        let path = match *snapshot {
            SnapshotData::File(p) => p,
            SnapshotData::Live(live) => {
                // Another node's live database in this process (openraft's test suite does
                // this): copy it, then install the copy like a received file.
                let name = format!("snapshot-in-{}.db", crate::temp_file::unique_suffix());
                let dest = self.data_dir.join(name);
                live.copy_to(dest.clone()).await.map_err(io_error)?;
                dest
            }
            other => {
                return Err(io_error(format!(
                    "cannot install a snapshot held as {other:?}"
                )))
            }
        };
        let checked = check_snapshot_file(&path, meta).map_err(|e| {
            let _ = std::fs::remove_file(&path);
            io_error(format!("invalid snapshot {}: {e:#}", meta.snapshot_id))
        })?;
        if let Err(e) = self
            .db
            .replace_with_file(path, Duration::from_secs(10))
            .await
        {
            super::stop_on_local_fault_msg(&format!(
                "swap in snapshot {}: {e:#}",
                meta.snapshot_id
            ));
        }
        // A snapshot an older version made has no `lineage` column: add it before the next
        // apply writes one.
        match self
            .db
            .with_writer(|c| applied_state::ensure_table(c))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => super::stop_on_local_fault_msg(&format!(
                "complete the state table of snapshot {}: {e}",
                meta.snapshot_id
            )),
            Err(e) => super::stop_on_local_fault_msg(&format!(
                "complete the state table of snapshot {}: {e}",
                meta.snapshot_id
            )),
        }
        // The swapped-in file may have been copied from a fresher state than `meta` says.
        self.shared
            .applied_index
            .store(checked.log_id.map_or(0, |l| l.index), Ordering::Release);
        *self.shared.applied.lock() = checked;
        self.shared.num_restores.fetch_add(1, Ordering::Relaxed);
        self.remember_snapshot(meta).map_err(io_error)?;
        // The log's purge up to the snapshot waited for this (see `PurgeGate`).
        if let Some((gate, log)) = &self.purge_gate {
            gate.run_deferred(log).map_err(io_error)?;
        }
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let meta = self.shared.last_snapshot.lock().clone();
        Ok(meta.map(|meta| Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::Live(LiveDatabase {
                db: Arc::clone(&self.db),
                backups: Arc::clone(&self.backups),
            })),
        }))
    }
}

/// A local fault while applying: the node must stop.
struct ApplyFault(String);

impl From<crate::db::apply::EntryFault> for ApplyFault {
    fn from(f: crate::db::apply::EntryFault) -> ApplyFault {
        ApplyFault(f.message)
    }
}

/// Runs a [`Command::Vacuum`] entry's VACUUM, between the previous entry's transaction and
/// this entry's (VACUUM cannot run inside one). VACUUM gives new rowids to the rows of tables
/// with neither an INTEGER PRIMARY KEY nor an index (SQLite copies them without their rowids),
/// the same ones on every node that runs it: so every node must run it, and a node where it
/// failed would hold other rowids than its peers. A full disk (of the data directory, where
/// the node points SQLite's temporary files) waits for room, as an entry does; any other
/// failure stops the node, which runs it again at restart (a second VACUUM gives the same
/// rowids: they are already 1..n).
fn vacuum_at(
    conn: &raftlite_ffi::Connection,
    shared: &SharedState,
    index: u64,
) -> Result<(), ApplyFault> {
    let mut waiting_for_room = DiskFullWait::default();
    let started = std::time::Instant::now();
    loop {
        match conn.execute_batch("VACUUM") {
            Ok(()) => {
                tracing::info!(index, elapsed = ?started.elapsed(), "database vacuumed");
                crate::failpoint::crash_point("apply::vacuumed_before_record");
                return Ok(());
            }
            Err(e) => {
                // SQLite rolls a failed VACUUM back; make sure nothing of it stays open.
                if !conn.is_autocommit().unwrap_or(true) {
                    conn.execute_batch("ROLLBACK")
                        .map_err(|e| ApplyFault(format!("roll back a failed VACUUM: {e}")))?;
                }
                if crate::db::error::is_full(&e) && !shared.stopping.load(Ordering::Relaxed) {
                    waiting_for_room.wait(index, &format!("VACUUM: {e}"));
                } else {
                    return Err(ApplyFault(format!("VACUUM of entry {index}: {e}")));
                }
            }
        }
    }
}

/// How an entry that met a full disk waits before it is applied again: 50 ms at first,
/// doubling to 2 s, with a warning when it starts and then at most every 30 s. It waits on
/// the writer thread, which has nothing else to do: every later entry waits behind this one,
/// and reads go on from the read connections. A stop of the node ends the wait
/// ([`SharedState::stopping`]), or the writer would never let the process end.
#[derive(Default)]
struct DiskFullWait {
    pause: Duration,
    since: Option<std::time::Instant>,
    last_warning: Option<std::time::Instant>,
}

impl DiskFullWait {
    fn wait(&mut self, index: u64, fault: &str) {
        let now = std::time::Instant::now();
        let since = *self.since.get_or_insert(now);
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(30))
        {
            tracing::warn!(
                index,
                waiting_secs = now.duration_since(since).as_secs(),
                "the disk is full; applying waits for free space and retries the entry: {fault}"
            );
            self.last_warning = Some(now);
        }
        self.pause = (self.pause * 2).clamp(Duration::from_millis(50), Duration::from_secs(2));
        std::thread::sleep(self.pause);
    }
}

/// Applies archived entries to a database outside any node (point-in-time recovery,
/// `crate::archive::pitr`), exactly as a node applies them: the same transaction, clock,
/// seed, budget and recorded state. `shared` starts from the database's applied state.
/// Loads are refused: their content is not in the log (the archive holds a base after each).
pub fn replay_entries(
    conn: &mut raftlite_ffi::Connection,
    shared: &SharedState,
    entries: Vec<Entry>,
) -> anyhow::Result<()> {
    if let Some(e) = entries.iter().find(|e| {
        matches!(
            e.payload,
            EntryPayload::Normal(Command::Load(_) | Command::LoadSql(_))
        )
    }) {
        anyhow::bail!(
            "entry {} is a load, whose content is not in the log: restore from a base at or \
             after it",
            e.log_id.index
        );
    }
    apply_entries(conn, shared, entries)
        .map(|_| ())
        .map_err(|f| anyhow::anyhow!("{}", f.0))
}

/// Replays a SQL load entry (`Command::LoadSql`, or `Command::Load` of SQL text) on a
/// restore's connection, from its script at `path` (the archive's copy, checked against the
/// entry's size and CRC-32C by the caller): what [`Command::LoadSql`]'s apply runs when it
/// runs the script, with the entry's clock and seed. A load of a database file cannot be
/// replayed: it starts a history of its own, whose first base it is.
pub fn replay_sql_load(
    conn: &mut raftlite_ffi::Connection,
    shared: &SharedState,
    entry: &Entry,
    path: &std::path::Path,
    foreign_keys: bool,
) -> anyhow::Result<()> {
    let log_id = entry.log_id;
    let env = match &entry.payload {
        EntryPayload::Normal(Command::LoadSql(load)) => load.env,
        EntryPayload::Normal(Command::Load(cmd)) if cmd.kind == LoadKind::Sql => {
            ApplyEnv::derived(log_id.leader_id.term, log_id.index)
        }
        _ => anyhow::bail!("entry {} is not a SQL load", log_id.index),
    };
    apply_sql_load(conn, shared, log_id, env, path, foreign_keys)
        .map(|_| ())
        .map_err(|f| anyhow::anyhow!("{}", f.0))
}

/// The content a load entry needs in a replay: its SQL script's size and CRC-32C, or `None`
/// for an entry that is no load. A load that installs a database file is an error here.
pub fn sql_load_content(entry: &Entry) -> anyhow::Result<Option<(u64, u32)>> {
    match &entry.payload {
        EntryPayload::Normal(Command::LoadSql(load)) => {
            Ok(Some((load.script.size, load.script.crc32c)))
        }
        EntryPayload::Normal(Command::Load(cmd)) if cmd.kind == LoadKind::Sql => {
            Ok(Some((cmd.size, cmd.crc32c)))
        }
        EntryPayload::Normal(Command::Load(_)) => anyhow::bail!(
            "entry {} loads a database file, which starts a history of its own: restore a \
             point at or after it from that history",
            entry.log_id.index
        ),
        _ => Ok(None),
    }
}

fn apply_entries(
    conn: &mut raftlite_ffi::Connection,
    shared: &SharedState,
    entries: Vec<Entry>,
) -> Result<Vec<CommandResponse>, ApplyFault> {
    let fault = |what: &str, e: &dyn std::fmt::Display| ApplyFault(format!("{what}: {e}"));
    let mut responses = Vec::with_capacity(entries.len());
    for entry in entries {
        // The entry is committed (openraft applies only committed entries): the leader's
        // commit latency of a write ends here, its apply latency starts.
        let apply_started = std::time::Instant::now();
        let log_id = *entry.get_log_id();
        let already = shared.applied.lock().log_id;
        if already.is_some_and(|a| a.index >= log_id.index) {
            responses.push(CommandResponse::default());
            continue;
        }
        // Every SQL the entry runs sees the entry's clock and random sequence, the same on
        // every node.
        let env = match &entry.payload {
            EntryPayload::Normal(Command::Execute { env, .. }) => Some(*env),
            // Each item sets its own (see `apply_batch`); a strong read (only in logs written
            // before strong reads stopped going through the log) runs nothing.
            EntryPayload::Normal(Command::StrongQuery { .. } | Command::ExecuteBatch(_)) => None,
            _ => Some(ApplyEnv::derived(log_id.leader_id.term, log_id.index)),
        };
        let membership = match &entry.payload {
            EntryPayload::Membership(m) => Some(StoredMembership::new(Some(log_id), m.clone())),
            _ => None,
        };
        // The lineage this entry would start, only while the database has none (the memory
        // mirrors the table): once set, no entry formats or binds one again.
        let lineage = match &entry.payload {
            _ if shared.applied.lock().lineage.is_some() => None,
            EntryPayload::Normal(Command::Execute { env, .. }) => Some(env.seed),
            EntryPayload::Normal(Command::ExecuteBatch(items)) => items.first().map(|i| i.env.seed),
            _ => None,
        }
        .map(|seed| applied_state::lineage_from_seed(seed, log_id.index));
        if matches!(
            &entry.payload,
            EntryPayload::Normal(Command::Execute { .. } | Command::ExecuteBatch(_))
        ) {
            // Tests slow a node's apply of writes here (`=sleep(N)`): a node behind its commit.
            crate::failpoint::crash_point("apply::write_entry");
        }
        if let EntryPayload::Normal(Command::Vacuum) = &entry.payload {
            vacuum_at(conn, shared, log_id.index)?;
        }
        // Change data capture: the rows a write entry changes become its events, queued
        // before the entry commits (`record` below).
        let cdc = shared.cdc.get().filter(|_| {
            matches!(
                &entry.payload,
                EntryPayload::Normal(Command::Execute { .. } | Command::ExecuteBatch(_))
            )
        });
        if let Some(cdc) = cdc {
            if !crate::db::capture::is_configured(conn) {
                crate::db::capture::configure(conn, cdc.capture.clone())
                    .map_err(|e| fault("start capturing changes", &e))?;
            }
        }
        let commit_millis = match &entry.payload {
            EntryPayload::Normal(Command::Execute { env, .. }) => env.unix_millis,
            EntryPayload::Normal(Command::ExecuteBatch(items)) => {
                items.iter().map(|i| i.env.unix_millis).max().unwrap_or(0)
            }
            _ => 0,
        };
        let mut waiting_for_room = DiskFullWait::default();
        let response = loop {
            crate::db::capture::arm(conn, cdc.is_some());
            conn.set_apply_inputs(env.map(ApplyEnv::inputs))
                .map_err(|e| fault("set the entry's clock and seed", &e))?;
            if let Some(env) = env {
                shared
                    .last_apply_millis
                    .fetch_max(env.unix_millis, Ordering::Relaxed);
            }
            let response = crate::db::apply::apply_entry(
                conn,
                |conn| match &entry.payload {
                    // A load entry never reaches here (see `apply`); if it did, it would change
                    // nothing. A strong read from an older log is answered by nobody any more.
                    EntryPayload::Blank
                    | EntryPayload::Membership(_)
                    | EntryPayload::Normal(
                        Command::StrongQuery { .. }
                        | Command::Load(_)
                        | Command::LoadSql(_)
                        | Command::Vacuum
                        | Command::CdcHighWatermark(_),
                    ) => Ok(CommandResponse::default()),
                    EntryPayload::Normal(Command::Execute {
                        request,
                        policy,
                        opts,
                        env,
                    }) => execute::execute_request(conn, request, *policy, *opts, env.budget).map(
                        |results| CommandResponse {
                            results,
                            batch: Vec::new(),
                            apply_started: None,
                        },
                    ),
                    EntryPayload::Normal(Command::ExecuteBatch(items)) => {
                        crate::db::apply::apply_batch(conn, items, |env| {
                            shared
                                .last_apply_millis
                                .fetch_max(env.unix_millis, Ordering::Relaxed);
                        })
                        .map(|batch| CommandResponse {
                            results: RequestResults::default(),
                            batch,
                            apply_started: None,
                        })
                    }
                },
                |error| CommandResponse::failed(&entry.payload, error),
                |conn| {
                    if let Some(cdc) = cdc {
                        let events = crate::db::capture::take_entry_events(conn)
                            .context("read the entry's captured changes")?;
                        cdc.queue
                            .put(log_id.index, commit_millis, &events)
                            .context("queue the entry's change events")?;
                        crate::failpoint::crash_point("apply::cdc_queued_before_commit");
                    }
                    applied_state::write(conn, &log_id, membership.as_ref(), lineage.as_deref())
                },
            );
            crate::db::capture::arm(conn, false);
            match response {
                Ok(response) => break response,
                // The entry changed nothing: wait for room and apply it again, from its clock
                // and seed, rather than stop the node (a restart would only meet the same disk).
                Err(f) if f.disk_full && !shared.stopping.load(Ordering::Relaxed) => {
                    waiting_for_room.wait(log_id.index, &f.message)
                }
                // A stop asked for while waiting: the node stops here, as for any local fault
                // (the entry is in the log and is applied after the restart).
                Err(f) if f.disk_full => {
                    return Err(ApplyFault(format!(
                        "{} (the node was asked to stop while the entry waited for disk space)",
                        f.message
                    )))
                }
                Err(f) => return Err(f.into()),
            }
        };
        conn.set_apply_inputs(None)
            .map_err(|e| fault("clear the entry's clock and seed", &e))?;
        if let (EntryPayload::Normal(Command::CdcHighWatermark(mark)), Some(cdc)) =
            (&entry.payload, shared.cdc.get())
        {
            // Advisory: a mark not recorded here only means this node, if it leads, resends
            // what was delivered (the next mark records it again).
            if let Err(e) = cdc.queue.record_high_watermark(*mark) {
                tracing::error!(mark, "record the CDC high-water mark: {e}");
            }
        }
        {
            let mut applied = shared.applied.lock();
            applied.log_id = Some(log_id);
            if let Some(m) = membership {
                applied.membership = m;
            }
            if applied.lineage.is_none() {
                applied.lineage = lineage;
            }
        }
        shared.applied_index.store(log_id.index, Ordering::Release);
        shared.metrics.entry_applied(apply_started.elapsed());
        responses.push(CommandResponse {
            apply_started: Some(apply_started),
            ..response
        });
    }
    Ok(responses)
}

/// Runs a staged SQL script as one entry (see [`execute::run_sql_script`]): all of it in
/// the entry's transaction, or (on an SQL error) none of it, with the error as the result.
fn apply_sql_load(
    conn: &mut raftlite_ffi::Connection,
    shared: &SharedState,
    log_id: LogId,
    env: ApplyEnv,
    path: &std::path::Path,
    foreign_keys: bool,
) -> Result<CommandResponse, ApplyFault> {
    let fault = |e: anyhow::Error| ApplyFault(format!("{e:#}"));
    // The script sees the entry's clock and random sequence, the same on every node.
    conn.set_apply_inputs(Some(env.inputs()))
        .map_err(|e| fault(anyhow::Error::new(e).context("set the entry's clock and seed")))?;
    let lineage = applied_state::lineage_from_seed(env.seed, log_id.index);
    let outcome = execute::run_sql_script(conn, path, foreign_keys, env.budget, |conn| {
        crate::failpoint::crash_point("restore::sql_before_commit");
        applied_state::write(conn, &log_id, None, Some(&lineage))
            .context("record the applied index")
    })
    .map_err(fault)?;
    conn.set_apply_inputs(None)
        .map_err(|e| fault(anyhow::Error::new(e).context("reset the clock and seed")))?;
    if let execute::ScriptOutcome::Done { statements, .. } = &outcome {
        tracing::info!(statements, "SQL load ran");
    }
    let mut response = CommandResponse::default();
    response.results.results = vec![outcome.into_result()];
    {
        let mut applied = shared.applied.lock();
        applied.log_id = Some(log_id);
        applied.lineage.get_or_insert(lineage);
    }
    shared.applied_index.store(log_id.index, Ordering::Release);
    Ok(response)
}

/// Checks a received snapshot file before it replaces the database.
fn check_snapshot_file(
    path: &std::path::Path,
    meta: &SnapshotMeta,
) -> anyhow::Result<AppliedState> {
    let conn = raftlite_ffi::Connection::open(path, raftlite_ffi::OpenFlags::READ_ONLY)
        .with_context(|| format!("open {}", path.display()))?;
    let check = conn.query_text("PRAGMA quick_check")?.unwrap_or_default();
    anyhow::ensure!(check == "ok", "quick_check: {check}");
    let applied = applied_state::read(&conn)?;
    anyhow::ensure!(
        applied.log_id >= meta.last_log_id,
        "the file reflects {:?}, older than the snapshot's {:?}",
        applied.log_id,
        meta.last_log_id
    );
    Ok(applied)
}

/// Builds snapshots: makes the applied state durable and records its metadata.
pub struct SqliteSnapshotBuilder {
    db: Arc<Database>,
    shared: Arc<SharedState>,
    data_dir: PathBuf,
    backups: Arc<Backups>,
    purge_gate: Option<(Arc<PurgeGate>, LogEngine)>,
}

impl RaftSnapshotBuilder<TypeConfig> for SqliteSnapshotBuilder {
    /// A build that fails (a full disk while checkpointing or writing the metadata) is not an
    /// error for openraft, which would stop Raft on this node for it: the previous snapshot is
    /// returned instead, which openraft takes as nothing new, and the next threshold or
    /// `POST /snapshot` tries again. The database and the log are as they were: the log is
    /// purged only up to a recorded snapshot.
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        match self.try_build_snapshot().await {
            Ok(snapshot) => {
                *self.shared.last_snapshot_failure.lock() = None;
                Ok(snapshot)
            }
            Err(e) => {
                let failure = SnapshotFailure {
                    message: format!("{e:#}"),
                    disk_full: crate::db::error::is_disk_full(&e),
                };
                tracing::warn!(
                    disk_full = failure.disk_full,
                    "snapshot failed, the previous one stays: {}",
                    failure.message
                );
                *self.shared.last_snapshot_failure.lock() = Some(failure);
                self.shared
                    .snapshot_failures
                    .fetch_add(1, Ordering::Relaxed);
                let meta = self.shared.last_snapshot.lock().clone().unwrap_or_default();
                Ok(Snapshot {
                    meta,
                    snapshot: Box::new(SnapshotData::Live(LiveDatabase {
                        db: Arc::clone(&self.db),
                        backups: Arc::clone(&self.backups),
                    })),
                })
            }
        }
    }
}

impl SqliteSnapshotBuilder {
    async fn try_build_snapshot(&mut self) -> anyhow::Result<Snapshot> {
        let db_path = self.db.path().to_path_buf();
        let shared = Arc::clone(&self.shared);
        // On the writer thread: no entry is applied while the checkpoint and syncs run, so
        // the state read afterwards is exactly what is durable.
        let applied = self
            .db
            .with_writer(move |conn| -> anyhow::Result<AppliedState> {
                conn.wal_checkpoint(raftlite_ffi::sys::SQLITE_CHECKPOINT_PASSIVE)
                    .context("checkpoint the WAL")?;
                // A passive checkpoint may stop at a reader; syncing both files makes every
                // committed transaction durable whatever it managed to copy.
                for p in [sibling(&db_path, "-wal"), db_path.clone()] {
                    if let Ok(f) = std::fs::File::open(&p) {
                        f.sync_all()
                            .with_context(|| format!("fsync {}", p.display()))?;
                    }
                }
                Ok(shared.applied.lock().clone())
            })
            .await??;
        crate::failpoint::crash_point("snapshot::after_sync_before_meta");
        let index = applied.log_id.map_or(0, |l| l.index);
        let n = self.shared.num_snapshots.fetch_add(1, Ordering::Relaxed) + 1;
        let meta = SnapshotMeta {
            last_log_id: applied.log_id,
            last_membership: applied.membership,
            snapshot_id: format!("{index}-{n}-{}", std::process::id()),
        };
        persist_snapshot_meta(&self.data_dir, &meta)?;
        *self.shared.last_snapshot.lock() = Some(meta.clone());
        // A purge held back for a durable snapshot may be covered now (see `PurgeGate`).
        if let Some((gate, log)) = &self.purge_gate {
            gate.run_deferred(log).map_err(io_error)?;
        }
        tracing::info!(
            index,
            "snapshot recorded (database checkpointed and synced)"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::Live(LiveDatabase {
                db: Arc::clone(&self.db),
                backups: Arc::clone(&self.backups),
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::request::{ExecuteItem, Request, ResultOptions, RowsPolicy, SqlStatement};
    use crate::db::settings::{open_writer, DbSettings};

    fn writer(dir: &tempfile::TempDir, name: &str) -> raftlite_ffi::Connection {
        let conn = open_writer(&dir.path().join(name), &DbSettings::default()).unwrap();
        conn.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, r INTEGER);
             CREATE TABLE once(x INTEGER PRIMARY KEY ON CONFLICT ROLLBACK);
             INSERT INTO once VALUES(1);",
        )
        .unwrap();
        conn
    }

    fn item(sql: &str, seed: u64) -> ExecuteItem {
        ExecuteItem {
            request: Request {
                statements: vec![SqlStatement::new(sql)],
                transaction: false,
            },
            policy: RowsPolicy::ReturningOnly,
            opts: ResultOptions::default(),
            env: ApplyEnv {
                unix_millis: 1_700_000_000_000 + seed as i64,
                seed,
                ..ApplyEnv::default()
            },
        }
    }

    fn rows(conn: &raftlite_ffi::Connection) -> String {
        conn.query_text("SELECT group_concat(id || ':' || k || ':' || r, ',') FROM t")
            .unwrap()
            .unwrap_or_default()
    }

    fn outcomes(r: &[RequestResults]) -> Vec<(Vec<String>, Option<String>)> {
        r.iter()
            .map(|r| {
                let each = r
                    .results
                    .iter()
                    .map(|s| format!("{:?}", s.outcome))
                    .collect();
                (each, r.error.clone())
            })
            .collect()
    }

    /// A batch changes the database and answers exactly as its items would as separate
    /// entries, also when items in the middle end the transaction with a ROLLBACK conflict
    /// clause (the items before them are redone, not lost).
    #[test]
    fn a_batch_applies_like_separate_entries_even_when_an_item_rolls_back() {
        let items = vec![
            item("INSERT INTO t(k, r) VALUES(1, random())", 11),
            item("INSERT INTO t(k, r) VALUES(2, random())", 12),
            item("INSERT INTO once VALUES(1)", 13),
            item("INSERT INTO t(k, r) VALUES(3, random())", 14),
            item("INSERT INTO once VALUES(1)", 15),
            item(
                "INSERT INTO t(k, r) VALUES(4, CAST(strftime('%s','now') AS INTEGER))",
                16,
            ),
        ];
        let dir = tempfile::tempdir().unwrap();

        let batched = writer(&dir, "batched.db");
        batched.execute_batch("BEGIN IMMEDIATE").unwrap();
        let batch_results = crate::db::apply::apply_batch(&batched, &items, |_| ()).unwrap();
        batched.execute_batch("COMMIT").unwrap();

        let separate = writer(&dir, "separate.db");
        let mut separate_results = Vec::new();
        for it in &items {
            separate.execute_batch("BEGIN IMMEDIATE").unwrap();
            separate.set_apply_inputs(Some(it.env.inputs())).unwrap();
            let out =
                execute::execute_request(&separate, &it.request, it.policy, it.opts, it.env.budget)
                    .unwrap();
            separate.set_apply_inputs(None).unwrap();
            separate.execute_batch("COMMIT").unwrap();
            separate_results.push(out);
        }

        assert_eq!(rows(&batched), rows(&separate));
        assert_eq!(outcomes(&batch_results), outcomes(&separate_results));
        assert_eq!(rows(&batched).split(',').count(), 4, "{}", rows(&batched));
        assert!(batch_results[2].ended_callers_transaction);
        assert!(batch_results[4].ended_callers_transaction);
        assert!(
            batched.is_autocommit().unwrap(),
            "the batch left no transaction open"
        );
    }
}

#[cfg(test)]
mod entry_failure_tests {
    use super::*;
    use crate::db::request::{Request, ResultOptions, RowsPolicy, SqlStatement};
    use crate::db::settings::{open_writer, DbSettings};

    fn execute_entry(index: u64, sql: &str) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::Execute {
                request: Request {
                    statements: vec![SqlStatement::new(sql)],
                    transaction: false,
                },
                policy: RowsPolicy::ReturningOnly,
                opts: ResultOptions::default(),
                env: ApplyEnv::default(),
            }),
        }
    }

    /// An entry whose request leaves raftlite's own statements failing, the same way on every
    /// node, is that entry's answer: it changes nothing, its index is recorded, and the next
    /// entry applies. (The gate keeps users' SQL from getting there; a writer whose gate was
    /// taken away stands in for a hole in it.) Before, any such failure stopped the node, and
    /// every node, for good.
    #[test]
    fn an_entry_that_fails_as_a_whole_is_its_answer_not_a_fault() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_writer(&dir.path().join("db.sqlite"), &DbSettings::default()).unwrap();
        applied_state::ensure_table(&conn).unwrap();
        conn.execute_batch("CREATE TABLE t(x)").unwrap();
        let shared = SharedState::default();
        let gate = crate::db::settings::gate(&conn).is_some();
        assert!(gate);
        conn.set_authorizer::<crate::db::gate::Gate>(None).unwrap();
        let out = apply_entries(
            &mut conn,
            &shared,
            vec![execute_entry(1, "INSERT INTO t VALUES(1)")],
        )
        .unwrap_or_else(|ApplyFault(e)| panic!("a fault: {e}"));
        let error = out[0].results.error.clone().unwrap_or_default();
        assert!(
            error.starts_with("entry failed: this connection has no gate"),
            "{error}"
        );
        assert_eq!(conn.query_i64("SELECT count(*) FROM t").unwrap(), Some(0));
        assert_eq!(
            applied_state::read(&conn).unwrap().log_id.map(|l| l.index),
            Some(1)
        );
        assert!(conn.is_autocommit().unwrap());

        crate::db::settings::install_gate(&mut conn).unwrap();
        let out = apply_entries(
            &mut conn,
            &shared,
            vec![execute_entry(2, "INSERT INTO t VALUES(2)")],
        )
        .unwrap_or_else(|ApplyFault(e)| panic!("a fault: {e}"));
        assert_eq!(out[0].results.error, None);
        assert_eq!(conn.query_i64("SELECT count(*) FROM t").unwrap(), Some(1));
        assert_eq!(shared.applied_index.load(Ordering::Acquire), 2);
    }
}
