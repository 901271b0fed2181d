//! Sessions: the list of recently active ones with filters, and one
//! session's story — how many events, when it began and ended, the path
//! taken, each step with the time since the one before and its data, and its
//! event errors in their place — with its erasure.

use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::errors::codes;
use super::events::{event_row, path_of, EventFilters};
use super::kit::{Admin, AdminResult};
use super::view::{thousands, Period, ANY_TIME};
use super::web::{percent_encode, pretty};
use crate::app::AppState;
use crate::domain::Timestamp;
use crate::paging::{event_cursor, next_cursor};
use crate::store::{timestamp_of, ErrorQuery, EventQuery, Order, SessionSummary};

/// Sessions the list shows at most.
const LIST: usize = 100;
/// Steps a session page shows at most; more continue on the next.
const STEPS: usize = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/sessions/", get(list))
        .route("/admin/sessions/{session_id}/", get(timeline))
        .route("/admin/sessions/{session_id}/erase/", get(erase_form).post(erase))
}

/// A span of time for people: `45 s`, `3 min 20 s`, `2 h 5 min`, `3 d 4 h`.
pub(super) fn span(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0 if d.num_milliseconds() > 0 => format!("{} ms", d.num_milliseconds()),
        0..=59 => format!("{s} s"),
        60..=3599 if s % 60 == 0 => format!("{} min", s / 60),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

async fn list(admin: Admin, Query(mut f): Query<EventFilters>) -> AdminResult {
    // Grouping every event ever stored by session is not a page's work: the
    // list looks at the last 24 hours unless told otherwise.
    if f.period == Period::default() {
        f.period.range = "24h".into();
    }
    let (bounds, error) = match f.period.bounds(admin.state.clock.now()) {
        Ok(b) => (b, None),
        Err(e) => ((None, None), Some(e)),
    };
    let query = EventQuery { limit: LIST, ..f.query(bounds) };
    let found = admin.state.store.sessions(&query).await?;
    let full = found.len() == LIST;
    let sessions: Vec<_> = found.iter().map(summary_row).collect();
    let choices = f.choices(&admin, bounds).await?;
    let presets = f.period.preset_links("/admin/sessions/", &f.others(), ANY_TIME);
    let picker = (f.period.picker(bounds.0), f.period.picker(bounds.1));
    Ok(admin.page(
        "admin/sessions.html",
        minijinja::context! {
            f, sessions, full, limit => LIST, error, choices, presets, from_local => picker.0, to_local => picker.1,
        },
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TimelineParams {
    cursor: Option<String>,
    erased: Option<String>,
}

/// A session's summary as the pages show it.
fn summary_row(s: &SessionSummary) -> minijinja::Value {
    minijinja::context! {
        session_id => s.session_id,
        events => thousands(s.events.max(0) as u64),
        first => s.first.to_string(),
        last => s.last.to_string(),
        duration => span(s.last.as_datetime() - s.first.as_datetime()),
    }
}

/// One step of a session: an event or an event error, at its time.
struct Step {
    at: DateTime<Utc>,
    row: minijinja::Value,
}

async fn timeline(admin: Admin, Path(session_id): Path<String>, Query(q): Query<TimelineParams>) -> AdminResult {
    let store = &admin.state.store;
    let whole = EventQuery { session_id: Some(session_id.clone()), limit: 1, ..Default::default() };
    let summary = store.sessions(&whole).await?.into_iter().next();
    let after = q.cursor.as_deref().and_then(|c| event_cursor(c, Order::Asc).ok());
    let query = EventQuery { order: Order::Asc, limit: STEPS, after, ..whole };
    let page = store.events(&query).await?;
    let errors =
        ErrorQuery { session_id: Some(session_id.clone()), order: Order::Asc, limit: STEPS, ..Default::default() };
    let errors = store.errors(&errors).await?.items;
    // This page's errors: those from its first event (or the start) up to
    // its last event (or the end, on the last page).
    let low = after.and(page.items.first()).map(|e| e.timestamp.as_datetime());
    let high = page.next.and(page.items.last()).map(|e| e.timestamp.as_datetime());
    let in_page = |t: DateTime<Utc>| low.is_none_or(|l| t >= l) && high.is_none_or(|h| t <= h);
    let mut steps: Vec<Step> = page
        .items
        .iter()
        .map(|e| Step {
            at: e.timestamp.as_datetime(),
            row: minijinja::context! { kind => "event", data => pretty(e.data.get()), ..event_row(e) },
        })
        .collect();
    // An error stands where its payload says it happened, if it says so
    // readably; else where it was received.
    let when =
        |e: &crate::store::StoredError| timestamp_of(&e.raw).map(Timestamp::as_datetime).unwrap_or(e.received_at);
    steps.extend(errors.iter().map(|e| (when(e), e)).filter(|(at, _)| in_page(*at)).map(|(at, e)| {
        let first = e.reasons.first().map(|r| r.message.clone()).unwrap_or_default();
        Step {
            at,
            row: minijinja::context! {
                kind => "error", id => e.id, timestamp => Timestamp::from(at).to_string(),
                category => e.category, codes => codes(e), message => first, data => pretty(&e.raw),
            },
        }
    }));
    steps.sort_by_key(|s| s.at);
    let mut previous: Option<DateTime<Utc>> = None;
    let rows: Vec<_> = steps
        .iter()
        .map(|s| {
            let gap = previous.map(|p| format!("+{}", span(s.at - p))).unwrap_or_default();
            previous = Some(s.at);
            minijinja::context! { gap, ..s.row.clone() }
        })
        .collect();
    // The path taken: the pages visited, a page repeated in a row once.
    let mut path: Vec<String> = Vec::new();
    for p in page.items.iter().map(|e| path_of(&e.data)) {
        if !p.is_empty() && path.last() != Some(&p) {
            path.push(p);
        }
    }
    let segment = percent_encode(&session_id, b"-_.~");
    let next_url = page.next.map(|c| format!("/admin/sessions/{segment}/?cursor={}", next_cursor(c, Order::Asc)));
    let summary = summary.as_ref().map(summary_row);
    let erased = q.erased.as_deref().map(erased_message);
    Ok(admin.page(
        "admin/session.html",
        minijinja::context! {
            session_id, summary, rows, path, next_url, erased, errors => errors.len(),
            earlier => q.cursor.is_some(),
        },
    ))
}

/// What the timeline says after an erasure: `erased=EVENTS,ERRORS`.
fn erased_message(counts: &str) -> String {
    let (events, errors) = counts.split_once(',').unwrap_or((counts, "0"));
    let n = |s: &str| s.parse::<u64>().unwrap_or(0);
    format!("Erased {} events and {} event errors of this session.", n(events), n(errors))
}

async fn erase_form(admin: Admin, Path(session_id): Path<String>) -> AdminResult {
    let path = percent_encode(&session_id, b"-_.~");
    Ok(admin.confirm(
        "Erase this session?",
        &format!(
            "Every event and event error of session {session_id} will be deleted for good and taken out of the \
             counts, as an erasure request (GDPR art. 17) asks. The audit log keeps a digest of the session id \
             and the numbers, not the data. Backups taken before now still hold it."
        ),
        &format!("/admin/sessions/{path}/erase/"),
        &format!("/admin/sessions/{path}/"),
    ))
}

async fn erase(admin: Admin, Path(session_id): Path<String>) -> AdminResult {
    let store = admin.state.store.as_ref();
    let erased = crate::lifecycle::erase_session(store, &session_id, &admin.session.username).await?;
    let path = percent_encode(&session_id, b"-_.~");
    Ok(Redirect::to(&format!("/admin/sessions/{path}/?erased={},{}", erased.events, erased.errors)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(span(Duration::milliseconds(250)), "250 ms");
        assert_eq!(span(Duration::seconds(45)), "45 s");
        assert_eq!(span(Duration::seconds(120)), "2 min");
        assert_eq!(span(Duration::seconds(200)), "3 min 20 s");
        assert_eq!(span(Duration::seconds(7500)), "2 h 5 min");
        assert_eq!(span(Duration::seconds(3 * 86_400 + 4 * 3600)), "3 d 4 h");
    }

    #[test]
    fn an_erasure_is_reported_in_words() {
        assert_eq!(erased_message("3,1"), "Erased 3 events and 1 event errors of this session.");
    }
}
