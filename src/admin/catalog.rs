//! Categories and event types: create, edit, deactivate; an event type's JSON
//! Schema is compiled before it is saved, and a preview shows which recent
//! errors of its category the change would let through.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;

use super::web::{audit, message, page_with, unavailable};
use crate::app::AppState;
use crate::domain::catalog::compile_schema;
use crate::domain::{validate_json, Catalog, EventTypeDef, Timestamp};
use crate::store::{AdminSession, Category, ErrorQuery, EventType, StoreError};

/// How many of a category's newest errors the preview tries.
const PREVIEW_ERRORS: usize = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/categories/", get(list).post(create))
        .route("/admin/categories/{id}/", get(edit).post(update))
        .route("/admin/categories/{id}/types/", axum::routing::post(save_type))
        .route("/admin/categories/{id}/types/{type_id}/", get(edit_type).post(save_type_with_id))
}

fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not found", "There is no such category or event type.")
}

fn category_view(c: &Category) -> minijinja::Value {
    let types: Vec<_> = c
        .types
        .iter()
        .map(|t| minijinja::context! { id => t.id, name => t.name, description => t.description, has_schema => t.schema.is_some() })
        .collect();
    minijinja::context! {
        id => c.id, name => c.name, description => c.description, active => c.active, strict => c.strict, types,
    }
}

async fn list(State(state): State<AppState>, Extension(session): Extension<AdminSession>) -> Response {
    list_page(&state, &session, None, &CategoryForm::default(), StatusCode::OK).await
}

async fn list_page(
    state: &AppState,
    session: &AdminSession,
    error: Option<String>,
    form: &CategoryForm,
    status: StatusCode,
) -> Response {
    match state.store.categories().await {
        Ok(categories) => {
            let categories: Vec<_> = categories.iter().map(category_view).collect();
            page_with(
                status,
                session,
                "admin/categories.html",
                minijinja::context! { categories, error, form => minijinja::Value::from_serialize(form) },
            )
        }
        Err(e) => unavailable(e),
    }
}

/// The category form: checkboxes are absent when unticked.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(default)]
struct CategoryForm {
    name: String,
    description: String,
    active: Option<String>,
    strict: Option<String>,
}

fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.trim() != name {
        return Err(format!("The {what} name must not be blank or start or end with spaces."));
    }
    if name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(format!("The {what} name is at most 128 characters, without control characters."));
    }
    Ok(())
}

async fn create(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Form(form): Form<CategoryForm>,
) -> Response {
    if let Err(e) = check_name(&form.name, "category") {
        return list_page(&state, &session, Some(e), &form, StatusCode::BAD_REQUEST).await;
    }
    let category = Category {
        id: None,
        name: form.name.clone(),
        description: form.description.trim().to_string(),
        active: form.active.is_some(),
        strict: form.strict.is_some(),
        types: Vec::new(),
    };
    match state.store.save_category(&category).await {
        Ok(id) => {
            audit(&state, &session, "create category", &category.name, String::new()).await;
            Redirect::to(&format!("/admin/categories/{id}/")).into_response()
        }
        Err(StoreError::Rejected(_)) => {
            let e = format!("A category named {:?} already exists.", form.name);
            list_page(&state, &session, Some(e), &form, StatusCode::BAD_REQUEST).await
        }
        Err(e) => unavailable(e),
    }
}

async fn find(state: &AppState, id: i64) -> Result<Option<Category>, StoreError> {
    Ok(state.store.categories().await?.into_iter().find(|c| c.id == Some(id)))
}

async fn edit(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Path(id): Path<i64>,
) -> Response {
    let c = found!(find(&state, id).await, not_found());
    category_page(&session, &c, None, &TypeForm::default(), StatusCode::OK)
}

fn category_page(
    session: &AdminSession,
    c: &Category,
    error: Option<String>,
    type_form: &TypeForm,
    status: StatusCode,
) -> Response {
    page_with(
        status,
        session,
        "admin/category.html",
        minijinja::context! { c => category_view(c), error, t => minijinja::Value::from_serialize(type_form) },
    )
}

async fn update(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Path(id): Path<i64>,
    Form(form): Form<CategoryForm>,
) -> Response {
    let mut category = found!(find(&state, id).await, not_found());
    let before = format!("active={} strict={}", category.active, category.strict);
    category.description = form.description.trim().to_string();
    category.active = form.active.is_some();
    category.strict = form.strict.is_some();
    match state.store.save_category(&category).await {
        Ok(_) => {
            let after = format!("active={} strict={}", category.active, category.strict);
            audit(&state, &session, "edit category", &category.name, format!("{before} → {after}")).await;
            Redirect::to(&format!("/admin/categories/{id}/?saved=1")).into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// The event-type form; `action` is `save`, `preview` or `delete`.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(default)]
struct TypeForm {
    name: String,
    description: String,
    schema: String,
    action: String,
}

/// The schema as typed: blank means none; otherwise it must be a valid JSON Schema.
fn parse_schema(text: &str) -> Result<Option<serde_json::Value>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("The schema is not JSON: {e}."))?;
    compile_schema(&value).map_err(|e| format!("The schema is not a valid JSON Schema: {e}."))?;
    Ok(Some(value))
}

async fn save_type(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Path(id): Path<i64>,
    Form(form): Form<TypeForm>,
) -> Response {
    handle_type(&state, &session, id, None, form).await
}

async fn save_type_with_id(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Path((id, type_id)): Path<(i64, i64)>,
    Form(form): Form<TypeForm>,
) -> Response {
    handle_type(&state, &session, id, Some(type_id), form).await
}

async fn edit_type(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Path((id, type_id)): Path<(i64, i64)>,
) -> Response {
    let category = found!(find(&state, id).await, not_found());
    let Some(t) = category.types.iter().find(|t| t.id == Some(type_id)) else { return not_found() };
    let form = TypeForm {
        name: t.name.clone(),
        description: t.description.clone(),
        schema: t.schema.as_ref().and_then(|s| serde_json::to_string_pretty(s).ok()).unwrap_or_default(),
        action: String::new(),
    };
    type_page(&session, &category, Some(type_id), &form, None, None, StatusCode::OK)
}

fn type_page(
    session: &AdminSession,
    c: &Category,
    type_id: Option<i64>,
    form: &TypeForm,
    error: Option<String>,
    preview: Option<minijinja::Value>,
    status: StatusCode,
) -> Response {
    page_with(
        status,
        session,
        "admin/event_type.html",
        minijinja::context! {
            c => category_view(c), type_id, t => minijinja::Value::from_serialize(form), error, preview,
        },
    )
}

async fn handle_type(
    state: &AppState,
    session: &AdminSession,
    id: i64,
    type_id: Option<i64>,
    form: TypeForm,
) -> Response {
    let category = found!(find(state, id).await, not_found());
    let existing = type_id.and_then(|tid| category.types.iter().find(|t| t.id == Some(tid)).cloned());
    if type_id.is_some() && existing.is_none() {
        return not_found();
    }
    let back = |error: String| {
        if type_id.is_none() && form.action != "preview" {
            category_page(session, &category, Some(error), &form, StatusCode::BAD_REQUEST)
        } else {
            type_page(session, &category, type_id, &form, Some(error), None, StatusCode::BAD_REQUEST)
        }
    };
    if form.action == "delete" {
        let Some(t) = existing else { return not_found() };
        return match state.store.delete_event_type(type_id.unwrap_or_default()).await {
            Ok(_) => {
                audit(state, session, "delete event type", &format!("{}/{}", category.name, t.name), String::new())
                    .await;
                Redirect::to(&format!("/admin/categories/{id}/")).into_response()
            }
            Err(e) => unavailable(e),
        };
    }
    let name = existing.as_ref().map(|t| t.name.clone()).unwrap_or_else(|| form.name.clone());
    if let Err(e) = check_name(&name, "event type") {
        return back(e);
    }
    let schema = match parse_schema(&form.schema) {
        Ok(s) => s,
        Err(e) => return back(e),
    };
    let event_type = EventType {
        id: type_id,
        category_id: id,
        name: name.clone(),
        description: form.description.trim().to_string(),
        schema,
    };
    if form.action == "preview" {
        return match preview(state, &category, &event_type).await {
            Ok(p) => {
                let form = TypeForm { name, ..form };
                type_page(session, &category, type_id, &form, None, Some(p), StatusCode::OK)
            }
            Err(e) => unavailable(e),
        };
    }
    match state.store.save_event_type(&event_type).await {
        Ok(saved) => {
            let detail =
                event_type.schema.as_ref().map(|s| format!("schema {s}")).unwrap_or_else(|| "no schema".into());
            let action = if type_id.is_some() { "edit event type" } else { "create event type" };
            audit(state, session, action, &format!("{}/{}", category.name, name), detail).await;
            Redirect::to(&format!("/admin/categories/{id}/types/{saved}/?saved=1")).into_response()
        }
        Err(StoreError::Rejected(_)) => back(format!("{:?} already has an event type named {name:?}.", category.name)),
        Err(e) => unavailable(e),
    }
}

/// Which of the category's newest errors would pass with this event type as
/// proposed (everything else as it is now).
async fn preview(state: &AppState, category: &Category, proposed: &EventType) -> Result<minijinja::Value, StoreError> {
    let (categories, mut types) = state.store.catalog().await?;
    types.retain(|t| !(t.category == category.name && t.name == proposed.name));
    types.push(EventTypeDef {
        category: category.name.clone(),
        name: proposed.name.clone(),
        schema: proposed.schema.clone(),
    });
    let catalog = Catalog::new(categories, types).map_err(|e| StoreError::Setup(e.to_string()))?;
    let query = ErrorQuery { category: Some(category.name.clone()), limit: PREVIEW_ERRORS, ..Default::default() };
    let errors = state.store.errors(&query).await?.items;
    let rules = state.settings.rules();
    let mut accepted = Vec::new();
    let mut still = 0;
    for e in &errors {
        let ok = validate_json(&e.raw, e.event_id, e.received_at, &catalog, &rules).is_ok();
        if ok {
            let codes: Vec<&str> = e.reasons.iter().map(|r| r.code.as_str()).collect();
            accepted.push(minijinja::context! {
                id => e.id, event_id => e.event_id.to_string(), received_at => Timestamp::from(e.received_at).to_string(),
                codes => codes.join(", "),
            });
        } else {
            still += 1;
        }
    }
    Ok(minijinja::context! { tried => errors.len(), accepted_count => accepted.len(), accepted, still })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_checked_before_saving() {
        assert_eq!(parse_schema("  ").unwrap(), None);
        assert!(parse_schema(r#"{"type": "object"}"#).unwrap().is_some());
        assert!(parse_schema("{not json").unwrap_err().contains("not JSON"));
        assert!(parse_schema(r#"{"type": "no such type"}"#).unwrap_err().contains("not a valid JSON Schema"));
    }

    #[test]
    fn names_must_be_clean() {
        assert!(check_name("page interaction", "category").is_ok());
        assert!(check_name(" padded", "category").is_err());
        assert!(check_name("", "category").is_err());
        assert!(check_name("a\u{7}b", "category").is_err());
    }
}
