//! Read-API tokens: the list (name, created, last used; never a secret) and
//! revocation, which refuses the token at once. Tokens are made with
//! `the-eye tokens create`, the only place their secret is ever shown.

use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::kit::{Admin, AdminError, AdminResult};
use super::web::percent_encode;
use crate::app::AppState;
use crate::domain::Timestamp;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/tokens/", get(list))
        .route("/admin/tokens/{name}/revoke/", get(revoke_form).post(revoke))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListParams {
    revoked: Option<String>,
}

fn revoke_url(name: &str) -> String {
    format!("/admin/tokens/{}/revoke/", percent_encode(name, b"-_.~"))
}

/// A time to the minute, in UTC; pages give the full value on hover.
async fn list(admin: Admin, Query(p): Query<ListParams>) -> AdminResult {
    let tokens: Vec<_> = admin
        .state
        .store
        .tokens()
        .await?
        .iter()
        .map(|t| {
            minijinja::context! {
                name => t.name,
                created_at => Timestamp::from(t.created_at).to_string(),
                last_used_at => t.last_used_at.map(|at| Timestamp::from(at).to_string()),
                can_erase => t.can_erase,
                revoke_url => revoke_url(&t.name),
            }
        })
        .collect();
    Ok(admin.page("admin/tokens.html", minijinja::context! { tokens, revoked => p.revoked }))
}

async fn revoke_form(admin: Admin, Path(name): Path<String>) -> Response {
    admin.confirm(
        "Revoke this token?",
        &format!("Programs reading with token {name:?} (a Prometheus, a report) get 401 from now on. This cannot be undone; make a new token instead."),
        &revoke_url(&name),
        "/admin/tokens/",
    )
}

async fn revoke(admin: Admin, Path(name): Path<String>) -> AdminResult {
    let revoked = admin.state.store.revoke_tokens(&name).await?;
    if revoked == 0 {
        return Err(AdminError::NotFound("token"));
    }
    admin.audit("revoke token", &name, format!("{revoked} revoked")).await;
    let back = format!("/admin/tokens/?revoked={}", percent_encode(&name, b"-_.~"));
    Ok(Redirect::to(&back).into_response())
}
