//! openraft's storage test suite against [`RaftLogStore`], with a minimal in-memory state
//! machine (the SQLite one runs the same suite in the cluster code).

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StoredMembership,
};
use raftlite::raft::log::openraft::RaftLogStore;
use raftlite::raft::log::LogOptions;
use tokio::sync::Mutex;

openraft::declare_raft_types!(
    /// Test types: string commands and responses, u64 node ids, `BasicNode`.
    pub TestTypes:
);

/// What the state machine remembers: enough for the suite's checks.
#[derive(Debug, Default, Clone)]
struct MemoryState {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, openraft::BasicNode>,
    snapshot: Option<(SnapshotMeta<u64, openraft::BasicNode>, Vec<u8>)>,
    snapshot_count: u64,
}

#[derive(Debug, Default, Clone)]
struct MemoryStateMachine {
    state: Arc<Mutex<MemoryState>>,
}

impl RaftSnapshotBuilder<TestTypes> for MemoryStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TestTypes>, StorageError<u64>> {
        let mut state = self.state.lock().await;
        state.snapshot_count += 1;
        let data = serde_json::to_vec(&(state.last_applied, &state.membership))
            .expect("serialize snapshot");
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id: format!("snapshot-{}", state.snapshot_count),
        };
        state.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TestTypes> for MemoryStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<u64>>,
            StoredMembership<u64, openraft::BasicNode>,
        ),
        StorageError<u64>,
    > {
        let state = self.state.lock().await;
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<String>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TestTypes>> + Send,
    {
        let mut state = self.state.lock().await;
        let mut responses = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            if let EntryPayload::Membership(membership) = &entry.payload {
                state.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
            }
            responses.push(String::new());
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let mut state = self.state.lock().await;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.snapshot = Some((meta.clone(), snapshot.into_inner()));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TestTypes>>, StorageError<u64>> {
        let state = self.state.lock().await;
        Ok(state.snapshot.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Builds a fresh log in a temporary directory; the directory lives as long as the guard.
struct DiskLogBuilder {
    segment_size: u64,
}

impl StoreBuilder<TestTypes, RaftLogStore<TestTypes>, MemoryStateMachine, tempfile::TempDir>
    for DiskLogBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            RaftLogStore<TestTypes>,
            MemoryStateMachine,
        ),
        StorageError<u64>,
    > {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let options = LogOptions {
            segment_size: self.segment_size,
            ..LogOptions::default()
        };
        let store = RaftLogStore::open(dir.path().join("raft"), options).expect("open the log");
        Ok((dir, store, MemoryStateMachine::default()))
    }
}

#[test]
fn openraft_suite_passes_with_default_segments() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    Suite::test_all(DiskLogBuilder {
        segment_size: LogOptions::default().segment_size,
    })
    .expect("the openraft storage suite");
}

/// Segments so small that most entries get a segment of their own: every truncate and purge in
/// the suite crosses segment boundaries.
#[test]
fn openraft_suite_passes_with_tiny_segments() {
    Suite::test_all(DiskLogBuilder { segment_size: 100 }).expect("the openraft storage suite");
}

/// A purge past what may be purged (the state machine's durable snapshot, what openraft 0.9
/// asks for while a snapshot is still being installed; or, while archiving, the archived
/// index) runs up to that point and holds back the rest, which runs as the point moves; a
/// purge that is covered runs at once.
#[tokio::test]
async fn a_purge_past_what_may_be_purged_waits_for_it() {
    use openraft::storage::RaftLogStorage as _;
    use openraft::{Entry, EntryPayload};
    use raftlite::raft::log::openraft::{encode_entry, PurgeGate, ENTRY_KIND_BINCODE};
    use raftlite::raft::log::record::RecordRef;
    use std::sync::atomic::{AtomicU64, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let purgeable = Arc::new(AtomicU64::new(3));
    // The archive's hold: u64::MAX for none.
    let archived = Arc::new(AtomicU64::new(u64::MAX));
    let gate = PurgeGate::new(
        {
            let purgeable = Arc::clone(&purgeable);
            move || Some(purgeable.load(Ordering::SeqCst))
        },
        {
            let archived = Arc::clone(&archived);
            move || Some(archived.load(Ordering::SeqCst)).filter(|a| *a != u64::MAX)
        },
    );
    let mut store = RaftLogStore::<TestTypes>::open(dir.path().join("raft"), LogOptions::default())
        .unwrap()
        .with_purge_gate(Arc::clone(&gate));
    let log_id = |index| LogId::new(openraft::CommittedLeaderId::new(1, 1), index);
    // Real entries: a partial purge names its new purge point by the entry's log id.
    let payloads: Vec<Vec<u8>> = (1..=10)
        .map(|index| {
            encode_entry(&Entry::<TestTypes> {
                log_id: log_id(index),
                payload: EntryPayload::Blank,
            })
            .unwrap()
        })
        .collect();
    let records: Vec<RecordRef<'_>> = payloads
        .iter()
        .zip(1..)
        .map(|(data, index)| RecordRef {
            index,
            term: 1,
            kind: ENTRY_KIND_BINCODE,
            data,
        })
        .collect();
    store.engine().append(&records).unwrap();
    let purged = |store: &RaftLogStore<TestTypes>| store.engine().bounds().purged.map(|p| p.index);
    let purged_id = |store: &RaftLogStore<TestTypes>| {
        let id = store.engine().bounds().purged.unwrap().id;
        raftlite::raft::log::openraft::decode_entry_bytes::<LogId<u64>>(&id).unwrap()
    };

    store.purge(log_id(2)).await.unwrap();
    assert_eq!(purged(&store), Some(2), "covered: at once");
    store.purge(log_id(8)).await.unwrap();
    assert_eq!(
        purged(&store),
        Some(3),
        "up to what may be purged, the rest held back"
    );
    assert_eq!(purged_id(&store), log_id(3), "the entry's own log id");
    assert!(gate.has_deferred());
    gate.run_deferred(store.engine()).unwrap();
    assert_eq!(purged(&store), Some(3), "nothing moved");
    purgeable.store(5, Ordering::SeqCst);
    gate.run_deferred(store.engine()).unwrap();
    assert_eq!(purged(&store), Some(5), "a part as the point moves");
    assert!(gate.has_deferred());
    purgeable.store(9, Ordering::SeqCst);
    gate.run_deferred(store.engine()).unwrap();
    assert_eq!(
        purged(&store),
        Some(8),
        "the whole purge asked for, no further"
    );
    assert_eq!(purged_id(&store), log_id(8));
    assert!(!gate.has_deferred());
    gate.run_deferred(store.engine()).unwrap();
    assert_eq!(purged(&store), Some(8));

    // The archive's hold: a snapshot at 20, the archive at 8. A purge within the log waits
    // for the archive; one past the log's last entry (a snapshot installed over a shorter
    // log, which openraft appends after next) does not.
    purgeable.store(20, Ordering::SeqCst);
    archived.store(8, Ordering::SeqCst);
    store.purge(log_id(9)).await.unwrap();
    assert_eq!(purged(&store), Some(8), "held for the archive");
    assert!(gate.has_deferred());
    store.purge(log_id(15)).await.unwrap();
    assert_eq!(purged(&store), Some(15), "past the log: not held");
    assert!(!gate.has_deferred());
}
