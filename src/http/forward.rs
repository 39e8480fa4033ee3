//! Followers answer for the leader: they forward the request to it (default), or redirect the
//! client to it (`?redirect`), or answer 503 `leader not found` when no leader is known.
//!
//! A forwarded request carries `X-Raftlite-Forwarded`; a node that receives one and is not
//! the leader either (leadership moved meanwhile) answers 503 instead of forwarding again, so
//! requests never loop. The leader's answer is passed through as it is (status, content type,
//! body), with `X-RQLITE-SERVED-BY` set to the leader's Raft address, as rqlite does.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};

use super::params::QueryParams;
use super::response::text_error;
use crate::store::NodeInfo;

pub const FORWARDED_HEADER: &str = "x-raftlite-forwarded";

/// The leader to forward a request to, or the answer when it must not be forwarded: 503
/// `leader not found` without a leader, 301 to the leader with `?redirect`, and 503 again
/// when the request was already forwarded to us (leadership moved meanwhile: never forward
/// twice). Every endpoint that forwards decides with this.
pub fn leader_to_forward_to(
    req: &HttpRequest,
    params: &QueryParams,
    leader: Option<&NodeInfo>,
) -> Result<NodeInfo, Box<HttpResponse>> {
    let not_found = || {
        Box::new(text_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "leader not found",
        ))
    };
    let Some(leader) = leader else {
        return Err(not_found());
    };
    if params.has("redirect") {
        return Err(Box::new(redirect(req, leader)));
    }
    if req.headers().contains_key(FORWARDED_HEADER) {
        return Err(not_found());
    }
    Ok(leader.clone())
}

/// How the request should be answered when this node is not the leader.
pub async fn answer_not_leader(
    client: &reqwest::Client,
    req: &HttpRequest,
    params: &QueryParams,
    body: bytes::Bytes,
    leader: Option<&NodeInfo>,
) -> HttpResponse {
    let leader = match leader_to_forward_to(req, params, leader) {
        Ok(l) => l,
        Err(answer) => return *answer,
    };
    let timeout = params
        .duration("timeout")
        .unwrap_or(Duration::from_secs(30));
    let retries = params
        .get("retries")
        .and_then(|r| r.parse::<u32>().ok())
        .unwrap_or(0);
    forward(client, req, body, &leader, timeout, retries).await
}

/// Attempts of a forward whose connection to the leader could not be made: rqlite's
/// `retries` (at least one retry, as rqlite makes), capped so a request cannot ask for an
/// unbounded loop.
fn connect_attempts(retries: u32) -> u32 {
    1 + retries.clamp(1, MAX_FORWARD_RETRIES)
}

/// The most `retries` honoured.
const MAX_FORWARD_RETRIES: u32 = 10;
/// The pause before each retry: a leader restarting or busy accepting gets a moment.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The same path and query on the leader's API. The path is the one actix routed (decoded),
/// never the raw one: the leader decides on exactly the route this node decided on.
pub fn leader_url(req: &HttpRequest, leader: &NodeInfo) -> String {
    let mut url = format!("{}{}", leader.api_url(), req.match_info().as_str());
    if !req.query_string().is_empty() {
        url.push('?');
        url.push_str(req.query_string());
    }
    url
}

/// Passes the caller's credentials on, so the leader checks the caller, not the follower.
pub fn with_caller_credentials(
    out: reqwest::RequestBuilder,
    req: &HttpRequest,
) -> reqwest::RequestBuilder {
    match req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(auth) => out.header(reqwest::header::AUTHORIZATION, auth),
        None => out,
    }
}

/// 301 to the same path and query on the leader.
pub fn redirect(req: &HttpRequest, leader: &NodeInfo) -> HttpResponse {
    let location = leader_url(req, leader);
    HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, location.clone()))
        .content_type("text/html; charset=utf-8")
        .body(format!("<a href=\"{location}\">Moved Permanently</a>.\n\n"))
}

/// Sends the request to the leader and relays its answer. Only a connection that could not
/// be made is retried (`retries`, see [`connect_attempts`]): the leader never saw that
/// request. rqlite retries after any error, which can run a write twice; a request that may
/// have reached the leader is not sent again here.
async fn forward(
    client: &reqwest::Client,
    req: &HttpRequest,
    body: bytes::Bytes,
    leader: &NodeInfo,
    timeout: Duration,
    retries: u32,
) -> HttpResponse {
    let url = leader_url(req, leader);
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::POST);
    let attempts = connect_attempts(retries);
    let mut attempt = 1;
    let sent = loop {
        let mut out = client
            .request(method.clone(), &url)
            .timeout(timeout)
            .header(FORWARDED_HEADER, "1")
            .body(body.clone());
        if let Some(ct) = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            out = out.header(reqwest::header::CONTENT_TYPE, ct);
        }
        out = with_caller_credentials(out, req);
        match out.send().await {
            Err(e) if e.is_connect() && attempt < attempts => {
                metrics::FORWARD_RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                attempt += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => break other,
        }
    };
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(
                "forward to leader {} ({attempt} attempts): {e}",
                leader.api_addr
            );
            return super::response::json(
                StatusCode::OK,
                format!(
                    "{{\"results\":[],\"error\":{}}}",
                    serde_json::Value::String(format!(
                        "forward to leader: {e} ({attempt} attempts)"
                    ))
                ),
            );
        }
    };
    relay_leader_answer(resp, leader).await
}

/// Counts kept for `/debug/vars`.
pub mod metrics {
    use std::sync::atomic::AtomicU64;

    /// Forwards sent again because the connection to the leader could not be made
    /// (`cluster.client_retries`, as rqlite names its count of them).
    pub static FORWARD_RETRIES: AtomicU64 = AtomicU64::new(0);
}

/// The leader's answer to a forwarded request, passed on: status, content type and body (a
/// JSON answer, small), plus `X-RQLITE-SERVED-BY` as rqlite sends it.
pub async fn relay_leader_answer(resp: reqwest::Response, leader: &NodeInfo) -> HttpResponse {
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return text_error(
                StatusCode::BAD_GATEWAY,
                format!("read the leader's answer: {e}"),
            )
        }
    };
    let mut builder = HttpResponse::build(status);
    if let Some(ct) = content_type {
        builder.insert_header((header::CONTENT_TYPE, ct));
    }
    builder.insert_header(("X-RQLITE-SERVED-BY", leader.raft_addr.clone()));
    builder.body(bytes)
}
