//! The admin panel's HTTP side so far: login, logout, the dashboard, sessions,
//! CSRF and security headers.
//!
//! - Sessions are server-side rows keyed by the SHA-256 of a random cookie
//!   token (`eye_session`: `HttpOnly`, `SameSite=Lax`, `Path=/admin`, `Secure`
//!   behind a trusted proxy that says https). Every login makes a new one.
//! - CSRF: the login form uses a double-submit cookie (no session exists yet,
//!   and anonymous visitors must not create rows); forms of a session carry the
//!   session's synchronizer token. A POST without the right token gets 403.
//! - Failed logins are slowed down per username and per address (a few a
//!   minute, then seconds of waiting), never locked for long.
//! - Templates escape everything (minijinja autoescape); the CSP allows no
//!   inline script or style.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

use axum::extract::{ConnectInfo, Form, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::users::verify_password;
use crate::app::AppState;
use crate::ingest::rate::{retry_after_secs, Limits, Rate};
use crate::store::AdminSession;

const SESSION_COOKIE: &str = "eye_session";
const LOGIN_CSRF_COOKIE: &str = "eye_login_csrf";
/// How long a session lasts.
const SESSION_HOURS: i64 = 8;

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    // Names ending in .html are autoescaped; every template here is one.
    for (name, source) in [
        ("admin/base.html", include_str!("../../templates/admin/base.html")),
        ("admin/login.html", include_str!("../../templates/admin/login.html")),
        ("admin/dashboard.html", include_str!("../../templates/admin/dashboard.html")),
        ("admin/message.html", include_str!("../../templates/admin/message.html")),
        ("admin/events.html", include_str!("../../templates/admin/events.html")),
        ("admin/event.html", include_str!("../../templates/admin/event.html")),
        ("admin/session.html", include_str!("../../templates/admin/session.html")),
    ] {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "admin template does not compile");
        }
    }
    env
});

/// Throttles for login attempts: per username and per address.
#[derive(Debug)]
pub struct LoginThrottle {
    per_user: Limits<String>,
    per_ip: Limits<IpAddr>,
}

impl LoginThrottle {
    /// Five attempts a minute per username, twenty per address, on the app's clock.
    pub fn new(clock: Arc<dyn crate::domain::Clock>) -> Self {
        let rate = |r: &str| Rate::parse(r).unwrap_or_else(|_| unreachable!("constant rate"));
        Self { per_user: Limits::new(rate("5/min"), clock.clone()), per_ip: Limits::new(rate("20/min"), clock) }
    }
}

fn render(name: &str, ctx: minijinja::Value) -> Response {
    match TEMPLATES.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "admin template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn message(status: StatusCode, heading: &str, text: &str) -> Response {
    let mut response = render("admin/message.html", minijinja::context! { heading, message => text });
    *response.status_mut() = status;
    response
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// Compares secrets without leaking, through timing, how much of them matched.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Over TLS, as far as we can tell: only a trusted proxy can say so.
fn over_tls(state: &AppState, headers: &HeaderMap) -> bool {
    state.settings.trust_proxy
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn set_cookie(response: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Only redirect to paths inside the admin panel (no open redirects).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/admin/") && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/admin/".into(),
    }
}

/// The admin routes.
pub fn routes(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/admin/", get(dashboard))
        .route("/admin/logout/", post(logout))
        .route("/admin/events/", get(events_list))
        .route("/admin/events/{event_id}/", get(event_detail))
        .route("/admin/sessions/{session_id}/", get(session_timeline))
        .route_layer(middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/login/", get(login_form).post(login))
        .route("/admin/static/admin.css", get(css))
        .merge(signed_in)
        .layer(middleware::from_fn(security_headers))
}

/// Headers every admin response carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../static/admin.css")).into_response()
}

/// Lets a request through only with a live session; otherwise to the login page.
async fn require_session(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let now = state.clock.now();
    let session = match cookie(request.headers(), SESSION_COOKIE) {
        Some(token) => state.store.session(&token_hash(token), now).await,
        None => Ok(None),
    };
    match session {
        Ok(Some(session)) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        Ok(None) => {
            let next_path = percent_encode(request.uri().path(), b"/-_.~");
            Redirect::to(&format!("/admin/login/?next={next_path}")).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read admin sessions");
            message(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", "The database is not available; try again soon.")
        }
    }
}

#[derive(Debug, Deserialize)]
struct NextParam {
    next: Option<String>,
}

async fn login_form(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<NextParam>) -> Response {
    login_page(&state, &headers, &safe_next(q.next.as_deref()), None, "", StatusCode::OK)
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    next: &str,
    error: Option<&str>,
    username: &str,
    status: StatusCode,
) -> Response {
    let csrf = random_token();
    let mut response =
        render("admin/login.html", minijinja::context! { csrf_token => csrf, next, error, username_value => username });
    *response.status_mut() = status;
    let secure = if over_tls(state, headers) { "; Secure" } else { "" };
    set_cookie(
        &mut response,
        format!("{LOGIN_CSRF_COOKIE}={csrf}; Path=/admin/login/; HttpOnly; SameSite=Strict{secure}"),
    );
    response
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if form.csrf_token.is_empty() || !same_secret(expected, &form.csrf_token) {
        return message(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The form had expired or did not come from this site (CSRF check failed). Reload the login page.",
        );
    }
    let next = safe_next(form.next.as_deref());
    let ip = connect.map(|Extension(ConnectInfo(addr))| addr.ip());
    let throttled = state
        .login_throttle
        .per_user
        .check(&form.username.to_lowercase())
        .err()
        .or_else(|| ip.and_then(|ip| state.login_throttle.per_ip.check(&ip).err()));
    if let Some(wait) = throttled {
        let mut response = login_page(
            &state,
            &headers,
            &next,
            Some("Too many attempts. Wait a few seconds and try again."),
            &form.username,
            StatusCode::TOO_MANY_REQUESTS,
        );
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
        return response;
    }
    let hash = match state.store.user_password_hash(&form.username).await {
        Ok(hash) => hash,
        Err(e) => {
            tracing::error!(error = %e, "cannot read admin users");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The database is not available; try again soon.",
            );
        }
    };
    // Verify against a dummy hash for unknown users too, so timing does not tell
    // which usernames exist.
    static DUMMY: LazyLock<String> =
        LazyLock::new(|| super::users::hash_password("not a real password").unwrap_or_default());
    let ok = match &hash {
        Some(h) => verify_password(&form.password, h),
        None => {
            let _ = verify_password(&form.password, &DUMMY);
            false
        }
    };
    if !ok {
        tracing::info!(username = %form.username.escape_debug(), "failed admin login");
        return login_page(
            &state,
            &headers,
            &next,
            Some("Please enter a correct username and password. Both are case-sensitive."),
            &form.username,
            StatusCode::OK,
        );
    }
    let token = random_token();
    let session = AdminSession {
        token_hash: token_hash(&token),
        username: form.username.clone(),
        csrf_token: random_token(),
        expires_at: state.clock.now() + chrono::Duration::hours(SESSION_HOURS),
    };
    if let Err(e) = state.store.create_session(&session).await {
        tracing::error!(error = %e, "cannot save an admin session");
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "The database is not available; try again soon.",
        );
    }
    // A stale session cookie from before is replaced, never reused (no session fixation).
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        let _ = state.store.delete_session(&token_hash(old)).await;
    }
    tracing::info!(username = %form.username.escape_debug(), "admin login");
    let secure = if over_tls(&state, &headers) { "; Secure" } else { "" };
    let mut response = Redirect::to(&next).into_response();
    set_cookie(
        &mut response,
        format!(
            "{SESSION_COOKIE}={token}; Path=/admin; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            SESSION_HOURS * 3600
        ),
    );
    set_cookie(&mut response, format!("{LOGIN_CSRF_COOKIE}=; Path=/admin/login/; Max-Age=0"));
    response
}

async fn dashboard(State(state): State<AppState>, Extension(session): Extension<AdminSession>) -> Response {
    let queue_depth = state.queue.depth().await.ok();
    render(
        "admin/dashboard.html",
        minijinja::context! {
            username => session.username,
            csrf_token => session.csrf_token,
            queue_depth => queue_depth.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()),
        },
    )
}

/// Filters of the events page, as typed into its form.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(default)]
struct EventFilters {
    session_id: String,
    category: String,
    name: String,
    from: String,
    to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

/// Page size of the admin's event lists.
const PAGE: usize = 50;

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "admin page cannot read the store");
    message(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", "The database is not available; try again soon.")
}

fn event_row(e: &crate::store::StoredEvent) -> minijinja::Value {
    let path = serde_json::from_str::<serde_json::Value>(e.data.get())
        .ok()
        .and_then(|d| d.get("path").and_then(|p| p.as_str()).map(str::to_string))
        .unwrap_or_default();
    minijinja::context! {
        event_id => e.event_id.to_string(),
        timestamp => e.timestamp.to_string(),
        received_at => crate::domain::Timestamp::from(e.received_at).to_string(),
        category => e.category,
        name => e.name,
        session_id => e.session_id,
        application => e.application,
        path,
    }
}

async fn events_list(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Query(mut f): Query<EventFilters>,
) -> Response {
    use crate::api::{event_cursor, next_cursor, time_param};
    use crate::store::{EventQuery, Order};
    let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
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
        from,
        to,
        order: Order::Desc,
        limit: PAGE,
        after: f.cursor.as_deref().and_then(|c| event_cursor(c, Order::Desc).ok()),
    };
    let page = match state.store.events(&query).await {
        Ok(page) => page,
        Err(e) => return unavailable(e),
    };
    let events: Vec<_> = page.items.iter().map(event_row).collect();
    let next_url = page.next.map(|c| {
        f.cursor = Some(next_cursor(c, Order::Desc));
        format!("/admin/events/?{}", serde_urlencoded::to_string(&f).unwrap_or_default())
    });
    f.cursor = None;
    render(
        "admin/events.html",
        minijinja::context! {
            username => session.username, csrf_token => session.csrf_token, f, events, next_url, error,
        },
    )
}

async fn event_detail(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let not_found = || message(StatusCode::NOT_FOUND, "Not found", "There is no event with this id.");
    let Ok(id) = uuid::Uuid::parse_str(&id) else { return not_found() };
    let event = match state.store.event(id).await {
        Ok(Some(event)) => event,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(e),
    };
    let data = serde_json::from_str::<serde_json::Value>(event.data.get())
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| event.data.get().to_string());
    render(
        "admin/event.html",
        minijinja::context! { username => session.username, csrf_token => session.csrf_token, e => event_row(&event), data },
    )
}

#[derive(Debug, Deserialize)]
struct CursorParam {
    cursor: Option<String>,
}

async fn session_timeline(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    axum::extract::Path(session_id): axum::extract::Path<String>,
    Query(q): Query<CursorParam>,
) -> Response {
    use crate::api::{event_cursor, next_cursor};
    use crate::store::{EventQuery, Order};
    let query = EventQuery {
        session_id: Some(session_id.clone()),
        order: Order::Asc,
        limit: PAGE,
        after: q.cursor.as_deref().and_then(|c| event_cursor(c, Order::Asc).ok()),
        ..Default::default()
    };
    let page = match state.store.events(&query).await {
        Ok(page) => page,
        Err(e) => return unavailable(e),
    };
    let events: Vec<_> = page.items.iter().map(event_row).collect();
    let next_url = page.next.map(|c| {
        let path = percent_encode(&session_id, b"-_.~");
        format!("/admin/sessions/{path}/?cursor={}", next_cursor(c, Order::Asc))
    });
    render(
        "admin/session.html",
        minijinja::context! { username => session.username, csrf_token => session.csrf_token, session_id, events, next_url },
    )
}

/// Percent-encodes everything but ASCII letters, digits and `keep`.
fn percent_encode(value: &str, keep: &[u8]) -> String {
    value
        .bytes()
        .map(
            |b| {
                if b.is_ascii_alphanumeric() || keep.contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            },
        )
        .collect()
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf_token: String,
}

/// The synchronizer check every state-changing form of a session goes through.
fn csrf_ok(session: &AdminSession, submitted: &str) -> bool {
    !submitted.is_empty() && same_secret(&session.csrf_token, submitted)
}

async fn logout(
    State(state): State<AppState>,
    Extension(session): Extension<AdminSession>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&session, &form.csrf_token) {
        return message(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The form did not come from this site (CSRF check failed).",
        );
    }
    if let Err(e) = state.store.delete_session(&session.token_hash).await {
        tracing::error!(error = %e, "cannot end an admin session");
    }
    let mut response = Redirect::to("/admin/login/").into_response();
    set_cookie(&mut response, format!("{SESSION_COOKIE}=; Path=/admin; HttpOnly; SameSite=Lax; Max-Age=0"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_inside_the_admin_panel() {
        assert_eq!(safe_next(Some("/admin/events/?session=x")), "/admin/events/?session=x");
        for bad in ["https://evil.example/", "//evil.example/admin/", "/api/events", "/admin\\evil", ""] {
            assert_eq!(safe_next(Some(bad)), "/admin/", "{bad}");
        }
        assert_eq!(safe_next(None), "/admin/");
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; eye_session=tok; b=2"));
        assert_eq!(cookie(&h, "eye_session"), Some("tok"));
        assert_eq!(cookie(&h, "eye"), None);
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }

    #[test]
    fn every_template_compiles() {
        for name in [
            "admin/base.html",
            "admin/login.html",
            "admin/dashboard.html",
            "admin/message.html",
            "admin/events.html",
            "admin/event.html",
            "admin/session.html",
        ] {
            assert!(TEMPLATES.get_template(name).is_ok(), "{name}");
        }
    }
}
