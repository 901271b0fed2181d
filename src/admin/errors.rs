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

use chrono::{DateTime, Utc};

use super::events::text;
use super::kit::{Admin, AdminError, AdminResult};
use super::view::{both_ways, choices, link, matching, pairs, Period, COUNT_CAP};
use super::web::pretty;
use crate::app::AppState;
use crate::domain::{validate_json, Catalog, Timestamp};
use crate::lifecycle::TallyFilter;
use crate::store::{ErrorQuery, NewEvent, Replay, StatsGroup, StatsKind, StoreError, StoredError};

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
        .route("/admin/errors/{id}/fix/", post(fix))
        .route("/admin/errors/{id}/delete/", get(delete_form).post(delete_one))
}

/// Filters of the errors page, as its form and links carry them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct ErrorFilters {
    reason: String,
    category: String,
    #[serde(flatten)]
    period: Period,
}

impl ErrorFilters {
    fn query(&self, now: DateTime<Utc>, limit: usize, after: Option<i64>) -> Result<ErrorQuery, String> {
        let (from, to) = self.period.bounds(now)?;
        Ok(ErrorQuery {
            session_id: None,
            order: crate::store::Order::Desc,
            ids: Vec::new(),
            reason: text(&self.reason),
            category: text(&self.category),
            from,
            to,
            limit,
            after,
        })
    }

    fn url(&self, extra: &[(&str, String)]) -> String {
        let mut query = pairs(self);
        query.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        link("/admin/errors/", &query)
    }

    /// The filters but the period.
    fn others(&self) -> Self {
        Self { period: Period::default(), ..self.clone() }
    }
}

/// What the list page shows after an action.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListParams {
    #[serde(flatten)]
    f: ErrorFilters,
    after: Option<i64>,
    before: Option<i64>,
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

/// An error's reason codes, as the pages show them: `schema, required`.
pub(super) fn codes(e: &StoredError) -> String {
    e.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(", ")
}

/// The start of a raw payload, as the lists show it.
pub(super) fn preview(raw: &str) -> String {
    raw.chars().take(160).collect()
}

fn error_row(e: &StoredError) -> minijinja::Value {
    minijinja::context! {
        id => e.id,
        event_id => e.event_id.to_string(),
        received_at => Timestamp::from(e.received_at).to_string(),
        category => e.category,
        codes => codes(e),
        application => e.application,
        edited_by => e.edited_by,
        session_id => crate::store::session_of(&e.raw),
        name => crate::store::name_of(&e.raw),
        preview => preview(&e.raw),
    }
}

async fn list(admin: Admin, Query(p): Query<ListParams>) -> AdminResult {
    let now = admin.state.clock.now();
    let (query, error) = match p.f.query(now, PAGE, None) {
        Ok(q) => (q, None),
        Err(e) => (ErrorFilters::default().query(now, PAGE, None).unwrap_or_default(), Some(e)),
    };
    let store = admin.state.store.as_ref();
    let fetch = |order, after| {
        let q = ErrorQuery { order, after, ..query.clone() };
        async move { store.errors(&q).await }
    };
    let paged = both_ways(p.after, p.before, fetch, |e| e.id).await?;
    let errors: Vec<_> = paged.items.iter().map(error_row).collect();
    let count = matching(store.count_errors(&query, COUNT_CAP).await?, "event error", "event errors");
    let older_url = paged.older.map(|id| p.f.url(&[("after", id.to_string())]));
    let newer_url = paged.newer.map(|id| p.f.url(&[("before", id.to_string())]));
    let newest_url = newer_url.as_ref().map(|_| p.f.url(&[]));
    let bounds = (query.from, query.to);
    let filter =
        |category: bool| TallyFilter { category: text(&p.f.category).filter(|_| category), ..Default::default() };
    let kind = StatsKind::Errors;
    let mut reasons = choices(store, kind, StatsGroup::Reason, bounds, filter(true), &p.f.reason).await?;
    // The known codes nothing was counted for yet, after those that were.
    let counted: Vec<String> = reasons.iter().filter_map(|c| c.get_attr("value").ok().map(|v| v.to_string())).collect();
    reasons.extend(KNOWN_REASONS.iter().filter(|r| !counted.iter().any(|c| c == *r)).map(|r| {
        minijinja::context! { value => r, label => format!("{r} (0)"), selected => false }
    }));
    let categories = choices(store, kind, StatsGroup::Category, bounds, filter(false), &p.f.category).await?;
    let presets = p.f.period.preset_links("/admin/errors/", &p.f.others(), "");
    Ok(admin.page(
        "admin/errors.html",
        minijinja::context! {
            // The filters as hidden fields of the forms that act on what they match.
            fields => pairs(&p.f), f => p.f, errors, older_url, newer_url, newest_url, error, count, reasons,
            categories, presets, from_local => p.f.period.picker(bounds.0), to_local => p.f.period.picker(bounds.1),
            replayed => p.replayed, failing => p.failing, deleted => p.deleted,
            continue_after => p.more_after.map(|id| id.to_string()), none_selected => p.none_selected.is_some(),
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
    fixed: Option<String>,
}

async fn detail(admin: Admin, Path(id): Path<i64>, Query(p): Query<DetailParams>) -> AdminResult {
    let e = find(&admin, id).await?;
    Ok(render_detail(&admin, &e, None, p.failing.is_some(), StatusCode::OK, p.fixed))
}

/// A change to the catalog that would let an error through, offered on its
/// page: what to do, and the button's words.
fn fixes(e: &StoredError) -> Vec<minijinja::Value> {
    let category = e.category.clone().unwrap_or_default();
    let name = crate::store::name_of(&e.raw).unwrap_or_default();
    let mut out: Vec<(&str, String)> = Vec::new();
    for r in &e.reasons {
        let fix = match r.code.as_str() {
            "unknown_category" if !category.is_empty() => ("create_category", format!("Create category “{category}”")),
            "inactive_category" if !category.is_empty() => {
                ("activate_category", format!("Activate category “{category}”"))
            }
            "undeclared_name" if !category.is_empty() && !name.is_empty() => {
                ("add_type", format!("Add event type “{name}” to “{category}”"))
            }
            _ => continue,
        };
        if !out.iter().any(|(k, _)| *k == fix.0) {
            out.push(fix);
        }
    }
    out.into_iter().map(|(fix, label)| minijinja::context! { fix, label }).collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FixForm {
    fix: String,
}

/// One click from an error to the catalog change that lets it through
/// (a category created or activated, an event type added), then back to the
/// error to replay it. Nothing is replayed here: the admin sees the change first.
async fn fix(admin: Admin, Path(id): Path<i64>, Form(form): Form<FixForm>) -> AdminResult {
    let e = find(&admin, id).await?;
    let category = e.category.clone().filter(|c| !c.is_empty()).ok_or_else(|| {
        AdminError::BadRequest("This error's payload names no category, so there is nothing to create.".into())
    })?;
    let store = &admin.state.store;
    let existing = store.categories().await?.into_iter().find(|c| c.name == category);
    let done = match (form.fix.as_str(), existing) {
        ("create_category", None) => {
            let new = crate::store::Category {
                name: category.clone(),
                active: true,
                description: format!("Created from event error {id}."),
                ..Default::default()
            };
            store.save_category(&new).await?;
            admin.audit("create category", &category, format!("from event error {id}")).await;
            format!("Category “{category}” was created.")
        }
        ("create_category", Some(_)) => format!("Category “{category}” exists already."),
        ("activate_category", Some(mut c)) => {
            c.active = true;
            store.save_category(&c).await?;
            admin.audit("edit category", &category, format!("active=true, from event error {id}")).await;
            format!("Category “{category}” is active now.")
        }
        ("add_type", Some(c)) => {
            let name = crate::store::name_of(&e.raw)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| AdminError::BadRequest("This error's payload names no event type.".into()))?;
            if !c.types.iter().any(|t| t.name == name) {
                let t = crate::store::EventType {
                    id: None,
                    category_id: c.id.unwrap_or_default(),
                    name: name.clone(),
                    description: format!("Added from event error {id}."),
                    schema: None,
                };
                store.save_event_type(&t).await?;
                admin.audit("add event type", &format!("{category}/{name}"), format!("from event error {id}")).await;
            }
            format!("Event type “{name}” is declared in “{category}” now.")
        }
        ("activate_category" | "add_type", None) => format!("There is no category “{category}” yet: create it first."),
        _ => return Err(AdminError::BadRequest("Unknown fix.".into())),
    };
    let done = crate::templates::percent_encode(&done, b"-_.~ ");
    Ok(Redirect::to(&format!("/admin/errors/{id}/?fixed={done}")).into_response())
}

/// An error's page; `payload` is an edit to show instead of the stored one,
/// `fixed` the notice of a catalog fix just made.
fn render_detail(
    admin: &Admin,
    e: &StoredError,
    payload: Option<&str>,
    failing: bool,
    status: StatusCode,
    fixed: Option<String>,
) -> Response {
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
            original => e.original_raw.as_deref().map(pretty),
            payload => payload.map(str::to_string).unwrap_or_else(|| pretty(&e.raw)),
            reasons, failing, fixes => fixes(e), fixed,
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
    confirmed: bool,
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
                "range" => form.f.period.range = v,
                "from" => form.f.period.from = v,
                "to" => form.f.period.to = v,
                "tz" => form.f.period.tz = v,
                "confirmed" => form.confirmed = v == "1",
                "after" => form.after = v.parse().ok(),
                _ => {}
            }
        }
        form
    }
}

async fn replay_many(admin: Admin, Form(pairs): Form<Vec<(String, String)>>) -> AdminResult {
    let form = BulkForm::from_pairs(pairs.clone());
    let now = admin.state.clock.now();
    if !form.all && form.ids.is_empty() {
        return Ok(Redirect::to(&form.f.url(&[("none_selected", "1".into())])).into_response());
    }
    if !form.confirmed {
        // Say how many first: a replay cannot be taken back.
        let n = if form.all {
            let query = form.f.query(now, 0, None).map_err(AdminError::BadRequest)?;
            admin.state.store.count_errors(&query, COUNT_CAP).await?
        } else {
            form.ids.len() as u64
        };
        let what = matching(n, "event error", "event errors");
        let mut fields: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k != "csrf_token").collect();
        fields.push(("confirmed".into(), "1".into()));
        let text = format!(
            "{what} will be run through today's validation again, keeping their event ids. Those that pass \
             become events and leave this list; the others stay, with their new reasons. This cannot be undone."
        );
        let heading = if form.all { format!("Replay all {what}?") } else { format!("Replay {what}?") };
        return Ok(admin.confirm_with(&heading, &text, "/admin/errors/replay/", &form.f.url(&[]), fields, "Replay"));
    }
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
            let query = form.f.query(now, REPLAY_ROUND, after).map_err(AdminError::BadRequest)?;
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
            return Ok(render_detail(&admin, &shown, Some(p), true, StatusCode::BAD_REQUEST, None));
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
