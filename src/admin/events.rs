//! Events: the list with filters and search, an event's detail and deletion,
//! and a session's timeline and its erasure.

use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::kit::{Admin, AdminError, AdminResult};
use super::web::{action_row, percent_encode, pretty};
use crate::app::AppState;
use crate::domain::Timestamp;
use crate::paging::{event_cursor, next_cursor, time_param};
use crate::store::{EventQuery, Order, StoredEvent};

/// Page size of the admin's event lists.
pub(super) const PAGE: usize = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/events/", get(events_list))
        .route("/admin/events/{event_id}/", get(event_detail))
        .route("/admin/events/{event_id}/delete/", get(delete_form).post(delete))
        .route("/admin/sessions/{session_id}/", get(session_timeline))
        .route("/admin/sessions/{session_id}/erase/", get(erase_form).post(erase))
}

/// Filters of the events page, as typed into its form.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct EventFilters {
    q: String,
    session_id: String,
    category: String,
    name: String,
    from: String,
    to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    #[serde(skip_serializing)]
    deleted: Option<String>,
}

/// A filter as typed: blank means none.
pub(super) fn text(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

pub(super) fn event_row(e: &StoredEvent) -> minijinja::Value {
    let path = serde_json::from_str::<serde_json::Value>(e.data.get())
        .ok()
        .and_then(|d| d.get("path").and_then(|p| p.as_str()).map(str::to_string))
        .unwrap_or_default();
    minijinja::context! {
        event_id => e.event_id.to_string(),
        timestamp => e.timestamp.to_string(),
        received_at => Timestamp::from(e.received_at).to_string(),
        category => e.category,
        name => e.name,
        session_id => e.session_id,
        application => e.application,
        path,
    }
}

async fn events_list(admin: Admin, Query(mut f): Query<EventFilters>) -> AdminResult {
    let mut error = None;
    let mut time = |name: &str, v: &str| {
        time_param(name, text(v).as_deref()).unwrap_or_else(|e| {
            error = Some(e.to_string());
            None
        })
    };
    let (from, to) = (time("from", &f.from), time("to", &f.to));
    let query = EventQuery {
        session_id: text(&f.session_id),
        category: text(&f.category),
        name: text(&f.name),
        search: text(&f.q),
        from,
        to,
        order: Order::Desc,
        limit: PAGE,
        after: f.cursor.as_deref().and_then(|c| event_cursor(c, Order::Desc).ok()),
    };
    let page_of = admin.state.store.events(&query).await?;
    let events: Vec<_> = page_of.items.iter().map(event_row).collect();
    let next_url = page_of.next.map(|c| {
        f.cursor = Some(next_cursor(c, Order::Desc));
        format!("/admin/events/?{}", serde_urlencoded::to_string(&f).unwrap_or_default())
    });
    f.cursor = None;
    let deleted = f.deleted.is_some();
    Ok(admin.page("admin/events.html", minijinja::context! { f, events, next_url, error, deleted }))
}

/// The event id in a path, or the not-found page.
fn event_id(id: &str) -> Result<uuid::Uuid, AdminError> {
    uuid::Uuid::parse_str(id).map_err(|_| AdminError::NotFound("event"))
}

async fn event_detail(admin: Admin, Path(id): Path<String>) -> AdminResult {
    let id = event_id(&id)?;
    let event = admin.state.store.event(id).await?.ok_or(AdminError::NotFound("event"))?;
    let data = pretty(event.data.get());
    let history: Vec<_> = admin.state.store.actions(Some(&id.to_string()), 20).await?.iter().map(action_row).collect();
    Ok(admin.page("admin/event.html", minijinja::context! { e => event_row(&event), data, history }))
}

async fn delete_form(admin: Admin, Path(id): Path<String>) -> AdminResult {
    let id = event_id(&id)?;
    Ok(admin.confirm(
        "Delete this event?",
        &format!("Event {id} will be deleted for good. Reports and the read API will no longer show it."),
        &format!("/admin/events/{id}/delete/"),
        &format!("/admin/events/{id}/"),
    ))
}

async fn delete(admin: Admin, Path(id): Path<String>) -> AdminResult {
    let id = event_id(&id)?;
    if !admin.state.store.delete_event(id).await? {
        return Err(AdminError::NotFound("event"));
    }
    admin.audit("delete event", &id.to_string(), String::new()).await;
    Ok(Redirect::to("/admin/events/?deleted=1").into_response())
}

#[derive(Debug, Deserialize)]
struct CursorParam {
    cursor: Option<String>,
    erased: Option<String>,
}

async fn session_timeline(admin: Admin, Path(session_id): Path<String>, Query(q): Query<CursorParam>) -> AdminResult {
    let query = EventQuery {
        session_id: Some(session_id.clone()),
        order: Order::Asc,
        limit: PAGE,
        after: q.cursor.as_deref().and_then(|c| event_cursor(c, Order::Asc).ok()),
        ..Default::default()
    };
    let page_of = admin.state.store.events(&query).await?;
    let events: Vec<_> = page_of.items.iter().map(event_row).collect();
    let next_url = page_of.next.map(|c| {
        let path = percent_encode(&session_id, b"-_.~");
        format!("/admin/sessions/{path}/?cursor={}", next_cursor(c, Order::Asc))
    });
    let erased = q.erased.as_deref().map(erased_message);
    Ok(admin.page("admin/session.html", minijinja::context! { session_id, events, next_url, erased }))
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
