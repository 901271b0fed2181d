//! Applications: list, create, edit origins, rotate the key, revoke and
//! reactivate. Changes reach this node's ingest at once and other nodes within
//! `catalog_refresh_secs`.

use axum::extract::{Form, Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::kit::{Admin, AdminError, AdminResult};
use super::web::percent_encode;
use crate::app::AppState;
use crate::domain::application::{check_app_name, new_key, parse_origins};
use crate::domain::Application;
use crate::store::StoreError;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/applications/", get(list).post(create))
        .route("/admin/applications/{name}/", get(detail))
        .route("/admin/applications/{name}/origins/", post(set_origins))
        .route("/admin/applications/{name}/rotate/", get(rotate_form).post(rotate))
        .route("/admin/applications/{name}/revoke/", get(revoke_form).post(revoke))
        .route("/admin/applications/{name}/activate/", post(activate))
}

fn url_of(name: &str) -> String {
    format!("/admin/applications/{}/", percent_encode(name, b"-_.~"))
}

fn view(a: &Application) -> minijinja::Value {
    minijinja::context! {
        name => a.name, key => a.key, origins => a.origins, active => a.active,
        kind => if a.is_server() { "server" } else { "browser" }, url => url_of(&a.name),
    }
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(default)]
struct CreateForm {
    name: String,
    origins: String,
}

async fn list(admin: Admin) -> AdminResult {
    list_page(&admin, None, &CreateForm::default(), StatusCode::OK).await
}

async fn list_page(admin: &Admin, error: Option<String>, form: &CreateForm, status: StatusCode) -> AdminResult {
    let store = admin.state.store.as_ref();
    let now = admin.state.clock.now();
    let volumes = super::view::volumes(
        store,
        crate::store::StatsKind::Events,
        crate::store::StatsGroup::Application,
        Default::default(),
        now,
    )
    .await?;
    let apps: Vec<_> = store
        .applications()
        .await?
        .iter()
        .map(|a| minijinja::context! { v => volumes.get(&a.name).cloned(), ..view(a) })
        .collect();
    Ok(admin.page_with(
        status,
        "admin/applications.html",
        minijinja::context! { apps, error, form => minijinja::Value::from_serialize(form) },
    ))
}

/// Tells this node's ingest at once; a failure only delays it to the next refresh.
async fn refresh(admin: &Admin) {
    if let Err(e) = admin.state.apps.refresh().await {
        tracing::warn!(error = %e, "cannot refresh the applications cache after an admin change");
    }
}

async fn create(admin: Admin, Form(form): Form<CreateForm>) -> AdminResult {
    let name = form.name.trim().to_string();
    let checked = check_app_name(&name).and_then(|()| parse_origins(form.origins.lines()));
    let origins = match checked {
        Ok(o) => o,
        Err(e) => return list_page(&admin, Some(format!("{e}.")), &form, StatusCode::BAD_REQUEST).await,
    };
    let app = Application { name: name.clone(), key: new_key(), origins, active: true };
    match admin.state.store.create_application(&app).await {
        Err(StoreError::Rejected(_)) => {
            let e = format!("An application named {name:?} already exists.");
            return list_page(&admin, Some(e), &form, StatusCode::BAD_REQUEST).await;
        }
        other => other?,
    }
    refresh(&admin).await;
    admin.audit("create application", &name, format!("origins {:?}", app.origins)).await;
    Ok(Redirect::to(&url_of(&name)).into_response())
}

/// The application named `name`, or the not-found page.
async fn find(admin: &Admin, name: &str) -> Result<Application, AdminError> {
    let apps = admin.state.store.applications().await?;
    apps.into_iter().find(|a| a.name == name).ok_or(AdminError::NotFound("application"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DetailParams {
    done: Option<String>,
}

async fn detail(admin: Admin, Path(name): Path<String>, Query(p): Query<DetailParams>) -> AdminResult {
    let app = find(&admin, &name).await?;
    Ok(app_page(&admin, &app, None, None, p.done, StatusCode::OK))
}

fn app_page(
    admin: &Admin,
    app: &Application,
    origins_text: Option<&str>,
    error: Option<String>,
    done: Option<String>,
    status: StatusCode,
) -> Response {
    let origins_text = origins_text.map(str::to_string).unwrap_or_else(|| app.origins.join("\n"));
    admin.page_with(status, "admin/application.html", minijinja::context! { a => view(app), origins_text, error, done })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OriginsForm {
    origins: String,
}

async fn set_origins(admin: Admin, Path(name): Path<String>, Form(form): Form<OriginsForm>) -> AdminResult {
    let app = find(&admin, &name).await?;
    let origins = match parse_origins(form.origins.lines()) {
        Ok(o) => o,
        Err(e) => {
            let error = Some(format!("{e}."));
            return Ok(app_page(&admin, &app, Some(&form.origins), error, None, StatusCode::BAD_REQUEST));
        }
    };
    admin.state.store.set_application_origins(&name, &origins).await?;
    refresh(&admin).await;
    admin.audit("edit origins", &name, format!("{:?} → {origins:?}", app.origins)).await;
    Ok(Redirect::to(&format!("{}?done=origins", url_of(&name))).into_response())
}

async fn rotate_form(admin: Admin, Path(name): Path<String>) -> Response {
    let url = url_of(&name);
    admin.confirm(
        "Rotate this application's key?",
        &format!("{name:?} gets a new key. The current key stops working at once: update every page or server that sends with it."),
        &format!("{url}rotate/"),
        &url,
    )
}

async fn rotate(admin: Admin, Path(name): Path<String>) -> AdminResult {
    if !admin.state.store.set_application_key(&name, &new_key()).await? {
        return Err(AdminError::NotFound("application"));
    }
    refresh(&admin).await;
    admin.audit("rotate key", &name, String::new()).await;
    Ok(Redirect::to(&format!("{}?done=rotated", url_of(&name))).into_response())
}

async fn revoke_form(admin: Admin, Path(name): Path<String>) -> Response {
    let url = url_of(&name);
    admin.confirm(
        "Revoke this application?",
        &format!("Events sent with {name:?}'s key will be refused (401) until it is reactivated."),
        &format!("{url}revoke/"),
        &url,
    )
}

async fn revoke(admin: Admin, Path(name): Path<String>) -> AdminResult {
    set_active(&admin, &name, false).await
}

async fn activate(admin: Admin, Path(name): Path<String>) -> AdminResult {
    set_active(&admin, &name, true).await
}

async fn set_active(admin: &Admin, name: &str, active: bool) -> AdminResult {
    if !admin.state.store.set_application_active(name, active).await? {
        return Err(AdminError::NotFound("application"));
    }
    refresh(admin).await;
    let action = if active { "reactivate application" } else { "revoke application" };
    admin.audit(action, name, String::new()).await;
    let done = if active { "activated" } else { "revoked" };
    Ok(Redirect::to(&format!("{}?done={done}", url_of(name))).into_response())
}
