//! The JSON shape every error answer shares:
//! `{"error": {"code", "message", "request_id"}}`.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::config::HttpSettings;

/// An error answer with a stable `code`, a sentence for people, and the
/// request's id (the one in its log line) when there is one.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let mut error = json!({"code": code, "message": message.into()});
    if let Some(id) = crate::request_log::current() {
        error["request_id"] = id.into();
    }
    (status, Json(json!({ "error": error }))).into_response()
}

/// Answer for routes that do not exist.
pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// Answer for a route that exists but not with this method.
pub async fn method_not_allowed() -> Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
}

/// The 414 or 431 for a request target or head larger than the settings
/// allow, in the usual error shape; `None` lets the request through. (hyper's
/// own buffer is sized above these limits, so its bare 431 is only for heads
/// far beyond them.)
pub fn head_refusal(settings: &HttpSettings, request: &Request) -> Option<Response> {
    let target = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > settings.max_uri_bytes {
        return Some(error_response(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is longer than {} bytes", settings.max_uri_bytes),
        ));
    }
    let head: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if head > settings.max_header_bytes {
        return Some(error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request headers are larger than {} bytes", settings.max_header_bytes),
        ));
    }
    None
}

/// Every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable code (`unauthorized`, `too_large`, `invalid_json`, …).
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// The request's id, as in `X-Request-Id` and the log.
    pub request_id: Option<String>,
    /// For a body that was not JSON: the event error that keeps it.
    pub recorded_as: Option<uuid::Uuid>,
}
