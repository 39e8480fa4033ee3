//! `POST /db/load` and `POST /boot`: restore from a SQLite file or SQL text.
//!
//! This module parses the parameters, forwards, and answers; the restore itself (staging,
//! validation, the build of a SQL load into a blank database, the proposal, replication) is
//! `store::restore`'s. The answer is rqlite's (`{"results":[...]}`: tools written against
//! rqlite compare it exactly); with `?report` (and always for `?dry_run`, which exists for
//! it) it also reports what was loaded:
//! `{"results":[...],"load":{"kind":..,"bytes":..,"pages":..,"tables":..}}` (SQL: `built`,
//! and `installed_built` when the built file was installed).
//!
//! Status codes (`restore_error`, the one place a [`RestoreError`] becomes an answer, also
//! for the console's restores): invalid input is 400 (413 over `-max-load-size`, a cut-off
//! upload 400), an SQL error is rqlite's 200 with `results[].error` and nothing applied, no
//! room above `-disk-reserve` is 507, a fault of this node is 500. `/boot` answers as rqlite:
//! 503 `not leader` / `not single-node`, 400 `invalid SQLite data` for anything but a
//! database, 200 with an empty body.
//!
//! A follower forwards `/db/load` to the leader as a stream (or redirects with `?redirect`);
//! `/boot` is never forwarded.

use std::io;
use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::error_status;
use super::forward::{
    leader_to_forward_to, leader_url, redirect, with_caller_credentials, FORWARDED_HEADER,
};
use super::json::{encode_response, ApiResponse, EncodeOptions};
use super::params::QueryParams;
use super::response::{empty, json, text_error};
use super::AppState;
use crate::db::request::StatementResult;
use crate::db::restore_file::LoadError;
use crate::metrics::LoadKind;
use crate::store::restore::{self, RestoreError, RestoreLimits, Restored, StageChecks};

/// Chunks in flight between the client's body and the leader's.
const FORWARD_CHANNEL_DEPTH: usize = 8;

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
    if endpoint == Endpoint::Load && !dry_run && !store.is_leader() {
        // Counted by the leader that answers it.
        return match leader_to_forward_to(&req, &params, store.leader().as_ref()) {
            Ok(l) => forward_stream(&state.forward_client, &req, payload, &l).await,
            Err(answer) => *answer,
        };
    }
    let answer = restore_here(&req, &params, payload, &state, endpoint).await;
    let kind = match endpoint {
        Endpoint::Load => LoadKind::Load,
        Endpoint::Boot => LoadKind::Boot,
    };
    store.metrics().load_answered(kind, answer.status());
    answer
}

/// A restore this node answers itself (the leader, a dry run, or `/boot`).
async fn restore_here(
    req: &HttpRequest,
    params: &QueryParams,
    payload: web::Payload,
    state: &AppState,
    endpoint: Endpoint,
) -> HttpResponse {
    let store = &state.store;
    let dry_run = params.has("dry_run");
    match endpoint {
        Endpoint::Boot if !store.is_leader() => {
            return text_error(StatusCode::SERVICE_UNAVAILABLE, "not leader")
        }
        Endpoint::Boot if !store.is_single_node() => {
            return text_error(StatusCode::SERVICE_UNAVAILABLE, "not single-node")
        }
        _ => {}
    }
    let limits = restore_limits(state);
    let declared = content_length(req);
    if let (Some(limit), Some(n)) = (limits.max_size, declared) {
        if n > limit {
            return restore_error(req, params, &LoadError::TooLarge(limit).into());
        }
    }

    let started = Instant::now();
    let boot = endpoint == Endpoint::Boot;
    let checks = StageChecks {
        integrity_check: params.has("integrity_check"),
        sqlite_only: boot,
        build_while_staging: !dry_run,
    };
    let staged = match restore::stage(store, payload, declared, limits, checks).await {
        Ok(s) => s,
        Err(e) => return restore_error(req, params, &e),
    };
    if dry_run {
        let mut report = staged.report().clone();
        report["dry_run"] = true.into();
        return load_answer(params, &[], None, Some(report), started);
    }
    match restore::propose(store, staged, limits, started).await {
        Ok(_) if boot => {
            store
                .counters
                .boots
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            empty(StatusCode::OK)
        }
        Ok(restored) => restored_answer(params, restored, started),
        Err(e) => restore_error(req, params, &e),
    }
}

/// What a restore may take on this node: `-max-load-size` and `-disk-reserve`.
pub(super) fn restore_limits(state: &AppState) -> RestoreLimits {
    RestoreLimits {
        max_size: state.limits.max_load_size,
        disk_reserve: state.store.backups().disk_reserve(),
    }
}

/// The body's `Content-Length`, if it has a valid one.
pub(super) fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The answer to a restore whose entry was applied (or whose script failed while it was
/// built): rqlite's envelope; the report with `?report`, the log index with `?raft_index`.
pub(super) fn restored_answer(
    params: &QueryParams,
    restored: Restored,
    started: Instant,
) -> HttpResponse {
    let raft_index = restored.raft_index.filter(|_| params.has("raft_index"));
    let report = Some(restored.report).filter(|_| params.has("report"));
    load_answer(params, &restored.results, raft_index, report, started)
}

/// The answer to a load: rqlite's envelope, with our report (if any) after the results.
fn load_answer(
    params: &QueryParams,
    results: &[StatementResult],
    raft_index: Option<u64>,
    report: Option<serde_json::Value>,
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
    let Some(report) = report else {
        return json(StatusCode::OK, body);
    };
    // The envelope is one JSON object: the report goes in before its closing brace.
    let trimmed = body.trim_end();
    let body = match trimmed.strip_suffix('}') {
        Some(head) => format!("{head},\"load\":{report}}}"),
        None => body,
    };
    json(StatusCode::OK, body)
}

/// The HTTP answer for a restore that stopped: the one place a [`RestoreError`] becomes a
/// status (`/db/load`, `/boot` and the console's restores), and where this node's faults are
/// logged.
pub(super) fn restore_error(
    req: &HttpRequest,
    params: &QueryParams,
    e: &RestoreError,
) -> HttpResponse {
    if let RestoreError::NotLeader { leader } = e {
        return match leader {
            Some(l) if params.has("redirect") => redirect(req, l),
            _ => text_error(error_status::restore(e), "leader not found"),
        };
    }
    text_error(error_status::restore(e), e)
}

/// Forwards the body to the leader as it arrives, and passes the leader's answer back.
async fn forward_stream(
    client: &reqwest::Client,
    req: &HttpRequest,
    mut payload: web::Payload,
    leader: &crate::store::NodeInfo,
) -> HttpResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(FORWARD_CHANNEL_DEPTH);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NodeInfo, StoreError};

    /// Each way a restore stops has its answer, in this one function. (Most of these are also
    /// reached end to end in `tests/restore.rs` and `tests/console.rs`; a console upload that
    /// leaves less than the reserve free only once staged cannot be produced there without
    /// racing other writers of the disk, so its 507 is pinned here.)
    #[actix_web::test]
    async fn each_restore_error_has_its_status_and_message() {
        let req = actix_web::test::TestRequest::default()
            .uri("/db/load?redirect")
            .to_http_request();
        let redirecting = QueryParams::parse(req.query_string());
        let plain = QueryParams::parse("");
        let full = || io::Error::new(io::ErrorKind::StorageFull, "no room");
        let leader = NodeInfo {
            id: "n1".into(),
            api_addr: "127.0.0.1:4001".into(),
            raft_addr: "127.0.0.1:4002".into(),
            ..Default::default()
        };
        let cases: Vec<(RestoreError, &QueryParams, u16, &str)> = vec![
            (
                LoadError::TooLarge(10).into(),
                &plain,
                413,
                "load body too large",
            ),
            (
                LoadError::Io(full()).into(),
                &plain,
                507,
                "stage load data: no room",
            ),
            (
                LoadError::Io(io::Error::other("eio")).into(),
                &plain,
                500,
                "stage load data: eio",
            ),
            (LoadError::Empty.into(), &plain, 400, "load body is empty"),
            (
                RestoreError::CutOff("reset".into()),
                &plain,
                400,
                "load body cut off: reset",
            ),
            (RestoreError::NotSqlite, &plain, 400, "invalid SQLite data"),
            (RestoreError::NoRoomToKeep(full()), &plain, 507, "no room"),
            (
                RestoreError::NoRoomToKeep(io::Error::other("statvfs")),
                &plain,
                500,
                "statvfs",
            ),
            (
                RestoreError::NoRoomToBuild {
                    reserve: 7,
                    cause: "full".into(),
                },
                &plain,
                507,
                "SQL load: not enough disk space to build the database (7 bytes must stay free",
            ),
            (
                RestoreError::BuildFailed {
                    what: "build the database",
                    cause: "boom".into(),
                },
                &plain,
                500,
                "SQL load: build the database: boom",
            ),
            (
                RestoreError::Failed("validate: x".into()),
                &plain,
                500,
                "validate: x",
            ),
            (
                RestoreError::NotLeader {
                    leader: Some(leader.clone()),
                },
                &redirecting,
                301,
                "Moved Permanently",
            ),
            (
                RestoreError::NotLeader {
                    leader: Some(leader),
                },
                &plain,
                503,
                "leader not found",
            ),
            (
                RestoreError::NotLeader { leader: None },
                &redirecting,
                503,
                "leader not found",
            ),
            (
                RestoreError::Proposal(StoreError::Internal(anyhow::anyhow!("raft"))),
                &plain,
                500,
                "load: raft",
            ),
            (
                RestoreError::TooManyPending,
                &plain,
                503,
                "4 restores are already staged or uploading",
            ),
            (
                RestoreError::NotPending,
                &plain,
                404,
                "no such staged restore",
            ),
        ];
        for (e, params, status, text) in cases {
            let answer = restore_error(&req, params, &e);
            assert_eq!(answer.status().as_u16(), status, "{e:?}");
            let body = actix_web::body::to_bytes(answer.into_body()).await.unwrap();
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains(text), "{e:?}: {body}");
        }
    }
}
