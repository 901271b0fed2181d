//! The collector, `POST /collector`: decode, check limits, enqueue, answer.
//!
//! It does only what must be decided before the 202 (may this client send,
//! is this JSON within the limits?) and leaves content validation to the
//! workers, so a request costs one parse and one share of a group commit.
//! A request refused for trust (401, 403, 429) queues nothing.

pub mod decode;
pub mod trust;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::domain::Reason;
use crate::http_error::error_response;
use crate::metrics::CodeLabels;
use crate::queue::{Body, Envelope, QueueError};

pub use decode::Limits;

/// Every way the collector can refuse a request, mapped to a status in one place.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// 415: `Content-Type` or `Content-Encoding` not accepted.
    #[error("{0}")]
    MediaType(String),
    /// 413: a size or count limit was exceeded.
    #[error("{0}")]
    TooLarge(String),
    /// 400: the body claims gzip but is not.
    #[error("{0}")]
    BadEncoding(String),
    /// 400: not acceptable JSON; kept as an event error under `recorded_as`.
    #[error("{message}")]
    Refused {
        /// Stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
        /// Id of the event error that keeps the body, if it could be queued.
        recorded_as: Option<Uuid>,
    },
    /// 503: the queue is full or failing; try again after `Retry-After`.
    #[error("{0}")]
    Unavailable(QueueError, u64),
    /// 401: no key, an unknown one, or a revoked application.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the origin may not send for this application.
    #[error("{0}")]
    Forbidden(String),
    /// 429: over a rate limit; `Retry-After` says when to come back.
    #[error("{message}")]
    RateLimited {
        /// Which limit.
        message: &'static str,
        /// Seconds until a request would be accepted.
        retry_after: u64,
    },
    /// 503: the applications could not be loaded.
    #[error("store unavailable")]
    StoreUnavailable,
}

impl IngestError {
    /// The stable code its answer carries (and the metrics count it under).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MediaType(_) => "unsupported_media_type",
            Self::TooLarge(_) => "too_large",
            Self::BadEncoding(_) => "bad_encoding",
            Self::Refused { code, .. } => code,
            Self::Unavailable(QueueError::Full { .. }, _) => "queue_full",
            Self::Unavailable(QueueError::Unavailable(_), _) => "queue_unavailable",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden_origin",
            Self::RateLimited { .. } => "rate_limited",
            Self::StoreUnavailable => "store_unavailable",
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        match self {
            Self::MediaType(m) => error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", m),
            Self::TooLarge(m) => error_response(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
            Self::BadEncoding(m) => error_response(StatusCode::BAD_REQUEST, "bad_encoding", m),
            Self::Refused { code, message, recorded_as } => {
                let mut body = serde_json::json!({
                    "error": {"code": code, "message": message, "recorded_as": recorded_as}
                });
                if let Some(id) = crate::request_log::current() {
                    body["error"]["request_id"] = id.into();
                }
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
            Self::Unavailable(cause, retry_after) => {
                let (code, message) = match cause {
                    QueueError::Full { .. } => {
                        ("queue_full", "too many events are waiting to be processed; retry later")
                    }
                    QueueError::Unavailable(_) => {
                        ("queue_unavailable", "events cannot be stored durably right now; retry later")
                    }
                };
                let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, code, message);
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                response
            }
            Self::Unauthorized(m) => error_response(StatusCode::UNAUTHORIZED, "unauthorized", m),
            Self::Forbidden(m) => error_response(StatusCode::FORBIDDEN, "forbidden_origin", m),
            Self::RateLimited { message, retry_after } => {
                let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                response
            }
            Self::StoreUnavailable => {
                let mut response = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "cannot check the sender right now; retry later",
                );
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1u64));
                response
            }
        }
    }
}

// The request body as the OpenAPI description shows it.

/// One event as a site sends it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventIn {
    /// The visitor's session.
    pub session_id: String,
    /// A category that exists, like `page interaction`.
    pub category: String,
    /// The event's name, like `pageview`.
    pub name: String,
    /// Anything; the event type's JSON Schema, if it has one, decides. The
    /// seeded types require `host` and `path`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// When it happened: RFC 3339, or `YYYY-MM-DD HH:MM:SS[.ffffff]` read as UTC.
    pub timestamp: String,
    /// The client's id for the event; without one, an id is derived from its content.
    pub event_id: Option<Uuid>,
}

/// What `POST /collector` takes: one event object, or an array of them. The
/// collector checks only that the body is JSON within the limits; each item
/// is validated later and becomes an event or an event error (see
/// `EventIn` for the fields a valid one has). A body that is neither an
/// object nor an array is refused with 400.
#[derive(Debug)]
pub struct CollectorBody;

impl utoipa::PartialSchema for CollectorBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, SchemaType, Type};
        let one = ObjectBuilder::new().schema_type(Type::Object).description(Some("One event, fields as in EventIn"));
        let many = ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(SchemaType::AnyValue)
                    .description(Some("An event object; anything else becomes an event error")),
            )
            .description(Some("Several events"));
        OneOfBuilder::new().item(one).item(many).into()
    }
}

impl utoipa::ToSchema for CollectorBody {}

/// The 202 answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Number of events accepted.
    pub accepted: usize,
    /// Their ids, in request order.
    pub ids: Vec<Uuid>,
}

/// `POST /collector`: one event or an array of them. Answers carry CORS headers
/// for allowed origins, errors included, so a page can read why it was refused.
#[utoipa::path(
    post,
    path = "/collector",
    tag = "collector",
    summary = "Send events",
    description = "One event or an array of them (up to `max_events_per_request`). \
        `Content-Type` may also be `text/plain` (so `navigator.sendBeacon` needs no preflight), \
        and `Content-Encoding: gzip` is accepted. The key comes in `X-Eye-Key` or `?key=`; \
        a browser request must come from one of the application's origins. \
        202 means the events are on disk; each ends as one event or one event error.",
    request_body(content = CollectorBody, content_type = "application/json", example = json!({
        "session_id": "e2085be5-9137-4e4e-80b5-f1ffddc25421",
        "category": "page interaction",
        "name": "pageview",
        "data": {"host": "www.example.com", "path": "/"},
        "timestamp": "2026-01-01T09:15:27.243Z"
    })),
    security(("write_key" = [])),
    responses(
        (status = 202, description = "Accepted and durable", body = Accepted,
            links(("GetFirstAcceptedEvent" = (
                operation_id = "get_event",
                parameters(("event_id" = "$response.body#/ids/0")),
                description = "The first accepted event, by its id: 404 until a worker has stored it, \
                    and for good if it failed validation (it is then an event error)",
            )))),
        (status = 400, description = "Not acceptable JSON (kept as an event error), or a bad host", body = crate::http_error::ErrorBody),
        (status = 401, description = "No key, an unknown key, or a revoked application", body = crate::http_error::ErrorBody),
        (status = 403, description = "The origin may not send for this application", body = crate::http_error::ErrorBody),
        (status = 413, description = "Too large: body, decoded body, event or event count", body = crate::http_error::ErrorBody),
        (status = 414, description = "The request target is too long", body = crate::http_error::ErrorBody),
        (status = 415, description = "Not JSON or text/plain, or an unknown encoding", body = crate::http_error::ErrorBody),
        (status = 429, description = "Over a rate limit; see Retry-After", body = crate::http_error::ErrorBody),
        (status = 431, description = "The headers are too large", body = crate::http_error::ErrorBody),
        (status = 503, description = "The queue is full or failing; see Retry-After", body = crate::http_error::ErrorBody),
    )
)]
pub async fn collect(State(state): State<AppState>, request: Request) -> Response {
    let origin = trust::request_origin(request.headers()).flatten();
    let result = accept(&state, request).await;
    let mut response = match result {
        Ok(accepted) => {
            state.metrics.events_accepted.inc_by(accepted.accepted as u64);
            (StatusCode::ACCEPTED, Json(accepted)).into_response()
        }
        Err(e) => {
            state.metrics.requests_refused.get_or_create(&CodeLabels { code: e.code().into() }).inc();
            e.into_response()
        }
    };
    let index = state.apps.index().await.ok();
    trust::add_cors(&mut response, origin.as_deref(), index.as_deref());
    response
}

async fn accept(state: &AppState, request: Request) -> Result<Accepted, IngestError> {
    let limits = &state.limits;
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    decode::check_content_type(headers)?;

    // Per address first, so floods of bad keys are limited too.
    let ip = crate::peer::client_ip(headers, &parts.extensions, state.settings.http.trust_proxy);
    if let Some(ip) = ip {
        state.ip_limits.check(&ip).map_err(|wait| IngestError::RateLimited {
            message: "too many requests from this address",
            retry_after: crate::rate::retry_after_secs(wait),
        })?;
    }
    let app = trust::authorize(&state.apps, headers, &parts.uri).await?;
    state.app_limits.check(&app.name).map_err(|wait| IngestError::RateLimited {
        message: "too many requests for this application",
        retry_after: crate::rate::retry_after_secs(wait),
    })?;

    let too_large = || IngestError::TooLarge(format!("body exceeds {} bytes", limits.max_body_bytes));
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(too_large());
    }
    let wire = axum::body::to_bytes(body, limits.max_body_bytes).await.map_err(|_| too_large())?;
    let decoded = decode::decode_content(headers, &wire, limits)?;
    let received_at = state.clock.now();
    let application = Some(app.name);

    let events = match decode::split_events(&decoded, limits) {
        Ok(events) => events,
        Err(Err(limit)) => return Err(limit),
        Err(Ok(refusal)) => return Err(record_refusal(state, &decoded, refusal, received_at, application).await),
    };
    let ids: Vec<Uuid> = events.iter().map(|(id, _)| *id).collect();
    let envelopes = events
        .into_iter()
        .map(|(event_id, json)| Envelope {
            event_id,
            received_at,
            application: application.clone(),
            body: Body::Event(json),
        })
        .collect();
    state.queue.enqueue(envelopes).await.map_err(|e| unavailable(state, e))?;
    Ok(Accepted { accepted: ids.len(), ids })
}

fn unavailable(state: &AppState, e: QueueError) -> IngestError {
    // Under overload or an outage this happens on every request: one line
    // every 10 s (with how many it stands for) tells the story; the metrics
    // count every one.
    static FULL: LogEvery = LogEvery::new();
    static DOWN: LogEvery = LogEvery::new();
    match &e {
        QueueError::Full { depth } => {
            if let Some(times) = FULL.due() {
                tracing::warn!(depth, times, "queue full; answering 503");
            }
        }
        QueueError::Unavailable(cause) => {
            if let Some(times) = DOWN.due() {
                tracing::error!(%cause, times, "queue unavailable; answering 503");
            }
        }
    }
    IngestError::Unavailable(e, state.settings.ingest.retry_after.as_secs())
}

/// Lets a repeated log line through at most once every 10 s.
struct LogEvery {
    /// Milliseconds since the process started when it last went through.
    last: std::sync::atomic::AtomicU64,
    /// How many times it was due since then.
    count: std::sync::atomic::AtomicU64,
}

impl LogEvery {
    const fn new() -> Self {
        Self { last: std::sync::atomic::AtomicU64::new(0), count: std::sync::atomic::AtomicU64::new(0) }
    }

    /// `Some(n)` when the line should be written now, standing for `n` occurrences.
    fn due(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let now = START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64 + 10_001;
        let times = self.count.fetch_add(1, Relaxed) + 1;
        let last = self.last.load(Relaxed);
        if now.saturating_sub(last) >= 10_000 && self.last.compare_exchange(last, now, Relaxed, Relaxed).is_ok() {
            self.count.fetch_sub(times, Relaxed);
            return Some(times);
        }
        None
    }
}

/// Keeps a refused body as an event error (capped), then builds the 400.
async fn record_refusal(
    state: &AppState,
    body: &[u8],
    refusal: decode::Refusal,
    received_at: chrono::DateTime<chrono::Utc>,
    application: Option<String>,
) -> IngestError {
    let cap = state.settings.ingest.max_rejected_body_bytes;
    let mut raw = String::from_utf8_lossy(&body[..body.len().min(cap)]).into_owned();
    if body.len() > cap {
        raw.push_str(&format!("… [truncated: {} bytes in all]", body.len()));
    }
    let event_id = Uuid::now_v7();
    let envelope = Envelope {
        event_id,
        received_at,
        application,
        body: Body::Rejected { raw, reason: Reason::new("body", refusal.code, refusal.message.clone()) },
    };
    let recorded_as = match state.queue.enqueue(vec![envelope]).await {
        Ok(()) => Some(event_id),
        Err(e) => {
            tracing::warn!(error = %e, "could not record a refused body");
            None
        }
    };
    IngestError::Refused { code: refusal.code, message: refusal.message, recorded_as }
}
