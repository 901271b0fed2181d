//! The read side: events and event errors as JSON, behind a bearer token.

pub mod auth;
pub mod data;
pub mod health;
pub mod metrics;
pub mod schema;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::http_error::error_response;
use crate::paging::{error_cursor, event_cursor, limit_param, next_cursor, next_error_cursor, time_param, BadParam};
use crate::store::{ErrorQuery, EventQuery, Order, StoreError};

/// Errors of the read API, mapped to statuses in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no or bad token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the token may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: no such item.
    #[error("{0}")]
    NotFound(String),
    /// 503: the store failed; the cause is logged, not shown.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<BadParam> for ApiError {
    fn from(e: BadParam) -> Self {
        Self::BadRequest(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = match self {
            Self::BadRequest(m) => error_response(StatusCode::BAD_REQUEST, "bad_request", m),
            Self::Unauthorized(m) => error_response(StatusCode::UNAUTHORIZED, "unauthorized", m),
            Self::Forbidden(m) => error_response(StatusCode::FORBIDDEN, "forbidden", m),
            Self::NotFound(m) => error_response(StatusCode::NOT_FOUND, "not_found", m),
            Self::Store(e) => {
                tracing::error!(error = %e, "read API store failure");
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is not available; retry later",
                )
            }
        };
        auth::challenge(&mut response);
        response
    }
}

/// The read API's routes, all behind [`auth::require_token`].
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/api/events", get(list_events))
        .route("/api/events/{event_id}", get(get_event))
        .route("/api/errors", get(list_errors))
        .route("/api/stats", get(data::stats))
        .route("/api/export", get(data::export))
        .route("/api/sessions/{session_id}", axum::routing::delete(data::erase))
        .route_layer(middleware::from_fn_with_state(state, auth::require_token))
}

/// Filters and paging of `GET /api/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventParams {
    /// Only this session's events.
    #[param(example = "e2085be5-9137-4e4e-80b5-f1ffddc25421")]
    session_id: Option<String>,
    /// Only this category.
    #[param(example = "page interaction")]
    category: Option<String>,
    /// Only this event name.
    #[param(example = "pageview")]
    name: Option<String>,
    /// Events at or after this time (RFC 3339, or `YYYY-MM-DD HH:MM:SS` as UTC).
    #[param(format = DateTime, example = "2026-01-01T00:00:00Z")]
    from: Option<String>,
    /// Events before this time.
    #[param(format = DateTime, example = "2026-01-02T00:00:00Z")]
    to: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    #[param(value_type = Option<schema::OrderParam>, example = "asc")]
    order: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000, example = 50)]
    limit: Option<String>,
    /// `next_cursor` of the previous page, with the same filters and order.
    cursor: Option<String>,
}

/// Filters and paging of `GET /api/errors`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ErrorParams {
    /// Only errors with this reason code (`unknown_category`, `schema`, …).
    #[param(example = "schema")]
    reason: Option<String>,
    /// Only errors whose payload names this category.
    #[param(example = "page interaction")]
    category: Option<String>,
    /// Errors received at or after this time.
    #[param(format = DateTime, example = "2026-01-01T00:00:00Z")]
    from: Option<String>,
    /// Errors received before this time.
    #[param(format = DateTime, example = "2026-01-02T00:00:00Z")]
    to: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000, example = 50)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

pub use crate::lifecycle::export::{ErrorOut, EventOut};

fn params<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(p)| p).map_err(|e| ApiError::BadRequest(e.body_text()))
}

#[utoipa::path(
    get,
    path = "/api/events",
    tag = "read",
    summary = "List events",
    description = "Events, newest first by default, with keyset pages.",
    params(EventParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of events", body = schema::EventsPage,
            links(("GetFirstEvent" = (
                operation_id = "get_event",
                parameters(("event_id" = "$response.body#/events/0/event_id")),
                description = "The page's first event, by its id",
            )))),
        (status = 400, description = "A malformed parameter, named", body = crate::http_error::ErrorBody),
        (status = 401, description = "No valid bearer token", body = crate::http_error::ErrorBody),
        (status = 414, description = "The request target is too long", body = crate::http_error::ErrorBody),
        (status = 431, description = "The headers are too large", body = crate::http_error::ErrorBody),
        (status = 503, description = "The store is unavailable", body = crate::http_error::ErrorBody),
    )
)]
async fn list_events(
    State(state): State<AppState>,
    q: Result<Query<EventParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = params(q)?;
    let order = match p.order.as_deref() {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(_) => return Err(ApiError::BadRequest("order must be asc or desc".into())),
    };
    let query = EventQuery {
        session_id: p.session_id,
        category: p.category,
        name: p.name,
        application: None,
        from: time_param("from", p.from.as_deref())?,
        to: time_param("to", p.to.as_deref())?,
        order,
        limit: limit_param(p.limit.as_deref())?,
        after: p.cursor.as_deref().map(|c| event_cursor(c, order)).transpose()?,
        search: None,
    };
    let page = state.store.events(&query).await?;
    let next = page.next.map(|c| next_cursor(c, order));
    let events: Vec<EventOut> = page.items.into_iter().map(EventOut::from).collect();
    Ok(Json(serde_json::json!({"events": events, "next_cursor": next})))
}

#[utoipa::path(
    get,
    path = "/api/events/{event_id}",
    tag = "read",
    summary = "One event",
    params(("event_id" = Uuid, Path, description = "The event's id", example = "0176bd3a-f88b-81b4-bfcd-b3fb57a18e90")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The event", body = EventOut),
        (status = 400, description = "Not a UUID", body = crate::http_error::ErrorBody),
        (status = 401, description = "No valid bearer token", body = crate::http_error::ErrorBody),
        (status = 404, description = "No such event", body = crate::http_error::ErrorBody),
        (status = 414, description = "The request target is too long", body = crate::http_error::ErrorBody),
        (status = 431, description = "The headers are too large", body = crate::http_error::ErrorBody),
        (status = 503, description = "The store is unavailable", body = crate::http_error::ErrorBody),
    )
)]
async fn get_event(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<EventOut>, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let event_id = Uuid::parse_str(&id).map_err(|_| ApiError::BadRequest("event id must be a UUID".into()))?;
    let event = state.store.event(event_id).await?;
    event.map(|e| Json(e.into())).ok_or_else(|| ApiError::NotFound(format!("no event {event_id}")))
}

#[utoipa::path(
    get,
    path = "/api/errors",
    tag = "read",
    summary = "List event errors",
    description = "Event errors, newest first, with keyset pages.",
    params(ErrorParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of event errors", body = schema::ErrorsPage),
        (status = 400, description = "A malformed parameter, named", body = crate::http_error::ErrorBody),
        (status = 401, description = "No valid bearer token", body = crate::http_error::ErrorBody),
        (status = 414, description = "The request target is too long", body = crate::http_error::ErrorBody),
        (status = 431, description = "The headers are too large", body = crate::http_error::ErrorBody),
        (status = 503, description = "The store is unavailable", body = crate::http_error::ErrorBody),
    )
)]
async fn list_errors(
    State(state): State<AppState>,
    q: Result<Query<ErrorParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = params(q)?;
    let after = p.cursor.as_deref().map(error_cursor).transpose()?;
    let query = ErrorQuery {
        session_id: None,
        order: Order::Desc,
        ids: Vec::new(),
        reason: p.reason,
        category: p.category,
        from: time_param("from", p.from.as_deref())?,
        to: time_param("to", p.to.as_deref())?,
        limit: limit_param(p.limit.as_deref())?,
        after,
    };
    let page = state.store.errors(&query).await?;
    let next = page.next.map(next_error_cursor);
    let errors: Vec<ErrorOut> = page.items.into_iter().map(ErrorOut::from).collect();
    Ok(Json(serde_json::json!({"errors": errors, "next_cursor": next})))
}
