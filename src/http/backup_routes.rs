//! `GET /db/backup`: the HTTP face of the backup engine ([`crate::store::backup`], which makes
//! the binary copies and the SQL stream, with their sharing, reserve, priority and caps).
//!
//! This module owns only what is HTTP's: the parameters (`fmt=binary|delete|sql`, `tables`,
//! `vacuum`, `compress`, `noleader`, `redirect`, and raftlite's `freshness`, `min_index`,
//! `timeout`, `stale=error|forward`), the choice between this node's own copy, the leader's
//! and a refusal (`where_to_answer`: a follower serves its own copy only when asked to, by
//! `noleader` or by bounds it meets), forwarding a follower's request to the leader
//! (the leader's stream is proxied chunk by chunk, without buffering and without a total
//! timeout: a large backup may take long), gzip (`compress`: level 1, on the fly, without
//! `Content-Encoding`, as rqlite does it: the client gets a `.gz` file), and the answer.
//!
//! Statuses before the first byte: 503 without `Retry-After` when this node is not fresh
//! enough for `freshness`/`min_index` (`http::error_status::not_fresh`), 400 for malformed
//! bounds, 503 with `Retry-After` when `-max-backup-copies` copies are
//! in progress, 507 when a copy would not fit above `-disk-reserve` (or stopped at it), 500
//! otherwise (`http::error_status::backup`, the one mapping). An error after the first byte ends the
//! body stream with an `Err`, so actix aborts the connection and the client sees a truncated
//! transfer, never a clean short file.

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use super::error_status;
use super::forward::{leader_to_forward_to, leader_url, with_caller_credentials, FORWARDED_HEADER};
use super::params::QueryParams;
use super::response::text_error;
use super::AppState;
use crate::metrics::BackupFormat;
use crate::store::backup::{Backup, ContentId};
use crate::store::{NodeInfo, Store};

pub const RAFT_INDEX_HEADER: &str = "X-Raftlite-Raft-Index";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Binary,
    Sql,
}

impl Format {
    fn metric(self) -> BackupFormat {
        match self {
            Format::Binary => BackupFormat::Binary,
            Format::Sql => BackupFormat::Sql,
        }
    }
}

type ChunkResult = Result<Bytes, io::Error>;

pub async fn backup(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    serve_backup(&req, &params, &state, None).await
}

/// A backup as `GET /db/backup` answers it, with `params` in place of the request's own query.
/// `leader_query`: the `/db/backup` query a follower sends to the leader when the request's
/// own path is not `/db/backup` (the console's backup jobs); `None` forwards path and query.
pub async fn serve_backup(
    req: &HttpRequest,
    params: &QueryParams,
    state: &AppState,
    leader_query: Option<&str>,
) -> HttpResponse {
    let fmt = params.get("fmt").unwrap_or("binary").to_ascii_lowercase();
    // rqlite: vacuum only applies to the plain binary format.
    if params.has("vacuum") && (fmt == "sql" || fmt == "delete") {
        return text_error(StatusCode::INTERNAL_SERVER_ERROR, "invalid backup format");
    }
    let format = if fmt == "sql" {
        Format::Sql
    } else {
        Format::Binary
    };

    let store = &state.store;
    let answer_here = match where_to_answer(params, store).await {
        Ok(here) => here,
        Err(refused) => return refused,
    };
    if !answer_here {
        return match leader_to_forward_to(req, params, store.leader().as_ref()) {
            Ok(l) => {
                let url = match leader_query {
                    Some(q) => format!("{}/db/backup?{q}", l.api_url()),
                    None => leader_url(req, &l),
                };
                proxy(&state.forward_client, req, &url, &l).await
            }
            Err(answer) => *answer,
        };
    }

    let tracker = store.metrics().backup(format.metric());
    let compress = params.has("compress");
    let tables = params.get("tables").map(|t| {
        t.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    });
    let variant = variant(format, params.has("vacuum"), tables.as_deref(), compress);
    // What a backup made now would hold: a client that has it already gets a 304 without a
    // copy being made (the content only changes when an entry is applied).
    let current = store.applied_content();
    if if_none_match(req, &current.etag(&variant)) {
        tracker.not_modified();
        return not_modified(&current, &variant);
    }
    let backups = store.backups();
    if req.method() == actix_web::http::Method::HEAD {
        return head(state, format, &variant, params.has("vacuum") || compress).await;
    }
    let answer = match format {
        Format::Binary => backups
            .binary(
                store.database(),
                store.applied_index(),
                params.has("vacuum"),
            )
            .await
            .map_err(|e| (error_status::backup(&e), e.to_string())),
        Format::Sql => backups
            .sql(store.database(), tables)
            .await
            .map_err(|e| (error_status::backup(&e), e.to_string())),
    };
    let prepared = match answer {
        Ok(p) => p,
        Err((status, message)) => {
            tracing::warn!("backup failed: {message}");
            tracker.refused(status);
            return failed_backup(status, message);
        }
    };
    let content_type = match format {
        Format::Binary => "application/octet-stream",
        Format::Sql => "application/sql",
    };
    store.counters.backups.fetch_add(1, Ordering::Relaxed);
    *store.counters.last_backup_time.lock() = Some(crate::http::json::rfc3339_from_unix(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    ));

    let prepared = Backup {
        body: tracker.stream(prepared.body, prepared.len),
        ..prepared
    };
    let mut builder = HttpResponse::Ok();
    builder.insert_header((header::CONTENT_TYPE, content_type));
    describe(&mut builder, &prepared.content, &variant);
    match (compress, prepared.len) {
        (true, _) => builder.streaming(gzip(prepared.body)),
        (false, Some(len)) => builder.body(SizedStream::new(len, prepared.body)),
        (false, None) => builder.streaming(prepared.body),
    }
}

/// What a follower does with a backup request its own copy is not fresh enough for
/// (`stale=`): refuse it (the default, as rqlite refuses a stale read) or pass it to the
/// leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhenStale {
    Refuse,
    Forward,
}

/// How recent a backup served by this node's own copy must be: `freshness` (last contact
/// with the leader), `min_index` (applied index, waited for up to `timeout`). `None` when the
/// request bounds neither: then a follower forwards unless `noleader`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FreshnessBounds {
    freshness: Option<Duration>,
    min_index: Option<u64>,
    wait: Duration,
    when_stale: WhenStale,
}

/// How long a backup waits for `min_index` to be applied when `timeout` is not given: the
/// default wait of this node's other `timeout` parameters.
const DEFAULT_MIN_INDEX_WAIT: Duration = Duration::from_secs(30);

impl FreshnessBounds {
    /// The bounds a request sets, or the 400 message for a malformed one (`freshness` and
    /// `timeout` were validated for every route already).
    fn parse(params: &QueryParams) -> Result<Option<FreshnessBounds>, String> {
        let min_index = match params.get("min_index") {
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| format!("min_index is not a valid Raft index: {v:?}"))?,
            ),
            None => None,
        };
        let when_stale = match params.get("stale") {
            None | Some("error") => WhenStale::Refuse,
            Some("forward") => WhenStale::Forward,
            Some(other) => {
                return Err(format!(
                    "stale must be \"error\" or \"forward\", not {other:?}"
                ))
            }
        };
        let freshness = params.duration("freshness");
        if freshness.is_none() && min_index.is_none() {
            return Ok(None);
        }
        Ok(Some(FreshnessBounds {
            freshness,
            min_index,
            wait: params.duration("timeout").unwrap_or(DEFAULT_MIN_INDEX_WAIT),
            when_stale,
        }))
    }
}

/// The choice "serve here, forward, or refuse": `Ok(true)` to answer from this node's own
/// copy, `Ok(false)` to leave it to the leader (forwarded, redirected, or 503 without one),
/// `Err` with the refusal. Without `freshness` or `min_index`, a follower forwards unless
/// `noleader`, and the leader serves. With either, any node serves its own copy when it is
/// fresh enough ([`crate::store::Store::ensure_fresh`]: the leader always is, once it has
/// applied `min_index`); otherwise it refuses (503, naming why) or, with `stale=forward`
/// on a follower, forwards.
async fn where_to_answer(params: &QueryParams, store: &Store) -> Result<bool, HttpResponse> {
    let bounds = match FreshnessBounds::parse(params) {
        Ok(Some(bounds)) => bounds,
        Ok(None) => return Ok(params.has("noleader") || store.is_leader()),
        Err(message) => return Err(text_error(StatusCode::BAD_REQUEST, message)),
    };
    match store
        .ensure_fresh(bounds.freshness, bounds.min_index, bounds.wait)
        .await
    {
        Ok(()) => Ok(true),
        Err(_) if bounds.when_stale == WhenStale::Forward && !store.is_leader() => Ok(false),
        Err(why) => {
            tracing::info!("backup refused: {why}");
            Err(text_error(error_status::not_fresh(&why), why.to_string()))
        }
    }
}

/// The representation a request selects, spelled for its `ETag`: the format and every option
/// that changes the bytes.
fn variant(format: Format, vacuum: bool, tables: Option<&[String]>, gzip_file: bool) -> String {
    let mut v = String::from(match format {
        Format::Binary => "binary",
        Format::Sql => "sql",
    });
    if vacuum {
        v.push_str(";vacuum");
    }
    if let Some(tables) = tables {
        v.push_str(";tables=");
        v.push_str(&tables.join(","));
    }
    if gzip_file {
        v.push_str(";gzip-file");
    }
    v
}

/// The headers that name what a backup answer holds: its index, its entity tag, and that a
/// cache must ask again before reusing it (the tag makes that question cheap).
fn describe(builder: &mut actix_web::HttpResponseBuilder, content: &ContentId, variant: &str) {
    builder.insert_header((RAFT_INDEX_HEADER, content.raft_index().to_string()));
    builder.insert_header((header::ETAG, content.etag(variant)));
    builder.insert_header((header::CACHE_CONTROL, "no-cache"));
}

/// Whether `If-None-Match` names `etag` (or is `*`). The comparison is the weak one RFC 9110
/// prescribes for this header: a `W/` prefix is ignored.
fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// 304: the client's copy is current. No copy is made and nothing is read from the database.
fn not_modified(content: &ContentId, variant: &str) -> HttpResponse {
    let mut builder = HttpResponse::NotModified();
    describe(&mut builder, content, variant);
    builder.finish()
}

/// `HEAD /db/backup`: the headers a `GET` would answer now, without making the backup. A plain
/// binary backup's length is known from the database's page count (one read transaction);
/// compressed, vacuumed and SQL backups have no length before they are made.
async fn head(state: &AppState, format: Format, variant: &str, reshaped: bool) -> HttpResponse {
    let store = &state.store;
    let mut builder = HttpResponse::Ok();
    let (content, len) = match format {
        Format::Binary if !reshaped => match store.backups().binary_head(store.database()).await {
            Ok(head) => head,
            Err(e) => return failed_backup(error_status::backup(&e), e.to_string()),
        },
        _ => (store.applied_content(), None),
    };
    builder.insert_header((
        header::CONTENT_TYPE,
        match format {
            Format::Binary => "application/octet-stream",
            Format::Sql => "application/sql",
        },
    ));
    describe(&mut builder, &content, variant);
    match len {
        Some(len) => builder.body(SizedStream::new(
            len,
            futures_util::stream::empty::<Result<Bytes, io::Error>>(),
        )),
        None => builder.finish(),
    }
}

/// The answer to a backup that cannot run. A 503 (too many copies in progress) says when to
/// come back: copies take seconds, so soon.
fn failed_backup(status: StatusCode, message: String) -> HttpResponse {
    let mut resp = text_error(status, message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    resp
}

const RETRY_AFTER_SECS: &str = "1";

/// gzip (level 1) as a stream: each input chunk is compressed as it arrives, so nothing is
/// buffered beyond the encoder's window. An input error ends the output with that error.
fn gzip(input: crate::store::backup::ByteStream) -> impl Stream<Item = ChunkResult> {
    async_stream::try_stream! {
        let mut input = input;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        while let Some(chunk) = input.next().await {
            enc.write_all(&chunk?)?;
            if !enc.get_ref().is_empty() {
                yield Bytes::from(std::mem::take(enc.get_mut()));
            }
        }
        let rest = enc.finish()?;
        if !rest.is_empty() {
            yield Bytes::from(rest);
        }
    }
}

/// The request headers a forwarded backup carries to the leader (besides credentials).
const FORWARDED_REQUEST_HEADERS: &[&str] =
    &["if-none-match", "if-range", "range", "accept-encoding"];

/// The leader's answer headers a forwarded backup passes back.
const FORWARDED_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "retry-after",
    RAFT_INDEX_HEADER,
    "etag",
    "cache-control",
    "content-encoding",
    "vary",
    "content-range",
    "accept-ranges",
    "repr-digest",
];

/// Streams the leader's answer through, status and headers included, chunk by chunk.
async fn proxy(
    client: &reqwest::Client,
    req: &HttpRequest,
    url: &str,
    leader: &NodeInfo,
) -> HttpResponse {
    // No `.timeout()`: the client has only a connect timeout, and a backup may stream for long.
    let method = if req.method() == actix_web::http::Method::HEAD {
        reqwest::Method::HEAD
    } else {
        reqwest::Method::GET
    };
    let mut out = client.request(method, url).header(FORWARDED_HEADER, "1");
    // The leader decides conditional and partial requests: it knows the content.
    for name in FORWARDED_REQUEST_HEADERS {
        for value in req.headers().get_all(*name) {
            out = out.header(*name, value.as_bytes());
        }
    }
    let out = with_caller_credentials(out, req);
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("forward backup to leader {}: {e}", leader.api_addr);
            return text_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("forward to leader: {e}"),
            );
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    for name in FORWARDED_RESPONSE_HEADERS {
        if let Some(v) = resp.headers().get(*name).and_then(|v| v.to_str().ok()) {
            builder.insert_header((*name, v.to_owned()));
        }
    }
    builder.insert_header(("X-RQLITE-SERVED-BY", leader.raft_addr.clone()));
    // reqwest reports a HEAD answer's length as that of its (empty) body: take the header.
    let len = resp
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if status == StatusCode::NOT_MODIFIED {
        return builder.finish();
    }
    let body = resp.bytes_stream().map(|r| r.map_err(io::Error::other));
    match len {
        Some(len) => builder.body(SizedStream::new(len, body)),
        None => builder.streaming(body),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::store::backup::CHUNK;

    fn chunks(items: Vec<ChunkResult>) -> std::pin::Pin<Box<dyn Stream<Item = ChunkResult>>> {
        Box::pin(futures_util::stream::iter(items))
    }

    #[test]
    fn too_many_copies_says_when_to_retry() {
        let status = error_status::backup(&crate::store::backup::BackupError::TooManyCopies(16));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let resp = failed_backup(status, "busy".into());
        assert_eq!(
            resp.headers().get(header::RETRY_AFTER).unwrap(),
            RETRY_AFTER_SECS
        );
        let resp = failed_backup(StatusCode::INSUFFICIENT_STORAGE, "full".into());
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    }

    #[tokio::test]
    async fn gzip_round_trips_chunk_by_chunk() {
        let input: Vec<ChunkResult> = (0..50u8).map(|i| Ok(Bytes::from(vec![i; CHUNK]))).collect();
        let out: Vec<ChunkResult> = gzip(chunks(input)).collect().await;
        let mut gz = Vec::new();
        for c in out {
            gz.extend_from_slice(&c.expect("chunk"));
        }
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut plain)
            .expect("gunzip");
        assert_eq!(plain.len(), 50 * CHUNK);
        assert!(plain
            .chunks(CHUNK)
            .enumerate()
            .all(|(i, c)| c[0] == i as u8));
    }

    #[tokio::test]
    async fn gzip_passes_a_mid_stream_error_on_and_stops() {
        let input = vec![
            Ok(Bytes::from(vec![7u8; CHUNK])),
            Err(io::Error::other("disk gone")),
            Ok(Bytes::from_static(b"never")),
        ];
        let out: Vec<ChunkResult> = gzip(chunks(input)).collect().await;
        let last = out.last().expect("items");
        assert!(last.is_err(), "the stream must end in the error");
        // Never a clean gzip trailer after an error: the client sees a truncated transfer.
        assert_eq!(out.iter().filter(|c| c.is_err()).count(), 1);
    }
}
