//! Console restores: upload once into a staging area, show what the file is, install it only
//! after the user confirms.
//!
//! - `POST /console/api/restores[?ttl=SECONDS]` (body: the file, raw, as `/db/load` takes it)
//!   streams the body through the load path's stager and validation
//!   (`store::restore::stage_for_later`) into `load-<id>.part` in the data directory.
//!   A file that is not a valid database or SQL text is refused here (400, the load path's
//!   message) and deleted: it never reaches the confirmation. Otherwise → 201
//!   `{"id","report":{"kind","bytes","received","gzip"[,"pages","page_size","tables"]},
//!   "expires_in"}`. Nothing has changed yet: this is the dry run.
//! - `GET /console/api/restores/<id>`: the same description, while it is staged.
//! - `POST /console/api/restores/<id>/install`: proposes the staged file exactly as
//!   `/db/load` does (one `Command::Load` entry; see `store::restore::replicate`) and answers as `/db/load`
//!   does with `raft_index`.
//! - `DELETE /console/api/restores/<id>`: discards it (204).
//!
//! Only the leader stages (it proposes the entry); a follower answers 503 naming the leader's
//! console. Bounds: at most [`MAX_STAGED`] uploads staged or being uploaded at once (503
//! beyond); before an upload, the free space of the data directory must exceed its
//! `Content-Length` plus `-disk-reserve` (507 otherwise), and after it the reserve must still
//! be free (507, the file is deleted); `-max-load-size` applies as for `/db/load`.
//!
//! Invariants: a staged file belongs to its registry entry (a [`Staged`] holding its
//! [`crate::temp_file::TempFile`] guard). Discarding, expiry ([`DEFAULT_TTL`], or the
//! shorter `ttl` the client asked for) and a refused or abandoned upload all drop the guard,
//! which deletes the file; installing hands it to the state machine. A crash leaves a `.part`
//! file, which startup removes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use parking_lot::Mutex;
use serde_json::json;

use super::load_routes::{content_length, restore_error, restore_limits, restored_answer};
use super::params::QueryParams;
use super::response::{empty, json as json_response, text_error};
use super::AppState;
use crate::store::restore::{self, Staged};
use crate::temp_file::unguessable_id;

/// Uploads staged or in progress at once.
pub const MAX_STAGED: usize = 4;
/// How long a staged upload waits for its confirmation.
pub const DEFAULT_TTL: Duration = Duration::from_secs(900);

/// The console's staged restores (one set per node).
#[derive(Default)]
pub struct StagedRestores {
    staged: Mutex<HashMap<String, Pending>>,
    /// Uploads being received (they count against [`MAX_STAGED`]).
    uploading: AtomicUsize,
}

struct Pending {
    load: Staged,
    expires: Instant,
}

impl StagedRestores {
    /// Removes entries past their expiry (their files go with them).
    fn sweep(&self) {
        let now = Instant::now();
        self.staged.lock().retain(|_, s| s.expires > now);
    }
}

/// Releases an upload slot when the upload ends, however it ends.
struct UploadSlot<'a>(&'a AtomicUsize);

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn describe_json(id: &str, s: &Pending) -> serde_json::Value {
    json!({
        "id": id,
        "report": s.load.report(),
        "expires_in": s.expires.saturating_duration_since(Instant::now()).as_secs(),
    })
}

pub async fn stage(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    console: web::Data<StagedRestores>,
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
    console.sweep();
    {
        // Checked and taken under the lock, so concurrent uploads cannot both take the last
        // slot (slots are given back without it: that only makes room).
        let staged = console.staged.lock();
        if staged.len() + console.uploading.load(Ordering::SeqCst) >= MAX_STAGED {
            return text_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{MAX_STAGED} restores are already staged or uploading; install or discard \
                     one"
                ),
            );
        }
        console.uploading.fetch_add(1, Ordering::SeqCst);
    }
    let slot = UploadSlot(&console.uploading);
    let declared = content_length(&req);
    let limits = restore_limits(&state);
    let load = match restore::stage_for_later(store, payload, declared, limits).await {
        Ok(l) => l,
        Err(e) => return restore_error(&req, &params, &e),
    };
    let id = unguessable_id();
    let staged = Pending {
        load,
        expires: Instant::now() + ttl,
    };
    let body = describe_json(&id, &staged);
    console.staged.lock().insert(id.clone(), staged);
    drop(slot);
    // Expiry: the entry (and its file) goes when its time is up, whoever is watching.
    let console = console.into_inner();
    let expiring = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ttl).await;
        if console.staged.lock().remove(&expiring).is_some() {
            tracing::info!(
                id = expiring,
                "console restore expired unconfirmed; discarded"
            );
        }
    });
    json_response(StatusCode::CREATED, body.to_string())
}

fn not_staged() -> HttpResponse {
    text_error(
        StatusCode::NOT_FOUND,
        "no such staged restore (discarded, installed or expired)",
    )
}

pub async fn describe(path: web::Path<String>, console: web::Data<StagedRestores>) -> HttpResponse {
    console.sweep();
    match console.staged.lock().get(path.as_str()) {
        Some(s) => json_response(StatusCode::OK, describe_json(&path, s).to_string()),
        None => not_staged(),
    }
}

pub async fn discard(path: web::Path<String>, console: web::Data<StagedRestores>) -> HttpResponse {
    match console.staged.lock().remove(path.as_str()) {
        Some(_) => empty(StatusCode::NO_CONTENT),
        None => not_staged(),
    }
}

pub async fn install(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    console: web::Data<StagedRestores>,
) -> HttpResponse {
    console.sweep();
    let Some(staged) = console.staged.lock().remove(path.as_str()) else {
        return not_staged();
    };
    let params = QueryParams::parse("raft_index&timings");
    let started = Instant::now();
    match restore::propose(&state.store, staged.load, restore_limits(&state), started).await {
        Ok(restored) => restored_answer(&params, restored, started),
        Err(e) => restore_error(&req, &params, &e),
    }
}
