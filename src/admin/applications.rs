//! Applications: list, create, edit origins, rotate the key, revoke and
//! reactivate. Changes reach this node's ingest at once and other nodes within
//! `catalog_refresh_secs`.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;

use super::web::{audit, confirm, message, page_with, percent_encode, unavailable};
use crate::app::AppState;
use crate::domain::application::{check_app_name, new_key, parse_origins};
use crate::domain::Application;
use crate::store::{AdminSession, StoreError};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/applications/", get(list).post(create))
        .route("/admin/applications/{name}/", get(detail))
        .route("/admin/applications/{name}/origins/", post(set_origins))
        .route("/admin/applications/{name}/rotate/", get(rotate_form).post(rotate))
        .route("/admin/applications/{name}/revoke/", get(revoke_form).post(revoke))
        .route("/admin/applications/{name}/activate/", post(activate))
}

fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not found", "There is no application with this name.")
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

async fn list(State(state): State<AppState>, Extension(session): Extension<AdminSession>) -> Response {
    list_page(&state, &session, None, &CreateForm::default(), StatusCode::OK).await
}

async fn list_page(
    state: &AppState,
    session: &AdminSession,
    error: Option<String>,
    form: &CreateForm,
    status: StatusCode,
) -> Response {
    match state.store.applications().await {
        Ok(apps) => {
            let apps: Vec<_> = apps.iter().map(view).collect();
            page_with(
                status,
                session,
                "admin/applications.html",
                minijinja::context! { apps, error, form => minijinja::Value::from_serialize(form) },
            )
        }
        Err(e) => unavailable(e),
    }
}

/// Tells this node's ingest at once; a failure only delays it to the next refresh.
async fn refresh(state: &AppState) {
    if let Err(e) = state.apps.refresh().await {
        tracing::warn!(error = %e, "cannot refresh the applications cache after an admin change");
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Form(form): Form<CreateForm>,
) -> Response {
    let name = form.name.trim().to_string();
    let checked = check_app_name(&name).and_then(|()| parse_origins(form.origins.lines()));
    let origins = match checked {
        Ok(o) => o,
        Err(e) => return list_page(&state, &session, Some(format!("{e}.")), &form, StatusCode::BAD_REQUEST).await,
    };
    let app = Application { name: name.clone(), key: new_key(), origins, active: true };
    match state.store.create_application(&app).await {
        Ok(()) => {
            refresh(&state).await;
            audit(&state, &session, "create application", &name, format!("origins {:?}", app.origins)).await;
            Redirect::to(&url_of(&name)).into_response()
        }
        Err(StoreError::Rejected(_)) => {
            let e = format!("An application named {name:?} already exists.");
            list_page(&state, &session, Some(e), &form, StatusCode::BAD_REQUEST).await
        }
        Err(e) => unavailable(e),
    }
}

async fn find(state: &AppState, name: &str) -> Result<Option<Application>, StoreError> {
    Ok(state.store.applications().await?.into_iter().find(|a| a.name == name))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DetailParams {
    done: Option<String>,
}

async fn detail(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Path(name): Path<String>,
    Query(p): Query<DetailParams>,
) -> Response {
    let app = found!(find(&state, &name).await, not_found());
    app_page(&session, &app, None, None, p.done, StatusCode::OK)
}

fn app_page(
    session: &AdminSession,
    app: &Application,
    origins_text: Option<&str>,
    error: Option<String>,
    done: Option<String>,
    status: StatusCode,
) -> Response {
    let origins_text = origins_text.map(str::to_string).unwrap_or_else(|| app.origins.join("\n"));
    page_with(
        status,
        session,
        "admin/application.html",
        minijinja::context! { a => view(app), origins_text, error, done },
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OriginsForm {
    origins: String,
}

async fn set_origins(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Path(name): Path<String>,
    Form(form): Form<OriginsForm>,
) -> Response {
    let app = found!(find(&state, &name).await, not_found());
    let origins = match parse_origins(form.origins.lines()) {
        Ok(o) => o,
        Err(e) => {
            return app_page(&session, &app, Some(&form.origins), Some(format!("{e}.")), None, StatusCode::BAD_REQUEST)
        }
    };
    match state.store.set_application_origins(&name, &origins).await {
        Ok(_) => {
            refresh(&state).await;
            audit(&state, &session, "edit origins", &name, format!("{:?} → {origins:?}", app.origins)).await;
            Redirect::to(&format!("{}?done=origins", url_of(&name))).into_response()
        }
        Err(e) => unavailable(e),
    }
}

async fn rotate_form(Extension(session): Extension<AdminSession>, Path(name): Path<String>) -> Response {
    let url = url_of(&name);
    confirm(
        &session,
        "Rotate this application's key?",
        &format!("{name:?} gets a new key. The current key stops working at once: update every page or server that sends with it."),
        &format!("{url}rotate/"),
        &url,
    )
}

async fn rotate(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Path(name): Path<String>,
) -> Response {
    match state.store.set_application_key(&name, &new_key()).await {
        Ok(true) => {
            refresh(&state).await;
            audit(&state, &session, "rotate key", &name, String::new()).await;
            Redirect::to(&format!("{}?done=rotated", url_of(&name))).into_response()
        }
        Ok(false) => not_found(),
        Err(e) => unavailable(e),
    }
}

async fn revoke_form(Extension(session): Extension<AdminSession>, Path(name): Path<String>) -> Response {
    let url = url_of(&name);
    confirm(
        &session,
        "Revoke this application?",
        &format!("Events sent with {name:?}'s key will be refused (401) until it is reactivated."),
        &format!("{url}revoke/"),
        &url,
    )
}

async fn revoke(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Path(name): Path<String>,
) -> Response {
    set_active(&state, &session, &name, false).await
}

async fn activate(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Path(name): Path<String>,
) -> Response {
    set_active(&state, &session, &name, true).await
}

async fn set_active(state: &AppState, session: &AdminSession, name: &str, active: bool) -> Response {
    match state.store.set_application_active(name, active).await {
        Ok(true) => {
            refresh(state).await;
            audit(
                state,
                session,
                if active { "reactivate application" } else { "revoke application" },
                name,
                String::new(),
            )
            .await;
            let done = if active { "activated" } else { "revoked" };
            Redirect::to(&format!("{}?done={done}", url_of(name))).into_response()
        }
        Ok(false) => not_found(),
        Err(e) => unavailable(e),
    }
}
