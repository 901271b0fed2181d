//! `GET /healthz` (the process answers) and `GET /readyz` (it can do its job).

use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;

/// Longest any one readiness check may take: a frozen backend must make
/// `/readyz` answer "unavailable" quickly, not hang the load balancer's probe.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Alive: answers as long as the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", summary = "Liveness",
    responses((status = 200, description = "The process answers", body = super::schema::Healthz)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Runs one check within [`CHECK_TIMEOUT`]; its error, or the time-out, as text.
async fn bounded<T, E: std::fmt::Display>(check: impl Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

/// Ready: the store and the queue answer (the spool's writer runs) and no
/// shutdown is under way. Also reports the backlog: entries waiting for a
/// worker and entries a worker holds right now, which is what an operator
/// watching a backlog drain (or stick) wants to see.
#[utoipa::path(get, path = "/readyz", tag = "health", summary = "Readiness",
    responses(
        (status = 200, description = "Ready", body = super::schema::Readyz),
        (status = 503, description = "The store or the queue fails, or a shutdown is under way", body = super::schema::Readyz),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (store, depth, in_flight) =
        tokio::join!(bounded(state.store.ping()), bounded(state.queue.depth()), bounded(state.queue.in_flight()));
    let queue = depth.as_ref().and(in_flight.as_ref()).map(|_| ()).map_err(Clone::clone);
    let draining = state.draining.is_cancelled();
    let ready = store.is_ok() && queue.is_ok() && !draining;
    let status = if draining {
        "shutting_down"
    } else if ready {
        "ready"
    } else {
        "unavailable"
    };
    let (depth, in_flight) = (depth.ok(), in_flight.ok());
    let body = json!({
        "status": status,
        "store": store.err().unwrap_or_else(|| "ok".into()),
        "queue": queue.err().unwrap_or_else(|| "ok".into()),
        "queue_depth": depth,
        "queue_waiting": depth.zip(in_flight).map(|(d, f)| d.saturating_sub(f)),
        "queue_in_flight": in_flight,
    });
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body))
}
