//! Console restores: upload once into a staging area, show what the file is, install it only
//! after the user confirms. This module parses and answers; the staging, the registry that
//! holds a file until its confirmation, and the proposal are `store::restore`'s.
//!
//! - `POST /console/api/restores[?ttl=SECONDS]` (body: the file, raw, as `/db/load` takes it)
//!   stages the body as `/db/load` does (`store::restore::stage_for_later`) into
//!   `load-<id>.part` in the data directory. A file that is not a valid database or SQL text
//!   is refused here (400, the load path's message) and deleted: it never reaches the
//!   confirmation. Otherwise → 201
//!   `{"id","report":{"kind","bytes","received","gzip","zstd"[,"pages","page_size","tables"]},
//!   "expires_in"}`. Nothing has changed yet: this is the dry run.
//! - `GET /console/api/restores/<id>`: the same description, while it is staged.
//! - `POST /console/api/restores/<id>/install`: proposes the staged file exactly as
//!   `/db/load` does (`store::restore::propose`: one `Command::Load` entry for a database
//!   file, `Command::LoadSql` for SQL text) and answers as `/db/load` does with `raft_index`.
//! - `DELETE /console/api/restores/<id>`: discards it (204).
//!
//! Only the leader stages (it proposes the entry); a follower answers 503 naming the leader's
//! console. Bounds (`store::restore::pending`): at most `MAX_PENDING` uploads staged or being
//! uploaded at once (503 beyond), each kept at most `DEFAULT_TTL` or the shorter `ttl` the
//! client asked for; before an upload, the free space of the data directory must exceed its
//! `Content-Length` plus `-disk-reserve` (507 otherwise), and after it the reserve must still
//! be free (507, the file is deleted); `-max-load-size` applies as for `/db/load`.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::load_routes::{content_length, restore_error, restore_limits, restored_answer};
use super::params::QueryParams;
use super::response::{empty, json as json_response, text_error};
use super::AppState;
use crate::store::restore;
use crate::store::restore::pending::{PendingRestores, PendingView, DEFAULT_TTL};

fn describe_json(id: &str, view: &PendingView) -> serde_json::Value {
    json!({
        "id": id,
        "report": view.report,
        "expires_in": view.expires_in.as_secs(),
    })
}

pub async fn stage(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    console: web::Data<PendingRestores>,
) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let store = &state.store;
    if !store.is_leader() {
        let msg = match store.leader() {
            Some(l) => format!(
                "this node is not the leader: restore from the leader's console at {}/console/",
                l.api_url()
            ),
            None => "leader not found".to_string(),
        };
        return text_error(StatusCode::SERVICE_UNAVAILABLE, msg);
    }
    let ttl = match params.get("ttl").map(str::parse::<u64>) {
        None => DEFAULT_TTL,
        Some(Ok(s)) if s > 0 => Duration::from_secs(s).min(DEFAULT_TTL),
        Some(_) => return text_error(StatusCode::BAD_REQUEST, "ttl must be a positive integer"),
    };
    let slot = match console.start_upload() {
        Ok(slot) => slot,
        Err(e) => return restore_error(&req, &params, &e),
    };
    let declared = content_length(&req);
    let limits = restore_limits(&state);
    let staged = match restore::stage_for_later(store, payload, declared, limits).await {
        Ok(staged) => staged,
        Err(e) => return restore_error(&req, &params, &e),
    };
    let (id, view) = console.keep(slot, staged, ttl);
    json_response(StatusCode::CREATED, describe_json(&id, &view).to_string())
}

pub async fn describe(
    req: HttpRequest,
    path: web::Path<String>,
    console: web::Data<PendingRestores>,
) -> HttpResponse {
    match console.describe(&path) {
        Ok(view) => json_response(StatusCode::OK, describe_json(&path, &view).to_string()),
        Err(e) => restore_error(&req, &QueryParams::parse(req.query_string()), &e),
    }
}

pub async fn discard(
    req: HttpRequest,
    path: web::Path<String>,
    console: web::Data<PendingRestores>,
) -> HttpResponse {
    match console.discard(&path) {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => restore_error(&req, &QueryParams::parse(req.query_string()), &e),
    }
}

pub async fn install(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    console: web::Data<PendingRestores>,
) -> HttpResponse {
    let params = QueryParams::parse("raft_index&timings&report");
    let staged = match console.take(&path) {
        Ok(staged) => staged,
        Err(e) => return restore_error(&req, &params, &e),
    };
    let started = Instant::now();
    match restore::propose(&state.store, staged, restore_limits(&state), started).await {
        Ok(restored) => restored_answer(&params, restored, started),
        Err(e) => restore_error(&req, &params, &e),
    }
}
