//! [`LogEngine`]: open and recover, append with group commit, read, truncate, purge, and the
//! metadata (vote, purged id, committed id).
//!
//! Concurrency: every mutation holds the `writer` mutex for its whole duration, so mutations
//! are serialized in the order they are called, as openraft requires. Readers only take the
//! `view` read lock, which a mutation write-locks just long enough to publish what it did.
//! No fsync runs under the `view` lock except those of truncate and purge, which must not let
//! a reader see a log that is neither the old one nor the new one.
//!
//! Group commit: an append writes its frames (into the page cache) and publishes them to
//! readers before it returns, then queues a flush request. The flusher thread takes every
//! request queued so far (up to `max_flush_batch`), runs one `sync_data` per distinct file
//! (normally one), and only then fires their callbacks. Appends from concurrent proposals thus
//! share one fsync.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};

use crate::raft::log::error::LogError;
use crate::raft::log::io::{LogDir, LogFile, OsDir};
use crate::raft::log::meta::{Meta, PurgedId};
use crate::raft::log::record::{self, Record, RecordRef, SEGMENT_HEADER_LEN};
use crate::raft::log::segment::{self, recover_segment, ScanOutcome, Segment};

/// Entries larger than this are read into a buffer of their own, which becomes the record's
/// payload (no second copy); smaller ones are read together.
const READ_IN_PLACE_FROM: usize = 64 << 10;

/// The most bytes one read of small entries takes.
const MAX_SPAN_READ: u64 = 4 << 20;

/// The write buffer is kept between appends up to this size; a larger one (a large entry)
/// is released after its write.
const KEEP_SCRATCH: usize = 1 << 20;

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// A segment is closed and a new one started when the next record would make it larger
    /// than this. A record larger than this gets a segment of its own.
    pub segment_size: u64,
    /// Most append requests one fsync acknowledges.
    pub max_flush_batch: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 * 1024 * 1024,
            max_flush_batch: 1024,
        }
    }
}

/// Called once the records of an append are durable, or with the error that prevented it.
pub type OnDurable = Box<dyn FnOnce(Result<(), LogError>) + Send>;

/// A summary of the log's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBounds {
    /// First index that can be read, if any entry is live.
    pub first_index: Option<u64>,
    /// Last index that can be read, if any entry is live.
    pub last_index: Option<u64>,
    /// The last purged id, as given to [`LogEngine::purge`].
    pub purged: Option<PurgedId>,
}

/// The persistent Raft log. Cheap to clone: clones share one engine.
#[derive(Clone, Debug)]
pub struct LogEngine {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: Arc<dyn LogDir>,
    options: LogOptions,
    writer: Mutex<WriterState>,
    view: RwLock<View>,
    flush_requests: Sender<FlushRequest>,
    health: Arc<Health>,
    /// Last, so it drops after `flush_requests`: the flusher sees its queue close and ends,
    /// and the engine's drop waits for it.
    _flusher: FlusherThread,
}

/// The flusher thread, joined when the engine is dropped: a dropped engine leaves no thread
/// behind, still holding the directory or finishing an fsync (the fuzz target opens an engine
/// per input, and its leak check found the thread of a dropped engine still alive).
#[derive(Debug)]
struct FlusherThread(Option<std::thread::JoinHandle<()>>);

impl Drop for FlusherThread {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            // A flush callback that dropped the engine's last handle runs on the flusher:
            // it cannot wait for itself, and ends right after.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

#[derive(Debug)]
struct WriterState {
    meta: Meta,
    /// The in-memory committed id differs from the one on disk.
    committed_dirty: bool,
    /// Reused buffer for encoding frames.
    scratch: Vec<u8>,
}

/// What readers see. Changed only by a thread that holds the writer mutex.
#[derive(Debug)]
struct View {
    /// Live segments in log order; the last one takes appends.
    segments: Vec<Segment>,
    /// Byte offset in the last segment where the next frame goes.
    tail_offset: u64,
    /// Index of `locations[0]`.
    first_index: u64,
    /// The index the next append must carry; `None` for a log that was never written.
    next_index: Option<u64>,
    /// Where each live entry is; the segment is found from the index.
    locations: VecDeque<EntryLocation>,
}

/// Where one record sits: 16 bytes per entry, whatever the payload size.
#[derive(Debug, Clone, Copy)]
struct EntryLocation {
    offset: u64,
    len: u32,
}

impl View {
    fn last_index(&self) -> Option<u64> {
        if self.locations.is_empty() {
            None
        } else {
            Some(self.first_index + self.locations.len() as u64 - 1)
        }
    }

    /// The segment that holds `index`: the last one starting at or before it.
    fn segment_of(&self, index: u64) -> Option<&Segment> {
        let after = self.segments.partition_point(|s| s.first_index <= index);
        after.checked_sub(1).map(|i| &self.segments[i])
    }
}

/// Set once a write or an fsync fails; from then on every mutation is refused.
#[derive(Debug, Default)]
struct Health {
    failure: Mutex<Option<String>>,
}

impl Health {
    fn check(&self) -> Result<(), LogError> {
        match &*self.failure.lock() {
            Some(reason) => Err(LogError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }
    /// Remembers an I/O failure. Other errors (a bad argument) leave the log as it was.
    fn poison(&self, error: &LogError) {
        if matches!(error, LogError::Io { .. }) {
            self.failure.lock().get_or_insert_with(|| error.to_string());
        }
    }
}

struct FlushRequest {
    file: Arc<dyn LogFile>,
    segment: String,
    on_durable: OnDurable,
}

impl LogEngine {
    /// Opens (or creates) the log in the directory at `path`, recovering it.
    pub fn open(path: impl AsRef<Path>, options: LogOptions) -> Result<LogEngine, LogError> {
        let path = path.as_ref();
        let dir = OsDir::open(path)
            .map_err(|e| LogError::io(format!("create the log directory {}", path.display()), e))?;
        Self::open_in(Arc::new(dir), options)
    }

    /// Opens (or creates) the log in `dir`, recovering it: see the module docs of
    /// [`crate::raft::log`] for the rules.
    pub fn open_in(dir: Arc<dyn LogDir>, options: LogOptions) -> Result<LogEngine, LogError> {
        let meta = Meta::load(dir.as_ref())?;
        let purged_index = meta.purged.as_ref().map(|p| p.index);
        let view = recover(dir.as_ref(), purged_index)?;
        let health = Arc::new(Health::default());
        let (flush_requests, queue) = crossbeam_channel::unbounded();
        let flusher_health = health.clone();
        let max_batch = options.max_flush_batch.max(1);
        let flusher = std::thread::Builder::new()
            .name("raft-log-flusher".into())
            .spawn(move || run_flusher(&queue, &flusher_health, max_batch))
            .map_err(|e| LogError::io("start the log flusher thread", e))?;
        Ok(LogEngine {
            shared: Arc::new(Shared {
                dir,
                options,
                writer: Mutex::new(WriterState {
                    meta,
                    committed_dirty: false,
                    scratch: Vec::new(),
                }),
                view: RwLock::new(view),
                flush_requests,
                health,
                _flusher: FlusherThread(Some(flusher)),
            }),
        })
    }

    /// Appends `records` and returns once they are durable.
    pub fn append(&self, records: &[RecordRef<'_>]) -> Result<(), LogError> {
        let (done, wait) = crossbeam_channel::bounded(1);
        self.append_then(
            records,
            Box::new(move |result| {
                let _ = done.send(result);
            }),
        )?;
        wait.recv()
            .unwrap_or_else(|_| Err(LogError::Poisoned("the flusher thread stopped".into())))
    }

    /// Appends `records` and returns once they are written and readable, but not yet durable;
    /// `on_durable` runs (on the flusher thread) once they are.
    ///
    /// Records must continue the log: the first index is the last index plus one, or, in an
    /// empty log, the purged index plus one (any index if nothing was ever purged). Records at
    /// or below the purge point are skipped.
    pub fn append_then(
        &self,
        records: &[RecordRef<'_>],
        on_durable: OnDurable,
    ) -> Result<(), LogError> {
        let shared = &*self.shared;
        let mut writer = shared.writer.lock();
        shared.health.check()?;
        let tail_before = {
            let view = shared.view.read();
            view.segments.last().map(|s| (s.clone(), view.tail_offset))
        };
        let result = self.write_records(&mut writer, records);
        let active = match result {
            Ok(active) => active,
            Err(e @ LogError::NoSpace { .. }) => {
                // A write refused for room left nothing dirty to lose (unlike a failed
                // fsync), but it may have stored a prefix of the frames past the tail: cut
                // them off, so no stale frame can follow a later, shorter append on disk.
                // Cutting needs no room; if even that fails, the log is poisoned.
                if let Err(e) = self.undo_unpublished_write(tail_before.as_ref()) {
                    shared.health.poison(&e);
                    return Err(e);
                }
                return Err(e);
            }
            Err(e) => {
                shared.health.poison(&e);
                return Err(e);
            }
        };
        let Some(active) = active else {
            on_durable(Ok(()));
            return Ok(());
        };
        let request = FlushRequest {
            file: active.file,
            segment: active.name,
            on_durable,
        };
        if let Err(unsent) = shared.flush_requests.send(request) {
            (unsent.0.on_durable)(Err(LogError::Poisoned("the flusher thread stopped".into())));
        }
        Ok(())
    }

    /// After a write refused for room: cuts the last published segment back to its tail
    /// (`tail_before`), and removes the segments the append created, which nothing
    /// references. A later append may put different records where they were: a stale frame
    /// or segment left behind would read as part of the log after a restart.
    fn undo_unpublished_write(&self, tail_before: Option<&(Segment, u64)>) -> Result<(), LogError> {
        let shared = &*self.shared;
        if let Some((segment, tail)) = tail_before {
            segment.file.set_len(*tail).map_err(|e| {
                LogError::io(format!("cut segment {} after a full disk", segment.name), e)
            })?;
        }
        let published: Vec<String> = {
            let view = shared.view.read();
            view.segments.iter().map(|s| s.name.clone()).collect()
        };
        let names = shared
            .dir
            .list()
            .map_err(|e| LogError::io("list the log directory after a full disk", e))?;
        let mut removed = false;
        for name in names {
            if segment::parse_segment_file_name(&name).is_some() && !published.contains(&name) {
                shared
                    .dir
                    .remove(&name)
                    .map_err(|e| LogError::io(format!("remove unpublished segment {name}"), e))?;
                removed = true;
            }
        }
        if removed {
            shared
                .dir
                .sync_dir()
                .map_err(|e| LogError::io("sync the log directory after a full disk", e))?;
        }
        Ok(())
    }

    /// Writes and publishes `records`; returns the segment that still needs an fsync.
    fn write_records(
        &self,
        writer: &mut WriterState,
        records: &[RecordRef<'_>],
    ) -> Result<Option<Segment>, LogError> {
        let shared = &*self.shared;
        // Records at or below the purge point are already covered by a snapshot: storing them
        // would put them out of reach of reads anyway, so they are dropped.
        let purged = writer.meta.purged.as_ref().map(|p| p.index);
        let skip = records
            .iter()
            .take_while(|r| purged.is_some_and(|p| r.index <= p))
            .count();
        let records = &records[skip..];
        let Some(first) = records.first() else {
            return Ok(None);
        };
        let (mut active, mut tail, next) = {
            let view = shared.view.read();
            (
                view.segments.last().cloned(),
                view.tail_offset,
                view.next_index,
            )
        };
        let mut expected = next.unwrap_or(first.index);
        for record in records {
            if record.index != expected {
                return Err(LogError::NotContiguous {
                    expected,
                    got: record.index,
                });
            }
            if record.data.len() > record::MAX_BODY_LEN - record::BODY_FIXED_LEN {
                return Err(LogError::RecordTooLarge {
                    index: record.index,
                    len: record.data.len(),
                });
            }
            expected += 1;
        }

        let mut new_segments = Vec::new();
        let mut locations = Vec::with_capacity(records.len());
        let scratch = &mut writer.scratch;
        scratch.clear();
        let mut scratch_offset = tail;
        for record in records {
            let frame_len = record.encoded_len() as u64;
            let holds_records = tail > SEGMENT_HEADER_LEN as u64;
            let full = tail + frame_len > shared.options.segment_size;
            if active.is_none() || (full && holds_records) {
                if let Some(old) = &active {
                    // A segment that is not the last must be complete on disk: recovery only
                    // forgives a torn tail in the last one.
                    write_at(old, scratch, scratch_offset)?;
                    old.file.sync_data().map_err(|e| {
                        LogError::io(format!("sync segment {} before closing it", old.name), e)
                    })?;
                    scratch.clear();
                }
                let created = Segment::create(shared.dir.as_ref(), record.index)?;
                new_segments.push(created.clone());
                active = Some(created);
                tail = SEGMENT_HEADER_LEN as u64;
                scratch_offset = tail;
            }
            record::encode_record(record, scratch);
            locations.push(EntryLocation {
                offset: tail,
                len: frame_len as u32,
            });
            tail += frame_len;
        }
        let active = active.expect("a segment exists after writing records");
        write_at(&active, scratch, scratch_offset)?;
        // One large entry must not keep its size of memory for the node's life.
        if scratch.capacity() > KEEP_SCRATCH {
            *scratch = Vec::new();
        }

        let mut view = shared.view.write();
        view.segments.extend(new_segments);
        view.tail_offset = tail;
        if view.locations.is_empty() {
            view.first_index = first.index;
        }
        view.locations.extend(locations);
        view.next_index = Some(expected);
        Ok(Some(active))
    }

    /// Reads the entries with indexes in `range` that are live. Entries outside the live log
    /// are skipped, so the result may be shorter than the range; it never has holes.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<Record>, LogError> {
        let view = self.shared.view.read();
        let start = range.start.max(view.first_index);
        let end = range
            .end
            .min(view.first_index + view.locations.len() as u64);
        let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
        let mut index = start;
        while index < end {
            let segment = view.segment_of(index).ok_or_else(|| LogError::Gap {
                reason: format!("no segment holds index {index}"),
            })?;
            let run_end = view
                .segments
                .iter()
                .find(|s| s.first_index > index)
                .map_or(end, |next| next.first_index.min(end));
            let location = |i: u64| view.locations[(i - view.first_index) as usize];
            let read_at = |buf: &mut [u8], offset: u64, what: &str| {
                segment.file.read_exact_at(buf, offset).map_err(|e| {
                    LogError::io(format!("read {what} from segment {}", segment.name), e)
                })
            };
            let corrupt = |at: EntryLocation, reason: String| LogError::Corrupt {
                segment: self.shared.dir.file_path(&segment.name),
                offset: at.offset,
                reason,
            };
            let check_index = |record: &RecordRef<'_>, i: u64, at: EntryLocation| {
                if record.index == i {
                    Ok(())
                } else {
                    Err(corrupt(
                        at,
                        format!("found index {} where {i} was expected", record.index),
                    ))
                }
            };
            while index < run_end {
                let at = location(index);
                if at.len as usize > READ_IN_PLACE_FROM {
                    // A large entry: its own buffer becomes its payload, so it is in memory
                    // once, not twice.
                    let mut frame = vec![0u8; at.len as usize];
                    read_at(&mut frame, at.offset, &format!("entry {index}"))?;
                    let (record, _) =
                        record::decode_record(&frame).map_err(|e| corrupt(at, e.to_string()))?;
                    check_index(&record, index, at)?;
                    let (term, kind, len) = (record.term, record.kind, record.data.len());
                    let from = record.data.as_ptr() as usize - frame.as_ptr() as usize;
                    frame.copy_within(from..from + len, 0);
                    frame.truncate(len);
                    frame.shrink_to_fit();
                    out.push(Record {
                        index,
                        term,
                        kind,
                        data: frame,
                    });
                    index += 1;
                    continue;
                }
                // A run of small entries: one read for all of them.
                let mut span_end = index + 1;
                while span_end < run_end
                    && location(span_end).len as usize <= READ_IN_PLACE_FROM
                    && location(span_end).offset + u64::from(location(span_end).len) - at.offset
                        <= MAX_SPAN_READ
                {
                    span_end += 1;
                }
                let last = location(span_end - 1);
                let mut buf = vec![0u8; (last.offset + u64::from(last.len) - at.offset) as usize];
                read_at(&mut buf, at.offset, &format!("entries {index}..{span_end}"))?;
                for i in index..span_end {
                    let here = location(i);
                    let from = (here.offset - at.offset) as usize;
                    let frame = buf.get(from..from + here.len as usize).unwrap_or_default();
                    let (record, _) =
                        record::decode_record(frame).map_err(|e| corrupt(here, e.to_string()))?;
                    check_index(&record, i, here)?;
                    out.push(record.to_owned());
                }
                index = span_end;
            }
        }
        Ok(out)
    }

    /// Reads one entry, if it is live.
    pub fn get(&self, index: u64) -> Result<Option<Record>, LogError> {
        Ok(self.read(index..index.saturating_add(1))?.pop())
    }

    /// The bounds of the live log and the last purged id.
    pub fn bounds(&self) -> LogBounds {
        let purged = self.shared.writer.lock().meta.purged.clone();
        let view = self.shared.view.read();
        let last_index = view.last_index();
        LogBounds {
            first_index: last_index.map(|_| view.first_index),
            last_index,
            purged,
        }
    }

    /// Bytes of the live segment files on disk (`/metrics`): one `fstat` per segment, under
    /// the readers' lock. A segment whose size cannot be read counts as empty.
    pub fn disk_bytes(&self) -> u64 {
        let view = self.shared.view.read();
        view.segments
            .iter()
            .map(|s| s.file.size().unwrap_or(0))
            .sum()
    }

    /// Removes every entry with index `from` or above (Raft conflict truncation), durably.
    pub fn truncate(&self, from: u64) -> Result<(), LogError> {
        let shared = &*self.shared;
        let _writer = shared.writer.lock();
        shared.health.check()?;
        self.truncate_locked(from)
            .inspect_err(|e| shared.health.poison(e))
    }

    fn truncate_locked(&self, from: u64) -> Result<(), LogError> {
        let shared = &*self.shared;
        // Readers wait for the truncation: they must not see entries that are being removed.
        let mut view = shared.view.write();
        let Some(last) = view.last_index() else {
            return Ok(());
        };
        if from > last {
            return Ok(());
        }
        let cut = from.max(view.first_index);
        let cut_inside = view.segment_of(cut).is_some_and(|s| s.first_index < cut);
        // Remove whole segments from the end first, so a crash leaves a shorter log, never a
        // hole.
        let keep = view.segments.partition_point(|s| s.first_index < cut);
        for dropped in view.segments[keep..].iter().rev() {
            shared.dir.remove(&dropped.name).map_err(|e| {
                LogError::io(
                    format!("remove segment {} while truncating", dropped.name),
                    e,
                )
            })?;
        }
        if keep < view.segments.len() {
            shared
                .dir
                .sync_dir()
                .map_err(|e| LogError::io("sync the log directory after truncating", e))?;
        }
        view.segments.truncate(keep);
        match view.segments.last() {
            // `cut` is inside the last kept segment: cut the file at that record's boundary.
            Some(containing) if cut_inside => {
                let cut_offset = view.locations[(cut - view.first_index) as usize].offset;
                let context = || format!("cut segment {} at index {cut}", containing.name);
                containing
                    .file
                    .set_len(cut_offset)
                    .map_err(|e| LogError::io(context(), e))?;
                containing
                    .file
                    .sync_data()
                    .map_err(|e| LogError::io(context(), e))?;
                view.tail_offset = cut_offset;
            }
            // `cut` was the first index of a removed segment: the one before it stays whole.
            Some(previous) => {
                view.tail_offset = previous.file.size().map_err(|e| {
                    LogError::io(format!("read the length of segment {}", previous.name), e)
                })?;
            }
            None => view.tail_offset = 0,
        }
        let keep_entries = (cut - view.first_index) as usize;
        view.locations.truncate(keep_entries);
        view.next_index = Some(cut);
        Ok(())
    }

    /// Purges every entry up to and including `upto`, recording `purged_id` (an encoding of the
    /// whole log id, for the layer above) durably first. Only whole segments are deleted; the
    /// entries left in a partly purged segment can no longer be read.
    pub fn purge(&self, upto: u64, purged_id: Vec<u8>) -> Result<(), LogError> {
        let shared = &*self.shared;
        let mut writer = shared.writer.lock();
        shared.health.check()?;
        tracing::debug!(upto, "purging the log");
        if writer.meta.purged.as_ref().is_some_and(|p| p.index >= upto) {
            return Ok(());
        }
        self.purge_locked(&mut writer, upto, purged_id)
            .inspect_err(|e| shared.health.poison(e))
    }

    fn purge_locked(
        &self,
        writer: &mut WriterState,
        upto: u64,
        purged_id: Vec<u8>,
    ) -> Result<(), LogError> {
        let shared = &*self.shared;
        // The purge point goes to disk before any file is deleted: after a crash, recovery
        // must know where the log is meant to start.
        let mut meta = writer.meta.clone();
        meta.purged = Some(PurgedId {
            index: upto,
            id: purged_id,
        });
        meta.store(shared.dir.as_ref())?;
        writer.meta = meta;
        writer.committed_dirty = false;
        crate::failpoint::crash_point("log::purge_after_meta");

        let mut view = shared.view.write();
        let doomed = wholly_purged_segments(&view.segments, view.next_index, upto);
        for segment in &view.segments[..doomed] {
            shared
                .dir
                .remove(&segment.name)
                .map_err(|e| LogError::io(format!("remove purged segment {}", segment.name), e))?;
        }
        if doomed > 0 {
            shared
                .dir
                .sync_dir()
                .map_err(|e| LogError::io("sync the log directory after purging", e))?;
        }
        view.segments.drain(..doomed);
        if view.segments.is_empty() {
            view.tail_offset = 0;
        }
        let new_first = upto + 1;
        let drop_entries = new_first
            .saturating_sub(view.first_index)
            .min(view.locations.len() as u64);
        view.locations.drain(..drop_entries as usize);
        view.first_index = view.first_index.max(new_first);
        if view.next_index.is_none_or(|next| next < new_first) {
            view.next_index = Some(new_first);
        }
        Ok(())
    }

    /// Saves the vote durably (atomic replace of the metadata file).
    pub fn save_vote(&self, vote: Vec<u8>) -> Result<(), LogError> {
        let shared = &*self.shared;
        let mut writer = shared.writer.lock();
        shared.health.check()?;
        let mut meta = writer.meta.clone();
        meta.vote = Some(vote);
        meta.store(shared.dir.as_ref())
            .inspect_err(|e| shared.health.poison(e))?;
        writer.meta = meta;
        writer.committed_dirty = false;
        Ok(())
    }

    /// The last saved vote.
    pub fn vote(&self) -> Option<Vec<u8>> {
        self.shared.writer.lock().meta.vote.clone()
    }

    /// Records the committed id in memory only. It reaches the disk with the next metadata write
    /// (a vote, a purge, or [`LogEngine::flush_meta`]), so saving it on every commit costs no
    /// fsync. After a crash the id read back may be older than the last one saved.
    pub fn set_committed(&self, committed: Option<Vec<u8>>) {
        let mut writer = self.shared.writer.lock();
        if writer.meta.committed != committed {
            writer.meta.committed = committed;
            writer.committed_dirty = true;
        }
    }

    /// The last committed id given to [`LogEngine::set_committed`].
    pub fn committed(&self) -> Option<Vec<u8>> {
        self.shared.writer.lock().meta.committed.clone()
    }

    /// Writes the metadata file if the committed id changed since it was last written.
    pub fn flush_meta(&self) -> Result<(), LogError> {
        let shared = &*self.shared;
        let mut writer = shared.writer.lock();
        shared.health.check()?;
        if writer.committed_dirty {
            writer
                .meta
                .store(shared.dir.as_ref())
                .inspect_err(|e| shared.health.poison(e))?;
            writer.committed_dirty = false;
        }
        Ok(())
    }
}

fn write_at(segment: &Segment, bytes: &[u8], offset: u64) -> Result<(), LogError> {
    segment
        .file
        .write_all_at(bytes, offset)
        .map_err(|e| LogError::write(format!("write to segment {}", segment.name), e))
}

/// How many segments, from the front, hold only entries at or below `upto`.
fn wholly_purged_segments(segments: &[Segment], next_index: Option<u64>, upto: u64) -> usize {
    let mut count = 0;
    for (i, segment) in segments.iter().enumerate() {
        // A segment ends where the next begins; the last one ends at the log's end.
        let end = segments
            .get(i + 1)
            .map(|s| s.first_index)
            .or(next_index)
            .unwrap_or(segment.first_index);
        if end > upto + 1 {
            break;
        }
        count += 1;
    }
    count
}

fn run_flusher(queue: &Receiver<FlushRequest>, health: &Health, max_batch: usize) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let mut synced: Vec<*const ()> = Vec::new();
        let mut failure: Option<String> = None;
        if let Err(e) = health.check() {
            failure = Some(e.to_string());
        }
        for request in &batch {
            let key = Arc::as_ptr(&request.file) as *const ();
            if failure.is_some() || synced.contains(&key) {
                continue;
            }
            match request.file.sync_data() {
                Ok(()) => synced.push(key),
                Err(e) => {
                    let error = LogError::io(format!("sync segment {}", request.segment), e);
                    health.poison(&error);
                    failure = Some(error.to_string());
                }
            }
        }
        for request in batch {
            let result = match &failure {
                None => Ok(()),
                Some(reason) => Err(LogError::Poisoned(reason.clone())),
            };
            (request.on_durable)(result);
        }
    }
}

/// Adds to a corruption error in one segment what else a cut there would lose: the log must
/// stay contiguous, so every later segment would go with it.
fn name_the_later_segments(error: LogError, later: &[(u64, String)]) -> LogError {
    match (error, later.first()) {
        (
            LogError::Corrupt {
                segment,
                offset,
                mut reason,
            },
            Some((first_later, _)),
        ) => {
            let count = later.len();
            let segments = if count == 1 { "segment" } else { "segments" };
            reason.push_str(&format!(
                "; {count} later {segments}, from index {first_later} on, would be lost with it"
            ));
            LogError::Corrupt {
                segment,
                offset,
                reason,
            }
        }
        (error, _) => error,
    }
}

/// Rebuilds the view from the segment files; see the module docs for the rules.
fn recover(dir: &dyn LogDir, purged_index: Option<u64>) -> Result<View, LogError> {
    let names = dir
        .list()
        .map_err(|e| LogError::io("list the log directory", e))?;
    let mut named: Vec<(u64, String)> = names
        .into_iter()
        .filter_map(|name| segment::parse_segment_file_name(&name).map(|first| (first, name)))
        .collect();
    named.sort();

    // A segment followed by one that starts at or below the purge point + 1 holds only purged
    // entries: garbage of a purge that a crash interrupted. It is not even read (damage in it
    // cannot matter), and is deleted below once the rest of the log has been found sound.
    let wholly_purged_by_name = purged_index.map_or(0, |upto| {
        named
            .windows(2)
            .take_while(|pair| pair[1].0 <= upto.saturating_add(1))
            .count()
    });
    let (stale_names, named) = named.split_at(wholly_purged_by_name);

    let mut recovered = Vec::with_capacity(named.len());
    for (position, (first, name)) in named.iter().enumerate() {
        let is_last = position + 1 == named.len();
        let outcome = recover_segment(dir, name, *first, is_last, purged_index)
            .map_err(|error| name_the_later_segments(error, &named[position + 1..]))?;
        match outcome {
            ScanOutcome::Valid(segment) => recovered.push(segment),
            ScanOutcome::TornCreation { reason } => {
                tracing::warn!(segment = %name, "removing a last log segment whose creation was cut short: {reason}");
                dir.remove(name)
                    .map_err(|e| LogError::io(format!("remove the torn segment {name}"), e))?;
                dir.sync_dir()
                    .map_err(|e| LogError::io("sync the log directory after recovery", e))?;
            }
        }
    }

    // The segments must chain: each starts right after the previous one ends.
    for pair in recovered.windows(2) {
        let expected = pair[0].segment.first_index + pair[0].spans.len() as u64;
        if pair[1].segment.first_index != expected {
            return Err(LogError::Gap {
                reason: format!(
                    "segment {} should be followed by index {expected}, but the next segment, {}, starts at {}",
                    dir.file_path(&pair[0].segment.name),
                    dir.file_path(&pair[1].segment.name),
                    pair[1].segment.first_index
                ),
            });
        }
    }
    let next_index = match recovered.last() {
        Some(last) => Some(last.segment.first_index + last.spans.len() as u64),
        None => purged_index.map(|p| p + 1),
    };

    // A crash in the middle of a purge can leave segments that are wholly purged: finish the job.
    if let Some(upto) = purged_index {
        let segments: Vec<Segment> = recovered.iter().map(|r| r.segment.clone()).collect();
        let doomed = wholly_purged_segments(&segments, next_index, upto);
        let stale = stale_names
            .iter()
            .map(|(_, name)| name.clone())
            .chain(recovered.drain(..doomed).map(|r| r.segment.name));
        let mut removed = 0;
        for name in stale {
            dir.remove(&name)
                .map_err(|e| LogError::io(format!("remove purged segment {name}"), e))?;
            removed += 1;
        }
        if removed > 0 {
            dir.sync_dir()
                .map_err(|e| LogError::io("sync the log directory after recovery", e))?;
        }
        if let Some(first) = recovered.first() {
            if first.segment.first_index > upto + 1 {
                return Err(LogError::Gap {
                    reason: format!(
                        "the log was purged up to index {upto} but its first segment, {}, starts at {}",
                        dir.file_path(&first.segment.name),
                        first.segment.first_index
                    ),
                });
            }
        }
    }

    let live_from = purged_index.map_or(0, |p| p + 1);
    let mut view = View {
        segments: Vec::with_capacity(recovered.len()),
        tail_offset: recovered.last().map_or(0, |r| r.end_offset),
        first_index: recovered
            .first()
            .map_or(live_from, |r| r.segment.first_index.max(live_from)),
        next_index: next_index.map(|n| n.max(live_from)),
        locations: VecDeque::new(),
    };
    for segment in recovered {
        let first = segment.segment.first_index;
        for (i, span) in segment.spans.iter().enumerate() {
            if first + i as u64 >= live_from {
                view.locations.push_back(EntryLocation {
                    offset: span.offset,
                    len: span.len,
                });
            }
        }
        view.segments.push(segment.segment);
    }
    Ok(view)
}
