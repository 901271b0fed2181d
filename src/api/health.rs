//! `GET /healthz` (the process answers) and `GET /readyz` (it can do its job).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;

/// Alive: answers as long as the process serves HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready: the store and the queue answer and no shutdown is under way.
/// Also reports the queue depth, which is what a load balancer or an operator
/// watching a backlog drain wants to see.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = state.store.ping().await.map_err(|e| e.to_string());
    let depth = state.queue.depth().await.map_err(|e| e.to_string());
    let draining = state.draining.is_cancelled();
    let ready = store.is_ok() && depth.is_ok() && !draining;
    let status = if draining {
        "shutting_down"
    } else if ready {
        "ready"
    } else {
        "unavailable"
    };
    let body = json!({
        "status": status,
        "store": store.err().unwrap_or_else(|| "ok".into()),
        "queue": depth.as_ref().err().cloned().unwrap_or_else(|| "ok".into()),
        "queue_depth": depth.ok(),
    });
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body))
}
