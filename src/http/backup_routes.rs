//! `GET /db/backup`: a consistent copy of the database, as a SQLite file or as SQL text.
//!
//! Paths:
//! - **binary** (`fmt=binary`, `fmt=delete`, or anything unknown): a copy from
//!   [`super::backup_copies`] (made by this request, or shared with others it satisfies): the
//!   pages copied inside one read transaction into `backup-*.db` in the backup directory, the
//!   internal `_raftlite_state` table read (for `X-Raftlite-Raft-Index`, the exact index the
//!   copy reflects) and dropped, `VACUUM` run if asked. The file is streamed in 1 MiB chunks and
//!   deleted when its last download ends. It is in DELETE journal mode (bytes 18–19 = 1).
//! - **SQL** (`fmt=sql`, `tables=a,b`): [`dump_excluding`] runs on a read connection in one
//!   snapshot and writes into a bounded channel; the HTTP client's reading pace is the
//!   backpressure, so memory stays bounded whatever the size of the database. The snapshot
//!   pins the WAL, so a slow client cannot hold it for ever: [`DumpCaps`] (`-dump-wal-limit`,
//!   `-dump-stall-timeout`) end the dump, with a last comment line giving the reason, then an
//!   aborted connection.
//! - `compress`: either stream is gzipped on the fly (level 1), without `Content-Encoding`,
//!   as rqlite does it (the client gets a `.gz` file, not a transparently decoded body).
//!
//! Invariants:
//! - A copy's temp file lives while its copy task or any body stream holds it: the responses
//!   finishing, the clients going away mid-stream or a failed copy delete it. Startup removes
//!   leftovers of a crash (`prepare_data_dir` in `node.rs`).
//! - Statuses before the first byte: 503 when `-max-backup-copies` copies are in progress,
//!   507 when the copy would not fit above `-disk-reserve` (or stopped at it), 500 otherwise.
//! - Errors before the first byte get a status and a text message; errors after it end the
//!   body stream with an `Err`, so actix aborts the connection and the client sees a truncated
//!   transfer, never a clean short file.
//! - `_raftlite_state` is never part of a backup (neither format).
//! - A follower proxies the leader's stream without buffering it and without a total timeout
//!   (only the client's connect timeout): a large backup may take long.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::SizedStream;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use raftlite_ffi::Connection;

use super::backup_copies::BackupError;
use super::forward::{leader_to_forward_to, leader_url, with_caller_credentials, FORWARDED_HEADER};
use super::params::QueryParams;
use super::response::text_error;
use super::{AppState, DumpCaps};
use crate::db::dump::dump_excluding;
use crate::db::wal::{grown_since, wal_use, WalUse};
use crate::db::STATE_TABLE;
use crate::store::applied_state;
use crate::store::NodeInfo;

/// Chunk size of the streamed file. Every read of a `tokio::fs::File` is a hop to the blocking
/// pool, so chunks are large: at 64 KiB the hops, not the disk, set the pace.
const CHUNK: usize = 1024 * 1024;
/// Size of the SQL channel's messages.
const SQL_MESSAGE: usize = 256 * 1024;
/// Messages in flight between the dumper thread and the HTTP body: 8 × 256 KiB at most.
const SQL_CHANNEL_DEPTH: usize = 8;
pub const RAFT_INDEX_HEADER: &str = "X-Raftlite-Raft-Index";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Binary,
    Sql,
}

type ChunkResult = Result<Bytes, io::Error>;

pub async fn backup(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    serve_backup(&req, &params, &state, None).await
}

/// A backup as `GET /db/backup` answers it, with `params` in place of the request's own query.
/// `leader_query`: the `/db/backup` query a follower sends to the leader when the request's
/// own path is not `/db/backup` (the console's backup jobs); `None` forwards path and query.
pub async fn serve_backup(
    req: &HttpRequest,
    params: &QueryParams,
    state: &AppState,
    leader_query: Option<&str>,
) -> HttpResponse {
    let fmt = params.get("fmt").unwrap_or("binary").to_ascii_lowercase();
    // rqlite: vacuum only applies to the plain binary format.
    if params.has("vacuum") && (fmt == "sql" || fmt == "delete") {
        return text_error(StatusCode::INTERNAL_SERVER_ERROR, "invalid backup format");
    }
    let format = if fmt == "sql" {
        Format::Sql
    } else {
        Format::Binary
    };

    let store = &state.store;
    if !params.has("noleader") && !store.is_leader() {
        return match leader_to_forward_to(req, params, store.leader().as_ref()) {
            Ok(l) => {
                let url = match leader_query {
                    Some(q) => format!("{}/db/backup?{q}", l.api_url()),
                    None => leader_url(req, &l),
                };
                proxy(&state.forward_client, req, &url, &l).await
            }
            Err(answer) => *answer,
        };
    }

    let compress = params.has("compress");
    let answer = match format {
        Format::Binary => binary_backup(state, params.has("vacuum"))
            .await
            .map_err(|e| (backup_error_status(&e), e.to_string())),
        Format::Sql => {
            let tables = params.get("tables").map(|t| {
                t.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            });
            sql_backup(state, tables)
                .await
                .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))
        }
    };
    let prepared = match answer {
        Ok(p) => p,
        Err((status, message)) => {
            tracing::warn!("backup failed: {message}");
            return failed_backup(status, message);
        }
    };
    store.counters.backups.fetch_add(1, Ordering::Relaxed);
    *store.counters.last_backup_time.lock() = Some(crate::http::json::rfc3339_from_unix(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    ));

    let mut builder = HttpResponse::Ok();
    builder.insert_header((header::CONTENT_TYPE, prepared.content_type));
    builder.insert_header((RAFT_INDEX_HEADER, prepared.raft_index.to_string()));
    match (compress, prepared.len) {
        (true, _) => builder.streaming(gzip(prepared.body)),
        (false, Some(len)) => builder.body(SizedStream::new(len, prepared.body)),
        (false, None) => builder.streaming(prepared.body),
    }
}

/// The answer to a backup that cannot run. A 503 (too many copies in progress) says when to
/// come back: copies take seconds, so soon.
fn failed_backup(status: StatusCode, message: String) -> HttpResponse {
    let mut resp = text_error(status, message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    resp
}

const RETRY_AFTER_SECS: &str = "1";

fn backup_error_status(e: &BackupError) -> StatusCode {
    match e {
        BackupError::TooManyCopies(_) => StatusCode::SERVICE_UNAVAILABLE,
        BackupError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        BackupError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A backup ready to stream: its first byte has not been sent, so it can still fail cleanly.
struct Prepared {
    content_type: &'static str,
    raft_index: u64,
    len: Option<u64>,
    body: std::pin::Pin<Box<dyn Stream<Item = ChunkResult>>>,
}

async fn binary_backup(state: &AppState, vacuum: bool) -> Result<Prepared, Arc<BackupError>> {
    let applied = state.store.applied_index();
    let (copy, info) = state
        .backup_copies
        .acquire(state.store.database(), applied, vacuum)
        .await?;
    let file = tokio::fs::File::open(copy.path())
        .await
        .map_err(|e| Arc::new(BackupError::Failed(format!("open the backup copy: {e}"))))?;
    let body = async_stream::stream! {
        // Held by the body: the copy's file lives until the response ends or the client leaves
        // (and every other request sharing it is done too).
        let _copy = copy;
        let mut chunks = tokio_util::io::ReaderStream::with_capacity(file, CHUNK);
        while let Some(chunk) = chunks.next().await {
            let failed = chunk.is_err();
            yield chunk;
            if failed {
                break;
            }
        }
    };
    Ok(Prepared {
        content_type: "application/octet-stream",
        raft_index: info.raft_index,
        len: Some(info.len),
        body: Box::pin(body),
    })
}

/// `std::io::Write` into the SQL channel. Writes gather into messages of [`SQL_MESSAGE`]
/// bytes, handed over without another copy; fewer, larger messages mean fewer wake-ups of the
/// response task per byte. A full channel parks the dumper thread (the client's reading pace
/// is the backpressure), but never for good: every [`CAP_CHECK_EVERY`] it checks the
/// [`DumpCaps`], because its snapshot pins the WAL. A closed channel (the client left) or a
/// cap fails the write, which stops the dump. `flush` sends what is gathered (the dumper
/// flushes once, at its end).
struct ChannelWriter {
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
    fn new(
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
    fn snapshot_began(&mut self) {
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

async fn sql_backup(state: &AppState, tables: Option<Vec<String>>) -> anyhow::Result<Prepared> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(SQL_CHANNEL_DEPTH);
    let (index_tx, index_rx) = tokio::sync::oneshot::channel::<u64>();
    // The dump's outcome travels beside the channel: a failed dumper may be unable to put
    // anything into a channel its client stopped reading.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let db = std::sync::Arc::clone(state.store.database());
    let shm_path = crate::db::sibling(db.path(), "-shm");
    let caps = state.limits.dump_caps;
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::spawn(async move {
        db.with_reader(move |conn| {
            let mut out = ChannelWriter::new(tx, runtime, caps, shm_path);
            let result = dump_in_snapshot(conn, tables.as_deref(), index_tx, &mut out);
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
    let raft_index = index_rx.await.unwrap_or(0);
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
    Ok(Prepared {
        content_type: "application/sql",
        raft_index,
        len: None,
        body: Box::pin(body),
    })
}

/// One read transaction around the state row and the dump, so the index sent in the header is
/// the one the dump reflects.
fn dump_in_snapshot(
    conn: &Connection,
    tables: Option<&[String]>,
    index_tx: tokio::sync::oneshot::Sender<u64>,
    out: &mut ChannelWriter,
) -> anyhow::Result<()> {
    conn.execute_batch("BEGIN")?;
    let result = (|| -> anyhow::Result<()> {
        let index = applied_state::read(conn)?.log_id.map_or(0, |l| l.index);
        // The read above began the snapshot: WAL frames from here on are pinned by it.
        out.snapshot_began();
        let _ = index_tx.send(index);
        dump_excluding(conn, tables, &[STATE_TABLE], out)?;
        out.flush()?;
        Ok(())
    })();
    // Read only: ending the transaction either way just releases the snapshot.
    let _ = conn.execute_batch("ROLLBACK");
    result
}

/// gzip (level 1) as a stream: each input chunk is compressed as it arrives, so nothing is
/// buffered beyond the encoder's window. An input error ends the output with that error.
fn gzip(
    input: std::pin::Pin<Box<dyn Stream<Item = ChunkResult>>>,
) -> impl Stream<Item = ChunkResult> {
    async_stream::try_stream! {
        let mut input = input;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        while let Some(chunk) = input.next().await {
            enc.write_all(&chunk?)?;
            if !enc.get_ref().is_empty() {
                yield Bytes::from(std::mem::take(enc.get_mut()));
            }
        }
        let rest = enc.finish()?;
        if !rest.is_empty() {
            yield Bytes::from(rest);
        }
    }
}

/// Streams the leader's answer through, status and headers included, chunk by chunk.
async fn proxy(
    client: &reqwest::Client,
    req: &HttpRequest,
    url: &str,
    leader: &NodeInfo,
) -> HttpResponse {
    // No `.timeout()`: the client has only a connect timeout, and a backup may stream for long.
    let out = with_caller_credentials(client.get(url).header(FORWARDED_HEADER, "1"), req);
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("forward backup to leader {}: {e}", leader.api_addr);
            return text_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("forward to leader: {e}"),
            );
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    for name in [
        reqwest::header::CONTENT_TYPE.as_str(),
        reqwest::header::RETRY_AFTER.as_str(),
        RAFT_INDEX_HEADER,
    ] {
        if let Some(v) = resp.headers().get(name).and_then(|v| v.to_str().ok()) {
            builder.insert_header((name, v.to_owned()));
        }
    }
    builder.insert_header(("X-RQLITE-SERVED-BY", leader.raft_addr.clone()));
    let len = resp.content_length();
    let body = resp.bytes_stream().map(|r| r.map_err(io::Error::other));
    match len {
        Some(len) => builder.body(SizedStream::new(len, body)),
        None => builder.streaming(body),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn chunks(items: Vec<ChunkResult>) -> std::pin::Pin<Box<dyn Stream<Item = ChunkResult>>> {
        Box::pin(futures_util::stream::iter(items))
    }

    #[test]
    fn too_many_copies_says_when_to_retry() {
        let status = backup_error_status(&BackupError::TooManyCopies(16));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let resp = failed_backup(status, "busy".into());
        assert_eq!(
            resp.headers().get(header::RETRY_AFTER).unwrap(),
            RETRY_AFTER_SECS
        );
        let resp = failed_backup(StatusCode::INSUFFICIENT_STORAGE, "full".into());
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    }

    #[tokio::test]
    async fn gzip_round_trips_chunk_by_chunk() {
        let input: Vec<ChunkResult> = (0..50u8).map(|i| Ok(Bytes::from(vec![i; CHUNK]))).collect();
        let out: Vec<ChunkResult> = gzip(chunks(input)).collect().await;
        let mut gz = Vec::new();
        for c in out {
            gz.extend_from_slice(&c.expect("chunk"));
        }
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut plain)
            .expect("gunzip");
        assert_eq!(plain.len(), 50 * CHUNK);
        assert!(plain
            .chunks(CHUNK)
            .enumerate()
            .all(|(i, c)| c[0] == i as u8));
    }

    #[tokio::test]
    async fn gzip_passes_a_mid_stream_error_on_and_stops() {
        let input = vec![
            Ok(Bytes::from(vec![7u8; CHUNK])),
            Err(io::Error::other("disk gone")),
            Ok(Bytes::from_static(b"never")),
        ];
        let out: Vec<ChunkResult> = gzip(chunks(input)).collect().await;
        let last = out.last().expect("items");
        assert!(last.is_err(), "the stream must end in the error");
        // Never a clean gzip trailer after an error: the client sees a truncated transfer.
        assert_eq!(out.iter().filter(|c| c.is_err()).count(), 1);
    }
}
