//! Categories and event types: create, edit, deactivate; an event type's JSON
//! Schema is compiled before it is saved, and a preview shows which recent
//! errors of its category the change would let through.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Form, Path};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::kit::{Admin, AdminError, AdminResult};
use super::view::volumes;
use crate::app::AppState;
use crate::domain::catalog::compile_schema;
use crate::domain::{validate_json, Catalog, EventTypeDef, Timestamp};
use crate::lifecycle::TallyFilter;
use crate::store::{Category, ErrorQuery, EventType, StoreError};
use crate::store::{StatsGroup, StatsKind};

/// How many of a category's newest errors the preview tries.
const PREVIEW_ERRORS: usize = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/categories/", get(list).post(create))
        .route("/admin/categories/{id}/", get(edit).post(update))
        .route("/admin/categories/{id}/types/", axum::routing::post(save_type))
        .route("/admin/categories/{id}/types/{type_id}/", get(edit_type).post(save_type_with_id))
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

async fn list(admin: Admin) -> AdminResult {
    list_page(&admin, None, &CategoryForm::default(), StatusCode::OK).await
}

async fn list_page(admin: &Admin, error: Option<String>, form: &CategoryForm, status: StatusCode) -> AdminResult {
    let now = admin.state.clock.now();
    let store = admin.state.store.as_ref();
    let volumes = volumes(store, StatsKind::Events, StatsGroup::Category, TallyFilter::default(), now).await?;
    let categories: Vec<_> = store
        .categories()
        .await?
        .iter()
        .map(|c| minijinja::context! { v => volumes.get(&c.name).cloned(), ..category_view(c) })
        .collect();
    Ok(admin.page_with(
        status,
        "admin/categories.html",
        minijinja::context! { categories, error, form => minijinja::Value::from_serialize(form) },
    ))
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

async fn create(admin: Admin, Form(form): Form<CategoryForm>) -> AdminResult {
    if let Err(e) = check_name(&form.name, "category") {
        return list_page(&admin, Some(e), &form, StatusCode::BAD_REQUEST).await;
    }
    let category = Category {
        id: None,
        name: form.name.clone(),
        description: form.description.trim().to_string(),
        active: form.active.is_some(),
        strict: form.strict.is_some(),
        types: Vec::new(),
    };
    let id = match admin.state.store.save_category(&category).await {
        Err(StoreError::Rejected(_)) => {
            let e = format!("A category named {:?} already exists.", form.name);
            return list_page(&admin, Some(e), &form, StatusCode::BAD_REQUEST).await;
        }
        other => other?,
    };
    admin.audit("create category", &category.name, String::new()).await;
    Ok(Redirect::to(&format!("/admin/categories/{id}/")).into_response())
}

/// The category with this id, or the not-found page.
async fn find(admin: &Admin, id: i64) -> Result<Category, AdminError> {
    let categories = admin.state.store.categories().await?;
    categories.into_iter().find(|c| c.id == Some(id)).ok_or(AdminError::NotFound("category"))
}

async fn edit(admin: Admin, Path(id): Path<i64>) -> AdminResult {
    let c = find(&admin, id).await?;
    let filter = TallyFilter { category: Some(c.name.clone()), ..Default::default() };
    let now = admin.state.clock.now();
    let volumes = volumes(admin.state.store.as_ref(), StatsKind::Events, StatsGroup::Name, filter, now).await?;
    Ok(category_page(&admin, &c, None, &TypeForm::default(), StatusCode::OK, &volumes))
}

/// A category's page; `volumes` are its names' (see [`volumes`]), empty
/// where the page is shown again after a mistake in a form.
fn category_page(
    admin: &Admin,
    c: &Category,
    error: Option<String>,
    type_form: &TypeForm,
    status: StatusCode,
    volumes: &HashMap<String, minijinja::Value>,
) -> Response {
    let prefix = format!("{}/", c.name);
    let by_name: BTreeMap<&str, &minijinja::Value> =
        volumes.iter().filter_map(|(key, v)| Some((key.strip_prefix(&prefix)?, v))).collect();
    // Names this category's events carried lately that are not declared.
    let undeclared: Vec<_> = by_name
        .iter()
        .filter(|(name, _)| !c.types.iter().any(|t| t.name == **name))
        .map(|(name, v)| minijinja::context! { name, v => (*v).clone() })
        .collect();
    admin.page_with(
        status,
        "admin/category.html",
        minijinja::context! {
            c => category_view(c), error, t => minijinja::Value::from_serialize(type_form),
            type_volumes => by_name, undeclared,
        },
    )
}

async fn update(admin: Admin, Path(id): Path<i64>, Form(form): Form<CategoryForm>) -> AdminResult {
    let mut category = find(&admin, id).await?;
    let before = format!("active={} strict={}", category.active, category.strict);
    category.description = form.description.trim().to_string();
    category.active = form.active.is_some();
    category.strict = form.strict.is_some();
    admin.state.store.save_category(&category).await?;
    let after = format!("active={} strict={}", category.active, category.strict);
    admin.audit("edit category", &category.name, format!("{before} → {after}")).await;
    Ok(Redirect::to(&format!("/admin/categories/{id}/?saved=1")).into_response())
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

async fn save_type(admin: Admin, Path(id): Path<i64>, Form(form): Form<TypeForm>) -> AdminResult {
    handle_type(&admin, id, None, form).await
}

async fn save_type_with_id(
    admin: Admin,
    Path((id, type_id)): Path<(i64, i64)>,
    Form(form): Form<TypeForm>,
) -> AdminResult {
    handle_type(&admin, id, Some(type_id), form).await
}

async fn edit_type(admin: Admin, Path((id, type_id)): Path<(i64, i64)>) -> AdminResult {
    let category = find(&admin, id).await?;
    let t = category.types.iter().find(|t| t.id == Some(type_id)).ok_or(AdminError::NotFound("event type"))?;
    let form = TypeForm {
        name: t.name.clone(),
        description: t.description.clone(),
        schema: t.schema.as_ref().and_then(|s| serde_json::to_string_pretty(s).ok()).unwrap_or_default(),
        action: String::new(),
    };
    Ok(type_page(&admin, &category, Some(type_id), &form, None, None, StatusCode::OK))
}

fn type_page(
    admin: &Admin,
    c: &Category,
    type_id: Option<i64>,
    form: &TypeForm,
    error: Option<String>,
    preview: Option<minijinja::Value>,
    status: StatusCode,
) -> Response {
    admin.page_with(
        status,
        "admin/event_type.html",
        minijinja::context! {
            c => category_view(c), type_id, t => minijinja::Value::from_serialize(form), error, preview,
        },
    )
}

async fn handle_type(admin: &Admin, id: i64, type_id: Option<i64>, form: TypeForm) -> AdminResult {
    let category = find(admin, id).await?;
    let existing = type_id.and_then(|tid| category.types.iter().find(|t| t.id == Some(tid)).cloned());
    if type_id.is_some() && existing.is_none() {
        return Err(AdminError::NotFound("event type"));
    }
    let back = |error: String| {
        Ok(if type_id.is_none() && form.action != "preview" {
            category_page(admin, &category, Some(error), &form, StatusCode::BAD_REQUEST, &HashMap::new())
        } else {
            type_page(admin, &category, type_id, &form, Some(error), None, StatusCode::BAD_REQUEST)
        })
    };
    if form.action == "delete" {
        let t = existing.ok_or(AdminError::NotFound("event type"))?;
        admin.state.store.delete_event_type(type_id.unwrap_or_default()).await?;
        admin.audit("delete event type", &format!("{}/{}", category.name, t.name), String::new()).await;
        return Ok(Redirect::to(&format!("/admin/categories/{id}/")).into_response());
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
        let p = preview(&admin.state, &category, &event_type).await?;
        let form = TypeForm { name, ..form };
        return Ok(type_page(admin, &category, type_id, &form, None, Some(p), StatusCode::OK));
    }
    let saved = match admin.state.store.save_event_type(&event_type).await {
        Err(StoreError::Rejected(_)) => {
            return back(format!("{:?} already has an event type named {name:?}.", category.name))
        }
        other => other?,
    };
    let detail = event_type.schema.as_ref().map(|s| format!("schema {s}")).unwrap_or_else(|| "no schema".into());
    let action = if type_id.is_some() { "edit event type" } else { "create event type" };
    admin.audit(action, &format!("{}/{}", category.name, name), detail).await;
    Ok(Redirect::to(&format!("/admin/categories/{id}/types/{saved}/?saved=1")).into_response())
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
    let rules = state.settings.rules.clone();
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
