//! `POST /db/load` and `POST /boot`: restore from a SQLite file or SQL text.
//!
//! The leader streams the body into `load-<id>.part` in the data directory through
//! [`Stager`] (gzip decompressed on the fly, kind told by content, size limited), on a
//! blocking thread fed by a bounded channel: the client's pace is the backpressure and memory
//! holds a few chunks. Then it validates the staged file ([`validate_sqlite_file`] or
//! [`validate_sql_file`]) and, unless `dry_run`, renames it to `load-<id>.staged` and proposes
//! one load entry (see `store::restore::replicate` for replication and install). SQL text for a blank
//! database is first run here into a new database file, which the entry offers in the
//! script's place (`store::restore::build_once`). The answer reports what was loaded:
//! `{"results":[...],"load":{"kind":..,"bytes":..,"pages":..,"tables":..}}` (SQL: `built`,
//! and `installed_built` when the built file was installed).
//!
//! Status codes: invalid input is 400 (413 over `-max-load-size`, a cut-off upload 400), an
//! SQL error is rqlite's 200 with `results[].error` and nothing applied, a fault of this node
//! is 500. `/boot` answers as rqlite: 503 `not leader` / `not single-node`, 400
//! `invalid SQLite data` for anything but a database, 200 with an empty body.
//!
//! A follower forwards `/db/load` to the leader as a stream (or redirects with `?redirect`);
//! `/boot` is never forwarded.
//!
//! The two steps are separate functions, [`stage_and_validate`] and [`propose_staged`], so the
//! console's restores (`console_restore`) can stage, wait for a confirmation, then propose.
//!
//! Invariants: every file this module creates belongs to a [`TempFile`] guard until the
//! state machine owns it, so a refused, failed or abandoned upload leaves nothing behind
//! (and startup removes `.part` files of a crash).

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::forward::{
    leader_to_forward_to, leader_url, redirect, with_caller_credentials, FORWARDED_HEADER,
};
use super::json::{encode_response, ApiResponse, EncodeOptions};
use super::params::QueryParams;
use super::response::{empty, json, text_error};
use super::AppState;
use crate::db::disk::{check_room, ReserveWriter};
use crate::db::execute::ScriptOutcome;
use crate::db::request::StatementResult;
use crate::db::restore_file::{
    validate_sql_file, validate_sqlite_file, LoadError, LoadKind, StagedInfo, Stager,
};
use crate::store::restore::build_once::{self, blank_layout};
use crate::store::restore::files::{part_path, staged_path};
use crate::store::types::BuiltDatabase;
use crate::store::types::{LoadCommand, SqlLoad};
use crate::store::StoreError;
use crate::temp_file::{unique_suffix, TempFile};

/// Chunks in flight between the HTTP body and the staging thread.
const STAGE_CHANNEL_DEPTH: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Load,
    Boot,
}

pub async fn load(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(req, payload, state, Endpoint::Load).await
}

pub async fn boot(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(req, payload, state, Endpoint::Boot).await
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    endpoint: Endpoint,
) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let store = &state.store;
    let dry_run = params.has("dry_run");
    match endpoint {
        Endpoint::Boot if !store.is_leader() => {
            return text_error(StatusCode::SERVICE_UNAVAILABLE, "not leader")
        }
        Endpoint::Boot if !store.is_single_node() => {
            return text_error(StatusCode::SERVICE_UNAVAILABLE, "not single-node")
        }
        Endpoint::Load if !dry_run && !store.is_leader() => {
            return match leader_to_forward_to(&req, &params, store.leader().as_ref()) {
                Ok(l) => forward_stream(&state.forward_client, &req, payload, &l).await,
                Err(answer) => *answer,
            };
        }
        _ => {}
    }
    let limit = state.limits.max_load_size;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some(limit), Some(n)) = (limit, declared) {
        if n > limit {
            return load_error(&LoadError::TooLarge(limit));
        }
    }

    let started = Instant::now();
    let boot = endpoint == Endpoint::Boot;
    let staged = match stage_and_validate(
        payload,
        declared,
        &state,
        params.has("integrity_check"),
        boot,
    )
    .await
    {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    if dry_run {
        let mut report = staged.report.clone();
        report["dry_run"] = true.into();
        return load_answer(&params, &[], None, report, started);
    }
    propose_staged(&req, &params, &state, staged, started, boot).await
}

/// A body staged in `load-<id>.part` and validated, not yet proposed. Dropping it removes
/// the file.
pub struct StagedLoad {
    pub id: String,
    pub guard: TempFile,
    pub info: StagedInfo,
    /// The `"load"` report: kind, bytes, received, gzip (and pages, page_size, tables).
    pub report: serde_json::Value,
}

/// Streams a load body into `load-<id>.part` and validates it; nothing changes yet.
/// `declared`: the body's `Content-Length`, if it has one: a body that cannot fit above
/// `-disk-reserve` is refused (507) before a byte is written; any body (chunked, or gzip that
/// grows) is also stopped at the reserve while it is staged.
/// `require_sqlite`: anything but a database is refused as `/boot` refuses it (400
/// `invalid SQLite data`), before validation.
pub async fn stage_and_validate(
    payload: web::Payload,
    declared: Option<u64>,
    state: &AppState,
    integrity: bool,
    require_sqlite: bool,
) -> Result<StagedLoad, HttpResponse> {
    let store = &state.store;
    let limit = state.limits.max_load_size;
    let reserve = state.backup_copies.disk_reserve();
    if let Some(n) = declared {
        if let Err(e) = check_room(store.data_dir(), n, reserve, "the load") {
            return Err(load_error(&LoadError::Io(e)));
        }
    }
    let id = unique_suffix();
    let part = part_path(store.data_dir(), &id);
    let guard = TempFile::new(part.clone());
    let staging = Instant::now();
    let info = stage(payload, &part, limit, reserve).await?;
    let uploaded = staging.elapsed();
    if require_sqlite && info.kind != LoadKind::Sqlite {
        return Err(text_error(StatusCode::BAD_REQUEST, "invalid SQLite data"));
    }
    let checked = {
        let path = part.clone();
        let kind = info.kind;
        tokio::task::spawn_blocking(move || match kind {
            LoadKind::Sqlite => validate_sqlite_file(&path, integrity).map(Some),
            LoadKind::Sql => validate_sql_file(&path).map(|()| None),
        })
        .await
    };
    let sqlite_report = match checked {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(load_error(&e)),
        Err(e) => {
            return Err(text_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("validate: {e}"),
            ))
        }
    };
    let mut report = serde_json::json!({
        "kind": info.kind.as_str(),
        "bytes": info.size,
        "received": info.received,
        "gzip": info.gzip,
    });
    // Where the time went, for operators and the P7 benchmark: receiving and staging the body
    // here, validating it, and (below) replicating and installing it.
    report["phases"] = serde_json::json!({
        "upload_s": uploaded.as_secs_f64(),
        "validate_s": (staging.elapsed() - uploaded).as_secs_f64(),
    });
    if let Some(r) = sqlite_report {
        report["pages"] = r.pages.into();
        report["page_size"] = r.page_size.into();
        report["tables"] = r.tables.into();
    }
    Ok(StagedLoad {
        id,
        guard,
        info,
        report,
    })
}

/// Renames a staged load to `load-<id>.staged` and proposes its entry (this node must lead);
/// answers as `/db/load` does (`boot`: as `/boot` does). SQL text on a blank database is run
/// here first into a new database file, which the entry offers in its place (see
/// `store::restore::build_once`).
pub async fn propose_staged(
    req: &HttpRequest,
    params: &QueryParams,
    state: &AppState,
    staged: StagedLoad,
    started: Instant,
    boot: bool,
) -> HttpResponse {
    let store = &state.store;
    let StagedLoad {
        id,
        mut guard,
        info,
        mut report,
    } = staged;
    let cmd = LoadCommand {
        id,
        kind: info.kind,
        size: info.size,
        crc32c: info.crc32c,
        source: store.node().raft_addr.clone(),
        shared: !store.is_single_node(),
    };
    // The script stays a `.part` file while it builds: a crash then leaves nothing behind
    // that startup keeps.
    let sql = if info.kind == LoadKind::Sql {
        let env = store.stamp();
        let building = Instant::now();
        let built = match build_for_blank(state, guard.path(), &cmd, env).await {
            Ok(b) => b,
            Err(refusal) => return refusal.answer(params, report, started),
        };
        report["phases"]["build_s"] = building.elapsed().as_secs_f64().into();
        report["built"] = built.is_some().into();
        Some((env, built))
    } else {
        None
    };
    let staged = staged_path(store.data_dir(), &cmd.id);
    if let Err(e) = guard.rename_to(&staged) {
        return text_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stage load data: rename: {e}"),
        );
    }
    let mut guards = vec![guard];
    let mut built_result = None;
    tracing::info!(
        kind = info.kind.as_str(),
        bytes = info.size,
        built = sql.as_ref().is_some_and(|(_, b)| b.is_some()),
        secs = started.elapsed().as_secs_f64(),
        "load staged and validated; proposing"
    );
    let proposed = Instant::now();
    let outcome = match sql {
        Some((env, built)) => {
            let built = built.map(|b| {
                guards.push(b.guard);
                built_result = Some(b.result);
                b.database
            });
            let load = SqlLoad {
                script: cmd,
                env,
                built,
            };
            store.propose_sql_load(load).await
        }
        None => store.propose_load(cmd).await,
    };
    match outcome {
        Ok(mut w) => {
            // The state machine owns the staged files now (consumed, or kept for peers).
            guards.into_iter().for_each(std::mem::forget);
            store.counters.loads.fetch_add(1, Ordering::Relaxed);
            report["phases"]["install_s"] = proposed.elapsed().as_secs_f64().into();
            if boot {
                store.counters.boots.fetch_add(1, Ordering::Relaxed);
                return empty(StatusCode::OK);
            }
            // An installed built database answers nothing itself: the script's result is the
            // build's. (When the script ran instead, the entry answers with its own result.)
            if let (Some(result), true) = (built_result, w.results.results.is_empty()) {
                report["installed_built"] = true.into();
                w.results.results = vec![result];
            }
            let raft_index = params.has("raft_index").then_some(w.raft_index);
            load_answer(params, &w.results.results, raft_index, report, started)
        }
        Err(StoreError::NotLeader { leader }) => {
            // Never appended: the staged files go with the guards.
            match leader {
                Some(l) if params.has("redirect") => redirect(req, &l),
                _ => text_error(StatusCode::SERVICE_UNAVAILABLE, "leader not found"),
            }
        }
        Err(e) => {
            // The entry may still commit: keep the files for the nodes that will pull them
            // (startup removes them once they are old).
            guards.into_iter().for_each(std::mem::forget);
            tracing::warn!("load failed: {e}");
            text_error(StatusCode::INTERNAL_SERVER_ERROR, format!("load: {e}"))
        }
    }
}

/// A database built from a staged SQL load (see `store::restore::build_once`), staged for the others.
struct Built {
    database: BuiltDatabase,
    /// Owns `load-<id>.staged` until the entry is proposed.
    guard: TempFile,
    /// The script's result, which the load answers when the built file is installed.
    result: StatementResult,
}

/// Why a SQL load ends before its entry is proposed.
enum BuildRefusal {
    /// The script's own SQL error: rqlite's 200 with `results[].error`, nothing applied.
    Script(StatementResult),
    /// A fault of this node while building (I/O, disk full): its answer.
    Fault(HttpResponse),
}

impl BuildRefusal {
    fn answer(
        self,
        params: &QueryParams,
        report: serde_json::Value,
        started: Instant,
    ) -> HttpResponse {
        match self {
            BuildRefusal::Script(error) => load_answer(params, &[error], None, report, started),
            BuildRefusal::Fault(resp) => resp,
        }
    }
}

/// If the database is blank, runs the script (at `script_path`, described by `script`) into a
/// new database file and stages that; `None` when it is not blank (the script then runs on every node).
async fn build_for_blank(
    state: &AppState,
    script_path: &Path,
    script: &LoadCommand,
    env: crate::db::request::ApplyEnv,
) -> Result<Option<Built>, Box<BuildRefusal>> {
    let store = &state.store;
    let fault = |what: &str, e: &dyn std::fmt::Display| {
        tracing::warn!("SQL load: {what}: {e}");
        Box::new(BuildRefusal::Fault(text_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("SQL load: {what}: {e}"),
        )))
    };
    let reserve = state.backup_copies.disk_reserve();
    let build_fault = |e: anyhow::Error| {
        if !is_disk_full(&e) {
            return fault("build the database", &format!("{e:#}"));
        }
        tracing::warn!("SQL load refused: build the database: {e:#}");
        Box::new(BuildRefusal::Fault(text_error(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "SQL load: not enough disk space to build the database ({reserve} bytes must \
                 stay free, -disk-reserve): {e:#}"
            ),
        )))
    };
    let layout = store
        .database()
        .with_reader(blank_layout)
        .await
        .map_err(|e| fault("check the database is blank", &format!("{e:#}")))?
        .map_err(|e| fault("check the database is blank", &e))?;
    let Some(layout) = layout else {
        return Ok(None);
    };
    let data_dir = store.data_dir().to_path_buf();
    let id = unique_suffix();
    let part = part_path(&data_dir, &id);
    let mut guard = TempFile::new(part.clone());
    let sql = script_path.to_path_buf();
    let settings = store.database().settings().clone();
    let build_layout = layout.clone();
    // Like staging, the build leaves `-disk-reserve` free.
    let room = crate::db::disk::free_bytes(&data_dir)
        .map_err(|e| fault("check free space", &e))?
        .saturating_sub(reserve);
    let built =
        tokio::task::spawn_blocking(move || -> anyhow::Result<Result<_, StatementResult>> {
            let outcome = build_once::build(&sql, &part, &build_layout, env, &settings, room)?;
            if let ScriptOutcome::Failed(_) = outcome {
                return Ok(Err(outcome.into_result()));
            }
            let (size, crc32c) = build_once::size_and_crc(&part)?;
            Ok(Ok((outcome.into_result(), size, crc32c)))
        })
        .await
        .map_err(|e| fault("build the database", &e))?
        .map_err(build_fault)?;
    let (result, size, crc32c) = built.map_err(|e| Box::new(BuildRefusal::Script(e)))?;
    let staged = staged_path(&data_dir, &id);
    guard
        .rename_to(&staged)
        .map_err(|e| fault("stage the built database", &e))?;
    Ok(Some(Built {
        database: BuiltDatabase {
            database: LoadCommand {
                id,
                kind: LoadKind::Sqlite,
                size,
                crc32c,
                source: script.source.clone(),
                shared: script.shared,
            },
            layout,
        },
        guard,
        result,
    }))
}

/// True when `e` comes from a full disk (SQLite's `SQLITE_FULL`, or `ENOSPC`).
fn is_disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<raftlite_ffi::Error>()
            .is_some_and(|e| e.code() == raftlite_ffi::ErrorCode::Full)
            || cause
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::StorageFull)
    })
}

/// The answer to a load: rqlite's envelope, with our report after the results.
fn load_answer(
    params: &QueryParams,
    results: &[StatementResult],
    raft_index: Option<u64>,
    report: serde_json::Value,
    started: Instant,
) -> HttpResponse {
    let body = encode_response(
        &ApiResponse {
            results,
            time: started.elapsed().as_secs_f64(),
            raft_index: raft_index.unwrap_or(0),
            ..Default::default()
        },
        EncodeOptions::from_params(params),
    );
    // The envelope is one JSON object: the report goes in before its closing brace.
    let trimmed = body.trim_end();
    let body = match trimmed.strip_suffix('}') {
        Some(head) => format!("{head},\"load\":{report}}}"),
        None => body,
    };
    json(StatusCode::OK, body)
}

/// The HTTP answer for a refused or failed load.
pub(crate) fn load_error(e: &LoadError) -> HttpResponse {
    let status = if e.is_too_large() {
        StatusCode::PAYLOAD_TOO_LARGE
    } else if e.is_disk_full() {
        tracing::warn!("load refused: {e}");
        StatusCode::INSUFFICIENT_STORAGE
    } else if e.is_local() {
        tracing::warn!("load failed: {e}");
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    text_error(status, e)
}

/// Streams the body through a [`Stager`] into `path` (created here, synced at the end),
/// keeping `reserve` bytes free on its file system.
async fn stage(
    mut payload: web::Payload,
    path: &Path,
    limit: Option<u64>,
    reserve: u64,
) -> Result<StagedInfo, HttpResponse> {
    let file = std::fs::File::create(path).map_err(|e| {
        text_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("create {}: {e}", path.display()),
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    // `None` marks the end of the body; a channel closed without it is an abandoned upload.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(STAGE_CHANNEL_DEPTH);
    let worker = tokio::task::spawn_blocking(move || -> Result<Option<StagedInfo>, LoadError> {
        let dir = dir.clone();
        let out = io::BufWriter::with_capacity(256 * 1024, ReserveWriter::new(file, dir, reserve));
        let mut stager = Stager::new(out, limit);
        loop {
            match rx.blocking_recv() {
                Some(Some(chunk)) => stager.push(&chunk)?,
                Some(None) => break,
                None => return Ok(None),
            }
        }
        let (info, out) = stager.finish()?;
        let file = out.into_inner().map_err(|e| e.into_error())?.into_inner();
        file.sync_all()?;
        Ok(Some(info))
    });
    let mut cut_off = None;
    while let Some(chunk) = payload.next().await {
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
        Ok(Ok(None)) => Err(text_error(
            StatusCode::BAD_REQUEST,
            format!(
                "load body cut off: {}",
                cut_off.unwrap_or_else(|| "the upload ended early".into())
            ),
        )),
        Ok(Err(e)) => Err(load_error(&e)),
        Err(e) => Err(text_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stage load data: {e}"),
        )),
    }
}

/// Forwards the body to the leader as it arrives, and passes the leader's answer back.
async fn forward_stream(
    client: &reqwest::Client,
    req: &HttpRequest,
    mut payload: web::Payload,
    leader: &crate::store::NodeInfo,
) -> HttpResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(STAGE_CHANNEL_DEPTH);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    // No total timeout: a large upload may take long (the client has a connect timeout).
    let mut out = client
        .post(leader_url(req, leader))
        .header(FORWARDED_HEADER, "1")
        .body(reqwest::Body::wrap_stream(body));
    if let Some(ct) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        out = out.header(reqwest::header::CONTENT_TYPE, ct);
    }
    let out = with_caller_credentials(out, req);
    let pump = async move {
        while let Some(chunk) = payload.next().await {
            let item = chunk.map_err(|e| io::Error::other(e.to_string()));
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    };
    let (sent, ()) = tokio::join!(out.send(), pump);
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("forward load to leader {}: {e}", leader.api_addr);
            return text_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("forward to leader: {e}"),
            );
        }
    };
    super::forward::relay_leader_answer(resp, leader).await
}
