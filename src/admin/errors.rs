//! Event errors: the list with filters, an error's detail, deletion, and
//! replay — one (optionally with an edited payload), the selected ones, or all
//! that match a filter — through the workers' own validation, keeping each
//! error's `event_id`. The store turns an error into an event in one
//! transaction that deletes the error, so a replay counts and stores each error
//! once however often it is pressed.

use std::time::Instant;

use axum::extract::{Form, Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::events::text;
use super::kit::{Admin, AdminError, AdminResult};
use super::web::pretty;
use crate::app::AppState;
use crate::domain::{validate_json, Catalog, Timestamp};
use crate::paging::time_param;
use crate::store::{ErrorQuery, NewEvent, Replay, StoreError, StoredError};

/// Errors per page, and per replay round.
const PAGE: usize = 50;
const REPLAY_ROUND: usize = 500;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/errors/", get(list))
        .route("/admin/errors/replay/", post(replay_many))
        .route("/admin/errors/delete/", post(delete_many))
        .route("/admin/errors/{id}/", get(detail))
        .route("/admin/errors/{id}/replay/", post(replay_one))
        .route("/admin/errors/{id}/delete/", get(delete_form).post(delete_one))
}

/// Filters of the errors page.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct ErrorFilters {
    reason: String,
    category: String,
    from: String,
    to: String,
}

impl ErrorFilters {
    fn query(&self, limit: usize, after: Option<i64>) -> Result<ErrorQuery, String> {
        Ok(ErrorQuery {
            session_id: None,
            order: crate::store::Order::Desc,
            ids: Vec::new(),
            reason: text(&self.reason),
            category: text(&self.category),
            from: time_param("from", text(&self.from).as_deref()).map_err(|e| e.to_string())?,
            to: time_param("to", text(&self.to).as_deref()).map_err(|e| e.to_string())?,
            limit,
            after,
        })
    }

    fn url(&self, extra: &[(&str, String)]) -> String {
        let mut pairs: Vec<(&str, String)> =
            [("reason", &self.reason), ("category", &self.category), ("from", &self.from), ("to", &self.to)]
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k, v.clone()))
                .collect();
        pairs.extend(extra.iter().cloned());
        format!("/admin/errors/?{}", serde_urlencoded::to_string(&pairs).unwrap_or_default())
    }
}

/// What the list page shows after an action.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListParams {
    #[serde(flatten)]
    f: ErrorFilters,
    after: Option<i64>,
    replayed: Option<u64>,
    failing: Option<u64>,
    deleted: Option<u64>,
    more_after: Option<i64>,
    none_selected: Option<u8>,
}

/// Reason codes offered in the filter (any code can be typed).
const KNOWN_REASONS: &[&str] = &[
    "unknown_category",
    "inactive_category",
    "undeclared_name",
    "schema",
    "required",
    "wrong_type",
    "invalid_format",
    "in_future",
    "too_long",
    "invalid_json",
    "not_an_event",
    "too_deep",
    "processing_failed",
    "store_rejected",
];

fn error_row(e: &StoredError) -> minijinja::Value {
    let codes: Vec<&str> = e.reasons.iter().map(|r| r.code.as_str()).collect();
    minijinja::context! {
        id => e.id,
        event_id => e.event_id.to_string(),
        received_at => Timestamp::from(e.received_at).to_string(),
        category => e.category,
        codes => codes.join(", "),
        application => e.application,
        edited_by => e.edited_by,
        preview => e.raw.chars().take(120).collect::<String>(),
    }
}

async fn list(admin: Admin, Query(p): Query<ListParams>) -> AdminResult {
    let (query, error) = match p.f.query(PAGE, p.after) {
        Ok(q) => (q, None),
        Err(e) => (ErrorFilters::default().query(PAGE, None).unwrap_or_default(), Some(e)),
    };
    let found = admin.state.store.errors(&query).await?;
    let errors: Vec<_> = found.items.iter().map(error_row).collect();
    let next_url = found.next.map(|id| p.f.url(&[("after", id.to_string())]));
    let continue_url = p.more_after.map(|id| id.to_string());
    Ok(admin.page(
        "admin/errors.html",
        minijinja::context! {
            f => p.f, errors, next_url, error, known_reasons => KNOWN_REASONS,
            replayed => p.replayed, failing => p.failing, deleted => p.deleted, continue_after => continue_url,
            none_selected => p.none_selected.is_some(),
        },
    ))
}

/// The event error with this id, or the not-found page.
async fn find(admin: &Admin, id: i64) -> Result<StoredError, AdminError> {
    let found = admin.state.store.errors(&ErrorQuery { ids: vec![id], limit: 1, ..Default::default() }).await?;
    found.items.into_iter().next().ok_or(AdminError::NotFound("event error (it may have been replayed or deleted)"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DetailParams {
    failing: Option<u8>,
}

async fn detail(admin: Admin, Path(id): Path<i64>, Query(p): Query<DetailParams>) -> AdminResult {
    let e = find(&admin, id).await?;
    Ok(render_detail(&admin, &e, None, p.failing.is_some(), StatusCode::OK))
}

fn render_detail(admin: &Admin, e: &StoredError, payload: Option<&str>, failing: bool, status: StatusCode) -> Response {
    let reasons: Vec<_> = e
        .reasons
        .iter()
        .map(|r| minijinja::context! { field => r.field, code => r.code, message => r.message })
        .collect();
    admin.page_with(
        status,
        "admin/error.html",
        minijinja::context! {
            e => error_row(e),
            raw => pretty(&e.raw),
            original => e.original_raw.as_deref().map(pretty),
            payload => payload.map(str::to_string).unwrap_or_else(|| pretty(&e.raw)),
            reasons, failing,
        },
    )
}

/// Replays errors against the catalog as it is now, in one store transaction;
/// `edited` replaces the payload (the admin's edit of the one error replayed).
/// Returns (turned into events, still failing).
async fn replay(admin: &Admin, errors: &[StoredError], edited: Option<&str>) -> Result<(u64, u64), StoreError> {
    let state = &admin.state;
    if errors.is_empty() {
        return Ok((0, 0));
    }
    // Fresh from the store, not a cached copy: a schema fixed a second ago counts.
    let (categories, types) = state.store.catalog().await?;
    let catalog = Catalog::new(categories, types).map_err(|e| StoreError::Setup(e.to_string()))?;
    let rules = state.settings.rules.clone();
    let replays: Vec<Replay> = errors
        .iter()
        .map(|e| {
            let edited_raw = edited.map(str::to_string);
            let json = edited_raw.as_deref().unwrap_or(&e.raw);
            // Judged as of its arrival, as the worker judged it then.
            let outcome = validate_json(json, e.event_id, e.received_at, &catalog, &rules).map(|event| NewEvent {
                event,
                received_at: e.received_at,
                application: e.application.clone(),
            });
            Replay { error_id: e.id, edited_raw, outcome }
        })
        .collect();
    let failing = replays.iter().filter(|r| r.outcome.is_err()).count() as u64;
    let replayed = state.store.resolve_errors(&replays, &admin.session.username).await?;
    for r in replays.iter().filter(|r| r.edited_raw.is_some()) {
        let e = errors.iter().find(|e| e.id == r.error_id);
        let (object, before) = e.map(|e| (e.event_id.to_string(), e.raw.clone())).unwrap_or_default();
        let result = if r.outcome.is_ok() { "now an event" } else { "still failing" };
        let detail = serde_json::json!({"result": result, "before": before, "after": r.edited_raw}).to_string();
        admin.audit("replay edited payload", &object, detail).await;
    }
    Ok((replayed, failing))
}

/// Form of the list page's buttons: the selected ids, or all that match.
#[derive(Debug, Default)]
struct BulkForm {
    ids: Vec<i64>,
    all: bool,
    f: ErrorFilters,
    after: Option<i64>,
}

impl BulkForm {
    fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut form = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "ids" => form.ids.extend(v.parse::<i64>().ok()),
                "all" => form.all = v == "1",
                "reason" => form.f.reason = v,
                "category" => form.f.category = v,
                "from" => form.f.from = v,
                "to" => form.f.to = v,
                "after" => form.after = v.parse().ok(),
                _ => {}
            }
        }
        form
    }
}

async fn replay_many(admin: Admin, Form(pairs): Form<Vec<(String, String)>>) -> AdminResult {
    let form = BulkForm::from_pairs(pairs);
    let (mut replayed, mut failing) = (0, 0);
    let mut more_after = None;
    if form.all {
        // All that match, oldest work first within each round; rounds go on
        // until done or half the request timeout is spent, then the page
        // offers to continue where it stopped.
        let budget = admin.state.settings.http.request_timeout / 2;
        let started = Instant::now();
        let mut after = form.after;
        loop {
            let query = form.f.query(REPLAY_ROUND, after).map_err(AdminError::BadRequest)?;
            let round = admin.state.store.errors(&query).await?;
            let (r, f) = replay(&admin, &round.items, None).await?;
            (replayed, failing) = (replayed + r, failing + f);
            after = round.items.last().map(|e| e.id);
            if round.next.is_none() {
                break;
            }
            if started.elapsed() > budget {
                more_after = after;
                break;
            }
        }
        let detail = format!(
            "filter {}: {replayed} replayed, {failing} still failing",
            serde_json::to_string(&form.f).unwrap_or_default()
        );
        admin.audit("replay all matching", "event errors", detail).await;
    } else if form.ids.is_empty() {
        return Ok(Redirect::to(&form.f.url(&[("none_selected", "1".into())])).into_response());
    } else {
        let query = ErrorQuery { ids: form.ids.clone(), limit: form.ids.len(), ..Default::default() };
        let found = admin.state.store.errors(&query).await?;
        (replayed, failing) = replay(&admin, &found.items, None).await?;
        let detail = format!("{} selected: {replayed} replayed, {failing} still failing", found.items.len());
        admin.audit("replay selected", "event errors", detail).await;
    }
    let mut extra = vec![("replayed", replayed.to_string()), ("failing", failing.to_string())];
    extra.extend(more_after.map(|id| ("more_after", id.to_string())));
    Ok(Redirect::to(&form.f.url(&extra)).into_response())
}

async fn delete_many(admin: Admin, Form(pairs): Form<Vec<(String, String)>>) -> AdminResult {
    let form = BulkForm::from_pairs(pairs);
    if form.ids.is_empty() {
        return Ok(Redirect::to(&form.f.url(&[("none_selected", "1".into())])).into_response());
    }
    let deleted = admin.state.store.delete_errors(&form.ids).await?;
    admin.audit("delete errors", "event errors", format!("{deleted} deleted: ids {:?}", form.ids)).await;
    Ok(Redirect::to(&form.f.url(&[("deleted", deleted.to_string())])).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReplayOneForm {
    payload: Option<String>,
}

async fn replay_one(admin: Admin, Path(id): Path<i64>, Form(form): Form<ReplayOneForm>) -> AdminResult {
    let error = find(&admin, id).await?;
    // Browsers send textarea line breaks as CRLF. The payload as shown, sent
    // back unchanged, is no edit.
    let edited = form.payload.map(|p| p.replace("\r\n", "\n")).filter(|p| *p != error.raw && *p != pretty(&error.raw));
    if let Some(p) = edited.as_deref() {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(p) {
            let mut shown = error.clone();
            shown.reasons = vec![crate::domain::Reason::new(
                "body",
                "invalid_json",
                format!("the edited payload is not JSON: {e}"),
            )];
            return Ok(render_detail(&admin, &shown, Some(p), true, StatusCode::BAD_REQUEST));
        }
    }
    let (replayed, _) = replay(&admin, std::slice::from_ref(&error), edited.as_deref()).await?;
    if edited.is_none() {
        // An edited replay is in the log already, with the payload before and after.
        let result = if replayed == 1 { "now an event" } else { "still failing" };
        admin.audit("replay", &error.event_id.to_string(), result.into()).await;
    }
    Ok(match replayed {
        1 => Redirect::to(&format!("/admin/events/{}/", error.event_id)).into_response(),
        _ => Redirect::to(&format!("/admin/errors/{id}/?failing=1")).into_response(),
    })
}

async fn delete_form(admin: Admin, Path(id): Path<i64>) -> Response {
    admin.confirm(
        "Delete this event error?",
        "The error and its payload will be deleted for good; it can no longer be replayed.",
        &format!("/admin/errors/{id}/delete/"),
        &format!("/admin/errors/{id}/"),
    )
}

async fn delete_one(admin: Admin, Path(id): Path<i64>) -> AdminResult {
    let error = find(&admin, id).await?;
    admin.state.store.delete_errors(&[id]).await?;
    admin.audit("delete error", &error.event_id.to_string(), error.raw.chars().take(2000).collect()).await;
    Ok(Redirect::to("/admin/errors/?deleted=1").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_form_reads_repeated_ids_and_filters() {
        let pairs = [("ids", "3"), ("ids", "5"), ("ids", "x"), ("category", "shop"), ("all", "0")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let form = BulkForm::from_pairs(pairs.to_vec());
        assert_eq!(form.ids, [3, 5]);
        assert!(!form.all);
        assert_eq!(form.f.url(&[]), "/admin/errors/?category=shop");
    }
}
