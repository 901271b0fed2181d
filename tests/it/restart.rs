//! Restarts: the queue's backlog at shutdown is processed after the restart,
//! and readiness reports shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use the_eye::app::{router, App};
use tower::ServiceExt;

use crate::helpers::{pageview, test_settings, TestApp};

#[tokio::test]
async fn the_backlog_at_shutdown_is_processed_after_restart() {
    // First life: ingest only, so everything stays in the spool.
    let first = TestApp::spawn().await;
    let batch = Value::Array((0..300).map(|i| pageview("backlog", i)).collect());
    let ids = first.accept(&batch).await;
    let dir = first.dir.clone();
    first.shutdown().await;

    // Second life: with the embedded workers, as `the-eye serve` runs them.
    let mut settings = test_settings(&dir);
    settings.workers = 2;
    let second = TestApp::spawn_in(dir, settings).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while second.state.queue.depth().await.unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "backlog not drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut stored: Vec<String> =
        second.events().await.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    stored.sort();
    let mut expected = ids;
    expected.sort();
    assert_eq!(stored, expected);
    second.shutdown().await;
}

#[tokio::test]
async fn readiness_is_503_once_shutdown_begins() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = App::build(test_settings(&dir).parse().unwrap()).await.unwrap();
    let state = app.state().clone();
    let ready = |state| async move {
        let response = router(state).oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        response.status()
    };
    assert_eq!(ready(state.clone()).await, StatusCode::OK);
    state.draining.cancel();
    assert_eq!(ready(state).await, StatusCode::SERVICE_UNAVAILABLE);
}
