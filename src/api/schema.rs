//! The read side's answers as the OpenAPI description shows them.

use serde::Serialize;
use utoipa::ToSchema;

/// The order of a listing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderParam {
    /// Oldest first.
    Asc,
    /// Newest first (the default).
    Desc,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    /// The events.
    pub events: Vec<super::EventOut>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A page of event errors.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorsPage {
    /// The errors.
    pub errors: Vec<super::ErrorOut>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Healthz {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readyz {
    /// `ready`, `unavailable` or `shutting_down`.
    pub status: String,
    /// `ok`, or why the store failed.
    pub store: String,
    /// `ok`, or why the queue failed.
    pub queue: String,
    /// Entries not yet acknowledged (null when the queue did not answer).
    pub queue_depth: Option<u64>,
    /// Entries no worker holds.
    pub queue_waiting: Option<u64>,
    /// Entries a worker holds now.
    pub queue_in_flight: Option<u64>,
}
