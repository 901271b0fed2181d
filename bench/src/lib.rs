//! What the benchmark programs share.

use chrono::{DateTime, Utc};
use the_eye::domain::{Timestamp, ValidEvent};
use the_eye::store::NewEvent;

/// A valid page view as the workers hand it to the store, received when it happened.
pub fn pageview(event_id: uuid::Uuid, session_id: String, path: String, at: DateTime<Utc>) -> NewEvent {
    let data = serde_json::json!({"host": "bench.example", "path": path});
    NewEvent {
        event: ValidEvent {
            event_id,
            session_id,
            category: "page interaction".into(),
            name: "pageview".into(),
            data: data.as_object().cloned().unwrap_or_default(),
            timestamp: Timestamp::from(at),
        },
        received_at: at,
        application: None,
    }
}
