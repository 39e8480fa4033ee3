//! The SQL form of a backup: [`dump_with_helpers`] runs on a read connection in one snapshot and
//! writes into a bounded channel whose reader is the HTTP body, so the client's reading pace
//! is the backpressure and memory stays bounded whatever the size of the database. The
//! snapshot pins the WAL, so a slow client cannot hold it for ever: [`DumpCaps`] end the dump,
//! with a last comment line giving the reason, then a failed stream (an aborted connection).
//! A binary backup streamed straight to its client (`Backups::binary_direct`) uses the same
//! channel and caps.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftlite_ffi::Connection;

use super::{Backup, ContentId, DumpCaps};
use crate::db::dump::{dump_with_helpers, helper_count, share_snapshot};
use crate::db::wal::{grown_since, wal_use, WalUse};
use crate::db::{Database, STATE_TABLE};
use crate::store::applied_state;

/// Size of the SQL channel's messages.
const SQL_MESSAGE: usize = 256 * 1024;
/// Messages in flight between the dumper thread and the HTTP body: 8 × 256 KiB at most.
pub(super) const SQL_CHANNEL_DEPTH: usize = 8;

/// `std::io::Write` into the SQL channel. Writes gather into messages of [`SQL_MESSAGE`]
/// bytes, handed over without another copy; fewer, larger messages mean fewer wake-ups of the
/// response task per byte. A full channel parks the dumper thread (the client's reading pace
/// is the backpressure), but never for good: every [`CAP_CHECK_EVERY`] it checks the
/// [`DumpCaps`], because its snapshot pins the WAL. A closed channel (the client left) or a
/// cap fails the write, which stops the dump. `flush` sends what is gathered (the dumper
/// flushes once, at its end).
pub(super) struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    runtime: tokio::runtime::Handle,
    caps: DumpCaps,
    /// The database's `-shm` file, where the WAL's frame count is.
    shm_path: PathBuf,
    /// The WAL's use when the snapshot was taken: frames appended since are what it pins.
    wal_at_start: Option<WalUse>,
}

/// How long an aborted dump waits between its trailer and the abort (see `sql_backup`).
const TRAILER_FLUSH_PAUSE: Duration = Duration::from_millis(200);

/// How often a dumper waiting on a slow client checks its caps.
const CAP_CHECK_EVERY: Duration = Duration::from_millis(250);

impl ChannelWriter {
    pub(super) fn new(
        tx: tokio::sync::mpsc::Sender<Bytes>,
        runtime: tokio::runtime::Handle,
        caps: DumpCaps,
        shm_path: PathBuf,
    ) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(SQL_MESSAGE),
            runtime,
            caps,
            shm_path,
            wal_at_start: None,
        }
    }

    /// Marks the start of the snapshot (called inside the read transaction, once it has read).
    pub(super) fn snapshot_began(&mut self) {
        self.wal_at_start = wal_use(&self.shm_path).ok().flatten();
    }

    fn send_gathered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(SQL_MESSAGE));
        let waiting_since = Instant::now();
        loop {
            self.check_wal()?;
            let reserve = tokio::time::timeout(CAP_CHECK_EVERY, self.tx.reserve());
            match self.runtime.block_on(reserve) {
                Ok(Ok(permit)) => {
                    permit.send(Bytes::from(full));
                    return Ok(());
                }
                Ok(Err(_closed)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "backup client went away",
                    ))
                }
                Err(_elapsed) if waiting_since.elapsed() >= self.caps.stall_timeout => {
                    return Err(io::Error::other(format!(
                        "the client read nothing for {:?} (-dump-stall-timeout) while the \
                         dump held a snapshot that keeps the WAL from being checkpointed",
                        self.caps.stall_timeout
                    )))
                }
                Err(_elapsed) => {}
            }
        }
    }

    fn check_wal(&self) -> io::Result<()> {
        let Some(limit) = self.caps.wal_limit else {
            return Ok(());
        };
        // Unreadable: no evidence of growth, and the dump is worth more than the check.
        let now = wal_use(&self.shm_path).ok().flatten();
        let grown = grown_since(self.wal_at_start, now);
        if grown > limit {
            return Err(io::Error::other(format!(
                "the WAL grew by {grown} bytes while this dump held its snapshot, over the \
                 {limit} of -dump-wal-limit: read the dump faster, or take a binary backup"
            )));
        }
        Ok(())
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= SQL_MESSAGE {
            self.send_gathered()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_gathered()
    }
}

/// The last line of a dump that was cut short, before the connection is aborted: a reader of
/// the partial file sees why (it also lacks the final `COMMIT;`, so it restores nothing).
fn aborted_trailer(reason: &str) -> Bytes {
    Bytes::from(format!("\n-- raftlite: dump aborted: {reason}\n"))
}

pub(super) async fn sql_backup(
    db: Arc<Database>,
    caps: DumpCaps,
    tables: Option<Vec<String>>,
) -> anyhow::Result<Backup> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(SQL_CHANNEL_DEPTH);
    let (content_tx, content_rx) = tokio::sync::oneshot::channel::<ContentId>();
    // The dump's outcome travels beside the channel: a failed dumper may be unable to put
    // anything into a channel its client stopped reading.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let shm_path = crate::db::sibling(db.path(), "-shm");
    let (path, settings) = (db.path().to_path_buf(), db.settings().clone());
    let slots = Arc::clone(&db);
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::spawn(async move {
        db.with_reader(move |conn| {
            let mut out = ChannelWriter::new(tx, runtime, caps, shm_path);
            // Each helper takes a free reader slot (`-db-max-ro-conns`) for as long as the
            // dump runs, or is not opened: a dump never waits for slots, nor takes one from
            // a query that holds it.
            let mut held = Vec::new();
            let open_helper = || {
                let slot = slots.try_reader_slot().ok_or_else(|| {
                    raftlite_ffi::Error::new(raftlite_ffi::sys::SQLITE_BUSY, "no reader slot free")
                })?;
                held.push(slot);
                crate::db::settings::open_reader(&path, &settings)
            };
            let result =
                dump_in_snapshot(conn, open_helper, tables.as_deref(), content_tx, &mut out);
            if let Err(e) = &result {
                tracing::warn!("SQL dump stopped: {e:#}");
            }
            // The root cause alone: it is the sentence the client needs (a cap, a closed
            // database), without the layers that carried it here.
            let _ = done_tx.send(result.map_err(|e| e.root_cause().to_string()));
        })
        .await
    });
    let first = match rx.recv().await {
        Some(chunk) => chunk,
        // Nothing sent: the dump failed at once, or the reader never ran (database closed).
        None => {
            if let Ok(Err(e)) = done_rx.await {
                anyhow::bail!("{e}");
            }
            task.await??;
            anyhow::bail!("the dump ended without output");
        }
    };
    // Sent before the dump's first write, so it is here once a chunk is.
    let content = content_rx.await.unwrap_or_default();
    let body = async_stream::stream! {
        yield Ok(first);
        while let Some(chunk) = rx.recv().await {
            yield Ok(chunk);
        }
        // The dumper is done and its channel drained: a clean end only if it succeeded.
        match done_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                yield Ok(aborted_trailer(&reason));
                // actix drops its unflushed output when a body fails; pausing first lets it
                // write the trailer out while the stream is pending.
                tokio::time::sleep(TRAILER_FLUSH_PAUSE).await;
                yield Err(io::Error::other(reason));
            }
            Err(_) => yield Err(io::Error::other("the dump stopped without an outcome")),
        }
    };
    Ok(Backup {
        content,
        len: None,
        body: Box::pin(body),
    })
}

/// One read transaction around the state row and the dump, so the content named in the
/// headers (index, `ETag`) is the one the dump reflects.
fn dump_in_snapshot(
    conn: &Connection,
    open_helper: impl FnMut() -> raftlite_ffi::Result<Connection>,
    tables: Option<&[String]>,
    content_tx: tokio::sync::oneshot::Sender<ContentId>,
    out: &mut ChannelWriter,
) -> anyhow::Result<()> {
    conn.execute_batch("BEGIN")?;
    let result = (|| -> anyhow::Result<()> {
        let content = ContentId::of(&applied_state::read(conn)?);
        // The read above began the snapshot: WAL frames from here on are pinned by it.
        out.snapshot_began();
        let _ = content_tx.send(content);
        // Helpers on the same snapshot format large tables in parallel (their transactions
        // end when they are dropped, with this function).
        let mut helpers = share_snapshot(conn, helper_count(), open_helper);
        dump_with_helpers(conn, &mut helpers, tables, &[STATE_TABLE], out)?;
        out.flush()?;
        Ok(())
    })();
    // Read only: ending the transaction either way just releases the snapshot.
    let _ = conn.execute_batch("ROLLBACK");
    result
}
