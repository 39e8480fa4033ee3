//! `DELETE /remove`: take a node out of the cluster (on the leader; followers forward).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::db_routes::read_body;
use super::forward::answer_not_leader;
use super::params::QueryParams;
use super::response::{empty, text_error};
use super::AppState;
use crate::cluster::membership::{handle_remove, MembershipAnswer};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveBody {
    id: String,
}

pub async fn remove(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let params = QueryParams::parse(req.query_string());
    let body = match read_body(&req, payload, 64 * 1024).await {
        Ok(b) => b.freeze(),
        Err(resp) => return resp,
    };
    let Ok(RemoveBody { id }) = serde_json::from_slice::<RemoveBody>(&body) else {
        return text_error(
            StatusCode::BAD_REQUEST,
            "invalid remove request: want {\"id\":\"<node id>\"}",
        );
    };
    match handle_remove(&state.store, &id).await {
        MembershipAnswer::Ok | MembershipAnswer::Unchanged => empty(StatusCode::OK),
        MembershipAnswer::NotFound => {
            text_error(StatusCode::NOT_FOUND, format!("node {id} not found"))
        }
        MembershipAnswer::Refused(why) => text_error(StatusCode::INTERNAL_SERVER_ERROR, why),
        MembershipAnswer::NotLeader { leader } => {
            answer_not_leader(&state.forward_client, &req, &params, body, leader.as_ref()).await
        }
    }
}
