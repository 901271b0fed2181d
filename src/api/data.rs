//! The read API's views of the data as a whole: statistics from the rollups,
//! streaming exports, and erasing a session (with a token that may erase).

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Duration, Utc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{params, ApiError};
use crate::app::AppState;
use crate::domain::Timestamp;
use crate::lifecycle::export::{self, ExportFilters};
use crate::paging::time_param;
use crate::store::{floor_to, StatsGroup, StatsKind, StatsQuery, TokenGrant};

/// The most buckets one statistics answer may span.
const MAX_BUCKETS: i64 = 10_000;

/// Filters and shape of `GET /api/stats`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// `events` (the default, by their own time) or `errors` (by time received).
    #[param(value_type = Option<String>, pattern = "^(events|errors)$", example = "events")]
    kind: Option<String>,
    /// Start (RFC 3339, or `YYYY-MM-DD HH:MM:SS` as UTC), rounded down to a bucket; default: 7 days before `to`.
    #[param(format = DateTime, example = "2026-01-01T00:00:00Z")]
    from: Option<String>,
    /// End, rounded up to a bucket; default: now.
    #[param(format = DateTime, example = "2026-01-02T00:00:00Z")]
    to: Option<String>,
    /// Bucket width: `5m`, `1h` (the default) or `1d` (UTC days).
    #[param(value_type = Option<String>, pattern = "^(5m|1h|1d)$", example = "1h")]
    bucket: Option<String>,
    /// Split the counts by `category`, `name` (category and name; events),
    /// `application` or `reason` (the first reason's code; errors). Default: one series.
    #[param(value_type = Option<String>, pattern = "^(category|name|application|reason)$", example = "name")]
    group_by: Option<String>,
    /// Only this category.
    #[param(example = "page interaction")]
    category: Option<String>,
    /// Only this event name (events).
    #[param(example = "pageview")]
    name: Option<String>,
    /// Only this application.
    application: Option<String>,
}

/// One count.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsPoint {
    /// The bucket's start (RFC 3339, UTC).
    bucket: String,
    /// How many.
    count: i64,
}

/// The counts of one group.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsSeries {
    /// What the group is, e.g. `{"category": "page interaction"}`; empty without `group_by`.
    key: BTreeMap<String, String>,
    /// The sum of `points`.
    total: i64,
    /// Buckets with something counted, oldest first; the others are 0.
    points: Vec<StatsPoint>,
}

/// `GET /api/stats`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsOut {
    /// `events` or `errors`.
    kind: String,
    /// The bucket width asked for.
    bucket: String,
    /// The first bucket's start.
    from: String,
    /// The end of the last bucket.
    to: String,
    /// The grouping asked for, if any.
    group_by: Option<String>,
    /// Everything counted.
    total: i64,
    /// One series per group, largest first.
    series: Vec<StatsSeries>,
}

/// A bucket boundary as RFC 3339, to the second.
fn at_second(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn param_time(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    Ok(time_param(name, value)?.map(Timestamp::as_datetime))
}

#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "read",
    summary = "Counts over time",
    description = "Events or event errors counted per bucket from the rollups (kept with every write), \
                   optionally split by category, name, application or reason. Milliseconds, whatever the range.",
    params(StatsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The counts", body = StatsOut),
        (status = 400, description = "A malformed parameter, named", body = crate::http_error::ErrorBody),
        (status = 401, description = "No valid bearer token", body = crate::http_error::ErrorBody),
        (status = 414, description = "The request target is too long", body = crate::http_error::ErrorBody),
        (status = 431, description = "The headers are too large", body = crate::http_error::ErrorBody),
        (status = 503, description = "The store is unavailable", body = crate::http_error::ErrorBody),
    )
)]
pub async fn stats(
    State(state): State<AppState>,
    q: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<StatsOut>, ApiError> {
    let p = params(q)?;
    let bad = |m: &str| ApiError::BadRequest(m.to_string());
    let kind = match p.kind.as_deref() {
        None | Some("events") => StatsKind::Events,
        Some("errors") => StatsKind::Errors,
        Some(_) => return Err(bad("kind must be events or errors")),
    };
    let (bucket_name, bucket_secs) = match p.bucket.as_deref() {
        Some("5m") => ("5m", 300),
        None | Some("1h") => ("1h", 3600),
        Some("1d") => ("1d", 86_400),
        Some(_) => return Err(bad("bucket must be 5m, 1h or 1d")),
    };
    let group = match p.group_by.as_deref() {
        None => StatsGroup::None,
        Some("category") => StatsGroup::Category,
        Some("name") if kind == StatsKind::Events => StatsGroup::Name,
        Some("application") => StatsGroup::Application,
        Some("reason") if kind == StatsKind::Errors => StatsGroup::Reason,
        Some("name") => return Err(bad("event errors have no name: group_by=reason, category or application")),
        Some("reason") => return Err(bad("events have no reason: group_by=category, name or application")),
        Some(_) => return Err(bad("group_by must be category, name, application or reason")),
    };
    if kind == StatsKind::Errors && p.name.is_some() {
        return Err(bad("event errors have no name to filter by"));
    }
    let to = param_time("to", p.to.as_deref())?.unwrap_or_else(|| state.clock.now());
    let from = param_time("from", p.from.as_deref())?.unwrap_or(to - Duration::days(7));
    if from >= to {
        return Err(bad("from must be before to"));
    }
    let from = floor_to(from, bucket_secs);
    let to_floor = floor_to(to, bucket_secs);
    let to = if to_floor == to { to } else { to_floor + Duration::seconds(bucket_secs) };
    if (to - from).num_seconds() / bucket_secs > MAX_BUCKETS {
        return Err(ApiError::BadRequest(format!(
            "that is more than {MAX_BUCKETS} buckets: use a larger bucket or a shorter range"
        )));
    }
    let query = StatsQuery {
        kind,
        from,
        to,
        bucket_secs,
        group,
        category: p.category,
        name: p.name,
        application: p.application,
    };
    let rows = state.store.stats(&query).await?;
    let names: &[&str] = match group {
        StatsGroup::None => &[],
        StatsGroup::Category => &["category"],
        StatsGroup::Name => &["category", "name"],
        StatsGroup::Application => &["application"],
        StatsGroup::Reason => &["reason"],
    };
    let mut series: Vec<StatsSeries> = Vec::new();
    for row in rows {
        let key: BTreeMap<String, String> = names.iter().map(|n| n.to_string()).zip(row.key).collect();
        let point = StatsPoint { bucket: at_second(row.bucket), count: row.count };
        match series.iter_mut().find(|s| s.key == key) {
            Some(s) => {
                s.total += row.count;
                s.points.push(point);
            }
            None => series.push(StatsSeries { key, total: row.count, points: vec![point] }),
        }
    }
    series.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.key.cmp(&b.key)));
    Ok(Json(StatsOut {
        kind: match kind {
            StatsKind::Events => "events".into(),
            StatsKind::Errors => "errors".into(),
        },
        bucket: bucket_name.into(),
        from: at_second(from),
        to: at_second(to),
        group_by: p.group_by,
        total: series.iter().map(|s| s.total).sum(),
        series,
    }))
}

#[utoipa::path(
    get,
    path = "/api/export",
    tag = "read",
    summary = "Export events or event errors",
    description = "Every event (or, with kind=errors, every event error) the filters select, oldest first, \
                   streamed as NDJSON (the shape of GET /api/events) or CSV, with constant memory. \
                   A response cut short by a store failure ends without its last chunk, so it cannot pass for whole.",
    params(ExportFilters),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rows", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 400, description = "A malformed parameter, named", body = crate::http_error::ErrorBody),
        (status = 401, description = "No valid bearer token", body = crate::http_error::ErrorBody),
        (status = 414, description = "The request target is too long", body = crate::http_error::ErrorBody),
        (status = 431, description = "The headers are too large", body = crate::http_error::ErrorBody),
    )
)]
pub async fn export(
    State(state): State<AppState>,
    q: Result<Query<ExportFilters>, QueryRejection>,
) -> Result<Response, ApiError> {
    let filters = params(q)?;
    let (format, selection) = filters.parse().map_err(ApiError::BadRequest)?;
    let kind = if matches!(selection, export::Selection::Errors(_)) { "errors" } else { "events" };
    let reader: std::sync::Arc<dyn crate::store::EventReader> = state.store.clone();
    let body = export::chunks(reader, selection, format).map_ok(Bytes::from).inspect_err(|e| {
        tracing::error!(error = %e, "an export stopped: the store failed");
    });
    let filename = format!("the-eye-{kind}-{}.{}", state.clock.now().format("%Y%m%dT%H%M%SZ"), format.extension());
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// `DELETE /api/sessions/{session_id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    /// Events deleted.
    events: u64,
    /// Event errors deleted.
    errors: u64,
}

#[utoipa::path(
    delete,
    path = "/api/sessions/{session_id}",
    tag = "read",
    summary = "Erase a session",
    description = "Deletes every event and event error of one session in one transaction and takes them out of \
                   the counts; the audit log records a digest of the session id and the numbers, not the data. \
                   Needs a token made with `the-eye tokens create --erase`. Erasing twice is harmless.",
    params(("session_id" = String, Path, description = "The session's id, as the events carry it")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What was deleted", body = Erasure),
        (status = 400, description = "A malformed parameter, named", body = crate::http_error::ErrorBody),
        (status = 401, description = "No valid bearer token", body = crate::http_error::ErrorBody),
        (status = 403, description = "The token may read but not erase", body = crate::http_error::ErrorBody),
        (status = 414, description = "The request target is too long", body = crate::http_error::ErrorBody),
        (status = 431, description = "The headers are too large", body = crate::http_error::ErrorBody),
        (status = 503, description = "The store is unavailable", body = crate::http_error::ErrorBody),
    )
)]
pub async fn erase(
    State(state): State<AppState>,
    Extension(grant): Extension<TokenGrant>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Erasure>, ApiError> {
    let Path(session_id) = id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if !grant.can_erase {
        return Err(ApiError::Forbidden(
            "this token may read but not erase: make one with `the-eye tokens create --name NAME --erase`",
        ));
    }
    if session_id.is_empty() {
        return Err(ApiError::BadRequest("the session id is empty".into()));
    }
    let actor = format!("token:{}", grant.name);
    let erased = crate::lifecycle::erase_session(state.store.as_ref(), &session_id, &actor).await?;
    Ok(Json(Erasure { events: erased.events, errors: erased.errors }))
}
