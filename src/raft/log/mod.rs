//! The Raft log storage engine: segment files, group commit, recovery, and the openraft
//! adapter.
//!
//! # What it owns
//!
//! Every node keeps its Raft log and its vote here, in `DATA_DIR/raft/`. The engine stores
//! records `(index, term, kind, payload)` and knows nothing of openraft, HTTP or SQLite; the
//! [`openraft`] module adapts it to openraft's storage-v2 `RaftLogStorage`.
//! The state machine (SQLite) and its snapshots live elsewhere.
//!
//! # Files
//!
//! ```text
//! DATA_DIR/raft/
//!   meta                       vote, last purged log id, committed log id (atomic replace)
//!   00000000000000000001.seg   records 1 ..= 4711
//!   00000000000000004712.seg   records 4712 ..= 9000   <- last segment, takes appends
//! ```
//!
//! A segment is named after its first index and holds consecutive records. It is closed when
//! the next record would make it larger than [`LogOptions::segment_size`] (64 MiB by default).
//!
//! ```text
//!  0        8     10    12       16          24       28      32
//!  +--------+-----+-----+--------+-----------+--------+-------+
//!  | magic  | ver |flags| rsvd   |first_index| rsvd   | crc   |  segment header (32 bytes)
//!  +--------+-----+-----+--------+-----------+--------+-------+
//!  | len | body crc | head crc | index | term | kind | payload ... | A5 |  record 4712
//!  +-----+----------+----------+-------+------+------+-------------+----+
//!  | len | body crc | head crc | index | term | kind | payload ... | A5 |  record 4713
//!  +-----+----------+----------+-------+------+------+-------------+----+
//!  | ...                                    (end of file = end of log)
//! ```
//!
//! A record's head (`len`, body checksum) has its own checksum, so its length can be trusted
//! even when its body is damaged, and every record ends with the non-zero byte `0xA5`, so the
//! last byte of a record that reached the disk whole is never zero.
//! `docs/log-format.md` gives every byte.
//!
//! # Writing
//!
//! An append encodes its records, writes them with one positional write at the tail of the
//! last segment, publishes their locations to readers, and queues a flush request. A single
//! flusher thread drains the queue (everything queued, up to a bound), calls `fdatasync` once
//! per batch and then runs each request's callback. So the entries of concurrent proposals
//! share one fsync (group commit), openraft can read an entry as soon as `append` returns (as
//! it requires), and its flush callback fires only once the entry is on disk.
//!
//! Truncate (a Raft conflict: drop `index..`) removes whole later segments, last first, then
//! cuts the segment holding `index` at that record's boundary (`set_len` + fsync). Purge (after
//! a snapshot: drop `..=index`) first writes the purge point into `meta` durably, then deletes
//! whole segments that hold nothing above it. A partly purged segment stays; its purged
//! records are simply no longer readable.
//!
//! # Reading
//!
//! Memory holds, per live entry, its byte offset and frame length (16 bytes), never its
//! payload. A read finds the segment by binary search on first indexes, reads the run of
//! frames with one positional read, and checks each frame's CRC again: bits that rot after the
//! log was opened are reported, never returned.
//!
//! # Recovery
//!
//! Opening scans every segment in index order and checks every header and record, and stops a
//! segment's scan at its first invalid record. What it finds there is either what a crash
//! leaves of an interrupted write (a prefix of the records being written, then the end of the
//! file or zeros) or damage to records that reached the disk whole (their length is intact
//! and their end mark, never zero, is in place). The exact table is in `docs/log-format.md`.
//!
//! - An interrupted write at the end of the **last** segment is cut at the last valid record,
//!   and the cut is reported with `tracing::warn!`: nothing in it was acknowledged. A last
//!   segment too short to hold its header and with an invalid header is removed the same way.
//! - **Damage** fails the open with [`LogError::Corrupt`] (segment path, byte, index, what was
//!   found, what the operator can do), in every segment, the last record of the log included:
//!   a single flipped bit anywhere is always damage, never a torn tail. So does an
//!   interrupted write in any segment but the last, a valid record with an out-of-sequence
//!   index, a segment whose header disagrees with its name, segments that do not chain (a
//!   missing segment in the middle), or a first segment that starts after the purge point. A
//!   segment in a format version other than 2 fails it with [`LogError::UnsupportedFormat`].
//!   Silently dropping acknowledged entries would let a node forget what it promised to its
//!   peers; refusing to start is the safe failure.
//! - The one exception: a damaged record **at or below the purge point** (covered by a
//!   snapshot, never read again) whose head checks is stepped over with a warning. Segments
//!   left wholly below the purge point by a crash during purge are deleted without being read.
//! # Invariants
//!
//! 1. The records of the live log have consecutive indexes, across segments.
//! 2. Every segment but the last is complete and durable: it is fsynced before the next one is
//!    created.
//! 3. A record is acknowledged (its flush callback fires with `Ok`) only after an `fdatasync`
//!    that covers it; records reach disk in log order, so after a crash the log holds a
//!    prefix of what was written, including every acknowledged record.
//! 4. `meta` is always either the previous or the next complete version.
//! 5. The purge point is durable before any segment below it is deleted.
//! 6. Every byte of a record is checked: the head by its own checksum, the body by another,
//!    the end mark by its value. A record whose last byte is on disk was written whole.
//!
//! # IMPLEMENTATION CAVEATS
//!
//! - After any failed write or fsync the engine refuses all further writes
//!   ([`LogError::Poisoned`]): after a failed fsync the page cache may not match the disk, and
//!   only a reopen (which re-reads the disk) restores a trustworthy state. The exception is a
//!   write the file system refused for room ([`LogError::NoSpace`]): it leaves nothing dirty,
//!   the append's frames past the tail are cut off and the segments it created removed, so
//!   the log is exactly as before and the same append can be made again once there is room
//!   (the openraft adapter waits for it).
//! - The records of one append are written by the caller; only the fsync is batched on the
//!   flusher thread. Writes into the page cache are cheap; the fsync is what is worth sharing.
//! - Truncate, purge, `save_vote` and segment rollover fsync on the calling thread, which for
//!   openraft is an async task. They are rare; the hot path (append) never blocks on an fsync.
//! - The committed log id is written only with the next metadata write (vote, purge,
//!   [`LogEngine::flush_meta`]): after a crash it may be older than the last one saved.
//!   openraft allows that.
//! - A lost **last** segment, or a lost first segment of a log that was never purged, cannot
//!   be told from a shorter log. The engine does not record the expected last index anywhere,
//!   nor how far the log was acknowledged (that would cost a write per fsync). For the same
//!   reason, damage that zeroes the end of the last segment from a record's head or end mark on
//!   is cut like an interrupted write; a single flipped bit never is.
//! - The engine does not know the committed index (the committed id is opaque to it, and
//!   written lazily) nor the snapshot's: only the purge point relaxes the rule that damage
//!   refuses to open.
//! - Recovery reads each segment whole into memory, one at a time (64 MiB by default).
//! - A torn multi-sector write whose sectors reached the disk out of order (or a file system
//!   that shows stale bytes, not zeros, in a file it grew) could leave an invalid record with
//!   non-zero bytes after it in the last segment; recovery then refuses to open rather than
//!   guess. The records involved were never acknowledged, so cutting the segment by hand at
//!   the offset the error gives is safe in that case.
//! - A damaged head at or below the purge point still refuses to open: the engine does not
//!   resume at something after it that looks like the next record, since a payload can hold
//!   such bytes. It searches for one only to say, in the error, what a cut would lose.
//! - The engine never preallocates or reuses a segment file, and syncs every shrinking
//!   `set_len` before writing past the new end, so after a crash the bytes past the last
//!   whole record are only what the interrupted write left. A file system that exposes old
//!   blocks instead of zeros there is outside these assumptions (`docs/log-format.md`).
//! - The disk is assumed to honour `fdatasync`, to keep a renamed file's contents once the
//!   directory is fsynced, and to tear writes only at the end of what was being written.

pub mod engine;
pub mod error;
pub mod io;
pub mod meta;
#[cfg(feature = "server")]
pub mod openraft;
pub mod record;
pub mod segment;

pub use engine::{LogBounds, LogEngine, LogOptions, OnDurable};
pub use error::{LogError, REBUILD_ADVICE};
pub use record::{Record, RecordRef};
