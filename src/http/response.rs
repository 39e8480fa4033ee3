//! Building HTTP answers the way rqlite shapes them: JSON with its content type, plain-text
//! errors in Go's `http.Error` style, and empty bodies for 401/404/405.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// A plain-text error with a trailing newline, `nosniff`, as Go's `http.Error` writes it.
pub fn text_error(status: StatusCode, message: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(format!("{message}\n"))
}

pub fn json(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, JSON_CONTENT_TYPE))
        .body(body)
}

pub fn empty(status: StatusCode) -> HttpResponse {
    HttpResponse::build(status).finish()
}

pub async fn method_not_allowed() -> HttpResponse {
    empty(StatusCode::METHOD_NOT_ALLOWED)
}

pub async fn not_found() -> HttpResponse {
    empty(StatusCode::NOT_FOUND)
}
