//! `/status`, `/readyz`, `/nodes` and `/leader`: what operators and orchestration read.

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
    if let Some(key) = params.get("key") {
        doc = key
            .split('.')
            .try_fold(doc, |v, k| v.get(k).cloned())
            .unwrap_or_else(|| json!({}));
    }
    json_response(StatusCode::OK, render(&doc, params.has("pretty")))
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
    let rw = db
        .with_writer(|c| crate::db::settings::pragmas(c))
        .await
        .unwrap_or(Value::Null);
    let ro = db
        .with_reader(crate::db::settings::pragmas)
        .await
        .unwrap_or(Value::Null);
    let applied = store.applied_index();
    let leader = store.leader();
    let uptime = state.started.elapsed();
    json!({
        "build": {
            "version": crate::VERSION,
            "compiler": "rustc",
            "sqlite_version": raftlite_ffi::sqlite_version(),
        },
        "http": {
            "bind_addr": state.http_bind_addr,
            "auth": "disabled",
        },
        "node": {
            "start_time": state.start_time_rfc3339,
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
                "state": if store.is_leader() { "Leader" } else { "Follower" },
                "voter": node.voter,
                "applied_index": applied,
                "commit_index": applied,
                "last_log_index": applied,
                "last_snapshot_index": 0,
                "fsm_pending": 0,
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
    if state.store.leader().is_none() {
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
        body.push_str("\n[+]sync ok");
    }
    plain(StatusCode::OK, body)
}

fn node_object(n: &NodeInfo, leader: Option<&NodeInfo>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), n.id.clone().into());
    m.insert("api_addr".into(), n.api_url().into());
    m.insert("addr".into(), n.raft_addr.clone().into());
    m.insert("version".into(), crate::VERSION.into());
    m.insert("voter".into(), n.voter.into());
    m.insert("reachable".into(), true.into());
    m.insert("leader".into(), leader.is_some_and(|l| l.id == n.id).into());
    m.insert("time".into(), json!(0.0));
    m.insert("time_s".into(), "0s".into());
    m
}

pub async fn nodes(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let leader = state.store.leader();
    let members = vec![state.store.node().clone()];
    let members: Vec<_> = members
        .into_iter()
        .filter(|n| n.voter || params.has("nonvoters"))
        .collect();
    let doc = if params.get("ver") == Some("2") {
        let mut list: Vec<_> = members
            .iter()
            .map(|n| Value::Object(node_object(n, leader.as_ref())))
            .collect();
        list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        json!({ "nodes": list })
    } else {
        Value::Object(
            members
                .iter()
                .map(|n| (n.id.clone(), Value::Object(node_object(n, leader.as_ref()))))
                .collect(),
        )
    };
    json_response(StatusCode::OK, render(&doc, params.has("pretty")))
}

pub async fn leader_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    match state.store.leader() {
        Some(l) => {
            let doc = Value::Object(node_object(&l, Some(&l)));
            json_response(StatusCode::OK, render(&doc, params.has("pretty")))
        }
        None => text_error(StatusCode::SERVICE_UNAVAILABLE, "leader not found"),
    }
}

pub async fn leader_post(state: web::Data<AppState>) -> HttpResponse {
    // A single node has no other voter to hand leadership to; stepping down would only leave
    // the cluster without a leader, so the request is refused.
    let _ = state;
    text_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "cannot step down: no other voter in the cluster",
    )
}

pub async fn options() -> HttpResponse {
    empty(StatusCode::OK)
}
