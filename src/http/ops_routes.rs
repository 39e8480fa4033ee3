//! Operator endpoints: `POST /snapshot`, `POST /reap`, `POST /leader` (stepdown) and
//! `/debug/vars` (expvar-style counters).
//!
//! `/snapshot` and `/reap` act on the node that receives them, as in rqlite; `POST /leader`
//! runs on the leader (a follower forwards it, or redirects with `?redirect`).

use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::db_routes::read_body;
use super::error_status;
use super::forward::answer_not_leader;
use super::params::QueryParams;
use super::response::{empty, json as json_response, text_error};
use super::AppState;
use crate::cluster::stepdown::{self, StepdownError};
use crate::store::ops::{self, SnapshotOutcome};

/// `POST /snapshot[?trailing_logs=N]`: 200 once a snapshot covers everything applied, 204 when
/// nothing was applied since the last one, 507 when the build met a full disk (the previous
/// snapshot stays).
pub async fn snapshot(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let trailing = match params.integer("trailing_logs") {
        Some(n) if n < 0 => {
            return text_error(
                StatusCode::BAD_REQUEST,
                "trailing_logs is not a valid integer",
            )
        }
        Some(n) => Some(n as u64),
        None => None,
    };
    match ops::snapshot_now(&state.store, trailing).await {
        Ok(SnapshotOutcome::Taken(_)) => empty(StatusCode::OK),
        Ok(SnapshotOutcome::NothingNew) => empty(StatusCode::NO_CONTENT),
        Err(e @ crate::store::StoreError::InsufficientStorage(_)) => {
            text_error(StatusCode::INSUFFICIENT_STORAGE, e)
        }
        Err(e) => text_error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `POST /reap`: `{"snapshots_reaped":n,"wals_checkpointed":c}`.
pub async fn reap(state: web::Data<AppState>) -> HttpResponse {
    match ops::reap(&state.store).await {
        Ok(report) => json_response(
            StatusCode::OK,
            serde_json::to_string(&report).unwrap_or_else(|_| "{}".into()),
        ),
        // Not `error_status::store`: its 200 for a database fault is the `/db/*` answer
        // shape; a failed reap is the server's (rqlite answers 500).
        Err(crate::store::StoreError::Database(e)) => {
            text_error(super::error_status::database(&e), e)
        }
        Err(e) => text_error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(serde::Deserialize)]
struct StepdownBody {
    #[serde(default)]
    id: Option<String>,
}

/// `POST /leader[?wait]` with an optional `{"id":"<target>"}`: the leader hands leadership
/// over (see `cluster::stepdown` for how, and what is best effort). 200 once this node sees
/// another leader.
pub async fn leader_post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let body = match read_body(&req, payload, 64 * 1024).await {
        Ok(b) => b.freeze(),
        Err(resp) => return resp,
    };
    let target = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<StepdownBody>(&body) {
            Ok(b) => b.id.filter(|id| !id.is_empty()),
            Err(_) => {
                return text_error(
                    StatusCode::BAD_REQUEST,
                    "invalid stepdown request: want {\"id\":\"<node id>\"} or no body",
                )
            }
        }
    };
    match stepdown::step_down(&state.store, target.as_deref()).await {
        Ok(_) => empty(StatusCode::OK),
        Err(StepdownError::NotLeader { leader }) => {
            answer_not_leader(&state.forward_client, &req, &params, body, leader.as_ref()).await
        }
        Err(e) => text_error(error_status::stepdown(&e), e),
    }
}

/// `/debug/vars`: the counters rqlite exports through Go's expvar, under rqlite's names
/// (`store.num_snapshots`, `http.backups`, …), plus `cmdline`. `?key=K` keeps one top-level
/// key. The layout is Go's: one top-level key per line.
pub async fn debug_vars(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let vars = expvars(&state);
    let mut out = String::from("{\n");
    let mut first = true;
    for (key, value) in vars.as_object().into_iter().flatten() {
        if params.get("key").is_some_and(|k| k != key) {
            continue;
        }
        if !first {
            out.push_str(",\n");
        }
        first = false;
        out.push_str(&format!(
            "{}: {}",
            Value::String(key.clone()),
            serde_json::to_string(value).unwrap_or_else(|_| "null".into())
        ));
    }
    out.push_str("\n}\n");
    json_response(StatusCode::OK, out)
}

fn expvars(state: &AppState) -> Value {
    let store = &state.store;
    let c = &store.counters;
    let shared = store.shared();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    json!({
        "cmdline": std::env::args().collect::<Vec<_>>(),
        "uploader": state.uploader.expvar(),
        "archiver": state.archiver.expvar(),
        "downloader": {
            "num_downloads_ok": n(&c.downloads_ok),
            "num_downloads_fail": n(&c.downloads_fail),
            "download_bytes": n(&c.download_bytes),
        },
        "cluster": {
            "num_join_req": n(&c.join_requests),
            "client_retries": n(&super::forward::metrics::FORWARD_RETRIES),
        },
        "http": {
            "backups": n(&c.backups),
            "loads": n(&c.loads),
            "boot": n(&c.boots),
            "executions": n(&c.executions),
            "queries": n(&c.queries),
            "user_snapshots": n(&c.user_snapshots),
            "user_reaps": n(&c.user_reaps),
        },
        "store": {
            "num_snapshots": n(&shared.num_snapshots),
            "num_wal_snapshots": n(&shared.num_wal_snapshots),
            "num_wal_snapshots_failed": n(&shared.num_wal_snapshots_failed),
            "num_restores": n(&shared.num_restores),
            "num_auto_restores": n(&c.auto_restores),
            "num_auto_restores_skipped": n(&c.auto_restores_skipped),
            "num_auto_restores_failed": n(&c.auto_restores_failed),
            "num_recoveries": n(&shared.num_recoveries),
            "num_backups": n(&c.backups),
            "num_loads": n(&shared.num_loads),
            "num_prebuilt_load_installs": n(&shared.num_prebuilt_installs),
            "num_prebuilt_load_scripts": n(&shared.num_prebuilt_scripts),
            "num_ignored_joins": n(&c.ignored_joins),
            "num_removed_before_joins": n(&c.updated_joins),
            "nodes_reaped_ok": n(&c.nodes_reaped_ok),
            "num_auto_optimizes": n(&c.auto_optimizes),
            "num_auto_optimizes_failed": n(&c.auto_optimizes_failed),
            "num_auto_vacuums": n(&c.auto_vacuums),
            "num_auto_vacuums_failed": n(&c.auto_vacuums_failed),
            "nodes_reaped_failed": n(&c.nodes_reaped_failed),
            "num_wal_checkpoints": n(&store.database().wal_checkpoints),
            "writer_jobs": store.database().writer_activity().jobs(),
            "writer_busy_ms": store.database().writer_activity().busy_for().as_millis() as u64,
            "write_entries": n(&store.batch_counters().entries),
            "batched_writes": n(&store.batch_counters().batched_writes),
        },
    })
}
