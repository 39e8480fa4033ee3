//! openraft's storage-v2 `RaftLogStorage` and `RaftLogReader` on top of [`LogEngine`].
//!
//! Generic over the type config `C`, so the cluster plugs in its own. Entries, votes and log
//! ids are serialized with bincode 1: compact (no field names), fast, and deterministic for
//! the plain structs and enums openraft derives serde for. Each record's `kind` is
//! [`ENTRY_KIND_BINCODE`], so a later encoding can live beside it in the same log.
//!
//! Engine errors become openraft `StorageError`s here and nowhere else.

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    AnyError, LogId, OptionalSend, RaftLogId, RaftTypeConfig, StorageError, StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::raft::log::engine::{LogEngine, LogOptions};
use crate::raft::log::error::LogError;
use crate::raft::log::record::{Record, RecordRef};

/// Record kind of an openraft entry encoded with bincode 1.
pub const ENTRY_KIND_BINCODE: u8 = 1;

/// The openraft log store: a handle on a shared [`LogEngine`]. Clones share the engine, which
/// is how the log reader handed to replication tasks is made.
pub struct RaftLogStore<C: RaftTypeConfig> {
    engine: LogEngine,
    /// Set when the node stops: a write waiting for disk space gives up (see
    /// [`wait_for_room`]), or openraft could never be shut down.
    stopping: Arc<AtomicBool>,
    /// Holds back purges the state machine's snapshot does not cover yet (see [`PurgeGate`]).
    purge_gate: Option<Arc<PurgeGate>>,
    // `fn() -> C` keeps the store Send + Sync whatever `C` is: it holds no `C` value.
    _types: PhantomData<fn() -> C>,
}

/// Holds back a purge of the log past what may be purged yet: the state machine's durable
/// snapshot and, while this node leads and archives, the last entry the archive holds.
///
/// openraft 0.9, installing a snapshot on a follower, asks for the purge of the log up to the
/// snapshot at the same time as the install, not after it. Done at once, a crash before the
/// install was durable left a log purged past anything the state machine held, which openraft
/// refuses at every later start (`purge_upto <= snapshot_last_log_id`). And the archiver
/// (`archive`) ships entries from the log, about a second behind it: a snapshot taken under a
/// write rate above `-raft-trailing-logs` entries in that second purged entries it had not
/// shipped, and the points between them could never be restored.
///
/// So a purge asks the gate: the part allowed now runs at once, the rest is remembered, and
/// runs ([`PurgeGate::run_deferred`]) when the state machine has recorded a snapshot (before
/// an install is answered: the leader sends the entries after the snapshot only then, so
/// none is appended before the purge), the archiver has shipped more, or an append finds the
/// disk full. openraft is told the whole purge is done: it only reads the log above what it
/// asked to purge, so entries kept longer are never read, and the engine's own purge point
/// (what a restart reads) is always one the state machine covers.
///
/// The archive's hold never applies to a purge past the log's last entry (a snapshot
/// installed over a shorter log): openraft appends right after the snapshot next, which the
/// engine accepts only once the whole log is purged.
pub struct PurgeGate {
    /// The durable snapshot's index (`None`: no snapshot yet).
    durable: Box<dyn Fn() -> Option<u64> + Send + Sync>,
    /// While the archive holds the log: the last index it has in storage.
    archived: Box<dyn Fn() -> Option<u64> + Send + Sync>,
    /// The encoded log id of the entry at an index (set by [`RaftLogStore::with_purge_gate`],
    /// which knows the entries' type): a purge up to an index openraft did not name.
    id_at: std::sync::OnceLock<EncodedLogIdAt>,
    deferred: parking_lot::Mutex<Option<(u64, Vec<u8>)>>,
}

/// Reads the encoded log id of the entry at an index, if the log holds it.
type EncodedLogIdAt = fn(&LogEngine, u64) -> Option<Vec<u8>>;

impl PurgeGate {
    /// A gate that reads the durable snapshot's index with `durable` and, while the archive
    /// holds the log, the archived index with `archived` (`None`: no hold).
    pub fn new(
        durable: impl Fn() -> Option<u64> + Send + Sync + 'static,
        archived: impl Fn() -> Option<u64> + Send + Sync + 'static,
    ) -> Arc<PurgeGate> {
        Arc::new(PurgeGate {
            durable: Box::new(durable),
            archived: Box::new(archived),
            id_at: std::sync::OnceLock::new(),
            deferred: parking_lot::Mutex::new(None),
        })
    }

    /// The highest index a purge up to `index` may purge to now (`None`: none).
    fn allowed(&self, index: u64, engine: &LogEngine) -> Option<u64> {
        let durable = (self.durable)()?;
        let past_the_log = engine.bounds().last_index.is_none_or(|last| index > last);
        Some(match (self.archived)() {
            Some(archived) if !past_the_log => durable.min(archived),
            _ => durable,
        })
    }

    fn defer(&self, index: u64, id: Vec<u8>) {
        let mut deferred = self.deferred.lock();
        if deferred.as_ref().is_none_or(|(i, _)| *i < index) {
            *deferred = Some((index, id));
        }
    }

    /// Whether a purge waits for the snapshot or the archive.
    pub fn has_deferred(&self) -> bool {
        self.deferred.lock().is_some()
    }

    /// Runs what is allowed now of the deferred purge: all of it, or the part up to the
    /// allowed index (the rest stays deferred). Called when the snapshot or the archive
    /// moved, or the disk is full.
    pub fn run_deferred(&self, engine: &LogEngine) -> Result<(), LogError> {
        let mut deferred = self.deferred.lock();
        let Some((index, _)) = deferred.as_ref() else {
            return Ok(());
        };
        let index = *index;
        let Some(allowed) = self.allowed(index, engine) else {
            return Ok(());
        };
        if allowed >= index {
            // Cleared only once done: a purge that failed (a full disk) is tried again.
            let id = deferred
                .as_ref()
                .map(|(_, id)| id.clone())
                .unwrap_or_default();
            engine.purge(index, id)?;
            *deferred = None;
            return Ok(());
        }
        let already = engine.bounds().purged.map_or(0, |p| p.index);
        if allowed <= already {
            return Ok(());
        }
        // The entry at `allowed` names the new purge point; a log that does not hold it waits
        // for the whole purge.
        match self.id_at.get().and_then(|id_at| id_at(engine, allowed)) {
            Some(id) => engine.purge(allowed, id),
            None => Ok(()),
        }
    }
}

impl<C: RaftTypeConfig> Clone for RaftLogStore<C> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            stopping: Arc::clone(&self.stopping),
            purge_gate: self.purge_gate.clone(),
            _types: PhantomData,
        }
    }
}

impl<C: RaftTypeConfig> Debug for RaftLogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLogStore")
            .field("engine", &self.engine)
            .finish()
    }
}

impl<C: RaftTypeConfig> RaftLogStore<C> {
    /// Wraps an open engine.
    pub fn new(engine: LogEngine) -> Self {
        Self {
            engine,
            stopping: Arc::new(AtomicBool::new(false)),
            purge_gate: None,
            _types: PhantomData,
        }
    }

    /// Makes writes waiting for disk space give up once `stopping` is set.
    pub fn with_stopping(mut self, stopping: Arc<AtomicBool>) -> Self {
        self.stopping = stopping;
        self
    }

    /// Opens (and recovers) the log in the directory at `path`, e.g. `DATA_DIR/raft`.
    pub fn open(path: impl AsRef<Path>, options: LogOptions) -> Result<Self, LogError> {
        Ok(Self::new(LogEngine::open(path, options)?))
    }

    /// The engine underneath.
    pub fn engine(&self) -> &LogEngine {
        &self.engine
    }
}

/// Runs `attempt` until it does not fail for room ([`LogError::NoSpace`]: the engine refused
/// a write and changed nothing), waiting 50 ms at first, doubling to 2 s, with a warning when
/// the wait starts and then every 30 s or so. Any error returned to openraft stops Raft on
/// this node for good, so a full disk is waited out here instead: a follower whose disk
/// fills catches up once space returns, and Raft on this node does nothing meanwhile (the
/// rest of the cluster goes on without it; a leader that waits loses its lease and is
/// replaced).
///
/// Once `stopping` is set the error is returned after all, so a stop is not held up: Raft then
/// stops on it and the node exits (status 70); the write is made after the restart.
async fn wait_for_room<T>(
    what: &str,
    stopping: &AtomicBool,
    mut attempt: impl FnMut() -> Result<T, LogError>,
) -> Result<T, LogError> {
    let mut pause = std::time::Duration::from_millis(50);
    let mut waited = std::time::Duration::ZERO;
    let mut warned_at: Option<std::time::Duration> = None;
    loop {
        match attempt() {
            Err(e @ LogError::NoSpace { .. }) if !stopping.load(Ordering::Relaxed) => {
                if warned_at.is_none_or(|at| waited - at >= std::time::Duration::from_secs(30)) {
                    tracing::warn!(
                        waited_secs = waited.as_secs(),
                        "the Raft log's disk is full; {what} waits for free space: {e}"
                    );
                    warned_at = Some(waited);
                }
                tokio::time::sleep(pause).await;
                waited += pause;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

fn read_error<NID: openraft::NodeId>(e: impl std::error::Error + 'static) -> StorageError<NID> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_error<NID: openraft::NodeId>(e: impl std::error::Error + 'static) -> StorageError<NID> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

/// The committed log id `save_committed` last gave `engine` (kept in memory, written with the
/// next metadata write), if any: what `/metrics` shows as the commit index.
pub fn committed_id<C: RaftTypeConfig>(engine: &LogEngine) -> Option<LogId<C::NodeId>> {
    let bytes = engine.committed()?;
    bincode::deserialize::<Option<LogId<C::NodeId>>>(&bytes)
        .ok()
        .flatten()
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::Error> {
    bincode::serialize(value)
}

/// The payload of a record of kind [`ENTRY_KIND_BINCODE`]: `entry` encoded with bincode 1's
/// default options (`docs/log-format.md`, "Payload"). Every entry the log stores is encoded
/// here, so the pinned bytes in `tests/log_payload.rs` are the bytes on disk.
pub fn encode_entry<E: Serialize>(entry: &E) -> Result<Vec<u8>, bincode::Error> {
    encode(entry)
}

/// Decodes the payload of a record of kind [`ENTRY_KIND_BINCODE`] (the inverse of
/// [`encode_entry`]).
pub fn decode_entry_bytes<E: DeserializeOwned>(bytes: &[u8]) -> Result<E, bincode::Error> {
    bincode::deserialize(bytes)
}

impl<C> RaftLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
{
    /// Holds back purges past what the snapshot and the archive allow (see [`PurgeGate`]).
    pub fn with_purge_gate(mut self, gate: Arc<PurgeGate>) -> Self {
        let _ = gate.id_at.set(Self::encoded_log_id_at);
        self.purge_gate = Some(gate);
        self
    }

    /// The encoded log id of the entry at `index`, if the log holds it (for [`PurgeGate`]).
    fn encoded_log_id_at(engine: &LogEngine, index: u64) -> Option<Vec<u8>> {
        let record = engine.get(index).ok()??;
        let entry = decode_entry::<C>(&record).ok()?;
        encode(entry.get_log_id()).ok()
    }
}

// openraft's error type is large; it is what the trait methods return anyway.
#[allow(clippy::result_large_err)]
fn decode_entry<C>(record: &Record) -> Result<C::Entry, StorageError<C::NodeId>>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
{
    if record.kind != ENTRY_KIND_BINCODE {
        return Err(StorageIOError::read_log_at_index(
            record.index,
            AnyError::error(format!("unknown record kind {}", record.kind)),
        )
        .into());
    }
    decode_entry_bytes(&record.data)
        .map_err(|e| StorageIOError::read_log_at_index(record.index, AnyError::new(&e)).into())
}

impl<C> RaftLogReader<C> for RaftLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        let records = self.engine.read(start..end).map_err(read_error)?;
        records.iter().map(decode_entry::<C>).collect()
    }
}

impl<C> RaftLogStorage<C> for RaftLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let bounds = self.engine.bounds();
        let last_purged_log_id: Option<LogId<C::NodeId>> = match &bounds.purged {
            Some(purged) => Some(bincode::deserialize(&purged.id).map_err(read_error)?),
            None => None,
        };
        let last_log_id = match bounds.last_index {
            Some(last) => match self.engine.get(last).map_err(read_error)? {
                Some(record) => Some(decode_entry::<C>(&record)?.get_log_id().clone()),
                None => last_purged_log_id.clone(),
            },
            None => last_purged_log_id.clone(),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let bytes = encode(vote).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        wait_for_room("saving the vote", &self.stopping, || {
            self.engine.save_vote(bytes.clone())
        })
        .await
        .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        match self.engine.vote() {
            Some(bytes) => bincode::deserialize(&bytes)
                .map(Some)
                .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into()),
            None => Ok(None),
        }
    }

    /// Kept in memory and written with the next metadata write: openraft calls this on every
    /// commit advance, which must not cost an fsync.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let bytes = encode(&committed).map_err(write_error)?;
        self.engine.set_committed(Some(bytes));
        Ok(())
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        match self.engine.committed() {
            Some(bytes) => bincode::deserialize(&bytes).map_err(read_error),
            None => Ok(None),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let log_id = entry.get_log_id().clone();
            let bytes = encode_entry(&entry)
                .map_err(|e| StorageIOError::write_log_entry(log_id.clone(), AnyError::new(&e)))?;
            encoded.push((log_id.index, log_id.leader_id.term, bytes));
        }
        let records: Vec<RecordRef<'_>> = encoded
            .iter()
            .map(|(index, term, data)| RecordRef {
                index: *index,
                term: *term,
                kind: ENTRY_KIND_BINCODE,
                data,
            })
            .collect();
        // A full disk is waited out (`wait_for_room`), not returned. The engine refused the
        // append without publishing it, so it is made again as it was; the callback goes to
        // whichever attempt is taken.
        let callback = std::sync::Arc::new(parking_lot::Mutex::new(Some(callback)));
        wait_for_room("the append", &self.stopping, || {
            let slot = std::sync::Arc::clone(&callback);
            let appended = self.engine.append_then(
                &records,
                Box::new(move |result: Result<(), LogError>| {
                    if let Some(callback) = slot.lock().take() {
                        callback.log_io_completed(result.map_err(io::Error::other));
                    }
                }),
            );
            // A purge held back for the archive may free the room (the hold ends when the
            // disk runs low: see `PurgeGate`).
            if let (Err(LogError::NoSpace { .. }), Some(gate)) = (&appended, &self.purge_gate) {
                if let Err(e) = gate.run_deferred(&self.engine) {
                    tracing::warn!("a held-back purge on a full disk: {e}");
                }
            }
            appended
        })
        .await
        .map_err(write_error)
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.engine.truncate(log_id.index).map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let id = encode(&log_id).map_err(write_error)?;
        let Some(gate) = &self.purge_gate else {
            return wait_for_room("the purge", &self.stopping, || {
                self.engine.purge(log_id.index, id.clone())
            })
            .await
            .map_err(write_error);
        };
        // The gate runs what is allowed now and keeps the rest (a purge it covers, whole).
        gate.defer(log_id.index, id);
        if gate.allowed(log_id.index, &self.engine) < Some(log_id.index) {
            tracing::debug!(
                upto = log_id.index,
                "purge held back (past the durable snapshot or the archived index)"
            );
        }
        let engine = self.engine.clone();
        let gate = Arc::clone(gate);
        wait_for_room("the purge", &self.stopping, move || {
            gate.run_deferred(&engine)
        })
        .await
        .map_err(write_error)
    }
}
