//! The openraft type configuration: what the log carries, what applying it returns, and how
//! rqlite's string node ids map onto openraft's `u64` ids.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::NodeInfo;
use crate::db::execute::RequestResults;
use crate::db::request::{ApplyEnv, Request, ResultOptions, RowsPolicy};

/// The largest encoded entry a leader proposes. It bounds what a peer must buffer for one
/// AppendEntries (the sender splits batches of entries to fit, see `cluster::network`), so the
/// Raft port can refuse anything larger while it streams. A write's request is bounded when
/// its body is parsed (`db::request::MAX_REQUEST_BYTES`; its encoding is never larger), and
/// the other entries are small: a committed entry that no follower accepts would stop
/// replication for good.
pub const MAX_ENTRY_BYTES: usize = crate::db::request::MAX_REQUEST_BYTES + (64 << 10);

/// One replicated command: what every node applies, in log order.
///
/// A command that runs users' SQL must give the same result on every node: the apply
/// connection reads its clock and its random seed from the entry (`ApplyEnv`, stamped by the
/// leader). Entries without a stamp get inputs derived from their log position.
///
/// Its bincode encoding, and that of every type inside it, is the log's on-disk format
/// (docs/log-format.md, "Payload"): the order of variants and fields is part of it. Moving
/// or renaming keeps the bytes; reordering, adding or removing does not (see "Compatibility"
/// there, and `tests/log_payload.rs`, which pins the bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// A write request (`/db/execute`, or a `/db/request` that writes).
    Execute {
        request: Request,
        policy: RowsPolicy,
        opts: ResultOptions,
        /// The leader's clock and seed for this entry.
        env: ApplyEnv,
    },
    /// A `level=strong` read as older versions proposed it, through the log. Strong reads no
    /// longer enter the log (they confirm leadership and read locally, see `Store::query`), so
    /// nothing proposes it; applying one from an older log runs nothing.
    StrongQuery {
        request: Request,
        opts: ResultOptions,
    },
    /// A `/db/load` or `/boot`: content staged out of band (see `store::restore`) takes effect at
    /// this entry's log position. The entry names the content; the bytes never enter the log.
    Load(LoadCommand),
    /// Write requests that arrived together, gathered by the leader's group commit
    /// (`store::batcher`): applied in order in one SQLite transaction, each with its own
    /// clock and seed and its own results, exactly as if each were an `Execute` entry.
    ExecuteBatch(Vec<ExecuteItem>),
    /// A `/db/load` of SQL text: the script runs at this entry's position with the entry's
    /// clock and seed, or, when the leader built its result in advance for a blank database
    /// and this node's database is still blank, the built file is installed (see
    /// `store::restore::build_once`). ([`Command::Load`] carries database files; it carried
    /// SQL loads too in logs written before this command existed.)
    LoadSql(SqlLoad),
    /// `VACUUM`, proposed by the leader every `-auto-vacuum-int` (`store::housekeeping`):
    /// run outside any transaction (SQLite cannot vacuum inside one) at this entry's position,
    /// on every node. It renumbers the rowids of tables with neither an INTEGER PRIMARY KEY
    /// nor an index, alike everywhere, so every node must run it
    /// (`state_machine::vacuum_at`: a full disk waits for room, another failure stops the node).
    Vacuum,
    /// Change data capture (`crate::cdc`): the leader delivered the events of every entry up
    /// to this index. Every node with `-cdc-config` records it and drops those events from its
    /// queue; a new leader sends only what comes after. Changes no row.
    CdcHighWatermark(u64),
}

/// What a [`Command::LoadSql`] entry carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlLoad {
    /// The staged script.
    pub script: LoadCommand,
    /// The leader's clock and seed for the script.
    pub env: ApplyEnv,
    /// Its result on a blank database, when the leader built one.
    pub built: Option<BuiltDatabase>,
}

/// One write request of an [`Command::ExecuteBatch`]: the fields of [`Command::Execute`]
/// (defined with the requests, so `db::apply` runs it without Raft's types).
pub use crate::db::request::ExecuteItem;

/// What a load entry carries: which staged content, how to check it, where to pull it from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadCommand {
    /// The staged content's id (file `load-<id>.staged` in every data directory).
    pub id: String,
    pub kind: crate::db::restore_file::LoadKind,
    /// Size in bytes and CRC-32C of the staged content: a pulled copy must match both.
    pub size: u64,
    pub crc32c: u32,
    /// The Raft address of the node that staged it (the leader at proposal time).
    pub source: String,
    /// Whether other nodes may pull the content from the source after the source applied the
    /// entry. False on a one-node cluster: the source may then consume its staged file.
    pub shared: bool,
}

/// What applying a command returned (delivered to the client on the leader only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandResponse {
    pub results: RequestResults,
    /// An [`Command::ExecuteBatch`]'s results, one per item in order (`results` is then empty).
    pub batch: Vec<RequestResults>,
    /// When this node began applying the entry (it was committed by then): where the leader's
    /// commit latency of a write ends (`metrics`). Local to the node, never serialized.
    #[serde(skip)]
    pub apply_started: Option<std::time::Instant>,
}

impl CommandResponse {
    /// The answer of an entry that failed as a whole and changed nothing: `error` for its
    /// request, or for each item of a batch.
    pub fn failed(payload: &openraft::EntryPayload<TypeConfig>, error: &str) -> CommandResponse {
        let failed = || RequestResults {
            error: Some(error.to_string()),
            ..RequestResults::default()
        };
        match payload {
            openraft::EntryPayload::Normal(Command::ExecuteBatch(items)) => CommandResponse {
                batch: items.iter().map(|_| failed()).collect(),
                ..CommandResponse::default()
            },
            _ => CommandResponse {
                results: failed(),
                ..CommandResponse::default()
            },
        }
    }
}

/// A snapshot's bytes. The live database is the state machine, so a snapshot that is built
/// holds no bytes: it is materialised (copied with the backup API) only when it is sent.
#[derive(Debug)]
pub enum SnapshotData {
    /// The live database, as of the moment it is copied (when it is sent or installed).
    Live(LiveDatabase),
    /// A file received from the leader (or copied for sending), to install or stream.
    File(std::path::PathBuf),
    /// Bytes in memory: only openraft's own storage test suite uses this.
    Memory(Cursor<Vec<u8>>),
}

/// A handle on a node's live database, as snapshot data, and the engine that copies it.
#[derive(Clone)]
pub struct LiveDatabase {
    pub db: std::sync::Arc<crate::db::Database>,
    pub backups: std::sync::Arc<super::backup::Backups>,
}

impl std::fmt::Debug for LiveDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveDatabase({})", self.db.path().display())
    }
}

impl LiveDatabase {
    /// Copies the database, as of now, into a new file at `dest` (a consistent snapshot:
    /// one read transaction for the whole copy), through the backup engine: background
    /// priority, and the disk reserve kept.
    pub async fn copy_to(&self, dest: std::path::PathBuf) -> anyhow::Result<()> {
        self.backups.snapshot_copy(&self.db, dest).await?;
        tracing::info!("copied the live database for a snapshot");
        Ok(())
    }
}

/// The physical settings a blank database fixes and a built one must share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlankLayout {
    pub page_size: u32,
    /// `PRAGMA auto_vacuum`: 0 none, 1 full, 2 incremental.
    pub auto_vacuum: u8,
    /// `PRAGMA encoding`, such as `UTF-8`.
    pub encoding: String,
}

/// A database built in advance from a SQL load's script (`store::restore::build_once`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltDatabase {
    /// The file the script builds from a blank database of `layout`.
    pub database: LoadCommand,
    pub layout: BlankLayout,
}

impl SqlLoad {
    /// The content this node applies: the built database if there is one and `current` (the
    /// database's layout when blank, at the entry's position) is the one it was built for,
    /// else the script.
    pub fn choose(&self, current: Option<&BlankLayout>) -> &LoadCommand {
        match &self.built {
            Some(b) if current == Some(&b.layout) => &b.database,
            _ => &self.script,
        }
    }

    /// The content no node applies once `chosen` is (every node chooses alike), if any.
    pub fn unused(&self, chosen: &LoadCommand) -> Option<&LoadCommand> {
        let built = &self.built.as_ref()?.database;
        Some(if chosen.id == built.id {
            &self.script
        } else {
            built
        })
    }
}

openraft::declare_raft_types!(
    /// raftlite's Raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub use super::node_info::{LogId, NodeId, StoredMembership};
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;

/// openraft's numeric id for rqlite's string node id: FNV-1a, stable across versions and
/// machines. Two different ids that hash alike are refused when the second one joins.
pub fn numeric_node_id(id: &str) -> NodeId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_are_stable_and_distinct() {
        assert_eq!(numeric_node_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(numeric_node_id("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(numeric_node_id("1"), numeric_node_id("2"));
    }
}
