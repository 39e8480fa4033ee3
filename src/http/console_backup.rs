//! Console backup jobs: a backup the browser downloads itself, with progress from the server.
//!
//! A page cannot watch the progress of a download it hands to the browser, and reading the
//! body with `fetch()` would hold the whole backup in the page's memory. So the console:
//! 1. `POST /console/api/backup-jobs` with `{"fmt":"binary"|"sql","tables":"a,b",
//!    "compress":bool,"noleader":bool}` → 201 `{"id":..,"download":"/console/api/backup-jobs/<id>/download"}`;
//! 2. navigates a plain link to the `download` URL: the browser streams the body to disk. The
//!    answer is `GET /db/backup`'s, with these parameters (forwarded to the leader unless
//!    `noleader`), plus `Content-Disposition: attachment`; its body counts the bytes it sends;
//! 3. polls `GET /console/api/backup-jobs/<id>` → `{"state":"created"|"streaming"|"done"|
//!    "failed","bytes","total","rate","raft_index","filename","error"}` (`total` when the
//!    answer has a `Content-Length`; `rate` in bytes per second since the first byte).
//!
//! The id is 128 random bits: the download link is a capability (it carries no
//! credentials, since the browser follows it by itself); the job's creation is the request
//! that an authenticating node checks.
//!
//! Invariants (bounded): at most [`MAX_JOBS`] jobs are kept; a job is downloaded at most once
//! (a second download is a 409); a job is forgotten [`JOB_TTL`] after it was created or
//! finished, whichever is later (a job being streamed is never forgotten); when the table is
//! full, the oldest job not streaming is forgotten, and if all are streaming the request gets
//! a 503. A job is a few words of memory: it holds no backup data.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;

use super::backup_routes::{serve_backup, RAFT_INDEX_HEADER};
use super::params::QueryParams;
use super::response::{json as json_response, text_error};
use super::AppState;
use crate::temp_file::unguessable_id;

/// Jobs kept at once.
pub const MAX_JOBS: usize = 32;
/// How long a job is kept after it was created or finished.
pub const JOB_TTL: Duration = Duration::from_secs(600);

/// What the console asks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRequest {
    #[serde(default)]
    fmt: Option<String>,
    #[serde(default)]
    tables: Option<String>,
    #[serde(default)]
    compress: bool,
    #[serde(default)]
    noleader: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobState {
    Created,
    Streaming,
    Done,
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Created => "created",
            JobState::Streaming => "streaming",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

/// One job: its parameters and its progress.
struct Job {
    /// The `/db/backup` query string.
    query: String,
    filename_ext: &'static str,
    bytes: AtomicU64,
    progress: Mutex<Progress>,
}

struct Progress {
    state: JobState,
    /// Creation, then the end of the download: the expiry clock starts here.
    touched: Instant,
    started: Option<Instant>,
    finished: Option<Instant>,
    total: Option<u64>,
    raft_index: Option<u64>,
    filename: Option<String>,
    error: Option<String>,
}

impl Job {
    fn finish(&self, state: JobState, error: Option<String>) {
        let mut p = self.progress.lock();
        if matches!(p.state, JobState::Created | JobState::Streaming) {
            p.state = state;
            p.error = error;
            p.finished = Some(Instant::now());
            p.touched = Instant::now();
        }
    }
}

/// The table of jobs (one per node).
#[derive(Default)]
pub struct BackupJobs {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

impl BackupJobs {
    /// Forgets expired jobs, then makes room for one more if needed.
    fn admit(&self, id: String, job: Job) -> Result<(), &'static str> {
        let mut jobs = self.jobs.lock();
        jobs.retain(|_, j| {
            let p = j.progress.lock();
            p.state == JobState::Streaming || p.touched.elapsed() < JOB_TTL
        });
        if jobs.len() >= MAX_JOBS {
            let oldest = jobs
                .iter()
                .filter(|(_, j)| j.progress.lock().state != JobState::Streaming)
                .min_by_key(|(_, j)| j.progress.lock().touched)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    jobs.remove(&k);
                }
                None => return Err("too many backup downloads in progress; retry later"),
            }
        }
        jobs.insert(id, Arc::new(job));
        Ok(())
    }

    fn get(&self, id: &str) -> Option<Arc<Job>> {
        let jobs = self.jobs.lock();
        let job = jobs.get(id)?;
        let p = job.progress.lock();
        (p.state == JobState::Streaming || p.touched.elapsed() < JOB_TTL).then(|| Arc::clone(job))
    }
}

pub async fn create(body: web::Bytes, jobs: web::Data<BackupJobs>) -> HttpResponse {
    let req: JobRequest = if body.iter().all(u8::is_ascii_whitespace) {
        JobRequest {
            fmt: None,
            tables: None,
            compress: false,
            noleader: false,
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return text_error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid backup job request: {e}"),
                )
            }
        }
    };
    let fmt = req.fmt.as_deref().unwrap_or("binary").to_ascii_lowercase();
    if fmt != "binary" && fmt != "sql" {
        return text_error(
            StatusCode::BAD_REQUEST,
            format!("invalid backup format {fmt:?}: binary or sql"),
        );
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("fmt", &fmt);
    if let Some(t) = req
        .tables
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if fmt != "sql" {
            return text_error(
                StatusCode::BAD_REQUEST,
                "a table subset needs the SQL format",
            );
        }
        query.append_pair("tables", t);
    }
    if req.compress {
        query.append_key_only("compress");
    }
    if req.noleader {
        query.append_key_only("noleader");
    }
    let ext = match (fmt.as_str(), req.compress) {
        ("sql", false) => "sql",
        ("sql", true) => "sql.gz",
        (_, false) => "sqlite3",
        (_, true) => "sqlite3.gz",
    };
    let id = unguessable_id();
    let job = Job {
        query: query.finish(),
        filename_ext: ext,
        bytes: AtomicU64::new(0),
        progress: Mutex::new(Progress {
            state: JobState::Created,
            touched: Instant::now(),
            started: None,
            finished: None,
            total: None,
            raft_index: None,
            filename: None,
            error: None,
        }),
    };
    if let Err(e) = jobs.admit(id.clone(), job) {
        return text_error(StatusCode::SERVICE_UNAVAILABLE, e);
    }
    json_response(
        StatusCode::CREATED,
        json!({ "id": id, "download": format!("/console/api/backup-jobs/{id}/download") })
            .to_string(),
    )
}

pub async fn progress(path: web::Path<String>, jobs: web::Data<BackupJobs>) -> HttpResponse {
    let Some(job) = jobs.get(&path) else {
        return text_error(StatusCode::NOT_FOUND, "no such backup job (expired?)");
    };
    let bytes = job.bytes.load(Ordering::Relaxed);
    let p = job.progress.lock();
    let rate = p.started.map(|s| {
        let secs = p.finished.unwrap_or_else(Instant::now).duration_since(s);
        if secs.as_secs_f64() > 0.0 {
            (bytes as f64 / secs.as_secs_f64()).round() as u64
        } else {
            0
        }
    });
    let body = json!({
        "id": path.as_str(),
        "state": p.state.as_str(),
        "bytes": bytes,
        "total": p.total,
        "rate": rate,
        "raft_index": p.raft_index,
        "filename": p.filename,
        "error": p.error,
    });
    drop(p);
    let mut resp = json_response(StatusCode::OK, body.to_string());
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

pub async fn download(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    jobs: web::Data<BackupJobs>,
) -> HttpResponse {
    let Some(job) = jobs.get(&path) else {
        return text_error(StatusCode::NOT_FOUND, "no such backup job (expired?)");
    };
    {
        let mut p = job.progress.lock();
        if p.state != JobState::Created {
            return text_error(
                StatusCode::CONFLICT,
                "this backup job was already downloaded; start a new one",
            );
        }
        p.state = JobState::Streaming;
        p.started = Some(Instant::now());
    }
    let params = QueryParams::parse(&job.query);
    let resp = serve_backup(&req, &params, &state, Some(&job.query)).await;
    if !resp.status().is_success() {
        let (resp, body) = resp.into_parts();
        let bytes = actix_web::body::to_bytes(body).await.unwrap_or_default();
        let message = String::from_utf8_lossy(&bytes).trim().to_string();
        job.finish(
            JobState::Failed,
            Some(format!("{}: {message}", resp.status())),
        );
        return resp.set_body(BoxBody::new(bytes));
    }
    let raft_index = resp
        .headers()
        .get(RAFT_INDEX_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let filename = format!(
        "raftlite-backup-{}.{}",
        raft_index.unwrap_or(0),
        job.filename_ext
    );
    let (mut resp, body) = resp.into_parts();
    {
        let mut p = job.progress.lock();
        p.raft_index = raft_index;
        p.filename = Some(filename.clone());
        p.total = match body.size() {
            BodySize::Sized(n) => Some(n),
            _ => None,
        };
    }
    let headers = resp.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp.set_body(Counted {
        inner: body,
        job,
        ended: false,
    })
    .map_into_boxed_body()
}

/// The backup's body, counting the bytes it hands to the connection into its job.
struct Counted {
    inner: BoxBody,
    job: Arc<Job>,
    ended: bool,
}

impl MessageBody for Counted {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.job
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.ended = true;
                this.job
                    .finish(JobState::Failed, Some(format!("the backup failed: {e}")));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.ended = true;
                this.job.finish(JobState::Done, None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // A sized body whose every byte went out is complete even if it was not polled to
        // its end.
        let all_sent = matches!(self.inner.size(), BodySize::Sized(n)
            if n == self.job.bytes.load(Ordering::Relaxed));
        if !self.ended && all_sent {
            self.job.finish(JobState::Done, None);
        } else if !self.ended {
            self.job.finish(
                JobState::Failed,
                Some("the download was interrupted".into()),
            );
        }
    }
}
