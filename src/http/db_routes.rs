//! `/db/execute`, `/db/query` and `/db/request`: SQL over rqlite's JSON API.

use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;

use super::body::{is_plain_text, parse_statements};
use super::forward::answer_not_leader;
use super::json::{encode_response, ApiResponse, EncodeOptions};
use super::params::QueryParams;
use super::response::{json, text_error};
use super::AppState;
use crate::db::execute::RequestResults;
use crate::db::request::{Request, ResultOptions, RowsPolicy, SqlStatement};
use crate::store::{ReadLevel, StoreError};

/// A parsed request with the raw body kept for forwarding.
struct Incoming {
    params: QueryParams,
    request: Request,
    body: bytes::Bytes,
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
    let started = Instant::now();
    let outcome = state
        .store
        .execute(
            incoming.request.clone(),
            RowsPolicy::ReturningOnly,
            result_options(&incoming.params),
        )
        .await
        .map(|w| (w.results, w.raft_index));
    respond(&req, &state, incoming, outcome, started).await
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
    run_query(
        &req,
        &state,
        Incoming {
            params,
            request,
            body: bytes::Bytes::new(),
        },
    )
    .await
}

pub async fn query_post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match read_request(&req, payload, &state, true).await {
        Ok(incoming) => run_query(&req, &state, incoming).await,
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
    let level = ReadLevel::parse(incoming.params.get("level"));
    let started = Instant::now();
    let read_only = if level == ReadLevel::Strong {
        Ok(false)
    } else {
        state.store.is_read_only(incoming.request.clone()).await
    };
    let opts = result_options(&incoming.params);
    let outcome = match read_only {
        Ok(true) => state
            .store
            .query(
                incoming.request.clone(),
                level,
                opts,
                incoming.params.duration("freshness"),
            )
            .await
            .map(|r| (r, 0)),
        Ok(false) => state
            .store
            .execute(incoming.request.clone(), RowsPolicy::AllQueries, opts)
            .await
            .map(|w| (w.results, w.raft_index)),
        Err(e) => Err(e),
    };
    respond(&req, &state, incoming, outcome, started).await
}

async fn run_query(req: &HttpRequest, state: &AppState, incoming: Incoming) -> HttpResponse {
    let level = ReadLevel::parse(incoming.params.get("level"));
    let started = Instant::now();
    let outcome = state
        .store
        .query(
            incoming.request.clone(),
            level,
            result_options(&incoming.params),
            incoming.params.duration("freshness"),
        )
        .await
        .map(|r| (r, 0));
    respond(req, state, incoming, outcome, started).await
}

fn result_options(params: &QueryParams) -> ResultOptions {
    ResultOptions {
        qualify_columns: params.has("qualify_columns"),
    }
}

async fn respond(
    req: &HttpRequest,
    state: &AppState,
    incoming: Incoming,
    outcome: Result<(RequestResults, u64), StoreError>,
    started: Instant,
) -> HttpResponse {
    let params = &incoming.params;
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
        Err(StoreError::NotLeader { leader }) => {
            answer_not_leader(
                &state.forward_client,
                req,
                params,
                incoming.body,
                leader.as_ref(),
            )
            .await
        }
        Err(e @ (StoreError::Internal(_) | StoreError::StaleRead)) => {
            // rqlite answers request-level failures that are not about leadership with 200 and
            // an `error` field, and clients look for it there.
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
    let statements =
        parse_statements(&body, plain).map_err(|e| text_error(StatusCode::BAD_REQUEST, e))?;
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
