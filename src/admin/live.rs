//! The live view: events and event errors as they are stored, with the
//! events page's filters, streamed to the page as server-sent events.
//!
//! The stream polls the store once a second for rows stored after the last
//! it sent, so it shows what any process stored — a worker of this one, or a
//! `the-eye worker` elsewhere in a scaled deployment. Each message's id
//! (`<event row>,<error row>`) lets the browser's `EventSource` resume where
//! it stopped after a dropped connection. A stream ends after
//! [`STREAM_LIFE`] (the browser reconnects, passing the session check
//! again) or when the service begins to shut down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::Query;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;

use super::events::{text, EventFilters};
use super::kit::{Admin, AdminResult};
use crate::app::AppState;
use crate::domain::Timestamp;
use crate::store::{ErrorQuery, EventQuery, Order, StoreError};

/// How often the stream asks the store for new rows.
const POLL: Duration = Duration::from_secs(1);
/// Most rows of each kind one poll sends; a busier second shows its newest.
const PER_POLL: usize = 200;
/// How long one stream lasts before the browser reconnects.
const STREAM_LIFE: Duration = Duration::from_secs(600);

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/admin/live/", get(page)).route("/admin/live/stream", get(stream_of))
}

async fn page(admin: Admin, Query(f): Query<EventFilters>) -> AdminResult {
    let choices = f.choices(&admin, (None, None)).await?;
    let stream = "/admin/live/stream";
    Ok(admin.page("admin/live.html", minijinja::context! { f, choices, stream }))
}

/// Where a stream continues: `after=EVENT_ROW,ERROR_ROW`, or the
/// `Last-Event-ID` the browser sends when it reconnects.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StreamParams {
    #[serde(flatten)]
    f: EventFilters,
    after: Option<String>,
}

fn rows(text: &str) -> Option<(i64, i64)> {
    let (e, r) = text.split_once(',')?;
    Some((e.trim().parse().ok()?, r.trim().parse().ok()?))
}

async fn stream_of(
    admin: Admin,
    headers: HeaderMap,
    Query(p): Query<StreamParams>,
) -> Result<impl IntoResponse, super::kit::AdminError> {
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(rows);
    let start = match resume.or_else(|| p.after.as_deref().and_then(rows)) {
        Some(at) => at,
        None => admin.state.store.newest_rows().await?,
    };
    let events = EventQuery { limit: PER_POLL, ..p.f.query((None, None)) };
    // Errors have a category and a session, not a name or an application:
    // filtering by those shows events only.
    let errors = (events.name.is_none() && events.application.is_none()).then(|| ErrorQuery {
        category: text(&p.f.category),
        session_id: text(&p.f.session_id),
        order: Order::Asc,
        limit: PER_POLL,
        ..Default::default()
    });
    Ok(Sse::new(feed(admin.state, events, errors, start)).keep_alive(KeepAlive::default()))
}

/// What the stream sends, poll by poll.
fn feed(
    state: AppState,
    events: EventQuery,
    errors: Option<ErrorQuery>,
    start: (i64, i64),
) -> impl Stream<Item = Result<Event, Infallible>> {
    let until = tokio::time::Instant::now() + STREAM_LIFE;
    let first = true;
    stream::unfold((start, first), move |((mut event_row, mut error_row), first)| {
        let (state, events, errors) = (state.clone(), events.clone(), errors.clone());
        async move {
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = state.draining.cancelled() => return None,
                }
            }
            if tokio::time::Instant::now() >= until {
                return None;
            }
            let mut out = Vec::new();
            match poll(&state, &events, errors.as_ref(), (event_row, error_row)).await {
                Ok((new_events, new_errors)) => {
                    for (row, json) in new_events {
                        event_row = row;
                        out.push(("event", json));
                    }
                    for (row, json) in new_errors {
                        error_row = row;
                        out.push(("error-row", json));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the live view cannot read the store; trying again"),
            }
            let queue = state.queue.depth().await.map(|d| d.to_string()).unwrap_or_else(|_| "unknown".into());
            out.push(("status", serde_json::json!({ "queue": queue })));
            let id = format!("{event_row},{error_row}");
            let messages: Vec<Result<Event, Infallible>> = out
                .into_iter()
                .map(|(kind, json)| Ok(Event::default().event(kind).id(id.clone()).data(json.to_string())))
                .collect();
            Some((stream::iter(messages), ((event_row, error_row), false)))
        }
    })
    .flatten()
}

type Rows = Vec<(i64, serde_json::Value)>;

/// The rows stored since `(event_row, error_row)`, as the page shows them.
async fn poll(
    state: &AppState,
    events: &EventQuery,
    errors: Option<&ErrorQuery>,
    (event_row, error_row): (i64, i64),
) -> Result<(Rows, Rows), StoreError> {
    let segment = |s: &str| crate::templates::percent_encode(s, b"-_.~");
    let new_events = state.store.events_stored_after(event_row, events).await?;
    let events: Rows = new_events
        .iter()
        .map(|e| {
            let json = serde_json::json!({
                "time": e.timestamp.to_string(),
                "category": e.category,
                "name": e.name,
                "session_id": e.session_id,
                "path": super::events::path_of(&e.data),
                "application": e.application,
                "href": format!("/admin/events/{}/", e.event_id),
                "session_href": format!("/admin/sessions/{}/", segment(&e.session_id)),
            });
            (e.row_id, json)
        })
        .collect();
    let Some(errors) = errors else { return Ok((events, Vec::new())) };
    let query = ErrorQuery { after: Some(error_row), ..errors.clone() };
    let found = state.store.errors(&query).await?.items;
    let errors: Rows = found
        .iter()
        .map(|e| {
            let session = crate::store::session_of(&e.raw);
            let json = serde_json::json!({
                "time": Timestamp::from(e.received_at).to_string(),
                "category": e.category,
                "codes": super::errors::codes(e),
                "session_id": session,
                "preview": super::errors::preview(&e.raw),
                "application": e.application,
                "href": format!("/admin/errors/{}/", e.id),
                "session_href": session.as_deref().map(|s| format!("/admin/sessions/{}/", segment(s))),
            });
            (e.id, json)
        })
        .collect();
    Ok((events, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_point_is_two_row_ids() {
        assert_eq!(rows("12,7"), Some((12, 7)));
        assert_eq!(rows("12"), None);
        assert_eq!(rows("a,1"), None);
    }
}
