//! Events: the list with filters (choices counted from the rollups, a
//! period, a text search), a count of what matches, pages both ways; an
//! event's detail and deletion.

use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::kit::{Admin, AdminError, AdminResult};
use super::view::{both_ways, choices, matching, url, Bounds, Period, COUNT_CAP};
use super::web::{action_row, pretty};
use crate::app::AppState;
use crate::domain::Timestamp;
use crate::lifecycle::TallyFilter;
use crate::paging::{event_cursor, next_cursor};
use crate::store::{EventCursor, EventQuery, Order, StatsGroup, StatsKind, StoreError, StoredEvent};

/// Page size of the admin's event lists.
pub(super) const PAGE: usize = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/events/", get(events_list))
        .route("/admin/events/{event_id}/", get(event_detail))
        .route("/admin/events/{event_id}/delete/", get(delete_form).post(delete))
}

/// Filters of the events page, as its form and links carry them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub(super) struct EventFilters {
    pub q: String,
    pub session_id: String,
    pub category: String,
    pub name: String,
    pub application: String,
    #[serde(flatten)]
    pub period: Period,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<String>,
    #[serde(skip_serializing)]
    deleted: Option<String>,
}

impl EventFilters {
    /// The store query these filters stand for (newest first, one page);
    /// `bounds` is the period read at the request's time.
    pub(super) fn query(&self, bounds: Bounds) -> EventQuery {
        EventQuery {
            session_id: text(&self.session_id),
            category: text(&self.category),
            name: text(&self.name),
            application: text(&self.application),
            search: text(&self.q),
            from: bounds.0,
            to: bounds.1,
            order: Order::Desc,
            limit: PAGE,
            after: None,
        }
    }

    /// The filters but the period and the page (for the period's links).
    pub(super) fn others(&self) -> Self {
        Self { period: Period::default(), cursor: None, before: None, ..self.clone() }
    }

    /// The category, name and application choices for the period, each
    /// counted from the rollups with the other two applied.
    pub(super) async fn choices(&self, admin: &Admin, bounds: Bounds) -> Result<minijinja::Value, StoreError> {
        let store = admin.state.store.as_ref();
        let kind = StatsKind::Events;
        let filter = |category: bool, name: bool, application: bool| TallyFilter {
            category: text(&self.category).filter(|_| category),
            name: text(&self.name).filter(|_| name),
            application: text(&self.application).filter(|_| application),
        };
        Ok(minijinja::context! {
            categories => choices(store, kind, StatsGroup::Category, bounds, filter(false, true, true), &self.category).await?,
            names => choices(store, kind, StatsGroup::Name, bounds, filter(true, false, true), &self.name).await?,
            applications =>
                choices(store, kind, StatsGroup::Application, bounds, filter(true, true, false), &self.application).await?,
        })
    }
}

/// A filter as typed: blank means none.
pub(super) fn text(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The `path` of an event's data, if it has one (the tracker's page views do).
pub(super) fn path_of(data: &serde_json::value::RawValue) -> String {
    serde_json::from_str::<serde_json::Value>(data.get())
        .ok()
        .and_then(|d| d.get("path").and_then(|p| p.as_str()).map(str::to_string))
        .unwrap_or_default()
}

pub(super) fn event_row(e: &StoredEvent) -> minijinja::Value {
    minijinja::context! {
        event_id => e.event_id.to_string(),
        timestamp => e.timestamp.to_string(),
        received_at => Timestamp::from(e.received_at).to_string(),
        category => e.category,
        name => e.name,
        session_id => e.session_id,
        application => e.application,
        path => path_of(&e.data),
    }
}

/// An event's place in a newest-first list.
fn event_key(e: &StoredEvent) -> EventCursor {
    EventCursor { timestamp_micros: e.timestamp.micros(), row_id: e.row_id }
}

async fn events_list(admin: Admin, Query(mut f): Query<EventFilters>) -> AdminResult {
    let (bounds, error) = match f.period.bounds(admin.state.clock.now()) {
        Ok(b) => (b, None),
        Err(e) => ((None, None), Some(e)),
    };
    let query = f.query(bounds);
    let store = admin.state.store.as_ref();
    let fetch = |order, after| {
        let q = EventQuery { order, after, ..query.clone() };
        async move { store.events(&q).await }
    };
    let older = f.cursor.as_deref().and_then(|c| event_cursor(c, Order::Desc).ok());
    let newer = f.before.as_deref().and_then(|c| event_cursor(c, Order::Asc).ok());
    let paged = both_ways(older, newer, fetch, event_key).await?;
    let events: Vec<_> = paged.items.iter().map(event_row).collect();
    // Counting what a text search matches would read every row: not counted.
    let count = match query.search {
        Some(_) => None,
        None => Some(matching(store.count_events(&query, COUNT_CAP).await?, "event", "events")),
    };
    let choices = f.choices(&admin, bounds).await?;
    let presets = f.period.preset_links("/admin/events/", &f.others(), "");
    let picker = (f.period.picker(bounds.0), f.period.picker(bounds.1));
    let mut url = |cursor: Option<String>, before: Option<String>| {
        (f.cursor, f.before) = (cursor, before);
        url("/admin/events/", &f)
    };
    let older_url = paged.older.map(|c| url(Some(next_cursor(c, Order::Desc)), None));
    let newer_url = paged.newer.map(|c| url(None, Some(next_cursor(c, Order::Asc))));
    let newest_url = newer_url.as_ref().map(|_| url(None, None));
    let deleted = f.deleted.is_some();
    Ok(admin.page(
        "admin/events.html",
        minijinja::context! {
            f, events, older_url, newer_url, newest_url, error, deleted, count, choices, presets,
            from_local => picker.0, to_local => picker.1,
        },
    ))
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
