//! `GET /console/api/cluster`: what the console's Cluster tab shows per member that `/nodes`
//! does not carry (its shape is rqlite's): each member's applied index and the last time it
//! served a backup, read from the member's own `GET /cluster/node` on its Raft port, probed
//! concurrently with a short timeout. Answer: `{"nodes":[{"id","applied_index",
//! "last_backup_time","reachable","error"}]}`, sorted by id; an unreachable member has
//! `reachable:false`, `error` and null values.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::response::json as json_response;
use super::AppState;
use crate::store::NodeReport;

/// How long one member's probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn cluster(state: web::Data<AppState>) -> HttpResponse {
    let store = &state.store;
    let me = store.node().id.clone();
    let probes = store.members().into_values().map(|n| {
        let state = state.clone();
        let me = me.clone();
        async move {
            if n.id == me {
                return json!({
                    "id": n.id,
                    "applied_index": state.store.applied_index(),
                    "last_backup_time": state.store.counters.last_backup_time.lock().clone(),
                    "reachable": true,
                    "error": null,
                });
            }
            let url = format!("http://{}/cluster/node", n.raft_addr);
            let report = async {
                let r = state
                    .forward_client
                    .get(url)
                    .timeout(PROBE_TIMEOUT)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("HTTP {}", r.status()));
                }
                let body = r.bytes().await.map_err(|e| e.to_string())?;
                serde_json::from_slice::<NodeReport>(&body).map_err(|e| e.to_string())
            }
            .await;
            match report {
                Ok(r) => json!({
                    "id": n.id,
                    "applied_index": r.applied_index,
                    "last_backup_time": r.last_backup_time,
                    "reachable": true,
                    "error": null,
                }),
                Err(e) => json!({
                    "id": n.id,
                    "applied_index": null,
                    "last_backup_time": null,
                    "reachable": false,
                    "error": e,
                }),
            }
        }
    });
    let mut nodes: Vec<Value> = futures_util::future::join_all(probes).await;
    nodes.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    json_response(StatusCode::OK, json!({ "nodes": nodes }).to_string())
}
