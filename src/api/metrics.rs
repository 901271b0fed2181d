//! `GET /metrics`: the Prometheus text of every metric, behind a read-API
//! token (Prometheus's `authorization` setting) unless `metrics_public`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Router};

use super::auth;
use crate::app::AppState;

/// The route, with the token check unless the settings make it public.
pub fn routes(state: AppState) -> Router<AppState> {
    let route = Router::new().route("/metrics", get(metrics));
    if state.settings.http.metrics_public {
        route
    } else {
        route.route_layer(middleware::from_fn_with_state(state, auth::require_token))
    }
}

/// Sets the queue's gauges, then renders everything.
async fn metrics(State(state): State<AppState>) -> Response {
    let m = &state.metrics;
    // A queue that cannot answer leaves its gauges as they were; /readyz says why.
    if let Ok(depth) = state.queue.depth().await {
        m.queue_depth.set(depth as i64);
    }
    if let Ok(in_flight) = state.queue.in_flight().await {
        m.queue_in_flight.set(in_flight as i64);
    }
    if let Ok(oldest) = state.queue.oldest().await {
        let age = oldest.map(|t| (state.clock.now() - t).num_milliseconds().max(0) as f64 / 1000.0);
        m.queue_oldest_age_seconds.set(age.unwrap_or(0.0));
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.render()).into_response()
}
