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

use std::sync::LazyLock;

use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::kit::{Admin, AdminError, AdminResult};
use super::users::verify_password;
use crate::app::AppState;
use crate::rate::retry_after_secs;
use crate::store::AdminSession;

const SESSION_COOKIE: &str = "eye_session";
const LOGIN_CSRF_COOKIE: &str = "eye_login_csrf";

/// The login form's double-submit cookie: name and attributes. Over HTTPS it
/// is a `__Host-` cookie, which a browser accepts only from this very host
/// (Secure, `Path=/`, no `Domain`), so a sibling subdomain cannot plant one
/// to defeat the check. Plain HTTP cannot have that prefix.
fn login_csrf_cookie(tls: bool) -> (&'static str, &'static str) {
    if tls {
        ("__Host-eye_login_csrf", "Path=/; Secure")
    } else {
        (LOGIN_CSRF_COOKIE, "Path=/admin/login/")
    }
}
/// Marks a browser that signed in before (see [`LoginThrottle`]).
const DEVICE_COOKIE: &str = "eye_device";
/// How long a browser stays a trusted device.
const DEVICE_DAYS: i64 = 365;
/// How long a session lasts.
const SESSION_HOURS: i64 = 8;

pub use super::throttle::LoginThrottle;

/// A page of a signed-in user: the layout gets the user's name, CSRF token
/// and the section the page belongs to (highlighted in the navigation).
pub(super) fn page(session: &AdminSession, name: &str, ctx: minijinja::Value) -> Response {
    render(
        name,
        minijinja::context! {
            username => session.username.clone(), csrf_token => session.csrf_token.clone(),
            section => section_of(name), ..ctx
        },
    )
}

/// The navigation section a page template belongs to.
fn section_of(template: &str) -> &'static str {
    match template.trim_start_matches("admin/").trim_end_matches(".html") {
        "dashboard" => "dashboard",
        "live" => "live",
        "events" | "event" => "events",
        "sessions" | "session" => "sessions",
        "errors" | "error" => "errors",
        "categories" | "category" | "event_type" => "categories",
        "applications" | "application" => "applications",
        "tokens" => "tokens",
        "log" => "log",
        _ => "",
    }
}

/// A page of a signed-in user with a status other than 200.
pub(super) fn page_with(status: StatusCode, session: &AdminSession, name: &str, ctx: minijinja::Value) -> Response {
    let mut response = page(session, name, ctx);
    *response.status_mut() = status;
    response
}

/// Records what an admin did; a failure to record is logged, not shown.
pub(super) async fn audit(state: &AppState, session: &AdminSession, action: &str, object: &str, detail: String) {
    let entry = crate::store::AdminAction {
        at: state.clock.now(),
        username: session.username.clone(),
        action: action.to_string(),
        object: object.to_string(),
        detail,
    };
    tracing::info!(username = %entry.username.escape_debug(), action, object = %object.escape_debug(), "admin action");
    if let Err(e) = state.store.log_action(&entry).await {
        tracing::error!(error = %e, "cannot write the admin audit log");
    }
}

/// JSON text pretty-printed for a page; anything else as it is.
pub(super) fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_string())
}

/// An audit-log entry as the pages show it: a JSON detail (an edit's
/// before and after) pretty-printed, a long one cut for the table.
pub(super) fn action_row(a: &crate::store::AdminAction) -> minijinja::Value {
    let detail = pretty(&a.detail);
    let short: String = a.detail.chars().take(90).collect();
    minijinja::context! {
        at => crate::domain::Timestamp::from(a.at).to_string(),
        username => a.username, action => a.action, object => a.object,
        long => detail.len() > 90 || detail.contains('\n'), short, detail,
    }
}

fn render(name: &str, ctx: minijinja::Value) -> Response {
    match crate::templates::render(name, ctx) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "admin template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

pub(super) fn message(status: StatusCode, heading: &str, text: &str) -> Response {
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
    state.settings.http.trust_proxy
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
        // Printable ASCII only: CR, LF or other controls would break the
        // Location header (and did, as a 500).
        Some(n)
            if n.starts_with("/admin/")
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/admin/".into(),
    }
}

/// The admin routes.
pub fn routes(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/admin/logout/", post(logout))
        .route("/admin/password/", get(password_form).post(change_password))
        .route("/admin/log/", get(audit_log))
        .route("/admin/{*unknown}", get(not_found))
        .merge(super::dashboard::routes())
        .merge(super::events::routes())
        .merge(super::sessions::routes())
        .merge(super::live::routes())
        .merge(super::errors::routes())
        .merge(super::catalog::routes())
        .merge(super::applications::routes())
        .merge(super::tokens::routes())
        .route_layer(middleware::from_fn(check_csrf))
        .route_layer(middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/login/", get(login_form).post(login))
        .route("/admin/static/admin.css", get(css))
        .route("/admin/static/admin.js", get(js))
        .merge(signed_in)
        .layer(middleware::from_fn(security_headers))
}

/// Largest form the admin panel takes (an edited payload is the biggest).
const MAX_FORM_BYTES: usize = 2 * 1024 * 1024;

/// Every POST of a signed-in user must carry the session's CSRF token in its
/// form; the check is here, once, so no handler can forget it.
async fn check_csrf(Extension(session): Extension<AdminSession>, request: Request, next: Next) -> Response {
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return message(StatusCode::PAYLOAD_TOO_LARGE, "Too large", "The form is larger than this panel accepts.");
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let submitted = pairs.iter().find(|(k, _)| k == "csrf_token").map(|(_, v)| v.as_str()).unwrap_or("");
    if !csrf_ok(&session, submitted) {
        return message(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The form did not come from this site or has expired (CSRF check failed). Go back, reload and try again.",
        );
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// Headers every admin response carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; connect-src 'self'; \
             form-action 'self'; \
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

async fn js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../static/admin.js")).into_response()
}

/// Any other address under `/admin/`: the not-found page, inside the frame.
async fn not_found() -> AdminError {
    AdminError::NotFound("page")
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
            request.extensions_mut().insert(session.clone());
            let response = next.run(request).await;
            super::kit::render_error_page(response, Some(&session))
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
    let (name, scope) = login_csrf_cookie(over_tls(state, headers));
    set_cookie(&mut response, format!("{name}={csrf}; {scope}; HttpOnly; SameSite=Strict"));
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
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let (csrf_name, csrf_scope) = login_csrf_cookie(over_tls(&state, &headers));
    let expected = cookie(&headers, csrf_name).unwrap_or("");
    if form.csrf_token.is_empty() || !same_secret(expected, &form.csrf_token) {
        return message(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The form had expired or did not come from this site (CSRF check failed). Reload the login page.",
        );
    }
    let next = safe_next(form.next.as_deref());
    let ip = crate::peer::client_ip(&headers, &extensions, state.settings.http.trust_proxy);
    let username_key = form.username.to_lowercase();
    let device = cookie(&headers, DEVICE_COOKIE);
    let trusted = state.login_throttle.trusted(&username_key, device);
    if let Some(wait) = state.login_throttle.wait(&username_key, ip, trusted) {
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
        state.login_throttle.failed(&username_key, ip, trusted);
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
    set_cookie(&mut response, format!("{csrf_name}=; {csrf_scope}; Max-Age=0"));
    let device = match device {
        Some(d) if trusted => d.to_string(),
        _ => {
            let fresh = random_token();
            set_cookie(
                &mut response,
                format!(
                    "{DEVICE_COOKIE}={fresh}; Path=/admin/login/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                    DEVICE_DAYS * 86_400
                ),
            );
            fresh
        }
    };
    state.login_throttle.succeeded(&username_key, ip, &device);
    response
}

pub(super) use crate::templates::percent_encode;

/// The synchronizer check every state-changing form of a session goes through.
fn csrf_ok(session: &AdminSession, submitted: &str) -> bool {
    !submitted.is_empty() && same_secret(&session.csrf_token, submitted)
}

async fn logout(admin: Admin) -> Response {
    if let Err(e) = admin.state.store.delete_session(&admin.session.token_hash).await {
        tracing::error!(error = %e, "cannot end an admin session");
    }
    let mut response = Redirect::to("/admin/login/").into_response();
    set_cookie(&mut response, format!("{SESSION_COOKIE}=; Path=/admin; HttpOnly; SameSite=Lax; Max-Age=0"));
    response
}

async fn password_form(admin: Admin) -> Response {
    admin.page("admin/password.html", minijinja::context! { errors => Vec::<String>::new() })
}

#[derive(Debug, Deserialize)]
struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new1: String,
    #[serde(default)]
    new2: String,
}

async fn change_password(admin: Admin, Form(form): Form<PasswordForm>) -> AdminResult {
    let username = &admin.session.username;
    let hash = admin.state.store.user_password_hash(username).await?.unwrap_or_default();
    let mut errors = Vec::new();
    if !verify_password(&form.current, &hash) {
        errors.push("Your current password was entered incorrectly.".to_string());
    } else if form.new1 != form.new2 {
        errors.push("The two new passwords do not match.".to_string());
    } else {
        errors.extend(
            super::users::password_problems(username, "", &form.new1)
                .into_iter()
                .map(|p| format!("The new password is not allowed: {p}.")),
        );
    }
    if !errors.is_empty() {
        return Ok(admin.page_with(StatusCode::BAD_REQUEST, "admin/password.html", minijinja::context! { errors }));
    }
    let new_hash = super::users::hash_password(&form.new1).map_err(AdminError::Internal)?;
    admin.state.store.set_password(username, &new_hash, &admin.session.token_hash).await?;
    admin.audit("change password", username, "other sessions ended".into()).await;
    Ok(admin.page("admin/password.html", minijinja::context! { done => true, errors => Vec::<String>::new() }))
}

/// The audit log's filters and page, as its form and links carry them.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(default)]
struct LogFilters {
    username: String,
    action: String,
    object: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    older: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    newer: Option<i64>,
}

/// Entries per page of the audit log.
const LOG_PAGE: usize = 50;

async fn audit_log(admin: Admin, Query(mut f): Query<LogFilters>) -> AdminResult {
    let text = super::events::text;
    let query = crate::store::ActionQuery {
        username: text(&f.username),
        action: text(&f.action),
        object: text(&f.object),
        limit: LOG_PAGE,
        ..Default::default()
    };
    let store = &admin.state.store;
    let fetch = |order, after| {
        let query = crate::store::ActionQuery { order, after, ..query.clone() };
        async move { store.action_log(&query).await }
    };
    let paged = super::view::both_ways(f.older, f.newer, fetch, |a| a.id).await?;
    let entries: Vec<_> = paged.items.iter().map(|a| action_row(&a.entry)).collect();
    let mut url = |older: Option<i64>, newer: Option<i64>| {
        (f.older, f.newer) = (older, newer);
        super::view::url("/admin/log/", &f)
    };
    let older_url = paged.older.map(|id| url(Some(id), None));
    let newer_url = paged.newer.map(|id| url(None, Some(id)));
    let newest_url = newer_url.as_ref().map(|_| url(None, None));
    (f.older, f.newer) = (None, None);
    Ok(admin.page("admin/log.html", minijinja::context! { f, entries, older_url, newer_url, newest_url }))
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
        for bad in ["/admin/\r\nSet-Cookie: x=1", "/admin/\n", "/admin/ x", "/admin/\u{e9}"] {
            assert_eq!(safe_next(Some(bad)), "/admin/", "{bad:?}");
        }
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
}
