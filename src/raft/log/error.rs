//! [`LogError`]: everything the log engine can report.
//!
//! The errors that mean the log on disk cannot be trusted (`Corrupt`, `Gap`, `CorruptMeta`,
//! `UnsupportedFormat`) end with what an operator can do about it: a node refuses to start on
//! them, and its start-up error is all the operator sees.

use std::io;

use crate::raft::log::record::SEGMENT_FORMAT_VERSION;

/// What an operator can do about a log that cannot be trusted; `docs/log-format.md`
/// ("Recovery") says the same at more length.
pub const REBUILD_ADVICE: &str = "This node's Raft log cannot be trusted, and the node will not \
     use it. If the rest of its cluster is healthy, rebuild the node from it: stop the node, move \
     its data directory aside, and start it again with the same node ID and addresses and with \
     -join pointing at another node; it rejoins and catches up from the leader. A single-node \
     cluster has no other copy: restore it from a backup";

/// An error from the log engine.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O call failed; `context` says what the engine was doing.
    #[error("could not {context}: {source}")]
    Io {
        /// A short verb phrase: "sync segment 00000000000000000001.seg".
        context: String,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },

    /// The file system had no room for an append's records (`ENOSPC` from the write itself,
    /// not from an fsync). Nothing of the append was published or acknowledged, the segment
    /// was cut back to where it ended, and the engine stays usable: the same append can be
    /// made again once there is room.
    #[error("could not {context}: no space left on the log's file system: {source}")]
    NoSpace {
        /// A short verb phrase: "write to segment 00000000000000000001.seg".
        context: String,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },

    /// A segment holds bytes that fail their checks where a torn write cannot explain them.
    #[error("log segment {segment} is corrupt at byte {offset}: {reason}. {REBUILD_ADVICE}")]
    Corrupt {
        /// The segment: its path for a log on disk, else its file name.
        segment: String,
        /// Byte offset of the damage within the segment.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// The segments do not form one contiguous log: one is missing or out of place.
    #[error("the log has a hole: {reason}. {REBUILD_ADVICE}")]
    Gap {
        /// What is missing, with the indexes on either side.
        reason: String,
    },

    /// The metadata file fails its checks. It is replaced atomically, so this is real damage.
    #[error("the log metadata file is corrupt: {reason}. {REBUILD_ADVICE}")]
    CorruptMeta {
        /// What is wrong.
        reason: String,
    },

    /// A segment was written in a format version this build does not read.
    #[error(
        "log segment {segment} has format version {version}, which this build does not read \
         (it reads only version {SEGMENT_FORMAT_VERSION}; version 1 was written only by \
         development builds). {REBUILD_ADVICE}"
    )]
    UnsupportedFormat {
        /// The segment: its path for a log on disk, else its file name.
        segment: String,
        /// The version its header gives.
        version: u16,
    },

    /// An append does not continue the log.
    #[error("cannot append index {got}: the log expects index {expected} next")]
    NotContiguous {
        /// The index the log expects next.
        expected: u64,
        /// The index that was offered.
        got: u64,
    },

    /// A record is too large to frame.
    #[error("record {index} has {len} bytes of payload, more than a record can hold")]
    RecordTooLarge {
        /// Index of the record.
        index: u64,
        /// Length of its payload.
        len: usize,
    },

    /// An earlier fsync failed. After that the page cache cannot be trusted to match the disk,
    /// so the engine refuses all further writes until it is reopened (which re-reads the disk).
    #[error("the log is unusable after an earlier write failure ({0}); reopen it")]
    Poisoned(String),
}

impl LogError {
    /// Wraps an I/O error with what the engine was doing.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        LogError::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps the error of a write into a file: [`LogError::NoSpace`] when the file system
    /// had no room (a write refused for room leaves nothing dirty, unlike a failed fsync),
    /// else [`LogError::Io`].
    pub fn write(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        if source.kind() == io::ErrorKind::StorageFull {
            LogError::NoSpace { context, source }
        } else {
            LogError::Io { context, source }
        }
    }
}
