//! The node's durable queue of captured events, independent of the Raft log (which snapshots
//! purge): `DATA_DIR/cdc/queue.db`, a SQLite file of its own.
//!
//! Every node queues the events of every entry it applies ([`Queue::put`], on the writer
//! thread, before the entry's own COMMIT), so whichever node leads next has them. The leader
//! reads them in index order ([`Queue::read_after`]) and sends them; the high-water mark it
//! records in the log, applied on every node ([`Queue::record_high_watermark`]), prunes them.
//!
//! Invariants:
//! - An entry's events are durable (the queue commits with `synchronous=FULL`) before the
//!   database commits the entry, so a crash can lose neither: an entry the database has not
//!   committed is applied again after a restart and queued again, with the same events (they
//!   come from the entry alone), and [`Queue::put`] replaces rather than duplicates.
//! - Nothing at or below the high-water mark is queued again, so a node that applies old
//!   entries again never resends what the cluster already delivered.
//! - The high-water mark only grows.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use parking_lot::Mutex;
use raftlite_ffi::{Connection, OpenFlags};

/// The queue's file, under the data directory.
pub const QUEUE_FILE: &str = "cdc/queue.db";

/// One queued entry: its index, the leader's clock when it was written (Unix ms), and its
/// events as a JSON array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub index: u64,
    pub commit_millis: i64,
    pub events: String,
}

/// See the module documentation.
pub struct Queue {
    /// Used by the writer thread (puts, the high-water mark).
    writer: Mutex<Connection>,
    /// Used by the sender.
    reader: Mutex<Connection>,
    high_watermark: AtomicU64,
    /// The largest index queued (0: none).
    last_index: AtomicU64,
    /// Told after every put.
    appended: tokio::sync::Notify,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("high_watermark", &self.high_watermark())
            .field("last_index", &self.last_index.load(Ordering::Relaxed))
            .finish()
    }
}

fn open(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path, OpenFlags::READ_WRITE | OpenFlags::CREATE)
        .with_context(|| format!("open the CDC queue {}", path.display()))?;
    conn.busy_timeout(5_000)?;
    Ok(conn)
}

impl Queue {
    /// Opens (or creates) the queue in `data_dir`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Queue> {
        let path = data_dir.join(QUEUE_FILE);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let writer = open(&path)?;
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
                 CREATE TABLE IF NOT EXISTS entries(
                     idx INTEGER PRIMARY KEY, commit_ms INTEGER NOT NULL, events TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
            )
            .with_context(|| format!("set up the CDC queue {}", path.display()))?;
        let high_watermark = writer
            .query_i64("SELECT value FROM meta WHERE key = 'high_watermark'")?
            .unwrap_or(0);
        let last_index = writer
            .query_i64("SELECT max(idx) FROM entries")?
            .unwrap_or(0);
        let reader = open(&path)?;
        Ok(Queue {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            high_watermark: AtomicU64::new(high_watermark.max(0) as u64),
            last_index: AtomicU64::new(last_index.max(0) as u64),
            appended: tokio::sync::Notify::new(),
        })
    }

    /// Queues entry `index`'s events (each one JSON object), replacing what an earlier attempt
    /// at the same entry queued; an entry without events leaves nothing queued. Ignored at or
    /// below the high-water mark.
    pub fn put(
        &self,
        index: u64,
        commit_millis: i64,
        events: &[String],
    ) -> raftlite_ffi::Result<()> {
        if index <= self.high_watermark() {
            return Ok(());
        }
        let idx = i64::try_from(index).unwrap_or(i64::MAX);
        let writer = self.writer.lock();
        if events.is_empty() {
            // Only an entry applied before (whose COMMIT then failed, or a node that stopped
            // before its COMMIT) can have something queued.
            if index <= self.last_index.load(Ordering::Relaxed) {
                let mut stmt = writer.prepare("DELETE FROM entries WHERE idx = ?1")?;
                stmt.bind_i64(1, idx)?;
                while stmt.step()?.is_row() {}
            }
            return Ok(());
        }
        let mut json = String::with_capacity(2 + events.iter().map(|e| e.len() + 1).sum::<usize>());
        json.push('[');
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(event);
        }
        json.push(']');
        let mut stmt = writer.prepare_cached(
            "INSERT OR REPLACE INTO entries(idx, commit_ms, events) VALUES(?1, ?2, ?3)",
        )?;
        stmt.bind_i64(1, idx)?;
        stmt.bind_i64(2, commit_millis)?;
        stmt.bind_text(3, &json)?;
        while stmt.step()?.is_row() {}
        drop(stmt);
        drop(writer);
        self.last_index.fetch_max(index, Ordering::Relaxed);
        self.appended.notify_waiters();
        Ok(())
    }

    /// Records that everything up to `index` was delivered, and drops it from the queue.
    pub fn record_high_watermark(&self, index: u64) -> raftlite_ffi::Result<()> {
        if index <= self.high_watermark() {
            return Ok(());
        }
        let idx = i64::try_from(index).unwrap_or(i64::MAX);
        let writer = self.writer.lock();
        writer.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| {
            let mut stmt = writer.prepare("DELETE FROM entries WHERE idx <= ?1")?;
            stmt.bind_i64(1, idx)?;
            while stmt.step()?.is_row() {}
            drop(stmt);
            let mut stmt = writer
                .prepare("INSERT OR REPLACE INTO meta(key, value) VALUES('high_watermark', ?1)")?;
            stmt.bind_i64(1, idx)?;
            while stmt.step()?.is_row() {}
            drop(stmt);
            writer.execute_batch("COMMIT")
        })();
        if result.is_err() && !writer.is_autocommit().unwrap_or(true) {
            let _ = writer.execute_batch("ROLLBACK");
        }
        result?;
        self.high_watermark.fetch_max(index, Ordering::Release);
        Ok(())
    }

    /// The last recorded high-water mark (0: none).
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The largest index ever queued here (0: none).
    pub fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::Relaxed)
    }

    /// Up to `limit` queued entries after `after` and up to `through`, in index order. The
    /// caller passes its applied index as `through`: an entry is queued just before its own
    /// COMMIT, which may still be refused (and its events then removed).
    ///
    /// Reading stops once the entries' events pass `max_bytes` (the entry that passes it is
    /// included: the first is always returned, whatever its size).
    pub fn read_after(
        &self,
        after: u64,
        through: u64,
        limit: usize,
        max_bytes: usize,
    ) -> raftlite_ffi::Result<Vec<Queued>> {
        let reader = self.reader.lock();
        let mut stmt = reader.prepare_cached(
            "SELECT idx, commit_ms, events FROM entries WHERE idx > ?1 AND idx <= ?2 \
             ORDER BY idx LIMIT ?3",
        )?;
        stmt.bind_i64(1, i64::try_from(after).unwrap_or(i64::MAX))?;
        stmt.bind_i64(2, i64::try_from(through).unwrap_or(i64::MAX))?;
        stmt.bind_i64(3, i64::try_from(limit).unwrap_or(i64::MAX))?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while bytes < max_bytes && stmt.step()?.is_row() {
            let events = String::from_utf8_lossy(stmt.column_text(2)).into_owned();
            bytes = bytes.saturating_add(events.len());
            out.push(Queued {
                index: stmt.column_i64(0).max(0) as u64,
                commit_millis: stmt.column_i64(1),
                events,
            });
        }
        Ok(out)
    }

    /// How many entries are queued.
    pub fn queued(&self) -> raftlite_ffi::Result<u64> {
        let reader = self.reader.lock();
        Ok(reader
            .query_i64("SELECT count(*) FROM entries")?
            .unwrap_or(0)
            .max(0) as u64)
    }

    /// Waits until the next put (or returns at once if one happens while it is called).
    pub async fn appended(&self) {
        self.appended.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{{\"op\":\"INSERT\",\"new_row_id\":{i}}}"))
            .collect()
    }

    #[test]
    fn entries_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        q.put(3, 30, &events(1)).unwrap();
        q.put(5, 50, &events(2)).unwrap();
        q.put(4, 40, &[]).unwrap();
        let got = q.read_after(0, u64::MAX, 10, usize::MAX).unwrap();
        assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), vec![3, 5]);
        assert_eq!(
            got[1].events,
            format!("[{},{}]", events(2)[0], events(2)[1])
        );
        assert_eq!(got[1].commit_millis, 50);
        assert_eq!(q.read_after(3, u64::MAX, 10, usize::MAX).unwrap().len(), 1);
        assert_eq!(q.read_after(0, u64::MAX, 1, usize::MAX).unwrap().len(), 1);
        // Nothing past the caller's applied index.
        assert_eq!(q.read_after(0, 4, 10, usize::MAX).unwrap().len(), 1);
        // The first entry whatever its size; then until the bytes pass the bound.
        assert_eq!(q.read_after(0, u64::MAX, 10, 1).unwrap().len(), 1);
        drop(q);
        let q = Queue::open(dir.path()).unwrap();
        assert_eq!(q.last_index(), 5);
        assert_eq!(q.queued().unwrap(), 2);
    }

    #[test]
    fn a_second_put_replaces_and_an_empty_one_removes() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        q.put(7, 1, &events(3)).unwrap();
        q.put(7, 1, &events(1)).unwrap();
        assert_eq!(
            q.read_after(0, u64::MAX, 10, usize::MAX).unwrap()[0].events,
            format!("[{}]", events(1)[0])
        );
        q.put(7, 1, &[]).unwrap();
        assert!(q
            .read_after(0, u64::MAX, 10, usize::MAX)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_high_water_mark_prunes_grows_only_and_keeps_old_entries_out() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        for i in 1..=5 {
            q.put(i, 0, &events(1)).unwrap();
        }
        q.record_high_watermark(3).unwrap();
        q.record_high_watermark(2).unwrap();
        assert_eq!(q.high_watermark(), 3);
        assert_eq!(
            q.read_after(0, u64::MAX, 10, usize::MAX)
                .unwrap()
                .iter()
                .map(|e| e.index)
                .collect::<Vec<_>>(),
            vec![4, 5]
        );
        // An entry applied again after a restart is not queued again below the mark.
        q.put(2, 0, &events(1)).unwrap();
        assert_eq!(q.queued().unwrap(), 2);
        drop(q);
        let q = Queue::open(dir.path()).unwrap();
        assert_eq!(q.high_watermark(), 3);
        q.put(3, 0, &events(1)).unwrap();
        assert_eq!(q.queued().unwrap(), 2);
    }
}
