//! `/db/execute`, `/db/query`, `/db/request` and `/db/sql`: SQL over rqlite's JSON API.
//!
//! Every handler refuses rqlite's disallowed PRAGMAs before anything runs or is forwarded
//! (200 with `"error":"disallowed pragma"`). `noparse`, `norwrandom` and `norwtime` are
//! accepted and change nothing here: the apply connection is deterministic, so no SQL text is
//! rewritten (see `crate::db::rewrite`); `/db/sql` shows what rqlite's rewriting would give.

use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;

use super::body::{is_plain_text, parse_budget, parse_statements};
use super::error_status;
use super::forward::answer_not_leader;
use super::json::{encode_response, ApiResponse, EncodeOptions};
use super::params::QueryParams;
use super::response::{json, text_error};
use super::AppState;
use crate::db::execute::RequestResults;
use crate::db::request::{ApplyEnv, Request, ResultOptions, RowsPolicy, SqlStatement};
use crate::db::rewrite;
use crate::store::{ReadBounds, ReadLevel, StoreError};

/// A parsed request with the raw body it came in.
struct Incoming {
    params: QueryParams,
    request: Request,
    body: bytes::Bytes,
}

/// A body up to this size is kept while the request runs on the leader, to be forwarded if
/// leadership moves meanwhile; a larger one is dropped before the request runs (holding it
/// beside its parsed form doubled a large write's memory) and such a write, in that race,
/// answers 503 for the client to send again.
const KEEP_FOR_FORWARDING_BYTES: usize = 1 << 20;

impl Incoming {
    /// Splits the request from what may be forwarded: the whole body on a node that is not
    /// the leader (it forwards it as sent), a small body on the leader, nothing otherwise.
    fn split(self, state: &AppState) -> (QueryParams, Request, Option<bytes::Bytes>) {
        let keep = !state.store.is_leader() || self.body.len() <= KEEP_FOR_FORWARDING_BYTES;
        (self.params, self.request, keep.then_some(self.body))
    }
}

pub async fn execute(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let incoming = match read_request(&req, payload, &state, true).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Some(refused) = refuse_disallowed(&incoming) {
        return refused;
    }
    if incoming.params.has("queue") {
        return queued(&state, &req, incoming).await;
    }
    let started = Instant::now();
    let (params, request, forward) = incoming.split(&state);
    let outcome = state
        .store
        .execute(
            request,
            RowsPolicy::ReturningOnly,
            result_options(&params),
            params.duration("db_timeout"),
        )
        .await
        .map(|w| (w.results, w.raft_index));
    respond(&req, &state, &params, forward, outcome, started).await
}

pub async fn query_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let Some(sql) = params.get("q") else {
        return text_error(StatusCode::BAD_REQUEST, "query parameter not set");
    };
    let request = Request {
        statements: vec![SqlStatement::new(sql)],
        transaction: params.has("transaction"),
    };
    let incoming = Incoming {
        params,
        request,
        body: bytes::Bytes::new(),
    };
    if let Some(refused) = refuse_disallowed(&incoming) {
        return refused;
    }
    run_query(&req, &state, incoming).await
}

pub async fn query_post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match read_request(&req, payload, &state, true).await {
        Ok(incoming) => match refuse_disallowed(&incoming) {
            Some(refused) => refused,
            None => run_query(&req, &state, incoming).await,
        },
        Err(resp) => resp,
    }
}

pub async fn request(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let incoming = match read_request(&req, payload, &state, false).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Some(refused) = refuse_disallowed(&incoming) {
        return refused;
    }
    let started = Instant::now();
    let (params, request, forward) = incoming.split(&state);
    let level = ReadLevel::parse(params.get("level"));
    let opts = result_options(&params);
    // Decided the same way at every level: a read-only request is a query (a strong one
    // included, which confirms leadership and reads locally), anything else a write.
    let outcome = match state.store.is_read_only(request).await {
        Ok((request, true)) => state
            .store
            .query(request, level, opts, read_bounds(&params))
            .await
            .map(|r| (r, 0)),
        Ok((request, false)) => state
            .store
            .execute(
                request,
                RowsPolicy::AllQueries,
                opts,
                params.duration("db_timeout"),
            )
            .await
            .map(|w| (w.results, w.raft_index)),
        Err(e) => Err(e),
    };
    respond(&req, &state, &params, forward, outcome, started).await
}

async fn run_query(req: &HttpRequest, state: &AppState, incoming: Incoming) -> HttpResponse {
    let started = Instant::now();
    let (params, request, forward) = incoming.split(state);
    let outcome = state
        .store
        .query(
            request,
            ReadLevel::parse(params.get("level")),
            result_options(&params),
            read_bounds(&params),
        )
        .await
        .map(|r| (r, 0));
    respond(req, state, &params, forward, outcome, started).await
}

/// A read's bounds from its parameters (validated before: `freshness_strict` needs
/// `freshness`; durations parse).
fn read_bounds(params: &QueryParams) -> ReadBounds {
    ReadBounds {
        freshness: params.duration("freshness"),
        freshness_strict: params.has("freshness_strict"),
        linearizable_timeout: params
            .duration("linearizable_timeout")
            .unwrap_or(crate::store::DEFAULT_LINEARIZABLE_TIMEOUT),
        db_timeout: params.duration("db_timeout"),
    }
}

/// `/db/execute?queue[&wait]`: accepted at once with a sequence number, or after the batch
/// is applied with `wait` (408 `queue wait timeout` after `timeout`, 30 s by default).
async fn queued(state: &AppState, req: &HttpRequest, incoming: Incoming) -> HttpResponse {
    let params = &incoming.params;
    if !params.has("noleader") && state.store.leader().is_none() {
        return text_error(StatusCode::SERVICE_UNAVAILABLE, "leader not found");
    }
    let wait = params.has("wait");
    let (seq, outcome) = match state
        .write_queue
        .enqueue(
            incoming.request.statements,
            wait,
            req.headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return text_error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let mut error = None;
    if let Some(outcome) = outcome {
        let limit = params
            .duration("timeout")
            .unwrap_or(std::time::Duration::from_secs(30));
        match tokio::time::timeout(limit, outcome).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => error = Some(e),
            Ok(Err(_)) => error = Some("the write queue stopped".to_string()),
            Err(_) => return text_error(StatusCode::REQUEST_TIMEOUT, "queue wait timeout"),
        }
    }
    json(
        StatusCode::OK,
        encode_response(
            &ApiResponse {
                error: error.as_deref(),
                sequence_number: seq,
                ..Default::default()
            },
            EncodeOptions::from_params(params),
        ),
    )
}

/// rqlite's answer to a request holding a disallowed PRAGMA, or None.
fn refuse_disallowed(incoming: &Incoming) -> Option<HttpResponse> {
    let refused = incoming
        .request
        .statements
        .iter()
        .any(|s| rewrite::has_disallowed_pragma(&s.sql));
    refused.then(|| {
        json(
            StatusCode::OK,
            encode_response(
                &ApiResponse {
                    error: Some(rewrite::DISALLOWED_PRAGMA_ERROR),
                    ..Default::default()
                },
                EncodeOptions::from_params(&incoming.params),
            ),
        )
    })
}

/// `GET /db/sql?q=...` and `POST /db/sql` (a JSON array, as for execute): what rqlite's
/// rewriting would replicate for each statement, with this node's clock and a fresh seed.
/// raftlite itself replicates the original text and applies it deterministically.
pub async fn sql(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let statements = if req.method() == actix_web::http::Method::GET {
        match params.get("q") {
            Some(q) => vec![SqlStatement::new(q)],
            None => return text_error(StatusCode::BAD_REQUEST, "query parameter not set"),
        }
    } else {
        let body = match read_body(&req, payload, state.limits.max_body_size).await {
            Ok(b) => b.freeze(),
            Err(resp) => return resp,
        };
        let plain = is_plain_text(
            req.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        match parse_statements(&body, plain, parse_budget(state.limits.max_body_size)) {
            Ok(s) => s,
            Err(e) => return text_error(error_status::body(&e), e),
        }
    };
    let noparse = params.has("noparse");
    let opts = rewrite::RewriteOptions {
        random: !noparse && !params.has("norwrandom"),
        time: !noparse && !params.has("norwtime"),
    };
    let env = ApplyEnv::stamp(0);
    let results: Vec<serde_json::Value> = statements
        .iter()
        .map(|s| {
            serde_json::json!({
                "original": s.sql,
                "rewritten": rewrite::rewrite(&s.sql, opts, env),
            })
        })
        .collect();
    let doc = serde_json::json!({ "results": results });
    let body = serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into());
    json(
        StatusCode::OK,
        if params.has("pretty") {
            super::json::indent(&body, "    ")
        } else {
            body
        },
    )
}

fn result_options(params: &QueryParams) -> ResultOptions {
    ResultOptions {
        qualify_columns: params.has("qualify_columns"),
    }
}

/// The answer to a request that ran here, or the leader's when it had to be forwarded.
async fn respond(
    req: &HttpRequest,
    state: &AppState,
    params: &QueryParams,
    forward: Option<bytes::Bytes>,
    outcome: Result<(RequestResults, u64), StoreError>,
    started: Instant,
) -> HttpResponse {
    match outcome {
        Ok((results, raft_index)) => {
            let body = encode_response(
                &ApiResponse {
                    results: &results.results,
                    error: results.error.as_deref(),
                    time: started.elapsed().as_secs_f64(),
                    raft_index: if params.has("raft_index") {
                        raft_index
                    } else {
                        0
                    },
                    ..Default::default()
                },
                EncodeOptions::from_params(params),
            );
            let mut resp = json(StatusCode::OK, body);
            if let Ok(v) = header::HeaderValue::from_str(&state.store.node().api_addr) {
                resp.headers_mut()
                    .insert(header::HeaderName::from_static("x-rqlite-served-by"), v);
            }
            resp
        }
        Err(StoreError::NotLeader { leader }) => match forward {
            Some(body) => {
                answer_not_leader(&state.forward_client, req, params, body, leader.as_ref()).await
            }
            // Leadership moved while a large request ran here (see `KEEP_FOR_FORWARDING_BYTES`):
            // nothing of it was applied.
            None => text_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not leader: leadership moved while the request was handled and nothing of it \
                 was applied; send it again",
            ),
        },
        Err(e) => match error_status::store(&e) {
            // rqlite answers request-level failures that are not about leadership or
            // availability with 200 and an `error` field, and clients look for it there.
            StatusCode::OK => {
                let msg = match &e {
                    StoreError::Internal(err) => format!("{err:#}"),
                    other => other.to_string(),
                };
                json(
                    StatusCode::OK,
                    encode_response(
                        &ApiResponse {
                            error: Some(&msg),
                            ..Default::default()
                        },
                        EncodeOptions::from_params(params),
                    ),
                )
            }
            status => text_error(status, e),
        },
    }
}

/// Reads and parses the body into a request, or returns the 4xx answer.
async fn read_request(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    allow_plain_text: bool,
) -> Result<Incoming, HttpResponse> {
    let params = QueryParams::parse(req.query_string());
    let body = read_body(req, payload, state.limits.max_body_size)
        .await?
        .freeze();
    let plain = allow_plain_text
        && is_plain_text(
            req.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
    let statements = parse_statements(&body, plain, parse_budget(state.limits.max_body_size))
        .map_err(|e| text_error(error_status::body(&e), e))?;
    let request = Request {
        statements,
        transaction: params.has("transaction"),
    };
    Ok(Incoming {
        params,
        request,
        body,
    })
}

/// Reads a whole (small) body, refusing more than `limit` bytes with a clear 413.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, HttpResponse> {
    let too_large = || {
        text_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large: the limit is {limit} bytes (-max-body-size)"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| text_error(StatusCode::BAD_REQUEST, format!("read request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
