//! The tracker script and the demo website.
//!
//! - `/static/eye.js`: the browser tracker (`static/eye.js`, hand-written),
//!   served gzipped when the browser accepts it, cacheable for five minutes.
//! - `/website/`: a small demo site that uses only the tracker: a home page
//!   with a banner (a click event), a form at `/website/form/` (a submit
//!   event), then a thank-you page. Its pages carry the key of the `demo`
//!   application, which `serve` creates for its own origins at first start.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{extract::State, Router};
use tower_http::compression::CompressionLayer;

use crate::app::AppState;

/// The application whose key the demo website's pages carry.
pub const DEMO_APP: &str = "demo";

/// The tracker and website routes.
///
/// The tracker is always served: real websites load it. With `demo` off the
/// demo pages are not, and `/` leads to the admin panel instead of the demo.
pub fn routes(demo: bool) -> Router<AppState> {
    let tracker = Router::new()
        .route("/static/eye.js", get(|| asset("text/javascript; charset=utf-8", include_str!("../static/eye.js"))))
        .layer(CompressionLayer::new());
    if !demo {
        return tracker.route("/", get(|| async { Redirect::to("/admin/") }));
    }
    let assets = Router::new()
        .route(
            "/website/site.css",
            get(|| asset("text/css; charset=utf-8", include_str!("../static/website/site.css"))),
        )
        .route("/website/banner.svg", get(|| asset("image/svg+xml", include_str!("../static/website/banner.svg"))))
        .layer(CompressionLayer::new());
    Router::new()
        .route("/", get(|| async { Redirect::to("/website/") }))
        .route("/website", get(|| async { Redirect::permanent("/website/") }))
        .route("/website/", get(home))
        .route("/website/form/", get(form).post(thanks))
        .merge(assets)
        .merge(tracker)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The demo application's key, if it exists and is active.
async fn demo_key(state: &AppState) -> Option<String> {
    match state.store.applications().await {
        Ok(apps) => apps.into_iter().find(|a| a.name == DEMO_APP && a.active).map(|a| a.key),
        Err(e) => {
            tracing::warn!(error = %e, "the demo website cannot read its application");
            None
        }
    }
}

async fn render(state: &AppState, name: &str) -> Response {
    let key = demo_key(state).await;
    match crate::templates::render(name, minijinja::context! { key }) {
        Ok(html) => {
            let mut response = Html(html).into_response();
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                ),
            );
            response
        }
        Err(e) => {
            tracing::error!(template = name, error = %e, "website template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn home(State(state): State<AppState>) -> Response {
    render(&state, "website/home.html").await
}

async fn form(State(state): State<AppState>) -> Response {
    render(&state, "website/form.html").await
}

/// The form's target: the demo keeps nothing; the tracker already sent the event.
async fn thanks(State(state): State<AppState>) -> Response {
    render(&state, "website/thanks.html").await
}
