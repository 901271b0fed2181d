//! The collector, `POST /collector`: decode, check limits, enqueue, answer.
//!
//! It does only what must be decided before the 202 (is this JSON within the
//! limits?) and leaves content validation to the workers, so a request costs
//! one parse and one share of a group commit.

pub mod decode;

use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::domain::Reason;
use crate::http_error::error_response;
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
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        match self {
            Self::MediaType(m) => error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", m),
            Self::TooLarge(m) => error_response(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
            Self::BadEncoding(m) => error_response(StatusCode::BAD_REQUEST, "bad_encoding", m),
            Self::Refused { code, message, recorded_as } => {
                let body = serde_json::json!({
                    "error": {"code": code, "message": message, "recorded_as": recorded_as}
                });
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
        }
    }
}

/// The 202 answer.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// Number of events accepted.
    pub accepted: usize,
    /// Their ids, in request order.
    pub ids: Vec<Uuid>,
}

/// `POST /collector`: one event or an array of them.
pub async fn collect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: HttpBody,
) -> Result<(StatusCode, Json<Accepted>), IngestError> {
    let limits = &state.limits;
    decode::check_content_type(&headers)?;
    let too_large = || IngestError::TooLarge(format!("body exceeds {} bytes", limits.max_body_bytes));
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(too_large());
    }
    let wire = axum::body::to_bytes(body, limits.max_body_bytes).await.map_err(|_| too_large())?;
    let decoded = decode::decode_content(&headers, &wire, limits)?;
    let received_at = state.clock.now();

    let events = match decode::split_events(&decoded, limits) {
        Ok(events) => events,
        Err(Err(limit)) => return Err(limit),
        Err(Ok(refusal)) => return Err(record_refusal(&state, &decoded, refusal, received_at).await),
    };
    let ids: Vec<Uuid> = events.iter().map(|(id, _)| *id).collect();
    let envelopes = events
        .into_iter()
        .map(|(event_id, json)| Envelope { event_id, received_at, body: Body::Event(json) })
        .collect();
    state.queue.enqueue(envelopes).await.map_err(|e| unavailable(&state, e))?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { accepted: ids.len(), ids })))
}

fn unavailable(state: &AppState, e: QueueError) -> IngestError {
    match &e {
        QueueError::Full { depth } => tracing::warn!(depth, "queue full; answering 503"),
        QueueError::Unavailable(cause) => tracing::error!(%cause, "queue unavailable; answering 503"),
    }
    IngestError::Unavailable(e, state.settings.retry_after().as_secs())
}

/// Keeps a refused body as an event error (capped), then builds the 400.
async fn record_refusal(
    state: &AppState,
    body: &[u8],
    refusal: decode::Refusal,
    received_at: chrono::DateTime<chrono::Utc>,
) -> IngestError {
    let cap = state.settings.max_rejected_body_bytes;
    let mut raw = String::from_utf8_lossy(&body[..body.len().min(cap)]).into_owned();
    if body.len() > cap {
        raw.push_str(&format!("… [truncated: {} bytes in all]", body.len()));
    }
    let event_id = Uuid::now_v7();
    let envelope = Envelope {
        event_id,
        received_at,
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
