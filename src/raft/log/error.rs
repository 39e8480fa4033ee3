//! [`LogError`]: everything the log engine can report.

use std::io;

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

    /// A segment holds bytes that fail their checks where a torn write cannot explain them.
    #[error("log segment {segment} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// File name of the segment.
        segment: String,
        /// Byte offset of the damage within the segment.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// The segments do not form one contiguous log: one is missing or out of place.
    #[error("the log has a hole: {reason}")]
    Gap {
        /// What is missing, with the indexes on either side.
        reason: String,
    },

    /// The metadata file fails its checks. It is replaced atomically, so this is real damage.
    #[error("the log metadata file is corrupt: {reason}")]
    CorruptMeta {
        /// What is wrong.
        reason: String,
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
}
