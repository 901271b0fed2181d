//! The fault suite, in-process part: each defect of the reliability issue
//! reproduced by causing its fault through real parts, and the recovery
//! asserted without a restart. Faults that need a real process (unwritable
//! stderr, SIGTERM, floods of connections, a full disk) are in `faults.rs`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{pageview, reason_codes, test_settings, ManualClock, TestApp};

/// The clock-skew rule is judged against the time the event was received,
/// not the time a worker got to it: a backlog must not turn a refusal into an
/// acceptance.
#[tokio::test]
async fn clock_skew_is_judged_as_of_receipt_not_processing() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let clock = ManualClock::new();
    let app = TestApp::spawn_with_clock(dir.clone(), test_settings(&dir), clock.clone()).await;
    let now = chrono::Utc::now();
    let mut ahead = pageview("skew", 1);
    // Ten minutes ahead: beyond the default five minutes of skew when received.
    ahead["timestamp"] = json!((now + chrono::Duration::minutes(10)).to_rfc3339());
    let mut fine = pageview("skew", 2);
    fine["timestamp"] = json!((now + chrono::Duration::minutes(1)).to_rfc3339());
    app.accept(&json!([ahead, fine])).await;

    // The backlog drains an hour later, when the first timestamp lies in the past.
    clock.advance(Duration::from_secs(3600));
    app.process().await;

    let errors = app.errors().await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(reason_codes(&errors[0]), ["timestamp:in_future"]);
    assert_eq!(app.events().await.len(), 1);
}
