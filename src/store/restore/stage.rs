//! Staging: a body, as it arrives, written to its `load-<id>.part` file through
//! [`Stager`] on a blocking thread, then validated there, and described in the report.
//!
//! The body's chunks reach the staging thread through a bounded channel: the client's pace is
//! the backpressure, and memory holds a few chunks. The file is written through a
//! [`ReserveWriter`], so a body of any length (chunked, or gzip or zstd that grows) stops at
//! `-disk-reserve`. What the bytes are, and whether they may be loaded, is decided by
//! [`crate::db::restore_file`]; this module only moves them and times the steps.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use super::growing::{Announcing, Growth, StagingEnd};
use super::{RestoreError, RestoreLimits};
use crate::db::disk::ReserveWriter;
use crate::db::restore_file::{
    validate_sql_file, validate_sqlite_file, LoadError, LoadKind, SqliteReport, StagedInfo, Stager,
};

/// Chunks in flight between the body and the staging thread.
const STAGE_CHANNEL_DEPTH: usize = 8;

/// Creates the staged file at `path` (empty), so a reader can open it before the body arrives.
pub(super) fn create(path: &Path) -> Result<std::fs::File, RestoreError> {
    std::fs::File::create(path)
        .map_err(|e| RestoreError::Failed(format!("create {}: {e}", path.display())))
}

/// Streams `body` through a [`Stager`] into `file` (at `path`, synced at the end), keeping
/// the reserve free on its file system, and announces its growth and end through `growth`
/// (see [`super::growing`]).
pub(super) async fn receive<S, E>(
    mut body: S,
    file: std::fs::File,
    path: &Path,
    limits: RestoreLimits,
    growth: Arc<Growth>,
) -> Result<StagedInfo, RestoreError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let RestoreLimits {
        max_size: limit,
        disk_reserve: reserve,
    } = limits;
    // `None` marks the end of the body; a channel closed without it is an abandoned upload.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(STAGE_CHANNEL_DEPTH);
    let worker = tokio::task::spawn_blocking(move || -> Result<Option<StagedInfo>, LoadError> {
        // Every return but the one after `complete` tells a reader that staging failed.
        let end = StagingEnd::new(growth.clone());
        let out = io::BufWriter::with_capacity(
            256 * 1024,
            ReserveWriter::new(Announcing::new(file, growth), dir, reserve),
        );
        let mut stager = Stager::new(out, limit);
        loop {
            match rx.blocking_recv() {
                Some(Some(chunk)) => {
                    stager.push(&chunk)?;
                    crate::failpoint::crash_point("restore::mid_stage");
                }
                Some(None) => break,
                None => return Ok(None),
            }
        }
        let (info, out) = stager.finish()?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())?
            .into_inner()
            .into_inner();
        // Accepted whole: a reader may read to the end while the file is synced.
        end.complete();
        file.sync_all()?;
        Ok(Some(info))
    });
    let mut cut_off = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                if tx.send(Some(c)).await.is_err() {
                    break; // The worker refused the body; its error says why.
                }
            }
            Err(e) => {
                cut_off = Some(e.to_string());
                break;
            }
        }
    }
    if cut_off.is_none() {
        let _ = tx.send(None).await;
    }
    drop(tx);
    match worker.await {
        Ok(Ok(Some(info))) => Ok(info),
        Ok(Ok(None)) => Err(RestoreError::CutOff(
            cut_off.unwrap_or_else(|| "the upload ended early".into()),
        )),
        Ok(Err(e)) => Err(RestoreError::Input(e)),
        Err(e) => Err(RestoreError::Failed(format!("stage load data: {e}"))),
    }
}

/// Validates the staged file at `path` on a blocking thread: a database file by header, page
/// count and `quick_check` (`integrity_check` when asked), whose description it returns; SQL
/// text by its first word.
pub(super) async fn validate(
    path: &Path,
    kind: LoadKind,
    integrity_check: bool,
) -> Result<Option<SqliteReport>, RestoreError> {
    let path = path.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || match kind {
        LoadKind::Sqlite => validate_sqlite_file(&path, integrity_check).map(Some),
        LoadKind::Sql => validate_sql_file(&path).map(|()| None),
    })
    .await;
    match checked {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(RestoreError::Input(e)),
        Err(e) => Err(RestoreError::Failed(format!("validate: {e}"))),
    }
}

/// The `"load"` report of staged content: kind, bytes, received, gzip, zstd, the time each step
/// took, and what a database file holds.
pub(super) fn report(
    info: &StagedInfo,
    uploaded: Duration,
    validated: Duration,
    sqlite: Option<SqliteReport>,
) -> serde_json::Value {
    let mut report = serde_json::json!({
        "kind": info.kind.as_str(),
        "bytes": info.size,
        "received": info.received,
        "gzip": info.gzip,
        "zstd": info.zstd,
    });
    // Where the time went, for operators and the P7 benchmark: receiving and staging the body,
    // validating it, and (when it is proposed) building and installing it.
    report["phases"] = serde_json::json!({
        "upload_s": uploaded.as_secs_f64(),
        "validate_s": validated.as_secs_f64(),
    });
    if let Some(r) = sqlite {
        report["pages"] = r.pages.into();
        report["page_size"] = r.page_size.into();
        report["tables"] = r.tables.into();
    }
    report
}
