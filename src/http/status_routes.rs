//! `/status`, `/metrics`, `/readyz`, `/nodes` and `/leader`: what operators and orchestration
//! read. `/metrics` is Prometheus's (see [`crate::metrics`]): this node's own numbers, never
//! forwarded to the leader.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::json::indent;
use super::params::QueryParams;
use super::response::{empty, json as json_response, text_error};
use super::AppState;
use crate::store::NodeInfo;

pub async fn status(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let mut doc = status_document(&state).await;
    if params.has("digest") {
        // On demand only: it reads the whole database (on a read connection).
        doc["store"]["db_digest"] = match state.store.content_digest().await {
            Ok((applied_index, d)) => json!({
                "applied_index": applied_index,
                "digest": d.digest,
                "tables": d.tables,
                "rows": d.rows,
            }),
            Err(e) => json!({ "error": e.to_string() }),
        };
    }
    if let Some(key) = params.get("key") {
        doc = key
            .split('.')
            .try_fold(doc, |v, k| v.get(k).cloned())
            .unwrap_or_else(|| json!({}));
    }
    json_response(StatusCode::OK, render(&doc, params.has("pretty")))
}

/// `GET /metrics`: this node's metrics in the OpenMetrics text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let store = &state.store;
    let mut reading = store.metrics_reading();
    state.uploader.add_to(&mut reading);
    state.archiver.add_to(&mut reading);
    match store.metrics().render(reading) {
        Ok(text) => HttpResponse::Ok()
            .insert_header((
                actix_web::http::header::CONTENT_TYPE,
                crate::metrics::CONTENT_TYPE,
            ))
            .body(text),
        Err(e) => text_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encode the metrics: {e}"),
        ),
    }
}

/// serde_json output with Go's HTML-safe escaping, and Go's indentation for `pretty`.
fn render(doc: &Value, pretty: bool) -> String {
    let compact = serde_json::to_string(doc)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    if pretty {
        indent(&compact, "    ")
    } else {
        compact
    }
}

async fn status_document(state: &AppState) -> Value {
    let mut doc = status_fields(state).await;
    // rqlite puts it at the top level, and only once a backup was served.
    if let Some(t) = state.store.counters.last_backup_time.lock().clone() {
        doc["last_backup_time"] = Value::String(t);
    }
    if let Some(d) = &state.discovery {
        doc["disco"] = d.status();
    }
    if let Some(c) = &state.cdc {
        doc["cdc"] = crate::cdc::status(&c.config, &c.queue, &c.stats);
    }
    if let Some(interval) = state.auto_vacuum {
        let started = crate::store::housekeeping::unix_ms()
            .saturating_sub(state.started.elapsed().as_millis() as u64);
        doc["store"]["auto_vacuum"] =
            crate::store::housekeeping::vacuum_status(&state.store, interval, started);
    }
    doc
}

/// How long `/status` waits for the writer thread before showing its last known settings.
const WRITER_PRAGMAS_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

async fn status_fields(state: &AppState) -> Value {
    let store = &state.store;
    let node = store.node();
    let db = store.database();
    let db_path = db.path().to_path_buf();
    let file_size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let wal_path = {
        let mut s = db_path.clone().into_os_string();
        s.push("-wal");
        std::path::PathBuf::from(s)
    };
    // The writer runs one job at a time, and one may take long (a 1 GiB SQL load ran for
    // 40 s, a snapshot's fsync for seconds): /status waited behind it, so monitoring and the
    // bench's "applied?" polls hung. It waits briefly, then shows the settings last read.
    let rw = match tokio::time::timeout(
        WRITER_PRAGMAS_WAIT,
        db.with_writer(|c| crate::db::settings::pragmas(c)),
    )
    .await
    {
        Ok(Ok(v)) => {
            *state.writer_pragmas.lock() = v.clone();
            v
        }
        _ => state.writer_pragmas.lock().clone(),
    };
    let ro = db
        .with_reader(crate::db::settings::pragmas)
        .await
        .unwrap_or(Value::Null);
    let applied = store.applied_index();
    let leader = store.leader();
    let metrics = store.raft().metrics().borrow().clone();
    let raft_state = match metrics.state {
        openraft::ServerState::Leader => "Leader",
        openraft::ServerState::Candidate => "Candidate",
        openraft::ServerState::Learner | openraft::ServerState::Follower => "Follower",
        openraft::ServerState::Shutdown => "Shutdown",
    };
    let shared = store.shared();
    let (copies_made, copies_shared) = store.backups().copies_made_and_shared();
    let uptime = state.started.elapsed();
    // rqlite's `dir` and `names`; the `digest` every member must share (`crate::extensions`).
    let settings = store.database().settings();
    let extensions = json!({
        "dir": store.data_dir().join("extensions").display().to_string(),
        "names": settings
            .extensions
            .iter()
            .map(|f| f.file_name().unwrap_or_default().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        "digest": settings.extensions_digest,
    });
    json!({
        "build": {
            "version": crate::VERSION,
            "compiler": "rustc",
            "sqlite_version": raftlite_ffi::sqlite_version(),
        },
        "extensions": extensions,
        "http": {
            "bind_addr": state.http_bind_addr,
            "auth": "disabled",
        },
        "node": {
            "start_time": state.start_time_rfc3339,
            "current_time": crate::http::json::rfc3339_from_unix(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64),
            ),
            "uptime": format!("{:.3}s", uptime.as_secs_f64()),
        },
        "store": {
            "open": true,
            "ready": true,
            "node_id": node.id,
            "addr": node.raft_addr,
            "dir": state.data_dir,
            "leader": {
                "node_id": leader.as_ref().map(|l| l.id.clone()).unwrap_or_default(),
                "addr": leader.as_ref().map(|l| l.raft_addr.clone()).unwrap_or_default(),
            },
            "raft": {
                "state": raft_state,
                "voter": store.is_voter(),
                "term": metrics.current_term,
                "applied_index": metrics.last_applied.map_or(0, |l| l.index),
                "commit_index": metrics.last_applied.map_or(0, |l| l.index).max(applied),
                "last_log_index": metrics.last_log_index.unwrap_or(0),
                "last_snapshot_index": metrics.snapshot.map_or(0, |l| l.index),
                "purged_index": metrics.purged.map_or(0, |l| l.index),
                "fsm_pending": metrics.last_log_index.unwrap_or(0).saturating_sub(applied),
                "num_peers": store.members().len().saturating_sub(1),
            },
            "num_snapshots": shared.num_snapshots.load(std::sync::atomic::Ordering::Relaxed),
            "num_restores": shared.num_restores.load(std::sync::atomic::Ordering::Relaxed),
            "num_loads": shared.num_loads.load(std::sync::atomic::Ordering::Relaxed),
            "num_backups": store.counters.backups.load(std::sync::atomic::Ordering::Relaxed),
            "last_backup_time": store.counters.last_backup_time.lock().clone(),
            // Binary backup copies made, and requests served by a copy another one made:
            // concurrent requests of one index share a copy.
            "backup_copies": {
                "made": copies_made,
                "shared": copies_shared,
                "kept_bytes": store.backups().kept_bytes(),
                "tmp_dir": state.store.backups().tmp_dir().display().to_string(),
            },
            "db_applied_index": applied,
            "fsm_index": applied,
            "sqlite3": {
                "path": db_path,
                "version": raftlite_ffi::sqlite_version(),
                "db_size": file_size(&db_path),
                "size": file_size(&db_path),
                "wal_size": file_size(&wal_path),
                "pragmas": { "rw": rw, "ro": ro },
            },
        },
    })
}

pub async fn readyz(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let plain = |status: StatusCode, body: String| {
        HttpResponse::build(status)
            .content_type("text/plain; charset=utf-8")
            .body(body)
    };
    if params.has("noleader") {
        return plain(StatusCode::OK, "[+]node ok".into());
    }
    let mut body = String::from("[+]node ok");
    let leader = state.store.leader();
    let leader_ok = match &leader {
        Some(l) if l.id == state.store.node().id => state.store.is_leader(),
        Some(_) => true,
        None => false,
    };
    if !leader_ok {
        body.push_str("\n[+]leader does not exist");
        return plain(StatusCode::SERVICE_UNAVAILABLE, body);
    }
    body.push_str("\n[+]leader ok\n[+]store ok");
    let db_check = state
        .store
        .database()
        .with_reader(|c| c.query_i64("SELECT 1"))
        .await;
    match db_check {
        Ok(Ok(Some(1))) => body.push_str("\n[+]db ok"),
        Ok(Err(e)) => {
            body.push_str(&format!("\n[+]db not ok: {e}"));
            return plain(StatusCode::SERVICE_UNAVAILABLE, body);
        }
        other => {
            body.push_str(&format!("\n[+]db not ok: {other:?}"));
            return plain(StatusCode::SERVICE_UNAVAILABLE, body);
        }
    }
    if params.has("sync") {
        let timeout = params
            .duration("timeout")
            .unwrap_or(std::time::Duration::from_secs(30));
        if !caught_up_with_leader(&state, leader.as_ref(), timeout).await {
            body.push_str("\n[+]sync timeout");
            return plain(StatusCode::SERVICE_UNAVAILABLE, body);
        }
        body.push_str("\n[+]sync ok");
    }
    plain(StatusCode::OK, body)
}

/// `/readyz?sync`: waits (up to `timeout`) until this node has applied everything the leader
/// had applied when the request arrived. The leader is always caught up with itself.
async fn caught_up_with_leader(
    state: &AppState,
    leader: Option<&NodeInfo>,
    timeout: std::time::Duration,
) -> bool {
    let store = &state.store;
    let Some(leader) = leader.filter(|_| !store.is_leader()) else {
        return true;
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let report = state
        .forward_client
        .get(format!("http://{}/cluster/node", leader.raft_addr))
        .timeout(timeout)
        .send()
        .await;
    let target = match report {
        Ok(r) => match r
            .bytes()
            .await
            .map(|b| serde_json::from_slice::<crate::store::NodeReport>(&b))
        {
            Ok(Ok(report)) => report.applied_index,
            _ => return false,
        },
        Err(_) => return false,
    };
    loop {
        if store.applied_index() >= target {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// What probing a node over its Raft port found.
struct Probe {
    reachable: bool,
    version: String,
    seconds: f64,
    error: Option<String>,
}

fn node_object(
    n: &NodeInfo,
    voter: bool,
    leader: Option<&NodeInfo>,
    probe: &Probe,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), n.id.clone().into());
    m.insert("api_addr".into(), n.api_url().into());
    m.insert("addr".into(), n.raft_addr.clone().into());
    m.insert("version".into(), probe.version.clone().into());
    m.insert("voter".into(), voter.into());
    m.insert("reachable".into(), probe.reachable.into());
    m.insert("leader".into(), leader.is_some_and(|l| l.id == n.id).into());
    m.insert("time".into(), json!(probe.seconds));
    m.insert(
        "time_s".into(),
        crate::flags::format_go_duration(std::time::Duration::from_secs_f64(probe.seconds)).into(),
    );
    if let Some(e) = &probe.error {
        m.insert("error".into(), e.clone().into());
    }
    m
}

async fn probe(state: &AppState, n: &NodeInfo, timeout: std::time::Duration) -> Probe {
    let started = std::time::Instant::now();
    if n.id == state.store.node().id {
        return Probe {
            reachable: true,
            version: crate::VERSION.into(),
            seconds: 0.0,
            error: None,
        };
    }
    let url = crate::tls::node().url(&n.raft_addr, "/cluster/node");
    let result = state.node_client.get(url).timeout(timeout).send().await;
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(r) if r.status().is_success() => {
            match r.bytes().await.map_err(|e| e.to_string()).and_then(|b| {
                serde_json::from_slice::<crate::store::NodeReport>(&b).map_err(|e| e.to_string())
            }) {
                Ok(report) => Probe {
                    reachable: true,
                    version: report.version,
                    seconds,
                    error: None,
                },
                Err(e) => Probe {
                    reachable: false,
                    version: String::new(),
                    seconds,
                    error: Some(e.to_string()),
                },
            }
        }
        Ok(r) => Probe {
            reachable: false,
            version: String::new(),
            seconds,
            error: Some(format!("HTTP {}", r.status())),
        },
        Err(e) => Probe {
            reachable: false,
            version: String::new(),
            seconds,
            error: Some(e.to_string()),
        },
    }
}

pub async fn nodes(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let leader = state.store.leader();
    let voters = state.store.voter_ids();
    let timeout = params
        .duration("timeout")
        .unwrap_or(std::time::Duration::from_secs(5));
    let mut objects = Vec::new();
    for (id, n) in state.store.members() {
        let voter = voters.contains(&id);
        if !voter && !params.has("nonvoters") {
            continue;
        }
        let n = if n.id == state.store.node().id {
            state.store.node().clone()
        } else {
            n
        };
        let p = probe(&state, &n, timeout).await;
        objects.push((n.id.clone(), node_object(&n, voter, leader.as_ref(), &p)));
    }
    objects.sort_by(|a, b| a.0.cmp(&b.0));
    let doc = if params.get("ver") == Some("2") {
        json!({ "nodes": objects.into_iter().map(|(_, o)| Value::Object(o)).collect::<Vec<_>>() })
    } else {
        Value::Object(
            objects
                .into_iter()
                .map(|(id, o)| (id, Value::Object(o)))
                .collect(),
        )
    };
    json_response(StatusCode::OK, render(&doc, params.has("pretty")))
}

pub async fn leader_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    match state.store.leader() {
        Some(l) => {
            let p = probe(&state, &l, std::time::Duration::from_secs(5)).await;
            let doc = Value::Object(node_object(&l, true, Some(&l), &p));
            json_response(StatusCode::OK, render(&doc, params.has("pretty")))
        }
        None => text_error(StatusCode::SERVICE_UNAVAILABLE, "leader not found"),
    }
}

pub async fn options() -> HttpResponse {
    empty(StatusCode::OK)
}
