//! `GET /db/backup`: the HTTP face of the backup engine ([`crate::store::backup`], which makes
//! the binary copies and the SQL stream, with their sharing, reserve, priority and caps).
//!
//! This module owns only what is HTTP's: the parameters (`fmt=binary|delete|sql`, `tables`,
//! `vacuum`, `compress`, `noleader`, `redirect`, and raftlite's `freshness`, `min_index`,
//! `timeout`, `stale=error|forward`), the choice between this node's own copy, the leader's
//! and a refusal (`where_to_answer`: a follower serves its own copy only when asked to, by
//! `noleader` or by bounds it meets), forwarding a follower's request to the leader
//! (the leader's stream is proxied chunk by chunk, without buffering and without a total
//! timeout: a large backup may take long; the client's `Accept-Encoding` goes along and the
//! leader's `Content-Encoding` and `Vary` come back, the bytes untouched), and the answer.
//! Compression (`compress`, `compress=zstd`, `Accept-Encoding`) is chosen and applied by
//! [`super::content_coding`].
//!
//! Statuses before the first byte: 503 without `Retry-After` when this node is not fresh
//! enough for `freshness`/`min_index` (`http::error_status::not_fresh`), 400 for malformed
//! bounds, 503 with `Retry-After` when `-max-backup-copies` copies are
//! in progress, 507 when a copy would not fit above `-disk-reserve` (or stopped at it), 500
//! otherwise (`http::error_status::backup`, the one mapping). An error after the first byte ends the
//! body stream with an `Err`, so actix aborts the connection and the client sees a truncated
//! transfer, never a clean short file.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::content_coding;
use super::error_status;
use super::forward::{leader_to_forward_to, leader_url, with_caller_credentials, FORWARDED_HEADER};
use super::params::QueryParams;
use super::response::text_error;
use super::AppState;
use crate::metrics::BackupFormat;
use crate::store::backup::{repr_digest, Backup, ContentId};
use crate::store::{NodeInfo, Store};

pub const RAFT_INDEX_HEADER: &str = "X-Raftlite-Raft-Index";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Binary,
    Sql,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Binary => "application/octet-stream",
            Format::Sql => "application/sql",
        }
    }

    /// `Accept-Ranges`: only a binary backup sent as it is (a kept copy's bytes) has ranges.
    fn accept_ranges(self, coded: bool) -> &'static str {
        if self == Format::Binary && !coded {
            "bytes"
        } else {
            "none"
        }
    }

    fn metric(self) -> BackupFormat {
        match self {
            Format::Binary => BackupFormat::Binary,
            Format::Sql => BackupFormat::Sql,
        }
    }
}

pub async fn backup(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let mut resp = serve_backup(&req, &params, &state, None).await;
    // Every answer, coded or not, may differ with Accept-Encoding.
    content_coding::set_vary(&mut resp);
    resp
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

    // The console's download is never content-coded: the browser would undo it, and its
    // progress counts the bytes of a total that only an identity answer has.
    let may_code = leader_query.is_none();
    let encoding = match content_coding::negotiate(req, params, may_code) {
        Ok(e) => e,
        Err(refusal) => return *refusal,
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
                let accept_encoding = may_code
                    .then(|| content_coding::accept_encoding_fields(req).join(", "))
                    .filter(|v| !v.is_empty());
                proxy(&state.forward_client, req, &url, &l, accept_encoding).await
            }
            Err(answer) => *answer,
        };
    }

    let tracker = store.metrics().backup(format.metric());
    let tables = params.get("tables").map(|t| {
        t.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    });
    let variant = variant(format, params.has("vacuum"), tables.as_deref(), encoding);
    // What a backup made now would hold: a client that has it already gets a 304 without a
    // copy being made (the content only changes when an entry is applied).
    let current = store.applied_content();
    if if_none_match(req, &current.etag(&variant)) {
        tracker.not_modified();
        return not_modified(&current, &variant);
    }
    let backups = store.backups();
    // A coded body (a compressed file or a content coding) has no ranges and no digest.
    let compress = encoding.coding().is_some();
    if req.method() == actix_web::http::Method::HEAD {
        return head(
            req,
            state,
            format,
            &variant,
            encoding,
            params.has("vacuum"),
            tables,
        )
        .await;
    }
    let mut status = StatusCode::OK;
    let mut headers: Vec<(&'static str, String)> =
        vec![("accept-ranges", format.accept_ranges(compress).to_owned())];
    let answer = match format {
        Format::Binary => {
            let vacuum = params.has("vacuum");
            let range = if compress { None } else { requested_range(req) };
            select_binary(req, state, &variant, vacuum, range, true)
                .await
                .map(|selected| {
                    if let Some(digest) = selected.digest {
                        if !compress {
                            headers.push(("repr-digest", repr_digest(&digest)));
                        }
                    }
                    if let Some(content_range) = selected.content_range {
                        status = StatusCode::PARTIAL_CONTENT;
                        headers.push(("content-range", content_range));
                    }
                    selected.backup
                })
        }
        Format::Sql => backups
            .sql(store.database(), tables)
            .await
            .map_err(|e| (error_status::backup(&e), e.to_string())),
    };
    let prepared = match answer {
        Ok(p) => p,
        Err((StatusCode::RANGE_NOT_SATISFIABLE, content_range)) => {
            return HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, content_range))
                .finish();
        }
        Err((status, message)) => {
            tracing::warn!("backup failed: {message}");
            tracker.refused(status);
            return failed_backup(status, message);
        }
    };
    let content_type = format.content_type();
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
    let mut builder = HttpResponse::build(status);
    builder.insert_header((header::CONTENT_TYPE, content_type));
    describe(&mut builder, &prepared.content, &variant);
    for (name, value) in headers {
        builder.insert_header((name, value));
    }
    content_coding::set_headers(&mut builder, encoding);
    match (encoding.coding(), prepared.len) {
        (Some(coding), _) => builder.streaming(content_coding::encode(prepared.body, coding)),
        (None, Some(len)) => builder.body(SizedStream::new(len, prepared.body)),
        (None, None) => builder.streaming(prepared.body),
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

/// The longest a backup waits for `min_index`, whatever `timeout` says: a client may not hold a
/// request (and its polling) open for longer.
const MAX_MIN_INDEX_WAIT: Duration = Duration::from_secs(300);

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
            wait: params
                .duration("timeout")
                .unwrap_or(DEFAULT_MIN_INDEX_WAIT)
                .min(MAX_MIN_INDEX_WAIT),
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
fn variant(
    format: Format,
    vacuum: bool,
    tables: Option<&[String]>,
    encoding: content_coding::Encoding,
) -> String {
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
    // A compressed file and a content coding are other bytes: other tags.
    match encoding {
        content_coding::Encoding::Identity => {}
        content_coding::Encoding::File(c) => {
            v.push(';');
            v.push_str(c.token());
            v.push_str("-file");
        }
        content_coding::Encoding::Content(c) => {
            v.push_str(";content-coding=");
            v.push_str(c.token());
        }
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
/// compressed, vacuumed and SQL backups have no length before they are made. With
/// `Want-Repr-Digest` (RFC 9530) a binary backup is made (or a kept copy used) and hashed, so
/// the answer carries its length and `Repr-Digest`: how a client checks a file it downloaded.
async fn head(
    req: &HttpRequest,
    state: &AppState,
    format: Format,
    variant: &str,
    encoding: content_coding::Encoding,
    vacuum: bool,
    tables: Option<Vec<String>>,
) -> HttpResponse {
    let compress = encoding.coding().is_some();
    let store = &state.store;
    let mut builder = HttpResponse::Ok();
    builder.insert_header((header::CONTENT_TYPE, format.content_type()));
    builder.insert_header((header::ACCEPT_RANGES, format.accept_ranges(compress)));
    let wants_digest = req.headers().contains_key("want-repr-digest");
    let (content, len) = match format {
        Format::Binary if wants_digest && !compress => {
            let selected = match select_binary(req, state, variant, vacuum, None, false).await {
                Ok(s) => s,
                Err((status, message)) => return failed_backup(status, message),
            };
            let Some(copy) = selected.copy else {
                return failed_backup(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the backup was not made from a copy".into(),
                );
            };
            match copy.digest().await {
                Ok(d) => builder.insert_header(("repr-digest", repr_digest(&d))),
                Err(e) => return failed_backup(error_status::backup(&e), e.to_string()),
            };
            (copy.info.content.clone(), Some(copy.info.len))
        }
        // A SQL dump or a compressed body is not kept: the node makes it as a GET would and
        // hashes it (the same content makes the same bytes), at the cost of one backup.
        _ if wants_digest => {
            let made = match format {
                Format::Binary => select_binary(req, state, variant, vacuum, None, false)
                    .await
                    .map(|s| s.backup),
                Format::Sql => store
                    .backups()
                    .sql(store.database(), tables)
                    .await
                    .map_err(|e| (error_status::backup(&e), e.to_string())),
            };
            let backup = match made {
                Ok(b) => b,
                Err((status, message)) => return failed_backup(status, message),
            };
            let body = match encoding.coding() {
                Some(coding) => content_coding::encode(backup.body, coding),
                None => backup.body,
            };
            match sha256_of(body).await {
                Ok(d) => builder.insert_header(("repr-digest", repr_digest(&d))),
                Err(e) => return failed_backup(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            (backup.content, None)
        }
        Format::Binary if !vacuum && !compress => {
            match store.backups().binary_head(store.database()).await {
                Ok(head) => head,
                Err(e) => return failed_backup(error_status::backup(&e), e.to_string()),
            }
        }
        _ => (store.applied_content(), None),
    };
    describe(&mut builder, &content, variant);
    content_coding::set_headers(&mut builder, encoding);
    match len {
        Some(len) => builder.body(SizedStream::new(
            len,
            futures_util::stream::empty::<Result<Bytes, io::Error>>(),
        )),
        // No length is known: no Content-Length at all (not 0, which would be a claim).
        None => builder.body(actix_web::body::None::new()),
    }
}

/// The SHA-256 of a whole backup body (read to its end, chunk by chunk).
async fn sha256_of(mut body: crate::store::backup::ByteStream) -> io::Result<[u8; 32]> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    while let Some(chunk) = body.next().await {
        hasher.update(&chunk?);
    }
    Ok(hasher.finalize().into())
}

/// A binary backup chosen for a request, with what its answer says about it.
struct SelectedBinary {
    backup: Backup,
    /// The copy, for a `HEAD` that hashes it (its stream is `backup.body`); none for a
    /// backup streamed straight from the database (`Backups::binary_direct`).
    copy: Option<crate::store::backup::BinaryBackup>,
    digest: Option<[u8; 32]>,
    /// `Content-Range` of a partial answer (206).
    content_range: Option<String>,
}

/// Chooses the copy a binary backup request reads and the part of it. With `Range` and an
/// `If-Range` entity tag, the copy that tag names, if this node still has it: the rest of a
/// broken download, byte-exact. Otherwise (no such copy, or no `If-Range`) the copy a plain
/// `GET` gets, whole when `If-Range` named another (RFC 9110 §13.1.5), else the range of it.
/// An unsatisfiable range is `Err((416, "bytes */LEN"))`. With `direct_ok`, a whole plain
/// backup on a node that keeps no copies is streamed straight from the database
/// (`Backups::binary_direct`).
async fn select_binary(
    req: &HttpRequest,
    state: &AppState,
    variant: &str,
    vacuum: bool,
    range: Option<ByteRange>,
    direct_ok: bool,
) -> Result<SelectedBinary, (StatusCode, String)> {
    let store = &state.store;
    let backups = store.backups();
    let if_range = req
        .headers()
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let kept = match (range, if_range) {
        (Some(_), Some(tag)) => {
            backups.kept_binary(|info, v| v == vacuum && info.content.etag(variant) == tag)
        }
        _ => None,
    };
    let range = match (range, if_range, &kept) {
        (Some(r), None, _) | (Some(r), Some(_), Some(_)) => Some(r),
        _ => None,
    };
    if kept.is_none() && range.is_none() && !vacuum && direct_ok && backups.streams_direct() {
        let direct = backups
            .binary_direct(store.database())
            .await
            .map_err(|e| (error_status::backup(&e), e.to_string()))?;
        if let Some(backup) = direct {
            return Ok(SelectedBinary {
                backup,
                copy: None,
                digest: None,
                content_range: None,
            });
        }
    }
    let copy = match kept {
        Some(copy) => copy,
        None => backups
            .binary(store.database(), store.applied_index(), vacuum)
            .await
            .map_err(|e| (error_status::backup(&e), e.to_string()))?,
    };
    let len = copy.info.len;
    let part = match range.map(|r| r.resolve(len)) {
        None => None,
        Some(Some(part)) => Some(part),
        Some(None) => return Err((StatusCode::RANGE_NOT_SATISFIABLE, format!("bytes */{len}"))),
    };
    let digest = copy.known_digest();
    let content = copy.info.content.clone();
    let body = copy
        .clone()
        .stream(part)
        .await
        .map_err(|e| (error_status::backup(&e), e.to_string()))?;
    Ok(SelectedBinary {
        backup: Backup {
            content,
            len: Some(part.map_or(len, |(a, b)| b - a)),
            body,
        },
        copy: Some(copy),
        digest,
        content_range: part.map(|(a, b)| format!("bytes {a}-{}/{len}", b - 1)),
    })
}

/// One byte range a request asked for (RFC 9110 §14.1.2), before the length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// `bytes=A-` or `bytes=A-B` (B inclusive).
    From(u64, Option<u64>),
    /// `bytes=-N`: the last N bytes.
    Last(u64),
}

impl ByteRange {
    /// `[start, end)` within `len` bytes, or `None` when unsatisfiable.
    fn resolve(self, len: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From(a, _) if a >= len => None,
            // `b` may be any u64: clamp before adding one (no overflow at u64::MAX).
            ByteRange::From(a, b) => Some((a, b.map_or(len, |b| b.min(len - 1) + 1))),
            ByteRange::Last(0) => None,
            ByteRange::Last(n) => Some((len.saturating_sub(n), len)),
        }
    }
}

/// The request's `Range`, when it is one range of bytes. Several ranges, other units and
/// malformed values are ignored (the whole backup is sent), as RFC 9110 allows.
fn requested_range(req: &HttpRequest) -> Option<ByteRange> {
    let value = req.headers().get(header::RANGE)?.to_str().ok()?;
    parse_range(value)
}

fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if first.is_empty() {
        return number(last).map(ByteRange::Last);
    }
    let a = number(first)?;
    if last.is_empty() {
        return Some(ByteRange::From(a, None));
    }
    let b = number(last)?;
    (b >= a).then_some(ByteRange::From(a, Some(b)))
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

/// The request headers a forwarded backup carries to the leader (besides credentials and
/// `Accept-Encoding`, which [`proxy`] sets itself).
const FORWARDED_REQUEST_HEADERS: &[&str] =
    &["if-none-match", "if-range", "range", "want-repr-digest"];

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
/// `accept_encoding`: the client's, sent on to the leader, which chooses the coding; the
/// forwarding client never decodes (`node.rs` builds it with every `no_*` decoder), so the
/// coded bytes and their `Content-Encoding` reach the client as the leader sent them.
async fn proxy(
    client: &reqwest::Client,
    req: &HttpRequest,
    url: &str,
    leader: &NodeInfo,
    accept_encoding: Option<String>,
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
    // Always set, so that no HTTP client feature could add one of its own and then decode.
    out = out.header(
        reqwest::header::ACCEPT_ENCODING,
        accept_encoding.unwrap_or_else(|| "identity".into()),
    );
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
    use super::*;

    #[test]
    fn ranges_parse_and_resolve_as_rfc_9110_says() {
        use ByteRange::{From, Last};
        assert_eq!(parse_range("bytes=0-99"), Some(From(0, Some(99))));
        assert_eq!(parse_range("bytes= 100-"), Some(From(100, None)));
        assert_eq!(parse_range("bytes=-500"), Some(Last(500)));
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "0-1",
        ] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
        assert_eq!(From(0, Some(99)).resolve(50), Some((0, 50)));
        assert_eq!(From(10, None).resolve(50), Some((10, 50)));
        assert_eq!(From(50, None).resolve(50), None);
        assert_eq!(Last(10).resolve(50), Some((40, 50)));
        assert_eq!(Last(100).resolve(50), Some((0, 50)));
        assert_eq!(Last(0).resolve(50), None);
        // The largest last-byte-pos: clamped, no overflow.
        let huge = parse_range("bytes=0-18446744073709551615").unwrap();
        assert_eq!(huge.resolve(50), Some((0, 50)));
        let tail = parse_range("bytes=10-18446744073709551615").unwrap();
        assert_eq!(tail.resolve(50), Some((10, 50)));
    }

    #[test]
    fn a_min_index_wait_is_capped_whatever_the_timeout() {
        let params = QueryParams::parse("min_index=5&timeout=1000h");
        let bounds = FreshnessBounds::parse(&params).unwrap().unwrap();
        assert_eq!(bounds.wait, MAX_MIN_INDEX_WAIT);
        let params = QueryParams::parse("min_index=5&timeout=2s");
        let bounds = FreshnessBounds::parse(&params).unwrap().unwrap();
        assert_eq!(bounds.wait, Duration::from_secs(2));
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
}
